//! `berth backup`: every volume of the chosen instances into one archive
//! (see [`super::format`]), streamed: the engine's tar stream of a volume is
//! hashed and cut into parts on the way to the compressor, so memory stays
//! bounded whatever the volume's size.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::entries::{Mode, Scanner, SpecialFiles};
use super::format::{
    ArchiveWriter, FORMAT, InstanceEntry, Manifest, PART_SIZE, VolumeEntry, hex, part_path,
};
use super::instances::{self, DataInstance, DataVolume, Site};
use crate::apply::Reporter;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::state::StateDir;

/// How to take a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Copy while the instances run (no stop/start). Faster, no downtime,
    /// but files being written during the copy may be inconsistent.
    pub live: bool,
    /// The applied revision to store in the manifest (`--with-deployment`).
    pub spec: Option<Box<crate::state::Revision>>,
}

const INTERRUPTED: &str = "backup interrupted";

fn write_error(e: std::io::Error) -> Error {
    Error::Runtime(format!(
        "cannot write the backup: {e}; no volume was changed"
    ))
}

enum Msg {
    /// A member whose data is these chunks, as the engine sent them.
    Member(String, Vec<Bytes>),
    Finish(Box<Manifest>),
}

/// Where [`backup_deployment`] writes the archive.
pub enum Output {
    /// A file, written whole or not at all ([`backup_to_file`]).
    File(PathBuf),
    /// A stream (stdout), flushed at the end; `name` says which in errors.
    Stream {
        name: String,
        writer: Box<dyn Write + Send>,
    },
}

/// `berth backup`: the volumes of the instances of `deployment` named by
/// `services` (service or instance names; every instance with volumes when
/// empty) into `output`. With `with_deployment`, the applied revision is stored
/// too. Holds the deployment's apply lock ([`super::lifecycle::lock`])
/// from reading the revision to the end of the copy.
#[allow(clippy::too_many_arguments)]
pub async fn backup_deployment(
    site: &Site,
    state: &StateDir,
    deployment: &str,
    services: &[String],
    output: Output,
    live: bool,
    with_deployment: bool,
    report: &Reporter,
    progress: &ProgressBar,
) -> Result<Manifest> {
    // Not while an apply (or restore, rollback) of the deployment runs.
    let _lock = super::lifecycle::lock(state, deployment, None, report).await?;
    let spec = if with_deployment {
        match state.read_current(deployment)? {
            Some(r) => Some(Box::new(r)),
            None => {
                return Err(Error::Usage(format!(
                    "--with-deployment: deployment {deployment} was never applied with state directory {}; there is no applied deployment to store",
                    state.root().display()
                )));
            }
        }
    } else {
        None
    };
    let all = site.discover(state, deployment).await?;
    if all.is_empty() {
        return Err(Error::Usage(format!(
            "deployment {deployment} has no volumes on {}; nothing to back up",
            site.describe()
        )));
    }
    let chosen = instances::select(all, services)?;
    let opts = BackupOptions { live, spec };
    match output {
        Output::File(file) => {
            backup_to_file(site, state, deployment, &chosen, &file, &opts, progress).await
        }
        Output::Stream { name, writer } => {
            let out = std::io::BufWriter::with_capacity(1 << 20, writer);
            let (m, mut out) =
                backup(site, state, deployment, &chosen, out, &opts, progress).await?;
            out.flush().map_err(|e| Error::io(name, e))?;
            Ok(m)
        }
    }
}

