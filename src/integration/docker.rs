//! Docker integration: containers carry a Docker restart policy
//! (`unless-stopped` for services that always restart) and the engine keeps
//! them running. Also the container-replacing step every integration shares.

use crate::apply::instance::InstanceSpec;
use crate::engine::Engine;
use crate::error::{Error, Result};
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
    remove_own_container(engine, spec).await?;
    match engine
        .create_container_with_hash(spec, revision, restart_policy, hash)
        .await
    {
        Ok(id) => Ok(id),
        Err(Error::Engine { source, .. }) if crate::engine::is_conflict(&source) => {
            // Created concurrently (an interrupted apply's leftover being
            // recreated by the supervisor, say): remove it and try once more.
            remove_own_container(engine, spec).await?;
            engine
                .create_container_with_hash(spec, revision, restart_policy, hash)
                .await
        }
        Err(e) => Err(e),
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
    if running {
        engine
            .stop_container(&spec.container, spec.stop_timeout)
            .await?;
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
    spec.write(state)?;
    let stopped = is_stopped_by_operator(state, &spec.container);
    match item.action {
        Action::Create => {
            // The plan saw no container of that name: create directly, and
            // fall back to replacing only if one appeared meanwhile.
            match engine
                .create_container(spec, revision, &spec.docker_restart)
                .await
            {
                Ok(_) => {}
                Err(Error::Engine { source, .. }) if crate::engine::is_conflict(&source) => {
                    replace_container(engine, spec, revision, &spec.docker_restart).await?;
                }
                Err(e) => return Err(e),
            }
            if !stopped {
                engine.start_container(&spec.container).await?;
            }
        }
        Action::Recreate => {
            replace_container(engine, spec, revision, &spec.docker_restart).await?;
            if !stopped {
                engine.start_container(&spec.container).await?;
            }
        }
        Action::Start => {
            if !stopped {
                engine.start_container(&spec.container).await?;
            }
        }
        Action::Unchanged | Action::Remove => {}
    }
    tracing::debug!(
        "{} {}: {:?}",
        item.action.as_str(),
        spec.container,
        started.elapsed()
    );
    Ok(())
}
