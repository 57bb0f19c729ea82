//! A real systemd host for tests: systemd runs as PID 1 in a container made
//! from a Debian bookworm rootfs, with the engine's socket mounted in and the
//! freshly built `berth` copied to `/usr/local/bin/berth`.
//!
//! - The rootfs comes from `debootstrap --variant=minbase
//!   --include=systemd,systemd-sysv,dbus,man-db,bash-completion bookworm`,
//!   from the Debian mirror apt uses on this machine, and is `docker import`ed as
//!   `berth-test/systemd-host:<hash of the recipe>`. It is built at most once
//!   per test process and reused across runs by tag; a changed recipe gets a
//!   new tag. A lock file keeps two test processes from building it at once.
//!   If the mirror cannot be reached the build panics with that reason: the
//!   tests fail, they are not skipped.
//! - Containers that `berth` starts inside the host are siblings on the same
//!   engine. The host tracks the deployment names a test uses
//!   ([`SystemdHost::deployment`]) and, when dropped, removes the host
//!   container and everything labelled with those deployments.
//! - [`SystemdHost::reboot`] restarts the host container. It is stopped with
//!   `SIGRTMIN+3`, systemd's "halt" signal, so systemd shuts down cleanly and
//!   stops every unit as a real reboot does. [`SystemdHost::power_cycle`] kills
//!   it instead, like pulling the plug. The journal is volatile (in `/run`),
//!   so each boot's journal holds that boot only; the one before the last
//!   reboot is kept in [`SystemdHost::previous_journal`].
//! - [`HostDeployment`] is a deployment file inside the host, driven with the
//!   `berth` inside it (`apply`, `berth_ok("stop web")`, `wait_active("web")`).
//! - Hosts left behind by a killed test process are removed, with their
//!   deployments, by the next process that boots a host.
//!
//! ```ignore
//! let host = SystemdHost::boot(bin());
//! let d = HostDeployment::new(&host, "demo");
//! d.write("name = \"NAME\"\n[services.web]\nimage = \"IMAGE\"\ncommand = [\"sleep\", \"1d\"]\n");
//! d.apply();
//! let id = d.wait_active("web");
//! host.reboot();
//! assert_ne!(d.wait_active("web"), id);
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Cleanup, docker, docker_ok, short_hash, show, unique_name};

/// Label on the host image (value: the recipe hash) and on host containers.
pub const HOST_LABEL: &str = "berth.test-systemd-host";
/// Repository of the host image; the tag is the recipe hash.
pub const HOST_IMAGE_REPO: &str = "berth-test/systemd-host";
/// Where the `berth` binary is put inside the host.
pub const HOST_BERTH: &str = "/usr/local/bin/berth";
/// How long booting (and rebooting) may take before the test fails.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The Debian release of the host.
const SUITE: &str = "bookworm";
/// Packages on top of minbase: systemd as init, D-Bus for systemctl, and
/// man-db and bash-completion for checking what berth's package installs.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,man-db,bash-completion";
/// Changes made to the rootfs after debootstrap, as a shell script run in the
/// rootfs directory. Part of the recipe hash.
const POST_SCRIPT: &str = "\
set -e
# Smaller image: package caches are not needed at run time.
rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*
# A volatile journal (in /run): the kernel's boot ID does not change when the
# host container restarts, so a persistent journal would mix every boot into
# one. Each boot starts with an empty journal; reboot() keeps the old one.
rm -rf var/log/journal
# Nothing in a test host needs a login prompt on the console.
ln -sf /dev/null etc/systemd/system/console-getty.service
ln -sf /dev/null etc/systemd/system/getty@tty1.service
";

/// The recipe the image tag is derived from. The mirror is not part of it:
/// any Debian mirror yields the same system.
fn recipe() -> String {
    format!(
        "debootstrap --variant=minbase --include={INCLUDE} {SUITE}\n{POST_SCRIPT}\ncmd=/lib/systemd/systemd\nlabel={HOST_LABEL}\n"
    )
}

