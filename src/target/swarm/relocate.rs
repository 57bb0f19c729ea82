//! `berth move SERVICE --to NODE`: carry a pinned swarm service and its
//! volumes to another node.
//!
//! The service is held (scaled to 0, no task runs anywhere), each volume is
//! copied from the old node's engine to the new node's through carriers
//! ([`crate::engine::archive`]) and the copy compared with its source
//! ([`entries::Contents`]: content, owners, modes, symlinks, hard links,
//! names), the pin label moves to the new node, and the service is scaled
//! back: Swarm starts it there. The old node's volumes stay until
//! `--prune-source`.
//!
//! A journal (`StateDir::move_journal`) records the phase before each step,
//! so a move interrupted anywhere (berth killed, a node's engine gone) and
//! run again converges. Until the pin has moved, carrying on means holding
//! the service again and copying again from the old node, whose data is the
//! one that counts; after, it means finishing the pin and scaling back. The
//! service stays at 0 from the hold until the pin is on the new node alone,
//! so its data never runs in two places. A failure before the pin moved
//! scales the service back on its old node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::data::{ServiceData, SwarmVolume, hold, release, service_data};
use crate::data::entries::{Contents, Mode, Scanner};
use crate::data::instances::instance_labels;
use crate::data::lifecycle::lock;
use crate::engine::Engine;
use crate::engine::archive::{Carrier, LABEL_CARRIER};
use crate::engine::images::PullProgress;
use crate::engine::nodes::NodeEngines;
use crate::engine::services::NodeInfo;
use crate::error::{Error, Result};
use crate::instance::swarm::pin_label;
use crate::state::{StateDir, read_json, write_private};
use crate::target::Reporter;

/// What `berth move` is asked.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    pub deployment: String,
    /// The service's name in the file.
    pub service: String,
    /// The node to move it to (hostname or ID).
    pub to: String,
    /// Remove the old node's volumes once the move is done.
    pub prune_source: bool,
    pub lock_timeout: Option<Duration>,
}

/// Where a move stands, in the order it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The service is being scaled to 0.
    Holding,
    /// Held; its volumes are being copied to the new node and verified.
    Copying,
    /// Copied and verified; the pin label is moving and the service is
    /// being scaled back.
    Pinning,
    /// Runs on the new node; the old node's volumes are kept.
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Holding => "holding",
            Phase::Copying => "copying",
            Phase::Pinning => "pinning",
            Phase::Done => "done",
        }
    }
}

/// The journal of one move, in `StateDir::move_journal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub phase: Phase,
    pub from_id: String,
    pub from: String,
    pub to_id: String,
    pub to: String,
    /// The replicas the service had before the hold, given back at the end.
    pub replicas: u64,
    /// The volumes moved (names on both nodes).
    pub volumes: Vec<String>,
    pub started_at: String,
}

/// One volume carried over.
#[derive(Debug, Clone, Serialize)]
pub struct MovedVolume {
    pub name: String,
    /// What both copies hold.
    pub contents: Contents,
    /// The new node had an older copy of it (from an earlier move), which
    /// was replaced.
    pub replaced: bool,
}

/// What a move did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    pub deployment: String,
    pub service: String,
    pub from: String,
    pub to: String,
    /// False when the service was there already (only pruned).
    pub moved: bool,
    /// The phase an interrupted move was carried on from.
    pub resumed_from: Option<Phase>,
    pub replicas: u64,
    pub volumes: Vec<MovedVolume>,
    /// Volumes removed from the old node (`--prune-source`).
    pub pruned: Vec<String>,
    /// The node still holding the old copies (`None` once pruned).
    pub kept_on: Option<String>,
}

/// The carriers' purpose label.
const PURPOSE: &str = "move";

