//! `berth apply`: make the host match the deployment, carrying out exactly
//! the [`Plan`].
//!
//! Order: take the deployment lock; pull every missing image (a failure ends
//! here, before anything on the host is touched); resolve the
//! [`InstanceSpec`]s and compute the plan; create the network and volumes;
//! remove instances no longer in the file; then create / recreate / start
//! instances in dependency order (links), the independent ones in parallel;
//! finally record the applied [`Revision`].
//!
//! Every step is idempotent and state files are written atomically, so an
//! apply killed at any point and run again converges. Volumes are never
//! removed here.

pub mod converge;
pub mod destroy;
pub mod lock;
pub mod observe;
pub mod up;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use observe::compute_plan;

pub use crate::target::{PARALLELISM, Reporter, health, quiet};

use crate::deployment::Deployment;
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::instance::{ImageInfo, InstanceSpec, Integration};
use crate::names;
use crate::plan::{Plan, Supervision};
use crate::state::{Revision, StateDir};
use crate::target::systemd::ctl as systemd_ctl;
use crate::target::{HostOptions, Step, Target};

/// How many applied revisions are kept under `revisions/`.
pub const KEEP_REVISIONS: u64 = 10;

/// Options of an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The integration to apply with (already resolved from `auto`).
    pub integration: Integration,
    /// Where systemd units are written.
    pub unit_dir: PathBuf,
    /// Run `systemctl` (false: only write units and specs).
    pub systemctl: bool,
    /// The `berth` binary units run.
    pub berth_path: PathBuf,
    /// Give up waiting for another apply after this long.
    pub lock_timeout: Option<Duration>,
    /// How pulls show progress.
    pub progress: PullProgress,
    /// Why this apply runs, recorded in the revision it writes and shown
    /// by `berth history` (`None`: an apply of the file).
    pub cause: Option<String>,
    /// The swarm nodes file (`--nodes`; `None`: the state directory's):
    /// how a swarm apply reaches the node holding a service's volumes.
    pub nodes: Option<PathBuf>,
}

impl ApplyOptions {
    /// What the host target is given.
    pub fn host(&self) -> HostOptions {
        HostOptions {
            unit_dir: self.unit_dir.clone(),
            berth_path: self.berth_path.clone(),
            systemctl: self.systemctl,
            nodes: self.nodes.clone(),
        }
    }

    /// The host target this apply runs on.
    pub fn target(&self) -> Box<dyn Target> {
        crate::target::for_host(self.integration, &self.host())
    }
}

/// `--integration auto|systemd|docker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrationChoice {
    /// systemd when PID 1 is systemd, else docker.
    #[default]
    Auto,
    /// systemd units.
    Systemd,
    /// Docker restart policies.
    Docker,
}

impl IntegrationChoice {
    /// Decide: `auto` is systemd iff systemd runs this host.
    pub fn resolve(self) -> Integration {
        match self {
            IntegrationChoice::Systemd => Integration::Systemd,
            IntegrationChoice::Docker => Integration::Docker,
            IntegrationChoice::Auto if systemd_ctl::systemd_running() => Integration::Systemd,
            IntegrationChoice::Auto => Integration::Docker,
        }
    }
}

/// The integration deployment `name` is kept running by on this host:
/// `choice` when given, else the one its applied revision records, else
/// this host's default (systemd where it runs, else docker).
pub fn effective_integration(
    state: &StateDir,
    name: &str,
    choice: Option<IntegrationChoice>,
) -> Result<Integration> {
    if let Some(c) = choice {
        return Ok(c.resolve());
    }
    let applied = state
        .read_current(name)?
        .and_then(|r| Integration::parse(&r.integration));
    Ok(applied.unwrap_or_else(|| IntegrationChoice::Auto.resolve()))
}

/// The desired state of a deployment on this host, ready to diff.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Resolved instance specs, services in name order.
    pub specs: Vec<InstanceSpec>,
    /// What the engine knows of each image present.
    pub images: BTreeMap<String, ImageInfo>,
    /// Images not on this host.
    pub missing_images: Vec<String>,
    /// How the plan looks at the host.
    pub target: Supervision,
}

