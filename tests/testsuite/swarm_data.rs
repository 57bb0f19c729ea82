//! `berth backup`, `restore`, snapshot before upgrade and `rollback
//! --with-data` on a real three-node swarm: a service's volumes live on
//! its pinned node and are copied through that node's engine while the
//! service is scaled to 0. The host side is this machine's own engine.

use std::time::Duration;

use berth_test_support::swarm::SwarmCluster;

use crate::data::{assert_same_tree, assert_tree_has_every_kind, fill_tree_on, listing_on};
use crate::support::{
    self, Cleanup, Workspace, base_image, busybox_image, show, unique_name, wait_for,
};
use crate::swarm::{berth, berth_command, exec_on, ok, running_on};

const WAIT: Duration = Duration::from_secs(60);

fn store_file(name: &str, image: &str) -> String {
    format!(
        r#"name = "{name}"

[services.store]
image = "{image}"
endpoint_mode = "dnsrr"
volumes = ["data:/data"]
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#
    )
}

/// The node running `service`'s task, once one runs.
fn node_of(c: &SwarmCluster, service: &str) -> usize {
    assert!(
        wait_for(WAIT, || running_on(c, service).is_some()),
        "no task of {service} runs"
    );
    running_on(c, service).unwrap_or_else(|| panic!("no task of {service}"))
}

/// The ID of the container of `service`'s running task on `node`.
fn task_container(c: &SwarmCluster, node: usize, service: &str) -> String {
    c.docker_ok(
        node,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ],
    )
    .lines()
    .next()
    .unwrap_or_default()
    .to_string()
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("temporary paths are UTF-8"))
}

