//! The backup archive: one zstd-compressed tar stream.
//!
//! ```text
//! berth-backup                    "berth-backup/1\n<deployment>\n": what this file is
//! volumes/<volume>/000000         the volume's tar stream, in parts of about
//! volumes/<volume>/000001         PART_SIZE bytes (a tar member needs its size
//! ...                             before its data; parts keep memory bounded)
//! manifest.json                   written LAST: sizes and sha256 are known only then
//! ```
//!
//! A volume's payload is the concatenation of its parts: the engine's own tar
//! stream of the volume, entries rooted at `berth-volume/`. Because the
//! manifest comes last, a truncated archive has none and is refused; the zstd
//! frame carries its own checksum, and every payload is checked against the
//! manifest's sha256 before anything is restored.
//!
//! By hand: `tar --zstd -xf backup.tar.zst` then
//! `cat volumes/NAME/* | tar -tv` lists a volume.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::entries::SpecialFiles;
use crate::error::{Error, Result};

/// First line of the `berth-backup` member, and `format` in the manifest.
pub const FORMAT: &str = "berth-backup/1";
/// Name of the identifying first member.
pub const MARKER: &str = "berth-backup";
/// Name of the manifest member (the last one).
pub const MANIFEST: &str = "manifest.json";
/// Size a volume's stream is cut into. One part is held in memory at a time.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// zstd level: 3 is zstd's default, fast enough to keep up with the engine.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest part a reader accepts: berth cuts a part once it holds
/// [`PART_SIZE`] bytes, so a part exceeds it by at most one chunk of the
/// engine's stream. A part is held in memory, so a header declaring more is
/// refused before anything is allocated.
pub const MAX_PART: u64 = 2 * PART_SIZE as u64;
/// Largest manifest a reader accepts (a deployment of a hundred services
/// with a hundred instances each stays well below it).
pub const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// Most volumes an archive may hold.
pub const MAX_VOLUMES: usize = 100_000;
/// Bytes a reader accepts after the tar stream's end (berth writes 1 KiB of
/// zeros there).
const MAX_TRAILER: u64 = 64 * 1024;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Version of berth that wrote it.
    pub berth_version: String,
    /// RFC 3339 time the backup started.
    pub created_at: String,
    /// Deployment the volumes belong to.
    pub deployment: String,
    /// True when every instance was stopped during its copy (not `--live`).
    pub consistent: bool,
    pub instances: Vec<InstanceEntry>,
    /// The applied revision of the deployment (`backup --with-deployment`), for
    /// `restore --apply` to bring the deployment up elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<crate::state::Revision>>,
    /// The stored deployment holds secrets (their content is in `spec`):
    /// the archive must be kept as private as the state directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_secrets: bool,
}

/// One instance and its volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEntry {
    pub service: String,
    /// 1-based instance number.
    pub instance: u32,
    /// Container name on the source host.
    pub container: String,
    /// Image reference the instance ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image ID the instance ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub volumes: Vec<VolumeEntry>,
}

/// One volume's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeEntry {
    /// Volume name on the source host.
    pub name: String,
    /// The name without the `<container>-` prefix: what maps it onto another
    /// deployment's volume.
    pub key: String,
    /// Where the instance mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// True for a volume persisting an image-declared `VOLUME`.
    #[serde(default)]
    pub from_image: bool,
    /// Bytes of payload (the volume's tar stream).
    pub size: u64,
    /// Hex sha256 of the payload.
    pub sha256: String,
    /// Number of parts.
    pub parts: u32,
    /// Device nodes, FIFOs, setuid/setgid files and file capabilities the
    /// volume held when it was backed up (see [`super::entries`]): restore
    /// recreates them only when they are recorded here and the operator
    /// allows it.
    #[serde(default, skip_serializing_if = "SpecialFiles::is_empty")]
    pub special_files: SpecialFiles,
}

impl Manifest {
    /// Every volume with its instance.
    pub fn volumes(&self) -> impl Iterator<Item = (&InstanceEntry, &VolumeEntry)> {
        self.instances
            .iter()
            .flat_map(|i| i.volumes.iter().map(move |v| (i, v)))
    }
}

