//! Configs and secrets of an instance: what its spec records of each file
//! (target, owner, mode, reload signal and a digest of the content, never
//! the content), the content itself beside it (carried in memory, stored
//! root-only per instance in the state directory), and the digests.
//!
//! The spec hash is a container label anyone with engine access can read,
//! and instance specs are files: a plain hash of a short password can be
//! brute-forced, so a secret's digest is an HMAC-SHA256 keyed with a random
//! key kept root-only in the state directory. A config's digest is its
//! plain SHA-256 (`render` shows it, to compare with `sha256sum`).

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::deployment::{Deployment, FileKind, Service};
use crate::error::{Error, Result};
use crate::state::StateDir;

/// One config or secret of an instance, as its spec records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub kind: FileKind,
    /// The config's or secret's name in the deployment file.
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Signal for the running container when the content changes; such a
    /// file's digest is left out of the spec hash, so a change of it alone
    /// does not replace the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    /// `sha256:<hex>` (config) or `hmac-sha256:<hex>` (secret, keyed).
    pub digest: String,
}

impl FileSpec {
    /// `config users` / `secret db`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }

    /// The name of the file holding the content in the instance's store.
    fn store_name(&self) -> String {
        self.digest.replace(':', "-")
    }
}

/// The contents of an instance's files by digest. Never serialised, never
/// printed by `{:?}`, and equal whatever they hold: the digests in the
/// spec say what they are.
#[derive(Clone, Default)]
pub struct FileContents(BTreeMap<String, String>);

impl FileContents {
    /// The content with `digest`, if it is at hand.
    pub fn get(&self, digest: &str) -> Option<&str> {
        self.0.get(digest).map(String::as_str)
    }

    pub(crate) fn insert(&mut self, digest: String, content: String) {
        self.0.insert(digest, content);
    }
}

impl PartialEq for FileContents {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for FileContents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileContents({} files)", self.0.len())
    }
}

/// The host's key for secret digests.
#[derive(Clone)]
pub struct DigestKey([u8; 32]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    /// A random key that lives as long as the process: for specs that are
    /// never compared with what a host runs (tests, a plan on a host that
    /// has no key yet and so nothing applied to compare with).
    pub fn ephemeral() -> Result<Self> {
        let mut k = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut k))
            .map_err(|e| Error::io("/dev/urandom", e))?;
        Ok(DigestKey(k))
    }

    /// A constant key, only where no randomness is to be had.
    pub fn fixed() -> Self {
        DigestKey([0x42; 32])
    }

    /// The state directory's key; made (0600) when `create` is set and
    /// there is none, else an ephemeral one (plan touches nothing).
    pub fn for_state(state: &StateDir, create: bool) -> Result<Self> {
        let path = state.file_digest_key();
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&b);
                return Ok(DigestKey(k));
            }
            Ok(_) => {
                return Err(Error::Runtime(format!(
                    "{}: not a berth digest key (32 bytes); remove it and apply again (every instance with a secret is then recreated)",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        let key = DigestKey::ephemeral()?;
        if create {
            crate::state::write_private(&path, &key.0)?;
        }
        Ok(key)
    }

    /// HMAC-SHA256 (RFC 2104) of `data`.
    fn hmac(&self, data: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let pad = |b: u8| -> Vec<u8> { block.iter().map(|k| k ^ b).collect() };
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(data)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of a config's content.
pub fn config_digest(content: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(content.as_bytes())))
}

/// The digest of a file's content: plain for configs, keyed for secrets.
pub fn digest(kind: FileKind, content: &str, key: &DigestKey) -> String {
    match kind {
        FileKind::Config => config_digest(content),
        FileKind::Secret => format!("hmac-sha256:{}", hex(&key.hmac(content.as_bytes()))),
    }
}

/// The files of one service's instances, with their contents.
pub fn resolve_files(
    deployment: &Deployment,
    svc: &Service,
    key: &DigestKey,
) -> (Vec<FileSpec>, FileContents) {
    let mut files = Vec::new();
    let mut contents = FileContents::default();
    for (kind, m) in svc.file_mounts() {
        // Validation guarantees the source exists.
        let content = deployment
            .file_source(kind, &m.source)
            .map(|s| s.content.clone())
            .unwrap_or_default();
        let digest = digest(kind, &content, key);
        contents.insert(digest.clone(), content);
        files.push(FileSpec {
            kind,
            name: m.source.clone(),
            target: m.target.clone(),
            uid: m.uid,
            gid: m.gid,
            mode: m.mode,
            reload: m.reload.clone(),
            digest,
        });
    }
    (files, contents)
}

/// Write the contents of `files` to the instance's store (0600 files in a
/// 0700 directory) and remove what no file of it names any more; with no
/// files, the store goes.
pub fn store(
    state: &StateDir,
    container: &str,
    files: &[FileSpec],
    contents: &FileContents,
) -> Result<()> {
    let dir = state.instance_files_dir(container);
    if files.is_empty() {
        return match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
            _ => Ok(()),
        };
    }
    let wanted: Vec<String> = files.iter().map(FileSpec::store_name).collect();
    for f in files {
        let path = dir.join(f.store_name());
        if path.is_file() {
            continue;
        }
        let Some(content) = contents.get(&f.digest) else {
            return Err(Error::Runtime(format!(
                "{container}: the content of {} is not at hand; run `berth apply` with the deployment file",
                f.label()
            )));
        };
        crate::state::write_private(&path, content.as_bytes())?;
    }
    for entry in crate::state::dir_entries(&dir)? {
        let name = entry.file_name();
        if !wanted.iter().any(|w| name.to_str() == Some(w.as_str())) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io(p, e))?;
        }
    }
    Ok(())
}

