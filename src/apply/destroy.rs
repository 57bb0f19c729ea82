//! `berth destroy`: remove a deployment from this host. Units are stopped,
//! disabled and removed, containers removed, the network removed, and the
//! state forgotten. Volumes are kept unless asked for, and then exactly the
//! volumes labelled with this deployment are removed.

use futures_util::StreamExt;

use super::{PARALLELISM, Reporter, lock};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::InstanceSpec;
use crate::names;
use crate::state::StateDir;
use crate::target::Target;
use crate::target::systemd::ctl::{self as systemd_ctl, Systemctl};

/// Options of a destroy.
#[derive(Debug, Clone)]
pub struct DestroyOptions {
    /// Also remove the deployment's volumes (and their data).
    pub volumes: bool,
    /// Where units were written.
    pub unit_dir: std::path::PathBuf,
    /// Run `systemctl` (only where systemd runs).
    pub systemctl: bool,
    /// Give up waiting for a running apply after this long.
    pub lock_timeout: Option<std::time::Duration>,
    /// The `berth` binary the SSH gateway unit runs, should it be rewritten.
    pub berth_path: std::path::PathBuf,
}

/// What a destroy removed.
#[derive(Debug, Clone, Default)]
pub struct DestroyReport {
    /// Containers removed.
    pub containers: Vec<String>,
    /// Unit files removed.
    pub units: Vec<String>,
    /// Volumes removed (only with `volumes`).
    pub volumes: Vec<String>,
    /// Volumes kept.
    pub kept_volumes: Vec<String>,
    /// Snapshot archives deleted (only with `volumes`).
    pub snapshots: Vec<std::path::PathBuf>,
    /// Snapshot archives kept (without `volumes`).
    pub kept_snapshots: Vec<std::path::PathBuf>,
    /// Files of the state directory removed: instance specs, markers,
    /// crash records, and the deployment's directory (revisions, lock).
    pub state_files: Vec<std::path::PathBuf>,
}

/// Remove deployment `name` from this host.
pub async fn destroy(
    engine: &Engine,
    state: &StateDir,
    name: &str,
    opts: &DestroyOptions,
    report: Reporter,
) -> Result<DestroyReport> {
    names::check_name(name).map_err(|p| Error::Usage(format!("deployment name {name:?} {p}")))?;
    let r = report.clone();
    let who = name.to_string();
    let _lock = lock::lock_deployment(state, name, opts.lock_timeout, move || {
        r(format!(
            "waiting for another berth apply of {who} to finish..."
        ))
    })
    .await?;
    let mut out = DestroyReport::default();
    let specs = InstanceSpec::read_all(state, name)?;
    let containers = engine.list_containers(name, &[]).await?;

    // Units first, so systemd does not restart what is being removed.
    let mut units = Vec::new();
    let mut unit_containers = Vec::new();
    let mut candidates: Vec<String> = specs.iter().map(|s| s.container.clone()).collect();
    candidates.extend(containers.iter().map(|c| c.name.clone()));
    candidates.sort();
    candidates.dedup();
    for c in &candidates {
        if systemd_ctl::unit_path(&opts.unit_dir, c).exists() {
            units.push(names::unit_name(c));
            unit_containers.push(c.clone());
        }
    }
    let ctl = Systemctl::new(opts.systemctl && systemd_ctl::systemd_running());
    if !units.is_empty() {
        ctl.stop(&units).await?;
        ctl.disable(&units).await?;
        for c in &unit_containers {
            systemd_ctl::remove_unit(&opts.unit_dir, c)?;
        }
        ctl.daemon_reload().await?;
        for u in &units {
            report(format!("removed unit {u}"));
        }
        out.units = units;
    }
    out.units
        .extend(crate::target::systemd::timer::remove(&opts.unit_dir, name, &ctl, &report).await?);

    let results: Vec<Result<String>> = futures_util::stream::iter(&containers)
        .map(|c| {
            let timeout = specs
                .iter()
                .find(|s| s.container == c.name)
                .map(|s| s.stop_timeout)
                .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT);
            let report = report.clone();
            async move {
                engine.stop_and_remove(&c.name, timeout).await?;
                report(format!("removed container {}", c.name));
                Ok(c.name.clone())
            }
        })
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    for r in results {
        out.containers.push(r?);
    }
    out.containers.sort();
    engine.remove_network(name).await?;

    for c in &candidates {
        out.state_files.extend(state.forget_instance(c)?);
    }

    let volumes = engine.list_volumes(name).await?;
    if opts.volumes {
        for v in volumes {
            engine.remove_volume(&v.name).await?;
            report(format!("removed volume {}", v.name));
            out.volumes.push(v.name);
        }
    } else {
        out.kept_volumes = volumes.into_iter().map(|v| v.name).collect();
    }
    // Snapshots are copies of the volumes' data: they go with the volumes.
    let snapshots = crate::data::snapshot::of_deployment(state, name, &candidates)?;
    if opts.volumes {
        out.snapshots = crate::data::snapshot::remove(state, &snapshots)?;
        for p in &out.snapshots {
            report(format!("removed snapshot {}", p.display()));
        }
    } else {
        out.kept_snapshots = snapshots.into_iter().map(|s| s.path).collect();
    }

    let dir = state.deployment_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => out.state_files.push(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    // The host's SSH gateway unit goes with the last deployment granting
    // keys; a host without one (not systemd) gets none.
    if crate::target::ssh_gateway::unit_path(&opts.unit_dir).exists() {
        let host = crate::target::HostOptions {
            unit_dir: opts.unit_dir.clone(),
            berth_path: opts.berth_path.clone(),
            systemctl: opts.systemctl,
            nodes: None,
        };
        crate::target::systemd::Systemd::new(host)
            .reconcile_gateway(state, None, None, &report)
            .await?;
    }
    Ok(out)
}
