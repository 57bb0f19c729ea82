//! OpenSSH mode, for hosts that keep `sshd` on port 22 instead of (or besides)
//! running `berth ssh-gateway`.
//!
//! # Design: one host user per login
//!
//! sshd only authenticates users that exist on the host, and the login name is
//! what picks the container (as with the gateway: `ssh mail@host`). So every
//! login that should work through sshd (`mail`, `web-2`, `example.mail`) is a
//! host user made for that purpose:
//!
//! - not uid 0, no password (`*`, not `!`: sshd refuses locked accounts), no
//!   home needed, shell `/bin/sh` (sshd runs the forced command through the
//!   user's shell, so it must not be `nologin`);
//! - member of a group that names the berth logins (`berth-ssh` below) and of
//!   the `docker` group, because the forced command talks to the engine as that
//!   user. The `restrict` option and the forced command are what keep the user
//!   from doing anything else with that access.
//!
//! A single shared host user with the container chosen by the key was
//! rejected: sshd uses the first `authorized_keys` line whose key matches, so a
//! key granted to several containers (geard's deployment-wide `Keys` grant all
//! of them) could only ever reach one.
//!
//! ```text
//! groupadd --system berth-ssh
//! useradd --system --no-create-home --home-dir / --shell /bin/sh \
//!         --groups berth-ssh,docker mail
//! usermod -p '*' mail
//! ```
//!
//! and in `/etc/ssh/sshd_config` (the command must be owned by root and not
//! writable by others; it runs as root because the state directory is
//! root-only):
//!
//! ```text
//! Match Group berth-ssh
//!     AuthorizedKeysFile none
//!     AuthorizedKeysCommand /usr/local/bin/berth --state-dir /var/lib/berth authorized-keys %u
//!     AuthorizedKeysCommandUser root
//!     PasswordAuthentication no
//!     KbdInteractiveAuthentication no
//!     DisableForwarding yes
//!     PermitTunnel no
//!     PermitUserRC no
//! ```
//!
//! `berth authorized-keys mail` prints, for every key granted to `mail` in the
//! applied revision, a line
//! `restrict,pty,command="/usr/local/bin/berth --state-dir /var/lib/berth exec --ssh example-mail" ssh-ed25519 AAAA... comment`:
//! no forwarding of any kind, a PTY when the client asks for one, and the
//! forced command `berth exec --ssh CONTAINER`, which runs
//! `$SSH_ORIGINAL_COMMAND` through `/bin/sh -c` in the container, or the
//! service's shell when there is none. Unknown and ambiguous logins get no
//! lines (and sshd refuses them).

use std::path::Path;

use super::access::{self, Lookup};
use crate::state::StateDir;

/// The `authorized_keys` lines for `login`, one per granted key. Empty for
/// unknown or ambiguous logins.
pub fn authorized_keys(
    state: &StateDir,
    berth: &Path,
    state_root: &Path,
    login: &str,
) -> Vec<String> {
    let Lookup::Found(target) = access::resolve(state, login) else {
        return Vec::new();
    };
    // The forced command execs in a container of this host; a swarm task
    // is reached through `berth ssh-gateway --target swarm` instead.
    if target.swarm {
        return Vec::new();
    }
    let command = format!(
        "{} --state-dir {} exec --ssh {}",
        shell_quote(&berth.to_string_lossy()),
        shell_quote(&state_root.to_string_lossy()),
        shell_quote(&target.container)
    );
    // Inside the option's double quotes, `"` and `\` are escaped.
    let command = command.replace('\\', "\\\\").replace('"', "\\\"");
    target
        .keys
        .iter()
        .filter_map(|k| {
            let key = access::authorized_key_text(k);
            if key.is_none() {
                tracing::warn!(key = %k.name, "not printing a granted key that does not parse");
            }
            key
        })
        .map(|key| format!("restrict,pty,command=\"{command}\" {key}"))
        .collect()
}

/// Quote a word for `sh -c` (sshd runs the forced command through the
/// user's shell). Plain words stay as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '+' | ',')
        })
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The shell for interactive sessions in `container`, from the applied
/// revision when this user may read it, `/bin/sh` otherwise.
pub fn shell_for_container(state: &StateDir, container: &str) -> String {
    for d in access::applied_deployments(state) {
        for inst in d.instances() {
            if inst.container == container
                && let Some(shell) = d
                    .services
                    .get(&inst.service)
                    .and_then(|s| s.ssh_shell.clone())
            {
                return shell;
            }
        }
    }
    access::DEFAULT_SHELL.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/berth"), "/usr/bin/berth");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
