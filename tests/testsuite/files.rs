//! Configs and secrets against the real engine: delivered before the main
//! process starts with the owner and mode asked for, a changed one recreates
//! only the instances that mount it (or, with `reload`, signals them), and a
//! secret's value is found nowhere a local user or the operator's terminal
//! could see it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

/// Run berth in `ws` with extra environment variables.
fn run_env(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("NO_COLOR", "1")
        .current_dir(ws.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run berth: {e}"))
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", show(&out));
    out
}

fn container_id(name: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Id}}", name])
}

fn exec(container: &str, script: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", script])
}

/// A random value no test file or image holds.
fn random_secret() -> String {
    let mut b = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap_or_else(|e| panic!("urandom: {e}"));
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("pw-{hex}")
}

#[test]
fn owner_and_mode_are_honoured_and_files_are_there_before_the_main_process() {
    let name = unique_name("filesown");
    let _clean = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("users.txt", "alice:one\n");
    // The main process records what it finds at its start.
    let file = format!(
        r#"
name = "{name}"

[configs.users]
file = "users.txt"

[configs.motd]
content = "hello ${{WHO}}"

[secrets.token]
environment = "APP_TOKEN"

[services.root]
image = "{img}"
command = ["sh", "-c", "stat -c '%n %u:%g %a' /etc/app/users /run/secrets/token /motd; cat /etc/app/users; exec sleep 3600"]
stop_timeout = 1
configs = [{{ source = "users", target = "/etc/app/users", uid = 33, gid = 44, mode = "0640" }}, "motd"]
secrets = ["token"]

[services.plain]
image = "{img}"
user = "1000:1000"
command = ["sh", "-c", "stat -c '%n %u:%g %a' /run/secrets/token; cat /run/secrets/token > /dev/null && echo readable; exec sleep 3600"]
stop_timeout = 1
secrets = ["token"]
"#,
        img = base_image()
    );
    ws.write("berth.toml", &file);
    let env = [("APP_TOKEN", "t0ken"), ("WHO", "world")];
    ok(run_env(
        &ws,
        &["apply", "--integration", "docker", "-q"],
        &env,
    ));
    let logs = |c: &str| -> String {
        let mut out = String::new();
        wait_for(Duration::from_secs(20), || {
            out = docker_ok(&["logs", c]);
            out.contains("/run/secrets/token")
        });
        out
    };
    let root = logs(&format!("{name}-root"));
    assert!(root.contains("/etc/app/users 33:44 640"), "{root}");
    assert!(root.contains("/run/secrets/token 0:0 400"), "{root}");
    assert!(root.contains("/motd 0:0 444"), "{root}");
    assert!(root.contains("alice:one"), "{root}");
    assert_eq!(
        exec(&format!("{name}-root"), "cat /motd"),
        "hello world",
        "${{VAR}} is interpolated in inline content"
    );
    // Without uid/gid, a numeric `user` owns the files: it can read its 0400 secret.
    let plain = logs(&format!("{name}-plain"));
    assert!(
        plain.contains("/run/secrets/token 1000:1000 400"),
        "{plain}"
    );
    assert!(plain.contains("readable"), "{plain}");
    ok(run_env(&ws, &["destroy"], &env));
}

