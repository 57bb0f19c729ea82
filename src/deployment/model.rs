//! The resolved deployment model: what every format maps onto, after
//! interpolation and validation. Everything downstream (plan, apply,
//! supervise, ssh) works on these types only, never on the raw file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::names;

/// Most instances a service may run (`count`).
pub const MAX_COUNT: u32 = 100;

/// A validated deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Deployment name: prefix of every container, unit, volume and the network.
    pub name: String,
    /// The file it was read from (absolute), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Named public keys (`[keys]`), referenced by services' `ssh` lists.
    #[serde(default)]
    pub keys: BTreeMap<String, SshKey>,
    /// Keys that grant every container of the deployment (geard's top-level `Keys`).
    #[serde(default)]
    pub deployment_keys: Vec<SshKey>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Snapshots kept per instance (`snapshots_keep`), unless a service says
    /// otherwise; `None`: [`crate::data::snapshot::DEFAULT_KEEP`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_keep: Option<usize>,
    /// Files services read (`configs`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileSource>,
    /// Files that must stay secret (`secrets`), by name. Their content is
    /// kept only in root-only state; whatever prints a deployment hides it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileSource>,
    /// The command `berth update` runs after every update and every
    /// rollback (`notify`), as argv; a string in the file is run by
    /// `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// An `http://` or `https://` URL `berth update` POSTs a JSON event to
    /// after every update and every rollback (`notify_url`). It may carry a
    /// token, so output shows only its scheme and host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Scheduled updates for every service (`auto_update = true` or a
    /// table); `None`: only services that say `auto_update = true`, on the
    /// default schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_update: Option<AutoUpdate>,
}

impl AutoUpdate {
    /// The `[auto_update]` table that reads as this (durations in seconds).
    pub fn file_form(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("schedule".into(), self.schedule.to_string().into());
        m.insert("randomized_delay".into(), self.randomized_delay_secs.into());
        if let Some(t) = self.health_timeout_secs {
            m.insert("health_timeout".into(), t.into());
        }
        if let Some(t) = self.settle_secs {
            m.insert("settle".into(), t.into());
        }
        serde_json::Value::Object(m)
    }

    /// One line for the operator (`berth plan`, `render`).
    pub fn summary(&self) -> String {
        let mut out = format!("{}", self.schedule);
        if self.randomized_delay_secs > 0 {
            out.push_str(&format!(" + up to {}s", self.randomized_delay_secs));
        }
        if let Some(t) = self.health_timeout_secs {
            out.push_str(&format!(", health timeout {t}s"));
        }
        if let Some(t) = self.settle_secs {
            out.push_str(&format!(", settle {t}s"));
        }
        out
    }
}

/// When and how scheduled updates run (`[auto_update]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AutoUpdate {
    /// When they fire.
    #[serde(default)]
    pub schedule: super::schedule::Schedule,
    /// Up to this many seconds are added at random to every fire time.
    #[serde(default)]
    pub randomized_delay_secs: u64,
    /// Seconds an updated service may take to be running and healthy
    /// (`None`: `berth update`'s default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_secs: Option<u64>,
    /// Seconds it must then stay so (`None`: `berth update`'s default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_secs: Option<u64>,
}

/// The content of a top-level config or secret, read from its `file`,
/// `content` or `environment` when the deployment was loaded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    /// The file's text.
    pub content: String,
}

impl std::fmt::Debug for FileSource {
    /// Never the content: a secret must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileSource({} bytes)", self.content.len())
    }
}

/// Configs or secrets: which top-level table a mount refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Config,
    Secret,
}

impl FileKind {
    /// `config` or `secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Secret => "secret",
        }
    }

    /// The top-level key (`configs`, `secrets`).
    pub fn key(self) -> &'static str {
        match self {
            FileKind::Config => "configs",
            FileKind::Secret => "secrets",
        }
    }

    /// Mode a mount gets when it names none (0444 configs, 0400 secrets).
    pub fn default_mode(self) -> u32 {
        match self {
            FileKind::Config => 0o444,
            FileKind::Secret => 0o400,
        }
    }

    /// Where a mount lands when it names no target.
    pub fn default_target(self, source: &str) -> String {
        match self {
            FileKind::Config => format!("/{source}"),
            FileKind::Secret => format!("/run/secrets/{source}"),
        }
    }
}

/// A config or secret as one service mounts it (resolved: owner, mode and
/// target filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMount {
    /// Name of the top-level config or secret.
    pub source: String,
    /// Absolute path of the file in the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (at most 0777).
    pub mode: u32,
    /// Signal sent to the running container when the content changes,
    /// instead of replacing the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
}

