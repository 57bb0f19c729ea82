//! `berth convert`: the mail example written for Compose is a file
//! docker-compose accepts, as TOML one berth validates, and as Kubernetes
//! manifests that pass schema validation.

use crate::support::*;

const KEY: &str = "MAIL_SSH_KEY=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz7gYv3lCIVUp8dm3D1UOHdWLn56rxJ2RGCY5hCLIQk you@host";

fn mail_file() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mail/berth.toml")
        .display()
        .to_string()
}

#[test]
fn the_mail_example_converts_to_compose_and_toml() {
    let ws = Workspace::new();
    let file = mail_file();
    let out_dir = ws.path().join("compose-out");
    let out_s = out_dir.display().to_string();
    let out = run(
        &ws,
        &[
            "-f", &file, "--set", KEY, "convert", "--to", "compose", "-o", &out_s, "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON: {e}\n{}", show(&out)));
    let losses = report["losses"].as_array().cloned().unwrap_or_default();
    assert!(
        losses
            .iter()
            .any(|l| l["service"] == "webmail" && l["field"] == "links.mail"),
        "{report}"
    );
    // docker-compose itself accepts the file (the project name by -p).
    let compose = out_dir.join("compose.yaml");
    let dc = std::process::Command::new("docker-compose")
        .arg("-p")
        .arg("mailexample")
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .output()
        .unwrap_or_else(|e| panic!("docker-compose: {e}"));
    assert!(dc.status.success(), "{}", show(&dc));
    let config = String::from_utf8_lossy(&dc.stdout);
    assert!(config.contains("berth-example/webmail:1"), "{config}");
    assert!(out_dir.join("configs/users").is_file());

    // --strict refuses the loss (exit 1) and writes nothing.
    let strict_dir = ws.path().join("strict-out");
    let strict_s = strict_dir.display().to_string();
    let out = run(
        &ws,
        &[
            "-f", &file, "--set", KEY, "convert", "--to", "compose", "--strict", "-o", &strict_s,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lost: services.webmail.links.mail:"), "{err}");
    assert!(!strict_dir.exists());

    // TOML on stdout, which berth validates.
    let out = run(&ws, &["-f", &file, "--set", KEY, "convert", "--to", "toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let toml_file = ws.path().join("converted.toml");
    std::fs::write(&toml_file, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let t = toml_file.display().to_string();
    let out = run(&ws, &["-f", &t, "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Kubernetes manifests pass schema validation (kubernetes-validate
    // bundles the schemas; scripts/install-deps installs it).
    let k8s_dir = ws.path().join("k8s-out");
    let k8s_s = k8s_dir.display().to_string();
    let out = run(
        &ws,
        &[
            "-f",
            &file,
            "--set",
            KEY,
            "convert",
            "--to",
            "kubernetes",
            "-o",
            &k8s_s,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let kv = std::process::Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(k8s_dir.join("kubernetes.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate (scripts/install-deps installs it): {e}"));
    assert!(kv.status.success(), "{}", show(&kv));
    let text =
        std::fs::read_to_string(k8s_dir.join("kubernetes.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains("wait-for-mail"),
        "webmail waits for mail:\n{text}"
    );
}

/// The Quadlet units of the native example, against golden files in
/// `tests/golden/quadlet/example/` (`BERTH_BLESS=1` rewrites them; review
/// the diff). Their keys are the ones podman-systemd.unit(5) documents (the
/// unit tests check the list).
#[test]
fn quadlet_units_of_the_example_match_the_golden_files() {
    let ws = Workspace::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root
        .join("tests/fixtures/example.toml")
        .display()
        .to_string();
    let out_dir = ws.path().join("quadlet");
    let out_s = out_dir.display().to_string();
    let out = run(
        &ws,
        &["-f", &file, "convert", "--to", "quadlet", "-o", &out_s],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let golden = root.join("tests/golden/quadlet/example");
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    if bless {
        let _ = std::fs::remove_dir_all(&golden);
        std::fs::create_dir_all(&golden).unwrap_or_else(|e| panic!("{e}"));
    }
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let written = names(&out_dir);
    let mut problems = Vec::new();
    for name in &written {
        let got = std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        if bless {
            std::fs::write(golden.join(name), &got).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        match std::fs::read_to_string(golden.join(name)) {
            Ok(want) if want == got => {}
            Ok(want) => problems.push(format!(
                "{name} differs (BERTH_BLESS=1 rewrites it)\n--- golden\n{want}--- written\n{got}"
            )),
            Err(e) => problems.push(format!("{name}: {e} (BERTH_BLESS=1 writes it)")),
        }
    }
    assert_eq!(
        names(&golden),
        written,
        "golden files for units no longer written"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
