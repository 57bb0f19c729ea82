//! The SSH gateway inside the integrations: a task of `berth up`, and the
//! `berth-ssh-gateway.service` unit that `apply --integration systemd`
//! installs while any deployment on the host grants keys.

use std::time::Duration;

use crate::ssh::{Keys, ssh_command};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);
const UNIT: &str = "berth-ssh-gateway.service";

fn running(container: &str) -> bool {
    inspect("container", container)
        .and_then(|c| c["State"]["Running"].as_bool())
        .unwrap_or(false)
}

/// The port in `berth: ssh gateway listening on 127.0.0.1:PORT`, if printed yet.
fn gateway_port(up: &Background) -> Option<u16> {
    let err = std::fs::read_to_string(&up.stderr).unwrap_or_default();
    err.lines()
        .find_map(|l| l.strip_prefix("berth: ssh gateway listening on 127.0.0.1:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

#[test]
fn up_runs_the_ssh_gateway_when_keys_are_granted() {
    let name = unique_name("upssh");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob"]);
    ws.write(
        "deploy.toml",
        &format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\nbob = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [\"alice\"]\n\n\
             [services.other]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [\"bob\"]\n",
            keys.public("alice"),
            keys.public("bob"),
            base_image(),
            base_image(),
        ),
    );
    let mut up = Background::spawn(
        bin(),
        &ws,
        "up",
        &["-f", "deploy.toml", "up", "--ssh-listen", "127.0.0.1:0"],
    );
    let container = format!("{name}-svc");
    let mut port = None;
    assert!(
        wait_for(WAIT, || {
            port = gateway_port(&up);
            port.is_some() && running(&container) && running(&format!("{name}-other"))
        }),
        "no gateway or instances: {}",
        up.output()
    );
    let port = port.unwrap_or_default();
    let known_hosts = ws.path().join("known_hosts");
    let mut c = ssh_command("127.0.0.1", port, &known_hosts, &keys, "alice", "svc");
    c.args(["echo", "hi;", "hostname"]);
    let out = crate::ssh::run(c);
    assert!(out.status.success(), "{}\n{}", show(&out), up.output());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("hi\n"), "{}", show(&out));
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &container]);
    let host = text.lines().nth(1).unwrap_or("-");
    assert!(!host.is_empty() && id.starts_with(host), "{text} vs {id}");

    // Exactly the granted key: bob's key is refused on svc, fine on other.
    let mut c = ssh_command("127.0.0.1", port, &known_hosts, &keys, "bob", "svc");
    c.arg("true");
    let out = crate::ssh::run(c);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let mut c = ssh_command("127.0.0.1", port, &known_hosts, &keys, "bob", "other");
    c.args(["exit", "3"]);
    assert_eq!(crate::ssh::run(c).status.code(), Some(3));

    // Ctrl-C stops the instances and the gateway with them.
    up.signal("INT");
    let status = up.wait_exit(WAIT).and_then(|s| s.code());
    assert_eq!(status, Some(0), "{}", up.output());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the gateway still listens after berth up exited"
    );
}

#[test]
fn up_without_keys_or_with_no_ssh_runs_no_gateway() {
    let name = unique_name("upnossh");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    let file = |ssh: &str| {
        format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [{ssh}]\n",
            keys.public("alice"),
            base_image(),
        )
    };
    let container = format!("{name}-svc");
    for (ssh, extra) in [("", None), ("\"alice\"", Some("--no-ssh"))] {
        ws.write("deploy.toml", &file(ssh));
        let mut args = vec!["-f", "deploy.toml", "up", "--ssh-listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut up = Background::spawn(bin(), &ws, "up", &args);
        let supervising = |up: &Background| {
            std::fs::read_to_string(&up.stderr)
                .unwrap_or_default()
                .contains("berth: supervising")
        };
        assert!(
            wait_for(WAIT, || supervising(&up) && running(&container)),
            "{}",
            up.output()
        );
        assert_eq!(gateway_port(&up), None, "{:?}: {}", extra, up.output());
        up.signal("INT");
        assert_eq!(
            up.wait_exit(WAIT).and_then(|s| s.code()),
            Some(0),
            "{}",
            up.output()
        );
    }
}

