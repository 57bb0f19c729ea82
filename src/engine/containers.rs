//! Containers: create from an [`InstanceSpec`], start, stop, remove, list by
//! label, inspect, wait, and follow output.

use std::collections::{BTreeMap, HashMap};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Mount, MountType, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::{Engine, is_conflict, is_not_found, is_not_modified, label_filter};
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, MountSource};
use crate::names;

/// How long [`Engine::wait_gone`] waits for a removal in progress.
pub const GONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The engine's form of one mount of an instance (containers and Swarm
/// services alike).
pub(crate) fn mount(m: &crate::instance::MountSpec) -> Mount {
    let (source, typ) = match &m.source {
        MountSource::Volume { name, .. } => (name.clone(), MountType::VOLUME),
        MountSource::Bind { path } => (path.display().to_string(), MountType::BIND),
    };
    Mount {
        target: Some(m.target.clone()),
        source: Some(source),
        typ: Some(typ),
        read_only: Some(m.read_only),
        ..Default::default()
    }
}

/// The engine's form of a health check (containers and Swarm services
/// alike). Unset fields (0 / empty test) take the image's values.
pub(crate) fn health_config(h: &crate::deployment::Health) -> HealthConfig {
    let ns = |ms: Option<u64>| ms.and_then(|m| i64::try_from(m.saturating_mul(1_000_000)).ok());
    if h.disabled {
        return HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        };
    }
    HealthConfig {
        test: h.test.clone(),
        interval: ns(h.interval_ms),
        timeout: ns(h.timeout_ms),
        start_period: ns(h.start_period_ms),
        retries: h.retries.map(i64::from),
        ..Default::default()
    }
}

/// A container as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container ID.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference it was created from.
    pub image: String,
    /// Image ID.
    pub image_id: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Running, exited, ...
    pub state: ContainerState,
    /// The engine's human status (`Up 3 minutes`).
    pub status: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

impl ContainerInfo {
    /// The `berth.spec-hash` label, if any.
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(names::LABEL_SPEC_HASH).map(String::as_str)
    }

    /// The `berth.service` label, if any.
    pub fn service(&self) -> Option<&str> {
        self.labels.get(names::LABEL_SERVICE).map(String::as_str)
    }

    /// The `berth.instance` label as a number, if any.
    pub fn instance(&self) -> Option<u32> {
        self.labels
            .get(names::LABEL_INSTANCE)
            .and_then(|i| i.parse().ok())
    }
}

/// A container's coarse state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running (or paused, or restarting).
    Running,
    /// Exited or dead.
    Exited,
    /// Anything else the engine reports (removing, ...).
    Other,
}

