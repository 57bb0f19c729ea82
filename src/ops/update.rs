//! `berth update`: move services whose image is a tag to the digest the
//! registry serves for it now, one service at a time in link order, through
//! the ordinary apply (which snapshots the volumes of every instance whose
//! image changes). A service that is not healthy in time is rolled back
//! with its data ([`lifecycle::rollback`]), its old image is tagged again,
//! and the digest is remembered so later updates skip it until the tag
//! moves on; the services after it are not updated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::apply::Reporter;
use crate::apply::converge::Converger;
use crate::data::lifecycle::{self, RollbackTo};
use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::engine::images::split_reference;
use crate::error::{Error, Result};
use crate::instance::Integration;
use crate::ops::notify;
use crate::state::StateDir;

/// One service whose tag points at another digest than the one it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub service: String,
    pub image: String,
    /// The digest its running image was pulled as (`None`: not known, for
    /// example an image built on this host).
    pub from: Option<String>,
    pub to: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub changes: Vec<Change>,
    /// Services whose new digest an earlier update rolled back from.
    pub skipped_bad: Vec<Change>,
    /// Services whose registry could not say (with no service named, one
    /// image built on this host or an unreachable registry must not keep
    /// the others from being updated).
    pub not_checked: Vec<NotChecked>,
}

/// A service whose tag's digest the registry did not give.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotChecked {
    pub service: String,
    pub image: String,
    pub error: String,
}

/// What [`update`] did.
#[derive(Debug, Default)]
pub struct UpdateReport {
    pub updated: Vec<Change>,
    pub skipped_bad: Vec<Change>,
    pub not_checked: Vec<NotChecked>,
}

/// How long an updated service may take to be running and healthy
/// (`wait`), and how long it must then stay so (`settle`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub wait: Duration,
    pub settle: Duration,
}

/// How long an updated service may take to be healthy, unless told.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long it must then stay so, unless told.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

impl Timing {
    /// The timings `auto_update` sets, with the defaults filled in.
    pub fn of(a: &crate::deployment::AutoUpdate) -> Self {
        Timing {
            wait: a
                .health_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
            settle: a
                .settle_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_SETTLE),
        }
    }
}

/// Which services an update looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every service whose image is a tag.
    All,
    /// These (each must be there, and its registry must answer).
    Named(Vec<String>),
    /// The services `auto_update` is on for (a scheduled run).
    Auto,
}

impl Which {
    /// From the command line: `auto` (`--auto`), else the services named, else all.
    pub fn from_args(services: &[String], auto: bool) -> Self {
        if auto {
            Which::Auto
        } else if services.is_empty() {
            Which::All
        } else {
            Which::Named(services.to_vec())
        }
    }
}

/// The deployment `name` as last applied in `state`, for an update run
/// without its file (a scheduled one: the file may have moved). A service
/// that an earlier rollback pinned to an image ID gets back the reference
/// it was applied with, so that its tag is followed again.
pub fn applied_deployment(state: &StateDir, name: &str) -> Result<Deployment> {
    crate::names::check_name(name)
        .map_err(|p| Error::Usage(format!("--deployment {name:?} {p}")))?;
    let Some(current) = state.read_current(name)? else {
        return Err(Error::Usage(format!(
            "deployment {name} was never applied with state directory {}; run `berth apply` first",
            state.root().display()
        )));
    };
    let mut dep = current.deployment;
    let history = lifecycle::history(state, name)?;
    for (svc_name, svc) in dep.services.iter_mut() {
        if is_tag(&svc.image) {
            continue;
        }
        let id = svc.image.clone();
        let reference = history.iter().rev().find_map(|r| {
            let s = r.deployment.services.get(svc_name)?;
            (is_tag(&s.image) && r.image_ids.get(svc_name) == Some(&id)).then(|| s.image.clone())
        });
        if let Some(reference) = reference {
            svc.image = reference;
        }
    }
    Ok(dep)
}

/// An image reference naming a tag (not a digest or an image ID).
fn is_tag(image: &str) -> bool {
    !image.contains('@') && !image.starts_with("sha256:")
}