#[test]
fn up_starts_the_gateway_when_a_reloaded_file_grants_keys() {
    let name = unique_name("upsshhup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    let file = |ssh: &str| {
        format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [{ssh}]\n",
            keys.public("alice"),
            base_image(),
        )
    };
    ws.write("deploy.toml", &file(""));
    let mut up = Background::spawn(
        bin(),
        &ws,
        "up",
        &["-f", "deploy.toml", "up", "--ssh-listen", "127.0.0.1:0"],
    );
    let container = format!("{name}-svc");
    let supervising = |up: &Background| {
        std::fs::read_to_string(&up.stderr)
            .unwrap_or_default()
            .contains("berth: supervising")
    };
    assert!(
        wait_for(WAIT, || supervising(&up) && running(&container)),
        "{}",
        up.output()
    );
    assert_eq!(gateway_port(&up), None, "{}", up.output());
    let before = docker_ok(&["inspect", "-f", "{{.Id}}", &container]);

    ws.write("deploy.toml", &file("\"alice\""));
    up.signal("HUP");
    let mut port = None;
    assert!(
        wait_for(WAIT, || {
            port = gateway_port(&up);
            port.is_some()
        }),
        "{}",
        up.output()
    );
    let port = port.unwrap_or_default();
    let known_hosts = ws.path().join("known_hosts");
    // The key counts once the re-read file is applied (the container keeps
    // running: keys are not part of its spec).
    let mut last = None;
    let ok = wait_for(WAIT, || {
        let mut c = ssh_command("127.0.0.1", port, &known_hosts, &keys, "alice", "svc");
        c.args(["echo", "hi"]);
        let out = crate::ssh::run(c);
        let ok = out.status.success() && out.stdout == b"hi\n";
        last = Some(out);
        ok
    });
    assert!(
        ok,
        "{}\n{}",
        last.as_ref().map(show).unwrap_or_default(),
        up.output()
    );
    assert_eq!(docker_ok(&["inspect", "-f", "{{.Id}}", &container]), before);
    up.signal("INT");
    assert_eq!(
        up.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        up.output()
    );
}

fn unit_text(ws: &Workspace) -> Option<String> {
    std::fs::read_to_string(ws.unit_dir().join(UNIT)).ok()
}

