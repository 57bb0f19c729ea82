//! `ps`, `logs` and `destroy` on a swarm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use serde::Serialize;

use crate::apply::lock;
use crate::engine::Engine;
use crate::engine::nodes::NodeEngines;
use crate::engine::ops::{LogChunk, LogOptions};
use crate::engine::services::TaskInfo;
use crate::error::{Error, Result};
use crate::instance::{MountSource, SwarmSpec};
use crate::names;
use crate::ops::logs::{LinePrinter, LineSplitter, json_line};
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
    /// `healthy`, `starting` or `unhealthy` for a service with a health
    /// check berth set (Swarm keeps such a task `starting` until its check
    /// passes, and fails it when the check fails); empty without one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health: String,
    /// The service's named volumes, which live on the task's node (the one
    /// the service is pinned to).
    pub volumes: Vec<String>,
    /// The task's error, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A task's health, from its state and error and those of its slot's
/// previous task (`history`, newest first): see [`TaskRow::health`].
fn health(checked: bool, task: &TaskInfo, history: &[&TaskInfo]) -> String {
    let unhealthy = |t: &TaskInfo| t.err.contains("unhealthy");
    if unhealthy(task) {
        return "unhealthy".into();
    }
    match task.state.as_str() {
        "running" if checked => "healthy".into(),
        "running" => String::new(),
        // A task replacing one its check failed.
        _ if history.first().is_some_and(|t| unhealthy(t)) => "unhealthy".into(),
        "starting" if checked => "starting".into(),
        _ => String::new(),
    }
}

/// The tasks the swarm runs (or tries to run) for `deployment`: one row per
/// task whose desired state is `running`, with its node, health and the
/// volumes it holds. With `nodes`, a running task's health is its
/// container's own, read on its node; otherwise (or when the node cannot be
/// reached) it is told from the task's state.
pub async fn ps(
    engine: &Engine,
    nodes: Option<&NodeEngines>,
    deployment: &str,
) -> Result<Vec<TaskRow>> {
    engine.require_manager().await?;
    let nodes_reach = nodes;
    let mut node_engines: BTreeMap<String, Option<Engine>> = BTreeMap::new();
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
        let recorded = svc
            .labels
            .get(names::LABEL_SWARM_SPEC)
            .and_then(|t| serde_json::from_str::<SwarmSpec>(t).ok());
        let checked = recorded
            .as_ref()
            .and_then(|r| r.health.as_ref())
            .is_some_and(|h| !h.disabled);
        let volumes: Vec<String> = recorded
            .iter()
            .flat_map(|r| &r.mounts)
            .filter_map(|m| match &m.source {
                MountSource::Volume { name, .. } => Some(name.clone()),
                MountSource::Bind { .. } => None,
            })
            .collect();
        // Newest first.
        let all = engine.service_tasks(&svc.name).await?;
        let mut tasks: Vec<&TaskInfo> = all.iter().filter(|t| t.desired == "running").collect();
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tasks {
            let history: Vec<&TaskInfo> = all
                .iter()
                .filter(|o| o.name == t.name && o.id != t.id && o.desired != "running")
                .collect();
            let mut health = health(checked, t, &history);
            if let Some(seen) = container_health(nodes_reach, &mut node_engines, t).await {
                health = seen;
            }
            rows.push(TaskRow {
                deployment: deployment.to_string(),
                service: service.clone(),
                task: t.name.clone(),
                node: nodes.get(&t.node_id).cloned().unwrap_or_default(),
                desired: t.desired.clone(),
                state: t.state.clone(),
                health,
                volumes: volumes.clone(),
                error: t.err.clone(),
            });
        }
    }
    Ok(rows)
}

