//! A real multi-node Docker Swarm on one machine, for tests of berth's swarm
//! target. Started from nothing, removed completely when dropped.
//!
//! Each node is one `dockerd` in a network namespace of its own (`<tag>n<i>`),
//! wired by a veth pair into a bridge that lives in a third namespace
//! (`<tag>br`), so nothing is added to the host's own network: the nodes have
//! the addresses `198.18.0.11`, `198.18.0.12`, ... (`198.18.0.1` is the
//! bridge), reachable only from inside those namespaces. Each engine has its
//! own data root, exec root, socket, pid file, containerd namespaces, cgroup
//! parent and configuration file, and its own hostname (`node0`, `node1`,
//! ...; a UTS namespace). Node 0 is the manager and the others join it as
//! workers.
//!
//! - The engine is started with `nsenter --net=/var/run/netns/<ns>`, not `ip
//!   netns exec`: the latter remounts `/sys`, and the engine then fails with
//!   "Devices cgroup isn't mounted".
//! - Its own configuration file repeats the host engine's storage driver
//!   (`fuse-overlayfs` here) and sets the engine key's path: the host's
//!   `/etc/docker/daemon.json` may set `data-root`, which conflicts with the
//!   flag.
//! - No registry is reachable: [`SwarmCluster::load_image`] copies an image
//!   from the host engine (`docker save` | `docker load`) into every node.
//!   [`SwarmCluster::start_registry`] runs a registry (Debian's
//!   `docker-registry`) in the bridge's namespace on [`REGISTRY`], which
//!   every node reaches and trusts over plain HTTP (`insecure-registries`
//!   in each engine's configuration); [`SwarmCluster::push`] pushes to it
//!   from a node. The host's loopback (where `Registry` listens) is not
//!   seen from the nodes' namespaces.
//! - Services reached by name over an overlay network need `--endpoint-mode
//!   dnsrr` here: the default virtual IP needs IPVS, which this kind of
//!   machine lacks (the name resolves, nothing answers). For the same reason
//!   the ingress routing mesh does not answer; host-mode published ports do
//!   (`--publish mode=host,...`), on each node's address.
//! - The manager heartbeat is one second, so a node whose engine died is
//!   `down` within a few seconds instead of fifteen.
//! - A node's engine killed and started again cleans up the containers it
//!   left running before it answers, stopping each with its stop signal and
//!   grace period (10 s by default): a shell or busybox as PID 1 ignores
//!   SIGTERM, so give such test services a `trap` (or a short
//!   `--stop-grace-period`) or every restart waits out the grace period.
//!
//! Everything the cluster makes is named after its tag `bsw<pid>x<n>` (the
//! test process and a counter): namespaces `<tag>n<i>` and `<tag>br`,
//! directories `/run/berth-swarm/<tag>` (sockets, exec roots) and
//! `/var/tmp/berth-swarm/<tag>` (data roots), cgroups `<tag>n<i>`. Dropping
//! the cluster kills its processes (engines, their containerd, shims,
//! containers, fuse-overlayfs), unmounts what they mounted, and removes the
//! cgroups, namespaces (with their veths and the bridge) and directories.
//! Leftovers of a test process that was killed are swept the same way by the
//! next process that starts a cluster. The host engine is only read from
//! (`docker save`).
//!
//! Measured on a 2-core machine shared with other builds (load 12): a 3-node
//! cluster is up, every node `ready`, in 2.6-3.0 s (about 1 s for the
//! engines to answer, the rest is the swarm forming); [`load_image`] of a
//! busybox image into the three nodes takes 0.5-3.5 s (mostly `docker load`
//! competing for the CPU); a killed engine is `down` for the manager within
//! 2-4 s and, started again, answers in about 2 s and is `ready` at once;
//! the manager's engine killed and started again answers in about 2 s, and
//! every node is `ready` again within 6 s; a node [`cut`] off is `down`
//! within about 4 s and `ready` again a fraction of a second after
//! [`heal`]; dropping the cluster (with its services running) takes
//! 0.8-2.3 s.
//!
//! [`load_image`]: SwarmCluster::load_image
//! [`cut`]: SwarmCluster::cut
//! [`heal`]: SwarmCluster::heal
//!
//! Needs root, `ip` (iproute2), `nsenter` and `unshare` (util-linux),
//! `dockerd`, `umount` and `kill`.
//!
//! ```ignore
//! let c = SwarmCluster::start(3);
//! let image = base_image();
//! c.load_image(image);
//! c.docker_ok(0, &["service", "create", "--name", "web", "--replicas", "3", image, "sleep", "1d"]);
//! // berth itself talks to the manager:
//! Command::new(bin).args(["ps", "--target", "swarm"]).env("DOCKER_HOST", c.manager_host());
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Start of every name the harness gives (namespaces, directories, cgroups).
pub const PREFIX: &str = "bsw";
/// Sockets, exec roots, configuration and logs of every cluster.
pub const RUN_ROOT: &str = "/run/berth-swarm";
/// Data roots (images, containers, swarm state) of every cluster.
pub const DATA_ROOT: &str = "/var/tmp/berth-swarm";
/// The nodes' subnet (inside the cluster's own namespaces only): a range
/// reserved for network tests, which no engine address pool uses.
const SUBNET: &str = "198.18.0";
/// `host:port` of the cluster's registry (see [`SwarmCluster::start_registry`]),
/// on the bridge's address.
pub const REGISTRY: &str = "198.18.0.1:5000";
/// How long an engine may take to answer, and a node to reach a state.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running swarm of [`nodes`](Self::nodes) engines; node 0 is the manager.
pub struct SwarmCluster {
    /// `bsw<pid>x<n>`: the start of every name this cluster owns.
    pub tag: String,
    nodes: Vec<Node>,
    /// Image tags already loaded into every node.
    loaded: Mutex<Vec<String>>,
    /// The registry in the bridge's namespace, once started.
    registry: Mutex<Option<Child>>,
}

