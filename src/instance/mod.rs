//! [`InstanceSpec`]: everything needed to create one instance's container,
//! resolved from the deployment and the image. It is what `apply` compares
//! (through its hash) and what `berth supervise <container>` runs, read from
//! `<state>/instances/<container>.json`, without the deployment file.
//!
//! The layer between the deployment model (`spec`) and everything that acts
//! on containers (`engine`, `plan`, `apply`, the integrations, `ops`,
//! `data`): it imports none of them. [`resolve`] builds the specs (with
//! [`link_variables`]); [`json_diff`] is the one field-by-field diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::deployment::{
    ContainerSettings, Health, InstanceRef, OnUnhealthy, PortMapping, Protocol, RestartPolicy,
};
use crate::error::{Error, Result};
use crate::names;
use crate::state::StateDir;

/// What berth needs to know about a local image (the engine inspects it;
/// resolution takes its ID, exposed ports and declared volumes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// Content-addressed image ID (`sha256:...`).
    pub id: String,
    /// Ports the image `EXPOSE`s, sorted.
    pub exposed_ports: Vec<(u16, Protocol)>,
    /// Container paths the image declares as `VOLUME`, sorted.
    pub volumes: Vec<String>,
    /// The image declares a `HEALTHCHECK` (other than `NONE`).
    pub healthcheck: bool,
}

/// Which mechanism keeps instances running; decides Docker's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integration {
    /// systemd units run `berth supervise`; Docker's restart policy is `no`.
    Systemd,
    /// Docker's restart policy keeps containers running.
    Docker,
    /// `berth up` supervises in the foreground; Docker's restart policy is `no`.
    Foreground,
    /// A Docker Swarm (the engine berth talks to is a manager): one Swarm
    /// service per berth service, kept running by the swarm.
    Swarm,
}

impl Integration {
    /// `systemd`, `docker`, `foreground` or `swarm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Integration::Systemd => "systemd",
            Integration::Docker => "docker",
            Integration::Foreground => "foreground",
            Integration::Swarm => "swarm",
        }
    }

    /// The Docker restart policy an instance gets under this integration.
    pub fn docker_restart(self, policy: RestartPolicy) -> &'static str {
        match self {
            Integration::Docker => policy.docker(),
            _ => "no",
        }
    }

    /// Parse [`Integration::as_str`]'s names (as recorded in a revision).
    pub fn parse(s: &str) -> Option<Integration> {
        match s {
            "systemd" => Some(Integration::Systemd),
            "docker" => Some(Integration::Docker),
            "foreground" => Some(Integration::Foreground),
            "swarm" => Some(Integration::Swarm),
            _ => None,
        }
    }
}

/// A mount of one instance with its concrete source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Where it is mounted in the container.
    pub target: String,
    /// What is mounted.
    pub source: MountSource,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// The source of a [`MountSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountSource {
    /// A berth-owned named volume (`name` is the engine's volume name).
    Volume {
        /// Engine volume name.
        name: String,
        /// True when the image declared this path as a `VOLUME`, rather than
        /// the deployment file listing it.
        #[serde(default)]
        from_image: bool,
    },
    /// A host path.
    Bind {
        /// Absolute host path.
        path: PathBuf,
    },
}