/// Write a backup of `instances` (all of one deployment) to `out`.
///
/// Unless `opts.live`, each running instance is stopped (the way its
/// integration expects, see [`Site::stop`]) while its volumes are
/// copied and started again afterwards, also when the copy fails. The
/// caller holds the deployment's apply lock.
pub(crate) async fn backup<W: Write + Send + 'static>(
    site: &Site,
    state: &StateDir,
    deployment: &str,
    instances: &[DataInstance],
    out: W,
    opts: &BackupOptions,
    progress: &ProgressBar,
) -> Result<(Manifest, W)> {
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let dep = deployment.to_string();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<W> {
        let mut w = ArchiveWriter::new(out, &dep)?;
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Member(path, data) => w.member_chunks(&path, &data)?,
                Msg::Finish(m) => return w.finish(&m),
            }
        }
        Err(std::io::Error::other(INTERRUPTED))
    });

    let copied = copy_all(site, state, deployment, instances, opts, progress, &tx).await;
    let manifest = match copied {
        Ok(m) => m,
        Err(e) => {
            drop(tx);
            // A writer that failed first (disk full, ...) is the real cause.
            return match writer.await {
                Ok(Err(w)) if w.to_string() != INTERRUPTED => Err(write_error(w)),
                _ => Err(e),
            };
        }
    };
    let sent = tx.send(Msg::Finish(Box::new(manifest.clone()))).await;
    drop(tx);
    let out = writer
        .await
        .map_err(|e| Error::Runtime(format!("backup writer failed: {e}")))?
        .map_err(write_error)?;
    if sent.is_err() {
        return Err(Error::Runtime(
            "cannot write the backup: writer stopped".into(),
        ));
    }
    Ok((manifest, out))
}

