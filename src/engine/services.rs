//! Docker Swarm through a manager's engine: the swarm's state and nodes,
//! services made from a [`SwarmSpec`], their tasks, and the deployment's
//! attachable overlay network.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountType, NetworkAttachmentConfig, Service,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::ops::{LogChunk, LogOptions};
use super::{Engine, is_not_found, label_filter};
use crate::deployment::{FailureAction, FileKind, Protocol, RestartPolicy, UpdateOrder};
use crate::error::{Error, Result};
use crate::instance::{EndpointMode, SwarmSpec, SwarmUpdate};
use crate::names;

/// Nanoseconds in a second (the Swarm API's durations).
const NS: i64 = 1_000_000_000;

/// The engine's place in a swarm.
#[derive(Debug, Clone)]
pub struct SwarmRole {
    /// `inactive`, `pending`, `active`, `error`, `locked`.
    pub node_state: String,
    /// This engine is a manager (it can create services).
    pub manager: bool,
    /// Nodes in the swarm (known to managers).
    pub nodes: Option<i64>,
}

/// One node of the swarm.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, ...
    pub state: String,
    pub addr: String,
    pub leader: bool,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// The node's labels (berth's data pins among them).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Where a service's last rolling update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    /// `updating`, `completed`, `paused`, `rollback_started`,
    /// `rollback_completed`, ...
    pub state: String,
    /// When it started (the engine's text), to tell one update from the next.
    pub started_at: String,
    pub message: String,
}

/// A berth service on the swarm, as the manager reports it.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// The object version, which an update must name.
    pub version: u64,
    pub labels: BTreeMap<String, String>,
    /// Replicas the live spec asks for (`None`: not a replicated service).
    pub replicas: Option<u64>,
    pub update: Option<UpdateStatus>,
}

/// One task of a service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskInfo {
    pub id: String,
    /// `<service>.<slot>`.
    pub name: String,
    pub node_id: String,
    /// What the swarm wants of it (`running`, `shutdown`).
    pub desired: String,
    /// Where it is (`running`, `starting`, `failed`, ...).
    pub state: String,
    pub message: String,
    pub err: String,
    /// The task spec it runs (`berth.task-hash` of its container).
    pub task_hash: String,
    /// When its state last changed (the engine's text).
    pub since: String,
    /// Its slot (1-based).
    pub slot: u64,
    /// Its container on its node, once it has one.
    pub container_id: String,
}

fn service_info(s: Service) -> ServiceInfo {
    let spec = s.spec.unwrap_or_default();
    ServiceInfo {
        id: s.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        version: s.version.and_then(|v| v.index).unwrap_or(0),
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        replicas: spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .and_then(|r| u64::try_from(r).ok()),
        update: s.update_status.and_then(|u| {
            Some(UpdateStatus {
                state: u.state?.to_string(),
                started_at: u.started_at.map(|d| format!("{d:?}")).unwrap_or_default(),
                message: u.message.unwrap_or_default(),
            })
        }),
    }
}

fn task_info(t: Task) -> TaskInfo {
    let status = t.status.unwrap_or_default();
    let task_hash = t
        .spec
        .and_then(|s| s.container_spec)
        .and_then(|c| c.labels)
        .and_then(|l| l.get(names::LABEL_TASK_HASH).cloned())
        .unwrap_or_default();
    TaskInfo {
        id: t.id.unwrap_or_default(),
        name: t.slot.map(|s| s.to_string()).unwrap_or_default(),
        node_id: t.node_id.unwrap_or_default(),
        desired: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
        state: status.state.map(|s| s.to_string()).unwrap_or_default(),
        message: status.message.unwrap_or_default(),
        err: status.err.unwrap_or_default(),
        task_hash,
        since: status
            .timestamp
            .map(|d| format!("{d:?}"))
            .unwrap_or_default(),
        slot: t.slot.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        container_id: status
            .container_status
            .and_then(|c| c.container_id)
            .unwrap_or_default(),
    }
}

