//! The only code that talks to the Docker engine, through bollard over the
//! Unix socket (`DOCKER_HOST` honoured, API version negotiated).
//!
//! [`Engine`] is a cheap-to-clone handle. Its methods are grouped by object
//! kind in the submodules: [`images`] (inspect, pull with progress and
//! registry credentials), [`containers`] (create from an
//! [`InstanceSpec`](crate::instance::InstanceSpec), start, stop, remove, list,
//! inspect, wait, logs), [`volumes`] and [`networks`]. Every object berth
//! creates carries the labels from [`crate::names`].
//!
//! The calls other commands build on:
//! - [`Engine::connect`]: negotiated connection, clear error when unreachable.
//! - [`Engine::ensure_images`] / [`Engine::pull_images`]: pull what is
//!   missing, all at once, failing before anything else is touched.
//! - [`Engine::list_containers`] (by `berth.deployment`, plus extra labels),
//!   [`Engine::inspect_container`], [`Engine::start_container`],
//!   [`Engine::stop_container`], [`Engine::remove_container`],
//!   [`Engine::wait_container`], [`Engine::container_output`].
//! - [`Engine::ensure_volume`], [`Engine::list_volumes`],
//!   [`Engine::remove_volume`]; [`Engine::ensure_network`],
//!   [`Engine::remove_network`].
//! - Creating a container from an [`InstanceSpec`](crate::instance::InstanceSpec):
//!   [`Engine::create_container`], or
//!   [`crate::target::docker::replace_container`] which first removes a
//!   stale container of the same name (only if it is this deployment's).

pub mod archive;
pub mod containers;
pub mod exec;
pub mod files;
pub mod images;
pub mod networks;
pub mod nodes;
pub mod ops;
pub mod registry;
pub mod services;
pub mod swarm_files;
pub mod volumes;

use std::collections::HashMap;

use bollard::Docker;

use crate::error::{Error, Result};

pub use containers::{ContainerInfo, ContainerState, ExitStatus};
pub use images::PullProgress;

/// Oldest engine API berth supports (Docker 20.10).
pub const MIN_API: (usize, usize) = (1, 41);

/// A connection to the engine, with the API version agreed on.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    api_version: String,
}

impl Engine {
    /// Connect using `DOCKER_HOST` (or the default socket), negotiate the API
    /// version, and refuse engines older than [`MIN_API`].
    pub async fn connect() -> Result<Self> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults().map_err(|e| {
            Error::engine(
                format!(
                    "cannot reach the engine at {host} (is the Docker daemon running? set DOCKER_HOST if its socket is elsewhere)"
                ),
                e,
            )
        })?;
        Self::negotiate(docker, &host).await
    }

    /// Connect to the engine on the Unix socket `socket` (a swarm node's,
    /// see [`nodes`]), as [`Engine::connect`] does.
    pub async fn connect_unix(socket: &std::path::Path) -> Result<Self> {
        let host = format!("unix://{}", socket.display());
        let docker = Docker::connect_with_unix(&host, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| Error::engine(format!("cannot reach the engine at {host}"), e))?;
        Self::negotiate(docker, &host).await
    }

    /// Agree on the API version with the engine at `host`, refusing engines
    /// older than [`MIN_API`].
    async fn negotiate(docker: Docker, host: &str) -> Result<Self> {
        let docker = docker.negotiate_version().await.map_err(|e| {
            Error::engine(
                format!(
                    "cannot reach the engine at {host} (is the Docker daemon running, and may this user use its socket?)"
                ),
                e,
            )
        })?;
        let v = docker.client_version();
        if (v.major_version, v.minor_version) < MIN_API {
            return Err(Error::Runtime(format!(
                "the Docker engine at {host} speaks API {}.{}, berth needs {}.{} (Docker 20.10) or newer",
                v.major_version, v.minor_version, MIN_API.0, MIN_API.1
            )));
        }
        let api_version = format!("{}.{}", v.major_version, v.minor_version);
        Ok(Self {
            docker,
            api_version,
        })
    }

    /// The bollard client, for the engine submodules.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The negotiated API version, `"1.41"`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }
}

/// True when the engine answered "no such object" (HTTP 404).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// True when the engine answered "conflict" (HTTP 409), e.g. a name in use.
pub fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// True when the engine answered "not modified" (HTTP 304), e.g. starting a
/// running container.
pub fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// The filter `label=berth.deployment=<deployment>` (plus extra `k=v` labels),
/// in the form the list endpoints take.
pub fn label_filter(deployment: &str, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{}={deployment}", crate::names::LABEL_DEPLOYMENT)];
    labels.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    HashMap::from([("label".to_string(), labels)])
}
