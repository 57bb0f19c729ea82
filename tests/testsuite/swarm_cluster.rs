//! The multi-node swarm harness itself (`berth_test_support::swarm`): a
//! cluster forms, spreads tasks, carries overlay traffic by name across
//! nodes, answers on host-mode ports, survives an engine crash, and leaves
//! nothing behind.

use std::time::Duration;

use berth_test_support::swarm::{self, SwarmCluster};

use crate::support::{base_image, show, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// An HTTP server answering with the name of the node its task runs on
/// (the task's hostname). The shell stops on SIGTERM: as PID 1 without a
/// handler it would ignore it, and every stop (also an engine's clean-up
/// after a crash) would wait out the grace period.
const SERVE_NODE_NAME: &str = "mkdir -p /www && hostname > /www/index.html; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait";

/// Nodes (by hostname) of a service's tasks that are running.
fn running_nodes(c: &SwarmCluster, service: &str) -> Vec<String> {
    let out = c.docker(
        0,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            service,
        ],
    );
    let mut nodes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Running"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn three_node_swarm_spreads_tasks_routes_by_name_publishes_host_ports_and_survives_an_engine_crash()
{
    let c = SwarmCluster::start(3);
    let tag = c.tag.clone();

    let nodes = c.docker_ok(0, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    let mut nodes: Vec<&str> = nodes.lines().collect();
    nodes.sort();
    assert_eq!(nodes, ["node0 Ready", "node1 Ready", "node2 Ready"]);

    let image = base_image();
    c.load_image(image);

    // Three replicas with a host-mode port, each answering with its node's
    // name; and one task pinned to node2 on an attachable overlay network.
    // (dnsrr: the virtual IP needs IPVS, which this machine lacks.)
    c.docker_ok(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "testnet",
        ],
    );
    c.docker_ok(
        0,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "--hostname",
            "{{.Node.Hostname}}",
            "--publish",
            "mode=host,target=80,published=8080",
            image,
            "sh",
            "-c",
            SERVE_NODE_NAME,
        ],
    );
    c.docker_ok(
        0,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "echo",
            "--network",
            "testnet",
            "--endpoint-mode",
            "dnsrr",
            "--constraint",
            "node.hostname==node2",
            "--hostname",
            "{{.Node.Hostname}}",
            image,
            "sh",
            "-c",
            SERVE_NODE_NAME,
        ],
    );

    let mut last = Vec::new();
    assert!(
        wait_for(WAIT, || {
            last = running_nodes(&c, "web");
            last == ["node0", "node1", "node2"]
        }),
        "web's three tasks are not running one per node: {last:?}\n{}",
        show(&c.docker(0, &["service", "ps", "--no-trunc", "web"]))
    );

    // Host-mode published port: each node's address answers, from its own task.
    for node in 0..c.nodes() {
        let mut answer = None;
        assert!(
            wait_for(WAIT, || {
                answer = c.http_get(c.addr(node), 8080, "/");
                answer
                    .as_deref()
                    .is_some_and(|a| a.trim_end().ends_with(c.hostname(node)))
            }),
            "{}:8080 did not answer with {}: {answer:?}",
            c.addr(node),
            c.hostname(node)
        );
    }

    // A container on node0 reaches the service on node2 by name.
    let client =
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 echo 80; echo; nslookup echo 2>&1 | tail -4";
    let mut answer = String::new();
    assert!(
        wait_for(WAIT, || {
            let out = c.docker(
                0,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "testnet",
                    image,
                    "sh",
                    "-c",
                    client,
                ],
            );
            answer = show(&out);
            String::from_utf8_lossy(&out.stdout).contains("200 OK")
                && String::from_utf8_lossy(&out.stdout).contains("node2")
        }),
        "a container on node0 did not reach `echo` on node2 by name:\n{answer}"
    );

    // A node cut off the network no longer answers; healed, it does again.
    c.cut(2);
    assert_eq!(
        c.http_get(c.addr(2), 8080, "/"),
        None,
        "node2 answered while cut off"
    );
    c.heal(2);
    assert!(
        wait_for(WAIT, || c.http_get(c.addr(2), 8080, "/").is_some()),
        "node2 did not answer again after the link came back"
    );

    // An engine crash: the manager sees the node down, then ready again once
    // its engine is back, and the node runs its task again.
    c.kill_engine(1);
    c.wait_node(1, "down");
    c.start_engine(1);
    c.wait_node(1, "ready");
    assert!(
        wait_for(WAIT, || {
            last = running_nodes(&c, "web");
            last == ["node0", "node1", "node2"]
        }),
        "web's task did not come back on node1: {last:?}"
    );

    drop(c);
    let left = swarm::leftovers(&tag);
    assert!(left.is_empty(), "the cluster left things behind: {left:?}");
}

/// What a killed test process leaves (its cluster's namespaces, directories,
/// cgroups and processes) is removed by the next sweep, and a live
/// process's cluster is not touched.
#[test]
fn leftovers_of_a_test_process_that_is_gone_are_swept() {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};

    // A pid that no process has any more.
    let mut gone = Command::new("true")
        .spawn()
        .unwrap_or_else(|e| panic!("true: {e}"));
    let pid = gone.id();
    gone.wait().unwrap_or_else(|e| panic!("true: {e}"));
    let stale = format!("{}{pid}x0", swarm::PREFIX);
    // And one that is alive, with its own start time recorded as a cluster owner.
    let mut live = Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap_or_else(|e| panic!("sleep: {e}"));
    let kept = format!("{}{}x0", swarm::PREFIX, live.id());

    let run = std::path::Path::new(swarm::RUN_ROOT).join(&stale);
    swarm::create_dir(&run.join("n0"));
    swarm::create_dir(
        &std::path::Path::new(swarm::DATA_ROOT)
            .join(&stale)
            .join("n0"),
    );
    let ns = format!("{stale}n0");
    let status = Command::new("ip").args(["netns", "add", &ns]).status();
    assert!(status.is_ok_and(|s| s.success()), "ip netns add {ns}");
    // Its cgroup, where the engines put theirs (cgroup v1 pids, or v2).
    let hierarchy = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .into_iter()
        .find(|h| std::path::Path::new(h).join("cgroup.procs").exists())
        .unwrap_or_else(|| panic!("no cgroup hierarchy under /sys/fs/cgroup"));
    let cgroup = std::path::Path::new(hierarchy).join(&ns);
    std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
    // A process of the dead cluster (its command line names the cluster's
    // directory, as the engines' and shims' do).
    let mut orphan = Command::new("sleep")
        .arg0(run.join("n0").join("dockerd"))
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("sleep: {e}"));
    let kept_dir = std::path::Path::new(swarm::RUN_ROOT).join(&kept);
    swarm::create_dir(&kept_dir);

    assert!(!swarm::leftovers(&stale).is_empty());
    swarm::sweep_stale();
    let orphan_exit = orphan.wait().unwrap_or_else(|e| panic!("{e}"));
    let kept_survived = kept_dir.exists();
    // The live owner's directory is this test's to remove.
    let _ = std::fs::remove_dir_all(&kept_dir);
    let _ = std::fs::remove_dir(swarm::RUN_ROOT);
    let _ = live.kill();
    let _ = live.wait();

    assert_eq!(swarm::leftovers(&stale), Vec::<String>::new());
    assert!(
        !orphan_exit.success(),
        "the stale cluster's process was not killed"
    );
    assert!(kept_survived, "the sweep removed a live process's cluster");
}
