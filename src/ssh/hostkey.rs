//! The gateway's ed25519 host key: generated once, kept in the state
//! directory (`<state>/ssh/host_ed25519_key`, mode 0600, directory 0700).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// Load the host key, creating it on first use.
pub fn load_or_create(state: &StateDir) -> Result<PrivateKey> {
    let path = state.ssh_host_key();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_mode(&path)?;
            return PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
                Error::Runtime(format!(
                    "{}: not a usable OpenSSH private key ({e}); move it away to have a new host key generated",
                    path.display()
                ))
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let dir = state.ssh_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(&dir, e))?;

    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment("berth ssh-gateway");
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::Runtime(format!("cannot encode the new host key: {e}")))?;

    // Written to a temporary name with mode 0600 from the start, then renamed:
    // the key is never readable by others, and a crash leaves no half key.
    let tmp = state.ssh_host_key_tmp();
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    // Another gateway may have raced us; keep whichever key landed first.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::info!(
                "generated the ssh-gateway host key {} ({})",
                path.display(),
                fingerprint(&key)
            );
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            load_or_create(state)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Refuse a host key others can read.
fn check_mode(path: &std::path::Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Runtime(format!(
            "{}: the host key is readable by others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// `SHA256:...` fingerprint of the host key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let a = load_or_create(&state).expect("create");
        let b = load_or_create(&state).expect("load");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert!(fingerprint(&a).starts_with("SHA256:"));
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&state.ssh_host_key()), 0o600);
        assert_eq!(mode(&state.ssh_dir()), 0o700);
        // ssh-keygen agrees on the fingerprint.
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(state.ssh_host_key())
            .output()
            .expect("ssh-keygen");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&fingerprint(&a)),
            "{out:?}"
        );
    }
}