/// The host image tag for the current recipe.
pub fn host_image_tag() -> String {
    format!("{HOST_IMAGE_REPO}:{}", short_hash(&recipe()))
}

/// The Debian mirror apt uses on this machine (`BERTH_DEBIAN_MIRROR` wins).
///
/// Reads `/etc/apt/sources.list` (one-line format) and
/// `/etc/apt/sources.list.d/*` (`.list` and deb822 `.sources`), and takes the
/// first `deb` source that serves the suite itself (not `-security` or
/// `-updates`). Falls back to `http://deb.debian.org/debian`.
pub fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("BERTH_DEBIAN_MIRROR")
        && !m.trim().is_empty()
    {
        return m.trim().to_string();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if let Some(m) = mirror_in(&text, SUITE) {
            return m;
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The first `deb` URI in an apt sources text (either format) that serves `suite`.
pub fn mirror_in(text: &str, suite: &str) -> Option<String> {
    // One-line format: `deb [options] URI suite components...`
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut words = rest.split_whitespace().peekable();
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            // Skip `[arch=amd64 signed-by=...]`, which may span words.
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let (Some(uri), Some(s)) = (words.next(), words.next()) else {
            continue;
        };
        if s == suite {
            return Some(uri.to_string());
        }
    }
    // deb822 format: paragraphs of `Key: value` lines.
    for para in text.split("\n\n") {
        let mut types = "";
        let mut uris = "";
        let mut suites = "";
        for line in para.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "types" => types = v,
                    "uris" => uris = v,
                    "suites" => suites = v,
                    _ => {}
                }
            }
        }
        if types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite)
            && let Some(uri) = uris.split_whitespace().next()
        {
            return Some(uri.to_string());
        }
    }
    None
}

/// Make sure the host image exists and return its tag. Builds it when missing:
/// at most once per process, and under a lock file so that concurrent test
/// processes wait for one build instead of racing.
pub fn host_image() -> String {
    static BUILT: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.is_none() {
        *built = Some(build_host_image());
    }
    match built.as_ref() {
        Some(Ok(tag)) => tag.clone(),
        Some(Err(e)) => panic!("the systemd host image could not be built: {e}"),
        None => unreachable!("set just above"),
    }
}

/// The host image with systemd from `bookworm-backports` (>= 254): for
/// checking what berth renders for newer systemd (`RestartSteps=`). Built
/// once per process from [`host_image`] (`docker build`, apt from the same
/// mirror) and reused by tag.
pub fn newer_systemd_image() -> String {
    static BUILT: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.is_none() {
        *built = Some(build_newer_systemd_image());
    }
    match built.as_ref() {
        Some(Ok(tag)) => tag.clone(),
        Some(Err(e)) => panic!("the newer-systemd image could not be built: {e}"),
        None => unreachable!("set just above"),
    }
}

fn build_newer_systemd_image() -> Result<String, String> {
    let base = host_image();
    let mirror = debian_mirror();
    // The mirror is an argument, not part of the recipe (and of the tag).
    let dockerfile = format!(
        "FROM {base}\nARG MIRROR\nRUN echo \"deb $MIRROR {SUITE}-backports main\" > /etc/apt/sources.list.d/backports.list \\\n && apt-get update -qq \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t {SUITE}-backports systemd \\\n && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb\nLABEL {HOST_LABEL}=newer-systemd\n"
    );
    let tag = format!(
        "{HOST_IMAGE_REPO}-newer-systemd:{}",
        short_hash(&dockerfile)
    );
    if image_exists(&tag) {
        return Ok(tag);
    }
    let lock_path = std::env::temp_dir().join(format!(
        "berth-systemd-host-{}.lock",
        short_hash(&dockerfile)
    ));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    if image_exists(&tag) {
        return Ok(tag);
    }
    let dir = tempfile::tempdir().map_err(|e| format!("build directory: {e}"))?;
    std::fs::write(dir.path().join("Dockerfile"), &dockerfile)
        .map_err(|e| format!("write Dockerfile: {e}"))?;
    let out = Command::new("docker")
        .args([
            "build",
            "-q",
            "--build-arg",
            &format!("MIRROR={mirror}"),
            "-t",
            &tag,
        ])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "installing systemd from {SUITE}-backports ({mirror}) failed (cannot reach Debian's packages?)\n{}",
            show(&out)
        ));
    }
    Ok(tag)
}

