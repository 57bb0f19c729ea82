//! The resolved form of one berth service on a Docker Swarm: one Swarm
//! service, `count` replicas. Made from the service's first
//! [`InstanceSpec`] (so env, link variables, mounts, health check and the
//! container settings are resolved once, as on a host); the engine maps it
//! to the Swarm API (`engine::services`), the swarm target diffs it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{InstanceSpec, MountSpec, diff::short, json_diff};
pub use crate::deployment::EndpointMode;
use crate::deployment::{
    ContainerSettings, FailureAction, Health, PortMapping, RestartPolicy, Service, UpdateConfig,
    UpdateOrder,
};
use crate::instance::AbsentTable;
use crate::names;

/// One berth service as a Swarm service. Serialised into the service's
/// `berth.swarm-spec` label: what a later plan diffs the file against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmSpec {
    /// Deployment name.
    pub deployment: String,
    /// Service name in the file.
    pub service: String,
    /// Swarm service name (`<deployment>-<service>`).
    pub name: String,
    /// Image reference as written in the file.
    pub image: String,
    /// `count`.
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The file's env plus link variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels from the file.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Published ports, in host mode (each node where a task runs).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Named volumes (created on each node a task runs on) and bind mounts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The deployment's overlay network.
    pub network: String,
    /// Further names the service is reached by there (link aliases).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub endpoint_mode: EndpointMode,
    /// How an update replaces the tasks (the file's `update_config` over
    /// berth's defaults). A spec recorded before berth wrote it reads as
    /// the fixed configuration berth used then ([`SwarmUpdate::default`]).
    #[serde(default)]
    pub update: SwarmUpdate,
    pub restart: RestartPolicy,
    #[serde(flatten)]
    pub settings: ContainerSettings,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// For a service with named volumes: the node label that pins it to the
    /// node holding them ([`pin_label`]); its tasks run only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<String>,
}

/// A service's rolling update, every setting resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmUpdate {
    /// Tasks replaced at once (0: all).
    pub parallelism: u64,
    /// Milliseconds between two batches.
    pub delay_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// Milliseconds each new task is watched for failure.
    pub monitor_ms: u64,
    /// Fraction of new tasks that may fail.
    pub max_failure_ratio: f64,
}

/// How long Swarm watches each updated task for failure by default before
/// it moves on (and, after the last, calls the update complete).
pub const UPDATE_MONITOR_MS: u64 = 3000;

impl Default for SwarmUpdate {
    /// One task at a time, stop-first, rolled back on the first failure.
    fn default() -> Self {
        SwarmUpdate {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Rollback,
            monitor_ms: UPDATE_MONITOR_MS,
            max_failure_ratio: 0.0,
        }
    }
}

impl SwarmUpdate {
    /// The file's `update_config` over berth's defaults. The default order
    /// is start-first (the service keeps answering while it updates) except
    /// for a service with volumes (two tasks must never use them at once)
    /// or one publishing a fixed host-mode port (a new task could not start
    /// beside the old one on its node, and would answer on another node's
    /// address): those stop first.
    pub fn resolve(config: Option<&UpdateConfig>, volumes: bool, host_ports: bool) -> Self {
        let base = SwarmUpdate {
            order: if volumes || host_ports {
                UpdateOrder::StopFirst
            } else {
                UpdateOrder::StartFirst
            },
            ..SwarmUpdate::default()
        };
        let Some(c) = config else {
            return base;
        };
        SwarmUpdate {
            parallelism: c.parallelism.unwrap_or(base.parallelism),
            delay_ms: c.delay_ms.unwrap_or(base.delay_ms),
            order: c.order.unwrap_or(base.order),
            failure_action: c.failure_action.unwrap_or(base.failure_action),
            monitor_ms: c.monitor_ms.unwrap_or(base.monitor_ms),
            max_failure_ratio: c.max_failure_ratio.unwrap_or(base.max_failure_ratio),
        }
    }

    /// Tasks of `replicas` that run beside the old ones at one time during
    /// a start-first update (none for stop-first).
    pub fn surge(&self, replicas: u32) -> u32 {
        match self.order {
            UpdateOrder::StopFirst => 0,
            UpdateOrder::StartFirst if self.parallelism == 0 => replicas,
            UpdateOrder::StartFirst => {
                u32::try_from(self.parallelism.min(u64::from(replicas))).unwrap_or(replicas)
            }
        }
    }
}

