//! The resolved form of one berth service on a Docker Swarm: one Swarm
//! service, `count` replicas. Made from the service's first
//! [`InstanceSpec`] (so env, link variables, mounts, health check and the
//! container settings are resolved once, as on a host); the engine maps it
//! to the Swarm API (`engine::services`), the swarm target diffs it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileContents, InstanceSpec, MountSpec, diff::short, json_diff};
pub use crate::deployment::EndpointMode;
use crate::deployment::{
    ContainerSettings, FailureAction, FileKind, Health, PortMapping, RestartPolicy, Service,
    UpdateConfig, UpdateOrder,
};
use crate::instance::AbsentTable;
use crate::names;

/// One berth service as a Swarm service. Serialised into the service's
/// `berth.swarm-spec` label: what a later plan diffs the file against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmSpec {
    /// Deployment name.
    pub deployment: String,
    /// Service name in the file.
    pub service: String,
    /// Swarm service name (`<deployment>-<service>`).
    pub name: String,
    /// Image reference as written in the file.
    pub image: String,
    /// The digest the registry served for `image` when the spec was made
    /// (`sha256:...`): the service runs `image@digest`, so a push to the
    /// same tag changes the spec. `None`: the registry could not be asked
    /// (or `image` names a digest itself), the tag runs as the nodes have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `count`.
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The file's env plus link variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels from the file.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Published ports, in host mode (each node where a task runs).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Named volumes (created on each node a task runs on) and bind mounts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The deployment's overlay network.
    pub network: String,
    /// Further names the service is reached by there (link aliases).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub endpoint_mode: EndpointMode,
    /// How an update replaces the tasks (the file's `update_config` over
    /// berth's defaults). A spec recorded before berth wrote it reads as
    /// the fixed configuration berth used then ([`SwarmUpdate::default`]).
    #[serde(default)]
    pub update: SwarmUpdate,
    pub restart: RestartPolicy,
    #[serde(flatten)]
    pub settings: ContainerSettings,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// For a service with named volumes: the node label that pins it to the
    /// node holding them ([`pin_label`]); its tasks run only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<String>,
    /// The service's own placement constraints (`placement`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
    /// Configs and secrets, each a Swarm config or secret of its own
    /// (named after its content, see [`SwarmFile::object`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SwarmFile>,
    /// Their contents, by digest: never serialised (the recorded spec is a
    /// label anyone with engine access reads).
    #[serde(skip)]
    pub contents: FileContents,
}

/// One config or secret of a Swarm service: the Swarm object holding it and
/// where the task gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmFile {
    pub kind: FileKind,
    /// The name in the deployment file.
    pub name: String,
    /// The Swarm config's or secret's name, `<deployment>_<name>_<12 hex of
    /// the content's digest>` ([`object_name`]): a new content is a new
    /// object, and so a new service spec that rolls the service.
    pub object: String,
    /// Absolute path in the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The content's digest (plain SHA-256 for a config, keyed HMAC for a
    /// secret), to find it in [`SwarmSpec::contents`]; not recorded.
    #[serde(skip)]
    pub digest: String,
    /// The file's reload signal: on a swarm a change rolls the service
    /// instead (a signal cannot reach tasks across nodes); only for `plan`
    /// to say so, not recorded.
    #[serde(skip)]
    pub reload: Option<String>,
}

/// Longest name Swarm accepts for a config or secret.
pub const MAX_OBJECT_NAME: usize = 64;

/// The Swarm object name of a config or secret of `deployment` named `name`
/// in the file, whose content has `digest` (`sha256:<hex>` or
/// `hmac-sha256:<hex>`): `<deployment>_<name>_<first 12 hex>`. Names too
/// long for Swarm keep their start, and the 12 hex then cover the name too.
pub fn object_name(deployment: &str, name: &str, digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    let short: String = hex.chars().take(12).collect();
    let full = format!("{deployment}_{name}_{short}");
    if full.len() <= MAX_OBJECT_NAME {
        return full;
    }
    let mixed = Sha256::digest(format!("{deployment}\0{name}\0{digest}").as_bytes());
    let short: String = mixed.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let head: String = format!("{deployment}_{name}")
        .chars()
        .take(MAX_OBJECT_NAME - 13)
        .collect();
    format!("{head}_{short}")
}

/// A service's rolling update, every setting resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmUpdate {
    /// Tasks replaced at once (0: all).
    pub parallelism: u64,
    /// Milliseconds between two batches.
    pub delay_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// Milliseconds each new task is watched for failure.
    pub monitor_ms: u64,
    /// Fraction of new tasks that may fail.
    pub max_failure_ratio: f64,
}