struct Node {
    netns: String,
    hostname: String,
    addr: String,
    run: PathBuf,
    data: PathBuf,
    engine: Mutex<Option<Child>>,
}

impl SwarmCluster {
    /// Start a swarm of `nodes` engines (at least 1) and wait until every node
    /// is `ready`. Panics, having removed what it made, if that fails.
    pub fn start(nodes: usize) -> Self {
        assert!(nodes >= 1, "a swarm needs at least one node");
        assert!(nodes <= 200, "the node subnet holds at most 200 nodes");
        preflight();
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_stale);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        // A dead process with this pid may have left the same names behind.
        teardown(&tag);
        let cluster = SwarmCluster {
            nodes: (0..nodes)
                .map(|i| Node {
                    netns: format!("{tag}n{i}"),
                    hostname: format!("node{i}"),
                    addr: format!("{SUBNET}.{}", 11 + i),
                    run: Path::new(RUN_ROOT).join(&tag).join(format!("n{i}")),
                    data: Path::new(DATA_ROOT).join(&tag).join(format!("n{i}")),
                    engine: Mutex::new(None),
                })
                .collect(),
            tag,
            loaded: Mutex::new(Vec::new()),
            registry: Mutex::new(None),
        };
        // From here on, a panic drops `cluster`, which removes everything.
        cluster.write_owner();
        cluster.make_network();
        for i in 0..nodes {
            cluster.write_engine_config(i);
            cluster.spawn_engine(i);
        }
        for i in 0..nodes {
            cluster.wait_engine(i);
        }
        cluster.form_swarm();
        cluster
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `DOCKER_HOST` of a node's engine: `unix:///run/berth-swarm/<tag>/n<i>/docker.sock`.
    pub fn docker_host(&self, node: usize) -> String {
        format!("unix://{}", self.socket(node).display())
    }

    /// `DOCKER_HOST` of the manager (node 0).
    pub fn manager_host(&self) -> String {
        self.docker_host(0)
    }