async fn copy_all(
    site: &Site,
    state: &StateDir,
    deployment: &str,
    instances: &[DataInstance],
    opts: &BackupOptions,
    progress: &ProgressBar,
    tx: &mpsc::Sender<Msg>,
) -> Result<Manifest> {
    let mut manifest = Manifest {
        format: FORMAT.into(),
        berth_version: env!("CARGO_PKG_VERSION").into(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        deployment: deployment.to_string(),
        consistent: !opts.live,
        instances: Vec::new(),
        holds_secrets: opts
            .spec
            .as_ref()
            .is_some_and(|r| !r.deployment.secrets.is_empty()),
        spec: opts.spec.clone(),
    };
    for inst in instances {
        let Some(image) = inst.carrier_image() else {
            return Err(Error::Runtime(format!(
                "instance {} has no container and no recorded image to read its volumes through; run `berth apply` first",
                inst.container
            )));
        };
        let image = image.to_string();
        // Reached before anything is stopped: a node berth cannot reach
        // fails the backup with every service running.
        let engine = site.engine(inst, false).await?;
        let stopped = if opts.live {
            instances::Stopped::NotRunning
        } else {
            progress.set_message(format!("stopping {}", inst.container));
            site.stop(state, inst).await?
        };
        let mut entries = Vec::new();
        let mut result = Ok(());
        for vol in &inst.volumes {
            match copy_volume(&engine, inst, vol, &image, progress, tx).await {
                Ok(e) => entries.push(e),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Start it again whatever happened to the copy.
        progress.set_message(format!("starting {}", inst.container));
        let started = site.start(state, stopped).await;
        match (result, started) {
            (Err(e), Ok(())) => return Err(e),
            (Err(e), Err(s)) => {
                return Err(Error::Runtime(format!(
                    "{e}; and starting {} again failed too: {s}",
                    inst.container
                )));
            }
            (Ok(()), Err(s)) => {
                return Err(Error::Runtime(format!(
                    "the copy of {} succeeded but starting it again failed: {s}",
                    inst.container
                )));
            }
            (Ok(()), Ok(())) => {}
        }
        manifest.instances.push(InstanceEntry {
            service: inst.service.clone(),
            instance: inst.index,
            container: inst.container.clone(),
            image: inst.image.clone(),
            image_id: inst.image_id.clone(),
            volumes: entries,
        });
    }
    Ok(manifest)
}

async fn copy_volume(
    engine: &Engine,
    inst: &DataInstance,
    vol: &DataVolume,
    image: &str,
    progress: &ProgressBar,
    tx: &mpsc::Sender<Msg>,
) -> Result<VolumeEntry> {
    progress.set_message(format!("copying {}", vol.name));
    let carrier = engine
        .create_carrier(image, &vol.name, &inst.labels(), "backup")
        .await?;
    let copied = stream_volume(engine, &carrier, &vol.name, progress, tx).await;
    let removed = engine.remove_carrier(&carrier).await;
    let (size, sha256, parts, special_files) = copied?;
    removed?;
    // Volume names hang off the instance's volume owner (which, unlike the
    // container name, does not change with `count`), so the key is what
    // follows it.
    let owner = crate::instance::volume_owner(&inst.deployment, &inst.service, inst.index);
    let key = vol
        .name
        .strip_prefix(&format!("{owner}-"))
        .or_else(|| vol.name.strip_prefix(&format!("{}-", inst.container)))
        .unwrap_or(&vol.name)
        .to_string();
    Ok(VolumeEntry {
        name: vol.name.clone(),
        key,
        mount_path: vol.mount_path.clone(),
        from_image: vol.from_image,
        size,
        sha256,
        parts,
        special_files,
    })
}

async fn stream_volume(
    engine: &Engine,
    carrier: &crate::engine::archive::Carrier,
    volume: &str,
    progress: &ProgressBar,
    tx: &mpsc::Sender<Msg>,
) -> Result<(u64, String, u32, SpecialFiles)> {
    let closed = || Error::Runtime("cannot write the backup (the writer stopped)".into());
    // sha256 on its own thread, beside the compressor's, off the runtime.
    // The same thread counts the special files the stream holds, for the
    // manifest (restore recreates only what is recorded there).
    let (hash_tx, mut hash_rx) = mpsc::channel::<Vec<Bytes>>(2);
    let name = volume.to_string();
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut scanner = Some(Scanner::new(Mode::Classify));
        let mut special = SpecialFiles::default();
        let unreadable = |e: super::entries::EntryError| {
            tracing::warn!(
                "volume {name}: the engine's stream holds what restore refuses ({e}); the backup is written, but restoring it will fail"
            );
        };
        while let Some(chunks) = hash_rx.blocking_recv() {
            for c in &chunks {
                hasher.update(c);
                if let Some(s) = scanner.as_mut()
                    && let Err(e) = s.feed(c)
                {
                    unreadable(e);
                    scanner = None;
                }
            }
        }
        if let Some(s) = scanner {
            match s.finish() {
                Ok(found) => special = found,
                Err(e) => unreadable(e),
            }
        }
        (hex(&hasher.finalize()), special)
    });
    let mut stream = Box::pin(engine.download_volume(carrier));
    let mut size = 0u64;
    let mut parts = 0u32;
    // A part is the chunks as they came (no copy into one buffer).
    let mut part: Vec<Bytes> = Vec::new();
    let mut part_len = 0usize;
    loop {
        let chunk = stream.next().await.transpose()?;
        let last = chunk.is_none();
        if let Some(chunk) = chunk {
            size += chunk.len() as u64;
            progress.inc(chunk.len() as u64);
            part_len += chunk.len();
            part.push(chunk);
        }
        // A volume has at least one part, even when its stream is empty.
        if part_len >= PART_SIZE || (last && (part_len > 0 || parts == 0)) {
            let chunks = std::mem::take(&mut part);
            part_len = 0;
            hash_tx.send(chunks.clone()).await.map_err(|_| closed())?;
            tx.send(Msg::Member(part_path(volume, parts), chunks))
                .await
                .map_err(|_| closed())?;
            parts += 1;
        }
        if last {
            break;
        }
    }
    drop(hash_tx);
    let (sha256, special) = hasher
        .await
        .map_err(|e| Error::Runtime(format!("hashing volume {volume}: {e}")))?;
    Ok((size, sha256, parts, special))
}

/// Back up into a file: written to `<file>.partial` and renamed into place
/// only when complete, so a failed backup never leaves a file that looks
/// like a good one (nor replaces an older good one). The caller holds the
/// deployment's apply lock.
pub(crate) async fn backup_to_file(
    site: &Site,
    state: &StateDir,
    deployment: &str,
    instances: &[DataInstance],
    file: &Path,
    opts: &BackupOptions,
    progress: &ProgressBar,
) -> Result<Manifest> {
    let partial = partial_path(file);
    // Owner-only: the volumes' data, and with `--with-deployment` perhaps secrets.
    let f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, f);
    match backup(site, state, deployment, instances, out, opts, progress).await {
        Ok((manifest, out)) => {
            let f = out
                .into_inner()
                .map_err(|e| Error::io(&partial, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&partial, e))?;
            std::fs::rename(&partial, file).map_err(|e| Error::io(file, e))?;
            Ok(manifest)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(".partial");
    file.with_file_name(name)
}
