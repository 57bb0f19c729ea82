//! `berth update`: a tag that moved in the registry is taken (data kept); a
//! build that does not become healthy is rolled back with its data, and
//! skipped by later updates until the tag moves on.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// `log`: where the notify command appends one line per event; `hook`:
/// the `notify_url`.
fn file(name: &str, image: &str, log: &str, hook: &str) -> String {
    format!(
        r#"name = "{name}"
notify = ["/bin/sh", "-c", "echo \"$$BERTH_EVENT $$BERTH_SERVICE $$BERTH_FROM $$BERTH_TO [$${{BERTH_REASON:+reason}}]\" >> {log}"]
notify_url = "{hook}"

[services.app]
image = "{image}"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
volumes = ["data:/data"]
health = {{ cmd = ["test", "-f", "/ok"], interval = "1s", timeout = "1s", retries = 2 }}
"#
    )
}

/// The `v` label of the image container `c` runs.
fn version(c: &str) -> String {
    docker_ok(&["inspect", "-f", "{{index .Config.Labels \"v\"}}", c])
        .trim()
        .to_string()
}

fn has_file(c: &str, path: &str) -> bool {
    docker(&["exec", c, "test", "-f", path]).status.success()
}

fn build(v: u32, healthy: bool) -> String {
    let ok = if healthy { "RUN touch /ok\n" } else { "" };
    busybox_image("update", &format!("{ok}LABEL v={v}"))
}