/// The node label that marks the node holding `service`'s volumes. Volumes
/// on a swarm are the node's own: a task started elsewhere would find them
/// empty, so the service runs only on the node carrying this label (chosen
/// at its first apply, kept after destroy so the data is found again).
pub fn pin_label(deployment: &str, service: &str) -> String {
    format!("berth.data.{deployment}.{service}")
}

/// Name of the Swarm service of `service` in `deployment`.
pub fn swarm_service_name(deployment: &str, service: &str) -> String {
    names::container_name(deployment, service, 1, 1)
}

impl SwarmSpec {
    /// The Swarm service for `svc`, whose first instance is `first`.
    pub fn from_instance(first: &InstanceSpec, svc: &Service) -> Self {
        let volumes = first
            .mounts
            .iter()
            .any(|m| matches!(m.source, crate::instance::MountSource::Volume { .. }));
        let host_ports = first.ports.iter().any(|p| p.host_port.is_some());
        let name = swarm_service_name(&first.deployment, &first.service);
        // The Swarm service's own name resolves already; per-instance
        // container names mean nothing on a swarm.
        let aliases = first
            .aliases
            .iter()
            .filter(|a| **a != first.container && **a != name)
            .cloned()
            .collect();
        SwarmSpec {
            deployment: first.deployment.clone(),
            service: first.service.clone(),
            name,
            image: first.image.clone(),
            replicas: svc.count,
            command: first.command.clone(),
            entrypoint: first.entrypoint.clone(),
            env: first.env.clone(),
            labels: first.labels.clone(),
            ports: first.ports.clone(),
            mounts: first.mounts.clone(),
            network: first.network.clone(),
            aliases,
            endpoint_mode: svc.endpoint_mode.unwrap_or_default(),
            update: SwarmUpdate::resolve(svc.update_config.as_ref(), volumes, host_ports),
            restart: first.restart,
            settings: first.settings.clone(),
            stop_timeout: first.stop_timeout,
            health: first.health.clone(),
            pinned_by: volumes.then(|| pin_label(&first.deployment, &first.service)),
        }
    }

    fn digest(value: &serde_json::Value) -> String {
        let text = serde_json::to_string(value).unwrap_or_default();
        format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
    }

    /// `sha256:<hex>` of the whole spec: the service's `berth.spec-hash`.
    pub fn hash(&self) -> String {
        Self::digest(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The hash of what each task runs (the spec without `replicas`): set on
    /// the tasks' containers, so that a task shows which spec it runs and a
    /// change of `count` alone does not replace running tasks.
    pub fn task_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("replicas");
        }
        Self::digest(&v)
    }

    /// What differs between `self` (before) and `other` (after), one line
    /// per field: `env.FOO: "a" → "b"`.
    pub fn diff(&self, other: &SwarmSpec) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        json_diff(&a, &b, AbsentTable::Whole)
            .into_iter()
            .map(|c| format!("{}: {} → {}", c.path, short(&c.before), short(&c.after)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_start_first_unless_volumes_or_host_ports_and_the_file_overrides() {
        let plain = SwarmUpdate::resolve(None, false, false);
        assert_eq!(plain.order, UpdateOrder::StartFirst);
        assert_eq!(plain.failure_action, FailureAction::Rollback);
        assert_eq!(
            (plain.parallelism, plain.monitor_ms),
            (1, UPDATE_MONITOR_MS)
        );
        assert_eq!(
            SwarmUpdate::resolve(None, true, false).order,
            UpdateOrder::StopFirst
        );
        assert_eq!(
            SwarmUpdate::resolve(None, false, true).order,
            UpdateOrder::StopFirst
        );
        let file = UpdateConfig {
            order: Some(UpdateOrder::StartFirst),
            parallelism: Some(0),
            delay_ms: Some(1500),
            ..Default::default()
        };
        let u = SwarmUpdate::resolve(Some(&file), true, false);
        assert_eq!(u.order, UpdateOrder::StartFirst);
        assert_eq!((u.parallelism, u.delay_ms), (0, 1500));
        assert_eq!(u.failure_action, FailureAction::Rollback);
        assert_eq!(u.surge(3), 3);
        assert_eq!(plain.surge(3), 1);
        assert_eq!(SwarmUpdate::default().surge(3), 0);
    }
}
