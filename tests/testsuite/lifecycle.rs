//! The data lifecycle through `apply`: snapshot before upgrade, history,
//! rollback (images and data), migration with `backup --with-deployment` /
//! `restore --apply`, and backup waiting for the apply lock. Driven through
//! the built `berth` against the real engine.

use std::time::Duration;

use crate::support::*;

/// Untags the test's own tag on drop (the images behind it are shared).
struct Tag(String);

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

fn run_ok(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let out = run(ws, args);
    assert!(out.status.success(), "berth {args:?}:\n{}", show(&out));
    out
}

fn exec_ok(container: &str, script: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", script])
}

fn image_id_of(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Image}}", container])
}

fn image_id(image: &str) -> String {
    docker_ok(&["image", "inspect", "-f", "{{.Id}}", image])
}

/// A service that appends what /data/f held to /tmp/at-start each time its
/// container starts, then idles.
fn file(name: &str, image: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
[services.app]
image = "{image}"
command = ["sh", "-c", "cat /data/f >> /tmp/at-start 2>/dev/null; trap 'exit 0' TERM; while true; do sleep 1; done"]
volumes = ["data:/data"]
stop_timeout = 1
{extra}
"#
    )
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(out)))
}

fn revisions(ws: &Workspace) -> Vec<u64> {
    let h = json(&run_ok(ws, &["history", "--output", "json"]));
    h.as_array()
        .expect("history is a list")
        .iter()
        .map(|r| r["revision"].as_u64().expect("revision number"))
        .collect()
}

#[test]
fn upgrade_snapshots_then_rollback_with_data_returns_old_image_and_data() {
    let name = unique_name("rollback");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    let v2 = busybox_image("lifecycle-v2", "LABEL version=2");
    // One tag that moves from v1 to v2, as a registry tag would.
    let tag = Tag(format!("berth-test/{name}:app"));
    docker_ok(&["tag", &v1, &tag.0]);
    ws.write("berth.toml", &file(&name, &tag.0, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let c = format!("{name}-app");
    assert_eq!(image_id_of(&c), image_id(&v1));
    exec_ok(&c, "echo old > /data/f");

    docker_ok(&["tag", &v2, &tag.0]);
    let out = run_ok(&ws, &["apply", "--integration", "docker"]);
    assert!(
        show(&out).contains("snapshot of"),
        "apply reports the snapshot:\n{}",
        show(&out)
    );
    assert_eq!(image_id_of(&c), image_id(&v2));
    let snaps = json(&run_ok(&ws, &["snapshots", "--output", "json"]));
    let snaps = snaps.as_array().expect("snapshot list");
    assert_eq!(snaps.len(), 1, "one snapshot: {snaps:?}");
    assert_eq!(snaps[0]["revision"], 1, "taken when leaving revision 1");
    assert_eq!(snaps[0]["container"], c.as_str());
    assert_eq!(
        snaps[0]["manifest"]["instances"][0]["image_id"],
        image_id(&v1).as_str(),
        "the manifest records the old image"
    );
    exec_ok(&c, "echo new > /data/f");
    assert_eq!(revisions(&ws), vec![1, 2]);

    let out = run_ok(&ws, &["rollback", "--with-data", "--integration", "docker"]);
    assert!(
        show(&out).contains("rolled back to revision 1 as revision 3"),
        "{}",
        show(&out)
    );
    // The tag still points at v2: the rollback pinned the recorded image ID.
    assert_eq!(image_id(&tag.0), image_id(&v2));
    assert_eq!(image_id_of(&c), image_id(&v1), "back on the old image");
    assert_eq!(exec_ok(&c, "cat /data/f"), "old", "back on the old data");
    assert_eq!(
        exec_ok(&c, "cat /tmp/at-start"),
        "old",
        "the old image started on the old data, never on the newer"
    );
    assert!(
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &c]) == "true",
        "running after the rollback"
    );
    assert!(
        !ws.state_dir()
            .join("instances")
            .join(format!("{c}.stopped"))
            .exists(),
        "no stop marker left behind"
    );
    assert_eq!(revisions(&ws), vec![1, 2, 3]);
    // The data that was replaced is kept (the rollback's own upgrade
    // snapshot of revision 2 and the pre-restore copy).
    let snaps = json(&run_ok(&ws, &["snapshots", "--output", "json"]));
    let kinds: Vec<&str> = snaps
        .as_array()
        .expect("snapshot list")
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"pre-restore"), "{kinds:?}");
    let history = run_ok(&ws, &["history"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("3*"),
        "table marks the current revision:\n{}",
        show(&history)
    );
    // Without --with-data only the image changes: back to revision 2's
    // image, the data stays as it is.
    run_ok(&ws, &["rollback", "--to", "2", "--integration", "docker"]);
    assert_eq!(image_id_of(&c), image_id(&v2));
    assert_eq!(exec_ok(&c, "cat /data/f"), "old");
    assert_eq!(revisions(&ws), vec![1, 2, 3, 4]);
}

