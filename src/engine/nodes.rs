//! Reaching the engine of every node of a swarm.
//!
//! A manager's engine schedules tasks but cannot exec into, nor read the
//! volumes of, a container on another node. berth reaches each node's own
//! engine through an address the operator gives in the nodes file
//! (`<state-dir>/nodes.toml`, `--nodes`, `BERTH_NODES`):
//!
//! ```toml
//! [nodes.node2]
//! engine = "unix:///run/berth/node2.sock"
//! ```
//!
//! keyed by the node's hostname (as `docker node ls` shows it) or its ID.
//! Only Unix sockets are accepted: they are guarded by file permissions, and
//! a node's engine is brought to one over an authenticated channel the
//! operator already trusts (`ssh -L /run/berth/node2.sock:/var/run/docker.sock
//! node2`). An engine on a plain TCP port would let anyone who reaches the
//! port be root on the node, so berth never asks for one. The manager
//! berth talks to (`DOCKER_HOST`) needs no entry; a node without one is
//! named in the error of the command that needed it.
//!
//! Every engine reached is asked which swarm node it is, and refused unless
//! it is the node the address was given for: a mistyped socket must not send
//! one node's data to another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Engine;
use super::services::{NodeInfo, TaskInfo};
use crate::error::{Error, Result};

/// The nodes file as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    nodes: BTreeMap<String, NodeForm>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeForm {
    engine: String,
}

/// The operator's addresses of the nodes' engines, by hostname or node ID.
#[derive(Debug, Clone, Default)]
pub struct NodesFile {
    /// Where it was read from (for messages); the file need not exist.
    pub path: PathBuf,
    /// Socket path of each node's engine.
    pub engines: BTreeMap<String, PathBuf>,
}

impl NodesFile {
    /// Read `path`; a file that does not exist names no node. A file that
    /// does not parse, or names an address berth does not use, is a usage
    /// error naming the file and the entry.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_path_buf(),
                    engines: BTreeMap::new(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::parse(path, &text)
    }

    /// [`NodesFile::load`] on text already read.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let form: FileForm = toml::from_str(text).map_err(|e| {
            Error::Usage(format!(
                "{}: not a nodes file: {}expected `[nodes.<hostname>]` tables with `engine = \"unix:///path/to/docker.sock\"`",
                path.display(),
                e
            ))
        })?;
        let mut engines = BTreeMap::new();
        for (node, n) in form.nodes {
            let socket = unix_socket(&n.engine).map_err(|why| {
                Error::Usage(format!(
                    "{}: nodes.{node}.engine = {:?}: {why}",
                    path.display(),
                    n.engine
                ))
            })?;
            engines.insert(node, socket);
        }
        Ok(Self {
            path: path.to_path_buf(),
            engines,
        })
    }
}

/// The socket path of a `unix://` address, or why berth does not use it.
fn unix_socket(address: &str) -> std::result::Result<PathBuf, String> {
    if let Some(path) = address.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err("a unix:// address needs an absolute socket path".into());
        }
        return Ok(PathBuf::from(path));
    }
    if address.starts_with("tcp://") || address.starts_with("http") {
        return Err("berth reaches node engines only through Unix sockets: an engine on a TCP port would let anyone reaching the port be root on the node; forward the node's socket over SSH instead (ssh -nNT -L /run/berth/NODE.sock:/var/run/docker.sock root@NODE)".into());
    }
    Err("expected unix:///path/to/docker.sock".into())
}

/// A running task of a Swarm service and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlace {
    pub task_id: String,
    /// `<service>.<slot>`.
    pub task_name: String,
    pub slot: u64,
    pub node_id: String,
    /// The node's hostname.
    pub node: String,
    /// The task's container on that node.
    pub container_id: String,
}

/// The engines of a swarm's nodes, reached from its manager.
#[derive(Debug, Clone)]
pub struct NodeEngines {
    manager: Engine,
    /// The node the manager's engine is.
    manager_node: String,
    nodes: Vec<NodeInfo>,
    file: NodesFile,
}

impl NodeEngines {
    /// The nodes of the swarm `manager` manages, with the addresses in `file`.
    pub async fn new(manager: &Engine, file: NodesFile) -> Result<Self> {
        manager.require_manager().await?;
        let manager_node = manager.swarm_node_id().await?;
        let nodes = manager.list_nodes().await?;
        Ok(Self {
            manager: manager.clone(),
            manager_node,
            nodes,
            file,
        })
    }

    /// The manager's engine.
    pub fn manager(&self) -> &Engine {
        &self.manager
    }

