//! Reading and writing volume contents through the engine's archive API
//! (`GET`/`PUT /containers/{id}/archive`), never through the engine's data
//! directory.
//!
//! A volume is reached through a *carrier*: a container created (never
//! started) from an image already on the host, with the volume mounted at
//! [`CARRIER_MOUNT`]. The engine mounts a created container's volumes for
//! archive requests, so the carrier needs no shell, no network and no running
//! process. Checked on Docker 20.10 with fuse-overlayfs:
//!
//! - `GET path=/berth-volume` streams the volume as a tar whose entries are
//!   rooted at `berth-volume/` (the root entry carries the volume root's own
//!   owner and mode); owners, modes incl. setuid, symlinks (dangling ones
//!   too), hard links, empty directories and names with spaces, newlines and
//!   non-UTF-8 bytes all come through.
//! - `PUT path=/` of that same stream restores all of it *including* the
//!   volume root's owner/mode and the mode of hard-linked setuid files. (A PUT
//!   to `path=/berth-volume` of `./`-rooted entries loses both: the engine
//!   skips the root entry and resolves hard-link targets relative to `/`.)
//!
//! Carriers are labelled like the instance they serve plus
//! [`LABEL_CARRIER`], so a test's or an operator's cleanup finds them, and
//! they are removed after use, also on error.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, Volume,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions,
    RemoveContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Engine, is_not_found};
use crate::error::{Error, Result};

/// Where a carrier mounts the volume it carries. The archive API names
/// entries after the last path component, so streams are rooted at
/// `berth-volume/`.
pub const CARRIER_MOUNT: &str = "/berth-volume";
/// Root of the entries in a volume's tar stream.
pub const CARRIER_ROOT: &str = "berth-volume";
/// Label on carrier containers (value: what it is for, `backup`, `restore`, ...).
pub const LABEL_CARRIER: &str = "berth.carrier";

/// A created, never-started container that mounts one volume.
#[derive(Debug, Clone)]
pub struct Carrier {
    /// Engine ID of the carrier container.
    pub id: String,
    /// The volume it mounts at [`CARRIER_MOUNT`].
    pub volume: String,
}

