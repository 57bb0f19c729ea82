//! Carrying a swarm plan out: remove the services no longer in the file,
//! then create or update the others level by level in link order, waiting
//! after each level until every changed service has converged: all its
//! replicas running the new task spec (Swarm reports a task with a health
//! check `running` only once it is healthy) and its rolling update
//! complete. An update whose task fails is rolled back by Swarm (the
//! service's update config); the apply then fails naming the task, its node
//! and its error.
//!
//! The configs and secrets of the services to create or update are made
//! first (Swarm objects named after their content; one that exists is
//! kept); once every service converged, the deployment's objects that no
//! service uses any more are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::engine::services::{ObjectIds, TaskInfo, UpdateStatus};
use crate::engine::swarm_files::Removed;
use crate::error::{Error, Result};
use crate::instance::SwarmSpec;
use crate::plan::Action;
use crate::target::{Reporter, Step};

/// How long one service may take to converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long Swarm's rollback of a failed update may take.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two looks at a converging service.
const POLL: Duration = Duration::from_millis(250);
/// A new service whose tasks failed this often is given up on.
const FAILED_TASKS: usize = 3;

/// See the module documentation.
pub async fn converge(step: &Step<'_>, desired: &BTreeMap<String, SwarmSpec>) -> Result<()> {
    let engine = step.engine;
    let report = step.report;
    // Before anything else changes: a config or secret that cannot be made
    // stops the apply with the swarm as it was.
    let ids = ensure_files(step, desired).await?;
    for item in step.plan.with_action(Action::Remove) {
        engine.remove_service(&item.container).await?;
        report(format!("removed service {}", item.container));
    }
    // Services with volumes get the node that holds them first.
    for item in step
        .plan
        .instances
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Recreate))
    {
        if let Some(label) = desired
            .get(&item.service)
            .and_then(|s| s.pinned_by.as_ref())
        {
            ensure_pin(
                engine,
                &item.service,
                label,
                &spec_placement(desired, &item.service),
                report,
            )
            .await?;
        }
    }
    let levels = step.deployment.link_levels();
    let deepest = levels.values().copied().max().unwrap_or(0);
    // Every service this apply created or updated, so that a failure puts
    // all of them back, not only the one whose update Swarm rolled back.
    let mut touched: Vec<(&SwarmSpec, bool)> = Vec::new();
    for level in 0..=deepest {
        let mut changed = Vec::new();
        for item in step.plan.instances.iter().filter(|i| {
            matches!(i.action, Action::Create | Action::Recreate)
                && levels.get(&i.service).copied().unwrap_or(0) == level
        }) {
            let Some(spec) = desired.get(&item.service) else {
                continue;
            };
            let issued = if item.action == Action::Create {
                engine.create_service(spec, step.revision, &ids).await
            } else {
                match engine.service(&spec.name).await {
                    Ok(Some(live)) => engine
                        .update_service(spec, live.version, step.revision, &ids)
                        .await
                        .map(|()| changed.push((spec, live.update, false))),
                    Ok(None) => Err(Error::Runtime(format!(
                        "service {} disappeared while applying",
                        spec.name
                    ))),
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = issued {
                return Err(undo(engine, &touched, None, e, report).await);
            }
            if item.action == Action::Create {
                report(format!("created service {}", spec.name));
                changed.push((spec, None, true));
            } else {
                report(format!("updating service {}", spec.name));
            }
            touched.push((spec, item.action == Action::Create));
        }
        for (spec, before, created) in changed {
            if let Err(e) = wait_converged(engine, spec, before.as_ref(), created).await {
                return Err(undo(engine, &touched, Some(&spec.name), e, report).await);
            }
            report(format!(
                "service {}: {} of {} running",
                spec.name, spec.replicas, spec.replicas
            ));
        }
    }
    // The grants published before the old ones are pruned: a gateway
    // always finds one list.
    let access = super::access::publish(engine, step.deployment, step.revision, report).await?;
    prune_files(engine, &step.deployment.name, desired, access, report).await
}

/// Make sure the configs and secrets of the services the plan creates or
/// updates exist on the swarm; their IDs.
async fn ensure_files(step: &Step<'_>, desired: &BTreeMap<String, SwarmSpec>) -> Result<ObjectIds> {
    let mut ids = ObjectIds::new();
    for item in step
        .plan
        .instances
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Recreate))
    {
        let Some(spec) = desired.get(&item.service) else {
            continue;
        };
        for f in &spec.files {
            let key = (f.kind, f.object.clone());
            if ids.contains_key(&key) {
                continue;
            }
            let content = spec.content(f).ok_or_else(|| {
                Error::Runtime(format!(
                    "service {}: the content of {} {} is not at hand; run `berth apply` with the deployment file",
                    spec.name,
                    f.kind.as_str(),
                    f.name
                ))
            })?;
            let (id, created) = step
                .engine
                .ensure_swarm_file(
                    &spec.deployment,
                    f.kind,
                    &f.name,
                    &f.object,
                    content,
                    step.revision,
                )
                .await?;
            if created {
                (step.report)(format!("created {} {}", f.kind.as_str(), f.object));
            }
            ids.insert(key, id);
        }
    }
    Ok(ids)
}

