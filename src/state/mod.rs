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
//! <state>/instances/<container>.json                what `berth supervise <container>` runs
//! <state>/ssh/host_ed25519_key                      the gateway's host key (0600)
//! ```

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