/// Everything needed to create one instance's container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Deployment name.
    pub deployment: String,
    /// Service name.
    pub service: String,
    /// 1-based instance number.
    pub index: u32,
    /// Container name on the engine.
    pub container: String,
    /// Image reference as written in the file.
    pub image: String,
    /// Image ID the reference resolved to when the spec was made; a new ID
    /// (image upgrade) changes the spec and so recreates the container.
    pub image_id: String,
    /// Overrides the image's `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Overrides the image's `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment: the file's env plus link variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Named volumes (listed and image-declared) and bind mounts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The deployment network.
    pub network: String,
    /// DNS names of the container on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Labels from the file (berth's own labels are added on creation).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The service's restart policy (what systemd or `berth up` applies).
    pub restart: RestartPolicy,
    /// Docker's restart policy for the container (`no`, `unless-stopped`, `on-failure`).
    pub docker_restart: String,
    /// The service's container settings, as the file sets them.
    #[serde(flatten)]
    pub settings: ContainerSettings,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    /// The file's health check (or `health = false`); `None`: the image's,
    /// if it declares one. Part of the hash: a changed check recreates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Configs and secrets delivered before the container starts (absent
    /// when none, so that such specs hash as they always did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Their contents: never serialised; filled by [`resolve`] and by
    /// [`InstanceSpec::read`] from the state directory.
    #[serde(skip)]
    pub contents: FileContents,
}

mod diff;
pub mod files;
#[cfg(test)]
mod hash_fixture;
mod links;
mod resolve;
pub mod swarm;

pub use diff::{AbsentTable, FieldChange, json_diff};
pub use files::{DigestKey, FileContents, FileSpec};
pub use links::{link_prefix, link_variables};
pub use resolve::{resolve, resolve_keyed, volume_owner};
pub use swarm::{EndpointMode, SwarmSpec, SwarmUpdate};

use diff::short;

