//! `berth up` against the real engine: fresh containers on restart with the
//! same volumes, backoff on crash loops, stop/start markers, SIGINT and SIGHUP.

use std::time::Duration;

use crate::support::*;

fn running(container: &str) -> bool {
    inspect("container", container)
        .and_then(|c| c["State"]["Running"].as_bool())
        .unwrap_or(false)
}

fn container_id(container: &str) -> Option<String> {
    inspect("container", container).and_then(|c| c["Id"].as_str().map(String::from))
}

fn up(ws: &Workspace, file: &str) -> Background {
    Background::spawn(bin(), ws, "up", &["-f", file, "up"])
}

/// The engine's RFC 3339 UTC time with the fraction padded to nanoseconds,
/// so that times compare as strings.
fn sortable_time(v: &serde_json::Value) -> String {
    let t = v.as_str().expect("a time string");
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}")
}

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn up_restarts_a_killed_container_fresh_and_sigint_cleans_up() {
    let name = unique_name("upkill");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image("upvol", "VOLUME /data");
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.db]
image = "{image}"
command = ["sh", "-c", "echo boot >> /data/boots; echo db-ready; exec httpd -f -p 80"]
stop_timeout = 2

[services.app]
image = "{image}"
links = ["db"]
command = ["sh", "-c", "echo app-up; exec httpd -f -p 80"]
stop_timeout = 2
"#
        ),
    );
    let mut upp = up(&ws, "deploy.toml");
    let db = format!("{name}-db");
    let app = format!("{name}-app");
    assert!(
        wait_for(WAIT, || running(&db) && running(&app)),
        "instances never ran: {}",
        upp.output()
    );
    let first = container_id(&db).expect("db container");
    // Link order: app's container was created after db's had started.
    let db_started = inspect("container", &db).expect("db")["State"]["StartedAt"].clone();
    let app_created = inspect("container", &app).expect("app")["Created"].clone();
    assert!(
        sortable_time(&app_created) >= sortable_time(&db_started),
        "app created at {app_created} before db started at {db_started}"
    );
    // `logs -f` follows the instance into its next container.
    let follow = Background::spawn(
        bin(),
        &ws,
        "follow",
        &["-f", "deploy.toml", "logs", "db", "-f"],
    );
    assert!(
        wait_for(WAIT, || std::fs::read_to_string(&follow.stdout)
            .unwrap_or_default()
            .contains("db-ready")),
        "{}",
        follow.output()
    );
    // Restart policy `no`: restarting is berth's job here.
    let c = inspect("container", &db).expect("db");
    assert_eq!(
        c["HostConfig"]["RestartPolicy"]["Name"].as_str(),
        Some("no")
    );

    docker_ok(&["kill", &db]);
    assert!(
        wait_for(WAIT, || {
            container_id(&db).is_some_and(|id| id != first) && running(&db)
        }),
        "killed container was not replaced: {}",
        upp.output()
    );
    let boots = docker_ok(&["exec", &db, "cat", "/data/boots"]);
    assert_eq!(boots.lines().count(), 2, "same volume, two boots: {boots}");
    assert!(running(&app), "the other instance kept running");
    assert!(
        wait_for(WAIT, || std::fs::read_to_string(&follow.stdout)
            .unwrap_or_default()
            .matches("db-ready")
            .count()
            == 2),
        "logs -f did not follow into the fresh container: {}",
        follow.output()
    );
    drop(follow);

    // Output is prefixed by instance name.
    assert!(
        wait_for(WAIT, || upp.output().contains("db  | db-ready")),
        "{}",
        upp.output()
    );
    assert!(upp.output().contains("app | app-up"), "{}", upp.output());

    let volumes = volumes_of(&name);
    assert!(!volumes.is_empty());
    upp.signal("INT");
    let status = upp.wait_exit(WAIT).expect("berth up exits after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", upp.output());
    assert!(
        containers_of(&name).is_empty(),
        "containers left: {:?}",
        containers_of(&name)
    );
    assert_eq!(volumes_of(&name), volumes, "volumes are kept");
}

#[test]
fn up_backs_off_on_a_crash_loop() {
    let name = unique_name("upcrash");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.crash]