    /// A berth nodes file (`nodes.toml`) naming every node's engine socket
    /// by hostname, as an operator writes it.
    pub fn nodes_file(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                format!(
                    "[nodes.{}]\nengine = \"{}\"\n",
                    self.hostname(i),
                    self.docker_host(i)
                )
            })
            .collect()
    }

    /// A node's address on the cluster network (inside its namespaces).
    pub fn addr(&self, node: usize) -> &str {
        &self.nodes[node].addr
    }

    /// A node's hostname, as swarm shows it (`node.hostname` constraints).
    pub fn hostname(&self, node: usize) -> &str {
        &self.nodes[node].hostname
    }

    /// The network namespace of a node (under `/var/run/netns`).
    pub fn netns(&self, node: usize) -> &str {
        &self.nodes[node].netns
    }

    /// The namespace holding the bridge; it has the address `198.18.0.1` and
    /// reaches every node (see [`in_bridge`](Self::in_bridge)).
    pub fn bridge_netns(&self) -> String {
        format!("{}br", self.tag)
    }

    /// Run `docker args...` against a node's engine.
    pub fn docker(&self, node: usize, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.docker_host(node))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
    }

    /// [`docker`](Self::docker), which must succeed; its trimmed stdout.
    pub fn docker_ok(&self, node: usize, args: &[&str]) -> String {
        let out = self.docker(node, args);
        assert!(
            out.status.success(),
            "docker {args:?} on {} failed:\n{}",
            self.hostname(node),
            crate::show(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run a program in the bridge's namespace, which reaches every node's
    /// address (and nothing else): `in_bridge(&["/bin/busybox", "nc", ...])`.
    pub fn in_bridge(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.bridge_netns()))
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter {args:?}: {e}"))
    }

    /// One HTTP/1.0 GET of `path` on `addr:port`, from the bridge namespace
    /// (busybox `nc`, 3 s timeout): the whole response, or `None` when
    /// nothing answered.
    pub fn http_get(&self, addr: &str, port: u16, path: &str) -> Option<String> {
        let request = format!(
            "printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | {} nc -w 3 {addr} {port}",
            crate::BUSYBOX
        );
        let out = self.in_bridge(&["/bin/sh", "-c", &request]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// Copy an image from the host engine into every node (once per tag).
    pub fn load_image(&self, image: &str) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.iter().any(|t| t == image) {
            return;
        }
        let archive = Path::new(DATA_ROOT)
            .join(&self.tag)
            .join(format!("image-{}.tar", crate::short_hash(image)));
        let out = Command::new("docker")
            .args(["save", "-o"])
            .arg(&archive)
            .arg(image)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker save: {e}"));
        assert!(
            out.status.success(),
            "docker save {image} from the host engine failed:\n{}",
            crate::show(&out)
        );
        let archive_arg = archive.to_string_lossy().into_owned();
        std::thread::scope(|s| {
            for node in 0..self.nodes() {
                let archive_arg = &archive_arg;
                s.spawn(move || self.docker_ok(node, &["load", "-q", "-i", archive_arg]));
            }
        });
        let _ = std::fs::remove_file(&archive);
        loaded.push(image.to_string());
    }

    /// Start the cluster's registry (once): Debian's `docker-registry` in
    /// the bridge's namespace, listening on [`REGISTRY`], its storage under
    /// the cluster's data directory. Returns [`REGISTRY`] once it answers.
    pub fn start_registry(&self) -> &'static str {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if registry.is_some() {
            return REGISTRY;
        }
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "{} is missing: install Debian's docker-registry (scripts/install-deps)",
            bin.display()
        );
        let run = Path::new(RUN_ROOT).join(&self.tag).join("registry");
        let data = Path::new(DATA_ROOT).join(&self.tag).join("registry");
        create_dir(&run);
        create_dir(&data);
        let config = run.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n",
                data.display()
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write the registry configuration: {e}"));
        let log = std::fs::File::create(run.join("registry.log"))
            .unwrap_or_else(|e| panic!("cannot open the registry log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the registry log: {e}"));
        // Its command line names the cluster's directory: teardown finds it.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.bridge_netns()))
            .arg("--")
            .arg(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        *registry = Some(child);
        let (addr, port) = REGISTRY.split_once(':').unwrap_or((REGISTRY, "5000"));
        let port: u16 = port.parse().unwrap_or(5000);
        let up = crate::wait_for(ENGINE_TIMEOUT, || {
            self.http_get(addr, port, "/v2/")
                .is_some_and(|r| r.starts_with("HTTP/"))
        });
        assert!(
            up,
            "the registry did not answer on {REGISTRY}:\n{}",
            std::fs::read_to_string(run.join("registry.log")).unwrap_or_default()
        );
        REGISTRY
    }

    /// Stop the registry [`start_registry`](Self::start_registry) started
    /// (its storage stays until the cluster goes).
    pub fn stop_registry(&self) {
        if let Some(mut child) = self
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Tag the image `local` (on `node` already) as `reference` there and
    /// push it (to [`REGISTRY`]). Returns the digest the registry gave it.
    pub fn push(&self, node: usize, local: &str, reference: &str) -> String {
        self.docker_ok(node, &["tag", local, reference]);
        let out = self.docker_ok(node, &["push", reference]);
        out.lines()
            .filter_map(|l| l.split("digest: ").nth(1))
            .filter_map(|d| d.split_whitespace().next())
            .next_back()
            .unwrap_or_else(|| panic!("docker push {reference} named no digest:\n{out}"))
            .to_string()
    }

    /// Kill a node's engine (SIGKILL, as a crash) and the containerd it
    /// started: its containers keep running until the engine starts again
    /// and cleans them up.
    pub fn kill_engine(&self, node: usize) {
        let mut engine = self.nodes[node]
            .engine
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = engine.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The engine's containerd dies with it, but until init reaps it, it
        // is a zombie that its pid file still names, and a zombie counts as
        // running: the next engine would wait for it instead of starting a
        // new one. Make sure it is gone and forget its pid.
        let state = self.nodes[node].run.join("exec").join("containerd");
        let config = state.join("containerd.toml").to_string_lossy().into_owned();
        let gone = crate::wait_for(ENGINE_TIMEOUT, || {
            let pids: Vec<String> = processes_with(&config);
            if !pids.is_empty() {
                kill(&pids);
            }
            pids.is_empty()
        });
        assert!(
            gone,
            "the containerd of {} does not die",
            self.hostname(node)
        );
        let _ = std::fs::remove_file(state.join("containerd.pid"));
    }

    /// Start a node's engine again (after [`kill_engine`](Self::kill_engine))
    /// and wait until it answers; it rejoins the swarm by itself (see
    /// [`wait_node`](Self::wait_node)).
    pub fn start_engine(&self, node: usize) {
        self.spawn_engine(node);
        self.wait_engine(node);
    }

    /// Cut a node off the cluster network (its link goes down).
    pub fn cut(&self, node: usize) {
        self.set_link(node, "down");
    }

    /// Undo [`cut`](Self::cut).
    pub fn heal(&self, node: usize) {
        self.set_link(node, "up");
    }

    /// A node's status as the manager sees it: `ready`, `down`, `unknown`...
    pub fn node_status(&self, node: usize) -> Option<String> {
        let out = self.docker(
            0,
            &[
                "node",
                "inspect",
                "-f",
                "{{.Status.State}}",
                self.hostname(node),
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Wait until the manager sees the node in `state` (`ready`, `down`);
    /// panics with the node's engine log after [`ENGINE_TIMEOUT`].
    pub fn wait_node(&self, node: usize, state: &str) {
        let mut last = None;
        let ok = crate::wait_for(ENGINE_TIMEOUT, || {
            last = self.node_status(node);
            last.as_deref() == Some(state)
        });
        assert!(
            ok,
            "{} did not become {state} (last: {last:?})\n--- engine log (end)\n{}",
            self.hostname(node),
            self.engine_log(node, 40)
        );
    }

    /// The last `lines` lines of a node's engine log.
    pub fn engine_log(&self, node: usize, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.nodes[node].run.join("engine.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn socket(&self, node: usize) -> PathBuf {
        self.nodes[node].run.join("docker.sock")
    }

    /// Which process owns the cluster, for [`sweep_stale`].
    fn write_owner(&self) {
        let dir = Path::new(RUN_ROOT).join(&self.tag);
        create_dir(&dir);
        let me = std::process::id();
        let owner = format!("{me} {}\n", start_time(me).unwrap_or_default());
        std::fs::write(dir.join("owner"), owner)
            .unwrap_or_else(|e| panic!("cannot write {}/owner: {e}", dir.display()));
    }

    fn make_network(&self) {
        let br = self.bridge_netns();
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("{SUBNET}.1/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (i, n) in self.nodes.iter().enumerate() {
            let port = format!("v{i}");
            ip(&["netns", "add", &n.netns]);
            // Both ends are made inside namespaces: the host's own network
            // never holds them, even for a moment.
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &n.netns,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &n.netns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &n.netns,
                "addr",
                "add",
                &format!("{}/24", n.addr),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &n.netns, "link", "set", "eth0", "up"]);
        }
    }

    fn write_engine_config(&self, node: usize) {
        let n = &self.nodes[node];
        for d in [&n.run, &n.data] {
            create_dir(d);
        }
        // The host's storage driver, and an engine key of the node's own (the
        // default path is the host engine's /etc/docker/key.json).
        let config = serde_json::json!({
            "storage-driver": host_storage_driver(),
            "deprecated-key-path": n.run.join("key.json"),
            "insecure-registries": [REGISTRY],
        });
        std::fs::write(n.run.join("daemon.json"), config.to_string())
            .unwrap_or_else(|e| panic!("cannot write the engine configuration: {e}"));
    }

    fn spawn_engine(&self, node: usize) {
        let n = &self.nodes[node];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.run.join("engine.log"))
            .unwrap_or_else(|e| panic!("cannot open the engine log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the engine log: {e}"));
        let run = n.run.display();
        let dockerd = format!(
            "hostname {host} && exec dockerd --config-file {run}/daemon.json --data-root {data} --exec-root {run}/exec --pidfile {run}/docker.pid -H unix://{run}/docker.sock --containerd-namespace {ns} --containerd-plugins-namespace {ns}p --cgroup-parent /{ns}",
            host = n.hostname,
            data = n.data.join("root").display(),
            ns = n.netns,
        );
        // nsenter and unshare exec (no fork), and so does sh: the child is dockerd.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", n.netns))
            .args(["--", "unshare", "--uts", "--", "sh", "-c", &dockerd])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd for {}: {e}", n.hostname));
        *n.engine.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    fn wait_engine(&self, node: usize) {
        let mut exited = None;
        let ok = crate::wait_for(ENGINE_TIMEOUT, || {
            if let Some(child) = self.nodes[node]
                .engine
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited = Some(status);
                return true;
            }
            self.socket(node).exists()
                && self
                    .docker(node, &["version", "-f", "{{.Server.Version}}"])
                    .status
                    .success()
        });
        assert!(
            ok && exited.is_none(),
            "the engine of {} did not answer on {} (exited: {exited:?})\n--- engine log (end)\n{}",
            self.hostname(node),
            self.docker_host(node),
            self.engine_log(node, 40)
        );
    }

    fn form_swarm(&self) {
        let manager = self.addr(0).to_string();
        self.docker_ok(
            0,
            &[
                "swarm",
                "init",
                "--advertise-addr",
                &manager,
                "--listen-addr",
                &format!("{manager}:2377"),
                "--dispatcher-heartbeat",
                "1s",
            ],
        );
        let token = self.docker_ok(0, &["swarm", "join-token", "-q", "worker"]);
        std::thread::scope(|s| {
            for node in 1..self.nodes() {
                let (token, manager) = (&token, &manager);
                s.spawn(move || {
                    self.docker_ok(
                        node,
                        &[
                            "swarm",
                            "join",
                            "--advertise-addr",
                            self.addr(node),
                            "--token",
                            token,
                            &format!("{manager}:2377"),
                        ],
                    )
                });
            }
        });
        for node in 0..self.nodes() {
            self.wait_node(node, "ready");
        }
    }

    fn set_link(&self, node: usize, state: &str) {
        ip(&[
            "-n",
            &self.bridge_netns(),
            "link",
            "set",
            &format!("v{node}"),
            state,
        ]);
    }
}

impl Drop for SwarmCluster {
    fn drop(&mut self) {
        self.stop_registry();
        for n in &self.nodes {
            if let Some(mut child) = n.engine.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        teardown(&self.tag);
    }
}

/// `mkdir -p`, which survives another cluster's teardown removing the shared
/// root (when it was empty) between the two `mkdir`s.
pub fn create_dir(dir: &Path) {
    let mut tries = 0;
    while let Err(e) = std::fs::create_dir_all(dir) {
        tries += 1;
        assert!(tries < 10, "cannot create {}: {e}", dir.display());
    }
}

/// The host engine's storage driver (`fuse-overlayfs` where the engine runs
/// inside a VM's overlay root, `overlay2` on most hosts), which works on
/// this machine's disk; asked once per process.
fn host_storage_driver() -> &'static str {
    static DRIVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DRIVER.get_or_init(|| {
        let driver = crate::docker_ok(&["info", "-f", "{{.Driver}}"]);
        assert!(
            !driver.is_empty(),
            "the host engine names no storage driver"
        );
        driver
    })
}

/// Run `ip args...`; panics with its error.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Fail early, with the reason, where the harness cannot work.
fn preflight() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(String::from))
        });
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "the swarm test cluster needs root (network namespaces, engines)"
    );
    for tool in ["ip", "nsenter", "unshare", "dockerd", "umount", "kill"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        assert!(found, "the swarm test cluster needs `{tool}` on PATH");
    }
}

