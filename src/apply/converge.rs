//! The one step every command that makes a deployment run goes through
//! (`apply`, `rollback`, `restore --apply`): refuse a unit name that clashes
//! with the SSH gateway's, take the lock, plan and apply ([`super::apply`]),
//! bring the host's SSH gateway in line with what is now applied, and, when
//! asked, wait until every instance is running and healthy. `destroy` asks
//! the target for the gateway part ([`crate::target::Target::reconcile_gateway`]).
//!
//! Commands that accept a flag of [`ConvergeOptions`] pass it here, so it
//! takes effect the same way whichever command was given it.

use std::time::Duration;

use super::{ApplyOptions, ApplyReport};
use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ssh::gateway;
use crate::state::StateDir;
use crate::target::Reporter;

/// Options of [`converge`]: the apply's, plus the steps around it.
#[derive(Debug, Clone)]
pub struct ConvergeOptions {
    pub apply: ApplyOptions,
    /// Where the SSH gateway unit listens (systemd); `None` keeps the
    /// installed unit's address, else the default.
    pub ssh_listen: Option<String>,
    /// Wait this long for every instance to be running and healthy.
    pub wait: Option<Duration>,
}

/// What [`converge`] did.
#[derive(Debug)]
pub struct Outcome {
    /// The deployment applied.
    pub deployment: String,
    /// The apply.
    pub applied: ApplyReport,
    /// systemctl commands not run (`--no-systemctl`): the apply's, then the
    /// SSH gateway unit's.
    pub pending_systemctl: Vec<String>,
    /// With [`ConvergeOptions::wait`]: `Some(Err)` names the instances not
    /// running and healthy in time (the apply itself succeeded), `Some(Ok)`
    /// means all are.
    pub waited: Option<Result<()>>,
}

/// Check the options before anything is touched: a bad `--ssh-listen`, or
/// (under systemd) an instance whose unit would be the SSH gateway's.
pub fn check(deployment: &Deployment, opts: &ConvergeOptions) -> Result<()> {
    if let Some(l) = &opts.ssh_listen {
        gateway::check_listen(l).map_err(|_| {
            Error::Usage(format!(
                "--ssh-listen {l:?}: expected ADDR:PORT, for example 0.0.0.0:2222 or 127.0.0.1:2200"
            ))
        })?;
    }
    opts.apply.target().check(deployment)
}

/// Make the host run `deployment`: see the module documentation.
pub async fn converge(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    opts: &ConvergeOptions,
    report: Reporter,
) -> Result<Outcome> {
    check(deployment, opts)?;
    let applied = super::apply(engine, state, deployment, &opts.apply, report.clone())
        .await
        .map_err(|e| match e {
            Error::Runtime(m) => Error::Runtime(format!("apply of {}: {m}", deployment.name)),
            Error::Instances { failures } => Error::Instances {
                failures: std::iter::once(format!("apply of {}:", deployment.name))
                    .chain(failures)
                    .collect(),
            },
            other => other,
        })?;
    let mut pending_systemctl = applied.pending_systemctl.clone();
    pending_systemctl.extend(
        opts.apply
            .target()
            .reconcile_gateway(state, Some(deployment), opts.ssh_listen.as_deref(), &report)
            .await?,
    );
    let waited = wait(engine, state, deployment, opts).await;
    Ok(Outcome {
        deployment: deployment.name.clone(),
        applied,
        pending_systemctl,
        waited,
    })
}

/// With [`ConvergeOptions::wait`], wait for every instance of `deployment`
/// to be running and healthy (for a caller that starts instances after
/// [`converge`] returns); `None` without.
pub async fn wait(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    opts: &ConvergeOptions,
) -> Option<Result<()>> {
    match opts.wait {
        Some(timeout) => {
            Some(super::health::wait_deployment(engine, state, deployment, timeout).await)
        }
        None => None,
    }
}

/// How a workflow that applies more than once (`berth update` and the
/// rollback it may need) makes the host run a deployment: through
/// [`converge`] with the command's options, or, inside `berth up`, through
/// its own supervisor with the lock `up` holds
/// ([`crate::apply::up::InProcess`]).
#[async_trait::async_trait]
pub trait Converger: Send + Sync {
    /// The integration the deployment is kept running by.
    fn integration(&self) -> crate::instance::Integration;
    /// Refuse, before anything is touched, what the apply would refuse.
    fn check(&self, deployment: &Deployment) -> Result<()>;
    /// How pulls show progress.
    fn progress(&self) -> crate::engine::PullProgress;
    /// How long to wait for the deployment's lock (`None`: as long as it takes).
    fn lock_timeout(&self) -> Option<Duration>;
    /// True inside the `berth up` that supervises the deployment.
    fn in_process(&self) -> bool {
        false
    }
    /// Where the deployment's volumes are reached (a rollback with data
    /// writes them there). Default: this host's engine.
    async fn data_site(
        &self,
        engine: &Engine,
        _state: &StateDir,
    ) -> Result<crate::data::instances::Site> {
        Ok(crate::data::instances::Site::Host(engine.clone()))
    }
    /// Apply `deployment` (without waiting for health); `cause` is
    /// recorded in the revision ([`crate::apply::ApplyOptions::cause`]).
    async fn converge(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        cause: Option<&str>,
        report: Reporter,
    ) -> Result<Outcome>;
}

#[async_trait::async_trait]
impl Converger for ConvergeOptions {
    fn integration(&self) -> crate::instance::Integration {
        self.apply.integration
    }

    fn check(&self, deployment: &Deployment) -> Result<()> {
        check(deployment, self)
    }

    fn progress(&self) -> crate::engine::PullProgress {
        self.apply.progress
    }

    fn lock_timeout(&self) -> Option<Duration> {
        self.apply.lock_timeout
    }

    async fn data_site(
        &self,
        engine: &Engine,
        state: &StateDir,
    ) -> Result<crate::data::instances::Site> {
        self.apply.target().data_site(engine, state).await
    }

    async fn converge(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        cause: Option<&str>,
        report: Reporter,
    ) -> Result<Outcome> {
        let mut opts = ConvergeOptions {
            wait: None,
            ..self.clone()
        };
        if let Some(c) = cause {
            opts.apply.cause = Some(c.to_string());
        }
        converge(engine, state, deployment, &opts, report).await
    }
}
