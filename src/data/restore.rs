//! `berth restore`: put a backup's volumes back.
//!
//! Order of work, so that a bad archive or a refusal touches nothing:
//! 1. read the whole archive once and check every payload against the
//!    manifest (size, sha256, parts; zstd's own frame checksum on the way),
//!    every name and number in the manifest ([`Manifest::check`]) and every
//!    entry of every volume's tar stream ([`super::entries`]);
//! 2. map every volume onto its target (another deployment name maps by the
//!    container-name prefix), check each existing target is empty or
//!    `--force` was given, and that an image to reach it through is here;
//! 3. stop the target instances, then per volume: create it if missing
//!    (labelled as berth labels its volumes), with `--force` save its current
//!    content to `<state>/snapshots/<container>/pre-restore-<time>.tar.zst`
//!    and empty it, extract the payload through the engine, its entries
//!    checked again on the way; if that fails the saved content is put back;
//! 4. start the instances again, also after a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use super::backup::{BackupOptions, backup_to_file};
use super::entries::{Mode, Scanner, SpecialFiles};
use super::format::{Event, Manifest, read_archive};
use super::instances::{DataInstance, DataVolume, Site, SiteRequest};
use crate::apply::Reporter;
use crate::engine::Engine;
use crate::engine::archive::{CARRIER_ROOT, Carrier};
use crate::error::{Error, Result};
use crate::names;
use crate::state::StateDir;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only these services or instances (`mail`, `mail-2`); all when empty.
    pub services: Vec<String>,
    /// Replace the contents of non-empty volumes.
    pub force: bool,
    /// Restore into this deployment instead of the one the backup came from.
    pub deployment: Option<String>,
    /// Recreate device nodes, FIFOs, setuid/setgid files and file
    /// capabilities, when the manifest records that the volume held them.
    pub allow_special_files: bool,
}

/// One restored volume.
#[derive(Debug, Clone)]
pub struct RestoredVolume {
    /// Target volume name.
    pub volume: String,
    /// Volume name in the backup.
    pub from: String,
    /// Payload bytes extracted.
    pub bytes: u64,
    /// Where the volume's previous content was saved (`--force` on a
    /// non-empty volume).
    pub previous: Option<PathBuf>,
}

/// Where one volume of the archive goes.
#[derive(Debug, Clone)]
struct Target {
    /// The engine holding the volume (a swarm service's node's).
    engine: Engine,
    volume: String,
    container: String,
    labels: BTreeMap<String, String>,
    image: String,
    /// Exists and has content: must be emptied (only with `--force`).
    non_empty: bool,
    exists: bool,
    /// Save the current content here before emptying.
    save_to: Option<PathBuf>,
}

/// Read and check a whole archive without touching anything: its structure
/// and checksums, its manifest ([`Manifest::check`]), and every entry of
/// every volume's tar stream ([`super::entries`]); special files pass only
/// when the manifest records them and `allow_special_files`.
pub async fn verify(file: &Path, allow_special_files: bool) -> Result<Manifest> {
    let path = file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = crate::input::open_regular(&path)?;
        let r = std::io::BufReader::with_capacity(1 << 20, f);
        let what = path.display().to_string();
        let mut found: BTreeMap<String, (SpecialFiles, Option<String>)> = BTreeMap::new();
        // The first refused entry; reported only once the checksums have
        // held (a corrupt archive is reported as corrupt, not as its garbage).
        let mut refused: Option<Error> = None;
        let mut current: Option<(String, Option<Scanner>)> = None;
        let mut close = |current: &mut Option<(String, Option<Scanner>)>,
                         refused: &mut Option<Error>| {
            if let Some((volume, Some(s))) = current.take() {
                let (_, first) = s.special();
                let first = first.map(str::to_string);
                match s.finish() {
                    Ok(special) => {
                        found.insert(volume, (special, first));
                    }
                    Err(e) => {
                        refused.get_or_insert(entry_refused(&what, &volume, &e));
                    }
                }
            }
        };
        let manifest = read_archive(r, &what, |ev| {
            match ev {
                Event::Part { volume, data } => {
                    if current.as_ref().map(|c| &c.0) != Some(&volume) {
                        close(&mut current, &mut refused);
                        current = Some((volume, Some(Scanner::new(Mode::Verify))));
                    }
                    if let Some((volume, scanner)) = current.as_mut()
                        && let Some(s) = scanner
                        && let Err(e) = s.feed(&data)
                    {
                        refused.get_or_insert(entry_refused(&what, volume, &e));
                        *scanner = None;
                    }
                }
                Event::Manifest(_) => close(&mut current, &mut refused),
            }
            Ok(())
        })?;
        if let Some(e) = refused {
            return Err(e);
        }
        for (_, vol) in manifest.volumes() {
            let (special, first) = found.remove(&vol.name).unwrap_or_default();
            if special == vol.special_files && special.is_empty() {
                continue;
            }
            let first = first.unwrap_or_default();
            if special != vol.special_files {
                return Err(Error::Usage(format!(
                    "{what}: volume {}: its data holds {special} (first: {first}) but the manifest records {}: the archive was not made by berth from a volume that held them, or was altered; nothing was restored",
                    vol.name, vol.special_files
                )));
            }
            if !allow_special_files {
                return Err(Error::Usage(format!(
                    "{what}: volume {}: holds {special} (first: {first}); berth recreates device nodes, FIFOs, setuid/setgid files and file capabilities only with --allow-special-files; nothing was restored",
                    vol.name
                )));
            }
        }
        Ok(manifest)
    })
    .await
    .map_err(|e| Error::Runtime(format!("verifying {}: {e}", file.display())))?
}

