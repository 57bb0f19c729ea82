//! Targets: what keeps a deployment's instances running, behind one trait.
//!
//! A [`Target`] is told what to do by a [`Plan`] and carries it out: it
//! creates, recreates, starts and removes instances ([`Target::converge`]),
//! starts and stops them for the operator ([`Target::control`]), says what
//! it knows of them beyond their container for `ps` ([`Target::supervised`]),
//! holds an instance still while its volumes are copied ([`Target::hold`]),
//! and keeps the host's SSH gateway in line ([`Target::reconcile_gateway`]).
//! Logs, exec and volume access go through the engine for every host target.
//!
//! The host targets are [`systemd`] (a unit per instance running `berth
//! supervise`), [`docker`] (Docker restart policies) and [`foreground`]
//! (`berth up`'s supervisor). [`for_host`] chooses one, once, from the
//! [`Integration`] the operator asked for or the applied revision records;
//! nothing above this module matches on which one it is.

pub mod docker;
pub mod foreground;
pub mod health;
pub mod ssh_gateway;
pub mod swarm;
pub mod systemd;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::deployment::{Deployment, InstanceRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{ImageInfo, InstanceSpec, Integration};
use crate::names;
use crate::plan::{Action, Plan, Supervision, VolumePlan};
use crate::state::StateDir;
use crate::supervise::backoff::CrashRecord;

/// How many engine operations run at once.
pub const PARALLELISM: usize = 32;

/// Receives progress lines (`created mail`), for the command line to print.
pub type Reporter = Arc<dyn Fn(String) + Send + Sync>;

/// A reporter that drops everything.
pub fn quiet() -> Reporter {
    Arc::new(|_| {})
}

/// Where a host target writes and what it runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where systemd units are written.
    pub unit_dir: PathBuf,
    /// The `berth` binary units run.
    pub berth_path: PathBuf,
    /// Run `systemctl` (false: only write units and specs).
    pub systemctl: bool,
    /// The swarm nodes file (`--nodes`); `None`: the state directory's.
    pub nodes: Option<PathBuf>,
}

impl HostOptions {
    /// For commands that look at instances and start or stop them (`ps`,
    /// `start`, `stop`): they write no unit and run no apply's systemctl.
    pub fn observing() -> Self {
        Self {
            unit_dir: PathBuf::new(),
            berth_path: PathBuf::new(),
            systemctl: false,
            nodes: None,
        }
    }
}

/// The target for `integration`. `berth up` makes its own
/// ([`foreground::Foreground::supervising`]); the one returned here for
/// [`Integration::Foreground`] only looks at and talks to a running one.
/// [`Integration::Swarm`] is the swarm the engine manages, not this host.
pub fn for_host(integration: Integration, opts: &HostOptions) -> Box<dyn Target> {
    match integration {
        Integration::Systemd => Box::new(systemd::Systemd::new(opts.clone())),
        Integration::Docker => Box::new(docker::Docker::new(opts.clone())),
        Integration::Foreground => Box::new(foreground::Foreground::observer()),
        Integration::Swarm => Box::new(swarm::Swarm::with_nodes(opts.nodes.clone())),
    }
}

/// What the operator asks of an instance: `berth start|stop|restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop,
    Restart,
}

impl Control {
    pub fn verb(self) -> &'static str {
        match self {
            Control::Start => "started",
            Control::Stop => "stopped",
            Control::Restart => "restarted",
        }
    }
}

/// What a target knows of an instance beyond its container, for `ps`.
#[derive(Debug, Clone)]
pub enum Supervised {
    /// Nothing: the container says it all.
    Container,
    /// A running supervisor starts a fresh container whenever an instance
    /// exits under a restart policy that restarts it.
    Restarts,
    /// The instance's systemd unit and its supervisor's crash record.
    Unit {
        unit: systemd::ctl::UnitStatus,
        crashes: CrashRecord,
    },
}

/// One apply's work for a target: the plan to carry out and what it needs.
pub struct Step<'a> {
    pub engine: &'a Engine,
    pub state: &'a StateDir,
    pub deployment: &'a Deployment,
    pub plan: &'a Plan,
    /// The desired instances (the plan's items carry them too).
    pub specs: &'a [InstanceSpec],
    /// What the plan compared against (the units to write, under systemd).
    pub supervision: &'a Supervision,
    /// The revision being applied.
    pub revision: u64,
    pub report: &'a Reporter,
}

