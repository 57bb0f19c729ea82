//! The SSH gateway and the OpenSSH mode, driven by the real OpenSSH client
//! against `berth ssh-gateway` on loopback, with real containers behind it.
//!
//! The applied state is set up by the test itself: containers started with
//! the docker CLI, named and labelled as berth names them, and the applied
//! revision written to `<state>/deployments/<name>/current.json`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth::state::Revision;

use crate::support::*;

/// Longest any single client command may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// Test keys made with `ssh-keygen`.
pub(crate) struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    pub(crate) fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("key dir");
        for n in names {
            // Names say the key type when it is not ed25519: `rsa-x`, `ecdsa-x`.
            let kind = n.split_once('-').map(|(k, _)| k).unwrap_or("ed25519");
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C"])
                .arg(format!("{n}@test"))
                .arg("-f")
                .arg(dir.path().join(n))
                .output()
                .expect("ssh-keygen");
            assert!(out.status.success(), "{}", show(&out));
        }
        Self { dir }
    }

    pub(crate) fn private(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn public(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.pub")))
            .expect("public key")
            .trim()
            .to_string()
    }

    pub(crate) fn fingerprint(&self, name: &str) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join(format!("{name}.pub")))
            .output()
            .expect("ssh-keygen -l");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string()
    }
}

/// A service of a test deployment: name, count, granted key names, running?
struct Svc<'a> {
    name: &'a str,
    count: u32,
    ssh: &'a [&'a str],
    running: bool,
    shell: Option<&'a str>,
}

fn svc<'a>(name: &'a str, ssh: &'a [&'a str]) -> Svc<'a> {
    Svc {
        name,
        count: 1,
        ssh,
        running: true,
        shell: None,
    }
}

