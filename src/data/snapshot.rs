//! Snapshots: backups of one instance's volumes kept in the state directory,
//! taken before an upgrade (and by `restore --force` before it replaces a
//! volume's content).
//!
//! ```text
//! <state>/snapshots/<container>/<revision>-<time>.tar.zst   a backup archive (see format)
//! <state>/snapshots/<container>/<revision>-<time>.json      its manifest, for fast listing
//! <state>/snapshots/<container>/pre-restore-<time>.tar.zst  saved by restore --force
//! ```
//! `<time>` is UTC `YYYYMMDDTHHMMSSZ`, so names sort by time within a revision.
//! Each is a complete backup: `berth restore FILE --force` puts it back.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::backup::{BackupOptions, backup_to_file};
use super::format::Manifest;
use super::instances::Site;
use crate::error::{Error, Result};
use crate::state::StateDir;

/// Snapshots kept per instance when the deployment file says nothing.
pub const DEFAULT_KEEP: usize = 3;

/// One snapshot file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotInfo {
    /// Container (instance) it belongs to.
    pub container: String,
    /// The revision the instance ran when it was taken; `None` for a copy
    /// saved by `restore --force`.
    pub revision: Option<u64>,
    /// `pre-upgrade` (taken through [`snapshot_instance`]) or `pre-restore`.
    pub kind: String,
    /// UTC time it was taken, as in the file name.
    pub taken: String,
    /// The archive.
    pub path: PathBuf,
    /// Archive size in bytes.
    pub size: u64,
    /// The manifest, when its sidecar `.json` is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

/// UTC `YYYYMMDDTHHMMSSZ` for file names.
pub fn stamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// Snapshot the volumes of instance `container` of `deployment`, taken
/// while it runs `revision`, and keep only the newest `keep` snapshots of
/// that instance (older `<revision>-*` files are deleted; `pre-restore`
/// copies are never deleted here).
///
/// Consistency: a running instance is stopped for the copy and started
/// again afterwards (as `berth backup` does). `apply` should call this
/// after it stopped the old container and before it removes it: the
/// instance then is not running, so it is copied as it is and left alone,
/// and the manifest records the old image.
///
/// Returns `Ok(None)` when the instance has no volumes.
pub async fn snapshot_instance(
    site: &Site,
    state: &StateDir,
    deployment: &str,
    container: &str,
    revision: u64,
    keep: usize,
) -> Result<Option<SnapshotInfo>> {
    let all = site.discover(state, deployment).await?;
    let Some(inst) = all.into_iter().find(|i| i.container == container) else {
        return Ok(None);
    };
    let dir = state.instance_snapshots_dir(container);
    crate::state::create_private_dir(&dir)?;
    let taken = stamp(std::time::SystemTime::now());
    let base = format!("{revision}-{taken}");
    let path = dir.join(format!("{base}.tar.zst"));
    let manifest = backup_to_file(
        site,
        state,
        deployment,
        std::slice::from_ref(&inst),
        &path,
        &BackupOptions::default(),
        &ProgressBar::hidden(),
    )
    .await?;
    write_sidecar(&path, &manifest)?;
    prune(state, container, keep)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Some(SnapshotInfo {
        container: container.to_string(),
        revision: Some(revision),
        kind: "pre-upgrade".into(),
        taken,
        path,
        size,
        manifest: Some(manifest),
    }))
}

/// Write `<archive without .tar.zst>.json` holding the manifest.
pub fn write_sidecar(archive: &Path, manifest: &Manifest) -> Result<()> {
    let side = sidecar(archive);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::Runtime(format!("cannot serialise a manifest: {e}")))?;
    std::fs::write(&side, json).map_err(|e| Error::io(&side, e))
}

fn sidecar(archive: &Path) -> PathBuf {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot");
    let stem = name.strip_suffix(".tar.zst").unwrap_or(name);
    archive.with_file_name(format!("{stem}.json"))
}

/// Delete all but the newest `keep` revision snapshots of an instance.
pub fn prune(state: &StateDir, container: &str, keep: usize) -> Result<()> {
    let mut revs: Vec<SnapshotInfo> = list_instance(state, container)?
        .into_iter()
        .filter(|s| s.revision.is_some())
        .collect();
    // Newest first: by time, then revision.
    revs.sort_by(|a, b| (&b.taken, b.revision).cmp(&(&a.taken, a.revision)));
    for old in revs.into_iter().skip(keep) {
        std::fs::remove_file(&old.path).map_err(|e| Error::io(&old.path, e))?;
        let side = sidecar(&old.path);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(side, e)),
        }
    }
    Ok(())
}