/// Docker's rule for volume names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) and a
/// length limit: no `/`, so a name never becomes a path.
fn check_volume_name(name: &str) -> std::result::Result<(), String> {
    let ok_chars = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_chars || name.len() > 255 {
        return Err(format!(
            "{} is not a volume name (letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 255 characters)",
            super::entries::show(name.as_bytes())
        ));
    }
    Ok(())
}

impl Manifest {
    /// Check everything berth takes from the manifest to name things on this
    /// host (deployment, services, instance numbers, containers, volume keys,
    /// mount paths, images) with the rules a deployment file obeys, and
    /// refuse duplicates. `what` names the archive in messages. The stored
    /// deployment itself is checked by `restore --apply`, which uses it.
    pub fn check(&self, what: &str) -> Result<()> {
        let bad = |msg: String| {
            Error::Usage(format!(
                "{what}: the manifest {msg}; the archive was not written by berth, or was altered; nothing was restored"
            ))
        };
        let shown = |s: &str| super::entries::show(s.as_bytes());
        crate::names::check_name(&self.deployment).map_err(|p| {
            bad(format!(
                "names the deployment {} which {p}",
                shown(&self.deployment)
            ))
        })?;
        let mut instances = std::collections::BTreeSet::new();
        let mut volume_names = std::collections::BTreeSet::new();
        for inst in &self.instances {
            crate::names::check_name(&inst.service).map_err(|p| {
                bad(format!(
                    "names the service {} which {p}",
                    shown(&inst.service)
                ))
            })?;
            if !(1..=crate::deployment::MAX_COUNT).contains(&inst.instance) {
                return Err(bad(format!(
                    "gives service {} the instance number {} (instances are 1 to {})",
                    inst.service,
                    inst.instance,
                    crate::deployment::MAX_COUNT
                )));
            }
            if !instances.insert((inst.service.as_str(), inst.instance)) {
                return Err(bad(format!(
                    "lists instance {} of service {} twice",
                    inst.instance, inst.service
                )));
            }
            // Instance 1 of a service of one instance has no number.
            let counts: &[u32] = if inst.instance == 1 { &[1, 2] } else { &[2] };
            let names: Vec<String> = counts
                .iter()
                .map(|&count| {
                    crate::names::container_name(
                        &self.deployment,
                        &inst.service,
                        inst.instance,
                        count,
                    )
                })
                .collect();
            if !names.contains(&inst.container) {
                return Err(bad(format!(
                    "names the container of instance {} of service {} {} (berth names it {})",
                    inst.instance,
                    inst.service,
                    shown(&inst.container),
                    names.join(" or ")
                )));
            }
            if let Some(image) = &inst.image {
                crate::deployment::values::check_image(image).map_err(|p| {
                    bad(format!(
                        "gives instance {} an image that is not valid: {}",
                        inst.container, p.message
                    ))
                })?;
            }
            if let Some(id) = &inst.image_id {
                let ok = id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                if !ok {
                    return Err(bad(format!(
                        "gives instance {} the image ID {} (not sha256:<64 hex digits>)",
                        inst.container,
                        shown(id)
                    )));
                }
            }
            let mut keys = std::collections::BTreeSet::new();
            for vol in &inst.volumes {
                check_volume_name(&vol.name).map_err(|m| bad(format!("lists volume {m}")))?;
                if !volume_names.insert(vol.name.as_str()) {
                    return Err(bad(format!("lists volume {} twice", vol.name)));
                }
                if vol.from_image {
                    // The flattened container path (`var-spool-exim4-1a2b3c`,
                    // `.hidden-...` for `/.hidden`): only the characters of a
                    // volume name, and it follows the owner's `-`.
                    let ok = !vol.key.is_empty()
                        && vol.key.len() <= 255
                        && vol
                            .key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if ok {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} (letters, digits, `_`, `.` and `-` only)",
                            shown(&vol.key)
                        ))
                    }
                } else {
                    crate::names::check_name(&vol.key)
                        .map_err(|p| format!("{} {p}", shown(&vol.key)))
                }
                .map_err(|m| bad(format!("gives volume {} the key {m}", vol.name)))?;
                if !keys.insert(vol.key.as_str()) {
                    return Err(bad(format!(
                        "gives two volumes of {} the key {}",
                        inst.container, vol.key
                    )));
                }
                match &vol.mount_path {
                    Some(p) => {
                        let ok = p.starts_with('/')
                            && p.len() <= 4095
                            && !p.chars().any(char::is_control)
                            && !p.split('/').any(|c| c == "..");
                        if !ok {
                            return Err(bad(format!(
                                "gives volume {} the mount path {} (not an absolute container path)",
                                vol.name,
                                shown(p)
                            )));
                        }
                    }
                    None if vol.from_image => {
                        return Err(bad(format!(
                            "gives the image volume {} no mount path",
                            vol.name
                        )));
                    }
                    None => {}
                }
                let hex_ok =
                    vol.sha256.len() == 64 && vol.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex_ok {
                    return Err(bad(format!("gives volume {} a malformed sha256", vol.name)));
                }
            }
        }
        Ok(())
    }
}

