//! The native deployment file's format as types, for `berth schema`. The
//! parser does not use these types (it decodes a spanned tree to locate
//! every error); a test keeps the two in step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A berth deployment file (native format; TOML, YAML or JSON). Every string
/// value may use `${VAR}` / `${VAR:-default}` interpolation; `$$` is a literal `$`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "berth deployment file")]
pub struct DeploymentFile {
    /// Deployment name: prefix of every container, unit and volume, and the
    /// network's name. Letters, digits, `_`, `-`, `.`; starts with a letter or
    /// digit; at most 63 characters. `--name` overrides it.
    pub name: Option<String>,
    /// Interpolation variables with the lowest precedence (below `--set`, the
    /// environment and `.env`). Values are taken literally.
    pub vars: Option<BTreeMap<String, Scalar>>,
    /// Named OpenSSH public keys (`ssh-ed25519 AAAA... comment`), granted to
    /// services by their `ssh` lists.
    pub keys: Option<BTreeMap<String, String>>,
    /// The services, by name (same naming rules as `name`).
    pub services: BTreeMap<String, ServiceFile>,
    /// Upgrade snapshots kept per instance, 1 to 1000, unless a service sets
    /// its own. Default 3.
    #[schemars(range(min = 1, max = 1000))]
    pub snapshots_keep: Option<u32>,
    /// A command `berth update` runs after every update and rollback, with
    /// `BERTH_EVENT`, `BERTH_DEPLOYMENT`, `BERTH_SERVICE`, `BERTH_IMAGE`,
    /// `BERTH_FROM`, `BERTH_TO` and `BERTH_REASON` set: a shell command
    /// (run by /bin/sh -c) or a list (program and arguments).
    pub notify: Option<StringOrList>,
    /// Scheduled `berth update` of every service (those that say
    /// `auto_update = false` excepted): `true` for the default schedule
    /// (daily), or a table. Under systemd a timer runs it, under `berth up`
    /// the supervisor; `--integration docker` refuses it.
    pub auto_update: Option<AutoUpdateSetting>,
    /// An `http://` or `https://` URL `berth update` POSTs a JSON object to
    /// after every update and rollback: `event`, `deployment`, `service`,
    /// `image`, `from`, `to`, `reason`, `time`. Only its scheme and host are
    /// ever shown; use `${VAR}` to keep a token out of the file.
    pub notify_url: Option<String>,
    /// Files services read, by name (same naming rules as `name`), mounted
    /// by the services' `configs` lists.
    pub configs: Option<BTreeMap<String, ConfigSource>>,
    /// Files that must stay secret, by name, mounted by the services'
    /// `secrets` lists. Their content is kept root-only in the state
    /// directory and never shown.
    pub secrets: Option<BTreeMap<String, SecretSource>>,
}

/// Where a config's content comes from: exactly one of the three.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigSource {
    /// A UTF-8 text file, relative to the deployment file (at most 1 MiB).
    pub file: Option<String>,
    /// The text itself (`${VAR}` interpolation applies).
    pub content: Option<String>,
    /// The name of a variable whose value is the content.
    pub environment: Option<String>,
}

/// Where a secret's content comes from: exactly one of the three
/// (`content` draws a warning: whoever reads the file reads the secret).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A UTF-8 text file, relative to the deployment file (at most 1 MiB).
    pub file: Option<String>,
    /// The text itself (discouraged).
    pub content: Option<String>,
    /// The name of a variable whose value is the secret.
    pub environment: Option<String>,
}

/// A service's mount of a config or secret: its name, or a table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FileMountFile {
    /// The config's or secret's name, at its default target.
    Name(String),
    Long(FileMountLong),
}

