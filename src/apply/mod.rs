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
pub mod health;
pub mod lock;
pub mod observe;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

pub use observe::compute_plan;

use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::instance::{ImageInfo, InstanceSpec, Integration};
use crate::integration::systemd::{UnitOptions, host_systemd_version, render_unit};
use crate::integration::systemd_ctl::{self, Systemctl};
use crate::names;
use crate::plan::{Action, InstancePlan, Plan, Target, VolumePlan};
use crate::spec::Deployment;
use crate::state::{Revision, StateDir};

/// How many engine operations run at once.
pub const PARALLELISM: usize = 32;

/// How many applied revisions are kept under `revisions/`.
pub const KEEP_REVISIONS: u64 = 10;

/// Receives progress lines (`created mail`), for the command line to print.
pub type Reporter = Arc<dyn Fn(String) + Send + Sync>;

/// A reporter that drops everything.
pub fn quiet() -> Reporter {
    Arc::new(|_| {})
}

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
    pub target: Target,
}

/// Resolve the desired state. With `pull`, missing images are pulled first
/// (failing before anything is touched); without, they are listed as missing.
#[allow(clippy::too_many_arguments)]
pub async fn desired(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    integration: Integration,
    unit_dir: &std::path::Path,
    berth_path: &std::path::Path,
    pull: Option<PullProgress>,
) -> Result<Desired> {
    let refs: Vec<String> = deployment
        .services
        .values()
        .map(|s| s.image.clone())
        .collect();
    let (images, missing_images) = match pull {
        Some(progress) => (engine.ensure_images(&refs, progress).await?, Vec::new()),
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
    let specs = crate::instance::resolve_keyed(deployment, &images, integration, &key);
    let target = match integration {
        Integration::Systemd => {
            // Units use newer restart settings only where the host's systemd
            // has them, and reach the engine this apply talks to.
            let opts = UnitOptions::new(berth_path, absolute(state.root()))
                .with_systemd_version(host_systemd_version())
                .with_docker_host(std::env::var("DOCKER_HOST").ok());
            // A path systemd cannot run is an error now, not a unit that never starts.
            opts.check()?;
            let units = deployment
                .instances()
                .iter()
                .map(|i| (i.container.clone(), render_unit(deployment, i, &opts)))
                .collect();
            Target::Systemd {
                unit_dir: unit_dir.to_path_buf(),
                units,
            }
        }
        other => Target::Containers(other),
    };
    Ok(Desired {
        specs,
        images,
        missing_images,
        target,
    })
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
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
    if opts.integration == Integration::Systemd && opts.systemctl && !systemd_ctl::systemd_running()
    {
        return Err(Error::Runtime(format!(
            "--integration systemd: systemd is not running on this host (PID 1 is not systemd, /run/systemd/system is missing), so units could not be started; use --integration docker, or --no-systemctl to only write the units to {}",
            opts.unit_dir.display()
        )));
    }
    let r = report.clone();
    let name = deployment.name.clone();
    let started = std::time::Instant::now();
    let _lock = lock::lock_deployment(state, &deployment.name, opts.lock_timeout, move || {
        r(format!(
            "waiting for another berth apply of {name} to finish..."
        ))
    })
    .await?;

    let desired = desired(
        engine,
        state,
        deployment,
        opts.integration,
        &opts.unit_dir,
        &opts.berth_path,
        Some(opts.progress),
    )
    .await?;
    tracing::debug!("apply: lock and images ready after {:?}", started.elapsed());
    if opts.integration == Integration::Docker {
        for w in health::docker_integration_warnings(deployment, &desired.images) {
            report(w);
        }
    }
    let plan = compute_plan(
        engine,
        state,
        deployment,
        &desired.specs,
        &[],
        &desired.target,
        &opts.unit_dir,
    )
    .await?;

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
    // (stopped, copied; the recreate below replaces the stopped container).
    let systemd_ctl = matches!(desired.target, Target::Systemd { .. })
        .then(|| Systemctl::new(opts.systemctl && systemd_ctl::systemd_running()));
    crate::data::upgrade::snapshot_upgrades(
        engine,
        state,
        deployment,
        &plan,
        current.as_ref().map(|c| c.revision).unwrap_or(0),
        systemd_ctl.as_ref(),
        &report,
    )
    .await?;
    // The network first: every instance needs it.
    if plan.create_network {
        engine.ensure_network(&deployment.name).await?;
        report(format!(
            "created network {}",
            names::network_name(&deployment.name)
        ));
    }

    tracing::debug!("apply: network ready after {:?}", started.elapsed());
    let mut pending = Vec::new();
    match &desired.target {
        Target::Systemd { unit_dir, units } => {
            let all: Vec<&VolumePlan> = plan.volumes_to_create.iter().collect();
            create_volumes(engine, &desired.specs, &all, revision, &report).await?;
            pending = apply_systemd(engine, state, &plan, unit_dir, units, opts, &report).await?;
        }
        Target::Containers(_) => {
            apply_containers(
                engine,
                state,
                deployment,
                &plan,
                &desired.specs,
                revision,
                opts,
                &report,
            )
            .await?;
        }
    }

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
                integration: opts.integration.as_str().to_string(),
                deployment: deployment.clone(),
                image_ids,
            },
        )?;
    }
    Ok(ApplyReport {
        plan,
        revision,
        pending_systemctl: pending,
    })
}

