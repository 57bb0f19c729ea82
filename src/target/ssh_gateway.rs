//! The SSH gateway as part of each target.
//!
//! One gateway per host serves every deployment applied in the state
//! directory: it looks up logins and keys in the applied revisions on every
//! attempt, so an apply never needs to restart it.
//!
//! - systemd: [`reconcile_unit`] installs `berth-ssh-gateway.service` while
//!   any applied deployment grants SSH keys, and removes it once none does.
//!   The listen address is kept from the installed unit unless a new one is
//!   given, so applying another deployment does not move the gateway.
//! - `berth up`: [`start_foreground`] runs the gateway as a task of the same
//!   process.
//! - docker: no berth process stays running; [`docker_hint`] says how to run
//!   the gateway.

use std::net::SocketAddr;
use std::path::Path;

use tokio::task::JoinHandle;

use super::systemd::ctl::{self as systemd_ctl, Systemctl};
use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ssh::{access, gateway, hostkey};
use crate::state::StateDir;

/// The name [`systemd_ctl`] knows the gateway's unit by
/// (`berth-ssh-gateway.service`).
const UNIT_STEM: &str = crate::names::GATEWAY_UNIT_STEM;

/// The gateway's unit is `berth-ssh-gateway.service`, which is also the
/// unit name an instance container called `ssh-gateway` would get
/// (deployment `ssh`, service `gateway`). Under systemd that deployment is
/// refused rather than have one unit overwrite the other.
pub fn check_unit_clash(deployment: &Deployment) -> Result<()> {
    if let Some(i) = deployment
        .instances()
        .into_iter()
        .find(|i| i.container == UNIT_STEM)
    {
        return Err(Error::Usage(format!(
            "deployment {:?}: the unit of instance {} would be {}, the name of berth's SSH gateway unit; \
             rename the deployment (--name) or the service {:?}",
            deployment.name,
            i.container,
            gateway::UNIT_NAME,
            i.service
        )));
    }
    Ok(())
}

/// What [`reconcile_unit`] did to the gateway's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitChange {
    /// Nothing to do (wanted and up to date, or not wanted and absent).
    Unchanged,
    /// Written for the first time, enabled and started.
    Installed { listen: String },
    /// Rewritten (new listen address or binary) and restarted.
    Updated { listen: String },
    /// No deployment grants keys any more: stopped, disabled, removed.
    Removed,
}

/// Outcome of [`reconcile_unit`].
#[derive(Debug, Clone)]
pub struct UnitOutcome {
    pub change: UnitChange,
    /// systemctl commands not run (`systemctl` off), for the operator.
    pub pending: Vec<String>,
}

/// Path of the gateway's unit file in `unit_dir`.
pub fn unit_path(unit_dir: &Path) -> std::path::PathBuf {
    systemd_ctl::unit_path(unit_dir, UNIT_STEM)
}

/// The listen address in an installed unit's `ExecStart` line.
fn installed_listen(unit: &str) -> Option<String> {
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
    let mut words = exec.split_whitespace();
    words.find(|w| *w == "--listen")?;
    words.next().map(|w| w.trim_matches('"').to_string())
}

/// Make the gateway's unit match what is applied in `state`: installed
/// (and enabled and started) while any applied deployment grants keys,
/// removed when none does. `listen`: the address to use; `None` keeps the
/// installed unit's, or [`gateway::DEFAULT_LISTEN`]. With `systemctl`
/// false (or systemd not running) only the file is written or removed and
/// the commands to run are returned.
pub async fn reconcile_unit(
    state: &StateDir,
    unit_dir: &Path,
    berth_path: &Path,
    listen: Option<&str>,
    systemctl: bool,
) -> Result<UnitOutcome> {
    if let Some(l) = listen {
        gateway::check_listen(l)?;
    }
    let wanted = gateway::wanted(&access::applied_deployments(state));
    let path = unit_path(unit_dir);
    let installed = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, e)),
    };
    let ctl = Systemctl::new(systemctl && systemd_ctl::systemd_running());
    let units = vec![gateway::UNIT_NAME.to_string()];
    let mut pending = Vec::new();
    if !wanted {
        if installed.is_none() {
            return Ok(UnitOutcome {
                change: UnitChange::Unchanged,
                pending,
            });
        }
        ctl.stop(&units).await?;
        ctl.disable(&units).await?;
        systemd_ctl::remove_unit(unit_dir, UNIT_STEM)?;
        ctl.daemon_reload().await?;
        if !ctl.enabled() {
            pending.push(format!("systemctl disable --now {}", gateway::UNIT_NAME));
            pending.push("systemctl daemon-reload".into());
        }
        return Ok(UnitOutcome {
            change: UnitChange::Removed,
            pending,
        });
    }

    let listen = listen
        .map(String::from)
        .or_else(|| installed.as_deref().and_then(installed_listen))
        .filter(|l| gateway::check_listen(l).is_ok())
        .unwrap_or_else(|| gateway::DEFAULT_LISTEN.to_string());
    let state_root =
        std::path::absolute(state.root()).map_err(|e| Error::io(state.root().to_path_buf(), e))?;
    let berth_path =
        std::path::absolute(berth_path).map_err(|e| Error::io(berth_path.to_path_buf(), e))?;
    let text = gateway::render_unit(&berth_path, &state_root, &listen);
    let written = systemd_ctl::write_unit(unit_dir, UNIT_STEM, &text)?;
    let change = match (&installed, written) {
        (_, false) => UnitChange::Unchanged,
        (None, true) => UnitChange::Installed {
            listen: listen.clone(),
        },
        (Some(_), true) => UnitChange::Updated {
            listen: listen.clone(),
        },
    };
    if written {
        ctl.daemon_reload().await?;
    }
    ctl.enable(&units).await?;
    match change {
        UnitChange::Updated { .. } => ctl.restart(&units).await?,
        // Starting a running unit is a no-op; this also brings back a
        // gateway that was stopped by hand or by an interrupted apply.
        _ => ctl.start(&units).await?,
    }
    if !ctl.enabled() {
        if written {
            pending.push("systemctl daemon-reload".into());
        }
        pending.push(format!("systemctl enable {}", gateway::UNIT_NAME));
        pending.push(format!(
            "systemctl {} {}",
            if matches!(change, UnitChange::Updated { .. }) {
                "restart"
            } else {
                "start"
            },
            gateway::UNIT_NAME
        ));
    }
    Ok(UnitOutcome { change, pending })
}

