//! `berth doctor`: is this host ready for berth? Every check says what it
//! found and, when something is wrong, how to fix it.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::deployment::{Deployment, Protocol};
use crate::engine::{Engine, MIN_API};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, not a problem (does not fail `doctor`).
    Note,
    /// A problem: `doctor` exits 1.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `engine`, `systemd`, `state-dir`, `unit-dir`, `deployment`, `port`.
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about it, for notes and problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn note(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Note,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub unit_dir: PathBuf,
    /// How berth reaches each swarm node's engine ([`crate::engine::nodes`]).
    pub nodes_file: PathBuf,
    /// The deployment whose published ports to check, when one was given and
    /// is valid; `Err` carries why the given file could not be read.
    pub deployment: Option<Result<Deployment, String>>,
}

/// Is PID 1 systemd?
pub fn systemd_is_pid1() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && Path::new("/run/systemd/system").is_dir()
}

/// Run every check.
pub async fn run(opts: &Options) -> Report {
    let mut checks = Vec::new();

    let engine = match Engine::connect().await {
        Ok(engine) => {
            let version = engine.docker().version().await.ok();
            let server = version
                .as_ref()
                .and_then(|v| v.version.clone())
                .unwrap_or_else(|| "unknown".into());
            let api = version
                .as_ref()
                .and_then(|v| v.api_version.clone())
                .unwrap_or_else(|| engine.api_version().to_string());
            checks.push(Check::ok(
                "engine",
                format!(
                    "Docker {server}, API {api} (berth speaks {}; needs {}.{} or newer)",
                    engine.api_version(),
                    MIN_API.0,
                    MIN_API.1
                ),
            ));
            Some(engine)
        }
        Err(e) => {
            let host = std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
            checks.push(Check::fail(
                "engine",
                e.to_string(),
                format!(
                    "start the Docker daemon (`systemctl start docker` or `dockerd &`), make sure {host} is the engine's socket and this user may use it (root or the `docker` group); berth needs Docker 20.10 (API {}.{}) or newer",
                    MIN_API.0, MIN_API.1
                ),
            ));
            None
        }
    };

    if let Some(engine) = &engine {
        checks.push(swarm_check(engine).await);
        checks.extend(node_checks(engine, &opts.nodes_file).await);
    }

    let systemd = systemd_is_pid1();
    if systemd {
        checks.push(Check::ok(
            "systemd",
            "systemd is PID 1: `berth apply` installs one unit per instance",
        ));
    } else {
        checks.push(Check::note(
            "systemd",
            "PID 1 is not systemd, so there are no units to keep services running",
            "run `berth up` (foreground supervisor, under any init) or `berth apply --integration docker` (Docker restart policies)",
        ));
    }

    checks.push(dir_check(
        "state-dir",
        &opts.state_dir,
        "--state-dir or BERTH_STATE_DIR",
        true,
    ));
    let unit = dir_check(
        "unit-dir",
        &opts.unit_dir,
        "--unit-dir or BERTH_UNIT_DIR",
        systemd,
    );
    checks.push(unit);

    match &opts.deployment {
        None => checks.push(Check::note(
            "ports",
            "no deployment file given: published host ports not checked",
            "run `berth doctor -f FILE` to check the ports a deployment publishes",
        )),
        Some(Err(why)) => checks.push(Check::fail(
            "deployment",
            why.clone(),
            "run `berth validate -f FILE` and fix what it reports",
        )),
        Some(Ok(d)) => checks.extend(port_checks(engine.as_ref(), d).await),
    }

    Report {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    }
}

/// Whether the engine is a swarm manager (`--target swarm`), and its nodes.
async fn swarm_check(engine: &Engine) -> Check {
    let role = match engine.swarm_role().await {
        Ok(r) => r,
        Err(e) => return Check::note("swarm", e.to_string(), "check the engine"),
    };
    if !role.manager {
        let what = if role.node_state == "active" {
            "the engine is a swarm worker: `--target swarm` needs a manager"
        } else {
            "the engine is not part of a swarm: `--target swarm` is not available"
        };
        return Check::note(
            "swarm",
            what,
            "point DOCKER_HOST at a swarm manager to deploy with `--target swarm`",
        );
    }
    let nodes = match engine.list_nodes().await {
        Ok(n) => n
            .iter()
            .map(|n| format!("{} ({}, {})", n.hostname, n.role, n.state))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e.to_string(),
    };
    Check::ok(
        "swarm",
        format!("the engine is a swarm manager (`--target swarm`); nodes: {nodes}"),
    )
}

