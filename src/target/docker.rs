//! Docker restart policies: containers carry one (`unless-stopped` for
//! services that always restart) and the engine keeps them running; the
//! containers are the truth. Also the container-replacing step every host
//! target shares.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;

use super::{Control, HostOptions, PARALLELISM, Reporter, Step, Target, health};
use crate::deployment::{Deployment, InstanceRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{ImageInfo, InstanceSpec, Integration};
use crate::names;
use crate::plan::{Action, InstancePlan, VolumePlan};
use crate::state::StateDir;
use crate::state::markers::is_stopped as is_stopped_by_operator;

/// The Docker restart-policy target.
#[derive(Debug, Clone)]
pub struct Docker {
    opts: HostOptions,
}

impl Docker {
    pub fn new(opts: HostOptions) -> Self {
        Self { opts }
    }
}

#[async_trait::async_trait]
impl Target for Docker {
    fn integration(&self) -> Integration {
        Integration::Docker
    }

    fn unit_dir(&self) -> Option<&std::path::Path> {
        Some(&self.opts.unit_dir)
    }

    fn warnings(
        &self,
        deployment: &Deployment,
        images: &BTreeMap<String, ImageInfo>,
    ) -> Vec<String> {
        let mut out = super::swarm_only_warnings(deployment);
        out.extend(health::docker_integration_warnings(deployment, images));
        out
    }

    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>> {
        super::remove_instances(step.engine, step.state, step.plan, step.report).await?;
        super::systemd::remove_units_left(
            step.plan,
            &self.opts.unit_dir,
            self.opts.systemctl,
            step.report,
        )
        .await?;
        converge_containers(step).await?;
        Ok(Vec::new())
    }

    async fn hold(&self, _engine: &Engine, _container: &str) -> Result<()> {
        // The restart policy does not restart a container the engine was
        // asked to stop.
        Ok(())
    }

    async fn release(&self, engine: &Engine, container: &str) -> Result<()> {
        engine.start_container(container).await
    }

    async fn control(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        instances: &[InstanceRef],
        action: Control,
        _was_stopped: &[bool],
    ) -> Result<Vec<String>> {
        let mut report = Vec::new();
        for inst in instances {
            let t = super::stop_timeout(deployment, inst);
            let current = engine.observe_container(&inst.container).await?;
            let has_spec = InstanceSpec::read(state, &inst.container)?.is_some();
            if current.is_none() && !has_spec {
                return Err(Error::Runtime(format!(
                    "{}: no container; run `berth apply` to create it",
                    inst.container
                )));
            }
            match action {
                Control::Stop => {
                    if current.is_some() {
                        engine.stop_container(&inst.container, t).await?;
                    }
                }
                // Every start is a fresh container, as under systemd and
                // `berth up`; one already running is left alone.
                Control::Start if current.as_ref().is_some_and(|c| c.is_running()) => {
                    report.push(format!("{}: already running", inst.container));
                    continue;
                }
                Control::Start | Control::Restart => {
                    restart_fresh(engine, state, deployment, inst, t).await?
                }
            }
            report.push(format!("{}: {}", inst.container, action.verb()));
        }
        Ok(report)
    }

    async fn reconcile_gateway(
        &self,
        _state: &StateDir,
        deployment: Option<&Deployment>,
        listen: Option<&str>,
        report: &Reporter,
    ) -> Result<Vec<String>> {
        if let Some(hint) = deployment.and_then(|d| super::ssh_gateway::docker_hint(d, listen)) {
            report(hint);
        }
        Ok(Vec::new())
    }
}

/// Replace an instance's container with a fresh one from its instance spec
/// (volumes are named, so the data carries over). Without a spec (never
/// applied by this berth), the existing container is restarted instead.
async fn restart_fresh(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    inst: &InstanceRef,
    stop_timeout: u64,
) -> Result<()> {
    let Some(spec) = InstanceSpec::read(state, &inst.container)? else {
        engine.stop_container(&inst.container, stop_timeout).await?;
        return engine.start_container(&inst.container).await;
    };
    let revision = state
        .read_current(&deployment.name)?
        .map(|r| r.revision)
        .unwrap_or(0);
    // The spec records the Docker restart policy it was applied with.
    replace_container(engine, &spec, revision, &spec.docker_restart).await?;
    engine.start_container(&inst.container).await
}

/// Create, recreate and start the plan's instances in dependency order
/// (links), the independent ones in parallel.
async fn converge_containers(step: &Step<'_>) -> Result<()> {
    let Step {
        engine,
        state,
        deployment,
        plan,
        specs,
        revision,
        report,
        ..
    } = *step;
    let levels = deployment.link_levels();
    let max = levels.values().copied().max().unwrap_or(0);
    // A failing instance does not stop the others: services that do not
    // depend on it still converge; those linking to it (directly or not)
    // are skipped. Every failure is reported at the end.
    let mut failed_services: BTreeSet<String> = Default::default();
    let mut errors: Vec<String> = Vec::new();
    for level in 0..=max {
        let mut wave: Vec<&InstancePlan> = Vec::new();
        for i in plan
            .instances
            .iter()
            .filter(|i| i.action != Action::Remove)
            .filter(|i| levels.get(&i.service).copied().unwrap_or(0) == level)
        {
            let blocked = deployment
                .services
                .get(&i.service)
                .map(|svc| {
                    svc.links
                        .iter()
                        .find(|l| failed_services.contains(&l.target))
                        .map(|l| l.target.clone())
                })
                .unwrap_or_default();
            match blocked {
                Some(target) => {
                    errors.push(format!(
                        "{}: skipped, its link target {target} failed",
                        i.container
                    ));
                    failed_services.insert(i.service.clone());
                }
                None => wave.push(i),
            }
        }
        // Made first, then run: see [`super::create_volumes`].
        let futures: Vec<_> = wave
            .into_iter()
            .map(|item| async move {
                let r: Result<()> = async {
                    // Each instance creates its own volumes right before its
                    // container: no barrier between volume and container creation.
                    let own: Vec<&VolumePlan> = plan
                        .volumes_to_create
                        .iter()
                        .filter(|v| v.container == item.container)
                        .collect();
                    super::create_volumes(engine, specs, &own, revision, report).await?;
                    // Unchanged instances still get their spec file checked
                    // (rewritten only if it differs; repairs a lost state directory).
                    converge_instance(engine, state, item, revision)
                        .await
                        .map_err(|e| {
                            Error::Runtime(format!(
                                "{} {}: {e}",
                                item.action.as_str(),
                                item.container
                            ))
                        })?;
                    if item.action != Action::Unchanged {
                        let what = match item.action {
                            Action::Create => "created",
                            Action::Recreate => "recreated",
                            Action::Start => "started",
                            Action::Reload => "reloaded",
                            _ => "",
                        };
                        let note = if item.stopped_by_operator {
                            " (stopped by operator: not started)"
                        } else {
                            ""
                        };
                        report(format!("{what} {}{note}", item.container));
                    }
                    Ok(())
                }
                .await;
                (item.service.clone(), r)
            })
            .collect();
        let results: Vec<(String, Result<()>)> = futures_util::stream::iter(futures)
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
        for (service, r) in results {
            if let Err(e) = r {
                errors.push(e.to_string());
                failed_services.insert(service);
            }
        }
        // The services of the next levels start only once the ones they link
        // to run and, with a health check, are healthy.
        if level < max {
            let linked: BTreeSet<&str> = deployment
                .services
                .values()
                .flat_map(|s| s.links.iter().map(|l| l.target.as_str()))
                .collect();
            let waits: Vec<String> = plan
                .instances
                .iter()
                .filter(|i| i.action != Action::Remove && !i.stopped_by_operator)
                .filter(|i| levels.get(&i.service).copied().unwrap_or(0) == level)
                .filter(|i| linked.contains(i.service.as_str()))
                .filter(|i| !failed_services.contains(&i.service))
                .map(|i| i.container.clone())
                .collect();
            if !waits.is_empty() {
                let not_ready =
                    health::wait_ready(engine, state, &waits, health::DEFAULT_LINK_WAIT).await;
                for n in not_ready {
                    let service = plan
                        .instances
                        .iter()
                        .find(|i| i.container == n.container)
                        .map(|i| i.service.clone())
                        .unwrap_or_default();
                    errors.push(format!(
                        "{n}: not ready, so the services linking to it were not started"
                    ));
                    failed_services.insert(service);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort();
        Err(Error::Instances { failures: errors })
    }
}

/// Remove whatever container has `spec`'s name (stopping it within the
/// spec's stop timeout), then create a fresh one. A container of that name
/// that does not belong to the spec's deployment is left alone and reported.
/// Returns the new container ID.
pub async fn replace_container(
    engine: &Engine,
    spec: &InstanceSpec,
    revision: u64,
    restart_policy: &str,
) -> Result<String> {
    replace_container_with_hash(engine, spec, revision, restart_policy, &spec.hash()).await
}

/// [`replace_container`] with an explicit `berth.spec-hash` label (see
/// [`Engine::create_container_with_hash`]).
pub async fn replace_container_with_hash(
    engine: &Engine,
    spec: &InstanceSpec,
    revision: u64,
    restart_policy: &str,
    hash: &str,
) -> Result<String> {
    create_own_container(engine, spec, revision, restart_policy, hash, true).await
}

/// Attempts at creating (and starting) a container while the name is
/// being taken or freed by requests of an interrupted apply that the engine
/// is still carrying out.
const ATTEMPTS: u32 = 5;

/// Pause before attempt `n` (1-based) of a retried create or start.
fn backoff(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 * u64::from(n))
}

/// Create `spec`'s container, removing its own container of that name
/// first when `replace` is set. A name conflict means another request
/// (an interrupted apply's create, say) created one meanwhile: if it is this
/// very instance with this spec hash it is taken as it is, else it is
/// removed (only if it is this deployment's) and the create retried, a
/// bounded number of times.
async fn create_own_container(
    engine: &Engine,
    spec: &InstanceSpec,
    revision: u64,
    restart_policy: &str,
    hash: &str,
    replace: bool,
) -> Result<String> {
    let mut replace = replace;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if replace {
            remove_own_container(engine, spec).await?;
        }
        match engine
            .create_container_with_hash(spec, revision, restart_policy, hash)
            .await
        {
            Ok(id) => return Ok(id),
            Err(Error::Engine { source, .. })
                if crate::engine::is_conflict(&source) && attempt < ATTEMPTS =>
            {
                if let Some(id) = same_instance(engine, spec, hash).await? {
                    // Made by an interrupted request, perhaps before its files.
                    engine.deliver_files(&id, spec, None).await?;
                    return Ok(id);
                }
                tracing::debug!(
                    "creating {}: name in use, attempt {attempt}",
                    spec.container
                );
                tokio::time::sleep(backoff(attempt)).await;
                replace = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The ID of the container named like `spec`'s if it is this instance of
/// this deployment, created from this spec hash, and not being removed.
async fn same_instance(engine: &Engine, spec: &InstanceSpec, hash: &str) -> Result<Option<String>> {
    let Some(existing) = engine.inspect_container(&spec.container).await? else {
        return Ok(None);
    };
    let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let instance = spec.index.to_string();
    let ours = label(names::LABEL_DEPLOYMENT) == Some(spec.deployment.as_str())
        && label(names::LABEL_SERVICE) == Some(spec.service.as_str())
        && label(names::LABEL_INSTANCE) == Some(instance.as_str())
        && label(names::LABEL_SPEC_HASH) == Some(hash);
    let going = existing
        .state
        .as_ref()
        .and_then(|s| s.status)
        .is_some_and(|s| {
            matches!(
                s,
                bollard::models::ContainerStateStatusEnum::REMOVING
                    | bollard::models::ContainerStateStatusEnum::DEAD
            )
        });
    Ok((ours && !going).then(|| existing.id.unwrap_or_default()))
}

/// Start `spec`'s container, re-creating it if it vanished or is being
/// removed under us (404 or 409 on start: an interrupted apply's remove
/// still in the engine), a bounded number of times.
async fn start_own_container(engine: &Engine, spec: &InstanceSpec, revision: u64) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match engine.start_container(&spec.container).await {
            Ok(()) => return Ok(()),
            Err(Error::Engine { source, .. })
                if (crate::engine::is_not_found(&source)
                    || crate::engine::is_conflict(&source))
                    && attempt < ATTEMPTS =>
            {
                tracing::debug!("starting {}: {source}; creating it again", spec.container);
                tokio::time::sleep(backoff(attempt)).await;
                create_own_container(
                    engine,
                    spec,
                    revision,
                    &spec.docker_restart,
                    &spec.hash(),
                    true,
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Stop and remove the container named like `spec`'s, if it is this
/// instance's (by its labels: deployment, service and instance).
pub async fn remove_own_container(engine: &Engine, spec: &InstanceSpec) -> Result<()> {
    let Some(existing) = engine.inspect_container(&spec.container).await? else {
        return Ok(());
    };
    let labels: std::collections::BTreeMap<String, String> = existing
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let owner = spec.owner();
    match owner.claim(&labels) {
        names::Claim::Same => {}
        names::Claim::Unlabelled => {
            return Err(Error::Conflict(format!(
                "a container named {} exists and was not made by berth; remove or rename it (berth does not touch containers it did not create)",
                spec.container
            )));
        }
        names::Claim::Other(theirs) => {
            return Err(Error::Conflict(names::conflict_message(
                "container",
                &spec.container,
                &theirs,
                &owner,
            )));
        }
    }
    let running = existing
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    if running
        && let Err(e) = engine
            .stop_container(&spec.container, spec.stop_timeout)
            .await
    {
        // Being removed already, say; the forced remove below kills it anyway.
        tracing::debug!("{e}");
    }
    engine.remove_container(&spec.container).await
}

/// Carry out one instance's plan under the Docker integration: write its
/// spec, then create / recreate / start its container. An instance the
/// operator stopped is (re)created but not started.
pub async fn converge_instance(
    engine: &Engine,
    state: &StateDir,
    item: &InstancePlan,
    revision: u64,
) -> Result<()> {
    let Some(spec) = &item.spec else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    // Before the spec is written: an apply killed in between reloads again.
    if item.action == Action::Reload {
        engine
            .reload_changed_files(spec, item.previous.as_ref())
            .await?;
    }
    spec.write(state)?;
    let stopped = is_stopped_by_operator(state, &spec.container);
    match item.action {
        Action::Create | Action::Recreate => {
            // Create: the plan saw no container of that name, so create
            // directly (replacing only if one appeared meanwhile).
            let replace = item.action == Action::Recreate;
            create_own_container(
                engine,
                spec,
                revision,
                &spec.docker_restart,
                &spec.hash(),
                replace,
            )
            .await?;
            if !stopped {
                start_own_container(engine, spec, revision).await?;
            }
        }
        Action::Start => {
            if !stopped {
                start_own_container(engine, spec, revision).await?;
            }
        }
        Action::Reload | Action::Unchanged | Action::Remove => {}
    }
    tracing::debug!(
        "{} {}: {:?}",
        item.action.as_str(),
        spec.container,
        started.elapsed()
    );
    Ok(())
}