/// Resolve the desired state on `target`. With `pull`, missing images are
/// pulled first (failing before anything is touched); without, they are
/// listed as missing.
pub async fn desired(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    target: &dyn Target,
    pull: Option<PullProgress>,
) -> Result<Desired> {
    let refs: Vec<String> = deployment
        .services
        .values()
        .map(|s| s.image.clone())
        .collect();
    let (images, missing_images) = match pull {
        Some(progress) => {
            let refresh = target.images_to_refresh(engine, &refs).await;
            if !refresh.is_empty() {
                engine.pull_images(&refresh, progress).await?;
            }
            (engine.ensure_images(&refs, progress).await?, Vec::new())
        }
        None => {
            let mut images = BTreeMap::new();
            let mut missing = Vec::new();
            for r in &refs {
                if images.contains_key(r) || missing.contains(r) {
                    continue;
                }
                match engine.image_info(r).await? {
                    Some(i) => {
                        images.insert(r.clone(), i);
                    }
                    None => missing.push(r.clone()),
                }
            }
            (images, missing)
        }
    };
    // Applying makes the host's digest key; a plan uses it if there is one.
    let key = crate::instance::DigestKey::for_state(state, pull.is_some())?;
    let specs = crate::instance::resolve_keyed(deployment, &images, target.integration(), &key);
    let target = target.supervision(state, deployment)?;
    Ok(Desired {
        specs,
        images,
        missing_images,
        target,
    })
}

/// What [`apply`] on `target` would do, without pulling or touching
/// anything (`berth plan`): images not on this host show as missing.
pub async fn preview(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    target: &dyn Target,
) -> Result<Plan> {
    // What apply would refuse, plan refuses too.
    target.check(deployment)?;
    let desired = desired(engine, state, deployment, target, None).await?;
    target
        .plan(
            engine,
            state,
            deployment,
            &desired.specs,
            &desired.missing_images,
            &desired.target,
        )
        .await
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The plan that was carried out.
    pub plan: Plan,
    /// The revision now applied.
    pub revision: u64,
    /// systemd commands that were not run (`--no-systemctl`), for the
    /// operator to run.
    pub pending_systemctl: Vec<String>,
}

/// Apply `deployment` to this host. See the module documentation.
pub async fn apply(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    opts: &ApplyOptions,
    report: Reporter,
) -> Result<ApplyReport> {
    let target = opts.target();
    target.check(deployment)?;
    let r = report.clone();
    let name = deployment.name.clone();
    let lock = lock::lock_deployment(state, &deployment.name, opts.lock_timeout, move || {
        r(format!(
            "waiting for another berth apply of {name} to finish..."
        ))
    })
    .await?;
    apply_locked(
        engine,
        state,
        deployment,
        target.as_ref(),
        Run {
            progress: opts.progress,
            cause: opts.cause.as_deref(),
        },
        &lock,
        report,
    )
    .await
}

/// How one apply runs, beyond what it applies.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// How pulls show progress.
    pub progress: PullProgress,
    /// Recorded in the revision ([`ApplyOptions::cause`]).
    pub cause: Option<&'a str>,
}