/// Create planned volumes (in parallel), labelled like the instance they
/// belong to plus `berth.volume` and `berth.volume-path`.
async fn create_volumes(
    engine: &Engine,
    specs: &[InstanceSpec],
    volumes: &[&VolumePlan],
    revision: u64,
    report: &Reporter,
) -> Result<()> {
    let results: Vec<Result<()>> = futures_util::stream::iter(volumes)
        .map(|v| {
            let wanted = specs
                .iter()
                .find(|s| s.container == v.container)
                .and_then(|s| {
                    s.volume_owners()
                        .into_iter()
                        .find(|(name, _, _)| *name == v.name)
                        .map(|(_, _, owner)| (s.volume_labels(&owner, &v.path, revision), owner))
                });
            async move {
                let Some((labels, owner)) = wanted else {
                    return Err(Error::Runtime(format!(
                        "volume {}: no instance of this deployment mounts it",
                        v.name
                    )));
                };
                let have = engine.ensure_volume(&v.name, &labels).await?;
                // Made by someone else since the plan was computed.
                if let names::Claim::Other(theirs) = owner.claim(&have) {
                    return Err(Error::Conflict(names::conflict_message(
                        "volume", &v.name, &theirs, &owner,
                    )));
                }
                report(format!("created volume {}", v.name));
                Ok(())
            }
        })
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// Start-order level of each service: 0 without links, else one more than
/// the highest level among its link targets.
pub fn service_levels(deployment: &Deployment) -> BTreeMap<String, usize> {
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    for svc in deployment.start_order() {
        let lvl = svc
            .links
            .iter()
            .filter_map(|l| levels.get(&l.target))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        levels.insert(svc.name.clone(), lvl);
    }
    levels
}

async fn remove_instances(
    engine: &Engine,
    state: &StateDir,
    plan: &Plan,
    report: &Reporter,
) -> Result<()> {
    let results: Vec<Result<()>> = futures_util::stream::iter(plan.with_action(Action::Remove))
        .map(|item| async move {
            let timeout = item
                .previous
                .as_ref()
                .map(|p| p.stop_timeout)
                .unwrap_or(crate::spec::DEFAULT_STOP_TIMEOUT);
            engine.stop_and_remove(&item.container, timeout).await?;
            state.forget_instance(&item.container)?;
            report(format!("removed {}", item.container));
            Ok(())
        })
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// Switching an instance from systemd to Docker's restart policy: its unit
/// must go, or the supervisor and the engine would fight over the container.
async fn remove_stale_units(
    plan: &Plan,
    unit_dir: &std::path::Path,
    systemctl: bool,
    report: &Reporter,
) -> Result<()> {
    if plan.units_to_remove.is_empty() {
        return Ok(());
    }
    let units = plan.units_to_remove.clone();
    let ctl = Systemctl::new(systemctl && systemd_ctl::systemd_running());
    ctl.stop(&units).await?;
    ctl.disable(&units).await?;
    for u in &units {
        let path = unit_dir.join(u);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    ctl.daemon_reload().await?;
    for u in units {
        report(format!(
            "removed unit {u} (instances now kept running by Docker)"
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply_containers(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    plan: &Plan,
    specs: &[InstanceSpec],
    revision: u64,
    opts: &ApplyOptions,
    report: &Reporter,
) -> Result<()> {
    let opts_unit_dir = &opts.unit_dir;
    let systemctl = opts.systemctl;
    remove_instances(engine, state, plan, report).await?;
    remove_stale_units(plan, opts_unit_dir, systemctl, report).await?;
    let levels = service_levels(deployment);
    let max = levels.values().copied().max().unwrap_or(0);
    // A failing instance does not stop the others: services that do not
    // depend on it still converge; those linking to it (directly or not)
    // are skipped. Every failure is reported at the end.
    let mut failed_services: std::collections::BTreeSet<String> = Default::default();
    let mut errors: Vec<String> = Vec::new();
    for level in 0..=max {
        let mut wave: Vec<&InstancePlan> = Vec::new();
        for i in plan
            .instances
            .iter()
            .filter(|i| i.action != Action::Remove)
            .filter(|i| levels.get(&i.service).copied().unwrap_or(0) == level)
        {
            let blocked = deployment
                .services
                .get(&i.service)
                .map(|svc| {
                    svc.links
                        .iter()
                        .find(|l| failed_services.contains(&l.target))
                        .map(|l| l.target.clone())
                })
                .unwrap_or_default();
            match blocked {
                Some(target) => {
                    errors.push(format!(
                        "{}: skipped, its link target {target} failed",
                        i.container
                    ));
                    failed_services.insert(i.service.clone());
                }
                None => wave.push(i),
            }
        }
        let results: Vec<(String, Result<()>)> = futures_util::stream::iter(wave)
            .map(|item| async move {
                let r: Result<()> = async {
                    // Each instance creates its own volumes right before its
                    // container: no barrier between volume and container creation.
                    let own: Vec<&VolumePlan> = plan
                        .volumes_to_create
                        .iter()
                        .filter(|v| v.container == item.container)
                        .collect();
                    create_volumes(engine, specs, &own, revision, report).await?;
                    // Unchanged instances still get their spec file checked
                    // (rewritten only if it differs; repairs a lost state directory).
                    crate::integration::docker::converge_instance(engine, state, item, revision)
                        .await
                        .map_err(|e| {
                            Error::Runtime(format!(
                                "{} {}: {e}",
                                item.action.as_str(),
                                item.container
                            ))
                        })?;
                    if item.action != Action::Unchanged {
                        let what = match item.action {
                            Action::Create => "created",
                            Action::Recreate => "recreated",
                            Action::Start => "started",
                            Action::Reload => "reloaded",
                            _ => "",
                        };
                        let note = if item.stopped_by_operator {
                            " (stopped by operator: not started)"
                        } else {
                            ""
                        };
                        report(format!("{what} {}{note}", item.container));
                    }
                    Ok(())
                }
                .await;
                (item.service.clone(), r)
            })
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
        for (service, r) in results {
            if let Err(e) = r {
                errors.push(e.to_string());
                failed_services.insert(service);
            }
        }
        // The services of the next levels start only once the ones they link
        // to run and, with a health check, are healthy.
        if level < max {
            let linked: std::collections::BTreeSet<&str> = deployment
                .services
                .values()
                .flat_map(|s| s.links.iter().map(|l| l.target.as_str()))
                .collect();
            let waits: Vec<String> = plan
                .instances
                .iter()
                .filter(|i| i.action != Action::Remove && !i.stopped_by_operator)
                .filter(|i| levels.get(&i.service).copied().unwrap_or(0) == level)
                .filter(|i| linked.contains(i.service.as_str()))
                .filter(|i| !failed_services.contains(&i.service))
                .map(|i| i.container.clone())
                .collect();
            if !waits.is_empty() {
                let not_ready =
                    health::wait_ready(engine, state, &waits, health::DEFAULT_LINK_WAIT).await;
                for n in not_ready {
                    let service = plan
                        .instances
                        .iter()
                        .find(|i| i.container == n.container)
                        .map(|i| i.service.clone())
                        .unwrap_or_default();
                    errors.push(format!(
                        "{n}: not ready, so the services linking to it were not started"
                    ));
                    failed_services.insert(service);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort();
        Err(Error::Runtime(errors.join("\n")))
    }
}

async fn apply_systemd(
    engine: &Engine,
    state: &StateDir,
    plan: &Plan,
    unit_dir: &std::path::Path,
    units: &BTreeMap<String, String>,
    opts: &ApplyOptions,
    report: &Reporter,
) -> Result<Vec<String>> {
    let ctl = Systemctl::new(opts.systemctl);
    let mut pending = Vec::new();
    // Removed instances: stop and disable their units first, so systemd
    // does not restart what is being removed.
    let removed: Vec<String> = plan
        .with_action(Action::Remove)
        .map(|i| names::unit_name(&i.container))
        .collect();
    if !removed.is_empty() {
        ctl.stop(&removed).await?;
        ctl.disable(&removed).await?;
        if !ctl.enabled() {
            pending.push(format!("systemctl disable --now {}", removed.join(" ")));
        }
        for i in plan.with_action(Action::Remove) {
            systemd_ctl::remove_unit(unit_dir, &i.container)?;
        }
    }
    remove_instances(engine, state, plan, report).await?;

    let mut units_changed = !removed.is_empty();
    let mut to_restart = Vec::new();
    let mut to_start = Vec::new();
    let mut to_enable = Vec::new();
    for item in &plan.instances {
        let Some(spec) = &item.spec else { continue };
        if item.action == Action::Reload {
            engine
                .reload_changed_files(spec, item.previous.as_ref())
                .await?;
        }
        spec.write(state)?;
        if let Some(text) = units.get(&spec.container) {
            units_changed |= systemd_ctl::write_unit(unit_dir, &spec.container, text)?;
        }
        let unit = names::unit_name(&spec.container);
        // A unit the operator stopped stays disabled (not started at boot).
        if item.stopped_by_operator {
            continue;
        }
        to_enable.push(unit.clone());
        match item.action {
            Action::Create | Action::Start => to_start.push(unit),
            Action::Recreate => to_restart.push(unit),
            // Starting a running unit is a no-op; this restarts units that
            // an interrupted apply left stopped.
            Action::Unchanged | Action::Reload => to_start.push(unit),
            Action::Remove => {}
        }
        if item.action != Action::Unchanged {
            report(format!(
                "{} unit {}",
                match item.action {
                    Action::Create => "created",
                    _ => "updated",
                },
                names::unit_name(&spec.container)
            ));
        }
    }
    // Reload only when something changed: a no-op apply changes nothing.
    // (Any instance being created or recreated also reloads, which covers a
    // unit file written by an apply that was killed before its reload.)
    units_changed |= plan
        .instances
        .iter()
        .any(|i| matches!(i.action, Action::Create | Action::Recreate));
    if units_changed {
        ctl.daemon_reload().await?;
    }
    ctl.enable(&to_enable).await?;
    ctl.restart(&to_restart).await?;
    ctl.start(&to_start).await?;
    if !ctl.enabled() {
        if units_changed {
            pending.push("systemctl daemon-reload".into());
        }
        if !to_enable.is_empty() {
            pending.push(format!("systemctl enable {}", to_enable.join(" ")));
        }
        if !to_restart.is_empty() {
            pending.push(format!("systemctl restart {}", to_restart.join(" ")));
        }
        if !to_start.is_empty() {
            pending.push(format!("systemctl start {}", to_start.join(" ")));
        }
    }
    Ok(pending)
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
        let l = service_levels(&dep);
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
