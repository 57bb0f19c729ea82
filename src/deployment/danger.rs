//! Settings that are valid but hand a container power over the host: each
//! gets a located warning (they do not change the exit code). berth runs as
//! root, so these are what turn a compromised service into a compromised
//! host; the operator should see them every time the file is checked.

use std::collections::BTreeMap;

use super::decode::{Decoder, ServiceSpans};
use super::model::{Deployment, VolumeSource};

/// Which bind mounts below a host directory are warned about too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Below {
    /// Only the directory itself.
    Never,
    /// Paths below it mounted writable (`/etc/ssl/certs:ro` is fine,
    /// `/etc/shadow` writable is not).
    Writable,
    /// Every path below it, even read-only (reading is the harm).
    Always,
}

/// Host directories whose bind mount exposes the host, and what they hold.
const HOST_DIRS: &[(&str, &str, Below)] = &[
    ("/", "the host's whole file system", Below::Never),
    (
        "/etc",
        "the host's configuration, with its users, password hashes, sudoers and systemd units",
        Below::Writable,
    ),
    (
        "/root",
        "root's home directory, with its SSH keys and shell start-up files",
        Below::Always,
    ),
    (
        "/home",
        "the users' home directories, with their SSH keys",
        Below::Writable,
    ),
    ("/boot", "the host's kernels and boot loader", Below::Always),
    (
        "/proc",
        "the host's processes and kernel settings",
        Below::Always,
    ),
    (
        "/sys",
        "the host's kernel and device settings",
        Below::Always,
    ),
    ("/dev", "the host's devices", Below::Never),
    ("/usr", "the host's programs", Below::Writable),
    ("/bin", "the host's programs", Below::Writable),
    ("/sbin", "the host's programs", Below::Writable),
    ("/lib", "the host's libraries", Below::Writable),
    ("/lib64", "the host's libraries", Below::Writable),
    (
        "/var",
        "the host's state, including the engine's data",
        Below::Never,
    ),
    (
        "/var/lib",
        "the host's state, including the engine's data",
        Below::Never,
    ),
    (
        "/var/lib/docker",
        "the engine's data: every container's files and volumes",
        Below::Always,
    ),
    (
        "/var/lib/containerd",
        "the container runtime's data: every container's files",
        Below::Always,
    ),
    (
        "/var/lib/berth",
        "berth's state: every instance's settings and environment",
        Below::Always,
    ),
    (
        "/run",
        "the host's runtime state, including the engine's socket",
        Below::Never,
    ),
    (
        "/var/run",
        "the host's runtime state, including the engine's socket",
        Below::Never,
    ),
    (
        "/run/containerd",
        "the container runtime's sockets",
        Below::Always,
    ),
    (
        "/run/dbus",
        "the system bus, through which root controls systemd",
        Below::Always,
    ),
    (
        "/run/systemd",
        "systemd's sockets, which control the host's services",
        Below::Always,
    ),
];

/// The engine's API sockets: whoever reaches one can start a privileged
/// container with the host's `/` mounted, so it is root on the host.
const ENGINE_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
];

/// Capabilities worth a warning when added, and why. Not listed, on
/// purpose: `NET_ADMIN` and `NET_RAW` act on the container's own network
/// namespace only (berth never shares the host's network), and the rest of
/// Docker's defaults are already granted.
const DANGEROUS_CAPS: &[(&str, &str)] = &[
    (
        "ALL",
        "every capability: nearly the same as privileged = true",
    ),
    (
        "SYS_ADMIN",
        "mounting file systems, namespaces and many kernel interfaces: the usual way out of a container",
    ),
    (
        "SYS_MODULE",
        "loading kernel modules: code in the host's kernel",
    ),
    ("SYS_RAWIO", "raw access to I/O ports and memory devices"),
    (
        "SYS_PTRACE",
        "tracing and reading the memory of every process the container sees",
    ),
    ("SYS_BOOT", "rebooting the host and loading a new kernel"),
    (
        "SYS_TIME",
        "setting the host's clock (the clock is not per container)",
    ),
    (
        "DAC_READ_SEARCH",
        "opening files by handle, which reads any file of the host's file systems",
    ),
    (
        "MAC_ADMIN",
        "changing the host's AppArmor or SELinux policy",
    ),
    (
        "MAC_OVERRIDE",
        "bypassing the host's AppArmor or SELinux policy",
    ),
    ("BPF", "loading BPF programs into the host's kernel"),
    (
        "PERFMON",
        "observing every process on the host through performance events",
    ),
];

