//! `berth render`, `berth schema` and interpolation from the command line,
//! run as the built binary on the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{bin, show};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn berth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("BERTH_STATE_DIR", "/tmp/berth-render-test-state")
        .output()
        .expect("run berth")
}

#[test]
fn render_shows_instances_links_and_units_for_the_geard_example() {
    // The units are what systemd hosts get; ask for them on any host.
    let out = berth_in(
        &fixtures(),
        &["render", "-f", "geard.json", "--integration", "systemd"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "deployment: geard",
        "network:    geard",
        "instance 1: container geard-mail, unit berth-geard-mail.service",
        "port 4443:443/tcp",
        "MAIL_PORT_25_TCP=tcp://mail:25",
        "ssh keys: key-1 (SHA256:",
        "# berth-geard-roundcube.service",
        "ExecStart=",
        "supervise geard-roundcube",
        "--state-dir /tmp/berth-render-test-state",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn render_json_has_every_instance_with_volumes_and_unit_text() {
    let out = berth_in(
        &fixtures(),
        &[
            "render",
            "-f",
            "example.toml",
            "--output",
            "json",
            "--integration",
            "systemd",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("render --output json is JSON");
    assert_eq!(v["deployment"], "example");
    assert_eq!(v["integration"], "systemd");
    assert_eq!(v["network"], "example");
    let instances = v["instances"].as_array().expect("instances");
    let containers: Vec<&str> = instances
        .iter()
        .map(|i| i["container"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        containers,
        [
            "example-db",
            "example-mail",
            "example-roundcube",
            "example-worker-1",
            "example-worker-2",
            "example-worker-3"
        ]
    );
    let mail = &instances[1];
    assert_eq!(mail["unit"], "berth-example-mail.service");
    assert_eq!(mail["volumes"][0]["source"], "example-mail-spool");
    assert_eq!(mail["volumes"][0]["origin"], "file");
    assert_eq!(mail["volumes"][2]["kind"], "bind");
    assert_eq!(mail["volumes"][2]["read_only"], true);
    assert!(
        mail["unit_text"]
            .as_str()
            .unwrap_or("")
            .contains("Type=notify")
    );
    let rc = &instances[2];
    assert_eq!(
        rc["link_env"]["DATABASE_NAME"],
        "/example-roundcube/database"
    );
    assert_eq!(rc["link_env"]["MAIL_PORT_993_TCP_PORT"], "993");
    assert!(
        v["image_volumes"]
            .as_str()
            .unwrap_or("")
            .contains("apply time")
    );
    assert_eq!(v["model"]["services"]["worker"]["count"], 3);
}

#[test]
fn set_wins_over_vars_on_the_command_line() {
    let out = berth_in(
        &fixtures(),
        &[
            "render",
            "-f",
            "example.yaml",
            "--output",
            "json",
            "--set",
            "WEB_PORT=9443",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v["model"]["services"]["roundcube"]["ports"][0]["host_port"],
        9443
    );
    let out = berth_in(
        &fixtures(),
        &["validate", "-f", "example.yaml", "--set", "NOEQUALS"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn render_refuses_an_invalid_file_with_exit_code_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let out = berth_in(&dir, &["render", "-f", "toml-link-cycle.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("link cycle: a -> b -> c -> a"));
}

#[test]
fn schema_is_json_schema_of_the_native_format() {
    let out = berth_in(&fixtures(), &["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert!(
        v["$schema"]
            .as_str()
            .unwrap_or("")
            .contains("json-schema.org")
    );
    assert_eq!(v["required"], serde_json::json!(["services"]));
    let svc = &v["$defs"]["ServiceFile"];
    assert_eq!(svc["required"], serde_json::json!(["image"]));
    assert_eq!(svc["additionalProperties"], false);
    assert!(
        svc["properties"]["privileged"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("true")
    );
}

#[test]
fn validate_output_json_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"vj\"\n[services.web]\nimage = \"img\"\nports = [\"70000:80\"]\nlinks = [\"nosuch\"]\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], false);
    assert_eq!(v["warnings"], serde_json::json!([]));
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{v}");
    let port = errors
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.contains("70000")))
        .expect("the port error");
    assert_eq!(port["severity"], "error");
    assert_eq!(port["line"], 4);
    assert!(port["column"].as_u64().is_some_and(|c| c > 1), "{port}");
    assert!(
        port["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("berth.toml"))
    );
    assert!(port["help"].is_string(), "{port}");

    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"vj\"\n[services.web]\nimage = \"img\"\ncount = 2\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["instances"], 2);
    assert_eq!(v["errors"], serde_json::json!([]));
}

/// A command's help lists its own options first; the global ones come
/// after, under their own heading.
#[test]
fn subcommand_help_keeps_global_options_under_their_own_heading() {
    for cmd in ["ps", "plan", "logs", "destroy"] {
        let out = berth_in(&fixtures(), &[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let (own, global) = text
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("no Global options heading in {cmd} --help:\n{text}"));
        for g in ["--state-dir", "--unit-dir", "--set", "--name"] {
            assert!(
                !own.contains(g),
                "{cmd}: {g} among its own options:\n{text}"
            );
            assert!(global.contains(g), "{cmd}: {g} missing:\n{text}");
        }
    }
}