    /// The swarm's nodes, by hostname.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node named `name` (hostname or ID).
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes
            .iter()
            .find(|n| n.id == name || n.hostname == name)
    }

    /// The hostname of node `id` (the ID itself when the node is unknown).
    pub fn hostname<'a>(&'a self, id: &'a str) -> &'a str {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.hostname.as_str())
            .unwrap_or(id)
    }

    /// The engine of node `id`: the manager's own when it is that node,
    /// else the address the nodes file gives for its hostname or ID,
    /// checked to be that node.
    pub async fn engine(&self, id: &str) -> Result<Engine> {
        if id == self.manager_node {
            return Ok(self.manager.clone());
        }
        let Some(node) = self.nodes.iter().find(|n| n.id == id) else {
            return Err(Error::Runtime(format!(
                "node {id} is not a node of this swarm"
            )));
        };
        let Some(socket) = self
            .file
            .engines
            .get(&node.hostname)
            .or_else(|| self.file.engines.get(&node.id))
        else {
            return Err(Error::Usage(format!(
                "berth cannot reach the engine of swarm node {} ({}): {} has no entry for it; add\n  [nodes.{}]\n  engine = \"unix:///path/to/its/docker.sock\"\n(a node's socket is brought here over SSH by `ssh -nNT -L /run/berth/{}.sock:/var/run/docker.sock root@{}`)",
                node.hostname,
                node.id,
                self.file.path.display(),
                node.hostname,
                node.hostname,
                node.hostname
            )));
        };
        let engine = Engine::connect_unix(socket).await?;
        let is = engine.swarm_node_id().await?;
        if is != node.id {
            return Err(Error::Usage(format!(
                "{}: the engine at unix://{} is swarm node {}, not {} ({}); berth does not use it",
                self.file.path.display(),
                socket.display(),
                if is.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("{} ({is})", self.hostname(&is))
                },
                node.hostname,
                node.id
            )));
        }
        Ok(engine)
    }

    /// The running tasks of Swarm service `service`, by slot, each with its
    /// node and container.
    pub async fn running_tasks(&self, service: &str) -> Result<Vec<TaskPlace>> {
        let tasks = self.manager.service_tasks(service).await?;
        Ok(running(&tasks, |id| self.hostname(id).to_string()))
    }
}

/// Of `tasks`, those running (and meant to), one per slot (the newest),
/// sorted by slot.
fn running(tasks: &[TaskInfo], hostname: impl Fn(&str) -> String) -> Vec<TaskPlace> {
    let mut by_slot: BTreeMap<u64, TaskPlace> = BTreeMap::new();
    // `tasks` is newest first: the first running task of a slot wins.
    for t in tasks {
        if t.desired != "running" || t.state != "running" || t.container_id.is_empty() {
            continue;
        }
        by_slot.entry(t.slot).or_insert_with(|| TaskPlace {
            task_id: t.id.clone(),
            task_name: t.name.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
            node: hostname(&t.node_id),
            container_id: t.container_id.clone(),
        });
    }
    by_slot.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodesFile> {
        NodesFile::parse(Path::new("/s/nodes.toml"), text)
    }

    #[test]
    fn nodes_file_takes_unix_sockets_and_refuses_tcp_with_where() {
        let f = parse("[nodes.n2]\nengine = \"unix:///run/berth/n2.sock\"\n").expect("parses");
        assert_eq!(f.engines["n2"], PathBuf::from("/run/berth/n2.sock"));
        assert!(parse("").expect("empty").engines.is_empty());
        let e = parse("[nodes.n2]\nengine = \"tcp://10.0.0.2:2375\"\n")
            .expect_err("tcp")
            .to_string();
        assert!(
            e.contains("/s/nodes.toml: nodes.n2.engine") && e.contains("ssh"),
            "{e}"
        );
        let e = parse("[nodes.n2]\nengine = \"unix://rel.sock\"\n")
            .expect_err("relative")
            .to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = parse("[nodes.n2]\nengin = \"unix:///x\"\n")
            .expect_err("typo")
            .to_string();
        assert!(e.contains("/s/nodes.toml") && e.contains("line 2"), "{e}");
        let e = parse("[nodes.n2]\nengine = \"unix:///x\"\n[nodes.n2]\n")
            .expect_err("twice")
            .to_string();
        assert!(e.contains("/s/nodes.toml"), "{e}");
        for bad in [
            Error::Usage(String::new()),
            parse("nodes = 3").expect_err("shape"),
        ] {
            assert_eq!(bad.exit_code(), crate::error::EXIT_INVALID);
        }
        let missing = NodesFile::load(Path::new("/nonexistent/berth/nodes.toml")).expect("none");
        assert!(missing.engines.is_empty());
    }

    fn task(id: &str, slot: u64, desired: &str, state: &str) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            name: format!("s.{slot}"),
            slot,
            node_id: format!("node-{id}"),
            desired: desired.into(),
            state: state.into(),
            message: String::new(),
            err: String::new(),
            task_hash: String::new(),
            since: String::new(),
            container_id: format!("c-{id}"),
        }
    }

    #[test]
    fn running_tasks_are_the_newest_running_one_per_slot() {
        let tasks = [
            task("new2", 2, "running", "starting"),
            task("a", 1, "running", "running"),
            task("old1", 1, "shutdown", "running"),
            task("b", 2, "running", "running"),
            task("c", 3, "shutdown", "shutdown"),
        ];
        let r = running(&tasks, |id| id.to_uppercase());
        let got: Vec<_> = r
            .iter()
            .map(|t| (t.slot, t.task_id.as_str(), t.node.as_str()))
            .collect();
        assert_eq!(got, [(1, "a", "NODE-A"), (2, "b", "NODE-B")]);
        assert_eq!(r[0].container_id, "c-a");
    }
}
