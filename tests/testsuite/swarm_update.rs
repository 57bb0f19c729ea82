//! `berth update --target swarm`: a tag that moved in the cluster's
//! registry is taken through Swarm's rolling update; a build that does not
//! become healthy is rolled back by Swarm, and berth puts back the data the
//! service had before (its snapshot, taken on its node), records the bad
//! digest and skips it until the tag moves on.

use std::process::Stdio;
use std::time::Duration;

use berth_test_support::swarm::SwarmCluster;

use crate::support::{Workspace, busybox_image, show, unique_name, wait_for};
use crate::swarm::{berth, berth_command, ok};

/// A build labelled `v`; a healthy one has the file its check looks for.
fn build(v: u32, healthy: bool) -> String {
    let ok = if healthy { "RUN touch /ok\n" } else { "" };
    busybox_image("swupdate", &format!("{ok}LABEL v={v}"))
}

/// The running containers of `service` on every node: node, ID and the `v`
/// label of their image (a task still starting is among them).
fn containers(c: &SwarmCluster, service: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for node in 0..c.nodes() {
        let ps = c.docker(
            node,
            &[
                "ps",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
                "--format",
                "{{.ID}} {{.Label \"v\"}}",
            ],
        );
        for line in String::from_utf8_lossy(&ps.stdout).lines() {
            if let Some((id, v)) = line.split_once(' ') {
                out.push((node, id.to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// The `v` label of what `service` runs, when exactly one task runs.
fn version(c: &SwarmCluster, service: &str) -> String {
    match containers(c, service).as_slice() {
        [(_, _, v)] => v.clone(),
        _ => String::new(),
    }
}

/// Run `script` in the container of `service` running build `v` (any
/// build when `None`); false when there is none or the script fails.
fn in_build(c: &SwarmCluster, service: &str, v: Option<&str>, script: &str) -> bool {
    containers(c, service)
        .into_iter()
        .find(|(_, _, have)| v.is_none_or(|v| v == have))
        .is_some_and(|(node, id, _)| {
            c.docker(node, &["exec", &id, "sh", "-c", script])
                .status
                .success()
        })
}

fn in_task(c: &SwarmCluster, service: &str, script: &str) -> bool {
    in_build(c, service, None, script)
}

#[test]
fn update_on_a_swarm_takes_good_builds_and_rolls_back_a_bad_one_with_its_data() {
    let c = SwarmCluster::start(3);
    let registry = c.start_registry();
    let ws = Workspace::new();
    let name = unique_name("swup");
    let reference = format!("{registry}/berth-test/{name}:latest");
    let push = |v: u32, healthy: bool| {
        let image = build(v, healthy);
        c.load_image(&image);
        c.push(0, &image, &reference)
    };
    let first = push(1, true);
    let log = ws.path().join("notified");
    let log = log.to_str().expect("UTF-8 path").to_string();
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"
notify = ["/bin/sh", "-c", "echo \"$$BERTH_EVENT $$BERTH_SERVICE $$BERTH_FROM $$BERTH_TO\" >> {log}"]

[services.app]
image = "{reference}"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
volumes = ["data:/data"]
stop_timeout = 2
health = {{ cmd = ["test", "-f", "/ok"], interval = "1s", timeout = "1s", retries = 6 }}
"#
        ),
    );
    let notified = || std::fs::read_to_string(&log).unwrap_or_default();
    let app = format!("{name}-app");

    ok(&c, &ws, &["apply"]);
    assert_eq!(version(&c, &app), "1");
    assert!(in_task(&c, &app, "touch /data/v1"));
    let out = berth(&c, &ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "nothing moved: {}", show(&out));

    // A good build under the same tag: listed, then taken, data kept.
    let good = push(2, true);
    let out = berth(&c, &ws, &["update", "--check", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["changes"][0]["service"], "app", "{json}");
    assert_eq!(json["changes"][0]["from"], first.as_str(), "{json}");
    assert_eq!(json["changes"][0]["to"], good.as_str(), "{json}");
    assert_eq!(version(&c, &app), "1", "--check touches nothing");
    ok(&c, &ws, &["update"]);
    assert_eq!(version(&c, &app), "2");
    assert!(in_task(&c, &app, "test -f /data/v1"), "data kept");
    assert_eq!(
        notified().trim(),
        format!("update app {first} {good}"),
        "the hook was told"
    );

    // A bad build: starts, never healthy. Data written while it runs is
    // gone after the rollback; data from before is there.
    assert!(in_task(&c, &app, "touch /data/before"));
    let bad = push(3, false);
    let child = berth_command(&c, &ws, &["update"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run update");
    assert!(
        wait_for(Duration::from_secs(120), || in_build(
            &c,
            &app,
            Some("3"),
            "touch /data/after"
        )),
        "the bad build never ran"
    );
    let out = child.wait_with_output().expect("update finishes");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("update of app") && err.contains("rolled back"),
        "{}",
        show(&out)
    );
    assert!(
        wait_for(Duration::from_secs(60), || version(&c, &app) == "2"),
        "not back on the good build"
    );
    assert!(in_task(
        &c,
        &app,
        "test -f /data/before && test -f /data/v1"
    ));
    assert!(
        !in_task(&c, &app, "test -f /data/after"),
        "data written by the bad build survived the rollback"
    );
    let lines = notified();
    assert_eq!(
        lines.lines().last().unwrap_or_default(),
        format!("rollback app {bad} {good}"),
        "{lines}"
    );

    // An apply of the file does not take the bad digest either.
    let out = berth(&c, &ws, &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        show(&out).contains(&format!(
            "names {bad}, which `berth update` rolled back from"
        )),
        "{}",
        show(&out)
    );

    // The bad digest is not tried again; a fixed build is taken.
    let out = berth(&c, &ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    ok(&c, &ws, &["update"]);
    assert_eq!(version(&c, &app), "2");
    push(4, true);
    ok(&c, &ws, &["update"]);
    assert_eq!(version(&c, &app), "4");
    assert!(in_task(&c, &app, "test -f /data/before"));
    let out = berth(&c, &ws, &["history"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rollback of app from") && text.contains("update app to"),
        "{text}"
    );
}