image = "{image}"
command = ["sh", "-c", "echo crashing; exit 1"]
"#,
            image = base_image()
        ),
    );
    // The engine's own record of container creations, streamed live (the
    // engine keeps only a short backlog of past events on a busy host).
    let events_file = ws.path().join("events");
    let mut events = std::process::Command::new("docker")
        .args([
            "events",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--format",
            "{{.ID}}",
        ])
        .stdout(std::fs::File::create(&events_file).expect("events file"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("docker events");
    // Let the event stream attach before anything is created.
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let upp = up(&ws, "deploy.toml");
    let restarts_file = ws
        .state_dir()
        .join(format!("instances/{name}-crash.restarts"));
    let restarts = || -> u64 {
        std::fs::read_to_string(&restarts_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    // Let it crash a few times (waits of 1s, 2s, 4s between starts).
    assert!(
        wait_for(WAIT, || restarts() >= 3),
        "no restarts: {}",
        upp.output()
    );
    let ps = run(&ws, &["-f", "deploy.toml", "ps", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&ps.stdout).expect("ps JSON");
    assert!(
        rows[0]["restarts"].as_u64().is_some_and(|n| n >= 3),
        "ps counts the supervisor's restarts: {}",
        show(&ps)
    );
    let window = started.elapsed() + Duration::from_secs(1);
    drop(upp);
    // Creations seen by the stream up to now; berth up is gone, no more come.
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let _ = events.wait();
    let created = std::fs::read_to_string(&events_file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u32;
    let bound = berth::target::foreground::Backoff::max_starts_within(window);
    eprintln!("crash loop: {created} creations in {window:?} (schedule bound {bound})");
    assert!(created >= 3, "it did restart: {created} creations");
    assert!(
        created <= bound,
        "{created} containers created in {window:?}; the backoff schedule allows at most {bound}"
    );
    // Without backoff a loop of `exit 1` would create dozens in that window.
}

#[test]
fn up_keeps_a_stopped_instance_stopped_until_started() {
    let name = unique_name("upstop");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
"#,
            image = base_image()
        ),
    );
    let upp = up(&ws, "deploy.toml");
    let web = format!("{name}-web");
    assert!(wait_for(WAIT, || running(&web)), "{}", upp.output());

    let out = run(&ws, &["-f", "deploy.toml", "stop", "web"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        container_id(&web).is_none(),
        "stopped instance's container removed"
    );
    // The supervisor polls about once a second; give it several rounds.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        container_id(&web).is_none(),
        "berth up restarted a stopped instance: {}",
        upp.output()
    );
    let ps = run(&ws, &["-f", "deploy.toml", "ps", "--output", "json"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("\"state\": \"stopped\""),
        "{}",
        show(&ps)
    );

    let out = run(&ws, &["-f", "deploy.toml", "start", "web"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(running(&web), "{}", upp.output());

    let before = container_id(&web);
    let out = run(&ws, &["-f", "deploy.toml", "restart", "web"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(running(&web));
    assert_ne!(
        container_id(&web),
        before,
        "restart gives a fresh container"
    );
}

#[test]
fn up_applies_a_changed_file_on_sighup() {
    let name = unique_name("uphup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    let file = |keep_env: &str, with_c: bool, with_a: bool| {
        let mut s = format!("name = \"{name}\"\n");
        if with_a {
            s.push_str(&format!(
                "\n[services.a]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\"]\nstop_timeout = 1\n"
            ));
        }
        s.push_str(&format!(
            "\n[services.b]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\"]\nenv = {{ FLAVOUR = \"{keep_env}\" }}\nstop_timeout = 1\n"
        ));
        s.push_str(&format!(
            "\n[services.same]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\"]\nstop_timeout = 1\n"
        ));
        if with_c {
            s.push_str(&format!(
                "\n[services.c]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\"]\nstop_timeout = 1\n"
            ));
        }
        ws.write("deploy.toml", &s);
    };
    file("one", false, true);
    let upp = up(&ws, "deploy.toml");
    let (a, b, c, same) = (
        format!("{name}-a"),
        format!("{name}-b"),
        format!("{name}-c"),
        format!("{name}-same"),
    );
    assert!(
        wait_for(WAIT, || running(&a) && running(&b) && running(&same)),
        "{}",
        upp.output()
    );
    let b_id = container_id(&b);
    let same_id = container_id(&same);

    // b changes, a goes, c comes; `same` is untouched.
    file("two", true, false);
    upp.signal("HUP");
    let b_env = |id: &str| -> bool {
        inspect("container", id)
            .and_then(|c| c["Config"]["Env"].as_array().cloned())
            .is_some_and(|env| env.iter().any(|e| e == "FLAVOUR=two"))
    };
    assert!(
        wait_for(WAIT, || running(&c)
            && container_id(&a).is_none()
            && running(&b)
            && b_env(&b)),
        "SIGHUP did not apply the change: {}",
        upp.output()
    );
    assert_ne!(
        container_id(&b),
        b_id,
        "changed instance got a fresh container"
    );
    assert_eq!(
        container_id(&same),
        same_id,
        "unchanged instance left alone"
    );
    assert!(upp.child.id() > 0);

    // An invalid file on SIGHUP keeps the running deployment.
    ws.write("deploy.toml", "name = [\n");
    upp.signal("HUP");
    assert!(
        wait_for(WAIT, || upp.output().contains("not valid")),
        "{}",
        upp.output()
    );
    assert!(running(&b) && running(&c) && running(&same));
}

#[test]
fn up_leaves_a_finished_no_restart_instance_until_started() {
    let name = unique_name("upno");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.job]
image = "{image}"
command = ["sh", "-c", "echo job-ran; sleep 2"]
restart = "no"
"#,
            image = base_image()
        ),
    );
    let upp = up(&ws, "deploy.toml");
    let job = format!("{name}-job");
    assert!(
        wait_for(WAIT, || upp.output().contains("not restarting")),
        "{}",
        upp.output()
    );
    let first = container_id(&job);
    assert!(
        first.is_some(),
        "the finished container is kept for `berth logs`"
    );
    assert!(!running(&job));
    assert_eq!(
        upp.output().matches("job-ran").count(),
        1,
        "{}",
        upp.output()
    );

    let out = run(&ws, &["-f", "deploy.toml", "start", "job"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        wait_for(WAIT, || upp.output().matches("job-ran").count() == 2),
        "start did not run it again: {}",
        upp.output()
    );
    assert_ne!(container_id(&job), first, "a fresh container");
}
