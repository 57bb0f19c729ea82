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
    let out = berth_in(&fixtures(), &["render", "-f", "geard.json"]);
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
        &["render", "-f", "example.toml", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("render --output json is JSON");
    assert_eq!(v["deployment"], "example");
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

/// A valid file whose settings hand the container the host.
const DANGEROUS: &str = r#"name = "NAME"

[services.tool]
image = "busybox"
volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
privileged = true
cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
"#;

/// What `validate`, `render`, `plan` and `apply` print for [`DANGEROUS`].
const DANGEROUS_WARNINGS: &str = r#"berth.toml:5:12: warning: service `tool`: bind mount of the host's `/`: the container sees the host's whole file system
  |
5 | volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
  |            ^
  help: bind only the files or directories the service needs, read-only where it can ("/srv/app/config:/config:ro")

berth.toml:5:26: warning: service `tool`: bind mount of the engine's socket `/var/run/docker.sock`: the container controls the engine, which makes it root on the host (read-only does not change that)
  |
5 | volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
  |                          ^
  help: bind only the files or directories the service needs, read-only where it can ("/srv/app/config:/config:ro")

berth.toml:6:14: warning: service `tool` runs privileged: every capability and every host device, so root in the container is root on the host
  |
6 | privileged = true
  |              ^
  help: add only the capabilities the service needs with cap_add, and remove privileged = true

berth.toml:7:25: warning: service `tool` adds the capability SYS_ADMIN: mounting file systems, namespaces and many kernel interfaces: the usual way out of a container
  |
7 | cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
  |                         ^
  help: add it only if the service cannot work without it

berth.toml:7:38: warning: service `tool` adds the capability ALL: every capability: nearly the same as privileged = true
  |
7 | cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
  |                                      ^
  help: add it only if the service cannot work without it
"#;

#[test]
fn dangerous_settings_are_located_warnings_and_do_not_change_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        DANGEROUS.replace("NAME", "demo"),
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: berth.toml: deployment demo, 1 service, 1 instance\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
    let out = berth_in(dir.path(), &["render"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment: demo"));
    let out = berth_in(dir.path(), &["render", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let warnings = v["warnings"].as_array().expect("warnings in render's JSON");
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert_eq!(warnings[2]["line"], 6);
    assert_eq!(warnings[2]["column"], 14);
    assert!(
        warnings[2]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("service `tool` runs privileged")
    );
}

#[test]
fn plan_shows_the_warnings_too() {
    let name = crate::support::unique_name("warnplan");
    let _cleanup = crate::support::Cleanup::new(&name);
    let ws = crate::support::Workspace::new();
    ws.write("berth.toml", &DANGEROUS.replace("NAME", &name));
    let out = crate::support::run(&ws, &["plan", "--integration", "docker"]);
    // 3: there is something to apply; the warnings do not change that.
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
}

#[test]
fn apply_shows_the_warnings_and_succeeds() {
    let name = crate::support::unique_name("warnapply");
    let _cleanup = crate::support::Cleanup::new(&name);
    let ws = crate::support::Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.app]\nimage = \"{}\"\ncommand = [\"sleep\", \"3600\"]\nstop_timeout = 1\ncap_add = [\"SYS_PTRACE\"]\n",
            crate::support::base_image()
        ),
    );
    let out = crate::support::run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("berth.toml:6:12: warning: service `app` adds the capability SYS_PTRACE: tracing and reading the memory of every process the container sees\n"),
        "{err}"
    );
    assert_eq!(
        crate::support::containers_of(&name),
        vec![format!("{name}-app")]
    );
}

#[test]
fn render_names_the_volumes_apply_uses() {
    // Instance 1 keeps `<deployment>-<service>-<volume>` whatever the count,
    // so that scaling up does not hand it a new, empty volume.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"demo\"\n[services.web]\nimage = \"busybox\"\ncount = 2\nvolumes = [\"data:/data\"]\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["render", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["instances"][0]["container"], "demo-web-1");
    assert_eq!(v["instances"][0]["volumes"][0]["source"], "demo-web-data");
    assert_eq!(v["instances"][1]["volumes"][0]["source"], "demo-web-2-data");
}
