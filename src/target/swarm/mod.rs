//! The Docker Swarm target: the engine berth talks to (`DOCKER_HOST`) is a
//! swarm manager, and each berth service becomes one Swarm service
//! ([`SwarmSpec`], `count` replicas) on one attachable overlay network per
//! deployment. The apply workflow is the host's (lock, desired, plan,
//! converge, revision); this target plans against the live services
//! ([`plan`]) and carries the plan out ([`converge`]): removed services
//! first, then the rest in link order, each level waited for until its
//! tasks run (healthy, where there is a check) before the services linking
//! to it; a failed update is rolled back by Swarm and reported.
//!
//! How services are reached by name (`BERTH_SWARM_ENDPOINT_MODE`, `vip` by
//! default, or `dnsrr`) is part of each service's spec, so a plan under
//! another mode shows the change.

pub mod converge;
pub mod ops;
pub mod plan;

use std::collections::BTreeMap;

use crate::deployment::{Deployment, InstanceRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{EndpointMode, InstanceSpec, Integration, SwarmSpec};
use crate::plan::{Plan, Supervision};
use crate::state::StateDir;
use crate::target::{Control, Step, Target};

/// The environment variable choosing the endpoint mode.
pub const ENDPOINT_MODE_VAR: &str = "BERTH_SWARM_ENDPOINT_MODE";

/// See the module documentation.
pub struct Swarm {
    /// The endpoint mode asked for, or the bad value given.
    endpoint_mode: std::result::Result<EndpointMode, String>,
}

impl Swarm {
    /// With the endpoint mode of [`ENDPOINT_MODE_VAR`] (unset: `vip`).
    pub fn from_env() -> Self {
        let endpoint_mode = match std::env::var(ENDPOINT_MODE_VAR) {
            Ok(v) if v.is_empty() => Ok(EndpointMode::default()),
            Ok(v) => EndpointMode::parse(&v).ok_or(v),
            Err(_) => Ok(EndpointMode::default()),
        };
        Self { endpoint_mode }
    }

    fn endpoint_mode(&self) -> Result<EndpointMode> {
        self.endpoint_mode
            .clone()
            .map_err(|v| Error::Usage(format!("{ENDPOINT_MODE_VAR}={v:?}: expected vip or dnsrr")))
    }

    /// One [`SwarmSpec`] per service of `deployment`, by service name, from
    /// each service's first instance.
    pub fn services(
        &self,
        deployment: &Deployment,
        specs: &[InstanceSpec],
    ) -> Result<BTreeMap<String, SwarmSpec>> {
        let mode = self.endpoint_mode()?;
        let mut out = BTreeMap::new();
        for svc in deployment.services.values() {
            if let Some(first) = specs.iter().find(|s| s.service == svc.name) {
                out.insert(
                    svc.name.clone(),
                    SwarmSpec::from_instance(first, svc.count, mode),
                );
            }
        }
        Ok(out)
    }
}

fn not_yet(what: &str) -> Error {
    Error::Usage(format!("{what} is not available on a swarm yet"))
}

#[async_trait::async_trait]
impl Target for Swarm {
    fn integration(&self) -> Integration {
        Integration::Swarm
    }

    /// What this slice of the swarm target cannot run yet is refused
    /// before anything is touched.
    fn check(&self, deployment: &Deployment) -> Result<()> {
        self.endpoint_mode()?;
        for svc in deployment.services.values() {
            let refuse = |what: &str| {
                Err(Error::Usage(format!(
                    "service {}: {what} is not available on a swarm yet",
                    svc.name
                )))
            };
            if !svc.configs.is_empty() || !svc.secrets.is_empty() {
                return refuse("configs and secrets");
            }
            if !svc.ssh.is_empty() {
                return refuse("ssh access");
            }
            if svc.settings.privileged {
                return refuse("privileged (Swarm services cannot be privileged)");
            }
            if svc.settings.tmpfs.iter().any(|t| t.contains(':')) {
                return refuse("tmpfs options");
            }
            if svc.settings.shm_size.is_some() {
                return refuse("shm_size (a Swarm task spec has no /dev/shm size)");
            }
            if !svc.settings.devices.is_empty() {
                return refuse("devices (a Swarm task spec maps no host devices)");
            }
            // Volumes are a node's own: replicas on one node would share
            // them, replicas elsewhere would find them empty.
            let named = |v: &crate::deployment::VolumeMount| {
                matches!(v.source, crate::deployment::VolumeSource::Named(_))
            };
            if svc.count > 1 && svc.volumes.iter().any(named) {
                return refuse("count > 1 with named volumes (each volume lives on one node)");
            }
        }
        Ok(())
    }

    fn unit_dir(&self) -> Option<&std::path::Path> {
        None
    }

    async fn plan(
        &self,
        engine: &Engine,
        _state: &StateDir,
        deployment: &Deployment,
        specs: &[InstanceSpec],
        missing_images: &[String],
        _supervision: &Supervision,
    ) -> Result<Plan> {
        engine.require_manager().await?;
        let desired = self.services(deployment, specs)?;
        let observed = plan::observe(engine, deployment, &desired).await?;
        plan::diff(deployment, &desired, &observed, missing_images)
    }

    async fn ensure_network(&self, engine: &Engine, deployment: &Deployment) -> Result<String> {
        engine.ensure_network_of(&deployment.name, true).await
    }

    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>> {
        let desired = self.services(step.deployment, step.specs)?;
        converge::converge(step, &desired).await?;
        Ok(Vec::new())
    }

    async fn hold(&self, _engine: &Engine, _container: &str) -> Result<()> {
        Err(not_yet("a snapshot before an upgrade"))
    }

    async fn release(&self, _engine: &Engine, _container: &str) -> Result<()> {
        Ok(())
    }

    async fn control(
        &self,
        _engine: &Engine,
        _state: &StateDir,
        _deployment: &Deployment,
        _instances: &[InstanceRef],
        _action: Control,
        _was_stopped: &[bool],
    ) -> Result<Vec<String>> {
        Err(not_yet("start, stop and restart"))
    }
}