/// On a swarm manager, one check per other node: can berth reach its
/// engine through the nodes file, and is it that node? A node with no entry
/// is a note (only exec, ssh, backup and move need it); an entry that does
/// not work is a failure.
async fn node_checks(engine: &Engine, nodes_file: &Path) -> Vec<Check> {
    if !engine.swarm_role().await.is_ok_and(|r| r.manager) {
        return Vec::new();
    }
    let file = match crate::engine::nodes::NodesFile::load(nodes_file) {
        Ok(f) => f,
        Err(e) => {
            return vec![Check::fail(
                "nodes",
                e.to_string(),
                "fix the nodes file (`[nodes.HOSTNAME]` with `engine = \"unix:///path\"`)",
            )];
        }
    };
    let nodes = match crate::engine::nodes::NodeEngines::new(engine, file.clone()).await {
        Ok(n) => n,
        Err(e) => return vec![Check::note("nodes", e.to_string(), "check the engine")],
    };
    let manager = engine.swarm_node_id().await.unwrap_or_default();
    let mut checks = Vec::new();
    for node in nodes.nodes() {
        let name = format!("node {}", node.hostname);
        if node.id == manager {
            checks.push(Check::ok(&name, "the manager berth talks to (DOCKER_HOST)"));
            continue;
        }
        let listed =
            file.engines.contains_key(&node.hostname) || file.engines.contains_key(&node.id);
        match nodes.engine(&node.id).await {
            Ok(_) => checks.push(Check::ok(
                &name,
                format!("its engine is reached through {}", file.path.display()),
            )),
            Err(e) if !listed => checks.push(Check::note(
                &name,
                format!("no engine address in {}: exec, ssh, backup and move cannot reach its tasks", file.path.display()),
                format!("forward its socket (`ssh -nNT -L /run/berth/{h}.sock:/var/run/docker.sock root@{h}`) and add `[nodes.{h}]` with `engine = \"unix:///run/berth/{h}.sock\"` ({e})", h = node.hostname),
            )),
            Err(e) => checks.push(Check::fail(
                &name,
                e.to_string(),
                format!("fix its entry in {}", file.path.display()),
            )),
        }
    }
    checks
}

/// A directory berth must write: it exists and is writable, or it can be
/// created (its nearest existing ancestor is writable).
fn dir_check(name: &str, dir: &Path, option: &str, required: bool) -> Check {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => {
                probe = PathBuf::from(".");
                break;
            }
        }
    }
    let writable = probe.is_dir()
        && nix::unistd::access(
            &probe,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok();
    let shown = dir.display();
    if writable {
        let detail = if probe == dir {
            format!("{shown} is writable")
        } else {
            format!("{shown} does not exist yet; berth will create it")
        };
        return Check::ok(name, detail);
    }
    let detail = if probe.is_dir() {
        format!(
            "{shown} is not writable by this user ({} is not)",
            probe.display()
        )
    } else {
        format!("{shown}: {} is not a directory", probe.display())
    };
    let fix = format!("run berth as root, or point {option} at a writable directory");
    if required {
        Check::fail(name, detail, fix)
    } else {
        Check::note(
            name,
            format!("{detail} (only needed for systemd units)"),
            fix,
        )
    }
}

/// Every published host port of the deployment must be free, or held by the
/// deployment's own container for that instance.
async fn port_checks(engine: Option<&Engine>, d: &Deployment) -> Vec<Check> {
    let own = match engine {
        Some(e) => e.deployment_containers(&d.name).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let others = match engine {
        Some(e) => e
            .published_ports_elsewhere(&d.name)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut seen: Vec<(u16, Protocol)> = Vec::new();
    for svc in d.services.values() {
        for inst in d.service_instances(svc) {
            for p in &svc.ports {
                let Some(host_port) = p.host_port else {
                    continue;
                };
                let proto = p.protocol;
                let what = format!(
                    "{host_port}/{} ({} -> {})",
                    proto.as_str(),
                    inst.container,
                    p.container_port
                );
                if seen.contains(&(host_port, proto)) {
                    out.push(Check::fail(
                        "port",
                        format!("{what}: published twice by this deployment"),
                        format!("give each instance its own host port (count > 1 cannot share {host_port}); leave the host port out to let the engine pick"),
                    ));
                    continue;
                }
                seen.push((host_port, proto));
                let held_by_own = own.iter().any(|c| {
                    c.name == inst.container
                        && c.is_running()
                        && c.ports
                            .iter()
                            .any(|b| b.host_port == host_port && b.protocol == proto.as_str())
                });
                if held_by_own {
                    out.push(Check::ok(
                        "port",
                        format!("{what}: held by this deployment's own container"),
                    ));
                    continue;
                }
                let ip: IpAddr = p
                    .host_ip
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let free = match proto {
                    Protocol::Udp => UdpSocket::bind((ip, host_port)).is_ok(),
                    _ => TcpListener::bind((ip, host_port)).is_ok(),
                };
                if free {
                    out.push(Check::ok("port", format!("{what}: free")));
                    continue;
                }
                let holder = others
                    .iter()
                    .find(|(_, port, pr)| *port == host_port && pr == proto.as_str())
                    .map(|(name, _, _)| format!("the container {name}"))
                    .unwrap_or_else(|| "another process".into());
                out.push(Check::fail(
                    "port",
                    format!("{what}: in use by {holder}"),
                    format!(
                        "stop {holder} (`ss -ltnp 'sport = :{host_port}'` shows who holds it), or publish {} on another host port in the deployment file",
                        p.container_port
                    ),
                ));
            }
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            "ports",
            format!("deployment {} publishes no fixed host port", d.name),
        ));
    }
    out
}

/// Plain-text report, one line per check, fixes indented below problems.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Note => "note",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{tag}  {:<10} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<10} fix: {fix}\n", ""));
        }
    }
    let problems = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    if problems == 0 {
        out.push_str("this host is ready for berth\n");
    } else {
        out.push_str(&format!(
            "{problems} problem{} found\n",
            if problems == 1 { "" } else { "s" }
        ));
    }
    out
}