/// Only a new image snapshots: a change of anything else recreates the
/// container without stopping it for a copy of its volumes.
#[test]
fn a_recreate_for_another_reason_takes_no_snapshot() {
    let name = unique_name("nosnap");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("berth.toml", &file(&name, base_image(), ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    ws.write(
        "berth.toml",
        &file(&name, base_image(), "env = { CHANGED = \"1\" }"),
    );
    let out = run_ok(&ws, &["apply", "--integration", "docker"]);
    assert!(!show(&out).contains("snapshot of"), "{}", show(&out));
    let snaps = json(&run_ok(&ws, &["snapshots", "--output", "json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    let env = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &format!("{name}-app"),
    ]);
    assert!(env.lines().any(|l| l == "CHANGED=1"), "recreated: {env}");
}

#[test]
fn snapshot_on_upgrade_false_takes_none() {
    let name = unique_name("nosnap");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    let v2 = busybox_image("lifecycle-v2", "LABEL version=2");
    ws.write(
        "berth.toml",
        &file(&name, &v1, "snapshot_on_upgrade = false"),
    );
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let c = format!("{name}-app");
    exec_ok(&c, "echo kept > /data/f");
    ws.write(
        "berth.toml",
        &file(&name, &v2, "snapshot_on_upgrade = false"),
    );
    let out = run_ok(&ws, &["apply", "--integration", "docker"]);
    assert!(!show(&out).contains("snapshot of"), "{}", show(&out));
    assert_eq!(image_id_of(&c), image_id(&v2), "upgraded");
    assert_eq!(exec_ok(&c, "cat /data/f"), "kept");
    let snaps = json(&run_ok(&ws, &["snapshots", "--output", "json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    // A typo'd key is refused with a suggestion.
    ws.write(
        "berth.toml",
        &file(&name, &v2, "snapshot_on_upgrad = false"),
    );
    let out = run(&ws, &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(show(&out).contains("snapshot_on_upgrade"), "{}", show(&out));
}

#[test]
fn migration_to_a_second_deployment_name_serves_the_same_data() {
    let name = unique_name("migsrc");
    let target = unique_name("migdst");
    let _cleanup = Cleanup::new(&name);
    let _cleanup2 = Cleanup::new(&target);
    let ws = Workspace::new();
    let img = busybox_image("lifecycle-v1", "LABEL version=1");
    // A setting that deserves a warning: the stored deployment gets the
    // same warning on the host it is restored to as the file got here.
    ws.write(
        "berth.toml",
        &file(&name, &img, "cap_add = [\"SYS_PTRACE\"]"),
    );
    let out = run_ok(&ws, &["apply", "--integration", "docker"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning:"),
        "{}",
        show(&out)
    );
    let c = format!("{name}-app");
    exec_ok(
        &c,
        "echo precious > /data/f; mkdir -p /data/d; echo x > /data/d/y",
    );
    let archive = ws.path().join("migrate.tar.zst");
    let archive = archive.to_str().expect("UTF-8 temp path");
    run_ok(
        &ws,
        &["backup", "--all", "--with-deployment", "-o", archive],
    );

    // Another host: a fresh state directory, no deployment file.
    let other = Workspace::new();
    let out = run_ok(
        &other,
        &[
            "restore",
            archive,
            "--apply",
            "--name",
            &target,
            "--integration",
            "docker",
        ],
    );
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("(stored deployment)")
            && warned.contains("warning:")
            && warned.contains("SYS_PTRACE"),
        "restore --apply shows the stored deployment's warnings:\n{}",
        show(&out)
    );
    let t = format!("{target}-app");
    assert_eq!(exec_ok(&t, "cat /data/f"), "precious", "{}", show(&out));
    assert_eq!(exec_ok(&t, "cat /data/d/y"), "x");
    // The data was there before the instance started.
    assert_eq!(exec_ok(&t, "cat /tmp/at-start"), "precious");
    assert_eq!(volumes_of(&target), vec![format!("{t}-data")]);
    // The source is untouched, and the new deployment is applied there.
    assert_eq!(exec_ok(&c, "cat /data/f"), "precious");
    let ps = run_ok(&other, &["ps", &target, "--output", "json"]);
    assert!(show(&ps).contains(&t), "{}", show(&ps));
    // A backup without the spec cannot be brought up.
    let plain = ws.path().join("plain.tar.zst");
    let plain = plain.to_str().expect("UTF-8 temp path");
    run_ok(&ws, &["backup", "--all", "-o", plain]);
    let third = Workspace::new();
    let out = run(&third, &["restore", plain, "--apply", "--name", &target]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("--with-deployment"), "{}", show(&out));
}

#[test]
fn backup_waits_while_an_apply_holds_the_lock() {
    let name = unique_name("lockwait");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = busybox_image("lifecycle-v1", "LABEL version=1");
    ws.write("berth.toml", &file(&name, &img, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    exec_ok(&format!("{name}-app"), "echo v > /data/f");
    // Hold the deployment's apply lock the way apply does (flock), until told.
    let lock = ws.state_dir().join("deployments").join(&name).join("lock");
    let held = ws.path().join("held");
    let release = ws.path().join("release");
    // Released (and reaped) on drop, also when an assertion fails.
    struct Holder(std::process::Child, std::path::PathBuf);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.1, b"");
            let _ = self.0.wait();
        }
    }
    let holder = std::process::Command::new("flock")
        .arg(&lock)
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.1; done",
            held.display(),
            release.display()
        ))
        .spawn()
        .expect("flock runs");
    let holder = Holder(holder, release.clone());
    assert!(wait_for(Duration::from_secs(30), || held.exists()));
    let archive = ws.path().join("b.tar.zst");
    let mut backup = Background::spawn(
        bin(),
        &ws,
        "backup",
        &["backup", "--all", "-o", archive.to_str().expect("UTF-8")],
    );
    assert!(
        wait_for(Duration::from_secs(60), || backup
            .output()
            .contains("waiting for another berth apply")),
        "backup says it waits: {}",
        backup.output()
    );
    assert!(
        backup.child.try_wait().expect("poll backup").is_none(),
        "backup still waits while the lock is held"
    );
    assert!(!archive.exists(), "nothing written while waiting");
    drop(holder);
    let status = backup
        .wait_exit(Duration::from_secs(120))
        .expect("backup finishes once the lock is free");
    assert!(status.success(), "{}", backup.output());
    assert!(archive.exists());
}

#[test]
fn failed_snapshot_stops_the_upgrade_and_the_old_instance_runs_on() {
    let name = unique_name("snapfail");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    let v2 = busybox_image("lifecycle-v2", "LABEL version=2");
    ws.write("berth.toml", &file(&name, &v1, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let c = format!("{name}-app");
    exec_ok(&c, "echo v1data > /data/f");
    let before = docker_ok(&["inspect", "-f", "{{.Id}}", &c]);
    // The snapshot directory cannot be created: a file is in its way.
    let snaps = ws.state_dir().join("snapshots");
    std::fs::create_dir_all(&snaps).expect("snapshots dir");
    std::fs::write(snaps.join(&c), b"in the way").expect("blocker");
    ws.write("berth.toml", &file(&name, &v2, ""));
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("nothing was upgraded"),
        "{}",
        show(&out)
    );
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.Id}}", &c]),
        before,
        "same container"
    );
    assert_eq!(image_id_of(&c), image_id(&v1), "still the old image");
    assert!(
        wait_for(Duration::from_secs(30), || docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &c
        ]) == "true"),
        "the old instance runs again"
    );
    assert_eq!(exec_ok(&c, "cat /data/f"), "v1data");
    assert_eq!(revisions(&ws), vec![1], "no new revision");
    // Once the way is clear the upgrade goes through, with its snapshot.
    std::fs::remove_file(snaps.join(&c)).expect("remove blocker");
    run_ok(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(image_id_of(&c), image_id(&v2));
    assert_eq!(exec_ok(&c, "cat /data/f"), "v1data");
    // Unknown revisions are a usage error naming what is kept.
    let out = run(&ws, &["rollback", "--to", "99", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("kept: 1, 2"), "{}", show(&out));
}

#[test]
fn berth_up_snapshots_before_an_image_upgrade_on_sighup() {
    let name = unique_name("upsnap");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    let v2 = busybox_image("lifecycle-v2", "LABEL version=2");
    ws.write("berth.toml", &file(&name, &v1, ""));
    let upp = Background::spawn(bin(), &ws, "up", &["up"]);
    let c = format!("{name}-app");
    let is_running = |c: &str| {
        inspect("container", c)
            .and_then(|v| v["State"]["Running"].as_bool())
            .unwrap_or(false)
    };
    assert!(
        wait_for(Duration::from_secs(60), || is_running(&c)),
        "{}",
        upp.output()
    );
    exec_ok(&c, "echo before-upgrade > /data/f");
    ws.write("berth.toml", &file(&name, &v2, ""));
    upp.signal("HUP");
    let v2_id = image_id(&v2);
    assert!(
        wait_for(Duration::from_secs(60), || is_running(&c)
            && image_id_of(&c) == v2_id),
        "SIGHUP did not upgrade: {}",
        upp.output()
    );
    assert!(
        upp.output()
            .contains(&format!("snapshot of {c} before upgrade")),
        "{}",
        upp.output()
    );
    let snaps = json(&run_ok(&ws, &["snapshots", "--output", "json"]));
    let snaps = snaps.as_array().expect("snapshot list");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["revision"], 1);
    assert_eq!(
        snaps[0]["manifest"]["instances"][0]["image_id"],
        image_id(&v1).as_str()
    );
    assert_eq!(exec_ok(&c, "cat /data/f"), "before-upgrade");
    upp.signal("INT");
}

#[test]
fn backup_under_berth_up_stops_and_starts_through_the_supervisor() {
    let name = unique_name("upbackup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    ws.write("berth.toml", &file(&name, &v1, ""));
    let upp = Background::spawn(bin(), &ws, "up", &["up"]);
    let c = format!("{name}-app");
    let running_id = |c: &str| {
        inspect("container", c)
            .filter(|v| v["State"]["Running"].as_bool() == Some(true))
            .and_then(|v| v["Id"].as_str().map(String::from))
    };
    assert!(
        wait_for(Duration::from_secs(60), || running_id(&c).is_some()),
        "{}",
        upp.output()
    );
    exec_ok(&c, "echo kept > /data/f");
    let before = running_id(&c);
    let archive = ws.path().join("up.tar.zst");
    let archive = archive.to_str().expect("UTF-8 temp path");
    run_ok(&ws, &["backup", "--all", "-o", archive]);
    // `berth up` replaced the container after the copy (a fresh one, not
    // the engine restarting the old one behind the supervisor's back).
    assert!(
        wait_for(Duration::from_secs(60), || running_id(&c)
            .is_some_and(|id| Some(&id) != before.as_ref())),
        "running again under berth up: {}",
        upp.output()
    );
    assert!(
        !ws.state_dir()
            .join("instances")
            .join(format!("{c}.stopped"))
            .exists(),
        "no stop marker left behind"
    );
    assert_eq!(exec_ok(&c, "cat /data/f"), "kept");
    // The archive holds the data: restore it under another name.
    let other = unique_name("upbackup2");
    let _cleanup2 = Cleanup::new(&other);
    run_ok(&ws, &["restore", archive, "--deployment", &other]);
    assert_eq!(
        volumes_of(&other),
        vec![format!("{other}-app-data")],
        "restored volume"
    );
    let out = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{other}-app-data:/v"),
        &v1,
        "cat",
        "/v/f",
    ]);
    assert_eq!(out, "kept");
    upp.signal("INT");
}