fn image_exists(tag: &str) -> bool {
    docker(&["image", "inspect", tag]).status.success()
}

fn build_host_image() -> Result<String, String> {
    let tag = host_image_tag();
    if image_exists(&tag) {
        return Ok(tag);
    }
    let lock_path =
        std::env::temp_dir().join(format!("berth-systemd-host-{}.lock", short_hash(&recipe())));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    // Another process may have built it while this one waited for the lock.
    if image_exists(&tag) {
        return Ok(tag);
    }
    let started = Instant::now();
    let mirror = debian_mirror();
    eprintln!("systemd host: building {tag} with debootstrap from {mirror} (once; cached by tag)");
    let work = tempfile::Builder::new()
        .prefix("berth-host-rootfs-")
        .tempdir_in(std::env::var_os("BERTH_ROOTFS_TMP").unwrap_or_else(|| "/var/tmp".into()))
        .map_err(|e| format!("temporary directory for the rootfs: {e}"))?;
    let rootfs = work.path().join("rootfs");
    debootstrap(&mirror, &rootfs)?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(POST_SCRIPT)
        .current_dir(&rootfs)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("preparing the rootfs failed\n{}", show(&out)));
    }
    // tar the rootfs straight into `docker import`.
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let Some(tar_out) = tar.stdout.take() else {
        return Err("tar has no stdout".into());
    };
    let import = Command::new("docker")
        .args([
            "import",
            "--change",
            &format!("LABEL {HOST_LABEL}={}", short_hash(&recipe())),
            "--change",
            "CMD [\"/lib/systemd/systemd\"]",
            "-",
            &tag,
        ])
        .stdin(tar_out)
        .output()
        .map_err(|e| format!("cannot run docker import: {e}"))?;
    let tar_status = tar.wait().map_err(|e| format!("tar: {e}"))?;
    if !tar_status.success() || !import.status.success() {
        return Err(format!(
            "importing the rootfs failed (tar: {tar_status})\n{}",
            show(&import)
        ));
    }
    eprintln!("systemd host: built {tag} in {:.0?}", started.elapsed());
    drop(lock);
    Ok(tag)
}

/// Run the recipe's debootstrap of Debian into `rootfs` from `mirror`. The
/// error says what failed and why (the end of debootstrap's own log).
pub fn debootstrap(mirror: &str, rootfs: &Path) -> Result<(), String> {
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(rootfs)
        .arg(mirror)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run debootstrap ({e}); install it: apt-get install debootstrap")
        })?;
    if out.status.success() {
        return Ok(());
    }
    let log =
        std::fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).unwrap_or_default();
    Err(format!(
        "debootstrap of Debian {SUITE} from {mirror} failed (cannot reach Debian's packages there?)\n{}\n--- debootstrap.log (end)\n{}",
        show(&out),
        tail(&log, 30)
    ))
}

/// A running systemd host. Dropping it removes the host container and every
/// container, volume and network of the deployments it tracks.
pub struct SystemdHost {
    /// Name of the host container.
    pub name: String,
    deployments: Mutex<Vec<String>>,
    previous_journal: Mutex<String>,
}

