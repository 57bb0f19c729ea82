//! Delivering an instance's configs and secrets into its container through
//! the engine's archive API (`PUT /containers/{id}/archive`), which works
//! on a created container before it starts and against a remote engine
//! alike, and lands each file with the owner and mode of its tar header.
//! Nothing of the content goes into the container's configuration
//! (environment, labels, command), so `docker inspect` shows none of it.
//!
//! Only file entries are sent: the engine makes missing parent directories
//! (root, 0755) and leaves existing ones, symlinked ones included, as the
//! image has them. An existing directory at a file's target is an error
//! rather than replaced.

use bollard::query_parameters::{KillContainerOptionsBuilder, UploadToContainerOptionsBuilder};
use bytes::Bytes;

use super::{Engine, is_not_found};
use crate::error::{Error, Result};
use crate::instance::{FileSpec, InstanceSpec};

/// The tar stream of `files` (paths relative to `/`), contents from `spec`.
fn archive(spec: &InstanceSpec, files: &[&FileSpec]) -> Result<Vec<u8>> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let Some(content) = spec.contents.get(&f.digest) else {
            return Err(Error::Runtime(format!(
                "{}: the content of {} is missing from the state directory; run `berth apply` again",
                spec.container,
                f.label()
            )));
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(content.len() as u64);
        h.set_uid(u64::from(f.uid));
        h.set_gid(u64::from(f.gid));
        h.set_mode(f.mode);
        h.set_mtime(mtime);
        let path = f.target.trim_start_matches('/');
        tar.append_data(&mut h, path, content.as_bytes())
            .map_err(|e| Error::Runtime(format!("packing {}: {e}", f.label())))?;
    }
    tar.into_inner()
        .map_err(|e| Error::Runtime(format!("packing files for {}: {e}", spec.container)))
}

impl Engine {
    /// Put `files` (all of the spec's when `None`) into the container
    /// `container` (a name or ID), created or running.
    pub async fn deliver_files(
        &self,
        container: &str,
        spec: &InstanceSpec,
        files: Option<&[&FileSpec]>,
    ) -> Result<()> {
        let all: Vec<&FileSpec> = spec.files.iter().collect();
        let files = files.unwrap_or(&all);
        if files.is_empty() {
            return Ok(());
        }
        let tar = archive(spec, files)?;
        let opts = UploadToContainerOptionsBuilder::new()
            .path("/")
            .no_overwrite_dir_non_dir("true")
            .build();
        self.docker()
            .upload_to_container(container, Some(opts), bollard::body_full(Bytes::from(tar)))
            .await
            .map_err(|e| {
                let names: Vec<String> = files.iter().map(|f| f.label()).collect();
                Error::engine(
                    format!(
                        "delivering {} into {} (a directory of the image at a target cannot be replaced by a file)",
                        names.join(", "),
                        spec.container
                    ),
                    e,
                )
            })
    }

    /// The reload step of an apply: the files of `spec` whose content
    /// changed since `previous` (the spec the container was made from) and
    /// that have a reload signal, updated in place (see
    /// [`Engine::reload_files`]).
    pub async fn reload_changed_files(
        &self,
        spec: &InstanceSpec,
        previous: Option<&InstanceSpec>,
    ) -> Result<()> {
        let Some(prev) = previous else {
            return Ok(());
        };
        let files = crate::instance::files::reloads(&prev.files, &spec.files);
        self.reload_files(spec, &files).await
    }

    /// Update the files of a reload in the instance's container and send
    /// each of their signals (once per signal) if it runs. A missing
    /// container is not an error: the next one is made with the new files.
    pub async fn reload_files(&self, spec: &InstanceSpec, files: &[&FileSpec]) -> Result<()> {
        let Some(c) = self.inspect_container(&spec.container).await? else {
            return Ok(());
        };
        let id = c.id.unwrap_or_else(|| spec.container.clone());
        self.deliver_files(&id, spec, Some(files)).await?;
        let running = c.state.and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Ok(());
        }
        let mut signals: Vec<&str> = files.iter().filter_map(|f| f.reload.as_deref()).collect();
        signals.dedup();
        for sig in signals {
            let opts = KillContainerOptionsBuilder::new().signal(sig).build();
            match self.docker().kill_container(&id, Some(opts)).await {
                Ok(()) => {}
                // Exited meanwhile: its next container gets the new files.
                Err(e) if is_not_found(&e) || super::is_conflict(&e) => {}
                Err(e) => {
                    return Err(Error::engine(
                        format!("sending {sig} to {}", spec.container),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}