/// Snapshots of one instance, oldest first.
pub fn list_instance(state: &StateDir, container: &str) -> Result<Vec<SnapshotInfo>> {
    let mut out = Vec::new();
    for entry in crate::state::dir_entries(&state.instance_snapshots_dir(container))? {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".tar.zst") else {
            continue;
        };
        let Some((first, taken)) = stem.rsplit_once('-') else {
            continue;
        };
        let (revision, kind) = match first.parse::<u64>() {
            Ok(r) => (Some(r), "pre-upgrade"),
            Err(_) if first == "pre-restore" => (None, "pre-restore"),
            Err(_) => continue,
        };
        let manifest = std::fs::read(sidecar(&path))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        out.push(SnapshotInfo {
            container: container.to_string(),
            revision,
            kind: kind.into(),
            taken: taken.to_string(),
            size: entry.metadata().map(|m| m.len()).unwrap_or(0),
            path,
            manifest,
        });
    }
    out.sort_by(|a, b| (&a.taken, a.revision).cmp(&(&b.taken, b.revision)));
    Ok(out)
}

/// Snapshots of every instance in the state directory (or only those of
/// `deployment`, judged by the manifest, else by the container-name prefix).
pub fn list(state: &StateDir, deployment: Option<&str>) -> Result<Vec<SnapshotInfo>> {
    let mut containers = Vec::new();
    for entry in crate::state::dir_entries(&state.snapshots_dir())? {
        if let Some(n) = entry.file_name().to_str() {
            containers.push(n.to_string());
        }
    }
    containers.sort();
    let mut out = Vec::new();
    for c in containers {
        for s in list_instance(state, &c)? {
            let keep = match (deployment, &s.manifest) {
                (None, _) => true,
                (Some(d), Some(m)) => m.deployment == d,
                (Some(d), None) => c.starts_with(&format!("{d}-")),
            };
            if keep {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Snapshots that belong to `deployment`: those whose manifest names it,
/// and those kept for one of its `containers` (a `pre-restore` copy may
/// have no manifest). A container-name prefix alone is not enough here:
/// `ex-web-1` could be an instance of a deployment named `ex-web`.
pub fn of_deployment(
    state: &StateDir,
    deployment: &str,
    containers: &[String],
) -> Result<Vec<SnapshotInfo>> {
    Ok(list(state, None)?
        .into_iter()
        .filter(|s| match &s.manifest {
            Some(m) => m.deployment == deployment,
            None => containers.contains(&s.container),
        })
        .collect())
}

/// Delete `snapshots` (archives and their manifests), then every instance
/// directory left empty. Returns the archives deleted.
pub fn remove(state: &StateDir, snapshots: &[SnapshotInfo]) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for s in snapshots {
        for p in [s.path.clone(), sidecar(&s.path)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        removed.push(s.path.clone());
        let dir = state.instance_snapshots_dir(&s.container);
        // Only an empty directory goes (remove_dir refuses others).
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_prune_keep_the_newest_revisions_and_every_pre_restore_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let dir = state.instance_snapshots_dir("d-web");
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "1-20261125T010000Z.tar.zst",
            "1-20261125T010000Z.json",
            "2-20261125T020000Z.tar.zst",
            "3-20261125T030000Z.tar.zst",
            "3-20261125T030001Z.tar.zst",
            "pre-restore-20261125T000000Z.tar.zst",
            "unrelated.txt",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let all = list_instance(&state, "d-web").unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].kind, "pre-restore");
        assert_eq!(all[0].revision, None);
        assert_eq!(all[1].revision, Some(1));
        prune(&state, "d-web", 2).unwrap();
        let left: Vec<_> = list_instance(&state, "d-web")
            .unwrap()
            .into_iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            [
                "pre-restore-20261125T000000Z.tar.zst",
                "3-20261125T030000Z.tar.zst",
                "3-20261125T030001Z.tar.zst"
            ]
        );
        assert!(!dir.join("1-20261125T010000Z.json").exists());
        assert!(dir.join("unrelated.txt").exists());
        assert_eq!(list(&state, Some("d")).unwrap().len(), 3);
        assert_eq!(list(&state, Some("other")).unwrap().len(), 0);
    }

    #[test]
    fn stamps_sort_as_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(stamp(t).len(), "20261125T030000Z".len());
        assert!(stamp(t) < stamp(t + std::time::Duration::from_secs(1)));
    }
}
