//! The state directory (`/var/lib/berth`, `--state-dir`, `BERTH_STATE_DIR`):
//! root-only, it holds what the supervisor and the SSH gateway read at run time
//! (resolved instance specs including secrets and environment, which must never
//! go into world-readable unit files), applied revisions, locks and the gateway's
//! host key.
//!
//! This module is the only one that knows the layout: everyone else asks
//! [`StateDir`] for a path, writes private files through [`write_private`]
//! and keeps operator markers through [`markers`]. The layout is what hosts
//! already have on disk; changing it needs a migration.
//!
//! ```text
//! <state>/                                          0700
//!   deployments/<deployment>/                       0700, one per applied deployment
//!     current.json                                  the applied revision
//!     revisions/<n>.json                            the last KEEP_REVISIONS revisions
//!     lock                                          flock: one apply at a time
//!     up.pid                                        a running `berth up`
//!   instances/                                      0700
//!     <container>.json                              instance spec: what `berth supervise <container>` runs (0600)
//!     <container>.stopped                           stopped by the operator (see markers)
//!     <container>.restart                           restart request for `berth up`
//!     <container>.restarts                          restarts done by `berth up`
//!     <container>.crashes                           the supervisor's crash record (supervise::backoff)
//!     <container>.files/                            0700, contents of its configs and secrets, by digest (0600)
//!   file-digest.key                                 key of secrets' digests (instance::files), 0600
//!   snapshots/<container>/                          0700, volume snapshots (file names: data::snapshot)
//!   ssh/                                            0700, host-wide
//!     host_ed25519_key                              the gateway's host key (0600)
//!     .host_ed25519_key.tmp                         a key being generated
//!   .tmp*/                                          scratch copies (rollback's snapshot copies)
//! ```
//! `destroy --volumes` removes everything of a deployment here but the
//! host-wide `ssh/`; plain `destroy` keeps its snapshots with its volumes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod markers;

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

    /// How berth reaches each swarm node's engine (see
    /// [`crate::engine::nodes`]), unless `--nodes` names another file.
    pub fn nodes_file(&self) -> PathBuf {
        self.root.join("nodes.toml")
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

    /// `revisions/<n>.json`
    pub fn revision_file(&self, deployment: &str, revision: u64) -> PathBuf {
        self.revisions_dir(deployment)
            .join(format!("{revision}.json"))
    }

    /// The revision number a file under `revisions/` holds, if it is one.
    pub fn revision_number(file: &Path) -> Option<u64> {
        file.file_name()?
            .to_str()?
            .strip_suffix(".json")?
            .parse()
            .ok()
    }

    /// Registry digests `berth update` rolled back from, by service: later
    /// updates skip them until the tag moves on.
    pub fn bad_digests(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("bad-digests.json")
    }

    pub fn lock_file(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("lock")
    }

    /// The process id of a running `berth up` of the deployment.
    pub fn up_pid(&self, deployment: &str) -> PathBuf {
        self.deployment_dir(deployment).join("up.pid")
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// The resolved instance spec `berth supervise <container>` runs.
    pub fn instance_spec(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.json"))
    }

    /// Containers that have an instance spec here, in no particular order.
    pub fn instance_spec_names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in dir_entries(&self.instances_dir())? {
            if let Some(container) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
            {
                out.push(container.to_string());
            }
        }
        Ok(out)
    }

    /// The contents of an instance's configs and secrets, one file per
    /// content digest (see `instance::files`).
    pub fn instance_files_dir(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.files"))
    }

    /// The key secrets' digests are made with (see `instance::files`).
    pub fn file_digest_key(&self) -> PathBuf {
        self.root.join("file-digest.key")
    }

    /// The operator stopped the instance (see [`markers`]).
    pub fn stopped_marker(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.stopped"))
    }

    /// A restart asked of a running `berth up` (see [`markers`]).
    pub fn restart_request(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.restart"))
    }

    /// How many times `berth up` restarted the instance (see [`markers`]).
    pub fn restart_count(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.restarts"))
    }

    /// The supervisor's crash record (see `supervise::backoff::CrashRecord`).
    pub fn crash_record(&self, container: &str) -> PathBuf {
        self.instances_dir().join(format!("{container}.crashes"))
    }

    /// Every file kept here for one instance: its spec, the operator's
    /// stopped marker, a pending restart request, `berth up`'s restart
    /// count and the supervisor's crash record.
    pub fn instance_files(&self, container: &str) -> [PathBuf; 5] {
        [
            self.instance_spec(container),
            self.stopped_marker(container),
            self.restart_request(container),
            self.restart_count(container),
            self.crash_record(container),
        ]
    }

    /// Remove every file of [`Self::instance_files`]; returns those that
    /// were there.
    pub fn forget_instance(&self, container: &str) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let files = self.instance_files_dir(container);
        match std::fs::remove_dir_all(&files) {
            Ok(()) => removed.push(files),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(files, e)),
        }
        for p in self.instance_files(container) {
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        Ok(removed)
    }

    /// Where the snapshots of every instance are kept, one directory each.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The snapshots of one instance.
    pub fn instance_snapshots_dir(&self, container: &str) -> PathBuf {
        self.snapshots_dir().join(container)
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    pub fn ssh_host_key(&self) -> PathBuf {
        self.ssh_dir().join("host_ed25519_key")
    }

    /// A host key being written, linked to [`Self::ssh_host_key`] when whole.
    pub fn ssh_host_key_tmp(&self) -> PathBuf {
        self.ssh_dir().join(".host_ed25519_key.tmp")
    }

    /// A scratch directory on the state directory's file system, removed
    /// when dropped.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::tempdir_in(&self.root).map_err(|e| Error::io(&self.root, e))
    }
}