/// Move `req.service` as the module documentation says. Refusals (the
/// deployment is not on a swarm, an unknown service or node, a node that is
/// not ready or does not meet the service's placement, a service without
/// volumes or already there) are usage errors raised before anything is
/// touched.
pub async fn relocate(
    nodes: &NodeEngines,
    state: &StateDir,
    req: &MoveRequest,
    report: &Reporter,
) -> Result<MoveReport> {
    let dep = req.deployment.as_str();
    let service = req.service.as_str();
    let Some(current) = state.read_current(dep)? else {
        return Err(Error::Usage(format!(
            "deployment {dep} was never applied with state directory {}; nothing to move",
            state.root().display()
        )));
    };
    if current.integration != "swarm" {
        return Err(Error::Usage(format!(
            "deployment {dep} runs on this host ({}), not on a swarm: `berth move` carries a swarm service between nodes; nothing was changed",
            current.integration
        )));
    }
    if !current.deployment.services.contains_key(service) {
        let known: Vec<&str> = current
            .deployment
            .services
            .keys()
            .map(String::as_str)
            .collect();
        return Err(Error::Usage(format!(
            "deployment {dep} has no service {service:?} (it has: {})",
            known.join(", ")
        )));
    }
    let _lock = lock(state, dep, req.lock_timeout, report).await?;
    let journal_path = state.move_journal(dep, service);
    let journal: Option<Journal> = read_json(&journal_path, "move journal")?;
    let Some(data) = service_data(nodes, dep, service).await? else {
        return Err(Error::Usage(format!(
            "service {service} of {dep} does not run on this swarm; `berth apply --target swarm` first"
        )));
    };
    if data.volumes.is_empty() {
        return Err(Error::Usage(format!(
            "service {service} has no volumes: Swarm runs it on any node, so there is nothing to move; a placement constraint chooses its nodes"
        )));
    }
    let Some(to) = nodes.node(&req.to).cloned() else {
        let names: Vec<&str> = nodes.nodes().iter().map(|n| n.hostname.as_str()).collect();
        return Err(Error::Usage(format!(
            "--to {:?}: no node of this swarm is named so (its nodes: {})",
            req.to,
            names.join(", ")
        )));
    };
    let label = pin_label(dep, service);

    let under_way = journal.as_ref().filter(|j| j.phase != Phase::Done);
    if let Some(j) = under_way
        && j.to_id != to.id
    {
        return Err(Error::Usage(format!(
            "a move of {service} from {} to {} is under way ({}, {}); finish it first with `berth move {service} --to {}`; nothing was changed",
            j.from,
            j.to,
            j.phase.as_str(),
            journal_path.display(),
            j.to
        )));
    }
    if under_way.is_none() {
        let Some(here) = &data.node else {
            return Err(Error::Usage(format!(
                "service {service} is pinned to no node (no node carries label {label}); `berth apply --target swarm` pins it"
            )));
        };
        if here.id == to.id {
            return match journal.filter(|j| j.to_id == to.id && req.prune_source) {
                Some(done) => prune_only(nodes, &journal_path, done, &data, report).await,
                None => Err(Error::Usage(format!(
                    "service {service} is on node {} already{}; nothing was changed",
                    to.hostname,
                    if req.prune_source {
                        " and no earlier move of it left a copy to prune"
                    } else {
                        ""
                    }
                ))),
            };
        }
    }
    check_target(&to, &data)?;

    let resumed_from = under_way.map(|j| j.phase);
    let mut journal = match under_way {
        Some(j) => {
            report(format!(
                "carrying on the move of {service} from {} to {} (it stopped while {})",
                j.from,
                j.to,
                j.phase.as_str()
            ));
            j.clone()
        }
        None => {
            let from = data.node.clone().ok_or_else(|| {
                Error::Runtime(format!(
                    "service {service} lost its pin while being checked"
                ))
            })?;
            let live = nodes.manager().service(&data.swarm_name).await?;
            Journal {
                phase: Phase::Holding,
                from_id: from.id.clone(),
                from: from.hostname.clone(),
                to_id: to.id.clone(),
                to: to.hostname.clone(),
                replicas: live
                    .and_then(|s| s.replicas)
                    .unwrap_or(u64::from(data.spec.replicas)),
                volumes: data.volumes.iter().map(|v| v.name.clone()).collect(),
                started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
            }
        }
    };
    let manager = nodes.manager();

    // After the pin moved, the old node's data counts only if the service
    // ran there since (someone scaled it up between two runs): then it is
    // copied again.
    let mut recopy = journal.phase != Phase::Pinning;
    if !recopy {
        let elsewhere = nodes
            .running_tasks(&data.swarm_name)
            .await?
            .into_iter()
            .any(|t| t.node_id != journal.to_id);
        if elsewhere {
            report(format!(
                "{service} ran on another node than {} since the interrupted move: copying again",
                journal.to
            ));
            recopy = true;
        }
    }

    let mut volumes = Vec::new();
    if recopy {
        // Everything the copy needs is reached before the service is held.
        let from = nodes.engine(&journal.from_id).await?;
        let dest = nodes.engine(&journal.to_id).await?;
        let from_image = carrier_image(&from, &data).await?;
        let dest_image = carrier_image(&dest, &data).await?;
        for v in &data.volumes {
            if from.volume_details(&v.name).await?.is_none() {
                return Err(Error::Runtime(format!(
                    "volume {} of {service} is not on node {}, which holds its pin; nothing was changed",
                    v.name, journal.from
                )));
            }
        }
        // The lock is held: no carrier of this deployment is in use.
        from.remove_leftover_carriers(dep).await?;
        dest.remove_leftover_carriers(dep).await?;

        journal.phase = Phase::Holding;
        save(&journal_path, &journal)?;
        report(format!("stopping {service} (scaling it to 0)"));
        hold(manager, &data.swarm_name, data.spec.stop_timeout).await?;
        // The pin is on the old node alone while copying (a run interrupted
        // half-way through moving it may have left it on both).
        manager.set_node_label(&journal.from_id, &label).await?;
        manager.remove_node_label(&journal.to_id, &label).await?;
        journal.phase = Phase::Copying;
        save(&journal_path, &journal)?;

        let copied = copy_all(
            &from,
            &from_image,
            &dest,
            &dest_image,
            &data,
            &journal,
            report,
        )
        .await;
        match copied {
            Ok(v) => volumes = v,
            Err(e) => {
                return Err(put_back(manager, &journal_path, &data, &journal, e).await);
            }
        }
        journal.phase = Phase::Pinning;
        save(&journal_path, &journal)?;
    }

    // The new node gets the pin before the old one loses it, so that the
    // label is on some node throughout; the service is at 0 meanwhile.
    manager.set_node_label(&journal.to_id, &label).await?;
    manager.remove_node_label(&journal.from_id, &label).await?;
    report(format!(
        "starting {service} on node {} ({} replica{})",
        journal.to,
        journal.replicas,
        if journal.replicas == 1 { "" } else { "s" }
    ));
    release(manager, &data.swarm_name, journal.replicas)
        .await
        .map_err(|e| {
            Error::Runtime(format!(
                "{e}; its volumes were copied and verified and its pin is on node {}: run `berth move {service} --to {}` again once the node is ready",
                journal.to, journal.to
            ))
        })?;
    let strays: Vec<String> = nodes
        .running_tasks(&data.swarm_name)
        .await?
        .into_iter()
        .filter(|t| t.node_id != journal.to_id)
        .map(|t| format!("{} on {}", t.task_name, t.node))
        .collect();
    if !strays.is_empty() {
        return Err(Error::Runtime(format!(
            "service {service} runs elsewhere than node {}: {}; see `berth ps --target swarm`",
            journal.to,
            strays.join(", ")
        )));
    }
    journal.phase = Phase::Done;
    save(&journal_path, &journal)?;

    let mut out = MoveReport {
        deployment: dep.to_string(),
        service: service.to_string(),
        from: journal.from.clone(),
        to: journal.to.clone(),
        moved: true,
        resumed_from,
        replicas: journal.replicas,
        volumes,
        pruned: Vec::new(),
        kept_on: Some(journal.from.clone()),
    };
    if req.prune_source {
        out.pruned = prune(nodes, &journal_path, &journal, &data, report).await?;
        out.kept_on = None;
    }
    Ok(out)
}