#[test]
fn a_backup_taken_on_the_swarm_restores_on_a_host_exactly_and_the_reverse() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let name = unique_name("swdata");
    // The host side: the same deployment name on this machine's engine.
    let _host_clean = Cleanup::new(&name);
    ws.write("berth.toml", &store_file(&name, base_image()));
    ok(&c, &ws, &["apply"]);
    let service = format!("{name}-store");
    let volume = format!("{name}-store-data");
    let node = node_of(&c, &service);
    let on_node = |args: &[&str]| c.docker(node, args);
    fill_tree_on(&on_node, &volume);
    let before = listing_on(&on_node, &volume);
    assert_tree_has_every_kind(&before);

    // A node berth cannot reach (no entry in the nodes file) fails the
    // backup before the service is stopped.
    let task = task_container(&c, node, &service);
    assert_ne!(node, 0, "a worker holds the data, not the manager");
    let empty = ws.write("no-nodes.toml", "");
    let out = berth_command(&c, &ws, &["backup", "--all", "-o", "-"])
        .env("BERTH_NODES", &empty)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no entry for it"),
        "{}",
        show(&out)
    );
    assert_eq!(task_container(&c, node, &service), task, "stopped anyway");

    // Backup: the service is stopped for it (a fresh task afterwards) and
    // runs again on its node.
    let archive = ws.path().join("swarm.tar.zst");
    let out = berth(&c, &ws, &["backup", "--all", "-o", path_str(&archive)]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        running_on(&c, &service),
        Some(node),
        "runs again after backup"
    );
    let after_task = task_container(&c, node, &service);
    assert!(
        !after_task.is_empty() && after_task != task,
        "the task was not stopped for the copy ({task} before, {after_task} after)"
    );
    assert_same_tree(&before, &listing_on(&on_node, &volume));

    // A corrupt archive is refused before anything is touched: the volume
    // as it was, the same task still running.
    let good = std::fs::read(&archive).unwrap_or_else(|e| panic!("{e}"));
    let mut bad = good.clone();
    let at = good.len() / 2;
    bad[at] ^= 0x10;
    let corrupt = ws.path().join("corrupt.tar.zst");
    std::fs::write(&corrupt, &bad).unwrap_or_else(|e| panic!("{e}"));
    let out = berth(
        &c,
        &ws,
        &[
            "restore",
            path_str(&corrupt),
            "--force",
            "--allow-special-files",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt") || err.contains("checksum"), "{err}");
    assert_same_tree(&before, &listing_on(&on_node, &volume));
    assert_eq!(
        task_container(&c, node, &service),
        after_task,
        "the service was touched by a refused restore"
    );

    // On a single host (a fresh state directory, this machine's engine).
    let host = Workspace::new();
    let out = support::run(
        &host,
        &["restore", path_str(&archive), "--allow-special-files"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let on_host = |args: &[&str]| support::docker(args);
    let restored = listing_on(&on_host, &volume);
    assert_same_tree(&before, &restored);

    // The reverse: applied on the host (on the restored volume), changed
    // there, backed up there, restored onto the swarm service's node.
    host.write("berth.toml", &store_file(&name, base_image()));
    let out = support::run(&host, &["apply", "--integration", "docker"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_same_tree(&before, &listing_on(&on_host, &volume));
    crate::data::in_volume_on(
        &on_host,
        &volume,
        "printf 'from the host\\n' > \"/v/$(printf 'host\\nfile')\"; chown 31:32 /v/dir/sub/deep; rm /v/f600",
    );
    let host_tree = listing_on(&on_host, &volume);
    let back = host.path().join("host.tar.zst");
    let out = support::run(&host, &["backup", "--all", "-o", path_str(&back)]);
    assert!(out.status.success(), "{}", show(&out));
    let out = berth(
        &c,
        &ws,
        &[
            "restore",
            path_str(&back),
            "--force",
            "--allow-special-files",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_same_tree(&host_tree, &listing_on(&on_node, &volume));
    assert_eq!(
        running_on(&c, &service),
        Some(node),
        "runs again after restore"
    );
    assert_eq!(
        exec_on(&c, node, &service, "cat \"/data/$(printf 'host\\nfile')\""),
        "from the host"
    );
}

#[test]
fn an_upgrade_on_the_swarm_snapshots_and_rollback_with_data_puts_the_old_data_back() {
    let c = SwarmCluster::start(3);
    let (old, new) = (
        base_image().to_string(),
        busybox_image("swdata-v2", "LABEL berth-test.version=2"),
    );
    c.load_image(&old);
    c.load_image(&new);
    let ws = Workspace::new();
    let name = unique_name("swsnap");
    // Every task notes, outside the volume (the nodes share this machine's
    // file system), what data it started on.
    let evidence = ws.path().join("evidence");
    std::fs::create_dir(&evidence).expect("evidence dir");
    let store_file = |name: &str, image: &str| {
        store_file(name, image)
            .replace(
                r#"volumes = ["data:/data"]"#,
                &format!(r#"volumes = ["data:/data", "{}:/evidence"]"#, evidence.display()),
            )
            .replace(
                "trap 'exit 0' TERM;",
                "ls /data | tr '\\n' ' ' >> /evidence/starts; echo >> /evidence/starts; trap 'exit 0' TERM;",
            )
    };
    let starts = || std::fs::read_to_string(evidence.join("starts")).unwrap_or_default();
    ws.write("berth.toml", &store_file(&name, &old));
    ok(&c, &ws, &["apply"]);
    let service = format!("{name}-store");
    let node = node_of(&c, &service);
    exec_on(&c, node, &service, "echo before > /data/before");

    // A service left at 0 replicas (a copy interrupted while it was held)
    // shows in the plan, and the next apply runs it again.
    c.docker_ok(0, &["service", "scale", "-d", &format!("{service}=0")]);
    assert!(wait_for(WAIT, || running_on(&c, &service).is_none()));
    let plan = berth(&c, &ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    assert!(show(&plan).contains("scaled to 0"), "{}", show(&plan));
    ok(&c, &ws, &["apply"]);
    assert!(
        wait_for(WAIT, || running_on(&c, &service) == Some(node)),
        "{service} was not scaled back"
    );
    assert_eq!(exec_on(&c, node, &service, "cat /data/before"), "before");

    ws.write("berth.toml", &store_file(&name, &new));
    let out = berth(&c, &ws, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("snapshot of {service} before upgrade")),
        "{}",
        show(&out)
    );
    let listed = ok(&c, &ws, &["snapshots"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&service) && l.split_whitespace().nth(2) == Some("pre-upgrade")),
        "{listed}"
    );
    assert_eq!(node_of(&c, &service), node);
    exec_on(&c, node, &service, "echo after > /data/after");

    let started_before = starts().lines().count();
    assert!(
        started_before >= 2,
        "the tasks' starts are noted: {}",
        starts()
    );
    let out = berth(&c, &ws, &["rollback", "--with-data"]);
    assert!(out.status.success(), "{}", show(&out));
    // No task started on the newer data: the service was held while its
    // data went back, and the old image first ran on the old data.
    assert!(
        show(&out).contains("holding store at 0 replicas"),
        "{}",
        show(&out)
    );
    assert!(show(&out).contains("1 volumes restored"), "{}", show(&out));
    assert!(
        wait_for(WAIT, || running_on(&c, &service) == Some(node)),
        "{service} does not run again on its node"
    );
    let image = c.docker_ok(
        0,
        &[
            "service",
            "inspect",
            "-f",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &service,
        ],
    );
    let old_id = support::docker_ok(&["image", "inspect", "-f", "{{.Id}}", &old]);
    assert!(
        image == old || image == old_id,
        "runs {image}, not the old image"
    );
    assert_eq!(
        exec_on(&c, node, &service, "cat /data/before; ls /data"),
        "before\nbefore",
        "the data of before the upgrade, without what was written after"
    );
    let after_rollback: Vec<String> = starts()
        .lines()
        .skip(started_before)
        .map(String::from)
        .collect();
    assert!(!after_rollback.is_empty(), "{}", starts());
    assert!(
        after_rollback.iter().all(|l| !l.contains("after")),
        "a task started on the data written after the upgrade:\n{}",
        starts()
    );
}