/// Write the applied revision of `deployment` and start its containers.
fn apply_state(ws: &Workspace, keys: &Keys, deployment: &str, services: &[Svc], start: bool) {
    let image = base_image();
    let mut key_map = serde_json::Map::new();
    for name in ["alice", "bob", "carol", "rsa-carol", "ecdsa-dave"] {
        if keys.private(name).exists() {
            key_map.insert(
                name.into(),
                serde_json::json!({
                    "name": name, "openssh": keys.public(name),
                    "fingerprint": keys.fingerprint(name),
                }),
            );
        }
    }
    let mut svcs = serde_json::Map::new();
    for s in services {
        let mut v = serde_json::json!({
            "name": s.name, "image": image, "count": s.count, "ssh": s.ssh,
        });
        if let Some(sh) = s.shell {
            v["ssh_shell"] = sh.into();
        }
        svcs.insert(s.name.into(), v);
        if !start {
            continue;
        }
        for i in 1..=s.count {
            let container = berth::names::container_name(deployment, s.name, i, s.count);
            let mut args = vec![
                "run".to_string(),
                "-d".into(),
                "--name".into(),
                container.clone(),
                "--label".into(),
                format!("berth.deployment={deployment}"),
                "--label".into(),
                format!("berth.service={}", s.name),
                "--label".into(),
                format!("berth.instance={i}"),
                image.to_string(),
                "sleep".into(),
                "100000".into(),
            ];
            if !s.running {
                args[0] = "create".into();
                args.remove(1);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker_ok(&args);
        }
    }
    let deployment_json = serde_json::json!({
        "name": deployment, "keys": key_map, "services": svcs,
    });
    let rev = Revision {
        revision: 1,
        applied_at: "2026-01-01T00:00:00Z".into(),
        integration: "docker".into(),
        deployment: serde_json::from_value(deployment_json).expect("deployment model"),
        image_ids: Default::default(),
        cause: None,
        image_digests: Default::default(),
    };
    let path = ws
        .state_dir()
        .join("deployments")
        .join(deployment)
        .join("current.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("state dir");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&rev).expect("serialize revision"),
    )
    .expect("write revision");
}

/// A running gateway; killed when dropped.
struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
    known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(ws: &Workspace) -> Self {
        Self::start_with(ws, &[])
    }

    fn start_with(ws: &Workspace, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("gateway dir");
        let log = dir.path().join("gateway.log");
        let mut child = Command::new(bin())
            .args(["ssh-gateway", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("RUST_LOG", "warn,berth::audit=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ssh-gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("gateway banner");
        let port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "gateway did not say where it listens: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let known_hosts = dir.path().join("known_hosts");
        Self {
            child,
            port,
            log,
            known_hosts,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An `ssh` command to `login@127.0.0.1` with `key`, isolated from any
    /// user configuration.
    fn ssh(&self, keys: &Keys, key: &str, login: &str) -> Command {
        ssh_command("127.0.0.1", self.port, &self.known_hosts, keys, key, login)
    }

    /// The first log line matching `pred`, waiting for it: the audit line
    /// of a session is written just after the client was told it ended.
    fn wait_log_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            assert!(start.elapsed() < DEADLINE, "no such log line in:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// An `ssh` command to `login@host:port` with `key`, isolated from any
/// user configuration, trusting the host key it sees first.
pub(crate) fn ssh_command(
    host: &str,
    port: u16,
    known_hosts: &std::path::Path,
    keys: &Keys,
    key: &str,
    login: &str,
) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(keys.private(key))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"])
        .arg(format!("{login}@{host}"));
    c
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command with `input` on stdin; fail the test if it takes longer
/// than [`DEADLINE`] (a hang is a failure, not a slow pass).
pub(crate) fn run_input(mut cmd: Command, input: Vec<u8>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not finish within {DEADLINE:?}");
        }
    }
}

pub(crate) fn run(cmd: Command) -> Output {
    run_input(cmd, Vec::new())
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// One deployment `d` with `mail` (alice) and `web` (bob, 2 instances), and a gateway.
struct Setup {
    d: String,
    ws: Workspace,
    keys: Keys,
    gw: Gateway,
    _cleanup: Cleanup,
}

fn setup(tag: &str) -> Setup {
    let d = unique_name(tag);
    let cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob", "mallory"]);
    apply_state(
        &ws,
        &keys,
        &d,
        &[
            svc("mail", &["alice"]),
            Svc {
                count: 2,
                ..svc("web", &["bob"])
            },
        ],
        true,
    );
    let gw = Gateway::start(&ws);
    Setup {
        d,
        ws,
        keys,
        gw,
        _cleanup: cleanup,
    }
}

#[test]
fn ssh_command_output_streams_and_exit_status() {
    let s = setup("sshcmd");
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("echo out-line; echo err-line >&2; hostname; exit 7");
    let out = run(c);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let o = stdout(&out);
    assert!(o.starts_with("out-line\n"), "{}", show(&out));
    assert!(
        !o.contains("err-line"),
        "stderr leaked into stdout: {}",
        show(&out)
    );
    assert!(stderr(&out).contains("err-line"), "{}", show(&out));
    // It ran in the mail container: its hostname is the container's id prefix.
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("{}-mail", s.d)]);
    let host = o.lines().nth(1).unwrap_or_default().to_string();
    assert!(!host.is_empty() && id.starts_with(&host), "{}", show(&out));

    // Success is 0, and arguments reach /bin/sh -c as one command line.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.args(["printf", "'%s|'", "a b", "c"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(stdout(&out), "a|b|c|");

    // LANG and LC_* may be passed; nothing else from the client's environment.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.env("LANG", "C.UTF-8")
        .args([
            "-o",
            "SendEnv=LANG",
            "-o",
            "SetEnv=LD_PRELOAD=/tmp/x PATH=/tmp",
        ])
        .arg("echo \"lang=$LANG preload=${LD_PRELOAD:-none} path=$PATH\"");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let o = stdout(&out);
    assert!(o.starts_with("lang=C.UTF-8 preload=none path="), "{o}");
    assert!(!o.contains("path=/tmp\n"), "{o}");

    // The audit log names key, login, container, command and status.
    let fp = s.keys.fingerprint("alice");
    let line =
        s.gw.wait_log_line(|l| l.contains("ssh session") && l.contains("exit_status=7"));
    for want in [
        fp.as_str(),
        "login=mail",
        &format!("container={}-mail", s.d),
        "hostname",
        "duration_ms=",
    ] {
        assert!(line.contains(want), "audit line lacks {want:?}: {line}");
    }
}

#[test]
fn ssh_instances_and_qualified_logins() {
    let s = setup("sshinst");
    for (login, container) in [
        ("web", format!("{}-web-1", s.d)),
        ("web-1", format!("{}-web-1", s.d)),
        ("web-2", format!("{}-web-2", s.d)),
        (&format!("{}.web-2", s.d) as &str, format!("{}-web-2", s.d)),
    ] {
        let mut c = s.gw.ssh(&s.keys, "bob", login);
        c.arg("hostname");
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{login}: {}", show(&out));
        let id = docker_ok(&["inspect", "-f", "{{.Id}}", &container]);
        assert!(
            id.starts_with(stdout(&out).trim()),
            "{login} should land in {container}: {}",
            show(&out)
        );
    }
    // No third instance.
    let mut c = s.gw.ssh(&s.keys, "bob", "web-3");
    c.arg("true");
    let out = run(c);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
}

pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ssh_stdin_streams_10mb_binary_and_tar() {
    let s = setup("sshstdin");
    let data = pseudo_random(10 * 1024 * 1024 + 123, 0x9e3779b97f4a7c15);
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("cat > /tmp/blob && sha256sum /tmp/blob && wc -c < /tmp/blob");
    let out = run_input(c, data.clone());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let o = stdout(&out);
    assert!(
        o.starts_with(&sha256_hex(&data)),
        "hash differs after the round trip: {}",
        show(&out)
    );
    assert_eq!(o.lines().nth(1).map(str::trim), Some("10485883"));

    // And back: the container's file comes out byte for byte.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("cat /tmp/blob");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout == data,
        "download differs ({} bytes)",
        out.stdout.len()
    );

    // tar c . | ssh mail@host tar x -C /data
    let src = tempfile::tempdir().expect("tar source");
    std::fs::write(src.path().join("big.bin"), &data[..4 * 1024 * 1024]).expect("write");
    std::fs::create_dir(src.path().join("sub")).expect("mkdir");
    std::fs::write(src.path().join("sub/small.txt"), "hello tar\n").expect("write");
    let tar = Command::new("tar")
        .args(["c", "-C"])
        .arg(src.path())
        .arg(".")
        .output()
        .expect("tar c");
    assert!(tar.status.success());
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("mkdir -p /data && tar x -C /data && sha256sum /data/big.bin && cat /data/sub/small.txt");
    let out = run_input(c, tar.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).starts_with(&sha256_hex(&data[..4 * 1024 * 1024])),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).ends_with("hello tar\n"), "{}", show(&out));
}

#[test]
fn ssh_pty_session_driven_by_script() {
    let s = setup("sshpty");
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("-tt").env("TERM", "vt100");
    let out = run_input(
        c,
        b"tty\necho term=$TERM\necho err-on-tty >&2\nexit 3\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let o = stdout(&out);
    assert!(o.contains("/dev/pts/"), "no terminal: {}", show(&out));
    assert!(o.contains("term=vt100"), "TERM not passed: {}", show(&out));
    // With a terminal, stderr arrives on the terminal like everything else.
    assert!(o.contains("err-on-tty"), "{}", show(&out));
    s.gw.wait_log_line(|l| l.contains("command=shell") && l.contains("exit_status=3"));
}

/// Drive `ssh -tt` through a pseudo-terminal of a known size, then resize it.
#[test]
fn ssh_pty_window_size_and_resize() {
    use nix::pty::{Winsize, openpty};
    let s = setup("sshwin");
    let ws = Winsize {
        ws_row: 33,
        ws_col: 111,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&ws), None).expect("openpty");
    let slave: std::os::fd::OwnedFd = pty.slave;
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("-tt")
        .env("TERM", "xterm")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = c.spawn().expect("ssh");
    let master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().expect("dup master");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |want: &str, mut poke: Box<dyn FnMut()>| {
        let start = Instant::now();
        let mut last_poke = Instant::now() - Duration::from_secs(10);
        while !seen.contains(want) {
            assert!(
                start.elapsed() < DEADLINE,
                "never saw {want:?}; terminal showed:\n{seen}"
            );
            if last_poke.elapsed() > Duration::from_secs(2) {
                poke();
                last_poke = Instant::now();
            }
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    };
    let mut m1 = master.try_clone().expect("dup");
    wait_for(
        "33 111",
        Box::new(move || {
            let _ = m1.write_all(b"stty size\n");
        }),
    );
    // Resize the terminal and tell ssh, as the kernel does for the foreground job.
    let ws2 = nix::libc::winsize {
        ws_row: 44,
        ws_col: 122,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer; the fd is our pty master.
    let r = unsafe {
        nix::libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            nix::libc::TIOCSWINSZ,
            &ws2,
        )
    };
    assert_eq!(r, 0, "TIOCSWINSZ");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut m2 = master.try_clone().expect("dup");
    wait_for(
        "44 122",
        Box::new(move || {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
            let _ = m2.write_all(b"stty size\n");
        }),
    );
    let mut m3 = master.try_clone().expect("dup");
    let _ = m3.write_all(b"exit 0\n");
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert_eq!(status.code(), Some(0), "{seen}");
            break;
        }
        assert!(start.elapsed() < DEADLINE, "ssh did not exit: {seen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn assert_refused(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(255), "{what}: {}", show(out));
    assert!(
        stderr(out).contains("Permission denied"),
        "{what}: {}",
        show(out)
    );
    assert!(
        !stdout(out).contains("INSIDE"),
        "{what} got in: {}",
        show(out)
    );
}

#[test]
fn ssh_refuses_everything_not_granted() {
    let s = setup("sshrefuse");
    let try_ = |key: &str, login: &str| {
        let mut c = s.gw.ssh(&s.keys, key, login);
        c.arg("echo INSIDE");
        run(c)
    };
    // Sanity: the granted combinations work.
    assert_eq!(stdout(&try_("alice", "mail")), "INSIDE\n");
    assert_eq!(stdout(&try_("bob", "web")), "INSIDE\n");
    // A key nobody granted.
    assert_refused(&try_("mallory", "mail"), "unknown key");
    // Another service's key, both ways.
    assert_refused(&try_("bob", "mail"), "bob's key on mail");
    assert_refused(&try_("alice", "web-2"), "alice's key on web-2");
    // Unknown users, host-ish users, container names, other spellings.
    for login in [
        "nobody",
        "root",
        &format!("{}-mail", s.d) as &str,
        &format!("{}.mail.x", s.d),
        "mail-0",
        "mail-2",
        "../mail",
        "MAIL",
    ] {
        assert_refused(&try_("alice", login), login);
    }
    // Passwords and keyboard-interactive are not even offered.
    for method in ["password", "keyboard-interactive"] {
        let mut c = s.gw.ssh(&s.keys, "alice", "mail");
        c.args(["-o", &format!("PreferredAuthentications={method}")])
            .arg("echo INSIDE");
        assert_refused(&run(c), method);
    }
    // A container berth did not apply is not reachable by any name.
    let stray = format!("{}-stray", s.d);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &stray,
        "--label",
        &format!("berth.deployment={}", s.d),
        base_image(),
        "sleep",
        "100000",
    ]);
    assert_refused(&try_("alice", "stray"), "unapplied container");
    assert_refused(&try_("alice", &stray), "unapplied container by name");
}