/// Create `dir` (and its parents) with mode 0700 if it is not there.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// The entries of a state directory; one that does not exist yet has none.
pub fn dir_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    entries.map(|e| e.map_err(|e| Error::io(dir, e))).collect()
}

/// A JSON state file berth wrote (`what` names it in the error, with the
/// command that rewrites it); `None` if there is none.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::Runtime(format!(
            "{}: corrupt {what} ({e}); run `berth apply` to rewrite it",
            path.display()
        ))
    })
}

/// Write `data` to `path` atomically with mode 0600, creating the parent
/// directory with mode 0700 if needed.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .ok_or_else(|| Error::Runtime(format!("{}: no parent directory", path.display())))?;
    if !dir.is_dir() {
        create_private_dir(dir)?;
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.write_all(data).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
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
    pub deployment: crate::deployment::Deployment,
    /// Image ID each service ran at this revision, by service name.
    #[serde(default)]
    pub image_ids: std::collections::BTreeMap<String, String>,
    /// Why it was applied (`update app to sha256:...`, `rollback to
    /// revision 3`, ...); `None`: an apply of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The registry digest each service ran, by service, where the target
    /// resolved one (the swarm; see [`crate::plan::Plan::image_digests`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub image_digests: std::collections::BTreeMap<String, String>,
}

/// `bad-digests.json`: by service, the registry digests `berth update`
/// rolled back from (not taken again until the tag moves on).
pub type BadDigests = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

impl StateDir {
    /// The digests `berth update` rolled `deployment`'s services back from.
    pub fn read_bad_digests(&self, deployment: &str) -> Result<BadDigests> {
        Ok(read_json(&self.bad_digests(deployment), "record of bad digests")?.unwrap_or_default())
    }

    /// Add `digest` to the bad digests of `service`.
    pub fn record_bad_digest(&self, deployment: &str, service: &str, digest: &str) -> Result<()> {
        let mut bad = self.read_bad_digests(deployment)?;
        bad.entry(service.to_string())
            .or_default()
            .insert(digest.to_string());
        let json = serde_json::to_vec_pretty(&bad)
            .map_err(|e| Error::Runtime(format!("cannot serialise bad digests: {e}")))?;
        write_private(&self.bad_digests(deployment), &json)
    }
}

impl StateDir {
    /// The current revision of a deployment, if it was ever applied here.
    pub fn read_current(&self, deployment: &str) -> Result<Option<Revision>> {
        read_json(&self.current_revision(deployment), "state file")
    }

    /// Names of the deployments applied in this state directory.
    pub fn list_deployments(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in dir_entries(&self.deployments_dir())? {
            if let Some(name) = entry.file_name().to_str()
                && self.current_revision(name).is_file()
            {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hosts already have these files: the paths must not move.
    #[test]
    fn the_layout_is_the_one_hosts_have_on_disk() {
        let s = StateDir::new("/s");
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        assert_eq!(p(s.current_revision("d")), "/s/deployments/d/current.json");
        assert_eq!(
            p(s.revision_file("d", 7)),
            "/s/deployments/d/revisions/7.json"
        );
        assert_eq!(p(s.lock_file("d")), "/s/deployments/d/lock");
        assert_eq!(p(s.up_pid("d")), "/s/deployments/d/up.pid");
        assert_eq!(
            s.instance_files("d-web").map(p),
            [
                "/s/instances/d-web.json",
                "/s/instances/d-web.stopped",
                "/s/instances/d-web.restart",
                "/s/instances/d-web.restarts",
                "/s/instances/d-web.crashes",
            ]
        );
        assert_eq!(p(s.instance_snapshots_dir("d-web")), "/s/snapshots/d-web");
        assert_eq!(p(s.instance_files_dir("d-web")), "/s/instances/d-web.files");
        assert_eq!(p(s.file_digest_key()), "/s/file-digest.key");
        assert_eq!(p(s.ssh_host_key()), "/s/ssh/host_ed25519_key");
        assert_eq!(p(s.ssh_host_key_tmp()), "/s/ssh/.host_ed25519_key.tmp");
        assert_eq!(
            StateDir::revision_number(&s.revision_file("d", 12)),
            Some(12)
        );
        assert_eq!(StateDir::revision_number(Path::new("/s/x.json")), None);
    }

    #[test]
    fn forget_instance_removes_every_file_of_the_instance_and_no_other() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = StateDir::new(dir.path());
        for f in s
            .instance_files("d-web")
            .iter()
            .chain(&s.instance_files("d-web-2"))
        {
            write_private(f, b"x").unwrap_or_else(|e| panic!("{e}"));
        }
        let removed = s.forget_instance("d-web").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(removed, s.instance_files("d-web").to_vec());
        assert!(
            s.forget_instance("d-web")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        let mut left = s.instance_spec_names().unwrap_or_else(|e| panic!("{e}"));
        left.sort();
        assert_eq!(left, ["d-web-2"]);
        assert!(s.instance_files("d-web-2").iter().all(|f| f.exists()));
    }
}
