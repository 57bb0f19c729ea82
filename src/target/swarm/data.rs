//! Where a swarm service's data is, and stopping the service around a copy
//! of it.
//!
//! A service with named volumes runs only on the node carrying its pin
//! label ([`crate::instance::pin_label`]); its volumes are that node's own,
//! named as on a host (`<deployment>-<service>-<volume>`), and reached
//! through the node's engine ([`crate::engine::nodes`]). A consistent copy
//! scales the service to 0 (every task stopped, on whichever node) and back
//! to the replicas it had.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::engine::nodes::NodeEngines;
use crate::engine::services::NodeInfo;
use crate::error::{Error, Result};
use crate::instance::swarm::{pin_label, swarm_service_name};
use crate::instance::{MountSource, SwarmSpec};
use crate::names;

/// One named volume of a swarm service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmVolume {
    pub name: String,
    /// Where the service mounts it.
    pub path: String,
    /// Persists an image-declared `VOLUME`.
    pub from_image: bool,
}

/// A swarm service with volumes, as the live service and its node say.
#[derive(Debug, Clone)]
pub struct ServiceData {
    pub deployment: String,
    /// The service's name in the file.
    pub service: String,
    /// The Swarm service (`<deployment>-<service>`).
    pub swarm_name: String,
    /// The spec berth gave the live service.
    pub spec: SwarmSpec,
    /// The node carrying the pin label, if one does (none before the first
    /// apply, or after the label was taken off).
    pub node: Option<NodeInfo>,
    pub volumes: Vec<SwarmVolume>,
}

/// The named volumes of `spec`.
pub fn volumes_of(spec: &SwarmSpec) -> Vec<SwarmVolume> {
    spec.mounts
        .iter()
        .filter_map(|m| match &m.source {
            MountSource::Volume { name, from_image } => Some(SwarmVolume {
                name: name.clone(),
                path: m.target.clone(),
                from_image: *from_image,
            }),
            MountSource::Bind { .. } => None,
        })
        .collect()
}

/// `service` of `deployment` on the swarm: its live spec, the node holding
/// its volumes and those volumes. `None` when the swarm runs no such berth
/// service.
pub async fn service_data(
    nodes: &NodeEngines,
    deployment: &str,
    service: &str,
) -> Result<Option<ServiceData>> {
    let swarm_name = swarm_service_name(deployment, service);
    let Some(live) = nodes.manager().service(&swarm_name).await? else {
        return Ok(None);
    };
    if live.labels.get(names::LABEL_DEPLOYMENT).map(String::as_str) != Some(deployment) {
        return Ok(None);
    }
    let Some(text) = live.labels.get(names::LABEL_SWARM_SPEC) else {
        return Ok(None);
    };
    let spec: SwarmSpec = serde_json::from_str(text).map_err(|e| {
        Error::Runtime(format!(
            "service {swarm_name}: its berth spec label does not read ({e}); apply the deployment again"
        ))
    })?;
    let label = pin_label(deployment, service);
    let node = nodes
        .nodes()
        .iter()
        .find(|n| n.labels.contains_key(&label))
        .cloned();
    Ok(Some(ServiceData {
        deployment: deployment.to_string(),
        service: service.to_string(),
        swarm_name,
        volumes: volumes_of(&spec),
        spec,
        node,
    }))
}

/// How long stopping or starting a service for a copy may take beyond its
/// stop timeout.
const SETTLE: Duration = Duration::from_secs(60);

/// Scale `swarm_name` to 0 and wait until none of its tasks runs (each got
/// `stop_timeout` seconds to stop). Returns the replicas to give back to
/// [`release`]. Tasks that do not stop in time fail it, the service scaled
/// back.
pub async fn hold(manager: &Engine, swarm_name: &str, stop_timeout: u64) -> Result<u64> {
    let before = manager.scale_service(swarm_name, 0).await?;
    let deadline = Instant::now() + Duration::from_secs(stop_timeout) + SETTLE;
    loop {
        let tasks = manager.service_tasks(swarm_name).await?;
        let live = tasks.iter().any(|t| {
            matches!(
                t.state.as_str(),
                "running" | "starting" | "preparing" | "assigned" | "accepted" | "ready"
            )
        });
        if !live {
            return Ok(before);
        }
        if Instant::now() > deadline {
            // Nothing is copied from a service still running: give it back
            // its replicas rather than leave it down.
            let back = match manager.scale_service(swarm_name, before).await {
                Ok(_) => format!("it was scaled back to {before}"),
                Err(e) => format!(
                    "scaling it back failed too ({e}): it stays at 0 replicas (`berth apply` or `docker service scale {swarm_name}={before}` runs it again)"
                ),
            };
            return Err(Error::Runtime(format!(
                "service {swarm_name} was scaled to 0 but its tasks did not stop within {}s; {back}",
                (Duration::from_secs(stop_timeout) + SETTLE).as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scale `swarm_name` back to `replicas` and wait until that many of its
/// tasks run.
pub async fn release(manager: &Engine, swarm_name: &str, replicas: u64) -> Result<()> {
    manager.scale_service(swarm_name, replicas).await?;
    if replicas == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let tasks = manager.service_tasks(swarm_name).await?;
        let running = tasks
            .iter()
            .filter(|t| t.desired == "running" && t.state == "running")
            .count() as u64;
        if running >= replicas {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Runtime(format!(
                "service {swarm_name} was scaled back to {replicas} but {running} of its tasks run after {}s; see `berth ps --target swarm`",
                SETTLE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