/// How long Swarm watches each updated task for failure by default before
/// it moves on (and, after the last, calls the update complete).
pub const UPDATE_MONITOR_MS: u64 = 3000;

impl Default for SwarmUpdate {
    /// One task at a time, stop-first, rolled back on the first failure.
    fn default() -> Self {
        SwarmUpdate {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Rollback,
            monitor_ms: UPDATE_MONITOR_MS,
            max_failure_ratio: 0.0,
        }
    }
}

impl SwarmUpdate {
    /// The file's `update_config` over berth's defaults. The default order
    /// is start-first (the service keeps answering while it updates) except
    /// for a service with volumes (two tasks must never use them at once)
    /// or one publishing a fixed host-mode port (a new task could not start
    /// beside the old one on its node, and would answer on another node's
    /// address): those stop first.
    pub fn resolve(config: Option<&UpdateConfig>, volumes: bool, host_ports: bool) -> Self {
        let base = SwarmUpdate {
            order: if volumes || host_ports {
                UpdateOrder::StopFirst
            } else {
                UpdateOrder::StartFirst
            },
            ..SwarmUpdate::default()
        };
        let Some(c) = config else {
            return base;
        };
        SwarmUpdate {
            parallelism: c.parallelism.unwrap_or(base.parallelism),
            delay_ms: c.delay_ms.unwrap_or(base.delay_ms),
            order: c.order.unwrap_or(base.order),
            failure_action: c.failure_action.unwrap_or(base.failure_action),
            monitor_ms: c.monitor_ms.unwrap_or(base.monitor_ms),
            max_failure_ratio: c.max_failure_ratio.unwrap_or(base.max_failure_ratio),
        }
    }

    /// Tasks of `replicas` that run beside the old ones at one time during
    /// a start-first update (none for stop-first).
    pub fn surge(&self, replicas: u32) -> u32 {
        match self.order {
            UpdateOrder::StopFirst => 0,
            UpdateOrder::StartFirst if self.parallelism == 0 => replicas,
            UpdateOrder::StartFirst => {
                u32::try_from(self.parallelism.min(u64::from(replicas))).unwrap_or(replicas)
            }
        }
    }
}

/// The node label that marks the node holding `service`'s volumes. Volumes
/// on a swarm are the node's own: a task started elsewhere would find them
/// empty, so the service runs only on the node carrying this label (chosen
/// at its first apply, kept after destroy so the data is found again).
pub fn pin_label(deployment: &str, service: &str) -> String {
    format!("berth.data.{deployment}.{service}")
}

/// Name of the Swarm service of `service` in `deployment`.
pub fn swarm_service_name(deployment: &str, service: &str) -> String {
    names::container_name(deployment, service, 1, 1)
}

impl SwarmSpec {
    /// The Swarm service for `svc`, whose first instance is `first`.
    pub fn from_instance(first: &InstanceSpec, svc: &Service) -> Self {
        let volumes = first
            .mounts
            .iter()
            .any(|m| matches!(m.source, crate::instance::MountSource::Volume { .. }));
        let host_ports = first.ports.iter().any(|p| p.host_port.is_some());
        let name = swarm_service_name(&first.deployment, &first.service);
        // The Swarm service's own name resolves already; per-instance
        // container names mean nothing on a swarm.
        let aliases = first
            .aliases
            .iter()
            .filter(|a| **a != first.container && **a != name)
            .cloned()
            .collect();
        SwarmSpec {
            deployment: first.deployment.clone(),
            service: first.service.clone(),
            name,
            image: first.image.clone(),
            image_digest: None,
            replicas: svc.count,
            command: first.command.clone(),
            entrypoint: first.entrypoint.clone(),
            env: first.env.clone(),
            labels: first.labels.clone(),
            ports: first.ports.clone(),
            mounts: first.mounts.clone(),
            network: first.network.clone(),
            aliases,
            endpoint_mode: svc.endpoint_mode.unwrap_or_default(),
            update: SwarmUpdate::resolve(svc.update_config.as_ref(), volumes, host_ports),
            restart: first.restart,
            settings: first.settings.clone(),
            stop_timeout: first.stop_timeout,
            health: first.health.clone(),
            pinned_by: volumes.then(|| pin_label(&first.deployment, &first.service)),
            placement: svc.placement.clone(),
            files: first
                .files
                .iter()
                .map(|f| SwarmFile {
                    kind: f.kind,
                    name: f.name.clone(),
                    object: object_name(&first.deployment, &f.name, &f.digest),
                    target: f.target.clone(),
                    uid: f.uid,
                    gid: f.gid,
                    mode: f.mode,
                    digest: f.digest.clone(),
                    reload: f.reload.clone(),
                })
                .collect(),
            contents: first.contents.clone(),
        }
    }