impl Deployment {
    /// `notify_url` as output may show it: scheme, host and port, never
    /// the credentials, path or query, which often carry a token.
    pub fn notify_url_shown(&self) -> Option<String> {
        let url = self.notify_url.as_deref()?;
        let uri = url.parse::<http::Uri>().ok();
        let scheme = uri.as_ref().and_then(|u| u.scheme_str()).unwrap_or("?");
        let host = uri
            .as_ref()
            .and_then(|u| u.authority())
            .and_then(|a| a.as_str().rsplit('@').next())
            .unwrap_or("?");
        Some(format!("{scheme}://{host}/…"))
    }

    /// The content a mount of `kind` named `source` delivers.
    pub fn file_source(&self, kind: FileKind, source: &str) -> Option<&FileSource> {
        match kind {
            FileKind::Config => self.configs.get(source),
            FileKind::Secret => self.secrets.get(source),
        }
    }

    /// The deployment with every secret's content replaced by a marker:
    /// what commands that print the model (`render`) show.
    pub fn redacted(&self) -> Deployment {
        let mut d = self.clone();
        for s in d.secrets.values_mut() {
            s.content = "(secret, not shown)".into();
        }
        d
    }
}

/// An OpenSSH public key, already parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    /// The name it has in `[keys]` (for geard keys: `key-<n>`).
    pub name: String,
    /// Normalised `authorized_keys` form: `<type> <base64> [comment]`.
    pub openssh: String,
    /// `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// One service of a deployment; it runs `count` identical instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Image reference as written (`repo[:tag][@digest]`).
    pub image: String,
    /// Number of instances, 1..=[`MAX_COUNT`].
    pub count: u32,
    /// Replaces the image's `CMD` (exec form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's `ENTRYPOINT` (exec form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Environment: `env_file` entries first, then `env` on top, interpolated.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub links: Vec<Link>,
    /// Names of keys (from [`Deployment::keys`]) allowed to `ssh` into this service.
    #[serde(default)]
    pub ssh: Vec<String>,
    /// Shell for interactive SSH sessions; `/bin/sh` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_shell: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The settings the instance spec carries as they are.
    #[serde(flatten)]
    pub settings: ContainerSettings,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds the container gets between the stop signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Snapshot the instance's volumes before `apply` recreates it for a
    /// changed image (`snapshot_on_upgrade`, default true).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub snapshot_on_upgrade: bool,
    /// Snapshots kept per instance of this service (`snapshots_keep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_keep: Option<usize>,
    /// The health check (`health` table), or `health = false` to disable the
    /// image's. `None`: whatever the image declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Configs delivered into the containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    /// Secrets delivered into the containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    /// `auto_update = true|false`: this service is (or is not) updated on
    /// the schedule; `None`: as the deployment says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_update: Option<bool>,
    /// How a swarm replaces the service's tasks on an update
    /// (`update_config`, Compose's `deploy.update_config`); unset keys take
    /// berth's defaults. The swarm target only: a host has no rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// How the service is reached by its name on a swarm (`endpoint_mode`,
    /// Compose's `deploy.endpoint_mode`); `None`: `vip`. The swarm target only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<EndpointMode>,
    /// Where a swarm may run the service's tasks (`placement`, Compose's
    /// `deploy.placement.constraints`): Swarm constraints such as
    /// `node.labels.disk==ssd`. The swarm target only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
}

/// `update_config`: how a swarm rolls a service's tasks over to a new spec.
/// Each key unset takes berth's default (see [`crate::instance::SwarmUpdate`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once (0: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    /// Milliseconds between updating one batch of tasks and the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Start the new task before stopping the old one, or the other way round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
    /// What the swarm does when a new task fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    /// Milliseconds each new task is watched for failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_ms: Option<u64>,
    /// Fraction of new tasks (0 to 1) that may fail before the update fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
}

/// `update_config.order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// The new task runs (healthy) before the old one stops: the service
    /// keeps answering throughout.
    StartFirst,
    /// The old task stops before the new one starts (volumes are never
    /// used by two tasks at once).
    StopFirst,
}

impl UpdateOrder {
    /// `start-first` or `stop-first`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StartFirst => "start-first",
            UpdateOrder::StopFirst => "stop-first",
        }
    }

    /// Parse [`UpdateOrder::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start-first" => Some(UpdateOrder::StartFirst),
            "stop-first" => Some(UpdateOrder::StopFirst),
            _ => None,
        }
    }
}

/// `update_config.failure_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Go back to the previous spec (berth's default; `apply` then fails).
    Rollback,
    /// Stop updating further tasks (`apply` fails).
    Pause,
    /// Carry on with the other tasks.
    Continue,
}