/// The health of running task `t`'s container as its node's engine reports
/// it (`healthy`, `unhealthy`, `starting`), `None` when there is no check,
/// no such container or no way to its node (each node is connected to once,
/// in `engines`).
async fn container_health(
    nodes: Option<&NodeEngines>,
    engines: &mut BTreeMap<String, Option<Engine>>,
    t: &TaskInfo,
) -> Option<String> {
    let nodes = nodes?;
    if t.state != "running" || t.container_id.is_empty() {
        return None;
    }
    if !engines.contains_key(&t.node_id) {
        let reached = match nodes.engine(&t.node_id).await {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::debug!("ps: node {}: {e}", nodes.hostname(&t.node_id));
                None
            }
        };
        engines.insert(t.node_id.clone(), reached);
    }
    let engine = engines.get(&t.node_id)?.as_ref()?;
    let inspect = engine.inspect_container(&t.container_id).await.ok()??;
    let status = inspect.state?.health?.status?;
    match status {
        bollard::models::HealthStatusEnum::HEALTHY => Some("healthy".into()),
        bollard::models::HealthStatusEnum::UNHEALTHY => Some("unhealthy".into()),
        bollard::models::HealthStatusEnum::STARTING => Some("starting".into()),
        _ => None,
    }
}

/// `-` for an empty cell.
fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `ps` rows as a table.
pub fn render_table(rows: &[TaskRow]) -> String {
    let mut out = String::new();
    let header = [
        "DEPLOYMENT",
        "SERVICE",
        "TASK",
        "NODE",
        "STATE",
        "HEALTH",
        "VOLUMES",
        "ERROR",
    ];
    let volumes: Vec<String> = rows.iter().map(|r| r.volumes.join(",")).collect();
    let cells: Vec<[&str; 8]> = rows
        .iter()
        .zip(&volumes)
        .map(|(r, v)| {
            [
                r.deployment.as_str(),
                r.service.as_str(),
                r.task.as_str(),
                dash(&r.node),
                r.state.as_str(),
                dash(&r.health),
                dash(v),
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

/// How long a non-following read of one task's logs may take (the log
/// broker waits for the task's node).
const TASK_LOG_TIMEOUT: Duration = Duration::from_secs(30);

/// Task states in which a task has (or had) a container with output.
const STARTED: &[&str] = &["starting", "running", "complete", "failed", "shutdown"];

/// `berth logs SERVICE --target swarm`: the output of every task of
/// `deployment`'s `service` that started (current and past, as the swarm
/// keeps them), read through the manager, each line prefixed like `docker
/// service logs` does: `<service>.<slot>.<task id>@<node> | `. With
/// `follow`, new tasks (a rolling update, a restart) are followed as they
/// start, until the reader goes away or Ctrl-C.
pub async fn logs(
    engine: &Engine,
    deployment: &str,
    service: &str,
    opts: &LogOptions,
    json: bool,
) -> Result<()> {
    engine.require_manager().await?;
    let name = crate::instance::swarm::swarm_service_name(deployment, service);
    let ours = engine.service(&name).await?.is_some_and(|s| {
        s.labels.get(names::LABEL_DEPLOYMENT).map(String::as_str) == Some(deployment)
    });
    if !ours {
        return Err(Error::Usage(format!(
            "service {service} of deployment {deployment} is not on the swarm (see `berth ps --target swarm`)"
        )));
    }
    let (printer, opts) = if json {
        let opts = LogOptions {
            timestamps: true,
            ..opts.clone()
        };
        (LinePrinter::json(), opts)
    } else {
        (LinePrinter::new(), opts.clone())
    };
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut width = 0;
    let mut first = true;
    loop {
        let nodes: BTreeMap<String, (String, String)> = engine
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id, (n.hostname, n.state)))
            .collect();
        // Oldest first, slot by slot.
        let mut tasks: Vec<TaskInfo> = engine
            .service_tasks(&name)
            .await?
            .into_iter()
            .filter(|t| !started.contains(&t.id) && STARTED.contains(&t.state.as_str()))
            .collect();
        tasks.sort_by(|a, b| a.name.cmp(&b.name).then(a.since.cmp(&b.since)));
        let labels: Vec<String> = tasks
            .iter()
            .map(|t| {
                let node = nodes.get(&t.node_id).map(|n| n.0.as_str()).unwrap_or("");
                format!("{}.{}@{node}", t.name, short_id(&t.id))
            })
            .collect();
        if first {
            width = labels.iter().map(String::len).max().unwrap_or(0);
        }
        for (t, label) in tasks.iter().zip(labels) {
            started.insert(t.id.clone());
            let node_ready = nodes.get(&t.node_id).is_some_and(|n| n.1 == "ready");
            if !node_ready {
                eprintln!("{label}: its node is not ready, so its output cannot be read now");
                continue;
            }
            let mut task_opts = opts.clone();
            if !first {
                // Started since: all of it.
                task_opts.tail = None;
            }
            let stream = TaskStream {
                id: t.id.clone(),
                task: t.name.clone(),
                node: nodes
                    .get(&t.node_id)
                    .map(|n| n.0.clone())
                    .unwrap_or_default(),
                prefix: format!("{label:<width$} | "),
            };
            if opts.follow {
                let engine = engine.clone();
                let printer = printer.clone();
                tokio::spawn(async move {
                    if let Err(e) = stream.print(&engine, &task_opts, &printer).await {
                        eprintln!("{}: {e}", stream.task);
                    }
                });
            } else {
                let read = stream.print(engine, &task_opts, &printer);
                match tokio::time::timeout(TASK_LOG_TIMEOUT, read).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("{}: {e}", stream.task),
                    Err(_) => eprintln!(
                        "{}: no complete output from its node within {}s",
                        stream.task,
                        TASK_LOG_TIMEOUT.as_secs()
                    ),
                }
                if crate::stdout::is_closed() {
                    return Ok(());
                }
            }
        }
        first = false;
        if !opts.follow || crate::stdout::is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The first 12 characters of an ID, as `docker service logs` shows it.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One task whose output is printed.
struct TaskStream {
    id: String,
    /// `<service>.<slot>`.
    task: String,
    node: String,
    /// Before each text line.
    prefix: String,
}

impl TaskStream {
    async fn print(&self, engine: &Engine, opts: &LogOptions, printer: &LinePrinter) -> Result<()> {
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        let mut stream = Box::pin(engine.task_log_stream(&self.id, opts));
        while let Some(item) = stream.next().await {
            match item? {
                LogChunk::Stdout(b) => {
                    for l in out.feed(&b) {
                        self.line(printer, &l, false);
                    }
                    if crate::stdout::is_closed() {
                        return Ok(());
                    }
                }
                LogChunk::Stderr(b) => {
                    for l in err.feed(&b) {
                        self.line(printer, &l, true);
                    }
                }
            }
        }
        if let Some(l) = out.finish() {
            self.line(printer, &l, false);
        }
        if let Some(l) = err.finish() {
            self.line(printer, &l, true);
        }
        Ok(())
    }

    /// As text: the prefix and the line. As JSON: the host's JSON line
    /// (`instance` is the task) with `node` and `task_id` added.
    fn line(&self, printer: &LinePrinter, line: &[u8], stderr: bool) {
        if !printer.is_json() {
            printer.line(&self.task, &self.prefix, line, stderr);
            return;
        }
        let text = json_line(&self.task, line, stderr);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.insert("node".into(), self.node.clone().into());
                m.insert("task_id".into(), self.id.clone().into());
                printer.raw(&serde_json::Value::Object(m).to_string());
            }
            _ => printer.raw(&text),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, err: &str) -> TaskInfo {
        TaskInfo {
            id: format!("{state}-{err}"),
            name: "d-s.1".into(),
            node_id: "n".into(),
            desired: "running".into(),
            state: state.into(),
            message: String::new(),
            err: err.into(),
            task_hash: String::new(),
            since: String::new(),
            slot: 1,
            container_id: String::new(),
        }
    }

    #[test]
    fn health_comes_from_the_task_state_and_the_slot_s_last_failure() {
        let failed = task("failed", "dockerexec: unhealthy container");
        assert_eq!(health(true, &task("running", ""), &[]), "healthy");
        assert_eq!(health(true, &task("starting", ""), &[]), "starting");
        assert_eq!(health(true, &task("starting", ""), &[&failed]), "unhealthy");
        assert_eq!(health(true, &failed, &[]), "unhealthy");
        // Without a check berth set, nothing is claimed.
        assert_eq!(health(false, &task("running", ""), &[]), "");
        assert_eq!(health(false, &task("starting", ""), &[]), "");
        let crashed = task("failed", "task: non-zero exit (1)");
        assert_eq!(health(true, &task("starting", ""), &[&crashed]), "starting");
    }
}
