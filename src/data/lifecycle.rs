//! Revisions over time: `berth history`, `berth rollback`, and bringing a
//! deployment up from a backup taken with `--with-deployment` (`restore --apply`).
//!
//! Backup, restore and rollback hold the deployment's apply lock while they
//! touch instances, so they never race an apply ([`lock`]).

use std::path::Path;

use indicatif::ProgressBar;

use super::restore::{self, RestoreOptions, RestoredVolume};
use super::snapshot;
use crate::apply::Reporter;
use crate::apply::converge::{self, ConvergeOptions, Outcome};
use crate::apply::lock::{DeploymentLock, lock_deployment};
use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::names;
use crate::state::{Revision, StateDir};

/// Take the apply lock of `deployment`, telling `report` once if another
/// apply (or backup, restore, rollback) holds it; with `timeout`, give up
/// after that long.
///
/// A running `berth up` of the deployment holds that lock for as long as it
/// supervises; it changes instances only when told (SIGHUP, or the markers
/// that backup and restore use to stop and start them through it), so then
/// no lock is taken (`None`) instead of waiting for `up` to end.
pub async fn lock(
    state: &StateDir,
    deployment: &str,
    timeout: Option<std::time::Duration>,
    report: &Reporter,
) -> Result<Option<DeploymentLock>> {
    if crate::target::foreground::running_up(state, deployment).is_some() {
        return Ok(None);
    }
    let r = report.clone();
    let name = deployment.to_string();
    lock_deployment(state, deployment, timeout, move || {
        r(format!(
            "waiting for another berth apply of {name} to finish..."
        ))
    })
    .await
    .map(Some)
}