/// A mount with its target, owner, mode and reload signal.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMountLong {
    /// The config's or secret's name.
    pub source: String,
    /// Absolute path of the file in the container. Default `/<name>` for a
    /// config, `/run/secrets/<name>` for a secret.
    pub target: Option<String>,
    /// Numeric owner. Default: the service's numeric `user`, else 0.
    pub uid: Option<IntOrString>,
    /// Numeric group. Default: the group of the service's numeric `user`, else 0.
    pub gid: Option<IntOrString>,
    /// Octal permission bits as a string, e.g. "0440". Default "0444" for a
    /// config, "0400" for a secret.
    pub mode: Option<String>,
    /// Signal sent to the running container when the content changes,
    /// instead of replacing the container (e.g. "SIGHUP").
    pub reload: Option<IntOrString>,
}

/// One service: `count` identical containers of one image.
#[derive(Debug, Deserialize, JsonSchema)]
// Unknown keys are refused (in the schema; serde cannot with `flatten`).
#[schemars(deny_unknown_fields)]
pub struct ServiceFile {
    /// Image reference: `[registry[:port]/]repository[:tag][@sha256:digest]`.
    pub image: String,
    /// The container settings, declared beside the model's.
    #[serde(flatten)]
    pub settings: super::model::ContainerSettingsFile,
    /// Number of instances (containers), 1 to 100. Default 1.
    #[schemars(range(min = 1, max = 100))]
    pub count: Option<IntOrString>,
    /// Replaces the image's CMD. A string is split into words like a shell
    /// would (no expansion); a list is taken as it is.
    pub command: Option<StringOrList>,
    /// Replaces the image's ENTRYPOINT; same forms as `command`.
    pub entrypoint: Option<StringOrList>,
    /// Published ports, Docker `-p` syntax: `[ip:][host:]container[/tcp|udp|sctp]`,
    /// ranges allowed (`8000-8001:80-81`). A container port alone lets the
    /// host pick the host port.
    pub ports: Option<Vec<IntOrString>>,
    /// Environment: a table, or a list of `KEY=value`. Wins over `env_file`.
    pub env: Option<Env>,
    /// `.env`-syntax files (relative to the deployment file) read into the
    /// environment before `env`.
    pub env_file: Option<StringOrList>,
    /// `name:/path[:ro|rw]` (a named volume berth manages) or
    /// `/abs/host/path:/path[:ro|rw]` (a bind mount). Volumes the image
    /// declares are kept automatically.
    pub volumes: Option<Vec<String>>,
    /// `service[:alias]`: start after that service, reach it as `alias`, and
    /// get the legacy `<ALIAS>_PORT_*` variables.
    pub links: Option<Vec<String>>,
    /// Names of keys (from `keys`) allowed to `ssh` into this service.
    pub ssh: Option<Vec<String>>,
    /// Shell for interactive SSH sessions (absolute path); `/bin/sh` by default.
    pub ssh_shell: Option<String>,
    /// `always` (default; `unless-stopped` means the same), `on-failure` or `no`.
    pub restart: Option<Restart>,
    /// Container labels (names starting with `berth.` are reserved).
    pub labels: Option<BTreeMap<String, Scalar>>,
    /// Seconds between the stop signal and SIGKILL: a number or a duration
    /// such as "30s" or "2m". Default 10.
    pub stop_timeout: Option<IntOrString>,
    /// Snapshot the instance's volumes before `berth apply` recreates it for a
    /// changed image (kept under the state directory, see `berth snapshots`).
    /// Default true.
    pub snapshot_on_upgrade: Option<bool>,
    /// Upgrade snapshots kept per instance of this service, 1 to 1000;
    /// overrides the deployment's `snapshots_keep`. Default 3.
    #[schemars(range(min = 1, max = 1000))]
    pub snapshots_keep: Option<u32>,
    /// `true`: scheduled updates move this service (on the deployment's
    /// `auto_update` schedule, daily without one); `false`: never, whatever
    /// the deployment says.
    pub auto_update: Option<bool>,
    /// The health check Docker runs and berth acts on, or `false` to disable
    /// the image's HEALTHCHECK. Without it, the image's check (if any) is used.
    pub health: Option<HealthSetting>,
    /// Configs delivered into the containers before they start.
    pub configs: Option<Vec<FileMountFile>>,
    /// Secrets delivered into the containers before they start.
    pub secrets: Option<Vec<FileMountFile>>,
    /// On a swarm (`--target swarm`): how an update replaces the service's
    /// tasks (Compose's `deploy.update_config`). No effect on a host.
    pub update_config: Option<UpdateConfigFile>,
    /// On a swarm: how the service is reached by its name, `vip` (default:
    /// one virtual address; needs IPVS on the nodes) or `dnsrr` (the name
    /// resolves to every task's address). No effect on a host.
    pub endpoint_mode: Option<EndpointModeFile>,
    /// On a swarm: where the service's tasks may run, as Swarm constraints
    /// (`node.labels.disk==ssd`, `node.role==worker`, `node.hostname!=n1`).
    /// A service with volumes is pinned to a node that also meets them.
    /// No effect on a host.
    pub placement: Option<Vec<String>>,
}