/// Which services of `deployment` (`services`: the named ones, empty: all)
/// would move to another digest. Touches nothing.
pub async fn check(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    which: &Which,
) -> Result<CheckReport> {
    let auto = deployment.auto_update_services();
    let (services, named): (&[String], bool) = match which {
        Which::All => (&[], false),
        Which::Named(s) => (s, true),
        Which::Auto => (&auto, false),
    };
    if *which == Which::Auto && auto.is_empty() {
        return Ok(CheckReport::default());
    }
    for s in services {
        if !deployment.services.contains_key(s) {
            return Err(Error::Usage(format!(
                "no service {s} in deployment {}",
                deployment.name
            )));
        }
    }
    let Some(current) = state.read_current(&deployment.name)? else {
        return Err(Error::Usage(format!(
            "deployment {} was never applied with state directory {}; run `berth apply` first",
            deployment.name,
            state.root().display()
        )));
    };
    let bad = state.read_bad_digests(&deployment.name)?;
    let mut report = CheckReport::default();
    let selected: Vec<_> = deployment
        .services
        .values()
        .filter(|svc| (services.is_empty() || services.contains(&svc.name)) && is_tag(&svc.image))
        .collect();
    // One question per image, all at once: registries are remote and slow,
    // and services often share an image.
    let images: BTreeSet<&str> = selected.iter().map(|svc| svc.image.as_str()).collect();
    let mut digests: BTreeMap<&str, Result<String>> = futures_util::future::join_all(
        images
            .into_iter()
            .map(|image| async move { (image, engine.registry_digest(image).await) }),
    )
    .await
    .into_iter()
    .collect();
    // A service named on the command line must be checked.
    if named
        && let Some(image) = digests.iter().find(|(_, r)| r.is_err()).map(|(i, _)| *i)
        && let Some(Err(e)) = digests.remove(image)
    {
        return Err(e);
    }
    for svc in selected {
        let to = match digests.get(svc.image.as_str()) {
            Some(Ok(to)) => to.clone(),
            Some(Err(e)) => {
                report.not_checked.push(NotChecked {
                    service: svc.name.clone(),
                    image: svc.image.clone(),
                    error: e.to_string(),
                });
                continue;
            }
            None => continue,
        };
        let from = if current.integration == Integration::Swarm.as_str() {
            // A swarm runs what its revision recorded the registry serving.
            current
                .image_digests
                .get(&svc.name)
                .cloned()
                .into_iter()
                .collect()
        } else {
            let (repo, _) = split_reference(&svc.image);
            match current.image_ids.get(&svc.name) {
                Some(id) => engine.repo_digests(id, &repo).await?,
                None => Vec::new(),
            }
        };
        if from.contains(&to) {
            continue;
        }
        let change = Change {
            service: svc.name.clone(),
            image: svc.image.clone(),
            from: from.into_iter().next(),
            to: to.clone(),
        };
        if bad.get(&svc.name).is_some_and(|b| b.contains(&to)) {
            report.skipped_bad.push(change);
        } else {
            report.changes.push(change);
        }
    }
    Ok(report)
}

