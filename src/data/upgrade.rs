//! Snapshot before upgrade: `apply` calls [`snapshot_upgrades`] once the plan
//! is known and before it touches any instance. Every instance that is about
//! to be recreated because its image changed (reference or image ID), and
//! whose service keeps `snapshot_on_upgrade` on, is stopped and its volumes
//! are copied to `<state>/snapshots/<container>/<revision>-<time>.tar.zst`
//! (`<revision>` is the revision being left, so `berth rollback --to
//! <revision> --with-data` finds it). The recreate that follows removes the
//! stopped container; the manifest records the old image.
//!
//! A failed snapshot stops the apply before anything was upgraded: the
//! instances stopped for it are started again and the error names the cause.
//!
//! The target says where the volumes are ([`Target::data_site`]: on a
//! swarm, each service's pinned node) and whether an item changes its image
//! ([`Target::image_changed`]); instances without volumes are left alone
//! (on a swarm, holding one would turn its rolling update into downtime).

use crate::apply::Reporter;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::target::Target;

use crate::deployment::Deployment;
use crate::plan::{Action, InstancePlan, Plan};
use crate::state::StateDir;

/// Does `item` replace its container because the image changed? Compared
/// against the container there now, else the previously applied spec.
pub async fn image_changed(engine: &Engine, item: &InstancePlan) -> Result<bool> {
    if item.action != Action::Recreate {
        return Ok(false);
    }
    let Some(spec) = &item.spec else {
        return Ok(false);
    };
    if let Some(c) = engine.inspect_container(&item.container).await? {
        let id = c.image.unwrap_or_default();
        // berth creates from the image ID when it knows it, so the
        // container's configured image is that ID, or the reference when the
        // ID was not known yet: either names the image it runs.
        let reference = c.config.and_then(|c| c.image).unwrap_or_default();
        return Ok(
            (!spec.image_id.is_empty() && !id.is_empty() && id != spec.image_id)
                || (!reference.is_empty() && reference != spec.image && reference != spec.image_id),
        );
    }
    Ok(item.previous.as_ref().is_some_and(|p| {
        p.image != spec.image
            || (!p.image_id.is_empty() && !spec.image_id.is_empty() && p.image_id != spec.image_id)
    }))
}

/// Snapshot every instance that `plan` upgrades to a new image. `revision`
/// is the revision applied now (the one being left); `target` holds each
/// instance first (so nothing starts a fresh container during the copy)
/// and, when a snapshot fails, releases the ones it held.
pub async fn snapshot_upgrades(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    plan: &Plan,
    revision: u64,
    target: &dyn Target,
    report: &Reporter,
) -> Result<()> {
    let mut stopped: Vec<&InstancePlan> = Vec::new();
    let mut failure = None;
    // Found once, when the first upgrade needs it.
    let mut site: Option<(super::instances::Site, Vec<String>)> = None;
    for item in plan.instances.iter() {
        let Some(svc) = deployment.services.get(&item.service) else {
            continue;
        };
        if !svc.snapshot_on_upgrade || !target.image_changed(engine, deployment, item).await? {
            continue;
        }
        if site.is_none() {
            let s = target.data_site(engine, state).await?;
            let with_data = s
                .discover(state, &deployment.name)
                .await?
                .into_iter()
                .map(|i| i.container)
                .collect();
            site = Some((s, with_data));
        }
        let Some((site, with_data)) = &site else {
            continue;
        };
        if !with_data.contains(&item.container) {
            continue;
        }
        let timeout = item
            .previous
            .as_ref()
            .map(|p| p.stop_timeout)
            .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT);
        let r: Result<()> = async {
            target.hold(engine, &item.container).await?;
            engine.stop_container(&item.container, timeout).await?;
            stopped.push(item);
            let keep = deployment.snapshots_keep(&item.service);
            if let Some(s) = super::snapshot::snapshot_instance(
                site,
                state,
                &deployment.name,
                &item.container,
                revision,
                keep,
            )
            .await?
            {
                report(format!(
                    "snapshot of {} before upgrade: {}",
                    item.container,
                    s.path.display()
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            failure = Some(Error::Runtime(format!(
                "snapshot of {} before its upgrade failed: {e}; nothing was upgraded (turn snapshots off for the service with snapshot_on_upgrade = false)",
                item.container
            )));
            break;
        }
    }
    let Some(err) = failure else {
        return Ok(());
    };
    // Put back what was stopped for the snapshots; the old containers are
    // still there.
    for item in stopped {
        if let Err(e) = target.release(engine, &item.container).await {
            tracing::warn!("starting {} again failed: {e}", item.container);
        }
    }
    Err(err)
}
