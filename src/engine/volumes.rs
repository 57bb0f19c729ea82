//! Volumes: created labelled, listed by label, removed only on request.

use std::collections::{BTreeMap, HashMap};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder};

use super::{Engine, is_not_found, label_filter};
use crate::error::{Error, Result};

/// A container that mounts a volume, running or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUser {
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
}

/// A volume as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Engine name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Where its data lives on the host.
    pub mountpoint: String,
}

impl Engine {
    /// Create a volume with labels; an existing volume of that name is kept
    /// as it is (its data and labels untouched). Returns the labels the
    /// volume has, so the caller can tell whose an existing one is.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        // The engine's create is idempotent for an existing local volume: it
        // returns that volume unchanged. One request instead of two.
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
            ..Default::default()
        };
        let v = self
            .docker()
            .create_volume(req)
            .await
            .map_err(|e| Error::engine(format!("creating volume {name}"), e))?;
        Ok(v.labels.into_iter().collect())
    }

    /// The labels of a volume; `None` when it does not exist.
    pub async fn volume_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.docker().inspect_volume(name).await {
            Ok(v) => Ok(Some(v.labels.into_iter().collect())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting volume {name}"), e)),
        }
    }

    /// Volumes labelled `berth.deployment=<deployment>`, sorted by name.
    pub async fn list_volumes(&self, deployment: &str) -> Result<Vec<VolumeInfo>> {
        let filters = label_filter(deployment, &[]);
        let opts = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let resp = self
            .docker()
            .list_volumes(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing volumes of {deployment}"), e))?;
        let mut out: Vec<VolumeInfo> = resp
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo {
                name: v.name,
                labels: v.labels.into_iter().collect(),
                mountpoint: v.mountpoint,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Remove a volume (and its data). A missing volume is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let opts = RemoveVolumeOptionsBuilder::default().force(false).build();
        match self.docker().remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("removing volume {name}"), e)),
        }
    }

    /// The containers (running or not) that mount volume `name`: the engine
    /// refuses to remove a volume any of them still holds.
    pub async fn volume_users(&self, name: &str) -> Result<Vec<VolumeUser>> {
        let filters = HashMap::from([("volume".to_string(), vec![name.to_string()])]);
        let opts = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker()
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing the containers of volume {name}"), e))?;
        Ok(list
            .into_iter()
            .map(|c| VolumeUser {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                running: c.state.is_some_and(|s| {
                    matches!(
                        s,
                        bollard::models::ContainerSummaryStateEnum::RUNNING
                            | bollard::models::ContainerSummaryStateEnum::RESTARTING
                            | bollard::models::ContainerSummaryStateEnum::PAUSED
                    )
                }),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }
}
