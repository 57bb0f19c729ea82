//! Day-to-day operation against the real engine: `ps`, `logs`,
//! `start`/`stop`/`restart` under the Docker integration, `doctor`, and the
//! mail example's script end to end.

use std::time::Duration;

use crate::support::*;

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn running(container: &str) -> bool {
    inspect("container", container)
        .and_then(|c| c["State"]["Running"].as_bool())
        .unwrap_or(false)
}

fn container_id(container: &str) -> Option<String> {
    inspect("container", container).and_then(|c| c["Id"].as_str().map(String::from))
}

/// Log in over IMAP on 127.0.0.1:`port`: `Some(accepted)`, `None` when
/// the server does not answer.
fn imap_login(port: u16, user: &str, password: &str) -> Option<bool> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("* OK") {
        return None;
    }
    (&stream)
        .write_all(format!("a LOGIN {user} {password}\r\n").as_bytes())
        .ok()?;
    line.clear();
    reader.read_line(&mut line).ok()?;
    let _ = (&stream).write_all(b"b LOGOUT\r\n");
    if line.starts_with("a OK") {
        Some(true)
    } else if line.starts_with("a NO") {
        Some(false)
    } else {
        None
    }
}

/// A free TCP port on this host (bound to port 0, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// `(host address, host port)` of every binding the engine reports for
/// `key` (`80/tcp`) in an inspect answer.
fn bindings(c: &serde_json::Value, key: &str) -> Vec<(String, u64)> {
    c["NetworkSettings"]["Ports"][key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    (
                        b["HostIp"].as_str().unwrap_or_default().to_string(),
                        b["HostPort"]
                            .as_str()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ps_table_and_json_match_the_engine() {
    let name = unique_name("ps");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
count = 2
command = ["httpd", "-f", "-p", "80"]
ports = ["80"]
stop_timeout = 1

[services.once]
image = "{image}"
command = ["sh", "-c", "exit 3"]
restart = "no"
"#
        ),
    );
    ok(&run(
        &ws,
        &["-f", "deploy.toml", "apply", "--integration", "docker"],
    ));
    let once = format!("{name}-once");
    assert!(
        wait_for(Duration::from_secs(30), || {
            inspect("container", &once)
                .and_then(|c| c["State"]["Status"].as_str().map(String::from))
                == Some("exited".into())
        }),
        "{once} never exited"
    );

    let json = ok(&run(&ws, &["-f", "deploy.toml", "ps", "--output", "json"]));
    let rows: serde_json::Value = serde_json::from_str(&json).expect("ps JSON");
    let rows = rows.as_array().expect("an array of instances");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["instance"].as_str()).collect();
    assert_eq!(
        names,
        [
            once.clone(),
            format!("{name}-web-1"),
            format!("{name}-web-2")
        ],
        "{json}"
    );
    for row in rows {
        let inst = row["instance"].as_str().expect("instance");
        let c = inspect("container", inst).expect("container exists");
        assert_eq!(row["container_id"], c["Id"], "{inst}");
        assert_eq!(
            row["restarts"].as_i64(),
            c["RestartCount"].as_i64(),
            "{inst}"
        );
        assert_eq!(row["image"].as_str(), Some(image), "{inst}");
        assert_eq!(row["health"].as_str(), Some("-"), "{inst}");
        if inst == once {
            assert_eq!(c["State"]["ExitCode"].as_i64(), Some(3));
            assert_eq!(row["state"].as_str(), Some("exited(3)"), "{json}");
            assert!(row["uptime_seconds"].is_null());
        } else {
            assert_eq!(c["State"]["Running"].as_bool(), Some(true));
            assert_eq!(row["state"].as_str(), Some("running"), "{json}");
            assert!(row["uptime_seconds"].as_u64().is_some(), "{json}");
            // The engine picked the host ports, possibly a different one per
            // address family (moby/moby#43246): ps carries every binding the
            // engine reports, as it reports it.
            let mut engine_bindings = bindings(&c, "80/tcp");
            assert!(!engine_bindings.is_empty(), "{inst}: nothing published");
            let mut shown: Vec<(String, u64)> = row["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(|p| {
                    assert_eq!(p["container_port"].as_u64(), Some(80), "{json}");
                    assert_eq!(p["protocol"].as_str(), Some("tcp"), "{json}");
                    (
                        p["host_ip"].as_str().unwrap_or("?").to_string(),
                        p["host_port"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            engine_bindings.sort();
            shown.sort();
            assert_eq!(shown, engine_bindings, "{inst}: {json}");
        }
    }

    // The table says the same, one aligned line per instance.
    let table = ok(&run(&ws, &["-f", "deploy.toml", "ps"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("INSTANCE"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    let state_col = lines[0].find("STATE").expect("STATE column");
    for (line, row) in lines[1..].iter().zip(rows) {
        assert!(
            line.starts_with(row["instance"].as_str().unwrap_or("?")),
            "{table}"
        );
        assert!(
            line[state_col..].starts_with(row["state"].as_str().unwrap_or("?")),
            "{table}"
        );
    }
    // Every binding of every instance is in its line, with its address.
    for (line, row) in lines[1..].iter().zip(rows) {
        let inst = row["instance"].as_str().unwrap_or("?");
        if inst == once {
            continue;
        }
        let c = inspect("container", inst).expect("container exists");
        for (ip, port) in bindings(&c, "80/tcp") {
            let ip = if ip == "::" {
                ":::".to_string()
            } else {
                format!("{ip}:")
            };
            assert!(line.contains(&format!("{ip}{port}->80/tcp")), "{table}");
        }
    }

    // By name from the state directory, without the file.
    let by_name = ok(&run(&ws, &["ps", &name, "--output", "json"]));
    let again: serde_json::Value = serde_json::from_str(&by_name).expect("JSON");
    assert_eq!(again.as_array().map(|a| a.len()), Some(3), "{by_name}");
}

#[test]
fn logs_show_container_output() {
    let name = unique_name("logs");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.talk]
image = "{image}"
count = 2
command = ["sh", "-c", "echo hello-berth-logs; echo oops >&2; while true; do echo tick; sleep 1; done"]
stop_timeout = 1
"#
        ),
    );
    ok(&run(
        &ws,
        &["-f", "deploy.toml", "apply", "--integration", "docker"],
    ));
    let f = ["-f", "deploy.toml"];
    assert!(
        wait_for(Duration::from_secs(30), || {
            let out = run(&ws, &[f[0], f[1], "logs", "talk"]);
            String::from_utf8_lossy(&out.stdout).matches("tick").count() >= 4
        }),
        "no ticks in the logs"
    );
    let out = run(&ws, &["-f", "deploy.toml", "logs", "talk"]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for i in [1, 2] {
        let prefix = format!("{name}-talk-{i} | ");
        assert!(
            stdout.contains(&format!("{prefix}hello-berth-logs")),
            "{stdout}"
        );
        assert!(stderr.contains(&format!("{prefix}oops")), "{stderr}");
    }
    // Every line carries its instance's prefix.
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with(&format!("{name}-talk-"))),
        "{stdout}"
    );

    // As JSON: one object per line, stderr lines marked, on stdout.
    let out = run(
        &ws,
        &["-f", "deploy.toml", "logs", "talk", "--output", "json"],
    );
    let text = ok(&out);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for i in [1, 2] {
        let inst = format!("{name}-talk-{i}");
        let of = |stream: &str, line: &str| {
            objects.iter().any(|o| {
                o["instance"] == inst.as_str() && o["stream"] == stream && o["line"] == line
            })
        };
        assert!(of("stdout", "hello-berth-logs"), "{text}");
        assert!(of("stderr", "oops"), "{text}");
    }
    assert!(
        objects
            .iter()
            .all(|o| o["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))),
        "{text}"
    );

    // One instance by name: no prefix. --tail limits the lines.
    let one = ok(&run(
        &ws,
        &["-f", "deploy.toml", "logs", "talk-2", "--tail", "1"],
    ));
    assert_eq!(one.lines().count(), 1, "{one}");
    assert_eq!(one.trim(), "tick", "{one}");

    // Follow mode keeps streaming.
    let follow = Background::spawn(
        bin(),
        &ws,
        "follow",
        &["-f", "deploy.toml", "logs", "talk-1", "-f", "--tail", "0"],
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(&follow.stdout)
                .unwrap_or_default()
                .matches("tick")
                .count()
                >= 2
        }),
        "follow printed no new lines: {}",
        follow.output()
    );
    drop(follow);

    // An unknown service is a usage error.
    let bad = run(&ws, &["-f", "deploy.toml", "logs", "tlak"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("did you mean \"talk\""),
        "{}",
        show(&bad)
    );
}

#[test]
fn stop_keeps_a_docker_integration_instance_stopped_until_started() {
    let name = unique_name("stop");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = busybox_image("opsvol", "VOLUME /data");
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.app]
image = "{image}"
command = ["sh", "-c", "echo boot >> /data/boots; exec httpd -f -p 80"]
stop_timeout = 1

[services.other]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
"#
        ),
    );
    let f = |args: &[&str]| {
        let mut v = vec!["-f", "deploy.toml"];
        v.extend_from_slice(args);
        run(&ws, &v)
    };
    ok(&f(&["apply", "--integration", "docker"]));
    let app = format!("{name}-app");
    let other = format!("{name}-other");
    assert!(wait_for(Duration::from_secs(30), || running(&app)));
    let id = container_id(&app).expect("app exists");

    ok(&f(&["stop", "app"]));
    let c = inspect("container", &app).expect("a stopped container is kept");
    assert_eq!(c["State"]["Running"].as_bool(), Some(false));
    // unless-stopped: the engine keeps an explicitly stopped container
    // stopped, also across daemon restarts.
    assert_eq!(
        c["HostConfig"]["RestartPolicy"]["Name"].as_str(),
        Some("unless-stopped")
    );
    assert!(
        ws.state_dir()
            .join(format!("instances/{app}.stopped"))
            .exists()
    );
    assert!(running(&other), "stop touched only what it was asked to");
    let ps = ok(&f(&["ps", "--output", "json"]));
    assert!(ps.contains("\"state\": \"stopped\""), "{ps}");

    // Re-applying does not start it behind the operator's back.
    ok(&f(&["apply", "--integration", "docker"]));
    assert!(!running(&app), "apply started a stopped instance");
    assert_eq!(container_id(&app), Some(id.clone()));

    ok(&f(&["start", "app"]));
    assert!(running(&app));
    assert!(
        !ws.state_dir()
            .join(format!("instances/{app}.stopped"))
            .exists()
    );
    // Every start is a fresh container, as under systemd and `berth up`.
    let started_id = container_id(&app).expect("app exists");
    assert_ne!(started_id, id, "start makes a fresh container");
    assert!(
        wait_for(Duration::from_secs(30), || {
            let out = docker(&["exec", &app, "cat", "/data/boots"]);
            String::from_utf8_lossy(&out.stdout).lines().count() == 2
        }),
        "the volume did not carry over to the started container: {:?}",
        docker(&["exec", &app, "cat", "/data/boots"])
    );
    // Starting what runs leaves it alone.
    ok(&f(&["start", "app"]));
    assert_eq!(container_id(&app), Some(started_id.clone()));

    // restart: a fresh container, same volume.
    ok(&f(&["restart", "app"]));
    assert!(wait_for(Duration::from_secs(30), || running(&app)));
    let new_id = container_id(&app).expect("app exists");
    assert_ne!(new_id, started_id, "restart makes a fresh container");
    assert!(
        wait_for(Duration::from_secs(30), || {
            let out = docker(&["exec", &app, "cat", "/data/boots"]);
            String::from_utf8_lossy(&out.stdout).lines().count() == 3
        }),
        "the volume did not carry over: {:?}",
        docker(&["exec", &app, "cat", "/data/boots"])
    );
}

#[test]
fn doctor_reports_a_busy_port() {
    let name = unique_name("doctor");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let holder = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    ws.write(
        "deploy.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
ports = ["{port}:80"]
"#,
            image = base_image()
        ),
    );
    let out = run(&ws, &["-f", "deploy.toml", "doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{port}/tcp")))
        .unwrap_or_else(|| panic!("no line about port {port}: {text}"));
    assert!(
        line.starts_with("FAIL") && line.contains("in use"),
        "{text}"
    );
    assert!(text.contains("fix:"), "{text}");

    let json = run(&ws, &["-f", "deploy.toml", "doctor", "--output", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("doctor JSON");
    assert_eq!(v["ok"].as_bool(), Some(false));
    let checks = v["checks"].as_array().expect("checks");
    let engine = checks
        .iter()
        .find(|c| c["name"] == "engine")
        .expect("engine check");
    assert_eq!(engine["status"].as_str(), Some("ok"), "{v}");
    assert!(
        engine["detail"].as_str().unwrap_or("").contains("API 1."),
        "{v}"
    );
    assert!(checks.iter().any(|c| {
        c["status"] == "fail"
            && c["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&port.to_string())
            && c["fix"].is_string()
    }));

    // Released, the same port is fine and the host is ready.
    drop(holder);
    let out = run(&ws, &["-f", "deploy.toml", "doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{port}/tcp")));
}

/// Stops the SSH gateway `examples/mail/run.sh` started (its pid file), when
/// dropped: the script leaves it running in the background by design.
struct ExampleGateway(std::path::PathBuf);

impl ExampleGateway {
    fn pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(&self.0).ok()?.trim().to_string();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("ssh-gateway")
            .then_some(pid)
    }
}