impl FailureAction {
    /// `rollback`, `pause` or `continue`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
        }
    }

    /// Parse [`FailureAction::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rollback" => Some(FailureAction::Rollback),
            "pause" => Some(FailureAction::Pause),
            "continue" => Some(FailureAction::Continue),
            _ => None,
        }
    }
}

/// How a Swarm service is reached by its name on the deployment network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP load-balanced over the tasks (needs IPVS on the nodes).
    #[default]
    Vip,
    /// The name resolves to the tasks' own addresses (DNS round robin).
    Dnsrr,
}

impl EndpointMode {
    /// `vip` or `dnsrr`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }

    /// Parse [`EndpointMode::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vip" => Some(EndpointMode::Vip),
            "dnsrr" => Some(EndpointMode::Dnsrr),
            _ => None,
        }
    }
}

/// The container settings a service sets and its instances' specs carry
/// unchanged: a setting added here reaches the instance spec (and its hash)
/// with no other edit. Flattened into both, in this order, so their JSON
/// (and the spec hash) reads as it did when these were fields of each; a new
/// setting must be skipped when unset, so that older specs hash the same.
/// Its JSON form is also one the decoder reads (stored deployments are
/// written back as files from it). File form: [`ContainerSettingsFile`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContainerSettings {
    /// `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Host name inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU limit in cores (0.5 = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Read-only root file system.
    #[serde(default)]
    pub read_only: bool,
    /// Container paths mounted as tmpfs (`/run` or `/run:size=64m`).
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// Capabilities added.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Privileged container.
    #[serde(default)]
    pub privileged: bool,
    /// Stop signal (image default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Resource limits by name (`nofile`, `nproc`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Size of /dev/shm in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Namespaced kernel parameters (`net.core.somaxconn = "1024"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Lines added to /etc/hosts, Docker's form `host:ip`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// DNS servers (IP addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Run an init process as PID 1 (`None`: the engine's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// The container's log driver and its options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Host devices, `/dev/host:/dev/container:rwm` (all three parts written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// One resource limit: soft and hard value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// A log driver with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Logging {
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The file form of [`ContainerSettings`], for `berth schema` (each key as
/// the deployment file may write it; the decoder reads them, and a test
/// checks that the two and the model name the same keys). Adding a container
/// setting: a field in both structs here, its key in the decoder, its
/// mapping in the engine; nothing else (render, plan, stored deployments and
/// the spec hash follow from the model).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct ContainerSettingsFile {
    /// User (name or uid, optionally `:group`) the container runs as.
    pub user: Option<super::schema::IntOrString>,
    /// Working directory inside the container (absolute).
    pub workdir: Option<String>,
    /// The container's hostname.
    pub hostname: Option<String>,
    /// Stop signal, e.g. "SIGQUIT". Default: the image's, else SIGTERM.
    pub stop_signal: Option<super::schema::IntOrString>,
    /// Memory limit: bytes, or a size such as "512m" or "1g" (at least 6m).
    pub memory: Option<super::schema::IntOrString>,
    /// CPU limit in cores, greater than 0 (0.5 = half a core).
    pub cpus: Option<super::schema::NumberOrString>,
    /// Mount the container's root file system read-only.
    pub read_only: Option<bool>,
    /// tmpfs mounts: `/path` or `/path:options`.
    pub tmpfs: Option<super::schema::StringOrList>,
    /// Capabilities to add, e.g. `NET_ADMIN`.
    pub cap_add: Option<Vec<String>>,
    /// Capabilities to drop.
    pub cap_drop: Option<Vec<String>>,
    /// Full access to the host. Must be the boolean `true` to take effect;
    /// strings such as "true" or "yes" are refused.
    pub privileged: Option<bool>,
    /// Resource limits: `nofile = 1024` (soft and hard) or
    /// `nofile = { soft = 1024, hard = 4096 }`.
    pub ulimits: Option<BTreeMap<String, super::schema::UlimitFile>>,
    /// Size of /dev/shm: bytes, or a size such as "64m".
    pub shm_size: Option<super::schema::IntOrString>,
    /// Namespaced kernel parameters: a map, or a list of "name=value".
    pub sysctls: Option<super::schema::MapOrList>,
    /// Extra /etc/hosts entries: a list of "host:ip", or a map host -> ip.
    pub extra_hosts: Option<super::schema::MapOrList>,
    /// DNS servers: an IP address or a list of them.
    pub dns: Option<super::schema::StringOrList>,
    /// Run an init process (docker-init) as PID 1.
    pub init: Option<bool>,
    /// Log driver and options: `{ driver = "json-file", options = { max-size = "10m" } }`.
    pub logging: Option<super::schema::LoggingFile>,
    /// Host devices: "/dev/host[:/dev/container[:rwm]]".
    pub devices: Option<Vec<String>>,
}