/// The IDs of the Swarm configs and secrets a service spec refers to, by
/// kind and object name.
pub type ObjectIds = BTreeMap<(FileKind, String), String>;
/// Milliseconds as the Swarm API's nanoseconds.
fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000)
}

/// The Swarm update config of `u`.
fn update_config(u: &SwarmUpdate) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(i64::try_from(u.parallelism).unwrap_or(i64::MAX)),
        delay: Some(ms_to_ns(u.delay_ms)),
        failure_action: Some(match u.failure_action {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
        }),
        monitor: Some(ms_to_ns(u.monitor_ms)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            UpdateOrder::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            UpdateOrder::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    }
}

/// The Swarm service spec of `spec` (labelled; `revision` is the one
/// being applied; `ids` has the ID of every config and secret it uses).
pub(crate) fn service_spec(
    spec: &SwarmSpec,
    revision: u64,
    ids: &ObjectIds,
) -> Result<ServiceSpec> {
    let id_of = |f: &crate::instance::swarm::SwarmFile| {
        ids.get(&(f.kind, f.object.clone()))
            .cloned()
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "service {}: the swarm {} {} was not created",
                    spec.name,
                    f.kind.as_str(),
                    f.object
                ))
            })
    };
    let mut configs = Vec::new();
    let mut secrets = Vec::new();
    for f in &spec.files {
        let id = id_of(f)?;
        match f.kind {
            FileKind::Config => configs.push(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(f.target.clone()),
                    uid: Some(f.uid.to_string()),
                    gid: Some(f.gid.to_string()),
                    mode: Some(f.mode),
                }),
                config_id: Some(id),
                config_name: Some(f.object.clone()),
                ..Default::default()
            }),
            FileKind::Secret => secrets.push(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(f.target.clone()),
                    uid: Some(f.uid.to_string()),
                    gid: Some(f.gid.to_string()),
                    mode: Some(f.mode),
                }),
                secret_id: Some(id),
                secret_name: Some(f.object.clone()),
            }),
        }
    }
    let owner = [
        (names::LABEL_DEPLOYMENT.to_string(), spec.deployment.clone()),
        (names::LABEL_SERVICE.to_string(), spec.service.clone()),
    ];
    let mut container_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    container_labels.extend(owner.clone());
    container_labels.insert(names::LABEL_TASK_HASH.into(), spec.task_hash());
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.extend(owner);
    labels.insert(names::LABEL_SPEC_HASH.into(), spec.hash());
    labels.insert(names::LABEL_REVISION.into(), revision.to_string());
    let recorded = serde_json::to_string(spec)
        .map_err(|e| Error::Runtime(format!("cannot serialise service {}: {e}", spec.name)))?;
    labels.insert(names::LABEL_SWARM_SPEC.into(), recorded);

    let mut mounts: Vec<Mount> = spec.mounts.iter().map(super::containers::mount).collect();
    mounts.extend(spec.settings.tmpfs.iter().map(|t| Mount {
        target: Some(t.clone()),
        typ: Some(MountType::TMPFS),
        ..Default::default()
    }));
    let health_check = spec.health.as_ref().map(super::containers::health_config);
    // Swarm's `Command` replaces the image's ENTRYPOINT, `Args` its CMD.
    let container = TaskSpecContainerSpec {
        image: Some(spec.image_ref()),
        labels: Some(container_labels),
        configs: (!configs.is_empty()).then_some(configs),
        secrets: (!secrets.is_empty()).then_some(secrets),
        command: spec.entrypoint.clone(),
        args: spec.command.clone(),
        hostname: spec.settings.hostname.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        dir: spec.settings.workdir.clone(),
        user: spec.settings.user.clone(),
        read_only: Some(spec.settings.read_only),
        mounts: (!mounts.is_empty()).then_some(mounts),
        stop_signal: spec.settings.stop_signal.clone(),
        stop_grace_period: Some(i64::try_from(spec.stop_timeout).unwrap_or(i64::MAX / NS) * NS),
        health_check,
        capability_add: (!spec.settings.cap_add.is_empty()).then(|| spec.settings.cap_add.clone()),
        capability_drop: (!spec.settings.cap_drop.is_empty())
            .then(|| spec.settings.cap_drop.clone()),
        init: spec.settings.init,
        // Swarm's hosts file entries read "IP host", Docker's "host:IP".
        hosts: (!spec.settings.extra_hosts.is_empty()).then(|| {
            spec.settings
                .extra_hosts
                .iter()
                .filter_map(|h| h.split_once(':').map(|(host, ip)| format!("{ip} {host}")))
                .collect()
        }),
        dns_config: (!spec.settings.dns.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: Some(spec.settings.dns.clone()),
            ..Default::default()
        }),
        sysctls: (!spec.settings.sysctls.is_empty())
            .then(|| spec.settings.sysctls.clone().into_iter().collect()),
        ulimits: super::containers::ulimits(&spec.settings),
        ..Default::default()
    };
    let log_driver = spec.settings.logging.as_ref().map(|l| TaskSpecLogDriver {
        name: Some(l.driver.clone()),
        options: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
    });
    let limits = Limit {
        nano_cpus: spec.settings.cpus.map(|c| (c * 1e9) as i64),
        memory_bytes: spec.settings.memory.and_then(|m| i64::try_from(m).ok()),
        pids: None,
    };
    let condition = match spec.restart {
        RestartPolicy::Always => TaskSpecRestartPolicyConditionEnum::ANY,
        RestartPolicy::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        RestartPolicy::No => TaskSpecRestartPolicyConditionEnum::NONE,
    };
    let ports: Vec<EndpointPortConfig> = spec
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol {
                Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                Protocol::Sctp => EndpointPortConfigProtocolEnum::SCTP,
            }),
            target_port: Some(i64::from(p.container_port)),
            published_port: p.host_port.map(i64::from),
            // The client's address survives (no routing mesh in between).
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    Ok(ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(limits),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(condition),
                ..Default::default()
            }),
            // Pinned to the node holding its volumes (see `pin_label`), and
            // where the file says.
            placement: {
                let constraints: Vec<String> = spec
                    .pinned_by
                    .iter()
                    .map(|label| format!("node.labels.{label}==true"))
                    .chain(spec.placement.iter().cloned())
                    .collect();
                (!constraints.is_empty()).then(|| TaskSpecPlacement {
                    constraints: Some(constraints),
                    ..Default::default()
                })
            },
            log_driver,
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(spec.network.clone()),
                aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(spec.replicas)),
            }),
            ..Default::default()
        }),
        // By default a task that fails (never healthy) during an update
        // rolls the service back to its previous spec.
        update_config: Some(update_config(&spec.update)),
        // The rollback keeps the update's order: a service with volumes
        // never has two tasks on them, a stateless one keeps answering.
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(NS),
            max_failure_ratio: Some(0.0),
            order: Some(match spec.update.order {
                UpdateOrder::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
                UpdateOrder::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(match spec.endpoint_mode {
                EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
            }),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    })
}