    /// The image reference the service runs: `image@digest` once the
    /// digest is known.
    pub fn image_ref(&self) -> String {
        match &self.image_digest {
            Some(d) if !self.image.contains('@') => format!("{}@{d}", self.image),
            _ => self.image.clone(),
        }
    }

    /// The content of `file`, if at hand.
    pub fn content(&self, file: &SwarmFile) -> Option<&str> {
        self.contents.get(&file.digest)
    }

    fn digest(value: &serde_json::Value) -> String {
        let text = serde_json::to_string(value).unwrap_or_default();
        format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
    }

    /// `sha256:<hex>` of the whole spec: the service's `berth.spec-hash`.
    pub fn hash(&self) -> String {
        Self::digest(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The hash of what each task runs (the spec without `replicas`): set on
    /// the tasks' containers, so that a task shows which spec it runs and a
    /// change of `count` alone does not replace running tasks.
    pub fn task_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("replicas");
        }
        Self::digest(&v)
    }

    /// What differs between `self` (before) and `other` (after), one line
    /// per field: `env.FOO: "a" → "b"`.
    /// The image and configs and secrets are named, never shown raw: an
    /// image change names both references (with their digests), a file its
    /// kind and name.
    pub fn diff(&self, other: &SwarmSpec) -> Vec<String> {
        let mut a = serde_json::to_value(self).unwrap_or_default();
        let mut b = serde_json::to_value(other).unwrap_or_default();
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                for k in ["image", "image_digest", "files"] {
                    o.remove(k);
                }
            }
        }
        let mut out = Vec::new();
        if self.image_ref() != other.image_ref() {
            let show = |s: &SwarmSpec| match &s.image_digest {
                Some(_) => s.image_ref(),
                None if s.image.contains('@') => s.image.clone(),
                None => format!("{} (digest not known)", s.image),
            };
            out.push(format!("image: {} → {}", show(self), show(other)));
        }
        out.extend(
            json_diff(&a, &b, AbsentTable::Whole)
                .into_iter()
                .map(|c| format!("{}: {} → {}", c.path, short(&c.before), short(&c.after))),
        );
        out.extend(file_diff(&self.files, &other.files));
        out
    }
}