fn entry_refused(what: &str, volume: &str, e: &super::entries::EntryError) -> Error {
    Error::Usage(format!(
        "{what}: volume {}: {e}; nothing was restored",
        super::entries::show(volume.as_bytes())
    ))
}

/// Restore `file` (see the module documentation for the order of work)
/// onto the target deployment's site (`site`: its host or its swarm),
/// holding its apply lock ([`super::lifecycle::lock`], giving up after
/// `lock_timeout`) once the archive is verified.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    engine: &Engine,
    site: &SiteRequest,
    state: &StateDir,
    file: &Path,
    opts: &RestoreOptions,
    lock_timeout: Option<std::time::Duration>,
    report: &Reporter,
    progress: &ProgressBar,
) -> Result<Vec<RestoredVolume>> {
    progress.set_message(format!("verifying {}", file.display()));
    let manifest = verify(file, opts.allow_special_files).await?;
    let target = target_deployment(&manifest, opts)?;
    // Not while an apply (or backup, rollback) of the target deployment runs.
    let _lock = super::lifecycle::lock(state, &target, lock_timeout, report).await?;
    let site = site.open(engine, state, &target).await?;
    restore_verified(&site, state, file, manifest, opts, progress).await
}

/// The deployment the volumes go to: `opts.deployment`, else the backup's.
fn target_deployment(manifest: &Manifest, opts: &RestoreOptions) -> Result<String> {
    let target = opts
        .deployment
        .clone()
        .unwrap_or_else(|| manifest.deployment.clone());
    names::check_name(&target)
        .map_err(|p| Error::Usage(format!("deployment name {target:?} {p}")))?;
    Ok(target)
}