impl Engine {
    /// This engine's place in a swarm.
    pub async fn swarm_role(&self) -> Result<SwarmRole> {
        let info = self
            .docker()
            .info()
            .await
            .map_err(|e| Error::engine("asking the engine for its swarm state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(SwarmRole {
            node_state: swarm
                .local_node_state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "inactive".into()),
            manager: swarm.control_available.unwrap_or(false),
            nodes: swarm.nodes,
        })
    }

    /// The ID of the swarm node this engine is (empty when it is in no swarm).
    pub async fn swarm_node_id(&self) -> Result<String> {
        let info = self
            .docker()
            .info()
            .await
            .map_err(|e| Error::engine("asking the engine which swarm node it is", e))?;
        Ok(info.swarm.and_then(|s| s.node_id).unwrap_or_default())
    }

    /// Refuse an engine that is not a swarm manager, saying what it is.
    pub async fn require_manager(&self) -> Result<()> {
        let role = self.swarm_role().await?;
        if role.manager {
            return Ok(());
        }
        let what = match role.node_state.as_str() {
            "active" => "a swarm worker".to_string(),
            "inactive" | "" => "not part of a swarm".to_string(),
            s => format!("in swarm state {s}"),
        };
        Err(Error::Usage(format!(
            "--target swarm: the engine berth talks to is {what}; point DOCKER_HOST at a swarm manager"
        )))
    }

    /// The swarm's nodes, by hostname.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        let nodes = self
            .docker()
            .list_nodes(None)
            .await
            .map_err(|e| Error::engine("listing the swarm's nodes", e))?;
        let mut out: Vec<NodeInfo> = nodes
            .into_iter()
            .map(|n| {
                let status = n.status.unwrap_or_default();
                let spec = n.spec.unwrap_or_default();
                NodeInfo {
                    id: n.id.unwrap_or_default(),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
                    availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    addr: status.addr.unwrap_or_default(),
                    leader: n.manager_status.and_then(|m| m.leader).unwrap_or(false),
                }
            })
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(out)
    }

    /// Set `label=true` on node `id` (keeping its other settings).
    pub async fn set_node_label(&self, id: &str, label: &str) -> Result<()> {
        self.edit_node_labels(
            id,
            &format!("labelling swarm node {id} with {label}"),
            |l| l.insert(label.to_string(), "true".to_string()) != Some("true".to_string()),
        )
        .await
    }

    /// Take `label` off node `id` (keeping its other settings); not there
    /// is fine.
    pub async fn remove_node_label(&self, id: &str, label: &str) -> Result<()> {
        self.edit_node_labels(
            id,
            &format!("removing label {label} from swarm node {id}"),
            |l| l.remove(label).is_some(),
        )
        .await
    }

    /// Change node `id`'s labels with `edit` (which says whether it changed
    /// them) and update the node when it did, at the version read.
    async fn edit_node_labels(
        &self,
        id: &str,
        what: &str,
        edit: impl FnOnce(&mut std::collections::HashMap<String, String>) -> bool,
    ) -> Result<()> {
        let node = self
            .docker()
            .inspect_node(id)
            .await
            .map_err(|e| Error::engine(what, e))?;
        let version = node.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = node.spec.unwrap_or_default();
        if !edit(spec.labels.get_or_insert_with(Default::default)) {
            return Ok(());
        }
        let options = bollard::query_parameters::UpdateNodeOptionsBuilder::default()
            .version(i64::try_from(version).unwrap_or(i64::MAX))
            .build();
        self.docker()
            .update_node(id, spec, options)
            .await
            .map_err(|e| Error::engine(what, e))
    }

    /// The services labelled as `deployment`'s, by name.
    pub async fn list_services(&self, deployment: &str) -> Result<Vec<ServiceInfo>> {
        let filters = label_filter(deployment, &[]);
        let opts = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker()
            .list_services(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing the services of {deployment}"), e))?;
        let mut out: Vec<ServiceInfo> = services.into_iter().map(service_info).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The service named `name`, whoever made it; `None` when there is none.
    pub async fn service(&self, name: &str) -> Result<Option<ServiceInfo>> {
        match self.docker().inspect_service(name, None).await {
            Ok(s) => Ok(Some(service_info(s))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting service {name}"), e)),
        }
    }

    /// Create the service of `spec`.
    /// The nodes pull its image with the credentials the client
    /// configuration has for that registry.
    pub async fn create_service(
        &self,
        spec: &SwarmSpec,
        revision: u64,
        ids: &ObjectIds,
    ) -> Result<()> {
        let creds = super::registry::credentials_for(&spec.image);
        self.docker()
            .create_service(service_spec(spec, revision, ids)?, creds)
            .await
            .map_err(|e| Error::engine(format!("creating service {}", spec.name), e))?;
        Ok(())
    }

    /// Update the service of `spec`, which is at object `version`.
    pub async fn update_service(
        &self,
        spec: &SwarmSpec,
        version: u64,
        revision: u64,
        ids: &ObjectIds,
    ) -> Result<()> {
        let opts = UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .build();
        let creds = super::registry::credentials_for(&spec.image);
        self.docker()
            .update_service(&spec.name, service_spec(spec, revision, ids)?, opts, creds)
            .await
            .map_err(|e| Error::engine(format!("updating service {}", spec.name), e))?;
        Ok(())
    }

    /// Have Swarm put service `name` back on the spec it had before its
    /// last update (`docker service rollback`).
    pub async fn rollback_service(&self, name: &str) -> Result<()> {
        let what = || format!("rolling back service {name}");
        let svc = self
            .docker()
            .inspect_service(name, None)
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let version = svc.version.and_then(|v| v.index).unwrap_or_default();
        let opts = UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .rollback("previous")
            .build();
        // The spec sent is ignored with `rollback=previous`; the current one
        // keeps the request well-formed.
        self.docker()
            .update_service(name, svc.spec.unwrap_or_default(), opts, None)
            .await
            .map_err(|e| Error::engine(what(), e))?;
        Ok(())
    }

    /// Set the replicas of service `name` (its spec otherwise as it is, so
    /// no task is replaced for it); returns the replicas it had.
    pub async fn scale_service(&self, name: &str, replicas: u64) -> Result<u64> {
        let what = || format!("scaling service {name} to {replicas}");
        let svc = self
            .docker()
            .inspect_service(name, None)
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let version = svc.version.and_then(|v| v.index).unwrap_or_default();
        let mut spec = svc.spec.unwrap_or_default();
        let replicated = spec
            .mode
            .get_or_insert_with(Default::default)
            .replicated
            .get_or_insert_with(Default::default);
        let before = replicated
            .replicas
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(0);
        if before == replicas {
            return Ok(before);
        }
        replicated.replicas = Some(i64::try_from(replicas).unwrap_or(i64::MAX));
        let opts = UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .build();
        self.docker()
            .update_service(name, spec, opts, None)
            .await
            .map_err(|e| Error::engine(what(), e))?;
        Ok(before)
    }

    /// Remove service `name` (its tasks stop; volumes stay). Gone already
    /// is fine.
    pub async fn remove_service(&self, name: &str) -> Result<()> {
        match self.docker().delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("removing service {name}"), e)),
        }
    }

    /// The tasks of service `name` (current and past), newest first, each
    /// named `<name>.<slot>`.
    pub async fn service_tasks(&self, name: &str) -> Result<Vec<TaskInfo>> {
        let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
        let opts = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = self
            .docker()
            .list_tasks(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing the tasks of {name}"), e))?;
        let mut out: Vec<TaskInfo> = tasks
            .into_iter()
            .map(task_info)
            .map(|mut t| {
                t.name = format!("{name}.{}", t.name);
                t
            })
            .collect();
        out.sort_by(|a, b| b.since.cmp(&a.since));
        Ok(out)
    }

    /// The output of task `task_id` as a stream of chunks, read through the
    /// manager (Swarm's log broker fetches it from the task's node). With
    /// `follow`, the stream lasts until the task's container stops.
    pub fn task_log_stream(
        &self,
        task_id: &str,
        opts: &LogOptions,
    ) -> impl Stream<Item = Result<LogChunk>> + Send + 'static {
        let what = format!("task {task_id}");
        self.docker()
            .task_logs(task_id, Some(super::ops::logs_options(opts)))
            .filter_map(move |item| {
                let what = what.clone();
                async move { super::ops::log_chunk(item, &what) }
            })
    }
}