#[test]
fn a_changed_config_recreates_only_the_instances_that_mount_it() {
    let name = unique_name("fileschg");
    let _clean = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("users.txt", "alice:one\n");
    let file = format!(
        r#"
name = "{name}"

[configs.users]
file = "users.txt"

[services.user]
image = "{img}"
command = ["sleep", "3600"]
stop_timeout = 1
configs = [{{ source = "users", target = "/etc/users" }}]

[services.other]
image = "{img}"
command = ["sleep", "3600"]
stop_timeout = 1
"#,
        img = base_image()
    );
    ws.write("berth.toml", &file);
    ok(run(&ws, &["apply", "--integration", "docker", "-q"]));
    let (user, other) = (format!("{name}-user"), format!("{name}-other"));
    let (user_id, other_id) = (container_id(&user), container_id(&other));
    let plan = run(&ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));

    ws.write("users.txt", "alice:one\nbob:two\n");
    let plan = run(&ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains(&format!("recreate  {user}")), "{text}");
    assert!(text.contains("config users: content changed"), "{text}");
    assert!(!text.contains(&format!("recreate  {other}")), "{text}");
    assert!(!text.contains("bob"), "plan shows no content: {text}");
    let json = run(&ws, &["plan", "--output", "json"]);
    assert!(
        !String::from_utf8_lossy(&json.stdout).contains("bob"),
        "{}",
        show(&json)
    );

    ok(run(&ws, &["apply", "--integration", "docker", "-q"]));
    assert_ne!(
        container_id(&user),
        user_id,
        "the user of the config is recreated"
    );
    assert_eq!(
        container_id(&other),
        other_id,
        "the other service keeps its container"
    );
    assert_eq!(exec(&user, "cat /etc/users"), "alice:one\nbob:two");
    let again = run(&ws, &["plan"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    ok(run(&ws, &["destroy"]));
}

#[test]
fn reload_updates_the_file_in_the_running_container_and_signals_it() {
    let name = unique_name("filesrel");
    let _clean = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("app.conf", "version 1\n");
    // On SIGHUP the process copies what it then reads; `wait` is
    // interrupted by the trapped signal, `sleep` alone would not be.
    let file = format!(
        r#"
name = "{name}"

[configs.app]
file = "app.conf"

[services.app]
image = "{img}"
command = ["sh", "-c", "trap 'cat /etc/app.conf > /tmp/reloaded' HUP; while :; do sleep 1 & wait $!; done"]
stop_timeout = 1
configs = [{{ source = "app", target = "/etc/app.conf", reload = "SIGHUP" }}]
"#,
        img = base_image()
    );
    ws.write("berth.toml", &file);
    ok(run(&ws, &["apply", "--integration", "docker", "-q"]));
    let c = format!("{name}-app");
    let id = container_id(&c);

    ws.write("app.conf", "version 2\n");
    let plan = run(&ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains(&format!("reload    {c}")), "{text}");
    assert!(
        text.contains("config app: content changed (reloaded with SIGHUP)"),
        "{text}"
    );
    ok(run(&ws, &["apply", "--integration", "docker", "-q"]));
    assert_eq!(container_id(&c), id, "the container is kept");
    assert_eq!(exec(&c, "cat /etc/app.conf"), "version 2");
    let mut got = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            got = docker(&["exec", &c, "cat", "/tmp/reloaded"])
                .stdout
                .iter()
                .map(|b| *b as char)
                .collect();
            got.contains("version 2")
        }),
        "the process got SIGHUP and read the new file: {got:?}"
    );
    let again = run(&ws, &["plan"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    // A fresh container (berth restart) gets the same new content.
    ok(run(&ws, &["restart", "app"]));
    assert_ne!(container_id(&c), id);
    assert_eq!(exec(&c, "cat /etc/app.conf"), "version 2");
    ok(run(&ws, &["destroy"]));
}

/// Every regular file below `dir`, with its mode and whether every
/// directory on the way is searchable by others.
fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => files_below(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Could a user other than the owner read `p`: read bits for group or
/// others on it and search bits on every directory up to `root`.
fn readable_by_others(p: &Path, root: &Path) -> bool {
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    if mode(p) & 0o044 == 0 {
        return false;
    }
    let mut dir = p.parent();
    while let Some(d) = dir {
        if mode(d) & 0o011 == 0 {
            return false;
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    true
}

#[test]
fn a_secret_is_found_nowhere_a_user_or_the_terminal_could_see_it() {
    let name = unique_name("fileshunt");
    let units_name = unique_name("fileshuntu");
    let _clean = Cleanup::new(&name);
    let _clean_units = Cleanup::new(&units_name);
    let ws = Workspace::new();
    let from_env = random_secret();
    let from_file = random_secret();
    ws.write("db.key", &from_file);
    std::fs::set_permissions(
        ws.path().join("db.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = |name: &str| {
        format!(
            r#"
name = "{name}"

[secrets.password]
environment = "APP_PASSWORD"

[secrets.key]
file = "db.key"

[configs.app]
content = "user = app\n"

[services.db]
image = "{img}"
command = ["sh", "-c", "test -s /run/secrets/password && test -s /etc/db.key && echo ready; exec sleep 3600"]
stop_timeout = 1
volumes = ["data:/data"]
secrets = ["password", {{ source = "key", target = "/etc/db.key", uid = 70, mode = "0440", reload = "SIGHUP" }}]
configs = ["app"]

[services.web]
image = "{img}"
command = ["sleep", "3600"]
stop_timeout = 1
links = ["db"]
secrets = ["password"]
"#,
            img = base_image()
        )
    };
    ws.write("berth.toml", &file(&name));
    ws.write("units.toml", &file(&units_name));
    let env = [("APP_PASSWORD", from_env.as_str())];
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut step = |what: &str, args: &[&str]| {
        let out = run_env(&ws, args, &env);
        outputs.push((what.to_string(), out));
    };
    step("validate", &["validate"]);
    step("validate json", &["validate", "--output", "json"]);
    step("render", &["render", "--integration", "systemd"]);
    step(
        "render json",
        &["render", "--integration", "systemd", "--output", "json"],
    );
    step("plan", &["plan", "--integration", "docker"]);
    step(
        "plan json",
        &["plan", "--integration", "docker", "--output", "json"],
    );
    step(
        "apply",
        &["-v", "apply", "--integration", "docker", "--wait"],
    );
    // Units and specs of a second deployment, written but not started.
    step(
        "apply systemd",
        &[
            "-v",
            "-f",
            "units.toml",
            "apply",
            "--integration",
            "systemd",
            "--no-systemctl",
        ],
    );
    // A changed secret: plan and apply name it, nothing more.
    ws.write("db.key", &format!("{from_file}-2"));
    step("plan after change", &["plan", "--integration", "docker"]);
    step(
        "apply after change",
        &["-v", "apply", "--integration", "docker"],
    );
    step("ps", &["ps"]);
    step("ps json", &["ps", "--output", "json"]);
    step("logs", &["logs", "db"]);
    step("history", &["history"]);
    step("history json", &["history", "--output", "json"]);
    let archive = ws.path().join("backup.berth");
    let archive_arg = archive.to_string_lossy().into_owned();
    step(
        "backup",
        &["backup", "--all", "--with-deployment", "-o", &archive_arg],
    );
    for (what, out) in &outputs {
        if what.starts_with("apply") || what == "backup" || what.starts_with("validate") {
            assert!(out.status.success(), "{what}: {}", show(out));
        }
    }
    let plan_text = outputs
        .iter()
        .find(|(w, _)| w == "plan after change")
        .map(|(_, o)| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        plan_text.contains("secret key: content changed"),
        "{plan_text}"
    );
    let backup_err = outputs
        .iter()
        .find(|(w, _)| w == "backup")
        .map(|(_, o)| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert!(
        backup_err.contains("holds the deployment's secrets"),
        "{backup_err}"
    );
    let archive_mode = std::fs::metadata(&archive)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(archive_mode, 0o600, "an archive with secrets is owner-only");

    let secrets = [from_env.clone(), from_file.clone()];
    let mut hits = Vec::new();
    for (what, out) in &outputs {
        for s in &secrets {
            let all = [&out.stdout, &out.stderr];
            if all
                .iter()
                .any(|b| String::from_utf8_lossy(b).contains(s.as_str()))
            {
                hits.push(format!("output of {what}"));
            }
        }
    }
    // The engine's view of every container of both deployments.
    let mut containers = containers_of(&name);
    containers.extend(containers_of(&units_name));
    assert!(containers.len() >= 2, "{containers:?}");
    for c in &containers {
        let j = docker_ok(&["inspect", c]);
        for s in &secrets {
            if j.contains(s.as_str()) {
                hits.push(format!("docker inspect {c}"));
            }
        }
    }
    // Files: every one that holds a secret is root-only.
    let mut files = Vec::new();
    files_below(&ws.state_dir(), &mut files);
    files_below(&ws.unit_dir(), &mut files);
    assert!(
        files.iter().any(|f| f.starts_with(ws.unit_dir())),
        "units were written"
    );
    let mut holders = 0;
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            holders += 1;
            let root = if f.starts_with(ws.state_dir()) {
                ws.state_dir()
            } else {
                ws.unit_dir()
            };
            let meta = std::fs::metadata(f).unwrap_or_else(|e| panic!("{e}"));
            if readable_by_others(f, &root)
                || meta.permissions().mode() & 0o077 != 0
                || f.starts_with(ws.unit_dir())
            {
                hits.push(format!(
                    "{} (mode {:o}, uid {})",
                    f.display(),
                    meta.permissions().mode(),
                    meta.uid()
                ));
            }
        }
    }
    assert!(
        holders > 0,
        "the state directory holds the secrets (root-only)"
    );
    let state_mode = std::fs::metadata(ws.state_dir())
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(state_mode & 0o077, 0, "the state directory is owner-only");
    assert!(
        hits.is_empty(),
        "the secret was found in:\n{}",
        hits.join("\n")
    );

    // The container got them, with the changed one delivered fresh.
    let db = format!("{name}-db");
    assert_eq!(exec(&db, "cat /run/secrets/password"), from_env);
    assert_eq!(exec(&db, "cat /etc/db.key"), format!("{from_file}-2"));
    assert_eq!(exec(&db, "stat -c '%u %a' /etc/db.key"), "70 440");
    ok(run_env(&ws, &["destroy"], &env));
    ok(run_env(
        &ws,
        &["-f", "units.toml", "destroy", "--no-systemctl"],
        &env,
    ));
    // Destroyed instances leave no delivered contents behind.
    let left: Vec<std::path::PathBuf> = std::fs::read_dir(ws.state_dir().join("instances"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        !left.iter().any(|p| p.to_string_lossy().ends_with(".files")),
        "{left:?}"
    );
}