/// Archive member name of a volume's part.
pub fn part_path(volume: &str, part: u32) -> String {
    format!("volumes/{volume}/{part:06}")
}

/// Split a member name into (volume, part) if it is a volume part.
pub fn parse_part_path(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix("volumes/")?;
    let (volume, part) = rest.split_once('/')?;
    if volume.is_empty() || part.len() != 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((volume, part.parse().ok()?))
}

/// Writes the archive: members in order, zstd-compressed, to any writer.
///
/// The tar headers are written here rather than through `tar::Builder`, so
/// that a part can go to the compressor as the chunks it arrived in, without
/// being copied into one buffer first.
pub struct ArchiveWriter<W: Write> {
    enc: zstd::Encoder<'static, W>,
    mtime: u64,
}

/// Worker threads for compression: all cores (up to a few), so that
/// compressing keeps up with the engine's stream.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(4) as u32)
        .unwrap_or(1)
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, deployment: &str) -> std::io::Result<Self> {
        let mut enc = zstd::Encoder::new(out, ZSTD_LEVEL)?;
        enc.include_checksum(true)?;
        // Still one zstd frame, read like any other; only compressing runs
        // on worker threads (and lags behind the input by a few MiB).
        enc.multithread(zstd_workers())?;
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut w = Self { enc, mtime };
        w.member(MARKER, format!("{FORMAT}\n{deployment}\n").as_bytes())?;
        Ok(w)
    }

    /// Append one member.
    pub fn member(&mut self, path: &str, data: &[u8]) -> std::io::Result<()> {
        self.member_chunks(path, &[data])
    }

    /// Append one member whose data is the concatenation of `chunks`.
    pub fn member_chunks<B: AsRef<[u8]>>(
        &mut self,
        path: &str,
        chunks: &[B],
    ) -> std::io::Result<()> {
        let size: u64 = chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.enc.write_all(h.as_bytes())?;
        for c in chunks {
            self.enc.write_all(c.as_ref())?;
        }
        // Data is padded to whole 512-byte blocks.
        let pad = (512 - (size % 512) as usize) % 512;
        self.enc.write_all(&[0u8; 512][..pad])
    }

    /// Append the manifest and finish the compressed stream; returns the writer.
    pub fn finish(mut self, manifest: &Manifest) -> std::io::Result<W> {
        let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
        self.member(MANIFEST, &json)?;
        // The end of a tar archive: two zero blocks.
        self.enc.write_all(&[0u8; 1024])?;
        let mut out = self.enc.finish()?;
        out.flush()?;
        Ok(out)
    }
}

/// What reading an archive yields, member by member.
pub enum Event {
    /// The next part of a volume's payload (parts come in order).
    Part { volume: String, data: Bytes },
    /// The manifest (the last member).
    Manifest(Box<Manifest>),
}

/// Read an archive from start to end, calling `f` for each volume part and
/// the manifest, and check its structure: the marker first, parts of a
/// volume contiguous and numbered from 0, the manifest last and matching the
/// payloads (size, sha256, number of parts) exactly. `what` names the
/// archive in messages. Returns the manifest.
pub fn read_archive(
    input: impl Read,
    what: &str,
    f: impl FnMut(Event) -> Result<()>,
) -> Result<Manifest> {
    // sha256 runs on its own thread, beside decompression: each takes about
    // as long as the other.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Bytes)>(2);
        let hasher = s.spawn(move || {
            let mut hashers: Vec<Sha256> = Vec::new();
            for (i, data) in rx {
                if hashers.len() <= i {
                    hashers.resize_with(i + 1, Sha256::new);
                }
                hashers[i].update(&data);
            }
            hashers
                .into_iter()
                .map(|h| hex(&h.finalize()))
                .collect::<Vec<_>>()
        });
        read_archive_hashed(input, what, f, tx, move || {
            hasher
                .join()
                .map_err(|_| Error::Runtime("the sha256 thread failed".into()))
        })
    })
}