#[test]
fn ssh_refuses_forwarding_and_subsystems() {
    let s = setup("sshfwd");
    // Local forwarding (direct-tcpip), as `ssh -W` does it.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.args(["-W", "127.0.0.1:22"]);
    let out = run(c);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stderr(&out).contains("forwarding failed") || stderr(&out).contains("prohibited"),
        "{}",
        show(&out)
    );
    assert!(
        s.gw.log()
            .contains("refused: port forwarding to 127.0.0.1:22"),
        "{}",
        s.gw.log()
    );
    // Socket forwarding (direct-streamlocal) to the engine's socket, the
    // classic way out of a container onto its host: refused and audited.
    let dir = tempfile::tempdir().expect("socket dir");
    let local = dir.path().join("engine.sock");
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("-N")
        .arg("-L")
        .arg(format!("{}:/var/run/docker.sock", local.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut forwarder = c.spawn().expect("ssh -L");
    let start = Instant::now();
    while !local.exists() {
        assert!(start.elapsed() < DEADLINE, "ssh -L made no local socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = std::os::unix::net::UnixStream::connect(&local).expect("local socket");
    conn.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    let _ = conn.write_all(b"GET /containers/json HTTP/1.0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let _ = forwarder.kill();
    let _ = forwarder.wait();
    assert!(
        answer.is_empty(),
        "the engine answered through the gateway: {}",
        String::from_utf8_lossy(&answer)
    );
    s.gw.wait_log_line(|l| l.contains("refused: socket forwarding to /var/run/docker.sock"));
    // Remote forwarding (tcpip-forward).
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.args(["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
        .arg("echo INSIDE");
    let out = run(c);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(!stdout(&out).contains("INSIDE"), "{}", show(&out));
    // Subsystems (sftp) are refused.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.args(["-s", "sftp"]);
    let out = run(c);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    // Agent forwarding: no agent socket appears inside.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.env("SSH_AUTH_SOCK", "/nonexistent")
        .args(["-A"])
        .arg("echo agent=${SSH_AUTH_SOCK:-none}");
    let out = run(c);
    assert_eq!(stdout(&out), "agent=none\n", "{}", show(&out));
}

#[test]
fn ssh_container_not_running_gets_a_message() {
    let d = unique_name("sshstopped");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(
        &ws,
        &keys,
        &d,
        &[Svc {
            running: false,
            ..svc("mail", &["alice"])
        }],
        true,
    );
    let gw = Gateway::start(&ws);
    let mut c = gw.ssh(&keys, "alice", "mail");
    c.arg("echo INSIDE");
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("is not running"), "{}", show(&out));
    // Same with a terminal.
    let mut c = gw.ssh(&keys, "alice", "mail");
    c.arg("-tt");
    let out = run_input(c, b"echo INSIDE\n".to_vec());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

#[test]
fn ssh_ambiguous_login_lists_qualified_names() {
    let d1 = unique_name("sshamb");
    let d2 = unique_name("sshamb");
    let _c1 = Cleanup::new(&d1);
    let _c2 = Cleanup::new(&d2);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob"]);
    apply_state(&ws, &keys, &d1, &[svc("mail", &["alice"])], true);
    apply_state(&ws, &keys, &d2, &[svc("mail", &["alice", "bob"])], true);
    let gw = Gateway::start(&ws);
    let mut c = gw.ssh(&keys, "alice", "mail");
    c.arg("echo INSIDE");
    let out = run(c);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!stdout(&out).contains("INSIDE"));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("{d1}.mail")) && e.contains(&format!("{d2}.mail")),
        "{}",
        show(&out)
    );
    // bob only learns the name he may use.
    let mut c = gw.ssh(&keys, "bob", "mail");
    c.arg("echo INSIDE");
    let out = run(c);
    assert!(
        stderr(&out).contains(&format!("{d2}.mail")),
        "{}",
        show(&out)
    );
    assert!(
        !stderr(&out).contains(&format!("{d1}.mail")),
        "{}",
        show(&out)
    );
    // Qualified names work, and only for granted keys.
    for (key, d, ok) in [
        ("alice", &d1, true),
        ("alice", &d2, true),
        ("bob", &d1, false),
    ] {
        let mut c = gw.ssh(&keys, key, &format!("{d}.mail"));
        c.arg("echo INSIDE");
        let out = run(c);
        if ok {
            assert_eq!(stdout(&out), "INSIDE\n", "{key} {d}: {}", show(&out));
        } else {
            assert_refused(&out, "bob on d1.mail");
        }
    }
}

#[test]
fn ssh_new_apply_takes_effect_without_restart() {
    let s = setup("sshreload");
    let try_ = |key: &str| {
        let mut c = s.gw.ssh(&s.keys, key, "mail");
        c.arg("echo INSIDE");
        run(c)
    };
    assert_refused(&try_("bob"), "bob before the grant");
    // Re-apply: mail now grants bob instead of alice (containers unchanged).
    apply_state(
        &s.ws,
        &s.keys,
        &s.d,
        &[
            svc("mail", &["bob"]),
            Svc {
                count: 2,
                ..svc("web", &["bob"])
            },
        ],
        false,
    );
    assert_eq!(stdout(&try_("bob")), "INSIDE\n");
    assert_refused(&try_("alice"), "alice after the revocation");
}

#[test]
fn ssh_50_concurrent_sessions() {
    let s = setup("sshconc");
    let children: Vec<(usize, Child)> = (0..50)
        .map(|i| {
            let login = if i % 2 == 0 { "web-1" } else { "web-2" };
            let mut c = s.gw.ssh(&s.keys, "bob", login);
            c.arg(format!("echo session-{i}; exit {}", i % 5))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (i, c.spawn().expect("ssh"))
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    for (i, child) in children {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((i, child.wait_with_output()));
        });
    }
    drop(tx);
    let mut done = 0;
    let start = Instant::now();
    while done < 50 {
        let (i, out) = rx
            .recv_timeout(DEADLINE.saturating_sub(start.elapsed()))
            .expect("all 50 sessions finish");
        let out = out.expect("wait");
        assert_eq!(
            out.status.code(),
            Some((i % 5) as i32),
            "session {i}: {}",
            show(&out)
        );
        assert_eq!(stdout(&out), format!("session-{i}\n"), "session {i}");
        done += 1;
    }
}

#[test]
fn ssh_gateway_survives_a_killed_client() {
    let mut s = setup("sshkill");
    for round in 0..2 {
        let mut c = s.gw.ssh(&s.keys, "alice", "mail");
        c.arg("echo started; cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("ssh");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read");
        assert_eq!(line, "started\n", "round {round}");
        child.kill().expect("kill -9 the client");
        let _ = child.wait();
    }
    assert!(s.gw.alive(), "gateway died: {}", s.gw.log());
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("echo again");
    let out = run(c);
    assert_eq!(stdout(&out), "again\n", "{}", show(&out));
    assert!(s.gw.alive());
}

#[test]
fn ssh_gateway_host_key_is_kept_and_fingerprinted() {
    let s = setup("sshhostkey");
    let key = s.ws.state_dir().join("ssh/host_ed25519_key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("host key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = crate::support::run(&s.ws, &["ssh-gateway", "--fingerprint"]);
    assert!(out.status.success(), "{}", show(&out));
    let fp = stdout(&out).trim().to_string();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    // What the client sees is that key.
    let scan = Command::new("ssh-keyscan")
        .args(["-t", "ed25519", "-p", &s.gw.port.to_string(), "127.0.0.1"])
        .output()
        .expect("ssh-keyscan");
    let mut kg = Command::new("ssh-keygen")
        .args(["-lf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh-keygen");
    kg.stdin
        .take()
        .expect("stdin")
        .write_all(&scan.stdout)
        .expect("write");
    let seen = kg.wait_with_output().expect("ssh-keygen");
    assert!(
        String::from_utf8_lossy(&seen.stdout).contains(&fp),
        "scan: {} / {}",
        String::from_utf8_lossy(&scan.stdout),
        String::from_utf8_lossy(&seen.stdout)
    );
    // A restarted gateway keeps its identity: known_hosts still matches.
    drop(s.gw);
    let gw = Gateway::start(&s.ws);
    let out2 = crate::support::run(&s.ws, &["ssh-gateway", "--fingerprint"]);
    assert_eq!(stdout(&out2).trim(), fp);
    let mut c = gw.ssh(&s.keys, "alice", "mail");
    c.arg("echo INSIDE");
    assert_eq!(stdout(&run(c)), "INSIDE\n");
}

#[test]
fn authorized_keys_lines_for_openssh() {
    let d = unique_name("akeys");
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob"]);
    apply_state(
        &ws,
        &keys,
        &d,
        &[
            svc("mail", &["alice", "bob"]),
            Svc {
                count: 2,
                ..svc("web", &["bob"])
            },
        ],
        false,
    );
    let state = std::path::absolute(ws.state_dir()).expect("abs");
    let bin_path = bin().canonicalize().expect("berth path");
    let expect = |container: &str, key: &str| {
        format!(
            "restrict,pty,command=\"{} --state-dir {} exec --ssh {container}\" {}",
            bin_path.display(),
            state.display(),
            keys.public(key)
        )
    };
    let out = crate::support::run(&ws, &["authorized-keys", "mail"]);
    assert!(out.status.success(), "{}", show(&out));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("utf8")
        .lines()
        .collect();
    assert_eq!(
        lines,
        [
            expect(&format!("{d}-mail"), "alice"),
            expect(&format!("{d}-mail"), "bob")
        ]
    );
    let out = crate::support::run(&ws, &["authorized-keys", "web-2"]);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines, [expect(&format!("{d}-web-2"), "bob")]);
    let out = crate::support::run(&ws, &["authorized-keys", &format!("{d}.web")]);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines, [expect(&format!("{d}-web-1"), "bob")]);
    // Unknown users: nothing, successfully.
    for user in ["root", "nobody", "web-3", &format!("{d}-mail") as &str] {
        let out = crate::support::run(&ws, &["authorized-keys", user]);
        assert_eq!(out.status.code(), Some(0), "{user}: {}", show(&out));
        assert!(out.stdout.is_empty(), "{user}: {}", show(&out));
    }
    // The lines are valid authorized_keys lines for OpenSSH (ssh-keygen reads them).
    let out = crate::support::run(&ws, &["authorized-keys", "mail"]);
    let f = ws.write("ak", &stdout(&out));
    let kg = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&f)
        .output()
        .expect("ssh-keygen");
    assert!(kg.status.success(), "{}", show(&kg));
    assert!(stdout(&kg).contains(&keys.fingerprint("alice")));
    assert!(stdout(&kg).contains(&keys.fingerprint("bob")));
}

#[test]
fn exec_ssh_forced_command_and_exec_service() {
    let d = unique_name("execssh");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(&ws, &keys, &d, &[svc("mail", &["alice"])], true);
    let container = format!("{d}-mail");
    let berth_cmd = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(bin());
        c.args(args)
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env_remove("SSH_ORIGINAL_COMMAND")
            .envs(env.iter().copied());
        c
    };
    // What sshd runs: $SSH_ORIGINAL_COMMAND through /bin/sh -c, status passed through.
    let out = run_input(
        berth_cmd(
            &["exec", "--ssh", &container],
            &[("SSH_ORIGINAL_COMMAND", "cat; echo err >&2; exit 5")],
        ),
        b"from-stdin\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(stdout(&out), "from-stdin\n");
    assert_eq!(stderr(&out), "err\n");
    // No command: the shell reads stdin.
    let out = run_input(
        berth_cmd(&["exec", "--ssh", &container], &[]),
        b"echo shell-$((1+2)); exit 4\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert_eq!(stdout(&out), "shell-3\n");
    // Under sshd with a terminal: a real TTY of the client's size.
    let (seen, code) = run_in_pty(
        berth_cmd(
            &["exec", "--ssh", &container],
            &[("SSH_ORIGINAL_COMMAND", "stty size; tty; exit 4")],
        ),
        27,
        91,
    );
    assert_eq!(code, Some(4), "{seen}");
    assert!(
        seen.contains("27 91") && seen.contains("/dev/pts/"),
        "{seen:?}"
    );
    // `berth exec SERVICE` on a terminal: an interactive shell of that size.
    let (seen, code) = run_in_pty_input(
        berth_cmd(&["exec", "mail"], &[]),
        31,
        101,
        b"stty size; tty; exit 8\n",
    );
    assert_eq!(code, Some(8), "{seen}");
    assert!(
        seen.contains("31 101") && seen.contains("/dev/pts/"),
        "{seen:?}"
    );
    // `berth exec SERVICE -- CMD`.
    let out = run(berth_cmd(
        &["exec", "mail", "--", "sh", "-c", "echo hi; exit 9"],
        &[],
    ));
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert_eq!(stdout(&out), "hi\n");
    // Unknown service: usage error.
    let out = run(berth_cmd(&["exec", "nope", "--", "true"], &[]));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // A stopped container: clear message, failure.
    docker_ok(&["stop", "-t", "0", &container]);
    let out = run(berth_cmd(&["exec", "mail", "--", "true"], &[]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("not running"), "{}", show(&out));
}

#[test]
fn ssh_large_data_both_ways_at_once() {
    // `cat` echoes while it reads: both directions stream at the same time,
    // which must not wedge the connection.
    let s = setup("sshboth");
    let data = pseudo_random(16 * 1024 * 1024, 0x1234_5678_9abc_def1);
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("cat");
    let out = run_input(c, data.clone());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "echoed data differs");
}

#[test]
fn ssh_output_flows_while_stdin_is_not_read() {
    // The process never reads its stdin and writes a lot; the client keeps
    // sending. Output and exit status must still arrive.
    let s = setup("sshnoread");
    let data = pseudo_random(6 * 1024 * 1024, 7);
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("head -c 6000000 /dev/zero | tr '\\000' x; exit 3");
    let out = run_input(c, data);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 6_000_000);
}

/// Run `cmd` with a fresh pseudo-terminal of `rows`x`cols` as stdin, stdout
/// and stderr; return what the terminal showed and the exit code.
fn run_in_pty(cmd: Command, rows: u16, cols: u16) -> (String, Option<i32>) {
    run_in_pty_input(cmd, rows, cols, b"")
}

/// [`run_in_pty`], typing `input` on the terminal.
fn run_in_pty_input(mut cmd: Command, rows: u16, cols: u16, input: &[u8]) -> (String, Option<i32>) {
    use nix::pty::{Winsize, openpty};
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&ws), None).expect("openpty");
    let slave: std::os::fd::OwnedFd = pty.slave;
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = cmd.spawn().expect("spawn in pty");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    if !input.is_empty() {
        master.write_all(input).expect("type on the terminal");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the last slave descriptor is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(all);
    });
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{:?} did not finish",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = rx.recv_timeout(DEADLINE).unwrap_or_default();
    (String::from_utf8_lossy(&seen).to_string(), status.code())
}

