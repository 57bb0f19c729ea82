//! What is on the host for a plan: the engine's containers, volumes and
//! network, and the state directory's instance specs, stops, unit files and
//! applied revision (and, under another integration than systemd, the unit
//! files left from it), gathered into a [`plan::Observed`] for the pure
//! [`Plan::diff`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::error::Result;
use crate::instance::{InstanceSpec, Integration};
use crate::names;
use crate::plan::{self, Observed, Plan, Supervision};
use crate::state::{StateDir, markers};

/// Read what [`Plan::diff`] compares `specs` of `deployment` against;
/// `unit_dir` is where systemd units are (or were) written, on a host.
pub async fn observe(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    specs: &[InstanceSpec],
    target: &Supervision,
    unit_dir: Option<&Path>,
) -> Result<Observed> {
    let name = &deployment.name;
    let containers = engine.list_all_containers().await?;
    let previous: BTreeMap<String, InstanceSpec> = InstanceSpec::read_all(state, name)?
        .into_iter()
        .map(|s| (s.container.clone(), s))
        .collect();
    let deployment_volumes: BTreeMap<String, plan::Labels> = engine
        .list_volumes(name)
        .await?
        .into_iter()
        .map(|v| (v.name, v.labels))
        .collect();
    let network = engine.network_labels(&names::network_name(name)).await?;

    // Another deployment's spec under one of our names; unreadable ones
    // are no one's.
    let mut other_specs = BTreeMap::new();
    for spec in specs {
        if !previous.contains_key(&spec.container)
            && let Ok(Some(s)) = InstanceSpec::read(state, &spec.container)
        {
            other_specs.insert(spec.container.clone(), s);
        }
    }

    // Volumes of our names that are not labelled as this deployment's:
    // asked about all at once.
    let mut seen = BTreeSet::new();
    let mut unlabelled = Vec::new();
    for spec in specs {
        for (vol, _, _) in spec.volume_owners() {
            if seen.insert(vol.to_string()) && !deployment_volumes.contains_key(vol) {
                unlabelled.push(vol.to_string());
            }
        }
    }
    let found =
        futures_util::future::join_all(unlabelled.iter().map(|v| engine.volume_labels(v))).await;
    let mut other_volumes = BTreeMap::new();
    for (vol, found) in unlabelled.into_iter().zip(found) {
        if let Some(labels) = found? {
            other_volumes.insert(vol, labels);
        }
    }

    // Every instance the plan can name: desired, or this deployment's
    // container or spec.
    let known: BTreeSet<&str> = specs
        .iter()
        .map(|s| s.container.as_str())
        .chain(
            containers
                .iter()
                .filter(|c| c.labels.get(names::LABEL_DEPLOYMENT) == Some(name))
                .map(|c| c.name.as_str()),
        )
        .chain(previous.keys().map(String::as_str))
        .collect();
    let stopped: BTreeSet<String> = known
        .iter()
        .filter(|c| markers::is_stopped(state, c))
        .map(|c| c.to_string())
        .collect();
    let units_left: BTreeSet<String> = match unit_dir {
        Some(dir) if target.integration() != Integration::Systemd => known
            .iter()
            .filter(|c| dir.join(names::unit_name(c)).exists())
            .map(|c| c.to_string())
            .collect(),
        _ => BTreeSet::new(),
    };

    let mut unit_files = BTreeMap::new();
    if let Supervision::Systemd { unit_dir, .. } = target {
        for spec in specs {
            let path = unit_dir.join(names::unit_name(&spec.container));
            if let Ok(text) = std::fs::read_to_string(&path) {
                unit_files.insert(spec.container.clone(), text);
            }
        }
    }

    let schedule_dir = match target {
        Supervision::Systemd { unit_dir, .. } => Some(unit_dir.as_path()),
        Supervision::Containers(_) => unit_dir,
    };
    let schedule_unit_files = schedule_dir
        .map(|dir| crate::target::systemd::timer::on_disk(dir, name))
        .unwrap_or_default();

    Ok(Observed {
        containers,
        previous,
        other_specs,
        deployment_volumes,
        other_volumes,
        network,
        stopped,
        unit_files,
        units_left,
        schedule_unit_files,
        current: state.read_current(name),
    })
}

/// The plan for `specs` of `deployment` on this host: [`observe`], then
/// [`Plan::diff`]. Names two instances would share are refused before the
/// engine is asked.
pub async fn compute_plan(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    specs: &[InstanceSpec],
    missing_images: &[String],
    target: &Supervision,
    unit_dir: Option<&Path>,
) -> Result<Plan> {
    plan::check_collisions(specs)?;
    let observed = observe(engine, state, deployment, specs, target, unit_dir).await?;
    Plan::diff(deployment, specs, observed, missing_images, target)
}
