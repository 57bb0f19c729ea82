//! `berth move SERVICE --to NODE` on a real three-node swarm: a pinned
//! service's volume of odd files carried to another node exactly, the old
//! copy kept until `--prune-source`, moved back; refusals touch nothing;
//! berth killed mid-copy, or the new node's engine killed, and run again
//! converges with nothing lost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::swarm::SwarmCluster;

use crate::data::{
    Entry, FILL_TREE, LISTING, assert_same_tree, assert_tree_has_every_kind, parse_listing,
};
use crate::support::{Workspace, base_image, show, unique_name, wait_for};
use crate::swarm::{berth, berth_command, ok, running_on};

const WAIT: Duration = Duration::from_secs(90);

/// A web server on the data (port 8080 of the node holding it), pinned to
/// a worker; and a service without volumes.
fn file(name: &str) -> String {
    format!(
        r#"name = "{name}"

[services.store]
image = "{image}"
endpoint_mode = "dnsrr"
volumes = ["data:/data"]
ports = ["8080:80"]
placement = ["node.role==worker"]
command = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /data & wait"]
stop_timeout = 2

[services.plain]
image = "{image}"
endpoint_mode = "dnsrr"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#,
        image = base_image()
    )
}

/// Run `script` as root in a throw-away container of node `node` with
/// `volume` at /v; its raw stdout.
fn in_volume(c: &SwarmCluster, node: usize, volume: &str, script: &str) -> Vec<u8> {
    let out = c.docker(
        node,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{volume}:/v"),
            base_image(),
            "sh",
            "-c",
            script,
        ],
    );
    assert!(
        out.status.success(),
        "script in volume {volume} on node {node} failed: {}",
        show(&out)
    );
    out.stdout
}

fn listing(c: &SwarmCluster, node: usize, volume: &str) -> BTreeMap<Vec<u8>, Entry> {
    parse_listing(&in_volume(c, node, volume, LISTING))
}

fn has_volume(c: &SwarmCluster, node: usize, volume: &str) -> bool {
    c.docker(node, &["volume", "inspect", volume])
        .status
        .success()
}

/// No carrier container of the deployment is left on any node.
fn assert_no_carriers(c: &SwarmCluster, name: &str) {
    for node in 0..c.nodes() {
        let left = c.docker_ok(
            node,
            &[
                "ps",
                "-aq",
                "--filter",
                "label=berth.carrier",
                "--filter",
                &format!("label=berth.deployment={name}"),
            ],
        );
        assert!(left.is_empty(), "carriers left on node {node}: {left}");
    }
}

