//! The deployment's user-defined bridge network.

use std::collections::{BTreeMap, HashMap};

use bollard::models::NetworkCreateRequest;

use super::{Engine, is_conflict, is_not_found};
use crate::error::{Error, Result};
use crate::names;

impl Engine {
    /// The labels of a network; `None` when it does not exist.
    pub async fn network_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.docker().inspect_network(name, None).await {
            Ok(n) => Ok(Some(n.labels.unwrap_or_default().into_iter().collect())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting network {name}"), e)),
        }
    }

    /// Create the deployment's bridge network (labelled) unless it exists.
    /// An existing network of that name that is not labelled as the
    /// deployment's (Docker's own `host` or `bridge`, another deployment's,
    /// one made by hand) is refused: the containers would join it.
    pub async fn ensure_network(&self, deployment: &str) -> Result<String> {
        self.ensure_network_of(deployment, false).await
    }

    /// [`Engine::ensure_network`]: a bridge on a host, or with `overlay` an
    /// attachable overlay network spanning a swarm.
    pub async fn ensure_network_of(&self, deployment: &str, overlay: bool) -> Result<String> {
        let name = names::network_name(deployment);
        if let Some(labels) = self.network_labels(&name).await? {
            return match network_conflict(&name, deployment, &labels) {
                Some(msg) => Err(Error::Conflict(msg)),
                None => Ok(name),
            };
        }
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(if overlay { "overlay" } else { "bridge" }.into()),
            attachable: overlay.then_some(true),
            labels: Some(HashMap::from([(
                names::LABEL_DEPLOYMENT.to_string(),
                deployment.to_string(),
            )])),
            ..Default::default()
        };
        match self.docker().create_network(req).await {
            Ok(_) => Ok(name),
            // Created concurrently by another process: fine.
            Err(e) if is_conflict(&e) => Ok(name),
            Err(e) => Err(Error::engine(format!("creating network {name}"), e)),
        }
    }

    /// Remove the deployment's network. A missing network is not an error,
    /// and a network of that name that is not the deployment's is left alone.
    pub async fn remove_network(&self, deployment: &str) -> Result<()> {
        let name = names::network_name(deployment);
        match self.network_labels(&name).await? {
            None => return Ok(()),
            Some(labels) if network_conflict(&name, deployment, &labels).is_some() => {
                tracing::info!("network {name} is not deployment {deployment}'s; left alone");
                return Ok(());
            }
            Some(_) => {}
        }
        match self.docker().remove_network(&name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("removing network {name}"), e)),
        }
    }
}

/// Why the existing network `name` (with `labels`) cannot be `deployment`'s,
/// if it cannot.
pub fn network_conflict(
    name: &str,
    deployment: &str,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    match labels.get(names::LABEL_DEPLOYMENT) {
        Some(owner) if owner == deployment => None,
        Some(owner) => Some(format!(
            "network {name} belongs to deployment {} (by its labels), but deployment {deployment} would attach its containers to it. \
             Nothing was changed: rename the deployment (--name)",
            owner.escape_debug()
        )),
        None => Some(format!(
            "network {name} exists and was not made by berth (Docker's own `bridge`, `host` and `none`, or one made by hand), \
             but deployment {deployment} would attach its containers to it. Nothing was changed: rename the deployment (--name)"
        )),
    }
}