/// Plain `destroy` keeps the data (volumes and snapshots) and says how to
/// remove it; `destroy --volumes` removes all of it: volumes, snapshots,
/// and every file the state directory kept for the deployment.
#[test]
fn destroy_volumes_removes_snapshots_and_every_state_file() {
    let name = unique_name("destroysnap");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("lifecycle-v1", "LABEL version=1");
    let v2 = busybox_image("lifecycle-v2", "LABEL version=2");
    ws.write("berth.toml", &file(&name, &v1, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let c = format!("{name}-app");
    exec_ok(&c, "echo data > /data/f");
    ws.write("berth.toml", &file(&name, &v2, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    run_ok(&ws, &["stop", "app"]);
    let snaps_dir = ws.state_dir().join("snapshots").join(&c);
    let snap_files = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        snap_files(&snaps_dir)
            .iter()
            .any(|f| f.ends_with(".tar.zst")),
        "the upgrade took a snapshot"
    );
    // Another deployment's snapshot, without a manifest, whose container
    // name starts like ours: never ours to delete.
    let foreign = ws
        .state_dir()
        .join("snapshots")
        .join(format!("{name}-app-x"));
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::write(foreign.join("pre-restore-20260101T000000Z.tar.zst"), b"x").expect("file");
    let instance_files = || -> Vec<String> {
        snap_files(&ws.state_dir().join("instances"))
            .into_iter()
            .filter(|f| f.starts_with(&format!("{c}.")))
            .collect()
    };
    assert!(!instance_files().is_empty(), "spec and stop marker");

    let out = run_ok(&ws, &["destroy"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kept 1 volume and 1 snapshot"), "{text}");
    assert!(text.contains("destroy --volumes"), "says how: {text}");
    assert_eq!(volumes_of(&name), vec![format!("{c}-data")]);
    assert!(!snap_files(&snaps_dir).is_empty(), "snapshot kept");
    assert!(instance_files().is_empty(), "{:?}", instance_files());

    let out = run_ok(&ws, &["destroy", "--volumes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removed 0 containers"), "{text}");
    assert!(text.contains("1 volume, 1 snapshot"), "{text}");
    assert!(volumes_of(&name).is_empty());
    assert!(!snaps_dir.exists(), "{:?}", snap_files(&snaps_dir));
    assert!(!ws.state_dir().join("deployments").join(&name).exists());
    assert!(instance_files().is_empty(), "{:?}", instance_files());
    assert_eq!(snap_files(&foreign).len(), 1, "another deployment's kept");
}

fn running(container: &str) -> bool {
    inspect("container", container)
        .and_then(|c| c["State"]["Running"].as_bool())
        .unwrap_or(false)
}

fn health_of(container: &str) -> Option<String> {
    inspect("container", container)
        .and_then(|c| c["State"]["Health"]["Status"].as_str().map(String::from))
}

/// A service whose health check passes `delay` seconds after it starts, or
/// never (`never`): checked every second, unhealthy after one failure.
fn delayed_health(name: &str, delay: u32, never: bool) -> String {
    let check = if never { "/tmp/never" } else { "/tmp/ok" };
    format!(
        r#"name = "{name}"
[services.app]
image = "{}"
command = ["sh", "-c", "sleep {delay}; touch /tmp/ok; trap 'exit 0' TERM; while true; do sleep 1; done"]
volumes = ["data:/data"]
stop_timeout = 1
health = {{ cmd = ["test", "-f", "{check}"], interval = "1s", retries = 1 }}
"#,
        base_image()
    )
}

/// `rollback --wait` waits like `apply --wait`: it returns once the rolled
/// back instance is healthy, and fails naming it when it never is.
#[test]
fn rollback_wait_waits_for_health() {
    let name = unique_name("rbwait");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let app = format!("{name}-app");
    ws.write("berth.toml", &delayed_health(&name, 3, false));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    ws.write("berth.toml", &delayed_health(&name, 3, true));
    run_ok(&ws, &["apply", "--integration", "docker"]);

    // Back to revision 1: healthy only 3 s after its container starts.
    let out = run_ok(
        &ws,
        &[
            "rollback",
            "--integration",
            "docker",
            "--wait",
            "--wait-timeout",
            "60s",
        ],
    );
    assert_eq!(
        health_of(&app).as_deref(),
        Some("healthy"),
        "{}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{name}: every instance is running and healthy")),
        "{}",
        show(&out)
    );

    // Revision 2 is never healthy: the rollback to it fails, naming it.
    let out = run(
        &ws,
        &[
            "rollback",
            "--to",
            "2",
            "--integration",
            "docker",
            "--wait",
            "--wait-timeout",
            "5s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains(&app) && l.contains("unhealthy") && l.contains("last check")),
        "{}",
        show(&out)
    );
    // The rollback itself was applied.
    assert_eq!(revisions(&ws), vec![1, 2, 3, 4]);
}

/// `restore --apply --wait` waits for the restored deployment's health.
#[test]
fn restore_apply_wait_waits_for_health() {
    let name = unique_name("rswsrc");
    let good = unique_name("rswgood");
    let bad = unique_name("rswbad");
    let _c = Cleanup::new(&name);
    let _cg = Cleanup::new(&good);
    let _cb = Cleanup::new(&bad);
    let ws = Workspace::new();
    let archive = |ws: &Workspace, file: &str| {
        let p = ws.path().join(file);
        p.to_str().expect("UTF-8 temp path").to_string()
    };
    let restore = |archive: &str, target: &str, timeout: &str| {
        run(
            &Workspace::new(),
            &[
                "restore",
                archive,
                "--apply",
                "--name",
                target,
                "--integration",
                "docker",
                "--wait",
                "--wait-timeout",
                timeout,
            ],
        )
    };

    ws.write("berth.toml", &delayed_health(&name, 3, false));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let healthy = archive(&ws, "healthy.tar.zst");
    run_ok(
        &ws,
        &["backup", "--all", "--with-deployment", "-o", &healthy],
    );
    let out = restore(&healthy, &good, "60s");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        health_of(&format!("{good}-app")).as_deref(),
        Some("healthy"),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{good}: every instance is running and healthy")),
        "{}",
        show(&out)
    );

    ws.write("berth.toml", &delayed_health(&name, 0, true));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let never = archive(&ws, "never.tar.zst");
    // The flag's older name still works.
    run_ok(&ws, &["backup", "--all", "--with-spec", "-o", &never]);
    let out = restore(&never, &bad, "5s");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let bad_app = format!("{bad}-app");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .any(|l| l.contains(&bad_app) && l.contains("unhealthy") && l.contains("last check")),
        "{}",
        show(&out)
    );
    // Restored and applied all the same.
    assert!(running(&bad_app), "{}", show(&out));
}

/// Without `--apply`, restore refuses the flags that only an apply uses
/// instead of ignoring them.
#[test]
fn restore_without_apply_refuses_apply_flags() {
    let ws = Workspace::new();
    ws.write("some.tar.zst", "not read");
    for flag in [
        &["--wait"][..],
        &["--ssh-listen", "127.0.0.1:2222"][..],
        &["--no-systemctl"][..],
        &["--integration", "docker"][..],
    ] {
        let mut args = vec!["restore", "some.tar.zst"];
        args.extend(flag);
        let out = run(&ws, &args);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{} ", flag[0]))
                && show(&out).contains("needs --apply"),
            "{}",
            show(&out)
        );
    }
}

/// The library's backup and restore take the deployment's apply lock
/// themselves: called directly while an apply holds it, backup waits (and
/// says so) and restore gives up after its lock timeout, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_backup_and_restore_take_the_apply_lock() {
    use berth::data::{backup, restore};
    use std::sync::{Arc, Mutex};
    let name = unique_name("liblock");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = busybox_image("lifecycle-v1", "LABEL version=1");
    ws.write("berth.toml", &file(&name, &img, ""));
    run_ok(&ws, &["apply", "--integration", "docker"]);
    let engine = berth::engine::Engine::connect()
        .await
        .expect("engine reachable");
    let state = berth::state::StateDir::new(ws.state_dir());
    let archive = ws.path().join("lib.tar.zst");
    run_ok(
        &ws,
        &["backup", "--all", "-o", archive.to_str().expect("UTF-8")],
    );

    let held = berth::apply::lock::lock_deployment(&state, &name, None, || {})
        .await
        .expect("lock");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let report: berth::apply::Reporter = Arc::new(move |l| {
        if let Ok(mut v) = seen.lock() {
            v.push(l);
        }
    });
    let err = restore::restore(
        &engine,
        &berth::data::instances::SiteRequest {
            swarm: false,
            nodes: state.nodes_file(),
        },
        &state,
        &archive,
        &restore::RestoreOptions {
            force: true,
            ..Default::default()
        },
        Some(Duration::from_millis(300)),
        &report,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .expect_err("restore gives up while the lock is held");
    assert!(err.to_string().contains("still holds"), "{err}");

    let second = ws.path().join("second.tar.zst");
    let progress = indicatif::ProgressBar::hidden();
    let site = berth::data::instances::Site::Host(engine.clone());
    let waiting = backup::backup_deployment(
        &site,
        &state,
        &name,
        &[],
        backup::Output::File(second.clone()),
        false,
        false,
        &report,
        &progress,
    );
    tokio::pin!(waiting);
    let says = |l: &Arc<Mutex<Vec<String>>>| {
        l.lock()
            .map(|v| {
                v.iter()
                    .filter(|l| l.contains("waiting for another berth apply"))
                    .count()
            })
            .unwrap_or(0)
    };
    // Polled until it has said it waits (the restore said so once already).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while says(&lines) < 2 {
        assert!(std::time::Instant::now() < deadline, "backup never waited");
        tokio::select! {
            r = &mut waiting => panic!("backup ran while the lock was held: {:?}", r.map(|_| ())),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert!(!second.exists(), "nothing written while waiting");
    drop(held);
    waiting.await.expect("backup once the lock is free");
    assert!(second.exists());
}