impl ContainerState {
    fn from_str(s: &str) -> Self {
        match s {
            "created" => ContainerState::Created,
            "running" | "paused" | "restarting" => ContainerState::Running,
            "exited" | "dead" => ContainerState::Exited,
            _ => ContainerState::Other,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Other => "other",
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The container's exit code (128+n when killed by signal n).
    pub code: i64,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self.code == 0
    }
}

/// Build the engine's create request for an instance.
pub fn create_body(
    spec: &InstanceSpec,
    revision: u64,
    hash: &str,
    restart_policy: &str,
) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.extend(spec.berth_labels(revision));
    labels.insert(names::LABEL_SPEC_HASH.into(), hash.to_string());

    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    let mounts: Vec<Mount> = spec.mounts.iter().map(mount).collect();
    let tmpfs: HashMap<String, String> = spec
        .settings
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), o.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let restart = match restart_policy {
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        network_mode: Some(spec.network.clone()),
        memory: spec.settings.memory.and_then(|m| i64::try_from(m).ok()),
        nano_cpus: spec.settings.cpus.map(|c| (c * 1e9) as i64),
        readonly_rootfs: Some(spec.settings.read_only),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        cap_add: (!spec.settings.cap_add.is_empty()).then(|| spec.settings.cap_add.clone()),
        cap_drop: (!spec.settings.cap_drop.is_empty()).then(|| spec.settings.cap_drop.clone()),
        privileged: Some(spec.settings.privileged),
        ulimits: ulimits(&spec.settings),
        shm_size: spec.settings.shm_size.and_then(|b| i64::try_from(b).ok()),
        sysctls: (!spec.settings.sysctls.is_empty())
            .then(|| spec.settings.sysctls.clone().into_iter().collect()),
        extra_hosts: (!spec.settings.extra_hosts.is_empty())
            .then(|| spec.settings.extra_hosts.clone()),
        dns: (!spec.settings.dns.is_empty()).then(|| spec.settings.dns.clone()),
        init: spec.settings.init,
        log_config: spec.settings.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        }),
        devices: (!spec.settings.devices.is_empty()).then(|| {
            spec.settings
                .devices
                .iter()
                .map(|d| {
                    // Decoded as "host:container:perms".
                    let mut p = d.splitn(3, ':');
                    DeviceMapping {
                        path_on_host: p.next().map(str::to_string),
                        path_in_container: p.next().map(str::to_string),
                        cgroup_permissions: p.next().map(str::to_string),
                    }
                })
                .collect()
        }),
        ..Default::default()
    };
    let endpoint = EndpointSettings {
        aliases: Some(spec.aliases.clone()),
        ..Default::default()
    };
    let healthcheck = spec.health.as_ref().map(health_config);
    ContainerCreateBody {
        healthcheck,
        hostname: spec.settings.hostname.clone(),
        user: spec.settings.user.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        image: Some(if spec.image_id.is_empty() {
            spec.image.clone()
        } else {
            spec.image_id.clone()
        }),
        working_dir: spec.settings.workdir.clone(),
        labels: Some(labels),
        stop_signal: spec.settings.stop_signal.clone(),
        stop_timeout: i64::try_from(spec.stop_timeout).ok(),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

impl Engine {
    /// Create (not start) the container of an instance, with Docker restart
    /// policy `restart_policy` and berth's labels (spec hash, revision).
    /// Returns the container ID.
    pub async fn create_container(
        &self,
        spec: &InstanceSpec,
        revision: u64,
        restart_policy: &str,
    ) -> Result<String> {
        self.create_container_with_hash(spec, revision, restart_policy, &spec.hash())
            .await
    }

    /// [`Engine::create_container`] with an explicit `berth.spec-hash` label
    /// (every container berth runs is made here, its configs and secrets
    /// delivered before it returns):
    /// the supervisor labels the container with the hash of the spec as
    /// applied, even when it had to refresh the image ID at start.
    pub async fn create_container_with_hash(
        &self,
        spec: &InstanceSpec,
        revision: u64,
        restart_policy: &str,
        hash: &str,
    ) -> Result<String> {
        let body = create_body(spec, revision, hash, restart_policy);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.container)
            .build();
        let resp = self
            .docker()
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::engine(format!("creating container {}", spec.container), e))?;
        // Configs and secrets are in place before the main process starts;
        // a container that could not get them is not left to be started.
        if let Err(e) = self.deliver_files(&resp.id, spec, None).await {
            let _ = self.remove_container(&resp.id).await;
            return Err(e);
        }
        Ok(resp.id)
    }

    /// Start a container; starting a running one is not an error.
    pub async fn start_container(&self, name: &str) -> Result<()> {
        match self.docker().start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("starting container {name}"), e)),
        }
    }

    /// Stop a container, giving it `timeout_secs` after the stop signal before
    /// SIGKILL. A missing or already stopped container is not an error.
    pub async fn stop_container(&self, name: &str, timeout_secs: u64) -> Result<()> {
        let t = i32::try_from(timeout_secs).unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::default().t(t).build();
        match self.docker().stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("stopping container {name}"), e)),
        }
    }

    /// Remove a container (forcefully: a running one is killed). Anonymous
    /// volumes are not removed; berth mounts only named volumes anyway. A
    /// missing container is not an error. Returns once the name is free:
    /// when a removal is already in progress (an interrupted apply's request
    /// the engine is still carrying out), it waits for that to finish.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        match self.docker().remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal of container ... is already in progress"
            Err(e) if is_conflict(&e) => self.wait_gone(name).await,
            Err(e) => Err(Error::engine(format!("removing container {name}"), e)),
        }
    }

    /// Wait (up to [`GONE_TIMEOUT`]) until no container is named `name`.
    pub async fn wait_gone(&self, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + GONE_TIMEOUT;
        while self.inspect_container(name).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Runtime(format!(
                    "removing container {name}: the engine's removal did not finish within {}s",
                    GONE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stop (within `timeout_secs`) then remove a container.
    pub async fn stop_and_remove(&self, name: &str, timeout_secs: u64) -> Result<()> {
        self.stop_container(name, timeout_secs).await?;
        self.remove_container(name).await
    }

    /// Containers (all states) of a deployment, optionally narrowed by more
    /// `label=value` pairs, sorted by name.
    pub async fn list_containers(
        &self,
        deployment: &str,
        extra: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>> {
        let filters = label_filter(deployment, extra);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.list_with(opts, &format!("listing containers of {deployment}"))
            .await
    }

    /// Every container on the engine, berth's or not, sorted by name: what
    /// tells whose a container with one of a deployment's names is.
    pub async fn list_all_containers(&self) -> Result<Vec<ContainerInfo>> {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        self.list_with(opts, "listing containers").await
    }

    async fn list_with(
        &self,
        opts: bollard::query_parameters::ListContainersOptions,
        context: &str,
    ) -> Result<Vec<ContainerInfo>> {
        let list = self
            .docker()
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::engine(context, e))?;
        let mut out: Vec<ContainerInfo> = list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                state: ContainerState::from_str(
                    &c.state.map(|s| s.to_string()).unwrap_or_default(),
                ),
                status: c.status.unwrap_or_default(),
                created: c.created.unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Full inspection of a container; `None` when it does not exist.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>> {
        match self.docker().inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting container {name}"), e)),
        }
    }

    /// Wait until a container is no longer running and return its exit status.
    pub async fn wait_container(&self, name: &str) -> Result<ExitStatus> {
        let opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut stream = self.docker().wait_container(name, Some(opts));
        match stream.next().await {
            Some(Ok(r)) => Ok(ExitStatus {
                code: r.status_code,
            }),
            // bollard turns a non-zero exit into an error; it is still an exit.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(ExitStatus { code })
            }
            Some(Err(e)) => Err(Error::engine(format!("waiting for container {name}"), e)),
            None => {
                // The stream ended without a status (container removed
                // meanwhile): report what inspect says.
                let code = self
                    .inspect_container(name)
                    .await?
                    .and_then(|c| c.state)
                    .and_then(|s| s.exit_code)
                    .unwrap_or(0);
                Ok(ExitStatus { code })
            }
        }
    }

    /// The container's output (stdout and stderr), from its start, following
    /// it while `follow` is set; `tail` limits to the last lines ("all" for
    /// everything).
    pub fn container_output(
        &self,
        name: &str,
        follow: bool,
        tail: &str,
    ) -> impl Stream<Item = Result<LogOutput>> + use<> {
        let opts = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(tail)
            .build();
        let name = name.to_string();
        self.docker()
            .logs(&name, Some(opts))
            .map(move |r| r.map_err(|e| Error::engine(format!("reading output of {name}"), e)))
    }
}

/// The engine's form of a service's `ulimits` (shared with Swarm's task spec).
pub(crate) fn ulimits(
    settings: &crate::deployment::model::ContainerSettings,
) -> Option<Vec<ResourcesUlimits>> {
    (!settings.ulimits.is_empty()).then(|| {
        settings
            .ulimits
            .iter()
            .map(|(name, l)| ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(l.soft),
                hard: Some(l.hard),
            })
            .collect()
    })
}
