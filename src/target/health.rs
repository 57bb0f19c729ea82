//! Waiting for instances to be ready: running and, when they have a health
//! check, healthy. Used between start levels (a service starts only after
//! the services it links to are ready) and by `berth apply --wait`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::deployment::{Deployment, OnUnhealthy};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::ImageInfo;
use crate::state::StateDir;

use crate::state::markers::is_stopped as is_stopped_by_operator;

/// How long `apply` waits for the services others link to, by default.
pub const DEFAULT_LINK_WAIT: Duration = Duration::from_secs(300);

/// An instance that is not ready, and what was last seen of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// Container name.
    pub container: String,
    /// `missing`, `exited`, `running`, ...
    pub state: String,
    /// `starting`, `unhealthy`, or `None` without a check.
    pub health: Option<String>,
    /// The last health-check result seen (`exit 1: output`).
    pub last_check: Option<String>,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.health {
            Some(h) => write!(f, "{}: {} ({h})", self.container, self.state)?,
            None => write!(f, "{}: {}", self.container, self.state)?,
        }
        if let Some(c) = &self.last_check {
            write!(f, "; last check: {c}")?;
        }
        Ok(())
    }
}

/// Wait until every container in `containers` runs and, when it has a
/// health check, is healthy. Returns the ones that are not when `timeout`
/// runs out (empty: all ready). Containers the operator stopped
/// (`berth stop`) are skipped.
pub async fn wait_ready(
    engine: &Engine,
    state: &StateDir,
    containers: &[String],
    timeout: Duration,
) -> Vec<NotReady> {
    let deadline = Instant::now() + timeout;
    // The last check output seen per container: a container being replaced
    // has none for a moment, the previous one still explains why.
    let mut last_checks: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut not_ready = Vec::new();
        for c in containers {
            if is_stopped_by_operator(state, c) {
                continue;
            }
            let seen = engine.observe_container(c).await;
            let entry = match seen {
                Ok(Some(st)) => {
                    if let Some(check) = st.last_check() {
                        last_checks.insert(c.clone(), check.summary());
                    }
                    let ready =
                        st.is_running() && matches!(st.health.as_deref(), None | Some("healthy"));
                    if ready {
                        continue;
                    }
                    NotReady {
                        container: c.clone(),
                        state: st.status.clone(),
                        health: st.health.clone(),
                        last_check: None,
                    }
                }
                Ok(None) => NotReady {
                    container: c.clone(),
                    state: "missing".into(),
                    health: None,
                    last_check: None,
                },
                Err(e) => NotReady {
                    container: c.clone(),
                    state: format!("unknown ({e})"),
                    health: None,
                    last_check: None,
                },
            };
            not_ready.push(entry);
        }
        if not_ready.is_empty() {
            return not_ready;
        }
        if Instant::now() >= deadline {
            for n in &mut not_ready {
                n.last_check = last_checks.get(&n.container).cloned();
            }
            return not_ready;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `berth apply --wait`: wait until every instance of the deployment is
/// running and healthy; fail (naming the others and their last check
/// output) after `timeout`.
pub async fn wait_deployment(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    timeout: Duration,
) -> Result<()> {
    let containers: Vec<String> = deployment
        .instances()
        .into_iter()
        .map(|i| i.container)
        .collect();
    let not_ready = wait_ready(engine, state, &containers, timeout).await;
    if not_ready.is_empty() {
        return Ok(());
    }
    Err(Error::NotReady {
        deployment: deployment.name.clone(),
        total: containers.len(),
        waited: timeout,
        not_ready: not_ready.iter().map(|n| n.to_string()).collect(),
    })
}

/// Under `--integration docker` no berth process watches health: one warning
/// per service that asks for `on_unhealthy = "restart"` (explicitly, or by
/// default with the image's HEALTHCHECK).
pub fn docker_integration_warnings(
    deployment: &Deployment,
    images: &BTreeMap<String, ImageInfo>,
) -> Vec<String> {
    deployment
        .services
        .values()
        .filter(|svc| match &svc.health {
            Some(h) if h.disabled || h.on_unhealthy == OnUnhealthy::Ignore => false,
            Some(h) if h.test.is_some() => true,
            _ => images.get(&svc.image).is_some_and(|i| i.healthcheck),
        })
        .map(|svc| {
            format!(
                "warning: service {} has on_unhealthy = \"restart\", but under --integration docker no berth process watches health: the engine marks it unhealthy and leaves it running (use systemd or `berth up` to have it replaced)",
                svc.name
            )
        })
        .collect()
}