/// Update the services [`check`] finds, in link order; `wait` is how long
/// each may take to be running and healthy, and how long it must then stay
/// so ([`Timing`]).
pub async fn update(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    which: &Which,
    conv: &dyn Converger,
    timing: Timing,
    report: Reporter,
) -> Result<UpdateReport> {
    conv.check(deployment)?;
    // A `berth up` holds the lock for as long as it runs: waiting for it
    // would wait until it ends. It runs the schedule itself.
    if !conv.in_process()
        && let Some(pid) = crate::target::foreground::running_up(state, &deployment.name)
    {
        return Err(Error::Usage(format!(
            "`berth up` (pid {pid}) supervises {} and holds its apply lock; it runs the deployment's auto_update schedule itself (or stop it, or change its file and send SIGHUP)",
            deployment.name
        )));
    }
    let found = check(engine, state, deployment, which).await?;
    let levels = deployment.link_levels();
    let mut changes = found.changes.clone();
    changes.sort_by_key(|c| {
        (
            levels.get(&c.service).copied().unwrap_or(0),
            c.service.clone(),
        )
    });
    let mut done = UpdateReport {
        updated: Vec::new(),
        skipped_bad: found.skipped_bad,
        not_checked: found.not_checked,
    };
    let Timing { wait, settle } = timing;
    let swarm = conv.integration() == Integration::Swarm;
    for change in changes {
        let before = state.read_current(&deployment.name)?;
        let old_id = before
            .as_ref()
            .and_then(|r| r.image_ids.get(&change.service).cloned());
        // On a swarm the nodes pull what the apply names (by digest).
        if !swarm {
            engine
                .pull_images(std::slice::from_ref(&change.image), conv.progress())
                .await?;
        }
        report(format!(
            "updating {} to {} ({})",
            change.service, change.image, change.to
        ));
        // An apply that fails on the new image (under systemd a unit
        // whose container never gets ready fails its start) is a failed
        // update too: rolled back like one that is not healthy in time.
        let applied = conv
            .converge(
                engine,
                state,
                deployment,
                Some(&format!("update {} to {}", change.service, change.to)),
                report.clone(),
            )
            .await
            .map(|o| o.applied.revision);
        let containers: Vec<String> = deployment
            .services
            .get(&change.service)
            .map(|svc| {
                deployment
                    .service_instances(svc)
                    .into_iter()
                    .map(|i| i.container)
                    .collect()
            })
            .unwrap_or_default();
        let why: Vec<String> = match &applied {
            Err(e) => vec![e.to_string()],
            // The swarm apply waited for the tasks to run (healthy, with a
            // check) and Swarm rolled back a task that was not; they must
            // then stay so for the settle time.
            Ok(_) if swarm => {
                tokio::time::sleep(settle).await;
                swarm_not_ready(engine, &deployment.name, &change.service).await?
            }
            Ok(_) => {
                let mut not_ready =
                    crate::apply::health::wait_ready(engine, state, &containers, wait).await;
                if not_ready.is_empty() && !settle.is_zero() {
                    // Running (and healthy) once is not enough: a build that
                    // exits or turns unhealthy soon after starting is rolled
                    // back too.
                    tokio::time::sleep(settle).await;
                    not_ready = crate::apply::health::wait_ready(
                        engine,
                        state,
                        &containers,
                        Duration::ZERO,
                    )
                    .await;
                }
                not_ready.iter().map(|n| n.to_string()).collect()
            }
        };
        if why.is_empty() {
            let event = notify::Event {
                kind: "update",
                service: &change.service,
                image: &change.image,
                from: change.from.as_deref().unwrap_or(""),
                to: &change.to,
                reason: "the tag names a new digest",
            };
            notify::notify(deployment, &event, &report).await;
            done.updated.push(change);
            continue;
        }
        report(format!(
            "{} is not healthy on {}; rolling back with its data",
            change.service, change.to
        ));
        state.record_bad_digest(&deployment.name, &change.service, &change.to)?;
        let Some(before) = before else {
            return Err(Error::Runtime(format!(
                "update of {}: not healthy on {} and there is no earlier revision to roll back to:\n{}",
                change.service,
                change.to,
                why.join("\n")
            )));
        };
        // The tag names the old image again first: the rollback then runs
        // it by its reference, so the revision it writes reads as the file
        // does, and a later apply (or a scheduled update that finds nothing
        // new) changes nothing.
        if let Some(id) = &old_id
            && !swarm
        {
            engine.retag(id, &change.image).await?;
        }
        lifecycle::rollback_with(
            engine,
            state,
            &deployment.name,
            RollbackTo {
                revision: Some(before.revision),
                with_data: true,
                // A swarm runs the recorded digest (the tag names the bad one).
                pin: swarm || old_id.is_none(),
                cause: Some(format!(
                    "rollback of {} from {} (not healthy)",
                    change.service, change.to
                )),
            },
            conv,
            None,
            report.clone(),
        )
        .await?;
        let reason = why.join("\n");
        let event = notify::Event {
            kind: "rollback",
            service: &change.service,
            image: &change.image,
            from: &change.to,
            to: change.from.as_deref().unwrap_or(""),
            reason: &reason,
        };
        notify::notify(deployment, &event, &report).await;
        return Err(Error::Runtime(format!(
            "update of {} to {} ({}) rolled back ({}; {} runs the previous image again); not healthy:\n{}",
            change.service,
            change.image,
            change.to,
            match &applied {
                Ok(n) => format!("revision {n} applied it"),
                Err(_) => "its apply failed".to_string(),
            },
            change.service,
            why.join("\n")
        )));
    }
    Ok(done)
}

/// Why `service` of `deployment` is not running well on the swarm now: one
/// line per task that is not running or not healthy, or that its replicas
/// do not all run. Empty when it is.
async fn swarm_not_ready(engine: &Engine, deployment: &str, service: &str) -> Result<Vec<String>> {
    let rows = crate::target::swarm::ops::ps(engine, None, deployment).await?;
    let rows: Vec<_> = rows.iter().filter(|r| r.service == service).collect();
    let mut why: Vec<String> = rows
        .iter()
        .filter(|r| r.state != "running" || r.health == "unhealthy" || r.health == "starting")
        .map(|r| {
            let health = if r.health.is_empty() {
                String::new()
            } else {
                format!(", {}", r.health)
            };
            let error = if r.error.is_empty() {
                String::new()
            } else {
                format!(": {}", r.error)
            };
            format!("task {} on {}: {}{health}{error}", r.task, r.node, r.state)
        })
        .collect();
    if rows.is_empty() {
        why.push(format!("{service} has no task running on the swarm"));
    }
    Ok(why)
}