/// Diff lines for the configs and secrets of two service specs, by kind and
/// name: what changed, never the content.
fn file_diff(before: &[SwarmFile], after: &[SwarmFile]) -> Vec<String> {
    let key = |f: &SwarmFile| (f.kind, f.name.clone(), f.target.clone());
    let label = |f: &SwarmFile| format!("{} {}", f.kind.as_str(), f.name);
    let mut out = Vec::new();
    for a in after {
        match before.iter().find(|b| key(b) == key(a)) {
            None => out.push(format!("{}: added at {}", label(a), a.target)),
            Some(b) => {
                if b.object != a.object {
                    let how = match &a.reload {
                        Some(sig) => format!(
                            " (new {} {}; reload = {sig} cannot signal tasks across nodes: the service rolls)",
                            a.kind.as_str(),
                            a.object
                        ),
                        None => format!(" (new {} {})", a.kind.as_str(), a.object),
                    };
                    out.push(format!("{}: content changed{how}", label(a)));
                }
                if (b.uid, b.gid, b.mode) != (a.uid, a.gid, a.mode) {
                    out.push(format!(
                        "{}: owner {}:{} mode {:04o} → owner {}:{} mode {:04o}",
                        label(a),
                        b.uid,
                        b.gid,
                        b.mode,
                        a.uid,
                        a.gid,
                        a.mode
                    ));
                }
            }
        }
    }
    for b in before {
        if !after.iter().any(|a| key(a) == key(b)) {
            out.push(format!("{}: removed from {}", label(b), b.target));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SwarmSpec {
        SwarmSpec {
            deployment: "d".into(),
            service: "s".into(),
            name: "d-s".into(),
            image: "reg:5000/app:1".into(),
            image_digest: Some("sha256:aaa".into()),
            replicas: 1,
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            network: "d".into(),
            aliases: Vec::new(),
            endpoint_mode: EndpointMode::Dnsrr,
            update: SwarmUpdate::default(),
            restart: RestartPolicy::Always,
            settings: ContainerSettings::default(),
            stop_timeout: 10,
            health: None,
            pinned_by: None,
            placement: Vec::new(),
            files: vec![SwarmFile {
                kind: FileKind::Secret,
                name: "pw".into(),
                object: object_name("d", "pw", "hmac-sha256:0123456789abcdef"),
                target: "/run/secrets/pw".into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                digest: "hmac-sha256:0123456789abcdef".into(),
                reload: None,
            }],
            contents: FileContents::default(),
        }
    }

    #[test]
    fn object_names_follow_the_content_and_fit_swarm() {
        assert_eq!(
            object_name("mail", "users", "sha256:0123456789abcdef00"),
            "mail_users_0123456789ab"
        );
        let long = "x".repeat(63);
        let a = object_name(&long, &long, "sha256:0123456789abcdef");
        let b = object_name(
            &long,
            &format!("{}y", &long[1..]),
            "sha256:0123456789abcdef",
        );
        let c = object_name(&long, &long, "sha256:fedcba9876543210");
        for n in [&a, &b, &c] {
            assert_eq!(n.len(), MAX_OBJECT_NAME, "{n}");
            assert!(n.ends_with(|c: char| c.is_ascii_hexdigit()), "{n}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn image_and_file_changes_are_named_never_shown() {
        let before = spec();
        let mut after = spec();
        after.image_digest = Some("sha256:bbb".into());
        assert_eq!(after.image_ref(), "reg:5000/app:1@sha256:bbb");
        assert_eq!(
            before.diff(&after),
            ["image: reg:5000/app:1@sha256:aaa → reg:5000/app:1@sha256:bbb"]
        );
        let mut unknown = spec();
        unknown.image_digest = None;
        assert_eq!(unknown.image_ref(), "reg:5000/app:1");
        assert_eq!(
            before.diff(&unknown),
            ["image: reg:5000/app:1@sha256:aaa → reg:5000/app:1 (digest not known)"]
        );

        let mut changed = spec();
        changed.files[0].digest = "hmac-sha256:fedcba9876543210".into();
        changed.files[0].object = object_name("d", "pw", &changed.files[0].digest);
        changed.files[0].reload = Some("SIGHUP".into());
        let lines = before.diff(&changed);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("secret pw: content changed (new secret d_pw_fedcba987654;"),
            "{lines:?}"
        );
        assert!(lines[0].contains("the service rolls"), "{lines:?}");
        assert_ne!(before.hash(), changed.hash());
        assert_ne!(before.task_hash(), changed.task_hash());
    }

    #[test]
    fn the_recorded_spec_holds_no_content_and_no_digest_of_it() {
        let mut s = spec();
        s.contents = {
            let mut c = FileContents::default();
            c.insert("hmac-sha256:0123456789abcdef".into(), "hunter2".into());
            c
        };
        assert_eq!(s.content(&s.files[0]), Some("hunter2"));
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("0123456789abcdef"), "{json}");
        assert!(json.contains("d_pw_0123456789ab"), "{json}");
        let back: SwarmSpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.diff(&s).is_empty(), "{:?}", back.diff(&s));
    }

    #[test]
    fn updates_start_first_unless_volumes_or_host_ports_and_the_file_overrides() {
        let plain = SwarmUpdate::resolve(None, false, false);
        assert_eq!(plain.order, UpdateOrder::StartFirst);
        assert_eq!(plain.failure_action, FailureAction::Rollback);
        assert_eq!(
            (plain.parallelism, plain.monitor_ms),
            (1, UPDATE_MONITOR_MS)
        );
        assert_eq!(
            SwarmUpdate::resolve(None, true, false).order,
            UpdateOrder::StopFirst
        );
        assert_eq!(
            SwarmUpdate::resolve(None, false, true).order,
            UpdateOrder::StopFirst
        );
        let file = UpdateConfig {
            order: Some(UpdateOrder::StartFirst),
            parallelism: Some(0),
            delay_ms: Some(1500),
            ..Default::default()
        };
        let u = SwarmUpdate::resolve(Some(&file), true, false);
        assert_eq!(u.order, UpdateOrder::StartFirst);
        assert_eq!((u.parallelism, u.delay_ms), (0, 1500));
        assert_eq!(u.failure_action, FailureAction::Rollback);
        assert_eq!(u.surge(3), 3);
        assert_eq!(plain.surge(3), 1);
        assert_eq!(SwarmUpdate::default().surge(3), 0);
    }
}
