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
use crate::apply::converge::{self, ConvergeOptions};
use crate::data::lifecycle;
use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::engine::images::split_reference;
use crate::error::{Error, Result};
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

/// `bad-digests.json`: service -> digests rolled back from.
type BadDigests = BTreeMap<String, BTreeSet<String>>;

fn read_bad(state: &StateDir, deployment: &str) -> Result<BadDigests> {
    Ok(
        crate::state::read_json(&state.bad_digests(deployment), "record of bad digests")?
            .unwrap_or_default(),
    )
}

fn record_bad(state: &StateDir, deployment: &str, service: &str, digest: &str) -> Result<()> {
    let mut bad = read_bad(state, deployment)?;
    bad.entry(service.to_string())
        .or_default()
        .insert(digest.to_string());
    let json = serde_json::to_vec_pretty(&bad)
        .map_err(|e| Error::Runtime(format!("cannot serialise bad digests: {e}")))?;
    crate::state::write_private(&state.bad_digests(deployment), &json)
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
    services: &[String],
) -> Result<CheckReport> {
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
    let bad = read_bad(state, &deployment.name)?;
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
    if !services.is_empty()
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
        let (repo, _) = split_reference(&svc.image);
        let from = match current.image_ids.get(&svc.name) {
            Some(id) => engine.repo_digests(id, &repo).await?,
            None => Vec::new(),
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
    services: &[String],
    opts: &ConvergeOptions,
    timing: Timing,
    report: Reporter,
) -> Result<UpdateReport> {
    converge::check(deployment, opts)?;
    let found = check(engine, state, deployment, services).await?;
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
    let mut opts = opts.clone();
    opts.wait = None;
    for change in changes {
        let before = state.read_current(&deployment.name)?;
        let old_id = before
            .as_ref()
            .and_then(|r| r.image_ids.get(&change.service).cloned());
        engine
            .pull_images(std::slice::from_ref(&change.image), opts.apply.progress)
            .await?;
        report(format!(
            "updating {} to {} ({})",
            change.service, change.image, change.to
        ));
        opts.apply.cause = Some(format!("update {} to {}", change.service, change.to));
        let outcome = converge::converge(engine, state, deployment, &opts, report.clone()).await?;
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
        let mut not_ready =
            crate::apply::health::wait_ready(engine, state, &containers, wait).await;
        if not_ready.is_empty() && !settle.is_zero() {
            // Running (and healthy) once is not enough: a build that exits
            // or turns unhealthy soon after starting is rolled back too.
            tokio::time::sleep(settle).await;
            not_ready =
                crate::apply::health::wait_ready(engine, state, &containers, Duration::ZERO).await;
        }
        if not_ready.is_empty() {
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
        let why: Vec<String> = not_ready.iter().map(|n| n.to_string()).collect();
        report(format!(
            "{} is not healthy on {}; rolling back with its data",
            change.service, change.to
        ));
        record_bad(state, &deployment.name, &change.service, &change.to)?;
        let Some(before) = before else {
            return Err(Error::Runtime(format!(
                "update of {}: not healthy on {} and there is no earlier revision to roll back to:\n{}",
                change.service,
                change.to,
                why.join("\n")
            )));
        };
        let mut back = opts.clone();
        back.apply.cause = Some(format!(
            "rollback of {} from {} (not healthy)",
            change.service, change.to
        ));
        lifecycle::rollback(
            engine,
            state,
            &deployment.name,
            Some(before.revision),
            true,
            &back,
            report.clone(),
        )
        .await?;
        // The tag again names what runs, so a plain apply keeps it.
        if let Some(id) = old_id {
            engine.retag(&id, &change.image).await?;
        }
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
            "update of {} to {} ({}) rolled back (revision {} applied it; {} is healthy again on the previous image); not healthy:\n{}",
            change.service,
            change.image,
            change.to,
            outcome.applied.revision,
            change.service,
            why.join("\n")
        )));
    }
    Ok(done)
}