/// The start time (in clock ticks since boot) of a process, which tells a
/// live owner from a new process that got a dead owner's pid.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(String::from)
}

/// Whether the process that made cluster `tag` is gone.
fn owner_is_gone(tag: &str) -> bool {
    let Some(pid) = tag
        .strip_prefix(PREFIX)
        .and_then(|r| r.split_once('x'))
        .and_then(|(p, _)| p.parse::<u32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    let Some(now) = start_time(pid) else {
        return true;
    };
    match std::fs::read_to_string(Path::new(RUN_ROOT).join(tag).join("owner")) {
        Ok(owner) => owner.split_whitespace().nth(1) != Some(now.as_str()),
        // Not written yet, or /run was emptied: a live pid counts as the owner.
        Err(_) => false,
    }
}

/// The cluster tag at the start of a name the harness gave: `bsw<pid>x<n>`.
fn tag_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    let n_len = rest.chars().take_while(char::is_ascii_digit).count();
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) || n_len == 0 {
        return None;
    }
    Some(format!("{PREFIX}{pid}x{}", &rest[..n_len]))
}

/// Remove what clusters of test processes that are gone (killed, or
/// crashed before their destructors ran) left behind. [`SwarmCluster::start`]
/// runs it once per process; clusters of live processes are never touched.
pub fn sweep_stale() {
    let mut tags: Vec<String> = Vec::new();
    let mut names: Vec<String> = netns_names();
    for dir in [RUN_ROOT, DATA_ROOT] {
        names.extend(dir_names(Path::new(dir)));
    }
    names.extend(cluster_dirs_in_command_lines());
    names.extend(
        cgroup_dirs()
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
    );
    for name in names {
        if let Some(tag) = tag_of(&name)
            && !tags.contains(&tag)
        {
            tags.push(tag);
        }
    }
    for tag in tags.into_iter().filter(|t| owner_is_gone(t)) {
        eprintln!("swarm cluster: removing {tag}, left behind by a test process that is gone");
        teardown(&tag);
    }
}