/// What the engine says about a volume.
#[derive(Debug, Clone)]
pub struct VolumeDetails {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl From<Volume> for VolumeDetails {
    fn from(v: Volume) -> Self {
        Self {
            name: v.name,
            driver: v.driver,
            labels: v.labels.into_iter().collect(),
            options: v.options.into_iter().collect(),
        }
    }
}

fn carrier_body(
    image: &str,
    volume: &str,
    labels: &BTreeMap<String, String>,
    purpose: &str,
    cmd: Option<Vec<String>>,
) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = labels.clone().into_iter().collect();
    labels.insert(LABEL_CARRIER.into(), purpose.into());
    let started = cmd.is_some();
    ContainerCreateBody {
        image: Some(image.to_string()),
        // A carrier that is never started needs a command only because the
        // engine refuses to create a container of an image without one; it
        // never runs, so it need not exist in the image.
        entrypoint: Some(vec![
            cmd.as_ref()
                .and_then(|c| c.first().cloned())
                .unwrap_or_else(|| "/berth-carrier-never-started".into()),
        ]),
        cmd: Some(
            cmd.map(|c| c.into_iter().skip(1).collect())
                .unwrap_or_default(),
        ),
        user: started.then(|| "0:0".to_string()),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            mounts: Some(vec![Mount {
                target: Some(CARRIER_MOUNT.into()),
                source: Some(volume.to_string()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                // Never copy the image's content at that path into the volume.
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Engine {
    /// Create a carrier for `volume` from `image` (an image ID or reference
    /// already on the host). The volume must exist.
    pub async fn create_carrier(
        &self,
        image: &str,
        volume: &str,
        labels: &BTreeMap<String, String>,
        purpose: &str,
    ) -> Result<Carrier> {
        let body = carrier_body(image, volume, labels, purpose, None);
        let resp = self
            .docker()
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| {
                Error::engine(
                    format!("creating a carrier container for volume {volume} from image {image}"),
                    e,
                )
            })?;
        Ok(Carrier {
            id: resp.id,
            volume: volume.to_string(),
        })
    }

    /// Remove every carrier of `deployment`: called under the deployment
    /// lock, when none can be in use, to clear what an interrupted berth
    /// process left (its create may even land after the next apply planned).
    pub async fn remove_leftover_carriers(&self, deployment: &str) -> Result<()> {
        let leftovers = self.list_containers(deployment, &[]).await?;
        for c in leftovers
            .iter()
            .filter(|c| c.labels.contains_key(LABEL_CARRIER))
        {
            tracing::debug!("removing leftover carrier {}", c.name);
            self.remove_carrier(&Carrier {
                id: c.id.clone(),
                volume: String::new(),
            })
            .await?;
        }
        Ok(())
    }

    /// Remove a carrier. Only the carrier goes; the named volume stays.
    pub async fn remove_carrier(&self, carrier: &Carrier) -> Result<()> {
        // `v` removes only the anonymous volumes the engine made for the
        // carrier's other image-declared paths (never a named volume), which
        // would otherwise be left behind after every copy.
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .docker()
            .remove_container(&carrier.id, Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(
                format!("removing carrier container {}", short(&carrier.id)),
                e,
            )),
        }
    }

    /// Carrier containers left behind (labelled [`LABEL_CARRIER`]) for a
    /// deployment: IDs.
    pub async fn list_carriers(&self, deployment: &str) -> Result<Vec<String>> {
        let mut filters = super::label_filter(deployment, &[]);
        if let Some(l) = filters.get_mut("label") {
            l.push(LABEL_CARRIER.to_string());
        }
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker()
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing carriers of {deployment}"), e))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// The volume as a tar stream rooted at [`CARRIER_ROOT`]`/`.
    pub fn download_volume(
        &self,
        carrier: &Carrier,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let opts = DownloadFromContainerOptions {
            path: CARRIER_MOUNT.into(),
        };
        let volume = carrier.volume.clone();
        self.docker()
            .download_from_container(&carrier.id, Some(opts))
            .map(move |r| r.map_err(|e| Error::engine(format!("reading volume {volume}"), e)))
    }

    /// Extract a tar stream rooted at [`CARRIER_ROOT`]`/` into the volume.
    /// Existing entries of the same name are replaced; others are kept.
    pub async fn upload_volume(
        &self,
        carrier: &Carrier,
        tar: impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<()> {
        let opts = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        self.docker()
            .upload_to_container(&carrier.id, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(|e| Error::engine(format!("writing volume {}", carrier.volume), e))
    }

    /// Inspect a volume; `None` when it does not exist.
    pub async fn volume_details(&self, name: &str) -> Result<Option<VolumeDetails>> {
        match self.docker().inspect_volume(name).await {
            Ok(v) => Ok(Some(v.into())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting volume {name}"), e)),
        }
    }

    /// Create a volume with labels (local driver).
    pub async fn create_labelled_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker()
            .create_volume(req)
            .await
            .map_err(|e| Error::engine(format!("creating volume {name}"), e))?;
        Ok(())
    }

    /// True when the image (ID or reference) is on this host.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        match self.docker().inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::engine(format!("inspecting image {image}"), e)),
        }
    }

    /// Remove everything inside a volume (the volume itself and its root's
    /// owner and mode stay). This is the one operation the archive API
    /// cannot do, so it runs `/bin/sh -c 'rm -rf ...'` as root in a
    /// short-lived container of `image` with only that volume mounted and no
    /// network; the image must have `/bin/sh` and `rm`. If it has not, the
    /// container cannot start and nothing was removed.
    pub async fn empty_volume(
        &self,
        image: &str,
        volume: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let script = format!("rm -rf -- {m}/* {m}/.[!.]* {m}/..?*", m = CARRIER_MOUNT);
        let cmd = vec!["/bin/sh".to_string(), "-c".to_string(), script];
        let body = carrier_body(image, volume, labels, "empty", Some(cmd));
        let resp = self
            .docker()
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| {
                Error::engine(
                    format!("creating a container to empty volume {volume} from image {image}"),
                    e,
                )
            })?;
        let carrier = Carrier {
            id: resp.id,
            volume: volume.to_string(),
        };
        let outcome = self.run_to_exit(&carrier.id).await;
        let removed = self.remove_carrier(&carrier).await;
        match outcome {
            Ok(0) => removed,
            Ok(code) => Err(Error::Runtime(format!(
                "emptying volume {volume} failed: `rm -rf` in image {image} exited with status {code}"
            ))),
            Err(e) => Err(Error::Runtime(format!(
                "cannot empty volume {volume}: {e} (the image {image} needs /bin/sh and rm; \
                 nothing was removed; empty the volume yourself, then restore without --force)"
            ))),
        }
    }

    async fn run_to_exit(&self, id: &str) -> Result<i64> {
        self.docker()
            .start_container(id, None)
            .await
            .map_err(|e| Error::engine(format!("starting container {}", short(id)), e))?;
        let opts = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut waits = self.docker().wait_container(id, Some(opts));
        match waits.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(Error::engine(
                format!("waiting for container {}", short(id)),
                e,
            )),
            None => Err(Error::Runtime(format!(
                "the engine ended the wait for container {} without an exit status",
                short(id)
            ))),
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