/// How to run the gateway on a host without a berth process (`--integration
/// docker`), or `None` when `deployment` grants no keys.
pub fn docker_hint(deployment: &Deployment, listen: Option<&str>) -> Option<String> {
    if !gateway::wanted(std::slice::from_ref(deployment)) {
        return None;
    }
    Some(format!(
        "SSH keys are granted, but with --integration docker no berth process keeps running: \
         start the gateway with `berth ssh-gateway --listen {}` under your init system \
         (or use `berth authorized-keys` with OpenSSH)",
        listen.unwrap_or(gateway::DEFAULT_LISTEN)
    ))
}

/// The gateway running as a task of `berth up`.
pub struct ForegroundGateway {
    /// Where it listens (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// SHA256 fingerprint of the host key.
    pub fingerprint: String,
    task: JoinHandle<Result<()>>,
}

impl ForegroundGateway {
    /// Stop accepting connections and end the gateway.
    pub async fn stop(self) {
        self.task.abort();
        // The task was aborted or had already ended with an error that
        // was reported then; either way there is nothing left to report.
        let _ = self.task.await;
    }
}

/// Start the gateway in this process when `deployment` grants SSH keys;
/// `None` when it grants none. Binding happens here, so a taken port is an
/// error before anything else starts. Must be called from within the tokio
/// runtime (`berth up` calls it from its loader when a re-read file starts
/// granting keys).
pub fn start_foreground(
    engine: &Engine,
    state: &StateDir,
    deployment: &Deployment,
    listen: &str,
) -> Result<Option<ForegroundGateway>> {
    if !gateway::wanted(std::slice::from_ref(deployment)) {
        return Ok(None);
    }
    gateway::check_listen(listen)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::Runtime(format!("SSH gateway: no async runtime: {e}")))?;
    let key = hostkey::load_or_create(state)?;
    let fingerprint = hostkey::fingerprint(&key);
    let bind_err = |e: std::io::Error| {
        Error::Runtime(format!(
            "SSH gateway: cannot listen on {listen}: {e} (choose another address with --ssh-listen, or --no-ssh)"
        ))
    };
    let std_listener = std::net::TcpListener::bind(listen).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = std_listener.local_addr().map_err(bind_err)?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?
    };
    let engine = engine.clone();
    let state = state.clone();
    let task = runtime.spawn(async move {
        let sources = crate::ssh::access::Sources { state, swarm: None };
        let r = gateway::serve(
            engine,
            sources,
            Default::default(),
            listener,
            key,
            Default::default(),
        )
        .await;
        if let Err(e) = &r {
            tracing::error!("ssh gateway stopped: {e}");
        }
        r
    });
    Ok(Some(ForegroundGateway {
        addr,
        fingerprint,
        task,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_stem_names_the_gateway_unit() {
        assert_eq!(crate::names::unit_name(UNIT_STEM), gateway::UNIT_NAME);
    }

    #[test]
    fn an_instance_named_like_the_gateway_is_refused() {
        let d = |name: &str| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "name": name,
                "services": {"gateway": {"name": "gateway", "image": "i", "count": 1}},
            }))
            .expect("deployment")
        };
        assert!(matches!(check_unit_clash(&d("ssh")), Err(Error::Usage(_))));
        assert!(check_unit_clash(&d("web")).is_ok());
    }

    #[test]
    fn listen_is_read_back_from_the_unit() {
        let unit = gateway::render_unit(
            Path::new("/usr/bin/berth"),
            Path::new("/var/lib/berth"),
            "127.0.0.1:2200",
        );
        assert_eq!(installed_listen(&unit).as_deref(), Some("127.0.0.1:2200"));
        assert_eq!(installed_listen("[Service]\nExecStart=/x\n"), None);
        let unit = gateway::render_unit(
            Path::new("/usr/bin/berth"),
            Path::new("/var/lib/berth"),
            "[::]:2222",
        );
        assert_eq!(installed_listen(&unit).as_deref(), Some("[::]:2222"));
    }

    /// Paths with spaces, `%`, `$` and quotes are quoted and escaped, and
    /// systemd reads the unit without a word.
    #[test]
    fn odd_paths_are_escaped_in_the_unit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let odd = dir.path().join("bin dir %i $HOME");
        std::fs::create_dir_all(&odd).expect("odd dir");
        let bin = odd.join("berth");
        std::os::unix::fs::symlink("/bin/true", &bin).expect("symlink");
        let state = odd.join("state \"dir\" '%n' \\");
        let unit = gateway::render_unit(&bin, &state, "[::]:2222");
        assert!(unit.contains("%%i"), "{unit}");
        assert!(unit.contains("$$HOME"), "{unit}");
        let path = dir.path().join(gateway::UNIT_NAME);
        std::fs::write(&path, &unit).expect("write unit");
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .expect("systemd-analyze (from the systemd package) is needed for this test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{unit}\n{text}"
        );
    }
}