/// A place that keeps a deployment running. See the module documentation.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// Which integration this is (recorded in the applied revision).
    fn integration(&self) -> Integration;

    /// Refuse, before anything is touched, what this target cannot run.
    fn check(&self, _deployment: &Deployment) -> Result<()> {
        Ok(())
    }

    /// Warnings about `deployment` on this target (shown, never fatal).
    /// Default (the host targets): the swarm-only settings it sets
    /// ([`swarm_only_warnings`]).
    fn warnings(
        &self,
        deployment: &Deployment,
        _images: &BTreeMap<String, ImageInfo>,
    ) -> Vec<String> {
        swarm_only_warnings(deployment)
    }

    /// Where this host's systemd units are (or were) written: the plan
    /// removes units an earlier systemd apply left. `None` off the host.
    fn unit_dir(&self) -> Option<&std::path::Path>;

    /// What the plan compares the desired instances against.
    fn supervision(&self, state: &StateDir, deployment: &Deployment) -> Result<Supervision> {
        let _ = (state, deployment);
        Ok(Supervision::Containers(self.integration()))
    }

    /// Of the images an apply needs (`references`, all on the engine or
    /// pulled if not), those it pulls again before reading what they
    /// declare: their tag has moved on where this target runs them.
    /// Default: none (the engine's copy is what runs).
    async fn images_to_refresh(&self, _engine: &Engine, _references: &[String]) -> Vec<String> {
        Vec::new()
    }

    /// The plan for `specs` (with `missing_images` not there yet) on this
    /// target: what is there, diffed against them. Default: the host's
    /// containers, volumes, units and state ([`crate::apply::compute_plan`]).
    async fn plan(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        specs: &[InstanceSpec],
        missing_images: &[String],
        supervision: &Supervision,
    ) -> Result<Plan> {
        crate::apply::compute_plan(
            engine,
            state,
            deployment,
            specs,
            missing_images,
            supervision,
            self.unit_dir(),
        )
        .await
    }

    /// Create the deployment's network, which the plan said is missing.
    /// Default: the host's bridge network.
    async fn ensure_network(&self, engine: &Engine, deployment: &Deployment) -> Result<String> {
        engine.ensure_network(&deployment.name).await
    }

    /// Carry out the plan's volume and instance changes (the network exists
    /// already). Returns the commands it did not run (`--no-systemctl`).
    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>>;

    /// Keep the instance from being started again while its container is
    /// stopped to copy its volumes (a snapshot before an upgrade).
    async fn hold(&self, engine: &Engine, container: &str) -> Result<()>;

    /// Undo [`Target::hold`] when the copy failed: run the instance as before.
    async fn release(&self, engine: &Engine, container: &str) -> Result<()>;

    /// Does `item` of a plan of `deployment` replace what its instance runs
    /// with another image (and so get its volumes snapshotted first)?
    /// Default: the host's container or previous spec against the desired
    /// spec ([`crate::data::upgrade::image_changed`]).
    async fn image_changed(
        &self,
        engine: &Engine,
        _deployment: &Deployment,
        item: &crate::plan::InstancePlan,
    ) -> Result<bool> {
        crate::data::upgrade::image_changed(engine, item).await
    }

    /// Where the deployment's volumes are reached. Default: this host's
    /// engine.
    async fn data_site(
        &self,
        engine: &Engine,
        _state: &StateDir,
    ) -> Result<crate::data::instances::Site> {
        Ok(crate::data::instances::Site::Host(engine.clone()))
    }

    /// Carry out the operator's `action` on `instances` (the stop markers
    /// are already set or cleared; `was_stopped` says which were stopped
    /// before). Returns one line per instance.
    async fn control(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        instances: &[InstanceRef],
        action: Control,
        was_stopped: &[bool],
    ) -> Result<Vec<String>>;

    /// What this target knows of each instance beyond its container.
    fn supervised(
        &self,
        _state: &StateDir,
        _deployment: &Deployment,
        _container: &str,
    ) -> Supervised {
        Supervised::Container
    }

    /// Bring the host's SSH gateway in line with what is applied in `state`
    /// (`deployment`: the one just applied, if any). Returns the commands
    /// it did not run.
    async fn reconcile_gateway(
        &self,
        _state: &StateDir,
        _deployment: Option<&Deployment>,
        _listen: Option<&str>,
        _report: &Reporter,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// One warning per service that sets what only a swarm acts on
/// (`update_config`, `endpoint_mode`): on a host they have no effect. Shown
/// by `plan` and `apply` on a host target.
pub fn swarm_only_warnings(deployment: &Deployment) -> Vec<String> {
    deployment
        .services
        .values()
        .filter_map(|svc| {
            let keys: Vec<&str> = [
                svc.update_config.is_some().then_some("update_config"),
                svc.endpoint_mode.is_some().then_some("endpoint_mode"),
                (!svc.placement.is_empty()).then_some("placement"),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!keys.is_empty()).then(|| {
                format!(
                    "warning: service {} sets {}, which only a swarm acts on (--target swarm): on this host {} no effect",
                    svc.name,
                    keys.join(" and "),
                    if keys.len() > 1 { "they have" } else { "it has" }
                )
            })
        })
        .collect()
}

/// Seconds between an instance's stop signal and SIGKILL.
pub(crate) fn stop_timeout(deployment: &Deployment, inst: &InstanceRef) -> u64 {
    deployment
        .services
        .get(&inst.service)
        .map(|s| s.stop_timeout_secs())
        .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT)
}

/// Create planned volumes (in parallel), labelled like the instance they
/// belong to plus `berth.volume` and `berth.volume-path`.
pub(crate) async fn create_volumes(
    engine: &Engine,
    specs: &[InstanceSpec],
    volumes: &[&VolumePlan],
    revision: u64,
    report: &Reporter,
) -> Result<()> {
    // The futures are made first and then run, rather than mapped in the
    // stream: a closure inside the stream makes the future not `Send` for
    // every lifetime, which the target trait's methods need.
    let futures: Vec<_> = volumes
        .iter()
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
        .collect();
    let results: Vec<Result<()>> = futures_util::stream::iter(futures)
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// Stop and remove the containers of the plan's removed instances and
/// forget their specs.
pub(crate) async fn remove_instances(
    engine: &Engine,
    state: &StateDir,
    plan: &Plan,
    report: &Reporter,
) -> Result<()> {
    let futures: Vec<_> = plan
        .with_action(Action::Remove)
        .map(|item| async move {
            let timeout = item
                .previous
                .as_ref()
                .map(|p| p.stop_timeout)
                .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT);
            engine.stop_and_remove(&item.container, timeout).await?;
            state.forget_instance(&item.container)?;
            report(format!("removed {}", item.container));
            Ok(())
        })
        .collect();
    let results: Vec<Result<()>> = futures_util::stream::iter(futures)
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}
