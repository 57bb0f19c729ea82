//! Test support for berth's integration tests: locally built images, unique
//! deployment names, and guards that remove what a test created even when it
//! fails.
//!
//! Tests talk to the engine through the `docker` CLI here on purpose: the check
//! is independent of the product's own engine code, so a bug there cannot hide
//! itself. (The product never shells out to `docker`.)

pub mod swarm;
pub mod systemd_host;
pub mod webhook;

pub use webhook::WebhookSink;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Label put on every image this support crate builds, so they can be found.
pub const TEST_IMAGE_LABEL: &str = "berth.test-image";

/// A deployment name unique to this test process and call, short enough to
/// stay within berth's name limit: `t<pid>x<n><tag>`.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect::<String>()
        .to_lowercase();
    format!("t{}x{n}{tag}", std::process::id())
}

/// Run `docker` with arguments; panics (failing the test) if it cannot be spawned.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

/// Run `docker` and return trimmed stdout; panics with stderr on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect` of one object as JSON, or `None` if it does not exist.
pub fn inspect(kind: &str, name: &str) -> Option<serde_json::Value> {
    let out = docker(&[kind, "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.first().cloned()
}

/// Names of containers (all states) carrying `berth.deployment=<deployment>`.
pub fn containers_of(deployment: &str) -> Vec<String> {
    list_names(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--format",
        "{{.Names}}",
    ])
}

/// Names of volumes carrying `berth.deployment=<deployment>`.
pub fn volumes_of(deployment: &str) -> Vec<String> {
    list_names(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--format",
        "{{.Name}}",
    ])
}

/// Names of networks carrying `berth.deployment=<deployment>`.
pub fn networks_of(deployment: &str) -> Vec<String> {
    list_names(&[
        "network",
        "ls",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--format",
        "{{.Name}}",
    ])
}

fn list_names(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = docker_ok(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// Removes everything labelled with one deployment name when dropped: containers,
/// then volumes, then networks. Only objects carrying that exact label (which
/// only this test uses) are touched.
pub struct Cleanup {
    pub deployment: String,
}

impl Cleanup {
    pub fn new(deployment: impl Into<String>) -> Self {
        Self {
            deployment: deployment.into(),
        }
    }

    pub fn remove_all(&self) {
        let containers = containers_of(&self.deployment);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let volumes = volumes_of(&self.deployment);
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            let _ = docker(&args);
        }
        for n in networks_of(&self.deployment) {
            let _ = docker(&["network", "rm", &n]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Build (once per process, and reused across runs by tag) a `FROM scratch`
/// image holding busybox with its applets installed, plus `extra` Dockerfile
/// lines. Returns the image tag. The tag is derived from the Dockerfile text,
/// so a changed recipe builds a new image.
pub fn busybox_image(name: &str, extra: &str) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir -p /tmp /root /etc /usr/bin /usr/sbin /sbin && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group\nLABEL {TEST_IMAGE_LABEL}=1\n{extra}\n"
    );
    let tag = format!("berth-test/{name}:{}", short_hash(&dockerfile));
    if docker(&["image", "inspect", &tag]).status.success() {
        return tag;
    }
    let busybox = Path::new(BUSYBOX);
    assert!(
        busybox.exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (apt-get install busybox-static)"
    );
    let dir = tempfile::tempdir().expect("temporary build directory");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copy busybox");
    std::fs::write(dir.path().join("Dockerfile"), &dockerfile).expect("write Dockerfile");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run docker build");
    assert!(
        out.status.success(),
        "docker build of {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// A short, stable (FNV-1a) hash for tags; not for security.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// A temporary working area for one test: a directory for the deployment
/// file, a state directory and a unit directory.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.dir.path().join("units")
    }

    /// Write a file relative to the workspace and return its path.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent directory");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// Run a berth binary with state and unit directories pointed into `ws`.
pub fn berth(bin: &Path, ws: &Workspace, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("NO_COLOR", "1")
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The same image reached once per process, shared by tests that only need
/// "some image with a shell".
pub fn base_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| busybox_image("base", ""))
}

/// A private registry (Debian's `docker-registry`) on 127.0.0.1 for pull
/// tests; the engine treats 127.0.0.0/8 registries as insecure (plain HTTP).
/// Killed, and the tags pushed to it removed, on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// A client configuration directory (`DOCKER_CONFIG`) logged in to the
    /// registry when it requires auth.
    pub client_config: PathBuf,
    child: std::process::Child,
    tags: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry; with `auth`, it requires that user and password
    /// (htpasswd, bcrypt).
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("registry directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let client_config = dir.path().join("client");
        std::fs::create_dir_all(&client_config).expect("client config dir");
        if let Some((user, pass)) = auth {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils) runs");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
            let auth = base64(&format!("{user}:{pass}"));
            std::fs::write(
                client_config.join("config.json"),
                format!("{{\"auths\":{{\"{host}\":{{\"auth\":\"{auth}\"}}}}}}"),
            )
            .expect("client config");
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, config).expect("registry config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            host,
            client_config,
            child,
            tags: Vec::new(),
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&reg.host).is_ok() {
                return reg;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("docker-registry did not come up on {}", reg.host);
    }

    /// Push a local image as `<host>/<repo>` and remove the local tag again,
    /// so a pull is needed. Returns the registry reference.
    pub fn push(&mut self, local: &str, repo: &str) -> String {
        let reference = format!("{}/{repo}", self.host);
        docker_ok(&["tag", local, &reference]);
        self.tags.push(reference.clone());
        let out = Command::new("docker")
            .arg("--config")
            .arg(&self.client_config)
            .args(["push", &reference])
            .stdin(Stdio::null())
            .output()
            .expect("docker push");
        assert!(
            out.status.success(),
            "push of {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = docker(&["rmi", &reference]);
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in &self.tags {
            // Only the tag this registry created; the image stays under its own tag.
            let _ = docker(&["rmi", t]);
        }
    }
}

/// Standard base64 with padding.
pub fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A `berth` process running in the background (for `berth up`, `logs -f`),
/// its output going to files in the workspace. Killed (SIGKILL) on drop if
/// still running, so a failing test never leaves it behind.
pub struct Background {
    pub child: std::process::Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Background {
    /// Start `bin args...` with the workspace's state and unit directories.
    pub fn spawn(bin: &Path, ws: &Workspace, tag: &str, args: &[&str]) -> Self {
        let stdout = ws.path().join(format!("{tag}.stdout"));
        let stderr = ws.path().join(format!("{tag}.stderr"));
        let child = Command::new(bin)
            .args(args)
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("BERTH_UNIT_DIR", ws.unit_dir())
            .env("NO_COLOR", "1")
            .current_dir(ws.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (`"INT"`, `"TERM"`, `"HUP"`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Everything written so far to stdout and stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Wait for the process to exit, at most `limit`; `None` if it did not.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll `cond` every 200 ms until it holds or `limit` passes; returns
/// whether it held. For waiting on the engine, never for judging speed.
pub fn wait_for(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