/// Refusals about the node moved to.
fn check_target(to: &NodeInfo, data: &ServiceData) -> Result<()> {
    if to.state != "ready" || to.availability != "active" {
        return Err(Error::Usage(format!(
            "node {} is {} and {}: Swarm starts no task there; choose a ready, active node; nothing was changed",
            to.hostname, to.state, to.availability
        )));
    }
    if !super::plan::meets_placement(&data.spec.placement, to) {
        return Err(Error::Usage(format!(
            "node {} does not meet the placement of service {} ({}); nothing was changed",
            to.hostname,
            data.service,
            data.spec.placement.join(", ")
        )));
    }
    Ok(())
}

fn save(path: &std::path::Path, journal: &Journal) -> Result<()> {
    let text = serde_json::to_vec_pretty(journal)
        .map_err(|e| Error::Runtime(format!("cannot serialise the move journal: {e}")))?;
    write_private(path, &text)
}

/// An image on `engine` to make carriers of: the service's own (the node
/// that ran it has it; another one pulls it, as Swarm would to start it).
async fn carrier_image(engine: &Engine, data: &ServiceData) -> Result<String> {
    let wanted = data.spec.image_ref();
    for r in [&wanted, &data.spec.image] {
        if engine.has_image(r).await? {
            return Ok(r.clone());
        }
    }
    engine
        .ensure_images(std::slice::from_ref(&wanted), PullProgress::Quiet)
        .await?;
    Ok(wanted)
}

