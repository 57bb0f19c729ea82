//! Docker integration: containers carry a Docker restart policy
//! (`unless-stopped` for services that always restart) and the engine keeps
//! them running. Also the container-replacing step every integration shares.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::InstanceSpec;
use crate::names;
use crate::plan::{Action, InstancePlan};
use crate::state::StateDir;
use crate::state::markers::is_stopped as is_stopped_by_operator;

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
