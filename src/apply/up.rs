//! `berth up`: apply a deployment with berth's own foreground supervisor as
//! the target ([`crate::target::foreground`]) and keep it running until
//! SIGINT/SIGTERM, through the same apply path as `berth apply`.
//!
//! The deployment's lock is held for as long as `up` runs. SIGHUP re-reads
//! the deployment file and applies the difference: new instances start,
//! removed ones stop, changed ones get a fresh container (their volumes
//! snapshotted first when their image changes, as an apply does).
//! SIGINT/SIGTERM stop and remove every container (volumes stay); a second
//! one exits without waiting. The SSH gateway runs in the same process from
//! the first file that grants keys (at once, or after a SIGHUP) until the
//! end; it looks keys up in the applied state, so revoked keys stop working.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::lock;
use crate::deployment::Deployment;
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::state::StateDir;
use crate::target::HostOptions;
use crate::target::foreground::Foreground;
use crate::target::ssh_gateway::{ForegroundGateway, start_foreground};

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Units an earlier systemd apply left there are removed.
    pub host: HostOptions,
    pub progress: PullProgress,
    /// Where the SSH gateway listens when the deployment grants keys;
    /// `None`: no gateway.
    pub ssh_listen: Option<String>,
}

/// Start the gateway if it is wanted and not running yet.
fn start_gateway(
    engine: &Engine,
    state: &StateDir,
    opts: &UpOptions,
    deployment: &Deployment,
    running: &mut Option<ForegroundGateway>,
) -> Result<()> {
    let Some(listen) = &opts.ssh_listen else {
        return Ok(());
    };
    if running.is_some() {
        return Ok(());
    }
    if let Some(g) = start_foreground(engine, state, deployment, listen)? {
        eprintln!(
            "berth: ssh gateway listening on {} (host key {})",
            g.addr, g.fingerprint
        );
        *running = Some(g);
    }
    Ok(())
}

/// Reads the deployment file (again, on SIGHUP).
pub type Loader = Arc<dyn Fn() -> Result<Deployment> + Send + Sync>;

/// Supervise the deployment `load` returns until SIGINT/SIGTERM.
pub async fn up(engine: &Engine, state: &StateDir, opts: &UpOptions, load: Loader) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if let Some(l) = &opts.ssh_listen {
        crate::ssh::gateway::check_listen(l).map_err(|_| {
            Error::Usage(format!(
                "--ssh-listen {l:?}: expected ADDR:PORT, for example 0.0.0.0:2222 or 127.0.0.1:2200"
            ))
        })?;
    }
    let deployment = load()?;
    let name = deployment.name.clone();
    // A port that cannot be bound is an error before anything starts.
    let mut gateway = None;
    start_gateway(engine, state, opts, &deployment, &mut gateway)?;
    let lock = lock::lock_deployment(state, &name, None, || {
        eprintln!("berth: waiting for another apply or up of {name} to finish...")
    })
    .await?;

    let sig = |kind: SignalKind, what: &str| {
        signal(kind).map_err(|e| Error::Runtime(format!("cannot handle {what}: {e}")))
    };
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (hup_tx, mut hup_rx) = mpsc::channel::<()>(4);
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => { let _ = hup_tx.try_send(()); }
            }
        }
        let _ = shutdown_tx.send(true);
        // A second Ctrl-C means "now": leave without waiting for the
        // containers to stop (they are replaced on the next start anyway).
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("berth: second signal: exiting without waiting for containers to stop");
        std::process::exit(130);
    });

    let pid_file = state.up_pid(&name);
    crate::state::write_private(&pid_file, format!("{}\n", std::process::id()).as_bytes())?;

    let target = Foreground::supervising(engine, state, opts.host.clone(), shutdown_rx.clone());
    let report: super::Reporter = Arc::new(|line| eprintln!("berth: {line}"));
    let apply = |d: Deployment| {
        let (target, report, lock) = (&target, report.clone(), &lock);
        async move {
            let run = super::Run {
                progress: opts.progress,
                cause: None,
            };
            super::apply_locked(engine, state, &d, target, run, lock, report).await
        }
    };
    let mut shutdown = shutdown_rx.clone();
    let first = apply(deployment).await;
    if let Err(e) = &first {
        eprintln!("berth: {e}");
    }
    if first.is_ok() {
        eprintln!(
            "berth: supervising {} ({} instances); Ctrl-C stops everything, SIGHUP re-reads the file",
            name,
            target.supervised_count().await
        );
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = hup_rx.recv() => {
                    eprintln!("berth: SIGHUP: re-reading the deployment file");
                    match load() {
                        Ok(d) if d.name != name => eprintln!(
                            "berth: the file now names deployment {:?}, not {name:?}; ignored (restart berth up to switch)",
                            d.name
                        ),
                        Ok(d) => {
                            // A gateway that cannot start must not stop the services.
                            if let Err(e) = start_gateway(engine, state, opts, &d, &mut gateway) {
                                eprintln!("berth: {e}");
                            }
                            if let Err(e) = apply(d).await {
                                eprintln!("berth: applying the changed file: {e}");
                            }
                        }
                        Err(e) => eprintln!("berth: the changed file is not valid; still running the previous one:\n{e}"),
                    }
                }
            }
        }
    }
    eprintln!("berth: stopping {name}");
    target.stop_all().await;
    if let Some(g) = gateway {
        g.stop().await;
    }
    signals.abort();
    let _ = std::fs::remove_file(&pid_file);
    first.map(|_| ())
}