fn read_archive_hashed(
    input: impl Read,
    what: &str,
    mut f: impl FnMut(Event) -> Result<()>,
    hash: std::sync::mpsc::SyncSender<(usize, Bytes)>,
    digests: impl FnOnce() -> Result<Vec<String>>,
) -> Result<Manifest> {
    let hash_gone = || Error::Runtime("the sha256 thread stopped".into());
    let bad = |msg: String| Error::Usage(format!("{what}: {msg}"));
    let io_bad = |e: std::io::Error| {
        Error::Usage(format!(
            "{what}: the archive is truncated or corrupt ({e}); nothing was restored"
        ))
    };
    let dec = zstd::Decoder::new(input).map_err(io_bad)?;
    let mut tar = tar::Archive::new(dec);
    let mut seen_marker = false;
    let mut manifest: Option<Manifest> = None;
    // Per volume: (size, parts) in order of appearance; its sha256 is
    // computed by `hash` under the same index.
    let mut payloads: Vec<(String, u64, u32)> = Vec::new();
    // Raw: extension members (GNU long names, PAX) are not interpreted (the
    // tar crate would read them whole into memory); berth writes none, and
    // any member not of berth's own is refused below.
    let entries = tar.entries().map_err(io_bad)?.raw(true);
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) if !seen_marker => {
                return Err(bad(format!(
                    "not a berth backup, or truncated or corrupt at its start ({e}); nothing was restored"
                )));
            }
            Err(e) => return Err(io_bad(e)),
        };
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!(
                "unexpected member {path:?} (not a regular file); not a berth backup"
            )));
        }
        if manifest.is_some() {
            return Err(bad(format!(
                "unexpected member {path:?} after the manifest; not a berth backup"
            )));
        }
        if !seen_marker {
            if path != MARKER {
                return Err(bad(format!(
                    "not a berth backup (first member is {path:?}, expected {MARKER:?})"
                )));
            }
            let mut text = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut text)
                .map_err(io_bad)?;
            if text.lines().next() != Some(FORMAT) {
                return Err(bad(format!(
                    "unsupported backup format {:?} (this berth reads {FORMAT})",
                    text.lines().next().unwrap_or("")
                )));
            }
            seen_marker = true;
            continue;
        }
        if path == MANIFEST {
            if entry.size() > MAX_MANIFEST {
                return Err(bad(format!(
                    "the manifest declares {} bytes (at most {MAX_MANIFEST}); not a berth backup",
                    entry.size()
                )));
            }
            let mut json = Vec::new();
            entry
                .by_ref()
                .take(MAX_MANIFEST)
                .read_to_end(&mut json)
                .map_err(io_bad)?;
            let m: Manifest = serde_json::from_slice(&json)
                .map_err(|e| bad(format!("the manifest is corrupt ({e})")))?;
            manifest = Some(m);
            continue;
        }
        let Some((volume, part)) = parse_part_path(&path) else {
            return Err(bad(format!(
                "unexpected member {path:?}; not a berth backup"
            )));
        };
        let volume = volume.to_string();
        let expected_part = match payloads.last_mut() {
            Some((v, _, parts)) if *v == volume => *parts,
            _ => {
                if payloads.iter().any(|(v, ..)| *v == volume) {
                    return Err(bad(format!("parts of volume {volume} are not contiguous")));
                }
                if payloads.len() >= MAX_VOLUMES {
                    return Err(bad(format!(
                        "more than {MAX_VOLUMES} volumes; not a berth backup"
                    )));
                }
                payloads.push((volume.clone(), 0, 0));
                0
            }
        };
        if part != expected_part {
            return Err(bad(format!(
                "volume {volume}: part {part} where part {expected_part} was expected"
            )));
        }
        if entry.size() > MAX_PART {
            return Err(bad(format!(
                "volume {volume:?}: part {part} declares {} bytes (berth writes parts of at most {MAX_PART}); not a berth backup",
                entry.size()
            )));
        }
        let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .by_ref()
            .take(MAX_PART)
            .read_to_end(&mut data)
            .map_err(io_bad)?;
        let data = Bytes::from(data);
        if let Some((_, size, parts)) = payloads.last_mut() {
            *size += data.len() as u64;
            *parts += 1;
        }
        hash.send((payloads.len() - 1, data.clone()))
            .map_err(|_| hash_gone())?;
        f(Event::Part { volume, data })?;
    }
    // Read the compressed stream to its very end: that is where zstd checks
    // the frame's checksum, and where a cut-off tail shows.
    let rest = tar.into_inner();
    let trailer =
        std::io::copy(&mut rest.take(MAX_TRAILER + 1), &mut std::io::sink()).map_err(io_bad)?;
    if trailer > MAX_TRAILER {
        return Err(bad(
            "unexpected data after the end of the archive; not a berth backup".into(),
        ));
    }
    if !seen_marker {
        return Err(bad("empty archive; not a berth backup".into()));
    }
    let Some(manifest) = manifest else {
        return Err(bad(
            "the archive is truncated: it ends before its manifest; nothing was restored".into(),
        ));
    };
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "unsupported backup format {:?} (this berth reads {FORMAT})",
            manifest.format
        )));
    }
    manifest.check(what)?;
    drop(hash);
    let digests = digests()?;
    if digests.len() != payloads.len() {
        return Err(hash_gone());
    }
    let mut found: BTreeMap<String, (u64, String, u32)> = payloads
        .into_iter()
        .zip(digests)
        .map(|((v, size, parts), sha)| (v, (size, sha, parts)))
        .collect();
    for (_, vol) in manifest.volumes() {
        let Some((size, sha, parts)) = found.remove(&vol.name) else {
            return Err(bad(format!(
                "volume {} is listed in the manifest but its data is missing",
                vol.name
            )));
        };
        if size != vol.size || sha != vol.sha256 || parts != vol.parts {
            return Err(bad(format!(
                "volume {}: checksum mismatch (data is {size} bytes, sha256 {sha}; the manifest says {} bytes, sha256 {}): the archive is corrupt; nothing was restored",
                vol.name, vol.size, vol.sha256
            )));
        }
    }
    if let Some(extra) = found.keys().next() {
        return Err(bad(format!(
            "volume {extra} has data but is not in the manifest"
        )));
    }
    f(Event::Manifest(Box::new(manifest.clone())))?;
    Ok(manifest)
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> (Vec<u8>, Manifest) {
        let manifest = Manifest {
            format: FORMAT.into(),
            berth_version: "0".into(),
            created_at: "now".into(),
            deployment: "d".into(),
            consistent: true,
            spec: None,
            holds_secrets: false,
            instances: vec![InstanceEntry {
                service: "s".into(),
                instance: 1,
                container: "d-s".into(),
                image: None,
                image_id: None,
                volumes: vec![VolumeEntry {
                    name: "d-s-v".into(),
                    key: "v".into(),
                    mount_path: Some("/v".into()),
                    from_image: false,
                    special_files: SpecialFiles::default(),
                    size: payload.len() as u64,
                    sha256: hex(&Sha256::digest(payload)),
                    parts: 2,
                }],
            }],
        };
        let mut w = ArchiveWriter::new(Vec::new(), "d").unwrap();
        let (a, b) = payload.split_at(payload.len() / 2);
        w.member(&part_path("d-s-v", 0), a).unwrap();
        w.member(&part_path("d-s-v", 1), b).unwrap();
        (w.finish(&manifest).unwrap(), manifest)
    }

    #[test]
    fn round_trip_and_payload_order() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (bytes, manifest) = sample(&payload);
        let mut got = Vec::new();
        let m = read_archive(&bytes[..], "x", |e| {
            if let Event::Part { data, .. } = e {
                got.extend_from_slice(&data);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(m, manifest);
        assert_eq!(got, payload);
    }

    #[test]
    fn truncated_and_corrupt_archives_are_refused() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 253) as u8).collect();
        let (bytes, _) = sample(&payload);
        for cut in [bytes.len() - 1, bytes.len() / 2, 10] {
            let e = read_archive(&bytes[..cut], "x", |_| Ok(())).unwrap_err();
            assert!(
                e.to_string().contains("truncated") || e.to_string().contains("corrupt"),
                "{e}"
            );
        }
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        assert!(read_archive(&flipped[..], "x", |_| Ok(())).is_err());
        assert!(read_archive(&b"plain text"[..], "x", |_| Ok(())).is_err());
    }

    #[test]
    fn manifest_names_are_checked() {
        let (_, good) = sample(b"x");
        assert!(good.check("a").is_ok());
        // An image volume of `/.hidden` is kept as `<owner>-.hidden-<hash>`.
        let mut hidden = good.clone();
        hidden.instances[0].volumes[0].from_image = true;
        hidden.instances[0].volumes[0].key = crate::names::image_volume_name("d-s", "/.hidden")
            .trim_start_matches("d-s-")
            .to_string();
        assert!(hidden.check("a").is_ok(), "{:?}", hidden.check("a"));
        type Change = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("deployment", Box::new(|m| m.deployment = "../x".into())),
            (
                "service",
                Box::new(|m| m.instances[0].service = "s\nx".into()),
            ),
            ("instance 0", Box::new(|m| m.instances[0].instance = 0)),
            ("instance 101", Box::new(|m| m.instances[0].instance = 101)),
            (
                "container",
                Box::new(|m| m.instances[0].container = "../../etc".into()),
            ),
            (
                "numbered container for instance 2 only",
                Box::new(|m| m.instances[0].instance = 2),
            ),
            (
                "duplicate instance",
                Box::new(|m| {
                    let mut again = m.instances[0].clone();
                    again.volumes[0].name = "d-s-w".into();
                    again.volumes[0].key = "w".into();
                    m.instances.push(again);
                }),
            ),
            (
                "duplicate volume name",
                Box::new(|m| {
                    let mut again = m.instances[0].clone();
                    again.service = "t".into();
                    again.container = "d-t".into();
                    m.instances.push(again);
                }),
            ),
            (
                "duplicate key",
                Box::new(|m| {
                    let mut v = m.instances[0].volumes[0].clone();
                    v.name = "d-s-v2".into();
                    m.instances[0].volumes.push(v);
                }),
            ),
            (
                "key",
                Box::new(|m| m.instances[0].volumes[0].key = "a/b".into()),
            ),
            (
                "volume name",
                Box::new(|m| m.instances[0].volumes[0].name = "x\u{1b}[2J".into()),
            ),
            (
                "mount path",
                Box::new(|m| m.instances[0].volumes[0].mount_path = Some("/a/../..".into())),
            ),
            (
                "image volume without a path",
                Box::new(|m| {
                    m.instances[0].volumes[0].from_image = true;
                    m.instances[0].volumes[0].mount_path = None;
                }),
            ),
            (
                "image",
                Box::new(|m| m.instances[0].image = Some("A B".into())),
            ),
            (
                "image id",
                Box::new(|m| m.instances[0].image_id = Some("sha256:zz".into())),
            ),
            (
                "sha256",
                Box::new(|m| m.instances[0].volumes[0].sha256 = "../x".into()),
            ),
        ];
        for (what, change) in cases {
            let mut m = good.clone();
            change(&mut m);
            let e = m.check("crafted.tar.zst").expect_err(what);
            assert!(
                e.to_string().starts_with("crafted.tar.zst: "),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn sizes_in_headers_are_bounded() {
        let raw = |path: &str, size: u64| {
            let mut out = Vec::new();
            let mut marker = tar::Header::new_ustar();
            let text = format!("{FORMAT}\nd\n");
            marker.set_path(MARKER).unwrap();
            marker.set_size(text.len() as u64);
            marker.set_cksum();
            out.extend_from_slice(marker.as_bytes());
            out.extend_from_slice(text.as_bytes());
            out.resize(1024, 0);
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_size(size);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            zstd::encode_all(&out[..], 1).unwrap()
        };
        let e = read_archive(&raw("volumes/v/000000", 64 << 30)[..], "x", |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("declares"), "{e}");
        let e = read_archive(&raw(MANIFEST, 1 << 30)[..], "x", |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("manifest declares"), "{e}");
    }

    #[test]
    fn part_paths() {
        assert_eq!(parse_part_path(&part_path("a-b", 3)), Some(("a-b", 3)));
        assert_eq!(parse_part_path("volumes/a/1"), None);
        assert_eq!(parse_part_path("manifest.json"), None);
    }
}