/// Remove `deployment`'s configs and secrets that no service of `desired`
/// uses (all of them converged: nothing runs the old ones) and its access
/// lists but the current one (`access`). One the swarm still finds in use
/// (a service changed by hand) is kept and said so.
async fn prune_files(
    engine: &Engine,
    deployment: &str,
    desired: &BTreeMap<String, SwarmSpec>,
    access: Option<String>,
    report: &Reporter,
) -> Result<()> {
    let mut used: BTreeSet<_> = desired
        .values()
        .flat_map(|s| s.files.iter().map(|f| (f.kind, f.object.clone())))
        .collect();
    used.extend(access.map(|a| (crate::deployment::FileKind::Config, a)));
    for o in engine.list_swarm_files(deployment).await? {
        if used.contains(&(o.kind, o.name.clone())) {
            continue;
        }
        match engine.remove_swarm_file(o.kind, &o.id).await? {
            Removed::Removed => report(format!(
                "removed {} {} (no service uses it)",
                o.kind.as_str(),
                o.name
            )),
            Removed::InUse(why) => report(format!(
                "kept {} {}: the swarm still has it in use ({why})",
                o.kind.as_str(),
                o.name
            )),
        }
    }
    Ok(())
}

/// The placement of `service` in `desired`.
fn spec_placement(desired: &BTreeMap<String, SwarmSpec>, service: &str) -> Vec<String> {
    desired
        .get(service)
        .map(|s| s.placement.clone())
        .unwrap_or_default()
}

/// Make sure one node carries `label`, the pin of `service`'s volumes:
/// kept when a node has it (also from before a destroy: the volumes are
/// still there), else set on a ready, active node: workers before managers
/// (they carry the control plane), then the fewest pins, then by hostname.
/// Also for a restore onto a service that has no pin yet.
pub(crate) async fn ensure_pin(
    engine: &Engine,
    service: &str,
    label: &str,
    placement: &[String],
    report: &Reporter,
) -> Result<()> {
    let nodes = engine.list_nodes().await?;
    if nodes.iter().any(|n| n.labels.contains_key(label)) {
        return Ok(());
    }
    let pins = |n: &crate::engine::services::NodeInfo| {
        n.labels
            .keys()
            .filter(|k| k.starts_with("berth.data."))
            .count()
    };
    let Some(node) = nodes
        .iter()
        .filter(|n| n.state == "ready" && n.availability == "active")
        .filter(|n| super::plan::meets_placement(placement, n))
        .min_by(|a, b| {
            (a.role == "manager")
                .cmp(&(b.role == "manager"))
                .then(pins(a).cmp(&pins(b)))
                .then(a.hostname.cmp(&b.hostname))
        })
    else {
        return Err(Error::Runtime(format!(
            "service {service} has volumes, which live on one node, but no node of the swarm is ready, active and meets its placement to hold them"
        )));
    };
    engine.set_node_label(&node.id, label).await?;
    report(format!(
        "pinned {service} to node {} (its volumes live there; node label {label})",
        node.hostname
    ));
    Ok(())
}

/// A line about `task` for an error: its name, node, state and error.
fn describe(task: &TaskInfo, nodes: &BTreeMap<String, String>) -> String {
    let node = nodes
        .get(&task.node_id)
        .cloned()
        .unwrap_or_else(|| "(no node)".into());
    let why = [task.err.as_str(), task.message.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    format!("task {} on {node}: {} ({why})", task.name, task.state)
}

async fn node_names(engine: &Engine) -> BTreeMap<String, String> {
    engine
        .list_nodes()
        .await
        .map(|n| n.into_iter().map(|n| (n.id, n.hostname)).collect())
        .unwrap_or_default()
}

/// Tasks of the new spec that failed, newest first.
fn failed<'a>(tasks: &'a [TaskInfo], hash: &str) -> Vec<&'a TaskInfo> {
    tasks
        .iter()
        .filter(|t| t.task_hash == hash && matches!(t.state.as_str(), "failed" | "rejected"))
        .collect()
}