#[test]
fn ssh_tty_command_sees_the_window_size() {
    let s = setup("sshttycmd");
    for round in 0..5 {
        let mut c = s.gw.ssh(&s.keys, "alice", "mail");
        c.args(["-tt", "stty size; tty; exit 6"]);
        let (seen, code) = run_in_pty(c, 27, 91 + round);
        assert_eq!(code, Some(6), "{seen}");
        assert!(
            seen.contains(&format!("27 {}", 91 + round)),
            "round {round}: {seen:?}"
        );
        assert!(seen.contains("/dev/pts/"), "{seen:?}");
    }
}

/// The whole path: a deployment file, `berth apply`, then the gateway, and a
/// re-apply that moves a grant while the gateway keeps running.
#[test]
fn ssh_after_berth_apply_and_reapply() {
    let d = unique_name("sshapply");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob"]);
    let file = |mail_keys: &str| {
        format!(
            "name = \"{d}\"\n\n[keys]\nalice = \"{}\"\nbob = \"{}\"\n\n\
             [services.mail]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nssh = [{mail_keys}]\n\n\
             [services.web]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\ncount = 2\nssh = [\"bob\"]\n",
            keys.public("alice"),
            keys.public("bob"),
            base_image(),
            base_image(),
        )
    };
    ws.write("berth.toml", &file("\"alice\""));
    let out = crate::support::run(&ws, &["apply", "--integration", "docker"]);
    assert!(out.status.success(), "{}", show(&out));
    let gw = Gateway::start(&ws);
    let try_ = |key: &str, login: &str| {
        let mut c = gw.ssh(&keys, key, login);
        c.arg("echo INSIDE; hostname");
        run(c)
    };
    let out = try_("alice", "mail");
    assert!(stdout(&out).starts_with("INSIDE\n"), "{}", show(&out));
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("{d}-mail")]);
    assert!(id.starts_with(stdout(&out).lines().nth(1).unwrap_or("-")));
    assert_refused(&try_("bob", "mail"), "bob on mail");
    assert_refused(&try_("alice", "web-2"), "alice on web-2");
    assert!(stdout(&try_("bob", "web-2")).starts_with("INSIDE\n"));

    ws.write("berth.toml", &file("\"bob\""));
    let out = crate::support::run(&ws, &["apply", "--integration", "docker"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&try_("bob", "mail")).starts_with("INSIDE\n"));
    assert_refused(&try_("alice", "mail"), "alice after re-apply");

    // authorized-keys follows the same applied state.
    let out = crate::support::run(&ws, &["authorized-keys", "mail"]);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{}", show(&out));
    assert!(lines[0].ends_with(&keys.public("bob")), "{}", lines[0]);
    let out = crate::support::run(&ws, &["destroy"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn ssh_limits_authentication_attempts() {
    let s = setup("sshlimit");
    let names: Vec<String> = (0..8).map(|i| format!("wrong{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wrong = Keys::new(&refs);
    // Eight wrong keys first, the right one last: the connection is cut
    // before the right key gets its turn.
    let c = s.gw.ssh(&s.keys, "alice", "mail");
    let args: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_os_string()).collect();
    let mut c = Command::new("ssh");
    for n in &names {
        c.arg("-i").arg(wrong.private(n));
    }
    c.args(&args).arg("echo INSIDE");
    let out = run(c);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(!stdout(&out).contains("INSIDE"), "{}", show(&out));
    assert!(
        stderr(&out).contains("Too many authentication attempts"),
        "{}",
        show(&out)
    );
    // One wrong key and then the right one is fine.
    let mut c = Command::new("ssh");
    c.arg("-i").arg(wrong.private("wrong0"));
    c.args(&args).arg("echo INSIDE");
    let out = run(c);
    assert_eq!(stdout(&out), "INSIDE\n", "{}", show(&out));
}

#[test]
fn ssh_killed_tty_client_leaves_no_shell_behind() {
    let s = setup("sshhup");
    let count_shells = || {
        docker_ok(&["exec", &format!("{}-mail", s.d), "ps", "-o", "pid,args"])
            .lines()
            .filter(|l| l.trim_end().ends_with("/bin/sh") || l.contains("marker-"))
            .count()
    };
    let before = count_shells();
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.args(["-tt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("ssh");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"echo ready-$((6*7))\n").expect("write");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("ready-42") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "session ended"
        );
    }
    assert!(
        count_shells() > before,
        "the session's shell is not running"
    );
    child.kill().expect("kill -9 the client");
    let _ = child.wait();
    let start = Instant::now();
    while count_shells() > before {
        assert!(start.elapsed() < DEADLINE, "the shell outlived its client");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exec_ssh_hangup_ends_the_container_shell() {
    // sshd sends SIGHUP to the forced command when its client goes away.
    let d = unique_name("exechup");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(&ws, &keys, &d, &[svc("mail", &["alice"])], true);
    let container = format!("{d}-mail");
    let shells = || {
        docker_ok(&["exec", &container, "ps", "-o", "args"])
            .lines()
            .filter(|l| l.trim_end() == "/bin/sh")
            .count()
    };
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave: std::os::fd::OwnedFd = pty.slave;
    let mut child = Command::new(bin())
        .args(["exec", "--ssh", &container])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env_remove("SSH_ORIGINAL_COMMAND")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("berth exec --ssh");
    let mut master = std::fs::File::from(pty.master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while matches!(master.read(&mut buf), Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    while shells() == 0 {
        assert!(start.elapsed() < DEADLINE, "the shell never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let start = Instant::now();
    while shells() > 0 {
        assert!(start.elapsed() < DEADLINE, "the shell outlived the hangup");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
}

#[test]
fn ssh_rsa_and_ecdsa_keys() {
    let d = unique_name("sshkeytypes");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["rsa-carol", "ecdsa-dave"]);
    apply_state(
        &ws,
        &keys,
        &d,
        &[svc("mail", &["rsa-carol"]), svc("web", &["ecdsa-dave"])],
        true,
    );
    let gw = Gateway::start(&ws);
    for (key, login, ok) in [
        ("rsa-carol", "mail", true),
        ("ecdsa-dave", "web", true),
        ("rsa-carol", "web", false),
        ("ecdsa-dave", "mail", false),
    ] {
        let mut c = gw.ssh(&keys, key, login);
        c.arg("echo INSIDE");
        let out = run(c);
        if ok {
            assert_eq!(stdout(&out), "INSIDE\n", "{key} on {login}: {}", show(&out));
        } else {
            assert_refused(&out, &format!("{key} on {login}"));
        }
    }
}

#[test]
fn ssh_gateway_bad_listen_address_is_a_usage_error() {
    let ws = Workspace::new();
    for bad in ["2222", "localhost", ":2222", "127.0.0.1:99999"] {
        let out = crate::support::run(&ws, &["ssh-gateway", "--listen", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        assert!(stderr(&out).contains("--listen"), "{}", show(&out));
    }
    assert!(
        !ws.state_dir().exists(),
        "a usage error must not touch the host"
    );
}

/// OpenSSH's sshd with `AuthorizedKeysCommand berth authorized-keys %u`.
///
/// The host user must exist for sshd; to avoid creating users on the test
/// host, the service is named after the one user every host has (`root`)
/// and sshd only permits it forced commands — which is exactly what
/// `berth authorized-keys` hands out.
#[test]
fn openssh_sshd_with_authorized_keys_command() {
    let d = unique_name("sshd");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice", "bob"]);
    apply_state(
        &ws,
        &keys,
        &d,
        &[svc("root", &["alice"]), svc("other", &["bob"])],
        true,
    );
    let dir = tempfile::tempdir().expect("sshd dir");
    let host_key = dir.path().join("host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    // sshd refuses to start without its privilege separation directory,
    // which a host with openssh-server installed normally has.
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    // sshd runs an AuthorizedKeysCommand only from a path whose every
    // directory is root-owned and writable by nobody else (as /usr/local/bin
    // is on a real host). The build directory may sit below /tmp, so the
    // binary is copied to such a place for the test and removed afterwards.
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let safe_parent = std::path::Path::new("/var/lib/berth-test");
    let safe_dir = safe_parent.join(format!("sshd-{d}"));
    std::fs::create_dir_all(&safe_dir).expect("directory for the berth copy");
    let _remove_safe_dir = RemoveDir(safe_dir.clone());
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [safe_parent, safe_dir.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 0755");
        }
    }
    let berth_path = safe_dir.join("berth");
    std::fs::copy(bin(), &berth_path).expect("copy berth");
    let state = std::path::absolute(ws.state_dir()).expect("abs");
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nUsePAM no\n\
         AuthorizedKeysFile none\n\
         AuthorizedKeysCommand {} --state-dir {} authorized-keys %u\n\
         AuthorizedKeysCommandUser root\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin forced-commands-only\nDisableForwarding yes\nPermitUserRC no\n",
        host_key.display(),
        berth_path.display(),
        state.display()
    );
    let config_path = dir.path().join("sshd_config");
    std::fs::write(&config_path, config).expect("sshd_config");
    let log = dir.path().join("sshd.log");
    let mut sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("sshd");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < DEADLINE,
            "sshd did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _guard = Kill(&mut sshd);
    let known = dir.path().join("known_hosts");
    let ssh = |key: &str, login: &str| {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
            .arg(keys.private(key))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new", "-o"])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("{login}@127.0.0.1"));
        c
    };
    let sshd_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // A command: stdout and stderr apart, exit status through, in the container.
    let mut c = ssh("alice", "root");
    c.arg("cat; echo err >&2; hostname; exit 3");
    let out = run_input(c, b"via-stdin\n".to_vec());
    assert_eq!(out.status.code(), Some(3), "{}\n{}", show(&out), sshd_log());
    let o = stdout(&out);
    assert!(o.starts_with("via-stdin\n"), "{}", show(&out));
    assert_eq!(stderr(&out), "err\n");
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("{d}-root")]);
    assert!(
        id.starts_with(o.lines().nth(1).unwrap_or("-")),
        "{}",
        show(&out)
    );
    // A terminal session.
    let mut c = ssh("alice", "root");
    c.arg("-tt");
    let out = run_input(c, b"tty; exit 4\n".to_vec());
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(stdout(&out).contains("/dev/pts/"), "{}", show(&out));
    // Another service's key, and forwarding, are refused by sshd.
    let mut c = ssh("bob", "root");
    c.arg("echo INSIDE");
    assert_refused(&run(c), "bob as root through sshd");
    let mut c = ssh("alice", "root");
    c.args(["-W", "127.0.0.1:22"]);
    let out = run(c);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn ssh_sessions_per_connection_are_limited() {
    // OpenSSH connection sharing puts many sessions on one connection.
    let s = setup("sshmux");
    let dir = tempfile::tempdir().expect("control dir");
    let ctl = dir.path().join("ctl");
    let master = s.gw.ssh(&s.keys, "alice", "mail");
    let master_args: Vec<std::ffi::OsString> =
        master.get_args().map(|a| a.to_os_string()).collect();
    let mut master = Command::new("ssh");
    master
        .args(["-M", "-N", "-S"])
        .arg(&ctl)
        .args(&master_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let master = master.spawn().expect("ssh master");
    struct Kill(Vec<Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut children = Kill(vec![master]);
    let start = Instant::now();
    while !ctl.exists() {
        assert!(start.elapsed() < DEADLINE, "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shared = |cmd: &str| {
        let mut c = Command::new("ssh");
        c.arg("-S").arg(&ctl).args(&master_args).arg(cmd);
        c
    };
    for i in 0..berth::ssh::gateway::MAX_CHANNELS {
        let mut c = shared(&format!("echo started-{i}; exec sleep 60"));
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("session");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line, format!("started-{i}\n"));
        children.0.push(child);
    }
    // The next session on that connection is refused (the client then
    // falls back to a connection of its own).
    let out = run(shared("echo INSIDE"));
    assert!(
        stderr(&out).contains("Session open refused by peer"),
        "{}",
        show(&out)
    );
    // Other connections are not affected.
    let mut c = s.gw.ssh(&s.keys, "alice", "mail");
    c.arg("echo INSIDE");
    assert_eq!(stdout(&run(c)), "INSIDE\n");
}

#[test]
fn ssh_gateway_drops_connections_that_do_not_log_in() {
    let d = unique_name("sshgrace");
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(&ws, &keys, &d, &[svc("mail", &["alice"])], false);
    let mut gw = Gateway::start_with(&ws, &["--login-grace", "2"]);
    // A client that connects and says nothing.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    idle.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut got = Vec::new();
    let n = idle
        .read_to_end(&mut got)
        .expect("the gateway closes the connection");
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("SSH-2.0-berth"));
    assert!(gw.alive());
    // The log line may land a moment after the socket closed.
    let start = Instant::now();
    while !gw.log().contains("dropped: no SSH handshake in time") {
        assert!(start.elapsed() < DEADLINE, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // And it keeps serving: the container is not running, which it says.
    let mut c = gw.ssh(&keys, "alice", "mail");
    c.arg("true");
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("is not running"), "{}", show(&out));
}

/// A pre-authentication flood client: a TCP connection to the gateway from
/// `from` (any 127/8 address is loopback) that sends an SSH banner (or
/// nothing) and then stalls.
fn stalled_connection(from: [u8; 4], port: u16, banner: bool) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.bind(&std::net::SocketAddr::from((from, 0)).into())
        .expect("bind a loopback source address");
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let mut s: std::net::TcpStream = sock.into();
    if banner {
        // The gateway may have closed it already.
        let _ = s.write_all(b"SSH-2.0-flood\r\n");
    }
    s
}

/// Read the gateway's identification line from `s`.
fn read_banner(s: &mut std::net::TcpStream) {
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => panic!("no banner from the gateway: {other:?} after {got:?}"),
        }
    }
    assert!(got.starts_with(b"SSH-2.0-berth"), "{got:?}");
}

/// Has the gateway closed `s`? Reads what it sent without waiting.
fn closed_by_peer(mut s: &std::net::TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Wait (blocking, up to [`DEADLINE`]) for the gateway to close `s`: EOF, or
/// a reset if it closed with unread data.
fn wait_closed(s: &mut std::net::TcpStream) -> Duration {
    let start = Instant::now();
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("the gateway did not close a stalled connection: {e}"),
        }
    }
}

#[test]
fn ssh_good_logins_get_through_a_pre_auth_flood() {
    let d = unique_name("sshflood");
    let _cleanup = Cleanup::new(&d);
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(&ws, &keys, &d, &[svc("mail", &["alice"])], true);
    // A long grace time: the flood stays for the whole test unless the
    // gateway closes connections to make room.
    let gw = Gateway::start_with(&ws, &["--login-grace", "600"]);
    let mut flood = Vec::new();
    // 120 connections from 12 other addresses, then 80 from the address the
    // good client uses; a fifth of them send nothing at all.
    for i in 0..200usize {
        let from = if i < 120 {
            [127, 0, 0, 2 + (i % 12) as u8]
        } else {
            [127, 0, 0, 1]
        };
        flood.push(stalled_connection(from, gw.port, i % 5 != 0));
    }
    // Good logins, from the flooding address and from a new one.
    for from in ["127.0.0.1", "127.0.0.200"] {
        let start = Instant::now();
        let mut c = gw.ssh(&keys, "alice", "mail");
        c.args(["-o", &format!("BindAddress={from}")]);
        c.arg("echo INSIDE");
        let out = run(c);
        assert_eq!(
            stdout(&out),
            "INSIDE\n",
            "from {from} after {:?}: {}\ngateway log:\n{}",
            start.elapsed(),
            show(&out),
            gw.log()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "login from {from} took {:?}",
            start.elapsed()
        );
    }
    // The flood was still there while they logged in.
    let held = flood.len() - flood.iter().filter(|s| closed_by_peer(s)).count();
    assert!(held >= 5, "only {held} of the flood still held");
    // Refusals are audited, but not one line per connection.
    let log = gw.log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused: ") || l.contains("dropped: "))
        .count();
    assert!(refusals >= 1, "{log}");
    // At most one line per kind (five) and address (thirteen) a minute.
    assert!(refusals <= 13 * 5, "{refusals} lines:\n{log}");
}

#[test]
fn ssh_gateway_closes_stalled_connections_when_their_grace_is_up() {
    let d = unique_name("sshstall");
    let ws = Workspace::new();
    let keys = Keys::new(&["alice"]);
    apply_state(&ws, &keys, &d, &[svc("mail", &["alice"])], false);
    let gw = Gateway::start_with(&ws, &["--login-grace", "2"]);
    let start = Instant::now();
    // Within the per-address share: all are let in, none closed to make room.
    let mut stalled: Vec<_> = (0..10)
        .map(|i| {
            let mut s = stalled_connection([127, 0, 0, 1], gw.port, i % 3 != 0);
            read_banner(&mut s);
            s
        })
        .collect();
    for s in &mut stalled {
        wait_closed(s);
    }
    // Closed by the grace timer (which starts after `start`), not at once.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // One audit line per kind and address, however many there were.
    let log = gw.log();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("dropped: not authenticated in time"), 1, "{log}");
    assert_eq!(count("dropped: no SSH handshake in time"), 1, "{log}");
}
