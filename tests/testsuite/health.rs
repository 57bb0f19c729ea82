//! Health checks that act, against the real engine: an unhealthy instance is
//! replaced by a fresh container with its data kept, a dependent starts only
//! once its dependency is healthy, `apply --wait` fails naming what is not
//! healthy, an image's HEALTHCHECK is honoured and `health = false` turns it off.

use std::time::Duration;

use crate::support::*;

/// Generous upper bound for anything the engine and berth have to do.
const WAIT: Duration = Duration::from_secs(90);

fn running(container: &str) -> bool {
    inspect("container", container)
        .and_then(|c| c["State"]["Running"].as_bool())
        .unwrap_or(false)
}

fn health(container: &str) -> Option<String> {
    inspect("container", container)
        .and_then(|c| c["State"]["Health"]["Status"].as_str().map(String::from))
}

fn container_id(container: &str) -> Option<String> {
    inspect("container", container).and_then(|c| c["Id"].as_str().map(String::from))
}

fn ps_json(ws: &Workspace, file: &str) -> serde_json::Value {
    let out = run(ws, &["-f", file, "ps", "--output", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ps json: {e}: {}", show(&out)))
}

fn ps_row(ps: &serde_json::Value, container: &str) -> serde_json::Value {
    ps.as_array()
        .and_then(|rows| rows.iter().find(|r| r["instance"] == container))
        .cloned()
        .unwrap_or_else(|| panic!("no ps row for {container}: {ps}"))
}

#[test]
fn up_replaces_an_unhealthy_container_keeps_its_data_and_starts_dependents_after_healthy() {
    let name = unique_name("hlthup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image("healthvol", "VOLUME /data");
    // `web` turns healthy only a few seconds after it starts (its check
    // looks for /www/ok, created late). `app` links to it and, when it
    // starts, asks web over HTTP for that very file: it gets it only if
    // web's check already passed when app was started.
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["sh", "-c", "echo boot >> /data/boots; mkdir -p /www; (sleep 3; echo ok > /www/ok) & exec httpd -f -p 80 -h /www"]
stop_timeout = 2
health = {{ cmd = "test -f /www/ok", interval = "1s", timeout = "2s", retries = 2, start_period = "60s" }}

[services.app]
image = "{image}"
links = ["web"]
command = ["sh", "-c", "if wget -q -O /dev/null http://web/ok; then echo dependency-was-healthy; else echo dependency-was-not-healthy; fi; exec httpd -f -p 80"]
stop_timeout = 2

# Never healthy, but only reported: left running, and (nothing links to it)
# holding nobody back.
[services.lazy]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
health = {{ cmd = "echo lazy-check-failed; exit 1", interval = "1s", retries = 1, on_unhealthy = "ignore" }}
"#
        ),
    );
    let mut upp = Background::spawn(bin(), &ws, "up", &["-f", "deploy.toml", "up"]);
    let web = format!("{name}-web");
    let app = format!("{name}-app");
    assert!(
        wait_for(WAIT, || running(&app)),
        "app never ran: {}",
        upp.output()
    );
    assert!(
        wait_for(WAIT, || upp.output().contains("dependency-was-")),
        "{}",
        upp.output()
    );
    assert!(
        upp.output().contains("dependency-was-healthy"),
        "app started before web was healthy: {}",
        upp.output()
    );
    assert_eq!(health(&web).as_deref(), Some("healthy"));
    // The engine's view agrees: app started after web's first passing check.
    let app_started = inspect("container", &app).expect("app")["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let web_c = inspect("container", &web).expect("web");
    let web_started = web_c["State"]["StartedAt"].as_str().unwrap_or_default();
    assert!(
        app_started.as_str() > web_started,
        "{app_started} vs {web_started}"
    );

    let lazy = format!("{name}-lazy");
    assert!(
        wait_for(WAIT, || health(&lazy).as_deref() == Some("unhealthy")),
        "{}",
        upp.output()
    );
    let lazy_id = container_id(&lazy).expect("lazy container");

    // The check starts failing: berth replaces the container.
    let first = container_id(&web).expect("web container");
    docker_ok(&["exec", &web, "rm", "/www/ok"]);
    assert!(
        wait_for(WAIT, || container_id(&web).is_some_and(|id| id != first)
            && running(&web)),
        "unhealthy container was not replaced: {}",
        upp.output()
    );
    assert!(
        upp.output().contains("is unhealthy (last check: exit 1"),
        "the replacement is logged with the last check: {}",
        upp.output()
    );
    // Fresh container, same volume: two boots recorded.
    let boots = docker_ok(&["exec", &web, "cat", "/data/boots"]);
    assert_eq!(boots.lines().count(), 2, "same volume, two boots: {boots}");
    // And it turns healthy again.
    assert!(
        wait_for(WAIT, || health(&web).as_deref() == Some("healthy")),
        "{}",
        upp.output()
    );
    let ps = ps_json(&ws, "deploy.toml");
    let row = ps_row(&ps, &web);
    assert_eq!(row["health"], "healthy", "{row}");
    assert!(
        row["last_check"]
            .as_str()
            .is_some_and(|c| c.starts_with("exit 0")),
        "{row}"
    );
    assert_eq!(ps_row(&ps, &app)["health"], "-");
    // on_unhealthy = "ignore": the same container all along, still unhealthy.
    assert_eq!(container_id(&lazy).as_deref(), Some(lazy_id.as_str()));
    let lazy_row = ps_row(&ps, &lazy);
    assert_eq!(lazy_row["health"], "unhealthy", "{lazy_row}");
    assert_eq!(
        lazy_row["last_check"], "exit 1: lazy-check-failed",
        "{lazy_row}"
    );

    upp.signal("INT");
    let status = upp.wait_exit(WAIT).expect("berth up exits after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", upp.output());
}

#[test]
fn apply_wait_fails_naming_the_never_healthy_service_and_its_check_output() {
    let name = unique_name("hlthwait");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image("health", "");
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.good]
image = "{image}"
command = ["sh", "-c", "touch /tmp/ok; exec httpd -f -p 80"]
stop_timeout = 1
health = {{ cmd = ["test", "-f", "/tmp/ok"], interval = "1s", retries = 1 }}

[services.bad]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
health = {{ cmd = "echo database-not-reachable; exit 3", interval = "1s", retries = 1 }}
"#
        ),
    );
    let out = run(
        &ws,
        &[
            "-f",
            "deploy.toml",
            "apply",
            "--integration",
            "docker",
            "--wait",
            "--wait-timeout",
            "15s",
        ],
    );
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    let bad = format!("{name}-bad");
    let good = format!("{name}-good");
    let line = err
        .lines()
        .find(|l| l.contains(&bad) && l.contains("last check"))
        .unwrap_or_else(|| panic!("no line names {bad}: {text}"));
    assert!(line.contains("unhealthy"), "{line}");
    assert!(line.contains("exit 3: database-not-reachable"), "{line}");
    assert!(
        !err.lines()
            .any(|l| l.contains(&good) && l.contains("last check")),
        "the healthy service is not listed: {text}"
    );
    // No berth process watches under the docker integration: apply said so.
    assert!(
        err.contains("warning: service bad has on_unhealthy = \"restart\""),
        "{text}"
    );
    assert!(err.contains("warning: service good"), "{text}");

    // ps and logs --health show the check results.
    let ps = ps_json(&ws, "deploy.toml");
    let row = ps_row(&ps, &bad);
    assert_eq!(row["health"], "unhealthy", "{row}");
    assert_eq!(
        row["last_check"].as_str(),
        Some("exit 3: database-not-reachable"),
        "{row}"
    );
    let table = run(&ws, &["-f", "deploy.toml", "ps"]);
    let table_text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table_text.lines().any(|l| l.contains(&bad)
            && l.contains("unhealthy")
            && l.contains("exit 3: database-not-reachable")),
        "{}",
        show(&table)
    );
    let logs = run(&ws, &["-f", "deploy.toml", "logs", "bad", "--health"]);
    assert!(logs.status.success(), "{}", show(&logs));
    let logs_text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs_text.contains(&format!("{bad}: unhealthy")),
        "{logs_text}"
    );
    assert!(logs_text.contains("exit 3"), "{logs_text}");
    assert!(logs_text.contains("database-not-reachable"), "{logs_text}");

    // With only the healthy service, --wait succeeds.
    ws.write(
        "good.toml",
        &format!(
            r#"name = "{name}"

[services.good]
image = "{image}"
command = ["sh", "-c", "touch /tmp/ok; exec httpd -f -p 80"]
stop_timeout = 1
health = {{ cmd = ["test", "-f", "/tmp/ok"], interval = "1s", retries = 1 }}
"#
        ),
    );
    let out = run(
        &ws,
        &[
            "-f",
            "good.toml",
            "apply",
            "--integration",
            "docker",
            "--wait",
            "--wait-timeout",
            "60s",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(health(&good).as_deref(), Some("healthy"));
}

#[test]
fn an_image_healthcheck_is_honoured_and_health_false_disables_it() {
    let name = unique_name("hlthimg");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image(
        "healthimg",
        "HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD echo image-check-ran; test -f /tmp/ok",
    );
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.checked]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1

[services.off]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
health = false
"#
        ),
    );
    let out = run(
        &ws,
        &["-f", "deploy.toml", "apply", "--integration", "docker"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: service checked"), "{}", show(&out));
    assert!(!err.contains("warning: service off"), "{}", show(&out));
    let checked = format!("{name}-checked");
    let off = format!("{name}-off");
    // The engine runs the image's check on `checked`...
    assert!(
        wait_for(WAIT, || health(&checked).as_deref() == Some("unhealthy")),
        "{:?}",
        inspect("container", &checked).map(|c| c["State"].clone())
    );
    let ps = ps_json(&ws, "deploy.toml");
    let row = ps_row(&ps, &checked);
    assert_eq!(row["health"], "unhealthy", "{row}");
    assert!(
        row["last_check"]
            .as_str()
            .is_some_and(|c| c.starts_with("exit 1: image-check-ran")),
        "{row}"
    );
    // ...and not on `off`: its container's check is NONE and it has no health state.
    let c = inspect("container", &off).expect("off container");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"][0], "NONE",
        "{}",
        c["Config"]
    );
    assert!(c["State"]["Health"].is_null(), "{}", c["State"]);
    assert_eq!(ps_row(&ps, &off)["health"], "-");

    // Making the check pass turns `checked` healthy: `apply --wait` succeeds.
    docker_ok(&["exec", &checked, "touch", "/tmp/ok"]);
    let out = run(
        &ws,
        &[
            "-f",
            "deploy.toml",
            "apply",
            "--integration",
            "docker",
            "--wait",
            "--wait-timeout",
            "60s",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(health(&checked).as_deref(), Some("healthy"));
}

#[test]
fn apply_starts_a_linked_service_only_after_its_dependency_is_healthy() {
    let name = unique_name("hlthlink");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image("health", "");
    // As under `up`: web turns healthy late; app asks web for the file its
    // check looks for as soon as app starts.
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["sh", "-c", "mkdir -p /www; (sleep 3; echo ok > /www/ok) & exec httpd -f -p 80 -h /www"]
stop_timeout = 1
health = {{ cmd = "test -f /www/ok", interval = "1s", retries = 2, start_period = "60s", on_unhealthy = "ignore" }}

[services.app]
image = "{image}"
links = ["web"]
command = ["sh", "-c", "if wget -q -O /dev/null http://web/ok; then echo dependency-was-healthy; else echo dependency-was-not-healthy; fi; exec httpd -f -p 80"]
stop_timeout = 1
"#
        ),
    );
    let out = run(
        &ws,
        &[
            "-f",
            "deploy.toml",
            "apply",
            "--integration",
            "docker",
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    // on_unhealthy = "ignore": nothing to warn about.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        show(&out)
    );
    let app = format!("{name}-app");
    assert!(
        wait_for(WAIT, || docker(&["logs", &app])
            .stdout
            .starts_with(b"dependency-was-")),
        "{}",
        show(&docker(&["logs", &app]))
    );
    let logs = String::from_utf8_lossy(&docker(&["logs", &app]).stdout).into_owned();
    assert!(
        logs.contains("dependency-was-healthy"),
        "app started before web was healthy: {logs}"
    );
    assert_eq!(health(&format!("{name}-web")).as_deref(), Some("healthy"));
}