/// Every applied revision still kept under `revisions/`, oldest first.
/// Unreadable files are skipped with a warning.
pub fn history(state: &StateDir, deployment: &str) -> Result<Vec<Revision>> {
    let mut out = Vec::new();
    for entry in crate::state::dir_entries(&state.revisions_dir(deployment))? {
        let path = entry.path();
        if StateDir::revision_number(&path).is_none() {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Revision>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!("{}: skipped ({e})", path.display()),
        }
    }
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

/// What a rollback did.
#[derive(Debug)]
pub struct RollbackReport {
    /// The revision returned to.
    pub from_revision: u64,
    /// The apply that did it (a new revision), and the wait for health
    /// after the data was put back.
    pub outcome: Outcome,
    /// Services that run their recorded image ID (pinned).
    pub pinned: Vec<String>,
    /// Services whose recorded image ID is gone: they run the image
    /// reference as it resolves now.
    pub unpinned: Vec<String>,
    /// Volumes put back from the snapshots (`--with-data`).
    pub restored: Vec<RestoredVolume>,
    /// Instances that had no snapshot of that revision (`--with-data`).
    pub without_snapshot: Vec<String>,
}

/// The deployment of revision `rev`, each service pinned to the registry
/// digest it ran then where one was recorded (a swarm: any node can pull
/// it), else to the image ID it ran when that image is still on this host.
pub async fn pinned_deployment(
    engine: &Engine,
    rev: &Revision,
) -> Result<(Deployment, Vec<String>, Vec<String>)> {
    let mut dep = rev.deployment.clone();
    let (mut pinned, mut unpinned) = (Vec::new(), Vec::new());
    for (name, svc) in dep.services.iter_mut() {
        if let Some(digest) = rev.image_digests.get(name) {
            if !svc.image.contains('@') {
                svc.image = format!("{}@{digest}", svc.image);
            }
            pinned.push(name.clone());
            continue;
        }
        match rev.image_ids.get(name) {
            Some(id) if engine.has_image(id).await? => {
                svc.image = id.clone();
                pinned.push(name.clone());
            }
            _ => unpinned.push(name.clone()),
        }
    }
    Ok((dep, pinned, unpinned))
}

/// `berth rollback`: apply revision `to` (default: the one before the
/// current) again as a new revision; with `with_data`, then put back each
/// instance's newest snapshot taken while it ran `to` (instances stopped
/// meanwhile, the replaced content saved as a `pre-restore` snapshot).
pub async fn rollback(
    engine: &Engine,
    state: &StateDir,
    deployment: &str,
    to: Option<u64>,
    with_data: bool,
    opts: &ConvergeOptions,
    report: Reporter,
) -> Result<RollbackReport> {
    if let Some(pid) = crate::target::foreground::running_up(state, deployment) {
        return Err(Error::Usage(format!(
            "`berth up` (pid {pid}) supervises {deployment} and holds its apply lock; stop it first (rollback applies), or change its file and send SIGHUP"
        )));
    }
    rollback_with(
        engine,
        state,
        deployment,
        RollbackTo {
            revision: to,
            with_data,
            pin: true,
            cause: opts.apply.cause.clone(),
        },
        opts,
        opts.wait,
        report,
    )
    .await
}

/// What [`rollback_with`] returns to.
#[derive(Debug, Clone)]
pub struct RollbackTo {
    /// The revision (`None`: the one before the current).
    pub revision: Option<u64>,
    /// Put back each instance's snapshot of that revision.
    pub with_data: bool,
    /// Run each service's recorded image ID ([`pinned_deployment`]); false
    /// when the caller has made the references name them again (`berth
    /// update` tags the old image back first, so that the revision written
    /// names the tag, as the file does, and the next apply changes nothing).
    pub pin: bool,
    /// Recorded in the revision the rollback writes (`None`: "rollback to
    /// revision N").
    pub cause: Option<String>,
}

/// [`rollback`] through `conv` (also inside `berth up`, whose supervisor
/// carries it out), waiting up to `wait` for health at the end.
pub async fn rollback_with(
    engine: &Engine,
    state: &StateDir,
    deployment: &str,
    to: RollbackTo,
    conv: &dyn converge::Converger,
    wait: Option<std::time::Duration>,
    report: Reporter,
) -> Result<RollbackReport> {
    let RollbackTo {
        revision: to,
        with_data,
        pin,
        cause,
    } = to;
    let Some(current) = state.read_current(deployment)? else {
        return Err(Error::Usage(format!(
            "deployment {deployment} was never applied with state directory {}; nothing to roll back",
            state.root().display()
        )));
    };
    let revisions = history(state, deployment)?;
    let target = match to {
        Some(n) => revisions.iter().find(|r| r.revision == n),
        None => revisions
            .iter()
            .rev()
            .find(|r| r.revision < current.revision),
    };
    let Some(target) = target.cloned() else {
        let kept: Vec<String> = revisions.iter().map(|r| r.revision.to_string()).collect();
        return Err(Error::Usage(format!(
            "{}: no revision {} of {deployment} is kept (kept: {}); see `berth history`",
            state.revisions_dir(deployment).display(),
            to.map(|n| n.to_string())
                .unwrap_or_else(|| format!("before {}", current.revision)),
            if kept.is_empty() {
                "none".into()
            } else {
                kept.join(", ")
            }
        )));
    };
    // Refused before anything is copied or stopped, as the apply would refuse it.
    conv.check(&target.deployment)?;
    let cause = cause.unwrap_or_else(|| {
        format!(
            "rollback to revision {}{}",
            target.revision,
            if with_data { " with data" } else { "" }
        )
    });
    // Snapshots to restore are found before the apply, which may prune.
    let mut snapshots = Vec::new();
    let mut without_snapshot = Vec::new();
    if with_data {
        for inst in target.deployment.instances() {
            let newest = snapshot::list_instance(state, &inst.container)?
                .into_iter()
                .rev()
                .find(|s| s.revision == Some(target.revision));
            match newest {
                Some(s) => snapshots.push(s),
                None => without_snapshot.push(inst.container.clone()),
            }
        }
    }
    // Keep the archives safe from the apply's pruning: restore from copies.
    let tmp = state.scratch_dir()?;
    let mut copies = Vec::new();
    for s in &snapshots {
        let name = s.path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let copy = tmp
            .path()
            .join(format!("{}-{}", s.container, name.to_string_lossy()));
        std::fs::copy(&s.path, &copy).map_err(|e| Error::io(&s.path, e))?;
        copies.push(copy);
    }

    let (dep, pinned, unpinned) = if pin {
        pinned_deployment(engine, &target).await?
    } else {
        let names = target.deployment.services.keys().cloned().collect();
        (target.deployment.clone(), Vec::new(), names)
    };
    let waited = |dep: &Deployment| {
        let dep = dep.clone();
        async move {
            match wait {
                Some(t) => {
                    Some(crate::apply::health::wait_deployment(engine, state, &dep, t).await)
                }
                None => None,
            }
        }
    };
    if copies.is_empty() {
        let mut outcome = conv
            .converge(engine, state, &dep, Some(&cause), report.clone())
            .await?;
        outcome.waited = waited(&dep).await;
        return Ok(RollbackReport {
            from_revision: target.revision,
            outcome,
            pinned,
            unpinned,
            restored: Vec::new(),
            without_snapshot,
        });
    }

    // With data: the instances to restore are stopped the way `berth stop`
    // does it (the marker keeps them stopped through the apply, which then
    // recreates them on the old image without starting them, after its own
    // snapshot of the data being replaced); the snapshots go back in; then
    // they start. The old image never sees the newer data.
    let ops_target = crate::ops::select::Selected {
        deployment: current.deployment.clone(),
        integration: crate::instance::Integration::parse(&current.integration),
    };
    let mut held = Vec::new();
    {
        let _lock = lock(state, deployment, conv.lock_timeout(), &report).await?;
        for s in &snapshots {
            let Some(inst) = current
                .deployment
                .instances()
                .into_iter()
                .find(|i| i.container == s.container)
            else {
                continue;
            };
            let runs = engine
                .observe_container(&inst.container)
                .await?
                .is_some_and(|c| c.is_running());
            if runs && !crate::state::markers::is_stopped(state, &inst.container) {
                crate::ops::control::run(
                    engine,
                    state,
                    &ops_target,
                    std::slice::from_ref(&inst),
                    crate::target::Control::Stop,
                )
                .await?;
                held.push(inst);
            }
        }
    }
    let kept_stopped = |e: Error| {
        if held.is_empty() {
            return e;
        }
        let names: Vec<&str> = held.iter().map(|i| i.service.as_str()).collect();
        Error::Runtime(format!(
            "{e}; {} stopped for the rollback and left stopped: start with `berth start {}` once resolved",
            names.join(", "),
            names.join(" ")
        ))
    };
    // On a swarm the apply below would start the old image at once, on
    // the newer data: each service is held at 0 replicas first and its
    // snapshot written back, and the apply then runs the old image on it
    // (the restore's own hold and release keep it at 0). Should the apply
    // fail, the services stay at 0 on the old data, and say so.
    let on_swarm = conv.integration() == crate::instance::Integration::Swarm;
    let held_note = |e: Error| {
        Error::Runtime(format!(
            "{e}; the services being rolled back stay at 0 replicas: `berth apply --target swarm` runs them again"
        ))
    };
    let mut restored = Vec::new();
    if on_swarm {
        let _lock = lock(state, deployment, conv.lock_timeout(), &report).await?;
        let site = conv.data_site(engine, state).await?;
        let instances = site.discover(state, deployment).await?;
        for s in &snapshots {
            if let Some(inst) = instances.iter().find(|i| i.container == s.container) {
                site.stop(state, inst).await?;
                report(format!(
                    "holding {} at 0 replicas while its data is put back",
                    inst.service
                ));
            }
        }
        restored = restore_copies(&site, state, deployment, &copies)
            .await
            .map_err(held_note)?;
    }
    // The wait comes once the data is back and the instances run again.
    let mut outcome = conv
        .converge(engine, state, &dep, Some(&cause), report.clone())
        .await
        .map_err(|e| {
            if on_swarm {
                held_note(e)
            } else {
                kept_stopped(e)
            }
        })?;
    let restored = if on_swarm {
        restored
    } else {
        let _lock = lock(state, deployment, conv.lock_timeout(), &report)
            .await
            .map_err(kept_stopped)?;
        let site = conv.data_site(engine, state).await.map_err(kept_stopped)?;
        restore_copies(&site, state, deployment, &copies)
            .await
            .map_err(kept_stopped)?
    };
    if !held.is_empty() {
        let ops_target = crate::ops::select::Selected {
            deployment: dep.clone(),
            integration: Some(conv.integration()),
        };
        crate::ops::control::run(
            engine,
            state,
            &ops_target,
            &held,
            crate::target::Control::Start,
        )
        .await?;
    }
    outcome.waited = waited(&dep).await;
    Ok(RollbackReport {
        from_revision: target.revision,
        outcome,
        pinned,
        unpinned,
        restored,
        without_snapshot,
    })
}

/// Put `copies` (berth's own snapshots of `deployment`'s instances, already
/// copied out of the state directory) back on `site`; the caller holds the
/// deployment's lock.
async fn restore_copies(
    site: &super::instances::Site,
    state: &StateDir,
    deployment: &str,
    copies: &[std::path::PathBuf],
) -> Result<Vec<RestoredVolume>> {
    let mut restored = Vec::new();
    for copy in copies {
        let manifest = restore::verify(copy, true).await?;
        let r = restore::restore_verified(
            site,
            state,
            copy,
            manifest,
            &RestoreOptions {
                services: Vec::new(),
                force: true,
                deployment: Some(deployment.to_string()),
                // berth's own snapshots of these instances, from the
                // state directory: what they record comes back.
                allow_special_files: true,
            },
            &ProgressBar::hidden(),
        )
        .await?;
        restored.extend(r);
    }
    Ok(restored)
}

/// A `--with-deployment` backup whose archive, manifest and stored deployment
/// passed every check (see [`read_stored_backup`]).
#[derive(Debug)]
pub struct StoredBackup {
    file: std::path::PathBuf,
    manifest: super::format::Manifest,
    deployment: Deployment,
    allow_special_files: bool,
    /// The stored deployment's dangerous settings, located like a file's.
    pub warnings: crate::deployment::SpecWarnings,
}

impl StoredBackup {
    /// The stored deployment carries secrets.
    pub fn holds_secrets(&self) -> bool {
        self.manifest.holds_secrets || !self.deployment.secrets.is_empty()
    }
}

/// Verify a `--with-deployment` backup for [`restore_and_apply`]: checksums and
/// entries, the stored deployment (renamed to `rename`) as a deployment
/// file would be checked, and the manifest's instances against it. Touches
/// nothing.
pub async fn read_stored_backup(
    file: &Path,
    rename: Option<&str>,
    allow_special_files: bool,
) -> Result<StoredBackup> {
    let manifest = restore::verify(file, allow_special_files).await?;
    let Some(rev) = manifest.spec.clone() else {
        return Err(Error::Usage(format!(
            "{}: the backup holds no deployment (take it with `berth backup --all --with-deployment`); restore without --apply puts back only the volumes",
            file.display()
        )));
    };
    let mut dep = rev.deployment;
    if dep.name != manifest.deployment {
        return Err(Error::Usage(format!(
            "{}: the stored deployment is named {} but the backup is of {}; the archive was altered; nothing was restored",
            file.display(),
            super::entries::show(dep.name.as_bytes()),
            manifest.deployment
        )));
    }
    if let Some(n) = rename {
        names::check_name(n).map_err(|p| Error::Usage(format!("--name {n:?} {p}")))?;
        dep.name = n.to_string();
    }
    let origin = std::path::PathBuf::from(format!("{} (stored deployment)", file.display()));
    let crate::deployment::Loaded {
        deployment: dep,
        warnings,
    } = crate::deployment::stored::check_stored(&dep, &origin)?;
    for inst in &manifest.instances {
        let fits = dep
            .services
            .get(&inst.service)
            .is_some_and(|s| inst.instance <= s.count);
        if !fits {
            return Err(Error::Usage(format!(
                "{}: the backup holds instance {} of service {}, which the stored deployment does not have; the archive was altered; nothing was restored",
                file.display(),
                inst.instance,
                inst.service
            )));
        }
    }
    Ok(StoredBackup {
        file: file.to_path_buf(),
        manifest,
        deployment: dep,
        allow_special_files,
        warnings,
    })
}

/// `berth restore FILE --apply [--name NEW]`: bring the deployment stored in
/// a `--with-deployment` backup up on this host: its volumes are restored first
/// (refusing non-empty ones unless `force`), then it is applied, so every
/// instance starts on its data.
///
/// The stored deployment comes from another host: before anything is
/// touched it passes the checks a deployment file gets
/// ([`crate::deployment::stored::check_stored`], after the rename), and the
/// manifest's instances must be instances of it.
///
/// [`read_stored_backup`] does the checks and touches nothing; its result
/// carries the stored deployment's warnings for the caller to show first.
pub async fn restore_and_apply(
    engine: &Engine,
    state: &StateDir,
    stored: StoredBackup,
    force: bool,
    opts: &ConvergeOptions,
    report: Reporter,
    progress: &ProgressBar,
) -> Result<(Vec<RestoredVolume>, Outcome)> {
    let StoredBackup {
        file,
        manifest: verified,
        deployment: dep,
        allow_special_files,
        ..
    } = stored;
    let file = file.as_path();
    if opts.apply.integration == crate::instance::Integration::Swarm {
        // Its volumes would have no node yet: the services pin one when
        // first applied.
        return Err(Error::Usage(format!(
            "restore --apply brings a deployment up on this host; on a swarm, apply {} with --target swarm first, then `berth restore {} --target swarm`; nothing was changed",
            dep.name,
            file.display()
        )));
    }
    if state.read_current(&dep.name)?.is_some() && !force {
        return Err(Error::Usage(format!(
            "deployment {} is already applied in {}; restore --apply sets up a new deployment (choose another with --name NEW); nothing was changed",
            dep.name,
            state.root().display()
        )));
    }
    // The images first (pulled if missing): the volumes are reached through
    // them, and a missing image must fail before any volume is written.
    let refs: Vec<String> = dep.services.values().map(|s| s.image.clone()).collect();
    converge::check(&dep, opts)?;
    engine.ensure_images(&refs, opts.apply.progress).await?;
    let restored = {
        let _lock = lock(state, &dep.name, opts.apply.lock_timeout, &report).await?;
        restore::restore_verified(
            &super::instances::Site::Host(engine.clone()),
            state,
            file,
            verified,
            &RestoreOptions {
                services: Vec::new(),
                force,
                deployment: Some(dep.name.clone()),
                allow_special_files,
            },
            progress,
        )
        .await?
    };
    let mut opts = opts.clone();
    opts.apply.cause.get_or_insert_with(|| {
        format!(
            "restore from {}",
            file.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let applied = converge::converge(engine, state, &dep, &opts, report).await?;
    Ok((restored, applied))
}