impl SystemdHost {
    /// Boot a fresh host from the (cached) image, copy `berth_bin` into it as
    /// [`HOST_BERTH`], and wait until systemd reports the system running.
    pub fn boot(berth_bin: &Path) -> Self {
        let image = host_image();
        sweep_orphans();
        let name = format!("berth-host-{}", unique_name("h"));
        let host = SystemdHost {
            name: name.clone(),
            deployments: Mutex::new(Vec::new()),
            previous_journal: Mutex::new(String::new()),
        };
        let label = format!("{HOST_LABEL}={name}");
        let pid_label = format!("{PID_LABEL}={}", std::process::id());
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            "berth-host",
            "--label",
            &label,
            "--label",
            &pid_label,
            // systemd's clean-shutdown signal: `docker restart` becomes a reboot.
            "--stop-signal",
            "SIGRTMIN+3",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "-e",
            "container=docker",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            &image,
            "/lib/systemd/systemd",
        ]);
        docker_ok(&[
            "cp",
            "-L",
            &berth_bin.to_string_lossy(),
            &format!("{name}:{HOST_BERTH}"),
        ]);
        host.wait_running();
        let v = host.exec(&[HOST_BERTH, "--version"]);
        assert!(
            v.status.success(),
            "the berth binary does not run inside the systemd host:\n{}",
            show(&v)
        );
        host
    }

    /// A new unique deployment name, tracked for removal when the host is dropped.
    pub fn deployment(&self, tag: &str) -> String {
        let name = unique_name(tag);
        self.track(&name);
        name
    }

    /// Track a deployment name for removal when the host is dropped.
    pub fn track(&self, deployment: &str) {
        self.deployments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(deployment.to_string());
        // Also inside the host, for the sweep of a test process that died
        // before it could clean up (see `sweep_orphans`).
        self.exec(&[
            "sh",
            "-c",
            "echo \"$1\" >> /etc/berth-test-deployments",
            "sh",
            deployment,
        ]);
    }

    /// Run a command inside the host (`docker exec`).
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    /// Run a shell script inside the host.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Run a shell script inside the host; panic with its output (and the
    /// journal's end) unless it succeeds. Returns trimmed stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the systemd host: {script}\n{}\n--- journal (end)\n{}",
            show(&out),
            self.journal_tail(80)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Write a file inside the host (parents created).
    pub fn write_file(&self, path: &str, contents: &str) {
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.name,
                "sh",
                "-c",
                "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"",
                "sh",
                path,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker exec");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(contents.as_bytes())
                .expect("write to docker exec");
        }
        let out = child.wait_with_output().expect("wait for docker exec");
        assert!(
            out.status.success(),
            "writing {path} in the host failed\n{}",
            show(&out)
        );
    }

    /// `systemctl is-system-running` until it says running or degraded. On
    /// timeout the test fails with the journal and the failed units.
    pub fn wait_running(&self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.exec(&["systemctl", "is-system-running"]);
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if last == "running" || last == "degraded" {
                return;
            }
            if !self.is_up() {
                panic!(
                    "the systemd host {} stopped while booting\n--- docker logs\n{}",
                    self.name,
                    String::from_utf8_lossy(&docker(&["logs", "--tail", "100", &self.name]).stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "systemd in {} did not reach running/degraded within {BOOT_TIMEOUT:?} (last: {last:?})\n--- failed units\n{}\n--- journal (end)\n{}",
            self.name,
            String::from_utf8_lossy(&self.exec(&["systemctl", "--failed", "--no-pager"]).stdout),
            self.journal_tail(200)
        );
    }

    fn is_up(&self) -> bool {
        let out = docker(&["inspect", "-f", "{{.State.Running}}", &self.name]);
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// Reboot: [`shutdown`](Self::shutdown), then [`start`](Self::start).
    pub fn reboot(&self) {
        self.shutdown();
        self.start();
    }

    /// Shut the host down: stop the host container; systemd shuts down
    /// cleanly on `SIGRTMIN+3`, stopping every unit. Fails the test if
    /// systemd did not finish by itself within two minutes (the engine then
    /// kills it, and the exit code says so). The journal of the boot that
    /// ends is kept ([`previous_journal`](Self::previous_journal)).
    pub fn shutdown(&self) {
        self.keep_journal();
        docker_ok(&["stop", "-t", "120", &self.name]);
        let code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &self.name]);
        assert_eq!(
            code,
            "0",
            "systemd in {} did not shut down cleanly (exit code {code})\n--- journal before the shutdown (end)\n{}",
            self.name,
            tail(&self.previous_journal(), 80)
        );
    }

    /// Start a host that was shut down and wait for the boot.
    pub fn start(&self) {
        docker_ok(&["start", &self.name]);
        self.wait_running();
    }

    /// Pull the plug: kill the host container (systemd gets no chance to stop
    /// anything), start it again, wait for the boot.
    pub fn power_cycle(&self) {
        self.keep_journal();
        docker_ok(&["kill", &self.name]);
        docker_ok(&["start", &self.name]);
        self.wait_running();
    }

    fn keep_journal(&self) {
        let j = self.journal();
        *self
            .previous_journal
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = j;
    }

    /// The journal of the boot before the last reboot, as it was just before
    /// the reboot started (the journal lives in `/run`, which a reboot empties).
    pub fn previous_journal(&self) -> String {
        self.previous_journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current boot's journal, all units (`journalctl -o short-precise`).
    pub fn journal(&self) -> String {
        let out = self.exec(&["journalctl", "-b", "--no-pager", "-o", "short-precise"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The current boot's journal of one unit, messages only (`-o cat`).
    pub fn unit_journal(&self, unit: &str) -> String {
        let out = self.exec(&["journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last `n` lines of the current boot's journal.
    pub fn journal_tail(&self, n: usize) -> String {
        let out = self.exec(&["journalctl", "-b", "--no-pager", "-n", &n.to_string()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    pub fn unit_property(&self, unit: &str, property: &str) -> String {
        let out = self.exec(&["systemctl", "show", "-p", property, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Poll `check` (every 200 ms) until it returns `Some`, or fail after
    /// `timeout` with `what` and the journal's end. For waiting on systemd and
    /// the engine, never for asserting how long something took.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "gave up waiting ({timeout:?}) for: {what}\n--- journal (end)\n{}",
                    self.journal_tail(120)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        // The host first, so that its systemd cannot restart anything that is
        // being removed; then the siblings it started.
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let deployments =
            std::mem::take(&mut *self.deployments.lock().unwrap_or_else(|p| p.into_inner()));
        for d in deployments {
            Cleanup::new(d).remove_all();
        }
    }
}

/// A deployment inside a [`SystemdHost`], driven with the `berth` inside it.
pub struct HostDeployment<'h> {
    pub host: &'h SystemdHost,
    /// The deployment name (unique, tracked for cleanup by the host).
    pub name: String,
    /// Its directory inside the host, holding `berth.toml`.
    pub dir: String,
    /// The berth that drives it ([`HOST_BERTH`] unless [`Self::using`]).
    pub berth: String,
}

impl<'h> HostDeployment<'h> {
    /// A new deployment name (tracked for cleanup) and its directory.
    pub fn new(host: &'h SystemdHost, tag: &str) -> Self {
        let name = host.deployment(tag);
        let dir = format!("/root/{name}");
        HostDeployment {
            host,
            name,
            dir,
            berth: HOST_BERTH.to_string(),
        }
    }

    /// Drive the deployment with another berth inside the host (say, the
    /// one a package installed).
    pub fn using(mut self, berth: &str) -> Self {
        self.berth = berth.to_string();
        self
    }

    /// Write `berth.toml` into the host, with `NAME` replaced by the
    /// deployment name and `IMAGE` by the shared busybox test image.
    pub fn write(&self, toml: &str) {
        let text = toml
            .replace("NAME", &self.name)
            .replace("IMAGE", crate::base_image());
        self.host
            .write_file(&format!("{}/berth.toml", self.dir), &text);
    }

    /// Run berth in the deployment's directory.
    pub fn berth(&self, args: &str) -> std::process::Output {
        self.host.sh(&format!(
            "cd {} && NO_COLOR=1 {} {args}",
            self.dir, self.berth
        ))
    }

    /// Run berth; panic with its output and the journal unless it succeeds.
    pub fn berth_ok(&self, args: &str) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args} in the systemd host failed:\n{}\n--- journal (end)\n{}",
            show(&out),
            self.host.journal_tail(80)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth apply --integration systemd`, which must succeed.
    pub fn apply(&self) {
        self.berth_ok("apply --integration systemd");
    }

    /// Container name of a service's instance (`db`, `cache-2`).
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    /// Unit name of a service's instance.
    pub fn unit(&self, service: &str) -> String {
        format!("berth-{}-{service}.service", self.name)
    }

    /// The ID of the service's container, if it is running.
    pub fn running_id(&self, service: &str) -> Option<String> {
        let c = crate::inspect("container", &self.container(service))?;
        if c["State"]["Running"].as_bool() != Some(true) {
            return None;
        }
        c["Id"].as_str().map(String::from)
    }

    /// Wait until the unit is active and its container runs; its ID.
    pub fn wait_active(&self, service: &str) -> String {
        let unit = self.unit(service);
        self.host.wait_for(
            &format!("{unit} active with its container running"),
            Duration::from_secs(60),
            || {
                (self.host.unit_property(&unit, "ActiveState") == "active")
                    .then(|| self.running_id(service))
                    .flatten()
            },
        )
    }

    /// Run a command in the service's container (from outside the host).
    pub fn exec(&self, service: &str, script: &str) -> String {
        docker_ok(&["exec", &self.container(service), "sh", "-c", script])
    }
}

/// Label on host containers: the PID of the test process that booted it.
pub const PID_LABEL: &str = "berth.test-pid";

/// Remove hosts (and the deployments they recorded in
/// `/etc/berth-test-deployments`) left behind by test processes that died
/// without running their destructors, for example when killed. A leaked host
/// would otherwise keep its units restarting their containers for ever. Only
/// hosts whose booting process is gone are touched. Runs once per process.
fn sweep_orphans() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={HOST_LABEL}"),
            "--format",
            &format!("{{{{.Names}}}} {{{{.Label \"{PID_LABEL}\"}}}}"),
        ]);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            let (Some(host), Some(pid)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let Ok(tmp) = tempfile::tempdir() else {
                continue;
            };
            let list = tmp.path().join("deployments");
            let _ = docker(&[
                "cp",
                &format!("{host}:/etc/berth-test-deployments"),
                &list.to_string_lossy(),
            ]);
            let _ = docker(&["rm", "-f", "-v", host]);
            let recorded = std::fs::read_to_string(&list).unwrap_or_default();
            for d in recorded.lines().map(str::trim).filter(|l| !l.is_empty()) {
                Cleanup::new(d).remove_all();
            }
            eprintln!("systemd host: removed {host}, left behind by process {pid}");
        }
    });
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreachable mirror is an error that names it, never a silent skip.
    #[test]
    fn debootstrap_from_an_unreachable_mirror_fails_with_the_reason() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mirror = "http://127.0.0.1:9/debian";
        let err = debootstrap(mirror, &dir.path().join("rootfs"))
            .expect_err("debootstrap succeeded from a mirror that does not exist");
        assert!(err.contains(mirror), "{err}");
        assert!(err.contains("failed"), "{err}");
    }

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian-security bookworm-security main\ndeb http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            mirror_in("deb-src http://x bookworm main\n", "bookworm"),
            None
        );
    }

    #[test]
    fn mirror_from_deb822_sources() {
        let text = "Types: deb\n# http://snapshot.example\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://deb.example/debian")
        );
        let other = "Types: deb\nURIs: https://other.example/node\nSuites: nodistro\n";
        assert_eq!(mirror_in(other, "bookworm"), None);
    }
}