impl Drop for ExampleGateway {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
    }
}

/// The example as a newcomer meets it: `run.sh` on a host without systemd
/// grants a key (one it makes, then the user's own once they have one),
/// starts the SSH gateway and prints the lines to try, which work as printed;
/// later commands on the file see what the script set up; `run.sh down`
/// removes everything it made.
#[test]
fn mail_example_script_end_to_end() {
    let name = unique_name("mailex");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    // A copy of the example, since run.sh writes .env and .run/ beside
    // berth.toml; without what a run in the source tree left there.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail");
    let example = ws.path().join("examples/mail");
    std::fs::create_dir_all(ws.path().join("examples")).expect("examples dir");
    let cp = std::process::Command::new("cp")
        .arg("-R")
        .arg(&src)
        .arg(&example)
        .output()
        .expect("cp");
    assert!(cp.status.success(), "{}", show(&cp));
    let _ = std::fs::remove_file(example.join(".env"));
    let _ = std::fs::remove_dir_all(example.join(".run"));
    let script = example.join("run.sh");
    let gateway = ExampleGateway(example.join(".run/ssh-gateway.pid"));
    let home = ws.path().join("home");
    std::fs::create_dir_all(&home).expect("home");

    let ports: Vec<(&str, u16)> = [
        "MAIL_SMTP_PORT",
        "MAIL_SMTPS_PORT",
        "MAIL_SUBMISSION_PORT",
        "MAIL_IMAP_PORT",
        "MAIL_IMAPS_PORT",
        "MAIL_SIEVE_PORT",
        "WEBMAIL_PORT",
        "MAIL_SSH_PORT",
    ]
    .into_iter()
    .map(|v| (v, free_port()))
    .collect();
    let port = |var: &str| {
        ports
            .iter()
            .find(|(v, _)| *v == var)
            .map(|p| p.1)
            .unwrap_or(0)
    };
    let run_script = |arg: Option<&str>| {
        let mut cmd = std::process::Command::new(&script);
        cmd.args(arg)
            .env("BERTH_BIN", bin())
            .env("BERTH_EXAMPLE_NAME", &name)
            .env("BERTH_INTEGRATION", "docker")
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("BERTH_UNIT_DIR", ws.unit_dir())
            .env("HOME", &home)
            .env_remove("SUDO_USER")
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        for (var, port) in &ports {
            cmd.env(var, port.to_string());
        }
        cmd.output().expect("run examples/mail/run.sh")
    };
    // The printed line after `label:`.
    let printed = |stdout: &str, label: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
    };
    // The printed ssh line, run as printed (plus batch mode and a known_hosts
    // of the test's own), with `command`.
    let ssh = |line: &str, command: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"ssh"), "{line}");
        std::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                ws.path().join("known_hosts").display()
            ))
            .args(&words[1..])
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ssh")
    };

    // First run: no key in ~/.ssh, so the example makes one of its own.
    let out = run_script(None);
    let stdout = ok(&out);
    let web_port = port("WEBMAIL_PORT");
    assert!(
        stdout.contains(&format!("curl http://127.0.0.1:{web_port}/")),
        "{stdout}"
    );
    let made_key = example.join(".run/id_ed25519");
    let pubkey = std::fs::read_to_string(made_key.with_extension("pub")).expect("a key was made");
    let env = std::fs::read_to_string(example.join(".env")).expect(".env written");
    assert!(env.contains(pubkey.trim()), "{env}");
    let ssh_line = printed(&stdout, "ssh:");
    assert_eq!(
        ssh_line,
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=accept-new {name}.mail@127.0.0.1",
            made_key.display(),
            port("MAIL_SSH_PORT")
        )
    );
    let boot = ssh(&ssh_line, "cat /var/mail/boot.log");
    assert!(boot.status.success(), "{}", show(&boot));
    assert!(
        String::from_utf8_lossy(&boot.stdout).starts_with("started "),
        "{}",
        show(&boot)
    );

    let page = std::process::Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{web_port}/"),
        ])
        .output()
        .expect("curl");
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(page.contains("berth example webmail"), "{page}");
    assert!(
        page.contains("MAIL_PORT_25_TCP_ADDR="),
        "link variables reach the webmail: {page}"
    );
    assert!(
        page.contains("smtp greeting: 220 "),
        "the webmail reaches the mail server: {page}"
    );

    // Mail sent through the webmail lands in the mail server's volume.
    let sent = std::process::Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{web_port}/cgi-bin/send.cgi"),
        ])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&sent.stdout).contains("250 2.0.0"),
        "{}",
        show(&sent)
    );
    // So does mail sent to the published SMTP port with the printed line,
    // and the printed `exec` line reads both.
    let smtp = std::process::Command::new("sh")
        .args(["-c", &printed(&stdout, "over SMTP:")])
        .output()
        .expect("sh");
    assert!(smtp.status.success(), "{}", show(&smtp));
    let read = std::process::Command::new("sh")
        .args(["-c", &printed(&stdout, "read it:")])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .output()
        .expect("sh");
    let spool = ok(&read);
    assert!(spool.contains("hello from the webmail"), "{spool}");
    assert!(spool.contains("\nhello\n"), "{spool}");

    // Second run, now that the user has a key: that one is granted instead,
    // and nothing else changes (same containers, same gateway).
    std::fs::create_dir_all(home.join(".ssh")).expect(".ssh");
    let own_key = home.join(".ssh/id_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "newcomer", "-f"])
        .arg(&own_key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh-keygen");
    assert!(keygen.status.success(), "{}", show(&keygen));
    let gateway_pid = gateway.pid().expect("the gateway runs");
    let ids: Vec<Option<String>> = ["mail", "webmail"]
        .iter()
        .map(|s| container_id(&format!("{name}-{s}")))
        .collect();
    let stdout = ok(&run_script(None));
    let again: Vec<Option<String>> = ["mail", "webmail"]
        .iter()
        .map(|s| container_id(&format!("{name}-{s}")))
        .collect();
    assert_eq!(ids, again);
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(gateway.pid(), Some(gateway_pid));
    let own_line = printed(&stdout, "ssh:");
    assert!(
        own_line.starts_with(&format!("ssh -i {} ", own_key.display())),
        "{own_line}"
    );
    let hostname = ssh(&own_line, "hostname");
    assert!(hostname.status.success(), "{}", show(&hostname));
    let refused = ssh(&ssh_line, "true");
    assert!(
        !refused.status.success(),
        "the example's own key is no longer granted: {}",
        show(&refused)
    );

    // Later commands on the file resolve it as run.sh did (.env: the key and
    // the port overrides), so nothing is to change.
    let file = example.join("berth.toml");
    let file = file.to_str().expect("utf-8 path");
    let plan = run(&ws, &["-f", file, "--name", &name, "plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let ps = ok(&run(&ws, &["ps", &name]));
    assert_eq!(ps.matches(" running ").count(), 2, "{ps}");

    // IMAP logins come from the `users` config: a new user in the file is a
    // planned change of mail alone, and can log in once applied.
    let imap = port("MAIL_IMAP_PORT");
    assert_eq!(imap_login(imap, "alice", "alice-demo-password"), Some(true));
    assert_eq!(imap_login(imap, "bob", "bob-demo-password"), Some(false));
    let users = example.join("users");
    let mut list = std::fs::read_to_string(&users).expect("users");
    list.push_str("bob:bob-demo-password\n");
    std::fs::write(&users, list).expect("write users");
    let plan = run(&ws, &["-f", file, "--name", &name, "plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(text.contains("config users: content changed"), "{text}");
    assert!(text.contains(&format!("recreate  {name}-mail")), "{text}");
    assert!(
        !text.contains(&format!("recreate  {name}-webmail")),
        "{text}"
    );
    assert!(!text.contains("bob-demo-password"), "{text}");
    let before = ["mail", "webmail"].map(|s| container_id(&format!("{name}-{s}")));
    ok(&run(
        &ws,
        &[
            "-f",
            file,
            "--name",
            &name,
            "apply",
            "--integration",
            "docker",
            "-q",
        ],
    ));
    let after = ["mail", "webmail"].map(|s| container_id(&format!("{name}-{s}")));
    assert_ne!(before[0], after[0], "mail is recreated");
    assert_eq!(before[1], after[1], "webmail keeps its container");
    assert!(
        wait_for(Duration::from_secs(20), || imap_login(
            imap,
            "bob",
            "bob-demo-password"
        ) == Some(true)),
        "the new user can log in"
    );

    // `run.sh down` stops the gateway and removes the deployment and its data.
    ok(&run_script(Some("down")));
    assert_eq!(gateway.pid(), None);
    assert!(containers_of(&name).is_empty());
    assert!(volumes_of(&name).is_empty(), "{:?}", volumes_of(&name));
}

/// Under systemd, `stop` disables the unit: the instance stays stopped across
/// a reboot of the host, `start` brings it back, `restart` gives it a fresh
/// container. `ps` inside the host says so.
#[test]
fn stop_under_systemd_survives_a_reboot_until_started() {
    use berth_test_support::systemd_host::{HOST_BERTH, SystemdHost};
    let host = SystemdHost::boot(bin());
    let name = host.deployment("sysstop");
    let dir = format!("/root/{name}");
    host.write_file(
        &format!("{dir}/berth.toml"),
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1

[services.other]
image = "{image}"
command = ["httpd", "-f", "-p", "80"]
stop_timeout = 1
"#,
            image = base_image()
        ),
    );
    let berth = |args: &str| -> String {
        let out = host.sh(&format!("cd {dir} && NO_COLOR=1 {HOST_BERTH} {args}"));
        assert!(
            out.status.success(),
            "berth {args} in the systemd host failed:\n{}\n--- journal\n{}",
            show(&out),
            host.journal_tail(60)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let web = format!("{name}-web");
    let other = format!("{name}-other");
    let unit = format!("berth-{web}.service");
    let wait_running = |c: &str| {
        host.wait_for(&format!("{c} running"), Duration::from_secs(60), || {
            running(c).then(|| container_id(c)).flatten()
        })
    };

    berth("apply --integration systemd");
    wait_running(&web);
    wait_running(&other);

    berth("stop web");
    assert_eq!(host.unit_property(&unit, "ActiveState"), "inactive");
    assert_eq!(host.unit_property(&unit, "UnitFileState"), "disabled");
    assert!(!running(&web));
    let ps = berth("ps --output json");
    assert!(ps.contains(&format!("\"instance\": \"{web}\"")), "{ps}");
    let rows: serde_json::Value = serde_json::from_str(&ps).expect("ps JSON");
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["instance"] == web.as_str()))
        .expect("web row");
    assert_eq!(row["state"].as_str(), Some("stopped"), "{ps}");
    assert_eq!(row["integration"].as_str(), Some("systemd"), "{ps}");

    host.reboot();
    wait_running(&other);
    assert_eq!(
        host.unit_property(&unit, "ActiveState"),
        "inactive",
        "a stopped instance came back after a reboot"
    );
    assert!(!running(&web));
    // Re-applying leaves it stopped too.
    berth("apply --integration systemd");
    assert!(!running(&web));

    berth("start web");
    let first = wait_running(&web);
    assert_eq!(host.unit_property(&unit, "UnitFileState"), "enabled");
    berth("restart web");
    let second = host.wait_for("a fresh web container", Duration::from_secs(60), || {
        container_id(&web).filter(|id| *id != first && running(&web))
    });
    assert_ne!(first, second);
}

/// `render` shows what the deployment's integration produces: after an
/// apply with `--integration docker`, restart policies and no unit files.
#[test]
fn render_follows_the_integration_the_deployment_was_applied_with() {
    let name = unique_name("renderint");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["sleep", "3600"]
stop_timeout = 1
"#,
            image = base_image()
        ),
    );
    ok(&run(&ws, &["apply", "--integration", "docker"]));
    let text = ok(&run(&ws, &["render"]));
    assert!(text.contains("integration: docker"), "{text}");
    assert!(
        text.contains(&format!(
            "container {name}-web, restart policy unless-stopped"
        )),
        "{text}"
    );
    assert!(
        !text.contains("[Unit]") && !text.contains(".service"),
        "{text}"
    );
    let json = ok(&run(&ws, &["render", "--output", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["integration"], "docker");
    assert!(v["instances"][0]["unit_text"].is_null(), "{json}");
    assert_eq!(v["instances"][0]["docker_restart"], "unless-stopped");
    // Asked for, the units are still there to see.
    let text = ok(&run(&ws, &["render", "--integration", "systemd"]));
    assert!(
        text.contains(&format!("# berth-{name}-web.service")),
        "{text}"
    );
}