impl InstanceSpec {
    /// `sha256:<hex>` of the spec's canonical JSON (maps are sorted, field
    /// order is fixed): the `berth.spec-hash` label.
    pub fn hash(&self) -> String {
        // Serialising this struct cannot fail: every field is a plain value
        // and every map has string keys.
        let json = if self.files.iter().any(|f| f.reload.is_some()) {
            // A file with a reload signal is updated in the running
            // container: its content is not part of what the container is.
            let mut v = serde_json::to_value(self).unwrap_or_default();
            if let Some(files) = v.get_mut("files").and_then(|f| f.as_array_mut()) {
                for f in files.iter_mut().filter(|f| f.get("reload").is_some()) {
                    if let Some(o) = f.as_object_mut() {
                        o.remove("digest");
                    }
                }
            }
            serde_json::to_vec(&v).unwrap_or_default()
        } else {
            serde_json::to_vec(self).unwrap_or_default()
        };
        let digest = Sha256::digest(&json);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// What to do when the instance turns unhealthy (the image's check,
    /// without a `health` table, restarts).
    pub fn on_unhealthy(&self) -> OnUnhealthy {
        self.health
            .as_ref()
            .map(|h| h.on_unhealthy)
            .unwrap_or_default()
    }

    /// The instance this spec is for.
    pub fn instance_ref(&self) -> InstanceRef {
        InstanceRef {
            deployment: self.deployment.clone(),
            service: self.service.clone(),
            index: self.index,
            container: self.container.clone(),
        }
    }

    /// Named volumes the instance mounts: (engine name, container path).
    pub fn volume_names(&self) -> Vec<(&str, &str)> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::Volume { name, .. } => Some((name.as_str(), m.target.as_str())),
                MountSource::Bind { .. } => None,
            })
            .collect()
    }

    /// Who the instance's container belongs to.
    pub fn owner(&self) -> names::Owner {
        names::Owner {
            deployment: self.deployment.clone(),
            service: self.service.clone(),
            instance: self.index,
            volume: None,
        }
    }

    /// The named volumes the instance mounts: engine name, container path,
    /// and whose (which volume of this instance) it is.
    pub fn volume_owners(&self) -> Vec<(&str, &str, names::Owner)> {
        let prefix = format!(
            "{}-",
            names::volume_prefix(&self.deployment, &self.service, self.index)
        );
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                MountSource::Volume { name, from_image } => {
                    let key = if *from_image {
                        m.target.clone()
                    } else {
                        name.strip_prefix(&prefix).unwrap_or(name).to_string()
                    };
                    let owner = names::Owner {
                        volume: Some(key),
                        ..self.owner()
                    };
                    Some((name.as_str(), m.target.as_str(), owner))
                }
                MountSource::Bind { .. } => None,
            })
            .collect()
    }

    /// The labels a volume of this instance is created with.
    pub fn volume_labels(
        &self,
        owner: &names::Owner,
        path: &str,
        revision: u64,
    ) -> BTreeMap<String, String> {
        let mut l = owner.labels();
        l.insert(names::LABEL_REVISION.into(), revision.to_string());
        l.insert(names::LABEL_VOLUME_PATH.into(), path.to_string());
        l
    }

    /// The labels every object of this instance carries (container and its
    /// volumes), given the revision that creates it.
    pub fn berth_labels(&self, revision: u64) -> BTreeMap<String, String> {
        let mut l = self.owner().labels();
        l.insert(names::LABEL_REVISION.into(), revision.to_string());
        l
    }

    /// A readable list of what differs between `self` (before) and `other`
    /// (after): `env.FOO: "a" → "b"`, `image_id: ...`. Empty when equal.
    pub fn diff(&self, other: &InstanceSpec) -> Vec<String> {
        let mut a = serde_json::to_value(self).unwrap_or_default();
        let mut b = serde_json::to_value(other).unwrap_or_default();
        // Files by name (their digests say nothing to a reader).
        for v in [&mut a, &mut b] {
            if let Some(o) = v.as_object_mut() {
                o.remove("files");
            }
        }
        let mut out: Vec<String> = json_diff(&a, &b, AbsentTable::Whole)
            .into_iter()
            .map(|c| format!("{}: {} → {}", c.path, short(&c.before), short(&c.after)))
            .collect();
        out.extend(files::diff_lines(&self.files, &other.files));
        out
    }

    /// Read a spec written by [`InstanceSpec::write`]; `None` if there is none.
    pub fn read(state: &StateDir, container: &str) -> Result<Option<InstanceSpec>> {
        let spec: Option<InstanceSpec> =
            crate::state::read_json(&state.instance_spec(container), "instance spec")?;
        match spec {
            Some(mut s) if !s.files.is_empty() => {
                s.contents = files::load(state, container, &s.files)?;
                Ok(Some(s))
            }
            other => Ok(other),
        }
    }

    /// Write the spec to `<state>/instances/<container>.json`, mode 0600 in a
    /// 0700 directory, atomically (a reader sees the old or the new file,
    /// never a partial one).
    pub fn write(&self, state: &StateDir) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Runtime(format!("cannot serialise instance spec: {e}")))?;
        let path = state.instance_spec(&self.container);
        // The contents first: a spec on disk always finds what it names.
        files::store(state, &self.container, &self.files, &self.contents)?;
        // Unchanged: leave the file alone (a no-op apply writes nothing).
        if std::fs::read(&path).ok().as_deref() == Some(json.as_slice()) {
            return Ok(());
        }
        crate::state::write_private(&path, &json)
    }

    /// Every instance spec in the state directory that belongs to `deployment`.
    pub fn read_all(state: &StateDir, deployment: &str) -> Result<Vec<InstanceSpec>> {
        let mut out = Vec::new();
        for container in state.instance_spec_names()? {
            let container = container.as_str();
            // Only files whose name says they could belong to this deployment.
            if !container.starts_with(&format!("{deployment}-")) {
                continue;
            }
            if let Ok(Some(spec)) = InstanceSpec::read(state, container)
                && spec.deployment == deployment
            {
                out.push(spec);
            }
        }
        out.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Deployment;

    fn dep() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "name": "ex",
            "services": {
                "mail": {"name": "mail", "image": "mailimg", "count": 1,
                          "ports": [{"host_port": 2525, "container_port": 25}],
                          "volumes": [{"source": {"named": "spool"}, "target": "/var/spool/exim4"}]},
                "web": {"name": "web", "image": "webimg", "count": 2,
                         "links": [{"target": "mail", "alias": "smtp"}],
                         "env": {"SMTP_PORT": "overridden"}}
            }
        }))
        .unwrap_or_else(|e| panic!("test model: {e}"))
    }

    fn images() -> BTreeMap<String, ImageInfo> {
        BTreeMap::from([
            (
                "mailimg".to_string(),
                ImageInfo {
                    id: "sha256:m".into(),
                    exposed_ports: vec![(143, Protocol::Tcp), (25, Protocol::Tcp)],
                    volumes: vec!["/var/spool/exim4".into(), "/var/mail".into()],
                    healthcheck: false,
                },
            ),
            (
                "webimg".to_string(),
                ImageInfo {
                    id: "sha256:w".into(),
                    ..Default::default()
                },
            ),
        ])
    }

    #[test]
    fn link_variables_follow_docker_link_conventions() {
        let env = link_variables(
            "ex-web",
            "db",
            "mail",
            &[(5432, Protocol::Tcp), (53, Protocol::Udp)],
        );
        assert_eq!(env["DB_NAME"], "/ex-web/db");
        assert_eq!(env["DB_PORT"], "udp://mail:53");
        assert_eq!(env["DB_PORT_5432_TCP"], "tcp://mail:5432");
        assert_eq!(env["DB_PORT_5432_TCP_ADDR"], "mail");
        assert_eq!(env["DB_PORT_5432_TCP_PORT"], "5432");
        assert_eq!(env["DB_PORT_5432_TCP_PROTO"], "tcp");
        assert_eq!(env["DB_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(link_prefix("my-db.x"), "MY_DB_X");
    }

    #[test]
    fn resolve_fills_volumes_aliases_links_and_policies() {
        let specs = resolve(&dep(), &images(), Integration::Docker);
        let names: Vec<&str> = specs.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(names, ["ex-mail", "ex-web-1", "ex-web-2"]);
        let mail = &specs[0];
        assert_eq!(mail.image_id, "sha256:m");
        assert_eq!(mail.docker_restart, "unless-stopped");
        // The file's volume covers the image's path; the other path gets its own.
        let vols = mail.volume_names();
        assert_eq!(
            vols,
            vec![
                ("ex-mail-spool", "/var/spool/exim4"),
                (
                    names::image_volume_name("ex-mail", "/var/mail").as_str(),
                    "/var/mail"
                )
            ]
        );
        assert_eq!(mail.aliases, ["mail", "smtp"]);
        let web = &specs[1];
        assert_eq!(web.aliases, ["web", "ex-web-1"]);
        assert_eq!(web.env["SMTP_PORT_143_TCP_ADDR"], "mail");
        assert_eq!(web.env["SMTP_PORT_25_TCP"], "tcp://mail:25");
        assert!(
            !web.env.contains_key("SMTP_PORT_2525_TCP"),
            "container ports, not host ports"
        );
        assert_eq!(web.env["SMTP_NAME"], "/ex-web-1/smtp");
        assert_eq!(web.env["SMTP_PORT"], "overridden", "the file's env wins");
        let sd = resolve(&dep(), &images(), Integration::Systemd);
        assert_eq!(sd[0].docker_restart, "no");
    }

    #[test]
    fn hash_is_stable_and_diff_names_fields() {
        let a = resolve(&dep(), &images(), Integration::Docker);
        let b = resolve(&dep(), &images(), Integration::Docker);
        assert_eq!(a[0].hash(), b[0].hash());
        let mut c = a[0].clone();
        c.env.insert("NEW".into(), "1".into());
        c.image_id = "sha256:n".into();
        assert_ne!(a[0].hash(), c.hash());
        let d = a[0].diff(&c);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("env.NEW: (none) → \"1\"")));
        assert!(d.iter().any(|l| l.starts_with("image_id:")));
    }

    #[test]
    fn a_changed_health_check_changes_the_hash() {
        let base = resolve(&dep(), &images(), Integration::Systemd);
        let mut d = dep();
        let mail = d.services.get_mut("mail").unwrap_or_else(|| panic!("mail"));
        mail.health = Some(crate::deployment::Health {
            test: Some(vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()]),
            ..Default::default()
        });
        let with = resolve(&d, &images(), Integration::Systemd);
        assert_ne!(base[0].hash(), with[0].hash());
        assert_eq!(base[1].hash(), with[1].hash(), "other services unchanged");
        let diff = base[0].diff(&with[0]);
        assert!(diff.iter().any(|l| l.starts_with("health")), "{diff:?}");
        let mut d2 = d.clone();
        if let Some(h) = d2.services.get_mut("mail").and_then(|m| m.health.as_mut()) {
            h.interval_ms = Some(2000);
        }
        let changed = resolve(&d2, &images(), Integration::Systemd);
        assert_ne!(with[0].hash(), changed[0].hash());
        // No `health` in the file: the spec (and its hash) is what it was
        // before health checks existed.
        let json = serde_json::to_value(&base[0]).unwrap_or_default();
        assert!(json.get("health").is_none());
    }

    #[test]
    fn files_are_in_the_hash_but_a_reload_files_content_is_not() {
        let base = resolve(&dep(), &images(), Integration::Systemd);
        let mut d = dep();
        d.configs.insert(
            "users".into(),
            crate::deployment::FileSource {
                content: "alice\n".into(),
            },
        );
        let mount = |reload: Option<&str>| crate::deployment::FileMount {
            source: "users".into(),
            target: "/etc/users".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            reload: reload.map(String::from),
        };
        let key = DigestKey::fixed();
        let with = |d: &Deployment| resolve_keyed(d, &images(), Integration::Systemd, &key);
        d.services
            .get_mut("mail")
            .unwrap_or_else(|| panic!("mail"))
            .configs = vec![mount(None)];
        let a = with(&d);
        assert_ne!(base[0].hash(), a[0].hash());
        assert_eq!(base[1].hash(), a[1].hash(), "web mounts nothing");
        let mut d2 = d.clone();
        d2.configs
            .get_mut("users")
            .unwrap_or_else(|| panic!("users"))
            .content = "bob\n".into();
        let b = with(&d2);
        assert_ne!(a[0].hash(), b[0].hash(), "a change is a change");
        assert_eq!(a[0].diff(&b[0]), ["config users: content changed"]);
        assert!(files::reloads(&a[0].files, &b[0].files).is_empty());
        // With a reload signal, only the content changed: same hash, a reload.
        for dd in [&mut d, &mut d2] {
            dd.services
                .get_mut("mail")
                .unwrap_or_else(|| panic!("mail"))
                .configs = vec![mount(Some("SIGHUP"))];
        }
        let (ra, rb) = (with(&d), with(&d2));
        assert_eq!(ra[0].hash(), rb[0].hash());
        assert_eq!(files::reloads(&ra[0].files, &rb[0].files).len(), 1);
        // The spec never carries the content.
        let json = serde_json::to_string(&rb[0]).unwrap_or_default();
        assert!(!json.contains("bob"), "{json}");
        assert!(!format!("{:?}", rb[0]).contains("bob"));
    }

    #[test]
    fn private_files_are_atomic_and_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::new(dir.path().join("state"));
        let spec = resolve(&dep(), &images(), Integration::Docker).remove(0);
        spec.write(&state).unwrap_or_else(|e| panic!("{e}"));
        let meta =
            std::fs::metadata(state.instance_spec("ex-mail")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dmeta = std::fs::metadata(state.instances_dir()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dmeta.permissions().mode() & 0o777, 0o700);
        let back = InstanceSpec::read(&state, "ex-mail").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.as_ref(), Some(&spec));
        assert_eq!(
            InstanceSpec::read_all(&state, "ex").map(|v| v.len()).ok(),
            Some(1)
        );
        assert_eq!(
            InstanceSpec::read_all(&state, "e").map(|v| v.len()).ok(),
            Some(0)
        );
    }
}
