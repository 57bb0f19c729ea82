//! The deployment's user-defined bridge network.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;

use super::{Engine, is_conflict, is_not_found};
use crate::error::{Error, Result};
use crate::names;

impl Engine {
    /// True when a network of that name exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        match self.docker().inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::engine(format!("inspecting network {name}"), e)),
        }
    }

    /// Create the deployment's bridge network (labelled) unless it exists.
    pub async fn ensure_network(&self, deployment: &str) -> Result<String> {
        let name = names::network_name(deployment);
        if self.network_exists(&name).await? {
            return Ok(name);
        }
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
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

    /// Remove the deployment's network. A missing network is not an error.
    pub async fn remove_network(&self, deployment: &str) -> Result<()> {
        let name = names::network_name(deployment);
        match self.docker().remove_network(&name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("removing network {name}"), e)),
        }
    }
}
