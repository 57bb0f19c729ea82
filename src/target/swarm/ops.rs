//! `ps` and `destroy` on a swarm.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::apply::lock;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::names;
use crate::state::StateDir;
use crate::target::Reporter;

/// One task of a deployment's service, for `ps`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub deployment: String,
    pub service: String,
    /// `<swarm service>.<slot>`.
    pub task: String,
    pub node: String,
    pub desired: String,
    pub state: String,
    /// The task's error, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// The tasks the swarm runs (or tries to run) for `deployment`: one row per
/// task whose desired state is `running`, with its node.
pub async fn ps(engine: &Engine, deployment: &str) -> Result<Vec<TaskRow>> {
    engine.require_manager().await?;
    let nodes: BTreeMap<String, String> = engine
        .list_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id, n.hostname))
        .collect();
    let mut rows = Vec::new();
    for svc in engine.list_services(deployment).await? {
        let service = svc
            .labels
            .get(names::LABEL_SERVICE)
            .cloned()
            .unwrap_or_default();
        let mut tasks: Vec<_> = engine
            .service_tasks(&svc.name)
            .await?
            .into_iter()
            .filter(|t| t.desired == "running")
            .collect();
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tasks {
            rows.push(TaskRow {
                deployment: deployment.to_string(),
                service: service.clone(),
                task: t.name,
                node: nodes.get(&t.node_id).cloned().unwrap_or_default(),
                desired: t.desired,
                state: t.state,
                error: t.err,
            });
        }
    }
    Ok(rows)
}

/// `ps` rows as a table.
pub fn render_table(rows: &[TaskRow]) -> String {
    let mut out = String::new();
    let header = ["DEPLOYMENT", "SERVICE", "TASK", "NODE", "STATE", "ERROR"];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.deployment.as_str(),
                r.service.as_str(),
                r.task.as_str(),
                r.node.as_str(),
                r.state.as_str(),
                r.error.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    for line in std::iter::once(header).chain(cells) {
        let text: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    }
    crate::echo::text(&out).into_owned()
}

/// What a swarm destroy removed.
#[derive(Debug, Default)]
pub struct Destroyed {
    pub services: Vec<String>,
    pub network: bool,
    /// Configs and secrets removed (`config <name>`).
    pub files: Vec<String>,
}

/// How long the network may stay in use by stopping tasks.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(60);

/// Remove `deployment`'s services, its configs and secrets and its network
/// from the swarm, and its applied revisions from `state`. Volumes stay
/// (they live on each node).
pub async fn destroy(
    engine: &Engine,
    state: &StateDir,
    deployment: &str,
    lock_timeout: Option<Duration>,
    report: &Reporter,
) -> Result<Destroyed> {
    names::check_name(deployment)
        .map_err(|p| Error::Usage(format!("deployment name {deployment:?} {p}")))?;
    engine.require_manager().await?;
    let r = report.clone();
    let who = deployment.to_string();
    let _lock = lock::lock_deployment(state, deployment, lock_timeout, move || {
        r(format!(
            "waiting for another berth apply of {who} to finish..."
        ))
    })
    .await?;
    let mut out = Destroyed::default();
    for svc in engine.list_services(deployment).await? {
        engine.remove_service(&svc.name).await?;
        report(format!("removed service {}", svc.name));
        out.services.push(svc.name);
    }
    // The services that used them are gone (the swarm checks services,
    // not tasks).
    for o in engine.list_swarm_files(deployment).await? {
        let deadline = Instant::now() + NETWORK_TIMEOUT;
        loop {
            match engine.remove_swarm_file(o.kind, &o.id).await? {
                crate::engine::swarm_files::Removed::Removed => break,
                crate::engine::swarm_files::Removed::InUse(why) => {
                    if Instant::now() > deadline {
                        return Err(Error::Runtime(format!(
                            "{} {} is still in use after the deployment's services were removed: {why}",
                            o.kind.as_str(),
                            o.name
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        report(format!("removed {} {}", o.kind.as_str(), o.name));
        out.files.push(format!("{} {}", o.kind.as_str(), o.name));
    }
    // The network is in use until the removed services' tasks are gone.
    let network = names::network_name(deployment);
    if engine.network_labels(&network).await?.is_some() {
        let deadline = Instant::now() + NETWORK_TIMEOUT;
        // The manager may accept the removal and still list the network
        // while tasks detach: done once it is gone.
        loop {
            let removed = engine.remove_network(deployment).await;
            if engine.network_labels(&network).await?.is_none() {
                break;
            }
            if Instant::now() > deadline {
                removed?;
                return Err(Error::Runtime(format!(
                    "network {network} is still in use after its services were removed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        out.network = true;
        if out.network {
            report(format!("removed network {network}"));
        }
    }
    let dir = state.deployment_dir(deployment);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    Ok(out)
}