/// [`restore`] of an archive already checked with [`verify`] (whose
/// manifest this is), for a caller that holds the target deployment's
/// apply lock.
pub(crate) async fn restore_verified(
    site: &Site,
    state: &StateDir,
    file: &Path,
    manifest: Manifest,
    opts: &RestoreOptions,
    progress: &ProgressBar,
) -> Result<Vec<RestoredVolume>> {
    let target_dep = target_deployment(&manifest, opts)?;

    // What to restore.
    for w in &opts.services {
        if !manifest
            .instances
            .iter()
            .any(|i| instance_matches(i, &manifest.deployment, w))
        {
            let services: Vec<&str> = manifest
                .instances
                .iter()
                .map(|i| i.service.as_str())
                .collect();
            return Err(Error::Usage(format!(
                "{}: the backup has no service or instance {w:?} (it has: {})",
                file.display(),
                services.join(", ")
            )));
        }
    }
    let chosen: Vec<_> = manifest
        .instances
        .iter()
        .filter(|i| {
            opts.services.is_empty()
                || opts
                    .services
                    .iter()
                    .any(|w| instance_matches(i, &manifest.deployment, w))
        })
        .collect();

    // Where it goes, and whether that is allowed.
    let existing = site.discover(state, &target_dep).await?;
    let mut plan: BTreeMap<String, Target> = BTreeMap::new();
    let mut refusals = Vec::new();
    let mut to_stop: Vec<DataInstance> = Vec::new();
    let stamp = super::snapshot::stamp(std::time::SystemTime::now());
    for inst in &chosen {
        // Named like the source's ([`Manifest::check`] holds it to one of
        // the two forms): numbered when the service ran several instances.
        let numbered = inst.container
            != names::container_name(&manifest.deployment, &inst.service, inst.instance, 1);
        let container = names::container_name(
            &target_dep,
            &inst.service,
            inst.instance,
            if numbered { 2 } else { 1 },
        );
        let live = existing.iter().find(|e| e.container == container);
        let engine = match (site, live) {
            (Site::Swarm(_), None) => {
                return Err(Error::Usage(format!(
                    "{}: service {} of deployment {target_dep} is not on the swarm; apply the deployment with --target swarm first (its service holds the volumes on its node); nothing was restored",
                    file.display(),
                    inst.service
                )));
            }
            // A swarm service without a node for its volumes gets one, as
            // its apply would have given it.
            (_, Some(l)) => site.engine(l, true).await?,
            (Site::Host(e), None) => e.clone(),
        };
        let engine = &engine;
        let image = carrier_image(engine, live, inst).await?;
        if let Some(l) = live
            && l.running
        {
            to_stop.push(l.clone());
        }
        for vol in &inst.volumes {
            let owner = crate::instance::volume_owner(&target_dep, &inst.service, inst.instance);
            let volume = names::volume_name(&owner, &vol.key);
            // Whose volume it is, as apply labels it (see `names::Owner::claim`).
            let claimant = names::Owner {
                deployment: target_dep.clone(),
                service: inst.service.clone(),
                instance: inst.instance,
                volume: Some(match (&vol.mount_path, vol.from_image) {
                    (Some(p), true) => p.clone(),
                    _ => vol.key.clone(),
                }),
            };
            let mut labels = claimant.labels();
            if vol.from_image
                && let Some(p) = &vol.mount_path
            {
                labels.insert(names::LABEL_VOLUME_PATH.into(), p.clone());
            }
            let details = engine.volume_details(&volume).await?;
            let (exists, non_empty) = match &details {
                None => (false, false),
                Some(d) => {
                    // Never restore into someone else's volume.
                    if let names::Claim::Other(theirs) = claimant.claim(&d.labels) {
                        return Err(Error::Conflict(names::conflict_message(
                            "volume", &volume, &theirs, &claimant,
                        )));
                    }
                    (
                        true,
                        !volume_is_empty(engine, &image, &volume, &labels).await?,
                    )
                }
            };
            if non_empty && !opts.force {
                refusals.push(volume.clone());
            }
            let save_to = (non_empty && opts.force).then(|| {
                state
                    .instance_snapshots_dir(&container)
                    .join(format!("pre-restore-{stamp}.tar.zst"))
            });
            plan.insert(
                vol.name.clone(),
                Target {
                    engine: engine.clone(),
                    volume,
                    container: container.clone(),
                    labels,
                    image: image.clone(),
                    non_empty,
                    exists,
                    save_to,
                },
            );
        }
    }
    if !refusals.is_empty() {
        return Err(Error::Usage(format!(
            "refusing to overwrite non-empty volume{} {}: restore with --force to replace {} contents (the current contents are saved under {}/snapshots first); nothing was restored",
            if refusals.len() > 1 { "s" } else { "" },
            refusals.join(", "),
            if refusals.len() > 1 { "their" } else { "its" },
            state.root().display()
        )));
    }

    // Stop, restore, start again whatever happened.
    let mut stopped = Vec::new();
    let mut result = Ok(Vec::new());
    for inst in &to_stop {
        progress.set_message(format!("stopping {}", inst.container));
        match site.stop(state, inst).await {
            Ok(s) => stopped.push(s),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        // The archive is read again: its entries are checked again on the
        // way, so that a file changed since the first pass cannot slip an
        // entry past it.
        let allowed: BTreeMap<String, SpecialFiles> = manifest
            .volumes()
            .map(|(_, v)| {
                let allow = if opts.allow_special_files {
                    v.special_files
                } else {
                    SpecialFiles::default()
                };
                (v.name.clone(), allow)
            })
            .collect();
        result = apply_archive(state, file, &plan, Some(allowed), progress).await;
    }
    let mut start_errors = Vec::new();
    for s in stopped {
        if let Err(e) = site.start(state, s).await {
            start_errors.push(e.to_string());
        }
    }
    match (result, start_errors.is_empty()) {
        (Ok(r), true) => Ok(r),
        (Ok(_), false) => Err(Error::Runtime(format!(
            "the volumes were restored but starting the instances again failed: {}",
            start_errors.join("; ")
        ))),
        (Err(e), true) => Err(e),
        (Err(e), false) => Err(Error::Runtime(format!(
            "{e}; and starting the instances again failed: {}",
            start_errors.join("; ")
        ))),
    }
}

fn instance_matches(i: &super::format::InstanceEntry, deployment: &str, w: &str) -> bool {
    i.service == w
        || i.container == w
        || format!("{}-{}", i.service, i.instance) == w
        || i.container == format!("{deployment}-{w}")
}

/// An image on this host to reach the target volumes through: the target
/// instance's own, else the one the backup was taken with.
async fn carrier_image(
    engine: &Engine,
    live: Option<&DataInstance>,
    inst: &super::format::InstanceEntry,
) -> Result<String> {
    if let Some(img) = live.and_then(|l| l.carrier_image()) {
        return Ok(img.to_string());
    }
    for candidate in [&inst.image_id, &inst.image].into_iter().flatten() {
        if engine.has_image(candidate).await? {
            return Ok(candidate.clone());
        }
    }
    Err(Error::Runtime(format!(
        "cannot restore {}: its image {} is not on this host, and berth reaches volumes only through the engine with an image that is; pull it (or `berth apply`) first; nothing was restored",
        inst.container,
        inst.image
            .as_deref()
            .or(inst.image_id.as_deref())
            .unwrap_or("(unknown)")
    )))
}

/// True when the volume holds nothing but its root directory.
pub async fn volume_is_empty(
    engine: &Engine,
    image: &str,
    volume: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool> {
    let carrier = engine
        .create_carrier(image, volume, labels, "check")
        .await?;
    let res = first_entries_empty(engine, &carrier).await;
    let removed = engine.remove_carrier(&carrier).await;
    let empty = res?;
    removed?;
    Ok(empty)
}

async fn first_entries_empty(engine: &Engine, carrier: &Carrier) -> Result<bool> {
    // The root entry (plus perhaps an extended header) comes first; one
    // MiB of stream is plenty to see whether a second entry follows.
    const PREFIX: usize = 1 << 20;
    let mut stream = Box::pin(engine.download_volume(carrier));
    let mut prefix = Vec::new();
    while let Some(chunk) = stream.next().await {
        prefix.extend_from_slice(&chunk?);
        if prefix.len() >= PREFIX {
            break;
        }
    }
    drop(stream);
    let mut tar = tar::Archive::new(&prefix[..]);
    let entries = tar.entries().map_err(|e| {
        Error::Runtime(format!(
            "volume {}: unreadable archive from the engine: {e}",
            carrier.volume
        ))
    })?;
    for entry in entries {
        let Ok(entry) = entry else { break };
        let path = entry.path_bytes();
        let p = path.strip_suffix(b"/").unwrap_or(&path);
        if p != CARRIER_ROOT.as_bytes() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Second pass over the (verified) archive: extract each planned volume.
///
/// With `checks` (the special files allowed per volume), every entry is
/// checked again before its bytes go to the engine; without, the archive is
/// berth's own copy of a volume saved moments ago ([`put_back`]).
fn apply_archive<'a>(
    state: &'a StateDir,
    file: &'a Path,
    plan: &'a BTreeMap<String, Target>,
    checks: Option<BTreeMap<String, SpecialFiles>>,
    progress: &'a ProgressBar,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RestoredVolume>>> + Send + 'a>> {
    Box::pin(async move {
        let (tx, mut rx) = mpsc::channel::<Event>(2);
        let wanted: Vec<String> = plan.keys().cloned().collect();
        let path = file.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || {
            let f = crate::input::open_regular(&path)?;
            let r = std::io::BufReader::with_capacity(1 << 20, f);
            let what = path.display().to_string();
            let mut scanner: Option<(String, Scanner)> = None;
            read_archive(r, &what, |ev| {
                if let Event::Part { volume, data } = &ev {
                    if !wanted.contains(volume) {
                        return Ok(());
                    }
                    if let Some(allowed) = &checks {
                        if scanner.as_ref().map(|s| &s.0) != Some(volume) {
                            scanner = Some((volume.clone(), Scanner::new(Mode::Verify)));
                        }
                        if let Some((_, s)) = scanner.as_mut() {
                            s.feed(data).map_err(|e| entry_refused(&what, volume, &e))?;
                            let (found, first) = s.special();
                            let allow = allowed.get(volume).copied().unwrap_or_default();
                            if found.devices > allow.devices
                                || found.fifos > allow.fifos
                                || found.setid > allow.setid
                                || found.capabilities > allow.capabilities
                            {
                                return Err(Error::Usage(format!(
                                    "{what}: volume {volume}: the archive changed since it was verified (it now holds {found}, first: {}); restore stopped",
                                    first.unwrap_or_default()
                                )));
                            }
                        }
                    }
                }
                tx.blocking_send(ev)
                    .map_err(|_| Error::Runtime("restore interrupted".into()))
            })
        });

        let mut done = Vec::new();
        let mut current: Option<Upload> = None;
        let mut failure: Option<Error> = None;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Part { volume, data } => {
                    if current.as_ref().map(|c| c.from.as_str()) != Some(volume.as_str()) {
                        if let Some(c) = current.take() {
                            match c.finish(state, file, plan, progress).await {
                                Ok(r) => done.push(r),
                                Err(e) => {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                        let Some(target) = plan.get(&volume) else {
                            continue;
                        };
                        progress.set_message(format!("restoring {}", target.volume));
                        match Upload::begin(state, &volume, target, progress).await {
                            Ok(u) => current = Some(u),
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(c) = current.as_mut() {
                        progress.inc(data.len() as u64);
                        c.bytes += data.len() as u64;
                        if c.body.send(Ok(data)).await.is_err() {
                            // The engine stopped reading; finish() reports why.
                            if let Some(c) = current.take() {
                                failure = Some(match c.finish(state, file, plan, progress).await {
                                    Ok(_) => Error::Runtime(
                                        "the engine stopped reading the volume data".into(),
                                    ),
                                    Err(e) => e,
                                });
                            }
                            break;
                        }
                    }
                }
                Event::Manifest(_) => {}
            }
        }
        drop(rx);
        let read = reader
            .await
            .map_err(|e| Error::Runtime(format!("reading {}: {e}", file.display())));
        if let Some(e) = failure {
            if let Some(c) = current.take() {
                c.abort(state, plan, progress).await;
            }
            return Err(e);
        }
        match read.and_then(|r| r) {
            Ok(_) => {
                if let Some(c) = current.take() {
                    done.push(c.finish(state, file, plan, progress).await?);
                }
                Ok(done)
            }
            Err(e) => {
                if let Some(c) = current.take() {
                    c.abort(state, plan, progress).await;
                }
                Err(e)
            }
        }
    })
}

/// One volume being extracted.
struct Upload {
    from: String,
    target: Target,
    carrier: Carrier,
    body: mpsc::Sender<std::io::Result<Bytes>>,
    task: tokio::task::JoinHandle<Result<()>>,
    bytes: u64,
}

impl Upload {
    async fn begin(
        state: &StateDir,
        from: &str,
        target: &Target,
        progress: &ProgressBar,
    ) -> Result<Upload> {
        let engine = &target.engine;
        if !target.exists && engine.volume_details(&target.volume).await?.is_none() {
            engine
                .create_labelled_volume(&target.volume, &target.labels)
                .await?;
        }
        if target.exists
            && !target.non_empty
            && !volume_is_empty(engine, &target.image, &target.volume, &target.labels).await?
        {
            // It was empty when checked, but its instance ran until just now.
            return Err(Error::Runtime(format!(
                "volume {} received data while the restore was being prepared; nothing was restored into it (restore again, with --force to replace its content)",
                target.volume
            )));
        }
        if target.non_empty {
            if let Some(save) = &target.save_to {
                save_volume(state, target, save, progress).await?;
            }
            if let Err(e) = engine
                .empty_volume(&target.image, &target.volume, &target.labels)
                .await
            {
                // `rm` may have removed part of the content before failing.
                let back = put_back(state, target, progress).await;
                return Err(Error::Runtime(format!("{e}{back}")));
            }
        }
        let carrier = engine
            .create_carrier(&target.image, &target.volume, &target.labels, "restore")
            .await?;
        let (body, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let eng = engine.clone();
        let c = carrier.clone();
        let task = tokio::spawn(async move { eng.upload_volume(&c, stream).await });
        Ok(Upload {
            from: from.to_string(),
            target: target.clone(),
            carrier,
            body,
            task,
            bytes: 0,
        })
    }

    async fn finish(
        self,
        state: &StateDir,
        _file: &Path,
        _plan: &BTreeMap<String, Target>,
        progress: &ProgressBar,
    ) -> Result<RestoredVolume> {
        let Upload {
            from,
            target,
            carrier,
            body,
            task,
            bytes,
        } = self;
        drop(body);
        let engine = &target.engine;
        let uploaded = task
            .await
            .map_err(|e| Error::Runtime(format!("restoring {}: {e}", target.volume)))
            .and_then(|r| r);
        let removed = engine.remove_carrier(&carrier).await;
        if let Err(e) = uploaded {
            let back = put_back(state, &target, progress).await;
            return Err(Error::Runtime(format!(
                "restoring {}: {e}{back}",
                target.volume
            )));
        }
        removed?;
        Ok(RestoredVolume {
            volume: target.volume,
            from,
            bytes,
            previous: target.save_to,
        })
    }

    /// The archive could not be read to the end: cut the upload short with an
    /// error (so the engine does not take a partial stream for a whole one),
    /// and put the previous content back.
    async fn abort(
        self,
        state: &StateDir,
        _plan: &BTreeMap<String, Target>,
        progress: &ProgressBar,
    ) {
        let _ = self
            .body
            .send(Err(std::io::Error::other("restore aborted")))
            .await;
        drop(self.body);
        let _ = self.task.await;
        let _ = self.target.engine.remove_carrier(&self.carrier).await;
        let back = put_back(state, &self.target, progress).await;
        tracing::warn!("restore of {} aborted{back}", self.target.volume);
    }
}

/// Save a target volume's current content before it is emptied.
async fn save_volume(
    state: &StateDir,
    target: &Target,
    save: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    if let Some(dir) = save.parent() {
        crate::state::create_private_dir(dir)?;
    }
    let inst = DataInstance {
        deployment: target
            .labels
            .get(names::LABEL_DEPLOYMENT)
            .cloned()
            .unwrap_or_default(),
        service: target
            .labels
            .get(names::LABEL_SERVICE)
            .cloned()
            .unwrap_or_default(),
        index: target
            .labels
            .get(names::LABEL_INSTANCE)
            .and_then(|i| i.parse().ok())
            .unwrap_or(1),
        container: target.container.clone(),
        container_id: None,
        running: false,
        image: Some(target.image.clone()),
        image_id: None,
        stop_timeout: 0,
        volumes: vec![DataVolume {
            name: target.volume.clone(),
            mount_path: target.labels.get(names::LABEL_VOLUME_PATH).cloned(),
            from_image: target.labels.contains_key(names::LABEL_VOLUME_PATH),
            labels: target.labels.clone(),
        }],
        // Copied live (it is stopped already) from the engine holding it.
        swarm: None,
    };
    let dep = inst.deployment.clone();
    progress.set_message(format!("saving the current content of {}", target.volume));
    let manifest = backup_to_file(
        &Site::Host(target.engine.clone()),
        state,
        &dep,
        std::slice::from_ref(&inst),
        save,
        &BackupOptions {
            live: true,
            ..Default::default()
        },
        progress,
    )
    .await?;
    super::snapshot::write_sidecar(save, &manifest)
}

/// After a failed extraction: empty the volume and put the saved content
/// back. Returns a sentence for the error message.
async fn put_back(state: &StateDir, target: &Target, progress: &ProgressBar) -> String {
    let Some(saved) = &target.save_to else {
        if target.non_empty {
            return String::new();
        }
        return format!(
            "; the volume {} was empty before and may now hold part of the data",
            target.volume
        );
    };
    let mut plan = BTreeMap::new();
    plan.insert(
        target.volume.clone(),
        Target {
            non_empty: true,
            exists: true,
            save_to: None,
            ..target.clone()
        },
    );
    match apply_archive(state, saved, &plan, None, progress).await {
        Ok(_) => format!(
            "; its previous content was put back (a copy stays in {})",
            saved.display()
        ),
        Err(e) => format!(
            "; putting its previous content back failed too ({e}): it is saved in {}, restore it with `berth restore {} --force` (with --allow-special-files if it held device nodes, FIFOs or setuid files)",
            saved.display(),
            saved.display()
        ),
    }
}