/// Wait until `spec`'s service converged; `before` is its update status
/// before this apply updated it (a new status is this update's).
async fn wait_converged(
    engine: &Engine,
    spec: &SwarmSpec,
    before: Option<&UpdateStatus>,
    created: bool,
) -> Result<()> {
    let hash = spec.task_hash();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let svc = engine.service(&spec.name).await?.ok_or_else(|| {
            Error::Runtime(format!("service {} disappeared while applying", spec.name))
        })?;
        let tasks = engine.service_tasks(&spec.name).await?;
        let this_update = svc.update.as_ref().filter(|u| Some(*u) != before);
        if let Some(u) = this_update
            && (u.state.starts_with("rollback") || u.state == "paused")
        {
            return Err(rolled_back(engine, spec, &hash, u, &tasks).await);
        }
        let running = tasks
            .iter()
            .filter(|t| t.desired == "running" && t.state == "running" && t.task_hash == hash)
            .count();
        let stale = tasks
            .iter()
            .any(|t| t.desired == "running" && t.task_hash != hash);
        let updating = this_update.is_some_and(|u| u.state == "updating");
        if running == spec.replicas as usize && !stale && !updating {
            return Ok(());
        }
        let failures = failed(&tasks, &hash);
        if (created && failures.len() >= FAILED_TASKS) || Instant::now() > deadline {
            let nodes = node_names(engine).await;
            let detail = failures
                .first()
                .map(|t| describe(t, &nodes))
                .or_else(|| {
                    tasks
                        .iter()
                        .find(|t| t.desired == "running" && t.state != "running")
                        .map(|t| describe(t, &nodes))
                })
                .unwrap_or_else(|| format!("{running} of {} tasks running", spec.replicas));
            return Err(Error::Runtime(format!(
                "service {} did not converge: {detail}",
                spec.name
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After `failure`: put back every service of `touched` (created by this
/// apply: removed; updated: rolled back to its previous spec), except
/// `failed`, whose update Swarm has rolled back already. The error says
/// what failed and what was put back.
async fn undo(
    engine: &Engine,
    touched: &[(&SwarmSpec, bool)],
    failed: Option<&str>,
    failure: Error,
    report: &Reporter,
) -> Error {
    let mut back = Vec::new();
    for (spec, created) in touched
        .iter()
        .filter(|(s, _)| Some(s.name.as_str()) != failed)
    {
        let done = if *created {
            engine.remove_service(&spec.name).await
        } else {
            engine.rollback_service(&spec.name).await
        };
        match done {
            Ok(()) => {
                let how = if *created { "removed" } else { "rolled back" };
                report(format!("{how} service {} (this apply failed)", spec.name));
                back.push(format!("{} ({how})", spec.name));
            }
            Err(e) => report(format!("warning: {e}")),
        }
    }
    for (spec, created) in touched {
        if *created || Some(spec.name.as_str()) == failed {
            continue;
        }
        wait_rolled_back(engine, &spec.name).await;
    }
    if back.is_empty() {
        return failure;
    }
    Error::Runtime(format!(
        "{failure}; the other services this apply changed were put back: {}",
        back.join(", ")
    ))
}

/// Until the rollback of service `name` is done (or [`ROLLBACK_TIMEOUT`]).
async fn wait_rolled_back(engine: &Engine, name: &str) {
    let deadline = Instant::now() + ROLLBACK_TIMEOUT;
    while Instant::now() < deadline {
        match engine.service(name).await {
            Ok(Some(s))
                if s.update
                    .as_ref()
                    .is_some_and(|u| u.state == "rollback_started") => {}
            _ => return,
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The error of an update Swarm rolled back, once the rollback is done.
async fn rolled_back(
    engine: &Engine,
    spec: &SwarmSpec,
    hash: &str,
    status: &UpdateStatus,
    tasks: &[TaskInfo],
) -> Error {
    let deadline = Instant::now() + ROLLBACK_TIMEOUT;
    let mut last = status.clone();
    while !matches!(
        last.state.as_str(),
        "rollback_completed" | "rollback_paused" | "paused"
    ) && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
        match engine.service(&spec.name).await {
            Ok(Some(s)) => match s.update {
                Some(u) => last = u,
                None => break,
            },
            _ => break,
        }
    }
    let nodes = node_names(engine).await;
    // Swarm names the task that failed the update in the rollback's first
    // message (`... early termination of task <id>`).
    let named = status.message.split_whitespace().last().unwrap_or("");
    let now = engine.service_tasks(&spec.name).await.unwrap_or_default();
    let failing = now
        .iter()
        .chain(tasks)
        .find(|t| !named.is_empty() && t.id == named)
        .or_else(|| failed(&now, hash).first().copied())
        .or_else(|| failed(tasks, hash).first().copied())
        // Stopped by the rollback before it counted as failed: the newest
        // task of the new spec that has an error, else any.
        .or_else(|| {
            now.iter()
                .find(|t| t.task_hash == hash && !t.err.is_empty())
        })
        .or_else(|| now.iter().find(|t| t.task_hash == hash))
        .map(|t| describe(t, &nodes))
        .unwrap_or_else(|| format!("a task of the new spec failed ({})", status.message));
    let outcome = match last.state.as_str() {
        "rollback_completed" => "rolled back to its previous spec",
        "paused" => "update paused",
        _ => "rollback not completed",
    };
    Error::Runtime(format!(
        "service {}: update failed and was {outcome}: {failing}; swarm: {}",
        spec.name, last.message
    ))
}
