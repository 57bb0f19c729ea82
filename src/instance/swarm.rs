//! The resolved form of one berth service on a Docker Swarm: one Swarm
//! service, `count` replicas. Made from the service's first
//! [`InstanceSpec`] (so env, link variables, mounts, health check and the
//! container settings are resolved once, as on a host); the engine maps it
//! to the Swarm API (`engine::services`), the swarm target diffs it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{InstanceSpec, MountSpec, diff::short, json_diff};
use crate::deployment::{ContainerSettings, Health, PortMapping, RestartPolicy};
use crate::instance::AbsentTable;
use crate::names;

/// How a Swarm service is reached by its name on the deployment network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP load-balanced over the tasks (needs IPVS on the nodes).
    #[default]
    Vip,
    /// The name resolves to the tasks' own addresses (DNS round robin).
    Dnsrr,
}

impl EndpointMode {
    /// `vip` or `dnsrr`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }

    /// Parse [`EndpointMode::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vip" => Some(EndpointMode::Vip),
            "dnsrr" => Some(EndpointMode::Dnsrr),
            _ => None,
        }
    }
}

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
    /// The Swarm service for `first`, the first instance of a service of
    /// `count` instances.
    pub fn from_instance(first: &InstanceSpec, count: u32, endpoint_mode: EndpointMode) -> Self {
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
            replicas: count,
            command: first.command.clone(),
            entrypoint: first.entrypoint.clone(),
            env: first.env.clone(),
            labels: first.labels.clone(),
            ports: first.ports.clone(),
            mounts: first.mounts.clone(),
            network: first.network.clone(),
            aliases,
            endpoint_mode,
            restart: first.restart,
            settings: first.settings.clone(),
            stop_timeout: first.stop_timeout,
            health: first.health.clone(),
            pinned_by: first
                .mounts
                .iter()
                .any(|m| matches!(m.source, crate::instance::MountSource::Volume { .. }))
                .then(|| pin_label(&first.deployment, &first.service)),
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