fn netns_names() -> Vec<String> {
    dir_names(Path::new("/var/run/netns"))
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup directories the harness's engines made (their `--cgroup-parent`),
/// in every hierarchy (cgroup v1 controllers, or the v2 root).
fn cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    hierarchies.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists()),
    );
    let mut dirs = Vec::new();
    for h in hierarchies {
        for name in dir_names(&h) {
            if name.starts_with(PREFIX) && tag_of(&name).is_some() {
                dirs.push(h.join(name));
            }
        }
    }
    dirs
}

/// Every directory under `dir` (itself included), deepest first.
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subdirs_deepest_first(&e.path()));
            }
        }
    }
    out.push(dir.to_path_buf());
    out
}

/// The cluster directory names (`bsw<pid>x<n>`) that processes' command
/// lines name, so that processes whose directories are gone are found too.
fn cluster_dirs_in_command_lines() -> Vec<String> {
    let mut names = Vec::new();
    for pid in dir_names(Path::new("/proc")) {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        for root in [RUN_ROOT, DATA_ROOT] {
            let needle = format!("{root}/");
            for (at, _) in cmdline.match_indices(&needle) {
                let rest = &cmdline[at + needle.len()..];
                if let Some(tag) = rest.split('/').next().and_then(tag_of) {
                    names.push(tag);
                }
            }
        }
    }
    names
}