/// A failure before the pin moved: the service runs again on its old node,
/// and the journal goes (a new run starts over).
async fn put_back(
    manager: &Engine,
    journal_path: &std::path::Path,
    data: &ServiceData,
    journal: &Journal,
    e: Error,
) -> Error {
    let service = &data.service;
    match release(manager, &data.swarm_name, journal.replicas).await {
        Ok(()) => {
            let _ = std::fs::remove_file(journal_path);
            Error::Runtime(format!(
                "{e}; nothing moved: {service} runs again on node {}; run `berth move {service} --to {}` again to retry",
                journal.from, journal.to
            ))
        }
        Err(r) => Error::Runtime(format!(
            "{e}; nothing moved, and {service} did not start again on node {}: {r}; run `berth move {service} --to {}` again to retry",
            journal.from, journal.to
        )),
    }
}

async fn copy_all(
    from: &Engine,
    from_image: &str,
    dest: &Engine,
    dest_image: &str,
    data: &ServiceData,
    journal: &Journal,
    report: &Reporter,
) -> Result<Vec<MovedVolume>> {
    let labels = instance_labels(&data.deployment, &data.service, 1);
    let mut out = Vec::new();
    for v in &data.volumes {
        report(format!(
            "copying volume {} from node {} to node {}",
            v.name, journal.from, journal.to
        ));
        let replaced = clear_target(dest, &v.name, data).await?;
        if replaced {
            report(format!(
                "node {} had an older copy of volume {} (from an earlier move): replaced",
                journal.to, v.name
            ));
        }
        let volume_labels = from
            .volume_details(&v.name)
            .await?
            .map(|d| d.labels)
            .unwrap_or_default();
        dest.create_labelled_volume(&v.name, &volume_labels).await?;
        let source = from
            .create_carrier(from_image, &v.name, &labels, PURPOSE)
            .await?;
        let copy = match dest
            .create_carrier(dest_image, &v.name, &labels, PURPOSE)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = from.remove_carrier(&source).await;
                return Err(e);
            }
        };
        let result = copy_volume(from, &source, dest, &copy, v, journal).await;
        let a = from.remove_carrier(&source).await;
        let b = dest.remove_carrier(&copy).await;
        let contents = result?;
        a?;
        b?;
        out.push(MovedVolume {
            name: v.name.clone(),
            contents,
            replaced,
        });
    }
    Ok(out)
}

/// Stream the volume from `source` into `copy`, then read the copy back:
/// both must hold the same [`Contents`].
async fn copy_volume(
    from: &Engine,
    source: &Carrier,
    dest: &Engine,
    copy: &Carrier,
    v: &SwarmVolume,
    journal: &Journal,
) -> Result<Contents> {
    let scanner = Arc::new(Mutex::new(Some(Scanner::with_listing(Mode::Verify))));
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let (s, r) = (scanner.clone(), refused.clone());
    let stream = from.download_volume(source).map(move |chunk| {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut guard = s.lock().map_err(|_| std::io::Error::other("scanner"))?;
        if let Some(sc) = guard.as_mut()
            && let Err(e) = sc.feed(&chunk)
        {
            let text = e.to_string();
            if let Ok(mut slot) = r.lock() {
                *slot = Some(text.clone());
            }
            return Err(std::io::Error::other(text));
        }
        Ok(chunk)
    });
    let uploaded = dest.upload_volume(copy, stream).await;
    let refusal = refused.lock().ok().and_then(|mut r| r.take());
    if let Some(why) = refusal {
        return Err(Error::Runtime(format!(
            "volume {} on node {}: {why}; berth does not copy it",
            v.name, journal.from
        )));
    }
    uploaded?;
    let taken = scanner.lock().ok().and_then(|mut s| s.take());
    let Some(sc) = taken else {
        return Err(Error::Runtime("the copy's scanner was lost".into()));
    };
    let sent = sc
        .contents()
        .map_err(|e| Error::Runtime(format!("volume {} on node {}: {e}", v.name, journal.from)))?;
    let mut back = Scanner::with_listing(Mode::Verify);
    let mut stream = Box::pin(dest.download_volume(copy));
    while let Some(chunk) = stream.next().await {
        back.feed(&chunk?).map_err(|e| {
            Error::Runtime(format!(
                "the copy of volume {} on node {}: {e}",
                v.name, journal.to
            ))
        })?;
    }
    let got = back.contents().map_err(|e| {
        Error::Runtime(format!(
            "the copy of volume {} on node {}: {e}",
            v.name, journal.to
        ))
    })?;
    if got != sent {
        return Err(Error::Runtime(format!(
            "the copy of volume {} on node {} differs from the source on node {} ({} entries, {} bytes there; {} entries, {} bytes in the source)",
            v.name, journal.to, journal.from, got.entries, got.bytes, sent.entries, sent.bytes
        )));
    }
    Ok(got)
}

