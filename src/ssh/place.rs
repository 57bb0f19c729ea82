//! Where a login's session runs: the engine and the container to exec in,
//! and on a swarm the node and the task. `berth exec` and the gateway both
//! go through [`locate`], so they land in the same container.
//!
//! On a host that is the instance's container on the engine berth talks
//! to. On a swarm it is the running task of the instance's slot, wherever
//! it runs: its container on that node's own engine, reached through the
//! nodes file ([`crate::engine::nodes`]); the manager's engine cannot exec
//! into a container on another node.

use super::access::Target;
use crate::engine::Engine;
use crate::engine::exec::ExecReadiness;
use crate::engine::nodes::{NodeEngines, NodesFile};
use crate::error::Result;

/// A container a session can exec in.
#[derive(Debug, Clone)]
pub struct Place {
    /// The engine of the node the container is on.
    pub engine: Engine,
    /// Its name (host) or ID (a swarm task's).
    pub container: String,
    /// On a swarm: the node's hostname and the task (`<service>.<slot>`).
    pub task: Option<(String, String)>,
}

impl Place {
    /// The node's hostname, `-` on a host (for the audit line).
    pub fn node(&self) -> &str {
        self.task.as_ref().map(|t| t.0.as_str()).unwrap_or("-")
    }

    /// The task's name, `-` on a host.
    pub fn task_name(&self) -> &str {
        self.task.as_ref().map(|t| t.1.as_str()).unwrap_or("-")
    }
}

/// What [`locate`] found.
#[derive(Debug)]
pub enum Located {
    /// A running container.
    Running(Place),
    /// None runs; what to tell the user (it says what to do).
    NotRunning(String),
}

/// Find the running container of `target`. `engine` is the one berth
/// talks to (`DOCKER_HOST`: on a swarm, a manager's); `nodes` says how to
/// reach the other nodes' engines. Errors are the engines' (or a node
/// missing from the nodes file), for the operator.
pub async fn locate(engine: &Engine, nodes: &NodesFile, target: &Target) -> Result<Located> {
    if !target.swarm {
        return Ok(match engine.exec_readiness(&target.container).await? {
            ExecReadiness::Running => Located::Running(Place {
                engine: engine.clone(),
                container: target.container.clone(),
                task: None,
            }),
            other => {
                let why = match other {
                    ExecReadiness::NotRunning(state) => format!("it is {state}"),
                    _ => "it does not exist".to_string(),
                };
                Located::NotRunning(format!(
                    "{} ({}) is not running: {why}; start it with `berth start {}`",
                    target.qualified, target.container, target.service
                ))
            }
        });
    }
    let nodes = NodeEngines::new(engine, nodes.clone()).await?;
    let service = crate::instance::swarm::swarm_service_name(&target.deployment, &target.service);
    let tasks = nodes.running_tasks(&service).await?;
    let Some(task) = tasks.iter().find(|t| t.slot == u64::from(target.index)) else {
        return Ok(Located::NotRunning(format!(
            "{} has no running task on the swarm (Swarm service {service}, slot {}); see `berth ps --target swarm`",
            target.qualified, target.index
        )));
    };
    let node_engine = nodes.engine(&task.node_id).await?;
    // The task may have stopped since the manager last heard of it.
    if node_engine.exec_readiness(&task.container_id).await? != ExecReadiness::Running {
        return Ok(Located::NotRunning(format!(
            "{}: its task {} on node {} is not running any more; see `berth ps --target swarm`",
            target.qualified, task.task_name, task.node
        )));
    }
    Ok(Located::Running(Place {
        engine: node_engine,
        container: task.container_id.clone(),
        task: Some((task.node.clone(), task.task_name.clone())),
    }))
}