/// `/a//b/./c/` as `/a/b/c`.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn is_below(path: &str, dir: &str) -> bool {
    dir == "/" || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Why binding `source` from the host deserves a warning, if it does.
fn bind_danger(source: &str, read_only: bool) -> Option<String> {
    let path = normalise(source);
    let name = path.rsplit('/').next().unwrap_or("");
    if ENGINE_SOCKETS.contains(&path.as_str()) || name == "docker.sock" {
        return Some(format!(
            "bind mount of the engine's socket `{path}`: the container controls the engine, which makes it root on the host (read-only does not change that)"
        ));
    }
    if let Some((dir, what, _)) = HOST_DIRS.iter().find(|(d, _, _)| *d == path) {
        return Some(format!(
            "bind mount of the host's `{dir}`: the container sees {what}{}",
            if read_only { "" } else { " and can change it" }
        ));
    }
    // The deepest listed directory the path is below decides.
    let (dir, what, below) = HOST_DIRS
        .iter()
        .filter(|(d, _, _)| *d != "/" && is_below(&path, d))
        .max_by_key(|(d, _, _)| d.len())?;
    let warn = match below {
        Below::Never => false,
        Below::Writable => !read_only,
        Below::Always => true,
    };
    warn.then(|| {
        format!(
            "bind mount of `{path}`, inside `{dir}` ({what}){}",
            if read_only {
                ": the container can read it"
            } else {
                ": the container can change it"
            }
        )
    })
}

/// Warn about every dangerous setting of the deployment.
pub fn warnings(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    for svc in dep.services.values() {
        let Some(sp) = spans.get(&svc.name) else {
            continue;
        };
        for (i, v) in svc.volumes.iter().enumerate() {
            let VolumeSource::Bind(path) = &v.source else {
                continue;
            };
            if let Some(why) = bind_danger(&path.to_string_lossy(), v.read_only) {
                let span = sp.volumes.get(i).copied().unwrap_or(sp.name);
                d.warn(
                    span,
                    format!("service `{}`: {why}", svc.name),
                    "bind only the files or directories the service needs, read-only where it can (\"/srv/app/config:/config:ro\")",
                );
            }
        }
        if svc.settings.privileged {
            d.warn(
                sp.privileged.unwrap_or(sp.name),
                format!(
                    "service `{}` runs privileged: every capability and every host device, so root in the container is root on the host",
                    svc.name
                ),
                "add only the capabilities the service needs with cap_add, and remove privileged = true",
            );
        }
        for dev in &svc.settings.devices {
            d.warn(
                sp.name,
                format!(
                    "service `{}` is given the host device {}: the container reaches the hardware (or kernel interface) behind it",
                    svc.name,
                    dev.split(':').next().unwrap_or(dev)
                ),
                "give only the devices the service needs, read-only (\":r\") where it can",
            );
        }
        for (i, cap) in svc.settings.cap_add.iter().enumerate() {
            if let Some((_, why)) = DANGEROUS_CAPS.iter().find(|(c, _)| c == cap) {
                d.warn(
                    sp.cap_add.get(i).copied().unwrap_or(sp.name),
                    format!("service `{}` adds the capability {cap}: {why}", svc.name),
                    "add it only if the service cannot work without it",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_binds() {
        for (src, ro) in [
            ("/", true),
            ("//", false),
            ("/etc", true),
            ("/etc/", false),
            ("/etc/shadow", false),
            ("/var/run/docker.sock", true),
            ("/run/docker.sock", false),
            ("/srv/x/docker.sock", true),
            ("/proc/sysrq-trigger", true),
            ("/sys", false),
            ("/dev", true),
            ("/var/lib/docker/volumes", true),
            ("/root/.ssh", true),
            ("/run", true),
        ] {
            assert!(bind_danger(src, ro).is_some(), "{src} (ro: {ro})");
        }
        for (src, ro) in [
            ("/srv/data", false),
            ("/etc/ssl/certs", true),
            ("/var/lib/app", false),
            ("/dev/snd", false),
            ("/home/app/data", true),
            ("/run/app", false),
            ("/etcetera", false),
        ] {
            assert!(bind_danger(src, ro).is_none(), "{src} (ro: {ro})");
        }
    }

    #[test]
    fn dangerous_caps_are_capabilities() {
        for (c, _) in DANGEROUS_CAPS {
            assert!(
                *c == "ALL" || crate::deployment::values::CAPABILITIES.contains(c),
                "{c}"
            );
        }
    }
}