/// [`apply`] on `target`, for a caller that holds the deployment's lock
/// already (`berth up` holds it for as long as it runs).
pub async fn apply_locked(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    target: &dyn Target,
    run: Run<'_>,
    _lock: &lock::DeploymentLock,
    report: Reporter,
) -> Result<ApplyReport> {
    let started = std::time::Instant::now();
    let desired = desired(engine, state, deployment, target, Some(run.progress)).await?;
    tracing::debug!("apply: lock and images ready after {:?}", started.elapsed());
    for w in target.warnings(deployment, &desired.images) {
        report(w);
    }
    let plan = target
        .plan(
            engine,
            state,
            deployment,
            &desired.specs,
            &[],
            &desired.target,
        )
        .await?;
    for w in &plan.warnings {
        report(format!("warning: {w}"));
    }

    let current = state.read_current(&deployment.name)?;
    let image_ids: BTreeMap<String, String> = deployment
        .services
        .values()
        .filter_map(|s| {
            desired
                .images
                .get(&s.image)
                .map(|i| (s.name.clone(), i.id.clone()))
        })
        .collect();
    // The plan covers the revision too (`settings_changes`): what plan
    // shows is exactly what makes apply write a new revision.
    let changed = plan.has_changes();
    let revision = match &current {
        Some(c) if !changed => c.revision,
        Some(c) => c.revision + 1,
        None => 1,
    };

    tracing::debug!("apply: plan ready after {:?}", started.elapsed());
    // Instances whose image changes get their volumes snapshotted first
    // (held by the target, stopped, copied; the recreate below replaces
    // the stopped container).
    crate::data::upgrade::snapshot_upgrades(
        engine,
        state,
        deployment,
        &plan,
        current.as_ref().map(|c| c.revision).unwrap_or(0),
        target,
        &report,
    )
    .await?;
    // The network first: every instance needs it.
    if plan.create_network {
        target.ensure_network(engine, deployment).await?;
        report(format!(
            "created network {}",
            names::network_name(&deployment.name)
        ));
    }

    tracing::debug!("apply: network ready after {:?}", started.elapsed());
    let pending = target
        .converge(&Step {
            engine,
            state,
            deployment,
            plan: &plan,
            specs: &desired.specs,
            supervision: &desired.target,
            revision,
            report: &report,
        })
        .await?;

    tracing::debug!("apply: instances done after {:?}", started.elapsed());
    // A killed predecessor's snapshot may have left a carrier, even one
    // created after this apply planned.
    engine.remove_leftover_carriers(&deployment.name).await?;
    if changed {
        write_revision(
            state,
            &Revision {
                revision,
                applied_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                integration: target.integration().as_str().to_string(),
                deployment: deployment.clone(),
                image_ids,
                cause: run.cause.map(String::from),
                image_digests: plan.image_digests.clone(),
            },
        )?;
    }
    Ok(ApplyReport {
        plan,
        revision,
        pending_systemctl: pending,
    })
}

/// Write the applied revision: `current.json` and `revisions/<n>.json`
/// (atomically), keeping the last [`KEEP_REVISIONS`].
pub fn write_revision(state: &StateDir, rev: &Revision) -> Result<()> {
    let json = serde_json::to_vec_pretty(rev)
        .map_err(|e| Error::Runtime(format!("cannot serialise revision: {e}")))?;
    let name = &rev.deployment.name;
    crate::state::write_private(&state.revision_file(name, rev.revision), &json)?;
    crate::state::write_private(&state.current_revision(name), &json)?;
    if let Ok(entries) = std::fs::read_dir(state.revisions_dir(name)) {
        for entry in entries.flatten() {
            if let Some(n) = StateDir::revision_number(&entry.path())
                && n + KEEP_REVISIONS <= rev.revision
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_links() {
        let dep: Deployment = serde_json::from_value(serde_json::json!({
            "name": "ex",
            "services": {
                "a": {"name": "a", "image": "i", "count": 1},
                "b": {"name": "b", "image": "i", "count": 1, "links": [{"target": "a", "alias": "a"}]},
                "c": {"name": "c", "image": "i", "count": 1, "links": [{"target": "b", "alias": "b"}, {"target": "a", "alias": "a"}]},
                "d": {"name": "d", "image": "i", "count": 1}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let l = dep.link_levels();
        assert_eq!((l["a"], l["b"], l["c"], l["d"]), (0, 1, 2, 0));
    }

    #[test]
    fn revisions_are_written_and_pruned_to_the_last_ten() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::new(dir.path());
        let dep: Deployment =
            serde_json::from_value(serde_json::json!({"name": "ex", "services": {}}))
                .unwrap_or_else(|e| panic!("{e}"));
        for n in 1..=13 {
            let rev = Revision {
                revision: n,
                applied_at: "2026-01-01T00:00:00Z".into(),
                integration: "docker".into(),
                deployment: dep.clone(),
                image_ids: BTreeMap::new(),
                cause: None,
                image_digests: Default::default(),
            };
            write_revision(&state, &rev).unwrap_or_else(|e| panic!("{e}"));
        }
        let current = state.read_current("ex").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(current.map(|c| c.revision), Some(13));
        let mut kept: Vec<u64> = std::fs::read_dir(state.revisions_dir("ex"))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .collect();
        kept.sort();
        assert_eq!(kept, (4..=13).collect::<Vec<u64>>());
    }
}
