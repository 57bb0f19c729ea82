//! The state directory (`/var/lib/berth`, `--state-dir`, `BERTH_STATE_DIR`):
//! root-only, it holds what the supervisor and the SSH gateway read at run time
//! (resolved instance specs including secrets and environment, which must never
//! go into world-readable unit files), applied revisions, locks and the gateway's
//! host key.
//!
//! Layout:
//! ```text
//! <state>/deployments/<deployment>/current.json     the applied revision
//! <state>/deployments/<deployment>/revisions/<n>.json
//! <state>/deployments/<deployment>/lock             one apply at a time
//! <state>/deployments/<deployment>/up.pid           a running `berth up`
//! <state>/instances/<container>.json                what `berth supervise <container>` runs
//! <state>/instances/<container>.stopped|.restart|.restarts|.crashes   markers and counters
//! <state>/snapshots/<container>/...                 volume snapshots (see data::snapshot)
//! <state>/ssh/host_ed25519_key                      the gateway's host key (0600)
//! ```
//! `destroy --volumes` removes everything of a deployment here but the
//! host-wide `ssh/`; plain `destroy` keeps its snapshots with its volumes.

use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";
/// Default directory for generated systemd units.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// Paths inside a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn deployments_dir(&self) -> PathBuf {
        self.root.join("deployments")
    }

    pub fn deployment_dir(&self, deployment: &str) -> PathBuf {
        self.deployments_dir().join(deployment)
    }

    pub fn current_revision(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("current.json")
    }

    pub fn revisions_dir(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("revisions")
    }

    pub fn lock_file(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("lock")
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    pub fn instance_file(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.json"))
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    pub fn ssh_host_key(&self) -> PathBuf {
        self.ssh_dir().join("host_ed25519_key")
    }
}

/// One applied revision of a deployment: what `apply` last made true.
/// Written atomically to `current.json` and kept under `revisions/`.
/// The SSH gateway and `authorized-keys` read keys from here, so they see
/// exactly what was applied, not whatever the file on disk says now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    /// Increases by one with every apply that changed something.
    pub revision: u64,
    /// RFC 3339 time of the apply.
    pub applied_at: String,
    /// `systemd`, `docker` or `foreground`.
    pub integration: String,
    /// The resolved deployment.
    pub deployment: crate::spec::Deployment,
    /// Image ID each service ran at this revision, by service name.
    #[serde(default)]
    pub image_ids: std::collections::BTreeMap<String, String>,
}

impl StateDir {
    /// The current revision of a deployment, if it was ever applied here.
    pub fn read_current(&self, deployment: &str) -> crate::Result<Option<Revision>> {
        let path = self.current_revision(deployment);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io(path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            crate::Error::Runtime(format!(
                "{}: corrupt state file ({e}); re-run `berth apply` to rewrite it",
                path.display()
            ))
        })
    }

    /// Names of the deployments applied in this state directory.
    pub fn list_deployments(&self) -> crate::Result<Vec<String>> {
        let dir = self.deployments_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(crate::Error::io(dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| crate::Error::io(&dir, e))?;
            if entry.path().join("current.json").is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}