#[test]
fn update_takes_good_builds_and_rolls_back_a_bad_one_with_its_data() {
    let name = unique_name("update");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut reg = Registry::start(None);
    let repo = format!("{name}/app:latest");
    let image = reg.push(&build(1, true), &repo);
    let log = ws.path().join("notified");
    let log = log.to_str().expect("UTF-8 path");
    let sink = WebhookSink::start();
    // The token in the path must never be printed.
    let hook = format!("{}/hook/s3cr3t-t0ken", sink.base);
    ws.write("berth.toml", &file(&name, &image, log, &hook));
    let notified = || std::fs::read_to_string(log).unwrap_or_default();
    // berth trusts the receiver's certificate the way it trusts any CA.
    let run = |ws: &Workspace, args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("BERTH_UNIT_DIR", ws.unit_dir())
            .env("SSL_CERT_FILE", sink.cert())
            .current_dir(ws.path())
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    };
    let c = format!("{name}-app");
    let docker_args = ["--integration", "docker"];

    let out = run(&ws, &["apply", "--integration", "docker", "--wait"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(version(&c), "1");
    docker_ok(&["exec", &c, "touch", "/data/v1"]);

    let out = run(&ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "nothing moved: {}", show(&out));

    // A good new build under the same tag.
    reg.push(&build(2, true), &repo);
    let out = run(&ws, &["update", "--check", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["changes"][0]["service"], "app", "{json}");
    let good = json["changes"][0]["to"]
        .as_str()
        .expect("to digest")
        .to_string();
    assert_eq!(version(&c), "1", "--check touches nothing");
    let out = run(&ws, &[&["update"][..], &docker_args[..]].concat());
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(version(&c), "2");
    assert!(has_file(&c, "/data/v1"), "data kept across the update");
    let lines = notified();
    assert!(lines.starts_with("update app sha256:"), "{lines}");
    assert!(
        lines.trim_end().ends_with(&format!(" {good} [reason]")),
        "{lines}"
    );
    let out = run(&ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // A bad build: starts, never healthy.
    docker_ok(&["exec", &c, "touch", "/data/before"]);
    reg.push(&build(3, false), &repo);
    let child = Command::new(bin())
        .args([
            "update",
            "--integration",
            "docker",
            "--health-timeout",
            "8s",
        ])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("SSL_CERT_FILE", sink.cert())
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run update");
    // Data written while the bad build runs must not survive the rollback.
    assert!(
        wait_for(Duration::from_secs(120), || {
            docker(&["inspect", "-f", "{{index .Config.Labels \"v\"}}", &c])
                .stdout
                .starts_with(b"3")
                && docker(&["exec", &c, "touch", "/data/after"])
                    .status
                    .success()
        }),
        "the bad build never ran"
    );
    let out = child.wait_with_output().expect("update finishes");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("update of app"), "{}", show(&out));
    assert!(err.contains("rolled back"), "{}", show(&out));
    assert_eq!(version(&c), "2", "back on the good image");
    assert!(has_file(&c, "/data/before"), "data from before the update");
    assert!(
        !has_file(&c, "/data/after"),
        "data from the bad build is gone"
    );
    assert!(has_file(&c, "/data/v1"));
    let lines = notified();
    let last = lines.lines().last().unwrap_or_default();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(last.starts_with("rollback app sha256:"), "{lines}");
    assert!(
        last.ends_with(&format!(" {good} [reason]")),
        "from the bad digest back to the good one: {lines}"
    );
    // The webhook was told the same, as JSON, over TLS, at its path.
    let posts = sink.received();
    assert_eq!(posts.len(), 2, "{posts:?} {}", show(&out));
    for (post, event) in posts.iter().zip(["update", "rollback"]) {
        let (path, rest) = post.split_once(' ').expect("path");
        assert_eq!(path, "/hook/s3cr3t-t0ken");
        let (ctype, body) = rest.split_once(' ').expect("content type");
        assert_eq!(ctype, "application/json");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(v["event"], event, "{v}");
        assert_eq!(v["deployment"], name.as_str(), "{v}");
        assert_eq!(v["service"], "app", "{v}");
    }
    let v: serde_json::Value =
        serde_json::from_str(posts[1].splitn(3, ' ').nth(2).unwrap_or("")).expect("JSON");
    assert_eq!(
        v["to"],
        good.as_str(),
        "rolled back to the good digest: {v}"
    );
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    assert!(!show(&out).contains("s3cr3t"), "{}", show(&out));

    // The bad digest is not tried again.
    let out = run(&ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = run(&ws, &[&["update"][..], &docker_args[..]].concat());
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(version(&c), "2");

    // A fixed build is taken.
    reg.push(&build(4, true), &repo);
    let out = run(&ws, &[&["update"][..], &docker_args[..]].concat());
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(version(&c), "4");
    assert!(has_file(&c, "/data/before"));

    // Every update and the rollback are revisions; rollback works across them.
    let out = run(&ws, &["history", "--output", "json"]);
    let revs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    // Each says why it was made.
    let causes: Vec<String> = revs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["cause"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let update_to_good = format!("update app to {good}");
    let expected = [
        "apply",
        update_to_good.as_str(),
        "update app to ",
        "rollback of app from ",
        "update app to ",
    ];
    assert_eq!(causes.len(), expected.len(), "{causes:?}");
    for (cause, want) in causes.iter().zip(expected) {
        assert!(cause.starts_with(want), "{causes:?}");
    }
    let out = run(&ws, &["rollback", "--integration", "docker"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(version(&c), "2");
    let out = run(&ws, &["history"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let last = table.lines().last().unwrap_or_default();
    assert!(last.contains("rollback to revision "), "{table}");
    assert!(table.contains("CAUSE"), "{table}");
}

/// Removes a local tag on drop (also when the test fails).
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

#[test]
fn update_passes_over_an_image_its_registry_does_not_have_unless_it_is_named() {
    let name = unique_name("update-local");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut reg = Registry::start(None);
    let image = reg.push(&build(1, true), &format!("{name}/app:latest"));
    // Built here and never pushed: the registry has no such tag.
    let local = format!("{}/{name}/local:latest", reg.host);
    docker_ok(&["tag", &build(1, true), &local]);
    let _untag = Untag(local.clone());
    let sleeper = r#"command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]"#;
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.app]\nimage = \"{image}\"\n{sleeper}\n[services.local]\nimage = \"{local}\"\n{sleeper}\n"
        ),
    );
    let out = run(&ws, &["apply", "--integration", "docker", "--wait"]);
    assert!(out.status.success(), "{}", show(&out));

    let out = run(&ws, &["update", "--check", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["changes"], serde_json::json!([]), "{json}");
    assert_eq!(json["not_checked"][0]["service"], "local", "{json}");
    let out = run(&ws, &["update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: local") && err.contains("not checked"),
        "{}",
        show(&out)
    );

    // Named, it must be checked: the registry's refusal is the answer.
    let out = run(&ws, &["update", "--check", "local"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&local),
        "{}",
        show(&out)
    );
}

/// The file of [`file`] with a deployment-level `auto_update` every 10 s.
fn scheduled_file(name: &str, image: &str, log: &str) -> String {
    file(name, image, log, "http://unused.invalid/")
        .replacen("notify_url = \"http://unused.invalid/\"\n", "", 1)
        .replacen(
        "\n[services.app]",
        "auto_update = { schedule = \"every 10s\", randomized_delay = \"0s\", health_timeout = \"8s\", settle = \"1s\" }\n\n[services.app]",
        1,
    )
}

#[test]
fn under_berth_up_the_schedule_takes_good_builds_and_rolls_back_a_bad_one_with_its_data() {
    let name = unique_name("autoup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut reg = Registry::start(None);
    let repo = format!("{name}/app:latest");
    let image = reg.push(&build(1, true), &repo);
    let log = ws.path().join("notified");
    let log = log.to_str().expect("UTF-8 path");
    ws.write("berth.toml", &scheduled_file(&name, &image, log));
    let notified = || std::fs::read_to_string(log).unwrap_or_default();
    let c = format!("{name}-app");
    let up = Background::spawn(bin(), &ws, "up", &["up", "--no-ssh"]);
    let healthy = |v: &str| {
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"v\"}} {{.State.Health.Status}}",
            &c,
        ])
        .stdout
        .starts_with(format!("{v} healthy").as_bytes())
    };
    let long = Duration::from_secs(90);
    assert!(wait_for(long, || healthy("1")), "{}", up.output());
    docker_ok(&["exec", &c, "touch", "/data/v1"]);

    // A good build: the next fire takes it, data kept.
    reg.push(&build(2, true), &repo);
    assert!(wait_for(long, || healthy("2")), "{}", up.output());
    assert!(has_file(&c, "/data/v1"), "data kept across the update");
    assert!(
        wait_for(long, || notified().starts_with("update app sha256:")),
        "{}",
        up.output()
    );

    // A bad build: it runs, never gets healthy, and is rolled back with its data.
    docker_ok(&["exec", &c, "touch", "/data/before"]);
    reg.push(&build(3, false), &repo);
    assert!(
        wait_for(long, || {
            docker(&["inspect", "-f", "{{index .Config.Labels \"v\"}}", &c])
                .stdout
                .starts_with(b"3")
                && docker(&["exec", &c, "touch", "/data/after"])
                    .status
                    .success()
        }),
        "the bad build never ran: {}",
        up.output()
    );
    assert!(
        wait_for(long, || notified().contains("rollback app ")),
        "{}",
        up.output()
    );
    assert!(wait_for(long, || healthy("2")), "{}", up.output());
    assert!(has_file(&c, "/data/before"), "data from before the update");
    assert!(
        !has_file(&c, "/data/after"),
        "data from the bad build is gone"
    );

    // Later fires pass the bad digest over, and the good build stays put
    // (the same container: no flapping).
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &c]);
    assert!(
        wait_for(long, || up
            .output()
            .matches("skipped until the tag moves on")
            .count()
            >= 2),
        "{}",
        up.output()
    );
    assert_eq!(docker_ok(&["inspect", "-f", "{{.Id}}", &c]), id);
    assert_eq!(
        up.output().matches("updating app to").count(),
        2,
        "the bad digest was tried again: {}",
        up.output()
    );

    // A fixed build is taken.
    reg.push(&build(4, true), &repo);
    assert!(wait_for(long, || healthy("4")), "{}", up.output());
    assert!(has_file(&c, "/data/before"));
    up.signal("INT");
}

#[test]
fn update_of_the_applied_deployment_needs_no_file_and_auto_takes_only_the_services_it_is_on_for() {
    let name = unique_name("update-auto");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut reg = Registry::start(None);
    let a = format!("{name}/a:latest");
    let b = format!("{name}/b:latest");
    let ia = reg.push(&build(1, true), &a);
    let ib = reg.push(&build(1, true), &b);
    let sleeper = r#"command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]"#;
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.a]\nimage = \"{ia}\"\nauto_update = true\n{sleeper}\n[services.b]\nimage = \"{ib}\"\n{sleeper}\n"
        ),
    );
    // A swarm has its own way to update (exit 2 before the engine is asked).
    let out = run(&ws, &["update", "--target", "swarm"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("berth apply --target swarm"),
        "{}",
        show(&out)
    );
    // --integration docker has nothing to run the schedule with.
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auto_update is on for a"),
        "{}",
        show(&out)
    );
    // Only written: the unit directory is the test's own.
    let out = run(
        &ws,
        &["apply", "--integration", "systemd", "--no-systemctl"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let timer = std::fs::read_to_string(ws.unit_dir().join(format!("berth-update-{name}.timer")))
        .expect("the timer unit");
    assert!(timer.contains("OnCalendar=*-*-* 00:00:00 UTC"), "{timer}");
    let service =
        std::fs::read_to_string(ws.unit_dir().join(format!("berth-update-{name}.service")))
            .expect("the update service");
    assert!(
        service.contains(&format!("update --deployment {name} --auto")),
        "{service}"
    );
    let out = run(&ws, &["plan", "--integration", "systemd"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("scheduled updates"),
        "the units are up to date: {}",
        show(&out)
    );

    reg.push(&build(2, true), &a);
    reg.push(&build(2, true), &b);
    // The file has moved away: the applied deployment is read instead.
    std::fs::remove_file(ws.path().join("berth.toml")).expect("remove the file");
    let out = run(
        &ws,
        &[
            "update",
            "--deployment",
            &name,
            "--auto",
            "--check",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let changed: Vec<&str> = json["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["service"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(changed, ["a"], "{json}");
    let out = run(&ws, &["update", "--deployment", &name, "--check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("b\t")),
        "without --auto every tag is looked at: {}",
        show(&out)
    );

    // Turning auto_update off removes the units.
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.a]\nimage = \"{ia}\"\n{sleeper}\n[services.b]\nimage = \"{ib}\"\n{sleeper}\n"
        ),
    );
    let out = run(&ws, &["plan", "--integration", "systemd"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "remove    unit berth-update-{name}.timer (scheduled updates)"
        )),
        "{}",
        show(&out)
    );
    let out = run(
        &ws,
        &["apply", "--integration", "systemd", "--no-systemctl"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !ws.unit_dir()
            .join(format!("berth-update-{name}.timer"))
            .exists()
    );
    assert!(
        !ws.unit_dir()
            .join(format!("berth-update-{name}.service"))
            .exists()
    );
}

#[test]
fn under_systemd_the_timer_takes_good_builds_and_rolls_back_a_bad_one_with_its_data() {
    use berth_test_support::systemd_host::{HostDeployment, SystemdHost};
    let host = SystemdHost::boot(bin());
    let d = HostDeployment::new(&host, "autosd");
    let mut reg = Registry::start(None);
    let repo = format!("{}/app:latest", d.name);
    let image = reg.push(&build(1, true), &repo);
    // The hook runs in the host, where berth runs.
    let log = "/root/notified";
    d.write(&scheduled_file(&d.name, &image, log));
    d.apply();
    let timer = format!("berth-update-{}.timer", d.name);
    let service = format!("berth-update-{}.service", d.name);
    assert_eq!(host.unit_property(&timer, "ActiveState"), "active");
    assert_eq!(host.unit_property(&timer, "UnitFileState"), "enabled");
    let notified = || host.sh_ok(&format!("cat {log} 2>/dev/null || true"));
    let c = d.container("app");
    let healthy = |v: &str| {
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"v\"}} {{.State.Health.Status}}",
            &c,
        ])
        .stdout
        .starts_with(format!("{v} healthy").as_bytes())
        .then_some(())
    };
    let long = Duration::from_secs(120);
    host.wait_for("v1 healthy", long, || healthy("1"));
    d.exec("app", "touch /data/v1");

    // A good build: the timer fires and the update takes it, data kept.
    reg.push(&build(2, true), &repo);
    host.wait_for("v2 healthy after a timer run", long, || healthy("2"));
    assert!(has_file(&c, "/data/v1"), "data kept across the update");
    host.wait_for("the update notified", long, || {
        notified().starts_with("update app sha256:").then_some(())
    });
    d.wait_active("app");

    // A bad build: it runs, never gets healthy, and is rolled back with its data.
    d.exec("app", "touch /data/before");
    reg.push(&build(3, false), &repo);
    host.wait_for("the bad build runs", long, || {
        (docker(&["inspect", "-f", "{{index .Config.Labels \"v\"}}", &c])
            .stdout
            .starts_with(b"3")
            && docker(&["exec", &c, "touch", "/data/after"])
                .status
                .success())
        .then_some(())
    });
    host.wait_for("the rollback notified", long, || {
        notified().contains("rollback app ").then_some(())
    });
    host.wait_for("v2 healthy again", long, || healthy("2"));
    assert!(has_file(&c, "/data/before"), "data from before the update");
    assert!(
        !has_file(&c, "/data/after"),
        "data from the bad build is gone"
    );
    d.wait_active("app");

    // Later fires pass the bad digest over; the container stays.
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &c]);
    host.wait_for("two later runs skip the bad digest", long, || {
        (host
            .unit_journal(&service)
            .matches("was rolled back from before")
            .count()
            >= 2)
            .then_some(())
    });
    assert_eq!(docker_ok(&["inspect", "-f", "{{.Id}}", &c]), id);
    assert_eq!(
        host.unit_journal(&service)
            .matches("updating app to")
            .count(),
        2,
        "the bad digest was tried again:\n{}",
        host.unit_journal(&service)
    );

    // A fixed build is taken.
    reg.push(&build(4, true), &repo);
    host.wait_for("v4 healthy", long, || healthy("4"));
    assert!(has_file(&c, "/data/before"));

    // Destroy removes the timer and its service.
    d.berth_ok("destroy");
    for u in [&timer, &service] {
        assert!(
            !host
                .sh(&format!("test -e /etc/systemd/system/{u}"))
                .status
                .success(),
            "{u} left behind"
        );
        assert_eq!(host.unit_property(u, "LoadState"), "not-found", "{u}");
    }
}