/// The contents of `files` from the instance's store (those missing are
/// left out: delivery names them).
pub fn load(state: &StateDir, container: &str, files: &[FileSpec]) -> Result<FileContents> {
    let dir = state.instance_files_dir(container);
    let mut out = FileContents::default();
    for f in files {
        let path = dir.join(f.store_name());
        match std::fs::read(&path) {
            Ok(b) => {
                let text = String::from_utf8(b).map_err(|_| {
                    Error::Runtime(format!(
                        "{}: corrupt content of {}; run `berth apply` to rewrite it",
                        path.display(),
                        f.label()
                    ))
                })?;
                out.insert(f.digest.clone(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(out)
}

/// Diff lines for the files of two specs, by kind and name: what changed,
/// never the content.
pub fn diff_lines(before: &[FileSpec], after: &[FileSpec]) -> Vec<String> {
    let key = |f: &FileSpec| (f.kind, f.name.clone(), f.target.clone());
    let mut out = Vec::new();
    for a in after {
        match before.iter().find(|b| key(b) == key(a)) {
            None => out.push(format!("{}: added at {}", a.label(), a.target)),
            Some(b) => {
                if b.digest != a.digest {
                    let how = match &a.reload {
                        Some(sig) => format!(" (reloaded with {sig})"),
                        None => String::new(),
                    };
                    out.push(format!("{}: content changed{how}", a.label()));
                }
                if (b.uid, b.gid, b.mode) != (a.uid, a.gid, a.mode) {
                    out.push(format!(
                        "{}: owner {}:{} mode {:04o} → owner {}:{} mode {:04o}",
                        a.label(),
                        b.uid,
                        b.gid,
                        b.mode,
                        a.uid,
                        a.gid,
                        a.mode
                    ));
                }
                if b.reload != a.reload {
                    out.push(format!(
                        "{}: reload {} → {}",
                        a.label(),
                        b.reload.as_deref().unwrap_or("(none)"),
                        a.reload.as_deref().unwrap_or("(none)")
                    ));
                }
            }
        }
    }
    for b in before {
        if !after.iter().any(|a| key(a) == key(b)) {
            out.push(format!("{}: removed from {}", b.label(), b.target));
        }
    }
    out
}

/// The files of `after` to update in place of a running container made
/// from `before`: when the two specs differ only in the content of files
/// that have a reload signal (the spec hashes are equal), those files.
pub fn reloads<'a>(before: &[FileSpec], after: &'a [FileSpec]) -> Vec<&'a FileSpec> {
    after
        .iter()
        .filter(|a| {
            a.reload.is_some()
                && before.iter().any(|b| {
                    b.kind == a.kind
                        && b.name == a.name
                        && b.target == a.target
                        && b.digest != a.digest
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_and_secret_digests_need_the_key() {
        // RFC 4231 test case 2 uses a short key; ours is always 32 bytes, so
        // check against a known HMAC-SHA256 computed with a 32-byte key.
        let key = DigestKey([0x0b; 32]);
        // python3 -c "import hmac,hashlib;print(hmac.new(b'\x0b'*32,b'Hi There',hashlib.sha256).hexdigest())"
        assert_eq!(
            hex(&key.hmac(b"Hi There")),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
        let other = DigestKey([0x0c; 32]);
        let a = digest(FileKind::Secret, "pw", &key);
        assert!(a.starts_with("hmac-sha256:"));
        assert_ne!(a, digest(FileKind::Secret, "pw", &other));
        assert!(!a.contains(&hex(&Sha256::digest(b"pw"))));
        assert_eq!(
            digest(FileKind::Config, "x", &key),
            digest(FileKind::Config, "x", &other)
        );
    }

    #[test]
    fn the_store_is_root_only_and_keeps_only_what_the_spec_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::new(dir.path().join("s"));
        let key = DigestKey::for_state(&state, true).unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&state.file_digest_key()), 0o600);
        let again = DigestKey::for_state(&state, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.0, key.0);
        let spec = |content: &str| {
            let d = digest(FileKind::Secret, content, &key);
            let mut c = FileContents::default();
            c.insert(d.clone(), content.to_string());
            let f = FileSpec {
                kind: FileKind::Secret,
                name: "db".into(),
                target: "/run/secrets/db".into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                reload: None,
                digest: d,
            };
            (vec![f], c)
        };
        let (f1, c1) = spec("one");
        store(&state, "d-web", &f1, &c1).unwrap_or_else(|e| panic!("{e}"));
        let (f2, c2) = spec("two");
        store(&state, "d-web", &f2, &c2).unwrap_or_else(|e| panic!("{e}"));
        let store_dir = state.instance_files_dir("d-web");
        assert_eq!(mode(&store_dir), 0o700);
        let names: Vec<_> = crate::state::dir_entries(&store_dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| e.path())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(mode(&names[0]), 0o600);
        let back = load(&state, "d-web", &f2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.get(&f2[0].digest), Some("two"));
        store(&state, "d-web", &[], &FileContents::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!store_dir.exists());
    }
}