#[test]
fn apply_systemd_installs_the_gateway_unit_exactly_while_keys_are_granted() {
    let a = unique_name("gwunita");
    let b = unique_name("gwunitb");
    let _ca = Cleanup::new(&a);
    let _cb = Cleanup::new(&b);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    let file = |name: &str, ssh: &str| {
        format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\nssh = [{ssh}]\n",
            keys.public("alice"),
            base_image(),
        )
    };
    let apply = |f: &str, extra: &[&str]| {
        let mut args = vec![
            "-f",
            f,
            "apply",
            "--integration",
            "systemd",
            "--no-systemctl",
        ];
        args.extend(extra);
        let out = run(&ws, &args);
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ws.write("a.toml", &file(&a, ""));
    ws.write("b.toml", &file(&b, "\"alice\""));

    // No keys granted: no gateway unit.
    let out = apply("a.toml", &[]);
    assert!(unit_text(&ws).is_none(), "{out}");
    assert!(!out.contains(UNIT), "{out}");
    assert!(
        ws.unit_dir()
            .join(format!("berth-{a}-svc.service"))
            .exists()
    );

    // Keys granted: the unit is written, verifies silently, and the
    // commands to activate it are printed.
    ws.write("a.toml", &file(&a, "\"alice\""));
    let out = apply("a.toml", &[]);
    let text = unit_text(&ws).expect("gateway unit written");
    assert!(
        text.contains("ssh-gateway --listen 0.0.0.0:2222\n"),
        "{text}"
    );
    let state = std::path::absolute(ws.state_dir()).expect("absolute state dir");
    assert!(
        text.contains(&format!("--state-dir {} ", state.display())),
        "{text}"
    );
    assert!(out.contains(&format!("systemctl enable {UNIT}")), "{out}");
    assert!(out.contains(&format!("systemctl start {UNIT}")), "{out}");
    let path = ws.unit_dir().join(UNIT);
    crate::units::verify(&ws.unit_dir(), std::slice::from_ref(&path))
        .unwrap_or_else(|e| panic!("{e}"));

    // A second deployment with keys and another address: one unit, moved.
    let out = apply("b.toml", &["--ssh-listen", "127.0.0.1:2299"]);
    let text = unit_text(&ws).expect("gateway unit");
    assert!(text.contains("--listen 127.0.0.1:2299\n"), "{text}");
    assert!(out.contains(&format!("systemctl restart {UNIT}")), "{out}");
    // A no-op re-apply keeps the address and does not rewrite the unit.
    let out = apply("a.toml", &[]);
    assert_eq!(unit_text(&ws).as_deref(), Some(text.as_str()));
    assert!(!out.contains(&format!("systemctl restart {UNIT}")), "{out}");

    // a stops granting keys: b still does, so the unit stays.
    ws.write("a.toml", &file(&a, ""));
    apply("a.toml", &[]);
    assert_eq!(unit_text(&ws).as_deref(), Some(text.as_str()));

    // The last deployment granting keys is destroyed: the unit goes.
    let out = run(&ws, &["-f", "b.toml", "destroy", "--no-systemctl"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(unit_text(&ws).is_none(), "{}", show(&out));
    let out = run(&ws, &["-f", "a.toml", "destroy", "--no-systemctl"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(unit_text(&ws).is_none());

    // A bad address is a usage error before anything is touched.
    ws.write("b.toml", &file(&b, "\"alice\""));
    let out = run(
        &ws,
        &[
            "-f",
            "b.toml",
            "apply",
            "--integration",
            "systemd",
            "--no-systemctl",
            "--ssh-listen",
            "2222",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(unit_text(&ws).is_none());
    assert!(
        !ws.unit_dir()
            .join(format!("berth-{b}-svc.service"))
            .exists()
    );
}

/// `rollback` goes through apply's gateway step: `--ssh-listen` moves the
/// unit, and `--no-systemctl` prints the commands left to run.
#[test]
fn rollback_with_ssh_listen_writes_the_gateway_unit_with_that_address() {
    let name = unique_name("gwroll");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    let file = |env: &str| {
        format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\nssh = [\"alice\"]\nenv = {{ REV = \"{env}\" }}\n",
            keys.public("alice"),
            base_image(),
        )
    };
    let berth = |args: &[&str]| {
        let mut all = vec![args[0], "--integration", "systemd", "--no-systemctl"];
        all.extend(&args[1..]);
        let out = run(&ws, &all);
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ws.write("berth.toml", &file("1"));
    berth(&["apply"]);
    ws.write("berth.toml", &file("2"));
    berth(&["apply"]);
    let text = unit_text(&ws).expect("gateway unit written");
    assert!(text.contains("--listen 0.0.0.0:2222\n"), "{text}");

    let out = berth(&["rollback", "--ssh-listen", "127.0.0.1:2298"]);
    let text = unit_text(&ws).expect("gateway unit kept");
    assert!(text.contains("--listen 127.0.0.1:2298\n"), "{text}\n{out}");
    assert!(
        out.contains("rolled back to revision 1 as revision 3"),
        "{out}"
    );
    assert!(out.contains(&format!("systemctl restart {UNIT}")), "{out}");

    // A bad address is refused before the rollback touches anything.
    let out = run(
        &ws,
        &[
            "rollback",
            "--integration",
            "systemd",
            "--no-systemctl",
            "--ssh-listen",
            "2222",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(unit_text(&ws).as_deref(), Some(text.as_str()));
    let history = run(&ws, &["history", "--output", "json"]);
    let revisions: serde_json::Value = serde_json::from_slice(&history.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", show(&history)));
    assert_eq!(
        revisions.as_array().map(|r| r.len()),
        Some(3),
        "{revisions}"
    );
}

#[test]
fn apply_docker_says_how_to_run_the_gateway() {
    let name = unique_name("gwdocker");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n\n[keys]\nalice = \"{}\"\n\n\
             [services.svc]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [\"alice\"]\n",
            keys.public("alice"),
            base_image(),
        ),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth ssh-gateway --listen 0.0.0.0:2222"),
        "{}",
        show(&out)
    );
    assert!(unit_text(&ws).is_none());
    let out = run(&ws, &["destroy"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// On a real systemd host: the gateway unit is started by apply, serves
/// `ssh svc@host`, and goes with the last deployment granting keys.
#[test]
fn systemd_host_runs_the_gateway_unit_and_destroy_removes_it() {
    use berth_test_support::systemd_host::{HostDeployment, SystemdHost};
    let host = SystemdHost::boot(bin());
    let d = HostDeployment::new(&host, "gwhost");
    let keys = Keys::new(&["alice"]);
    d.write(&format!(
        "name = \"NAME\"\n\n[keys]\nalice = \"{}\"\n\n\
         [services.svc]\nimage = \"IMAGE\"\ncommand = [\"sleep\", \"100000\"]\nstop_timeout = 1\nssh = [\"alice\"]\n",
        keys.public("alice")
    ));
    d.apply();
    d.wait_active("svc");
    host.wait_for(&format!("{UNIT} active"), WAIT, || {
        (host.unit_property(UNIT, "ActiveState") == "active").then_some(())
    });
    assert_eq!(host.unit_property(UNIT, "UnitFileState"), "enabled");
    let ip = docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}",
        &host.name,
    ]);
    let known_hosts = tempfile::tempdir().expect("temp dir");
    let known_hosts = known_hosts.path().join("known_hosts");
    // The unit may be active a moment before it listens.
    let mut last = None;
    let ok = wait_for(WAIT, || {
        let mut c = ssh_command(ip.trim(), 2222, &known_hosts, &keys, "alice", "svc");
        c.args(["echo", "hi"]);
        let out = crate::ssh::run(c);
        let ok = out.status.success() && out.stdout == b"hi\n";
        last = Some(out);
        ok
    });
    assert!(
        ok,
        "{}\n--- journal\n{}",
        last.as_ref().map(show).unwrap_or_default(),
        host.unit_journal(UNIT)
    );

    d.berth_ok("destroy");
    assert_eq!(host.unit_property(UNIT, "LoadState"), "not-found");
    assert!(
        !host
            .sh(&format!("test -e /etc/systemd/system/{UNIT}"))
            .status
            .success()
    );
}