/// Processes whose command line holds `text` (zombies have none).
fn processes_with(text: &str) -> Vec<String> {
    let mut pids = Vec::new();
    for pid in dir_names(Path::new("/proc")) {
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(text) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL to processes, some of which may be gone already.
fn kill(pids: &[String]) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids)
        .stderr(Stdio::null())
        .status();
}

/// Processes of cluster `tag`: in its cgroups (containers), or whose command
/// line names its directories (engines, containerd, shims, fuse-overlayfs).
fn processes_of(tag: &str) -> Vec<String> {
    let run = format!("{RUN_ROOT}/{tag}/");
    let data = format!("{DATA_ROOT}/{tag}/");
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for cg in cgroups_of(tag) {
        for d in subdirs_deepest_first(&cg) {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.split_whitespace().map(String::from));
        }
    }
    pids.extend(processes_with(&run));
    pids.extend(processes_with(&data));
    pids.retain(|p| *p != me);
    pids.sort();
    pids.dedup();
    pids
}

/// What of cluster `tag` exists on this machine (processes, mounts,
/// cgroups, namespaces, directories), one line each; empty once it is gone.
pub fn leftovers(tag: &str) -> Vec<String> {
    let mut found: Vec<String> = processes_of(tag)
        .into_iter()
        .map(|pid| format!("process {pid}"))
        .collect();
    found.extend(mounts_of(tag).into_iter().map(|m| format!("mount {m}")));
    found.extend(
        cgroups_of(tag)
            .into_iter()
            .map(|c| format!("cgroup {}", c.display())),
    );
    found.extend(
        netns_names()
            .into_iter()
            .filter(|ns| tag_of(ns).as_deref() == Some(tag))
            .map(|ns| format!("network namespace {ns}")),
    );
    for dir in [
        Path::new(RUN_ROOT).join(tag),
        Path::new(DATA_ROOT).join(tag),
    ] {
        if dir.exists() {
            found.push(format!("directory {}", dir.display()));
        }
    }
    found
}