/// A rolling update on a swarm. Defaults: one task at a time, no delay,
/// start-first (stop-first for a service with volumes or a published host
/// port), rolled back on the first failure, each new task watched for 3s.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfigFile {
    /// Tasks updated at once, 0 to 100 (0: all at once).
    #[schemars(range(min = 0, max = 100))]
    pub parallelism: Option<IntOrString>,
    /// Time between one batch of tasks and the next, e.g. "10s".
    pub delay: Option<IntOrString>,
    /// `start-first` (the new task runs before the old one stops) or
    /// `stop-first`.
    pub order: Option<UpdateOrderFile>,
    /// `rollback` (default), `pause` or `continue`.
    pub failure_action: Option<FailureActionFile>,
    /// Time each new task is watched for failure, e.g. "5s".
    pub monitor: Option<IntOrString>,
    /// Fraction of new tasks (0 to 1) that may fail before the update fails.
    pub max_failure_ratio: Option<NumberOrString>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrderFile {
    StartFirst,
    StopFirst,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureActionFile {
    Rollback,
    Pause,
    Continue,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointModeFile {
    Vip,
    Dnsrr,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AutoUpdateSetting {
    /// `true`: the default schedule; `false`: none.
    Enabled(bool),
    Table(AutoUpdateFile),
}

/// When and how scheduled updates run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoUpdateFile {
    /// "hourly", "daily" (the default), "weekly" (Monday), or "every N" with
    /// seconds dividing a minute ("every 10s"), minutes dividing an hour
    /// ("every 15m") or hours dividing a day ("every 6h"); in UTC.
    #[schemars(regex(
        pattern = r"^\s*(hourly|daily|weekly|every\s*[0-9]+\s*(s|sec|seconds?|m|min|minutes?|h|hours?))\s*$"
    ))]
    pub schedule: Option<String>,
    /// Up to this long is added at random to every run: seconds or a
    /// duration such as "1h". Default 0.
    pub randomized_delay: Option<IntOrString>,
    /// How long each updated service may take to be running and healthy
    /// before it is rolled back. Default 2m.
    pub health_timeout: Option<IntOrString>,
    /// How long it must then stay so. Default 5s.
    pub settle: Option<IntOrString>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HealthSetting {
    /// `false`: no health check, not even the image's.
    Disabled(bool),
    Check(HealthFile),
}

/// A health check. Timings default to Docker's (30s interval, 30s timeout,
/// 3 retries, no start period).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// The check: a shell command (run with `/bin/sh -c`) or a list (exec
    /// form). Exit 0 means healthy. Default: the image's HEALTHCHECK command.
    pub cmd: Option<StringOrList>,
    /// Time between checks, e.g. "5s" (a number is seconds).
    pub interval: Option<IntOrString>,
    /// Time one check may take before it counts as failed.
    pub timeout: Option<IntOrString>,
    /// Time after start during which failed checks do not count.
    pub start_period: Option<IntOrString>,
    /// Failed checks in a row that make the instance unhealthy (1 to 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub retries: Option<IntOrString>,
    /// `restart` (default: replace the container with a fresh one, volumes
    /// kept) or `ignore` (report only).
    pub on_unhealthy: Option<OnUnhealthyFile>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthyFile {
    Restart,
    Ignore,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Text(String),
}