/// Make way for the copy of `volume` on the new node: an existing volume of
/// that name (an older copy, kept by an earlier move, or a copy this move
/// began before it was interrupted) is removed, with the stopped containers
/// of the service and the carriers holding it. Returns whether there was
/// one. A running container using it is refused: the copy never lands
/// under a running service.
async fn clear_target(engine: &Engine, volume: &str, data: &ServiceData) -> Result<bool> {
    if engine.volume_details(volume).await?.is_none() {
        return Ok(false);
    }
    free_volume(engine, volume, data).await?;
    engine.remove_volume(volume).await?;
    Ok(true)
}

/// Remove the stopped task containers of the service and the carriers of
/// the deployment that hold `volume`; anything else holding it is an error
/// naming it.
async fn free_volume(engine: &Engine, volume: &str, data: &ServiceData) -> Result<()> {
    for user in engine.volume_users(volume).await? {
        let of_service = user
            .labels
            .get(crate::names::LABEL_SWARM_TASK_SERVICE)
            .is_some_and(|s| *s == data.swarm_name);
        let carrier = user.labels.contains_key(LABEL_CARRIER)
            && user.labels.get(crate::names::LABEL_DEPLOYMENT) == Some(&data.deployment);
        if user.running || !(of_service || carrier) {
            return Err(Error::Runtime(format!(
                "volume {volume} is held by container {} ({}); berth leaves it alone",
                user.name,
                if user.running { "running" } else { "stopped" }
            )));
        }
        engine
            .remove_carrier(&Carrier {
                id: user.id.clone(),
                volume: volume.to_string(),
            })
            .await?;
    }
    Ok(())
}

/// `--prune-source` on a service already moved: remove what the recorded
/// move left on its old node.
async fn prune_only(
    nodes: &NodeEngines,
    journal_path: &std::path::Path,
    journal: Journal,
    data: &ServiceData,
    report: &Reporter,
) -> Result<MoveReport> {
    let pruned = prune(nodes, journal_path, &journal, data, report).await?;
    Ok(MoveReport {
        deployment: data.deployment.clone(),
        service: data.service.clone(),
        from: journal.from,
        to: journal.to,
        moved: false,
        resumed_from: None,
        replicas: journal.replicas,
        volumes: Vec::new(),
        pruned,
        kept_on: None,
    })
}

/// Remove the moved volumes from the old node, only once the service runs
/// on the new one; then the journal goes.
async fn prune(
    nodes: &NodeEngines,
    journal_path: &std::path::Path,
    journal: &Journal,
    data: &ServiceData,
    report: &Reporter,
) -> Result<Vec<String>> {
    let label = pin_label(&data.deployment, &data.service);
    // Asked again: the move may have changed the labels since `nodes` was made.
    let now = nodes.manager().list_nodes().await?;
    let on_new = now
        .iter()
        .all(|n| (n.id == journal.to_id) == n.labels.contains_key(&label));
    let running = nodes.running_tasks(&data.swarm_name).await?;
    if !on_new || running.iter().any(|t| t.node_id != journal.to_id) {
        return Err(Error::Usage(format!(
            "service {} is not (only) on node {}, where the recorded move took it; the volumes on node {} are kept",
            data.service, journal.to, journal.from
        )));
    }
    let from = nodes.engine(&journal.from_id).await?;
    let mut pruned = Vec::new();
    for v in &journal.volumes {
        if from.volume_details(v).await?.is_none() {
            continue;
        }
        free_volume(&from, v, data).await?;
        from.remove_volume(v).await?;
        report(format!("removed volume {v} from node {}", journal.from));
        pruned.push(v.clone());
    }
    match std::fs::remove_file(journal_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(journal_path, e)),
    }
    Ok(pruned)
}
