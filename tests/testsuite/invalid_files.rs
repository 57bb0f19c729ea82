//! The invalid-file corpus: every file under `tests/invalid/` must be
//! rejected by `berth validate` with exit code 2 and exactly the stderr in
//! the `.expected` file beside it.
//!
//! A case is any file there except `*.expected`, `*.args` (extra arguments,
//! one per line) and env files (`.env`, `*.env`). Cases in subdirectories
//! bring their own `.env` or `env_file`s. `BERTH_BLESS=1` rewrites the
//! `.expected` files from the current output (review the diff!).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{bin, show};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            cases(&p, out);
        } else if !(name.ends_with(".expected")
            || name.ends_with(".args")
            || name.ends_with(".env"))
        {
            out.push(p);
        }
    }
}

/// Run `berth validate -f NAME` in the case's directory, with a clean environment.
fn validate(case: &Path, extra: &[String]) -> Output {
    let dir = case.parent().expect("case directory");
    let name = case.file_name().expect("case file name");
    Command::new(bin())
        .arg("validate")
        .arg("-f")
        .arg(name)
        .args(extra)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run berth: {e}"))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[test]
fn every_invalid_file_is_rejected_with_its_exact_message() {
    let mut all = Vec::new();
    cases(&corpus_dir(), &mut all);
    assert!(all.len() >= 40, "the corpus has only {} cases", all.len());
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &all {
        let extra: Vec<String> = std::fs::read_to_string(with_suffix(case, ".args"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let out = validate(case, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected_path = with_suffix(case, ".expected");
        if bless {
            std::fs::write(&expected_path, &stderr).expect("write .expected");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let rel = case
            .strip_prefix(corpus_dir())
            .unwrap_or(case)
            .display()
            .to_string();
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{rel}: exit code {:?}, expected 2\n{}",
                out.status.code(),
                show(&out)
            ));
        } else if !out.stdout.is_empty() {
            failures.push(format!("{rel}: printed to stdout\n{}", show(&out)));
        } else if stderr != expected {
            failures.push(format!(
                "{rel}: stderr differs\n--- expected\n{expected}\n--- actual\n{stderr}"
            ));
        } else if stderr.contains("panicked") {
            failures.push(format!("{rel}: panicked\n{stderr}"));
        } else if let Some(c) = stderr
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t')
        {
            // Whatever the file holds, no control character reaches the terminal.
            failures.push(format!("{rel}: stderr holds the control character {c:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_missing_file_is_named_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .args(["validate", "-f", "nowhere.toml"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run berth");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "nowhere.toml: error: cannot read the deployment file: no such file\n  help: pass the deployment file with -f FILE (the default is berth.toml in the current directory)\n1 error found\n"
    );
    // The default file name is berth.toml.
    let out = Command::new(bin())
        .arg("validate")
        .current_dir(dir.path())
        .env_remove("BERTH_FILE")
        .output()
        .expect("run berth");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("berth.toml: error: cannot read"));
}

#[test]
fn the_fixtures_validate() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, summary) in [
        (
            "example.toml",
            "deployment example, 4 services, 6 instances",
        ),
        (
            "example.yaml",
            "deployment example, 4 services, 6 instances",
        ),
        (
            "example.json",
            "deployment example, 4 services, 6 instances",
        ),
        ("geard.json", "deployment geard, 2 services, 2 instances"),
    ] {
        let out = Command::new(bin())
            .args(["validate", "-f", file])
            .current_dir(&fixtures)
            .env("NO_COLOR", "1")
            .output()
            .expect("run berth");
        assert_eq!(out.status.code(), Some(0), "{file}: {}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("ok: {file}: {summary}\n")
        );
    }
}

/// A 1 MB value is quoted in part, not echoed whole: the message, the source
/// line under it and the help stay short.
#[test]
fn a_huge_value_is_quoted_in_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = "A".repeat(1 << 20);
    std::fs::write(
        dir.path().join("huge.toml"),
        format!("name = \"demo\"\n\n[services.web]\nimage = \"{huge}\"\n"),
    )
    .expect("write huge.toml");
    let out = validate(&dir.path().join("huge.toml"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let quoted = format!("`{}...`", "A".repeat(77));
    assert!(
        stderr.starts_with(&format!(
            "huge.toml:4:9: error: image {quoted} is not a valid reference"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("4 | image = \"{}...\n", "A".repeat(108))));
    assert!(
        stderr.lines().all(|l| l.chars().count() <= 200),
        "a line longer than 200 characters:\n{stderr}"
    );
    assert!(stderr.len() < 2000, "{} bytes of stderr", stderr.len());
}