/// A resource limit: one number for soft and hard, or both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UlimitFile {
    Both(i64),
    SoftHard { soft: i64, hard: i64 },
}

/// A map of names to values, or a list of `name=value` (or `host:ip`) entries.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MapOrList {
    Map(std::collections::BTreeMap<String, IntOrString>),
    List(Vec<String>),
}

/// `logging`: a driver and its options.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// Log driver, e.g. "json-file", "local", "none".
    pub driver: Option<String>,
    /// Driver options, e.g. `{ max-size = "10m" }`.
    pub options: Option<std::collections::BTreeMap<String, IntOrString>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NumberOrString {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Env {
    /// `{ KEY = "value" }`; names match `[A-Za-z_][A-Za-z0-9_]*`.
    Table(BTreeMap<String, Scalar>),
    /// `["KEY=value", ...]`.
    List(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Always,
    UnlessStopped,
    OnFailure,
    No,
}

/// The JSON Schema of the native deployment file.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(DeploymentFile);
    let mut v = schema.to_value();
    // `x-` extension keys are accepted (and ignored) at the top level and in
    // services, as in Compose.
    let ext = serde_json::json!({ "^x-": {} });
    v["patternProperties"] = ext.clone();
    v["$defs"]["ServiceFile"]["patternProperties"] = ext;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::decode::{SERVICE_KEYS, TOP_KEYS};

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    #[test]
    fn schema_lists_exactly_the_keys_the_parser_accepts() {
        let s = json_schema();
        let mut top: Vec<String> = TOP_KEYS.iter().map(|s| s.to_string()).collect();
        top.sort();
        assert_eq!(keys(&s), top);
        let mut svc: Vec<String> = SERVICE_KEYS.iter().map(|s| s.to_string()).collect();
        svc.sort();
        assert_eq!(keys(&s["$defs"]["ServiceFile"]), svc);
        assert_eq!(s["$defs"]["ServiceFile"]["additionalProperties"], false);
        let mut health: Vec<String> = crate::deployment::decode::HEALTH_KEYS
            .iter()
            .map(|s| s.to_string())
            .collect();
        health.sort();
        assert_eq!(keys(&s["$defs"]["HealthFile"]), health);
        let mut update: Vec<String> = crate::deployment::decode::UPDATE_CONFIG_KEYS
            .iter()
            .map(|s| s.to_string())
            .collect();
        update.sort();
        assert_eq!(keys(&s["$defs"]["UpdateConfigFile"]), update);
    }

    /// A container setting is declared in the model and in its file form
    /// alike (adding one to only one of them fails here).
    #[test]
    fn every_container_setting_has_its_file_form() {
        let model = serde_json::to_value(schemars::schema_for!(
            crate::deployment::model::ContainerSettings
        ))
        .unwrap();
        let file = serde_json::to_value(schemars::schema_for!(
            crate::deployment::model::ContainerSettingsFile
        ))
        .unwrap();
        assert_eq!(keys(&model), keys(&file));
        assert!(keys(&file).contains(&"privileged".to_string()));
    }

    /// The fixtures also deserialize into the schema types (TOML and JSON).
    #[test]
    fn fixtures_fit_the_schema_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let t = std::fs::read_to_string(dir.join("example.toml")).unwrap();
        let _: DeploymentFile = ::toml::from_str(&t).unwrap();
        let j = std::fs::read_to_string(dir.join("example.json")).unwrap();
        let _: DeploymentFile = serde_json::from_str(&j).unwrap();
    }
}
