//! `berth exec` and the SSH gateway on a real three-node swarm: one
//! `berth ssh-gateway --target swarm` per node, each inside its node's
//! network namespace on the node's address with its own empty state
//! directory (it learns the grants from what the apply published on the
//! manager), and the real OpenSSH client in the bridge's namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::swarm::SwarmCluster;

use crate::ssh::{
    Keys, assert_refused, pseudo_random, run, run_input, sha256_hex, ssh_command, stderr, stdout,
};
use crate::support::{Workspace, base_image, bin, show, unique_name, wait_for};
use crate::swarm::{berth, berth_command, exec_on, ok, running_on};

const WAIT: Duration = Duration::from_secs(60);

/// A gateway running in one node's network namespace; killed when dropped
/// (also when the test fails).
struct NodeGateway {
    child: Child,
    addr: String,
    port: u16,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl NodeGateway {
    /// `berth ssh-gateway` on `node`'s address and `port`, in its network
    /// namespace, talking to the manager; `state`: its state directory
    /// (a fresh empty one when `None`); `swarm`: with `--target swarm`.
    fn start(c: &SwarmCluster, node: usize, port: u16, nodes: &Path, state: Option<&Path>) -> Self {
        let own = tempfile::tempdir().expect("gateway state dir");
        let log = own.path().join("gateway.log");
        let state_dir = state
            .map(Path::to_path_buf)
            .unwrap_or_else(|| own.path().join("state"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", c.netns(node)])
            .arg(bin())
            .args([
                "ssh-gateway",
                "--listen",
                &format!("{}:{port}", c.addr(node)),
            ])
            .env("BERTH_STATE_DIR", &state_dir)
            .env("DOCKER_HOST", c.manager_host())
            .env("BERTH_NODES", nodes)
            .env("RUST_LOG", "warn,berth::audit=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // Only the gateways with their own state directory learn the grants
        // from the swarm.
        cmd.env(
            "BERTH_TARGET",
            if state.is_none() { "swarm" } else { "host" },
        );
        let mut child = cmd.spawn().expect("start ssh-gateway");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let gw = Self {
            child,
            addr: c.addr(node).to_string(),
            port,
            log,
            _state: own,
        };
        assert!(
            line.contains("listening on"),
            "the gateway on {} did not start: {line:?}\n{}",
            c.hostname(node),
            gw.log()
        );
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first audit line matching `pred`, waiting for it (it is written
    /// just after the client was told the session ended).
    fn wait_log_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            assert!(start.elapsed() < WAIT, "no such log line in:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ssh login@<node address>` with `key`, run in the bridge's namespace.
    fn ssh(
        &self,
        c: &SwarmCluster,
        known_hosts: &Path,
        keys: &Keys,
        key: &str,
        login: &str,
    ) -> Command {
        let inner = ssh_command(&self.addr, self.port, known_hosts, keys, key, login);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", c.bridge_netns()))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        cmd
    }
}

impl Drop for NodeGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deployment_file(name: &str, keys: &Keys, mail_key: &str) -> String {
    format!(
        r#"name = "{name}"

[keys]
alice = "{alice}"
bob = "{bob}"

[services.mail]
image = "{image}"
endpoint_mode = "dnsrr"
volumes = ["data:/data"]
ssh = ["{mail_key}"]
command = ["sh", "-c", "echo mail-task > /data/who; trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2

[services.web]
image = "{image}"
endpoint_mode = "dnsrr"
ssh = ["bob"]
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#,
        alice = keys.public("alice"),
        bob = keys.public("bob"),
        image = base_image()
    )
}

/// The ssh access lists published for `name` on the swarm.
fn access_lists(c: &SwarmCluster, name: &str) -> Vec<String> {
    let out = c.docker_ok(
        0,
        &[
            "config",
            "ls",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "--filter",
            "label=berth.role=ssh-access",
            "--format",
            "{{.Name}}",
        ],
    );
    out.lines().map(String::from).collect()
}

#[test]
fn ssh_and_exec_reach_a_swarm_task_from_every_node_s_gateway_with_the_host_guarantees() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob", "mallory"]);
    let name = unique_name("swssh");
    ws.write("berth.toml", &deployment_file(&name, &keys, "alice"));
    let out = berth(&c, &ws, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !show(&out).contains("not served on a swarm"),
        "{}",
        show(&out)
    );
    assert_eq!(
        access_lists(&c, &name).len(),
        1,
        "one access list published"
    );
    let mail = format!("{name}-mail");
    assert!(wait_for(WAIT, || running_on(&c, &mail).is_some()));
    let node = running_on(&c, &mail).unwrap_or_else(|| panic!("no task of {mail}"));
    assert_ne!(node, 0, "mail's data is pinned to a worker");
    // What only mail's task has: its container's hostname, and the file it wrote.
    let hostname = exec_on(&c, node, &mail, "hostname");
    assert!(wait_for(WAIT, || exec_on(&c, node, &mail, "cat /data/who")
        == "mail-task"));

    let nodes = ws.path().join("nodes.toml");
    ws.write("nodes.toml", &c.nodes_file());
    let gateways: Vec<NodeGateway> = (0..c.nodes())
        .map(|i| NodeGateway::start(&c, i, 2222, &nodes, None))
        .collect();
    let hosts_dir = tempfile::tempdir().expect("known_hosts dir");
    let known = hosts_dir.path().join("known_hosts");

    // From every node's address: mail's task, the exit status passed through,
    // and an audit line naming the node and the task.
    for (i, gw) in gateways.iter().enumerate() {
        let mut cmd = gw.ssh(&c, &known, &keys, "alice", "mail");
        cmd.arg("hostname; cat /data/who; exit 7");
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(7), "via node{i}: {}", show(&out));
        assert_eq!(
            stdout(&out),
            format!("{hostname}\nmail-task\n"),
            "via node{i}: {}",
            show(&out)
        );
        let line = gw.wait_log_line(|l| l.contains("ssh session") && l.contains("exit_status=7"));
        assert!(
            line.contains(&format!("node={}", c.hostname(node)))
                && line.contains(&format!("task={mail}.1"))
                && line.contains("login=mail"),
            "via node{i}: {line}"
        );
    }

    let gw = &gateways[0];
    // A PTY with -tt.
    let mut cmd = gw.ssh(&c, &known, &keys, "alice", "mail");
    cmd.args(["-tt", "test -t 0 && test -t 1 && echo TTY; tty"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("TTY\r\n/dev/pts/"), "{}", show(&out));
    // Binary-safe stdin: random bytes through cat, checksummed on both ends.
    let data = pseudo_random(3 * 1024 * 1024 + 17, 0x2545f4914f6cdd1d);
    let mut cmd = gateways[2].ssh(&c, &known, &keys, "alice", "mail");
    cmd.arg("cat > /tmp/blob && sha256sum /tmp/blob && wc -c < /tmp/blob");
    let out = run_input(cmd, data.clone());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&sha256_hex(&data)), "{}", show(&out));
    assert!(
        text.ends_with(&format!("\n{}\n", data.len())),
        "{}",
        show(&out)
    );
    // Refused: a key nobody granted, another service's key, unknown logins.
    let try_ = |key: &str, login: &str| {
        let mut cmd = gw.ssh(&c, &known, &keys, key, login);
        cmd.arg("echo INSIDE");
        run(cmd)
    };
    assert_eq!(stdout(&try_("bob", "web")), "INSIDE\n");
    assert_refused(&try_("mallory", "mail"), "unknown key");
    assert_refused(&try_("bob", "mail"), "bob's key on mail");
    for login in ["nosuch", "root", &mail as &str, "mail-2"] {
        assert_refused(&try_("alice", login), login);
    }
    // Forwarding is refused, and said so in the audit log.
    let mut cmd = gw.ssh(&c, &known, &keys, "alice", "mail");
    cmd.args(["-W", "127.0.0.1:22"]);
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    gw.wait_log_line(|l| l.contains("refused: port forwarding to 127.0.0.1:22"));
    let mut cmd = gw.ssh(&c, &known, &keys, "alice", "mail");
    cmd.args(["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
        .arg("echo INSIDE");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(!stdout(&out).contains("INSIDE"), "{}", show(&out));

    // The manager's gateway reading the apply's own state directory (no
    // --target swarm) serves the swarm deployment too.
    let local = NodeGateway::start(&c, 0, 2223, &nodes, Some(&ws.state_dir()));
    let mut cmd = local.ssh(&c, &known, &keys, "alice", "mail");
    cmd.arg("cat /data/who");
    let out = run(cmd);
    assert_eq!(stdout(&out), "mail-task\n", "{}", show(&out));
    local.wait_log_line(|l| l.contains("ssh session") && l.contains(&format!("task={mail}.1")));

    // berth exec: the same task, its exit status, binary-safe stdin.
    let out = berth(
        &c,
        &ws,
        &["exec", "mail", "--", "sh", "-c", "cat /data/who; exit 5"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(stdout(&out), "mail-task\n", "{}", show(&out));
    let mut cmd = berth_command(&c, &ws, &["exec", "-T", "mail", "--", "sha256sum"]);
    cmd.stdin(Stdio::piped());
    let out = run_input(cmd, data.clone());
    assert!(
        stdout(&out).starts_with(&sha256_hex(&data)),
        "{}",
        show(&out)
    );
    // No running task: said, with where to look.
    c.docker_ok(0, &["service", "scale", "-d", &format!("{name}-web=0")]);
    assert!(wait_for(WAIT, || {
        let out = berth(&c, &ws, &["exec", "web", "--", "true"]);
        out.status.code() == Some(1) && stderr(&out).contains("berth ps --target swarm")
    }));
    let mut cmd = gateways[1].ssh(&c, &known, &keys, "bob", "web");
    cmd.arg("echo INSIDE");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("no running task"), "{}", show(&out));

    // A key revoked by an apply stops working at the next login, on every node.
    ws.write("berth.toml", &deployment_file(&name, &keys, "bob"));
    let out = berth(&c, &ws, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(access_lists(&c, &name).len(), 1, "the old list is removed");
    for gw in &gateways {
        let mut cmd = gw.ssh(&c, &known, &keys, "alice", "mail");
        cmd.arg("echo INSIDE");
        assert_refused(&run(cmd), "alice after the revoke");
        let mut cmd = gw.ssh(&c, &known, &keys, "bob", "mail");
        cmd.arg("cat /data/who");
        assert_eq!(stdout(&run(cmd)), "mail-task\n");
    }
    // Nothing changed since: the plan is empty.
    let plan = berth(&c, &ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));

    // Destroy removes the published list: nobody gets in any more.
    ok(&c, &ws, &["destroy"]);
    assert!(access_lists(&c, &name).is_empty());
    let mut cmd = gateways[2].ssh(&c, &known, &keys, "bob", "mail");
    cmd.arg("echo INSIDE");
    assert_refused(&run(cmd), "bob after the destroy");
}