/// A service's health check: Docker runs it, berth acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    /// `health = false`: no check at all, not even the image's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Docker's form: `["CMD", prog, args...]` or `["CMD-SHELL", "script"]`.
    /// `None`: the image's check command, with the timings below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Milliseconds between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Milliseconds a check may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Milliseconds after start during which failures do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ms: Option<u64>,
    /// Consecutive failures that make the container unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// What berth does with an unhealthy instance.
    #[serde(default)]
    pub on_unhealthy: OnUnhealthy,
}

impl Health {
    /// The check disabled (`health = false`).
    pub fn disabled() -> Self {
        Health {
            disabled: true,
            ..Default::default()
        }
    }
}

/// `on_unhealthy`: what happens to an instance its check declares unhealthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// Replace it with a fresh container (volumes kept). The default.
    #[default]
    Restart,
    /// Report it (ps, apply --wait) and leave it running.
    Ignore,
}

/// Default stop timeout when the service sets none (Docker's own default).
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

impl Service {
    /// A service with only its name and image set and every other setting at
    /// the default the file format gives it when the key is absent.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Service {
            name: name.into(),
            image: image.into(),
            count: 1,
            command: None,
            entrypoint: None,
            ports: vec![],
            env: BTreeMap::new(),
            volumes: vec![],
            links: vec![],
            ssh: vec![],
            ssh_shell: None,
            restart: RestartPolicy::Always,
            settings: ContainerSettings::default(),
            labels: BTreeMap::new(),
            stop_timeout: None,
            snapshot_on_upgrade: true,
            snapshots_keep: None,
            health: None,
            configs: vec![],
            secrets: vec![],
            auto_update: None,
            update_config: None,
            endpoint_mode: None,
            placement: vec![],
        }
    }

    /// Its config and secret mounts, configs first.
    pub fn file_mounts(&self) -> impl Iterator<Item = (FileKind, &FileMount)> {
        self.configs
            .iter()
            .map(|m| (FileKind::Config, m))
            .chain(self.secrets.iter().map(|m| (FileKind::Secret, m)))
    }

    /// Stop timeout in seconds, with Docker's default filled in.
    pub fn stop_timeout_secs(&self) -> u64 {
        self.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT)
    }
}

/// A published port, Docker `-p` syntax: `[ip:][host:]container[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `None`: the engine picks a free host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A mount from the file's `volumes` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSource {
    /// A berth-owned named volume; on the host it is `<container>-<name>`.
    Named(String),
    /// An absolute host path.
    Bind(PathBuf),
}

/// `links = ["target[:alias]"]`: start after `target`, reach it as `alias`, and
/// get the legacy `<ALIAS>_PORT_*` variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Target service name.
    pub target: String,
    /// Alias (defaults to the target's name).
    pub alias: String,
}

/// What happens when an instance's container exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit status (the default).
    #[default]
    Always,
    /// Restart only on a non-zero exit status.
    OnFailure,
    /// Never restart.
    No,
}

impl RestartPolicy {
    /// The value of systemd's `Restart=`.
    pub fn systemd(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::No => "no",
        }
    }

    /// Docker's restart policy for it when Docker keeps the instance
    /// running (`--integration docker`).
    pub fn docker(self) -> &'static str {
        match self {
            RestartPolicy::Always => "unless-stopped",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::No => "no",
        }
    }
}

/// One instance of a service: one container, one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    pub deployment: String,
    pub service: String,
    /// 1-based.
    pub index: u32,
    pub container: String,
}

impl InstanceRef {
    pub fn unit(&self) -> String {
        names::unit_name(&self.container)
    }
}

impl Deployment {
    /// Every instance of every service, services in name order, instances by number.
    pub fn instances(&self) -> Vec<InstanceRef> {
        self.services
            .values()
            .flat_map(|svc| self.service_instances(svc))
            .collect()
    }

    /// The instances of one service.
    pub fn service_instances(&self, svc: &Service) -> Vec<InstanceRef> {
        (1..=svc.count)
            .map(|index| InstanceRef {
                deployment: self.name.clone(),
                service: svc.name.clone(),
                index,
                container: names::container_name(&self.name, &svc.name, index, svc.count),
            })
            .collect()
    }

