//! `berth start|stop|restart`: the operator's intent, carried out through the
//! integration that keeps the deployment running, and remembered in a marker
//! file so that a stopped instance stays stopped until started (see
//! [`super::markers`]).
//!
//! - systemd: `systemctl disable --now` / `enable --now` / `restart` of the
//!   instance's unit (disabled, it stays stopped across reboots too).
//! - docker: the engine stops the container; its restart policy
//!   (`unless-stopped`) keeps a stopped container stopped across daemon
//!   restarts. `start` and `restart` replace it with a fresh container made
//!   from the instance spec (volumes carry the data over).
//! - foreground (`berth up`): the running supervisor sees the marker within
//!   about a second and stops, starts or replaces the container; this command
//!   waits for that to happen.

use std::time::{Duration, Instant};

use super::target::Target;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::InstanceSpec;
use crate::spec::InstanceRef;
use crate::state::StateDir;
use crate::state::markers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Restart => "restarted",
        }
    }
}

/// The pid of a live `berth up` for this deployment, if one runs.
pub fn running_up(state: &StateDir, deployment: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.up_pid(deployment))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // A recycled pid running something else does not count.
    let is_berth = cmdline.split(|b| *b == 0).any(|arg| arg == b"up");
    is_berth.then_some(pid)
}

/// Carry out `action` on `instances`; returns one line per instance for the operator.
pub async fn run(
    engine: &Engine,
    state: &StateDir,
    target: &Target,
    instances: &[InstanceRef],
    action: Action,
) -> Result<Vec<String>> {
    let integration = target.integration.as_deref().unwrap_or("");
    let mut report = Vec::new();
    // Which instances the operator had stopped, before this command.
    let was_stopped: Vec<bool> = instances
        .iter()
        .map(|i| markers::is_stopped(state, &i.container))
        .collect();
    for inst in instances {
        match action {
            Action::Stop => markers::set_stopped(state, &inst.container)?,
            Action::Start | Action::Restart => {
                markers::clear_stopped(state, &inst.container)?;
                // The operator asked for it: no crash-loop wait on this start.
                crate::supervise::backoff::CrashRecord::remove(state, &inst.container);
            }
        }
    }
    match integration {
        "systemd" => {
            for inst in instances {
                let unit = inst.unit();
                let args: &[&str] = match action {
                    Action::Stop => &["disable", "--now", &unit],
                    Action::Start => &["enable", "--now", &unit],
                    Action::Restart => &["restart", &unit],
                };
                systemctl(args)?;
                if action == Action::Restart {
                    systemctl(&["enable", &unit])?;
                }
                report.push(format!("{}: {} ({unit})", inst.container, action.verb()));
            }
        }
        "foreground" if running_up(state, &target.deployment.name).is_some() => {
            for (inst, was_stopped) in instances.iter().zip(&was_stopped) {
                let before = engine.observe_container(&inst.container).await?;
                let idle = !was_stopped && before.as_ref().is_none_or(|c| !c.is_running());
                // `start` of an instance that exited for good (restart
                // policy `no`/`on-failure`) asks for a new run, like restart.
                if action == Action::Restart || (action == Action::Start && idle) {
                    markers::request_restart(state, &inst.container)?;
                }
                let timeout = stop_timeout(target, inst) + 30;
                wait_for(engine, inst, action, before.map(|c| c.id), timeout).await?;
                report.push(format!("{}: {} by berth up", inst.container, action.verb()));
            }
        }
        "foreground" => {
            // No supervisor runs: the marker is the whole story for start;
            // stop also stops what is left.
            for inst in instances {
                match action {
                    Action::Stop => {
                        engine
                            .stop_container(&inst.container, stop_timeout(target, inst))
                            .await?;
                        engine.remove_container(&inst.container).await?;
                        report.push(format!("{}: stopped", inst.container));
                    }
                    Action::Start | Action::Restart => report.push(format!(
                        "{}: will start with the next `berth up` (none is running)",
                        inst.container
                    )),
                }
            }
        }
        _ => {
            // Docker restart policies (or never applied: act on what exists).
            for inst in instances {
                let t = stop_timeout(target, inst);
                let current = engine.observe_container(&inst.container).await?;
                let has_spec = InstanceSpec::read(state, &inst.container)?.is_some();
                if current.is_none() && !has_spec {
                    return Err(Error::Runtime(format!(
                        "{}: no container; run `berth apply` to create it",
                        inst.container
                    )));
                }
                match action {
                    Action::Stop => {
                        if current.is_some() {
                            engine.stop_container(&inst.container, t).await?;
                        }
                    }
                    // Every start is a fresh container, as under systemd
                    // and `berth up`; one already running is left alone.
                    Action::Start if current.as_ref().is_some_and(|c| c.is_running()) => {
                        report.push(format!("{}: already running", inst.container));
                        continue;
                    }
                    Action::Start | Action::Restart => {
                        restart_fresh(engine, state, target, inst, t).await?
                    }
                }
                report.push(format!("{}: {}", inst.container, action.verb()));
            }
        }
    }
    Ok(report)
}

/// Replace an instance's container with a fresh one from its instance spec
/// (volumes are named, so the data carries over). Without a spec (never
/// applied by this berth), the existing container is restarted instead.
async fn restart_fresh(
    engine: &Engine,
    state: &StateDir,
    target: &Target,
    inst: &InstanceRef,
    stop_timeout: u64,
) -> Result<()> {
    let Some(spec) = InstanceSpec::read(state, &inst.container)? else {
        engine.stop_container(&inst.container, stop_timeout).await?;
        return engine.start_container(&inst.container).await;
    };
    let revision = state
        .read_current(&target.deployment.name)?
        .map(|r| r.revision)
        .unwrap_or(0);
    // The spec records the Docker restart policy it was applied with.
    crate::integration::docker::replace_container(engine, &spec, revision, &spec.docker_restart)
        .await?;
    engine.start_container(&inst.container).await
}

fn stop_timeout(target: &Target, inst: &InstanceRef) -> u64 {
    target
        .deployment
        .services
        .get(&inst.service)
        .map(|s| s.stop_timeout_secs())
        .unwrap_or(crate::spec::DEFAULT_STOP_TIMEOUT)
}

/// Wait until a running `berth up` has done what the marker asked.
async fn wait_for(
    engine: &Engine,
    inst: &InstanceRef,
    action: Action,
    before: Option<String>,
    timeout_secs: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let now = engine.observe_container(&inst.container).await?;
        let done = match action {
            // `berth up` removes the container of a stopped instance.
            Action::Stop => now.is_none(),
            Action::Start => now.as_ref().is_some_and(|c| c.is_running()),
            Action::Restart => now
                .as_ref()
                .is_some_and(|c| c.is_running() && Some(&c.id) != before.as_ref()),
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Runtime(format!(
                "{}: `berth up` did not get it {} within {timeout_secs}s; see its output",
                inst.container,
                action.verb()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Runtime(format!("cannot run systemctl: {e}")))?;
    if !out.status.success() {
        return Err(Error::Runtime(format!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