fn cgroups_of(tag: &str) -> Vec<PathBuf> {
    cgroup_dirs()
        .into_iter()
        .filter(|cg| {
            cg.file_name()
                .is_some_and(|n| tag_of(&n.to_string_lossy()).as_deref() == Some(tag))
        })
        .collect()
}

/// Mount points under the cluster's directories, deepest first.
fn mounts_of(tag: &str) -> Vec<String> {
    let run = Path::new(RUN_ROOT).join(tag);
    let data = Path::new(DATA_ROOT).join(tag);
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| Path::new(m).starts_with(&run) || Path::new(m).starts_with(&data))
        .collect();
    mounts.sort_by(|a, b| b.cmp(a));
    mounts
}

/// Remove everything of cluster `tag`, whether or not it is running:
/// processes, mounts, cgroups, namespaces (veths and bridge with them),
/// directories. Safe to repeat; touches nothing not named after `tag`.
fn teardown(tag: &str) {
    // Kill until nothing is left: an engine may start a process while the
    // first kills land.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = processes_of(tag);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        kill(&pids);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A mount point may be mounted more than once: each line is one umount.
    for m in mounts_of(tag) {
        let _ = Command::new("umount")
            .args(["-l", &m])
            .stderr(Stdio::null())
            .status();
    }
    for cg in cgroups_of(tag) {
        for d in subdirs_deepest_first(&cg) {
            let _ = std::fs::remove_dir(&d);
        }
    }
    for ns in netns_names() {
        if tag_of(&ns).as_deref() == Some(tag) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
    for root in [RUN_ROOT, DATA_ROOT] {
        let _ = std::fs::remove_dir_all(Path::new(root).join(tag));
        // The shared root goes with the last cluster (fails while others live).
        let _ = std::fs::remove_dir(root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_back_from_every_name_the_harness_gives() {
        assert_eq!(tag_of("bsw123x0n2").as_deref(), Some("bsw123x0"));
        assert_eq!(tag_of("bsw123x10br").as_deref(), Some("bsw123x10"));
        assert_eq!(tag_of("bsw123x4").as_deref(), Some("bsw123x4"));
        assert_eq!(tag_of("bswx1"), None);
        assert_eq!(tag_of("bsw12"), None);
        assert_eq!(tag_of("docker"), None);
    }
}