fn journal(ws: &Workspace, name: &str) -> PathBuf {
    ws.state_dir()
        .join("deployments")
        .join(name)
        .join("moves")
        .join("store.json")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn version(c: &SwarmCluster, service: &str) -> String {
    c.docker_ok(
        0,
        &["service", "inspect", "-f", "{{.Version.Index}}", service],
    )
}

/// Apply, wait for `store` on a worker, fill its volume with every kind of
/// entry plus `extra`; returns (service, volume, node, listing).
fn start_store(
    c: &SwarmCluster,
    ws: &Workspace,
    name: &str,
    extra: &str,
) -> (String, String, usize, BTreeMap<Vec<u8>, Entry>) {
    ws.write("berth.toml", &file(name));
    ok(c, ws, &["apply"]);
    let service = format!("{name}-store");
    assert!(
        wait_for(WAIT, || running_on(c, &service).is_some()),
        "{service} does not run"
    );
    let node = running_on(c, &service).unwrap_or_else(|| panic!("no task of {service}"));
    assert_ne!(node, 0, "pinned to a worker");
    let volume = format!("{name}-store-data");
    assert!(
        has_volume(c, node, &volume),
        "volume {volume} on node {node}"
    );
    in_volume(
        c,
        node,
        &volume,
        &format!("{FILL_TREE}\nprintf first > /v/hello\n{extra}"),
    );
    let before = listing(c, node, &volume);
    assert_tree_has_every_kind(&before);
    (service, volume, node, before)
}

fn answers(c: &SwarmCluster, node: usize, path: &str, text: &str) -> bool {
    wait_for(WAIT, || {
        c.http_get(c.addr(node), 8080, path)
            .is_some_and(|r| r.contains(text))
    })
}

#[test]
fn move_carries_odd_files_exactly_keeps_the_old_copy_until_pruned_and_moves_back() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let name = unique_name("swmv");
    let (service, volume, a, before) = start_store(&c, &ws, &name, "");
    // The other worker.
    let b = 3 - a;
    let (ha, hb) = (c.hostname(a).to_string(), c.hostname(b).to_string());

    // Refusals: exit 2, nothing touched.
    let v0 = version(&c, &service);
    c.docker_ok(0, &["node", "update", "--availability", "drain", &hb]);
    let refusals: Vec<(Vec<&str>, &str, Option<&str>)> = vec![
        (vec!["move", "store", "--to", &ha], "already", None),
        (vec!["move", "store", "--to", "nosuch"], "no node", None),
        (vec!["move", "plain", "--to", &hb], "no volumes", None),
        (vec!["move", "nosuch", "--to", &hb], "no service", None),
        (vec!["move", "store", "--to", "node0"], "placement", None),
        (vec!["move", "store", "--to", &hb], "drain", None),
        (
            vec!["move", "store", "--to", &hb],
            "--target swarm",
            Some("host"),
        ),
    ];
    for (args, says, target) in &refusals {
        let mut cmd = berth_command(&c, &ws, args);
        if let Some(t) = target {
            cmd.env("BERTH_TARGET", t);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("berth: {e}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(show(&out).contains(says), "{args:?}: {}", show(&out));
    }
    c.docker_ok(0, &["node", "update", "--availability", "active", &hb]);
    assert_eq!(version(&c, &service), v0, "a refusal changed the service");
    assert_eq!(running_on(&c, &service), Some(a));
    assert!(!has_volume(&c, b, &volume), "a refusal made a volume");
    assert!(!journal(&ws, &name).exists(), "a refusal wrote a journal");

    // a -> b: the same files there, the service answers there, a keeps its copy.
    let out = json(&ok(
        &c,
        &ws,
        &["move", "store", "--to", &hb, "--output", "json"],
    ));
    assert_eq!(out["from"], ha.as_str(), "{out}");
    assert_eq!(out["to"], hb.as_str(), "{out}");
    assert_eq!(out["volumes"][0]["name"], volume.as_str(), "{out}");
    assert_eq!(out["volumes"][0]["replaced"], false, "{out}");
    assert_eq!(out["kept_on"], ha.as_str(), "{out}");
    assert!(
        out["volumes"][0]["contents"]["bytes"].as_u64() > Some(20 << 20),
        "{out}"
    );
    assert_eq!(running_on(&c, &service), Some(b));
    assert_same_tree(&before, &listing(&c, b, &volume));
    assert!(
        answers(&c, b, "/hello", "first"),
        "store does not answer on {hb}"
    );
    assert_same_tree(&before, &listing(&c, a, &volume));
    assert_no_carriers(&c, &name);
    let j = std::fs::read_to_string(journal(&ws, &name)).unwrap_or_default();
    assert!(j.contains("\"phase\": \"done\""), "{j}");

    // New data on b, then b -> a with --prune-source: a's older copy is
    // replaced, b's removed.
    in_volume(&c, b, &volume, "printf second > /v/second");
    let before2 = listing(&c, b, &volume);
    let out = json(&ok(
        &c,
        &ws,
        &[
            "move",
            "store",
            "--to",
            &ha,
            "--prune-source",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out["volumes"][0]["replaced"], true, "{out}");
    assert_eq!(out["pruned"][0], volume.as_str(), "{out}");
    assert!(out["kept_on"].is_null(), "{out}");
    assert_eq!(running_on(&c, &service), Some(a));
    assert_same_tree(&before2, &listing(&c, a, &volume));
    assert!(
        answers(&c, a, "/second", "second"),
        "store does not answer on {ha}"
    );
    assert!(
        !has_volume(&c, b, &volume),
        "--prune-source left the old copy"
    );
    assert!(!journal(&ws, &name).exists());
    assert_no_carriers(&c, &name);
    // Nothing is left to prune.
    let again = berth(&c, &ws, &["move", "store", "--to", &ha, "--prune-source"]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
}

/// Start `berth move store --to <node>` and return it once the journal
/// says it is in `phase`.
fn move_until(
    c: &SwarmCluster,
    ws: &Workspace,
    name: &str,
    to: &str,
    phase: &str,
) -> std::process::Child {
    let mut child = berth_command(c, ws, &["move", "store", "--to", to])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start berth: {e}"));
    let path = journal(ws, name);
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(&format!("\"phase\": \"{phase}\"")) {
            return child;
        }
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            panic!("berth move ended before {phase}:\n{}", show(&out));
        }
        assert!(Instant::now() < deadline, "the move never got to {phase}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finish(child: std::process::Child) -> Output {
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("berth: {e}"))
}

#[test]
fn move_interrupted_by_a_kill_or_a_dead_engine_converges_when_run_again() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let name = unique_name("swmvk");
    // Large enough that the copy takes a while.
    let (service, volume, a, before) =
        start_store(&c, &ws, &name, "head -c 209715200 /dev/urandom > /v/big");
    let b = 3 - a;
    let (ha, hb) = (c.hostname(a).to_string(), c.hostname(b).to_string());

    // berth SIGKILLed while copying: the service stays stopped everywhere.
    let mut child = move_until(&c, &ws, &name, &hb, "copying");
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = finish(child);
    assert_eq!(running_on(&c, &service), None, "runs while being moved");
    let j = std::fs::read_to_string(journal(&ws, &name)).unwrap_or_default();
    assert!(j.contains("\"phase\": \"copying\""), "{j}");
    // Run again: it carries on and gets there with everything.
    let out = berth(&c, &ws, &["move", "store", "--to", &hb]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("carrying on"), "{}", show(&out));
    assert_eq!(running_on(&c, &service), Some(b));
    assert_same_tree(&before, &listing(&c, b, &volume));
    assert!(answers(&c, b, "/hello", "first"));
    assert_no_carriers(&c, &name);

    // The new node's engine dies while copying back to it: the service
    // runs again on its old node, with its data; once the engine is back,
    // running the move again gets it there.
    let child = move_until(&c, &ws, &name, &ha, "copying");
    c.kill_engine(a);
    let out = finish(child);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("runs again on node {hb}")),
        "{}",
        show(&out)
    );
    assert!(
        wait_for(WAIT, || running_on(&c, &service) == Some(b)),
        "{service} is not back on {hb}"
    );
    assert_same_tree(&before, &listing(&c, b, &volume));
    c.start_engine(a);
    c.wait_node(a, "ready");
    let started = Instant::now();
    let out = berth(&c, &ws, &["move", "store", "--to", &ha]);
    assert!(out.status.success(), "{}", show(&out));
    eprintln!(
        "moved 220 MB from {hb} to {ha} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(running_on(&c, &service), Some(a));
    assert_same_tree(&before, &listing(&c, a, &volume));
    assert!(answers(&c, a, "/hello", "first"));
    assert_no_carriers(&c, &name);

    // Killed once the copy is verified, while the pin moves and the service
    // starts on the new node: run again, it finishes without copying again,
    // and the service never ran on the old node meanwhile.
    let mut child = move_until(&c, &ws, &name, &hb, "pinning");
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = finish(child);
    assert_ne!(running_on(&c, &service), Some(a), "runs on the old node");
    let out = berth(&c, &ws, &["move", "store", "--to", &hb]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("carrying on"), "{}", show(&out));
    assert!(
        show(&out).contains("verified by an earlier run"),
        "{}",
        show(&out)
    );
    assert_eq!(running_on(&c, &service), Some(b));
    assert_same_tree(&before, &listing(&c, b, &volume));
    assert_no_carriers(&c, &name);
}
