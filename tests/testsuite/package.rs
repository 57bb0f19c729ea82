//! berth as an installed system tool: `--version`, the Debian package and
//! the static build (`scripts/build-deb`, `scripts/build-static`), and an
//! upgrade of the package on a systemd host with running deployments.

use std::path::Path;
use std::process::Command;

use crate::support::{bin, show};

/// `berth --version` names the version and the commit it was built from:
/// `BERTH_COMMIT` when the build had it, else this checkout's HEAD, else
/// "unknown" (a build outside a git checkout).
#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(bin())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want_start = format!("berth {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want_start), "{text}");
    let head = Command::new("git")
        .args(["log", "-1", "--format=%H %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want = match (std::env::var("BERTH_COMMIT"), head) {
        (Ok(c), _) if !c.trim().is_empty() => c.trim().to_string(),
        (_, Some(line)) if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() => {
            let (hash, date) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("git log said {line:?}"));
            format!("{} {date}", &hash[..12])
        }
        _ => "unknown".to_string(),
    };
    assert_eq!(text.trim(), format!("{want_start}{want})"));
}

/// `berth man-pages DIR` (hidden, for packaging) writes `berth.1` and one
/// page per command; neither help nor the completions offer it.
#[test]
fn man_pages_cover_every_command_and_stay_out_of_help_and_completions() {
    use clap::CommandFactory;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let out = Command::new(bin())
        .arg("man-pages")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(out.status.success(), "{}", show(&out));
    let mut want: Vec<String> = berth::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| format!("berth-{}.1", c.get_name()))
        .collect();
    want.push("berth.1".to_string());
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.path().display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    let apply = std::fs::read_to_string(dir.path().join("berth-apply.1"))
        .unwrap_or_else(|e| panic!("berth-apply.1: {e}"));
    assert!(apply.starts_with(".ie"), "not roff:\n{apply}");
    assert!(apply.contains("\\-\\-integration"), "{apply}");

    let help = Command::new(bin())
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(!String::from_utf8_lossy(&help.stdout).contains("man-pages"));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap_or_else(|e| panic!("run berth: {e}"));
        assert!(out.status.success(), "{}", show(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("apply"), "{shell}:\n{script}");
        assert!(!script.contains("man-pages"), "{shell} offers man-pages");
    }
}