    /// Keys allowed into `service`: its `ssh` list plus the deployment-wide keys.
    pub fn keys_for(&self, service: &str) -> Vec<&SshKey> {
        let mut out: Vec<&SshKey> = self.deployment_keys.iter().collect();
        if let Some(svc) = self.services.get(service) {
            out.extend(svc.ssh.iter().filter_map(|k| self.keys.get(k)));
        }
        out
    }

    /// Services in start order: every service after the services it links to.
    /// Validation guarantees there is no cycle; should one slip through, the
    /// remaining services are appended in name order rather than dropped.
    pub fn start_order(&self) -> Vec<&Service> {
        let mut done: Vec<&str> = Vec::new();
        let mut order = Vec::new();
        let mut progress = true;
        while progress && order.len() < self.services.len() {
            progress = false;
            for svc in self.services.values() {
                if done.contains(&svc.name.as_str()) {
                    continue;
                }
                if svc.links.iter().all(|l| done.contains(&l.target.as_str())) {
                    done.push(&svc.name);
                    order.push(svc);
                    progress = true;
                }
            }
        }
        for svc in self.services.values() {
            if !done.contains(&svc.name.as_str()) {
                order.push(svc);
            }
        }
        order
    }

    /// Start-order level of each service: 0 without links, else one more
    /// than the highest level among its link targets. Services of one
    /// level can start together.
    pub fn link_levels(&self) -> std::collections::BTreeMap<String, usize> {
        let mut levels: std::collections::BTreeMap<String, usize> = Default::default();
        for svc in self.start_order() {
            let lvl = svc
                .links
                .iter()
                .filter_map(|l| levels.get(&l.target))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            levels.insert(svc.name.clone(), lvl);
        }
        levels
    }
}

impl Deployment {
    /// The legacy Docker link variables a service gets for its links, as far
    /// as the file determines them: for every container port the linked
    /// service publishes, `<ALIAS>_PORT_<p>_<PROTO>` (= `tcp://<alias>:<p>`)
    /// with its `_ADDR`, `_PORT` and `_PROTO`, plus `<ALIAS>_PORT` for the
    /// lowest port and `<ALIAS>_NAME` (`/<container>/<alias>`). Ports only
    /// the image `EXPOSE`s are known when the image is inspected, at apply time.
    pub fn link_env(&self, instance: &InstanceRef) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(svc) = self.services.get(&instance.service) else {
            return env;
        };
        for link in &svc.links {
            let Some(target) = self.services.get(&link.target) else {
                continue;
            };
            let prefix: String = link
                .alias
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            env.insert(
                format!("{prefix}_NAME"),
                format!("/{}/{}", instance.container, link.alias),
            );
            let mut ports: Vec<(u16, Protocol)> = target
                .ports
                .iter()
                .map(|p| (p.container_port, p.protocol))
                .collect();
            ports.sort_by_key(|(p, proto)| (*p, proto.as_str()));
            ports.dedup();
            for (i, (port, proto)) in ports.iter().enumerate() {
                let url = format!("{}://{}:{}", proto.as_str(), link.alias, port);
                let base = format!(
                    "{prefix}_PORT_{port}_{}",
                    proto.as_str().to_ascii_uppercase()
                );
                if i == 0 {
                    env.insert(format!("{prefix}_PORT"), url.clone());
                }
                env.insert(format!("{base}_ADDR"), link.alias.clone());
                env.insert(format!("{base}_PORT"), port.to_string());
                env.insert(format!("{base}_PROTO"), proto.as_str().to_string());
                env.insert(base, url);
            }
        }
        env
    }
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Deployment {
    /// The services scheduled updates move, in name order: with a
    /// deployment-level `auto_update`, every service that does not say
    /// `auto_update = false`; without, those that say `auto_update = true`.
    pub fn auto_update_services(&self) -> Vec<String> {
        self.services
            .values()
            .filter(|s| match (&self.auto_update, s.auto_update) {
                (_, Some(on)) => on,
                (Some(_), None) => true,
                (None, None) => false,
            })
            .map(|s| s.name.clone())
            .collect()
    }

    /// The schedule scheduled updates run on, when any service has them.
    pub fn update_schedule(&self) -> Option<AutoUpdate> {
        if self.auto_update_services().is_empty() {
            return None;
        }
        Some(self.auto_update.clone().unwrap_or_default())
    }

    /// How many upgrade snapshots to keep per instance of `service`.
    pub fn snapshots_keep(&self, service: &str) -> usize {
        self.services
            .get(service)
            .and_then(|s| s.snapshots_keep)
            .or(self.snapshots_keep)
            .unwrap_or(crate::data::snapshot::DEFAULT_KEEP)
    }
}
