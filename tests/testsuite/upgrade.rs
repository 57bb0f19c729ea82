//! Upgrading berth itself recreates nothing: a deployment applied by an
//! older berth (the commit in `tests/fixtures/upgrade-base`, built by
//! `scripts/build-upgrade-base`, which `scripts/test` runs) and applied again
//! by this build with the same file keeps every container (same IDs) and,
//! under systemd, every unit running since before the upgrade.

use std::path::PathBuf;

use berth_test_support::systemd_host::{HOST_BERTH, HostDeployment, SystemdHost};

use crate::support::*;

/// The older berth, from `BERTH_UPGRADE_BASE` (set by `scripts/test`).
fn base_berth() -> Option<PathBuf> {
    match std::env::var_os("BERTH_UPGRADE_BASE") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "BERTH_UPGRADE_BASE={} is no file", p.display());
            // The tests run it in their workspaces.
            Some(std::path::absolute(&p).unwrap_or(p))
        }
        _ => {
            eprintln!(
                "upgrade test not run: BERTH_UPGRADE_BASE is not set (scripts/test builds the older berth with scripts/build-upgrade-base)"
            );
            None
        }
    }
}

/// A deployment that uses most container settings, so that a change in how
/// any of them enters the spec hash shows as a recreate.
fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"name = "{name}"

[services.db]
image = "{image}"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
volumes = ["data:/data", "/etc/hostname:/host-hostname:ro"]
env = {{ DB_DATABASE = "mail", DB_MODE = "primary" }}
labels = {{ "org.example.role" = "db" }}
hostname = "db.example.org"
restart = "always"
stop_timeout = "5s"
stop_signal = "SIGTERM"
memory = "64m"
cpus = 0.5
cap_drop = ["MKNOD"]
health = {{ cmd = ["true"], interval = "1s", timeout = "1s", retries = 3 }}

[services.web]
image = "{image}"
count = 2
links = ["db"]
entrypoint = ["sh", "-c"]
command = ["trap 'exit 0' TERM; while :; do sleep 1; done"]
ports = ["80"]
user = "0"
workdir = "/tmp"
read_only = true
stop_timeout = 5
"#
    )
}

fn ids(deployment: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--format",
        "{{.Names}} {{.ID}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, i)| (n.to_string(), i.to_string()))
    .collect();
    out.sort();
    out
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_older_berths_docker_deployment_is_kept_as_it_is() {
    let Some(old) = base_berth() else { return };
    let name = unique_name("upg");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("berth.toml", &deployment(&name, base_image()));
    ok(&berth(
        &old,
        &ws,
        &["apply", "--integration", "docker", "--wait"],
    ));
    let before = ids(&name);
    assert_eq!(before.len(), 3, "{before:?}");

    // This build sees nothing to do, and applying changes nothing.
    let plan = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let applied = run(&ws, &["apply", "--integration", "docker"]);
    ok(&applied);
    assert_eq!(ids(&name), before, "{}", show(&applied));
    let current: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            ws.state_dir()
                .join(format!("deployments/{name}/current.json")),
        )
        .unwrap_or_else(|e| panic!("current.json: {e}")),
    )
    .unwrap_or_else(|e| panic!("current.json: {e}"));
    assert_eq!(current["revision"], 1, "no new revision: {current}");

    // And it runs what the older berth made: a restart is a fresh container.
    ok(&run(&ws, &["restart", "web"]));
    let after = ids(&name);
    assert_eq!(after[0], before[0], "db untouched");
    assert_ne!(after[1].1, before[1].1, "web-1 got a fresh container");
}

#[test]
fn an_older_berths_systemd_units_keep_running_when_berth_is_replaced() {
    let Some(old) = base_berth() else { return };
    let host = SystemdHost::boot(&old);
    let d = HostDeployment::new(&host, "upgsd");
    d.write(&deployment("NAME", "IMAGE"));
    d.apply();
    let services = ["db", "web-1", "web-2"];
    let mut since = Vec::new();
    for s in services {
        d.wait_active(s);
        since.push(host.unit_property(&d.unit(s), "ActiveEnterTimestamp"));
    }
    let before = ids(&d.name);

    // Replace the binary in place, as a package upgrade does.
    docker_ok(&[
        "cp",
        "-L",
        &bin().to_string_lossy(),
        &format!("{}:{HOST_BERTH}.new", host.name),
    ]);
    host.sh_ok(&format!("mv {HOST_BERTH}.new {HOST_BERTH}"));
    let plan = d.berth("plan --integration systemd");
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    d.apply();
    assert_eq!(ids(&d.name), before);
    for (s, t) in services.iter().zip(&since) {
        assert_eq!(
            &host.unit_property(&d.unit(s), "ActiveEnterTimestamp"),
            t,
            "{s}: its unit was restarted"
        );
    }
}
