//! Foreground integration: `berth up` supervises a whole deployment in one
//! process, for hosts without systemd (any init, or none).
//!
//! Preparation is `apply`'s: images (pulled if missing), instance specs
//! written to the state directory, network and volumes; containers berth no
//! longer wants are removed. Then every instance gets one task running the
//! supervise core ([`crate::supervise::run_instance`]) in a loop: a fresh
//! container on every start, Docker restart policy `no`, exponential backoff
//! when it keeps crashing ([`Backoff`]). Services start in dependency order
//! (links), independent ones in parallel.
//!
//! The operator's intent reaches the tasks through marker files (see
//! [`crate::state::markers`]), polled about once a second: a stopped instance
//! stays stopped until `berth start`; `berth restart` asks for a fresh
//! container. SIGINT/SIGTERM stop and remove every container (volumes stay)
//! and return; SIGHUP re-reads the deployment file and applies the
//! difference: new instances start, removed ones stop, changed ones get a
//! fresh container.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::apply;
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, Integration};
use crate::spec::{Deployment, RestartPolicy};
use crate::state::markers::{self, is_stopped as is_stopped_by_operator};
use crate::state::{Revision, StateDir};
use crate::supervise::{Outcome, OutputFn, SuperviseOptions, prefixed_output};

pub use crate::supervise::backoff::{BACKOFF_MAX, BACKOFF_MIN, BACKOFF_RESET_AFTER, Backoff};

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub unit_dir: PathBuf,
    pub berth_path: PathBuf,
    pub progress: PullProgress,
}

/// Reads the deployment file (again, on SIGHUP).
pub type Loader = Arc<dyn Fn() -> Result<Deployment> + Send + Sync>;

/// What every instance task shares.
struct Shared {
    engine: Engine,
    state: StateDir,
    shutdown: watch::Receiver<bool>,
}

struct Task {
    spec: InstanceSpec,
    cancel: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Supervise the deployment `load` returns until SIGINT/SIGTERM.
pub async fn up(engine: &Engine, state: &StateDir, opts: &UpOptions, load: Loader) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let deployment = load()?;
    let name = deployment.name.clone();
    let _lock = apply::lock::lock_deployment(state, &name, None, || {
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

    let shared = Arc::new(Shared {
        engine: engine.clone(),
        state: state.clone(),
        shutdown: shutdown_rx.clone(),
    });
    let mut sup = Supervisor {
        shared,
        opts: opts.clone(),
        tasks: BTreeMap::new(),
        deployment: deployment.clone(),
    };
    let mut shutdown = shutdown_rx.clone();
    let first = sup.converge(deployment).await;
    if let Err(e) = &first {
        eprintln!("berth: {e}");
    }
    if first.is_ok() {
        eprintln!(
            "berth: supervising {} ({} instances); Ctrl-C stops everything, SIGHUP re-reads the file",
            name,
            sup.tasks.len()
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
                            if let Err(e) = sup.converge(d).await {
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
    sup.stop_all().await;
    signals.abort();
    let _ = std::fs::remove_file(&pid_file);
    first.map(|_| ())
}

struct Supervisor {
    shared: Arc<Shared>,
    opts: UpOptions,
    tasks: BTreeMap<String, Task>,
    deployment: Deployment,
}

impl Supervisor {
    /// Make the running tasks match `deployment`.
    async fn converge(&mut self, deployment: Deployment) -> Result<()> {
        let shared = self.shared.clone();
        let engine = &shared.engine;
        let state = &shared.state;
        let desired = apply::desired(
            engine,
            state,
            &deployment,
            Integration::Foreground,
            &self.opts.unit_dir,
            &self.opts.berth_path,
            Some(self.opts.progress),
        )
        .await?;
        // The plan's checks, before anything is touched: no container,
        // volume, network or instance spec of someone else is taken over.
        apply::compute_plan(
            engine,
            state,
            &deployment,
            &desired.specs,
            &[],
            &desired.target,
            &self.opts.unit_dir,
        )
        .await?;
        let wanted: BTreeMap<String, InstanceSpec> = desired
            .specs
            .into_iter()
            .map(|s| (s.container.clone(), s))
            .collect();

        // The applied revision, as `apply` records it.
        let current = state.read_current(&deployment.name)?;
        let changed = current.as_ref().map(|c| &c.deployment) != Some(&deployment)
            || current.as_ref().map(|c| c.integration.as_str())
                != Some(Integration::Foreground.as_str());
        let revision = match &current {
            Some(c) if !changed => c.revision,
            Some(c) => c.revision + 1,
            None => 1,
        };

        // Removed or changed instances: stop their tasks first.
        let stale: Vec<String> = self
            .tasks
            .iter()
            // A task runs its own copy of the spec, so files with a reload
            // signal that changed get a fresh container here too.
            .filter(|(c, t)| {
                wanted.get(*c).is_none_or(|w| {
                    w.hash() != t.spec.hash()
                        || !crate::instance::files::reloads(&t.spec.files, &w.files).is_empty()
                })
            })
            .map(|(c, _)| c.clone())
            .collect();
        // Instances moving to another image: snapshot their volumes first,
        // as `apply` does (their tasks end, the old containers stop).
        let mut snapshotted = self
            .snapshot_upgrades(&deployment, &wanted, &stale, current.as_ref())
            .await?;
        for c in &stale {
            let spec = match self.tasks.remove(c) {
                Some(t) => {
                    let _ = t.cancel.send(true);
                    let _ = t.handle.await;
                    t.spec
                }
                None => match snapshotted.remove(c) {
                    Some(spec) => spec,
                    None => continue,
                },
            };
            engine.stop_and_remove(c, spec.stop_timeout).await?;
            if !wanted.contains_key(c) {
                state.forget_instance(c)?;
                say(&prefix_for(&deployment.name, c, 0), "removed");
            }
        }
        // Containers of the deployment nobody wants (left by an earlier run).
        for c in engine.list_containers(&deployment.name, &[]).await? {
            if !wanted.contains_key(&c.name) {
                let timeout = InstanceSpec::read(state, &c.name)
                    .ok()
                    .flatten()
                    .map(|s| s.stop_timeout)
                    .unwrap_or(crate::spec::DEFAULT_STOP_TIMEOUT);
                engine.stop_and_remove(&c.name, timeout).await?;
                state.forget_instance(&c.name)?;
            }
        }

        engine.ensure_network(&deployment.name).await?;
        for spec in wanted.values() {
            spec.write(state)?;
        }
        if changed {
            apply::write_revision(
                state,
                &Revision {
                    revision,
                    applied_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string(),
                    integration: Integration::Foreground.as_str().to_string(),
                    deployment: deployment.clone(),
                    image_ids: deployment
                        .services
                        .values()
                        .filter_map(|s| {
                            desired
                                .images
                                .get(&s.image)
                                .map(|i| (s.name.clone(), i.id.clone()))
                        })
                        .collect(),
                },
            )?;
        }

        // Start what is not running, level by level (links first).
        let width = wanted
            .keys()
            .map(|c| short_name(&deployment.name, c).len())
            .max()
            .unwrap_or(0);
        let levels = apply::service_levels(&deployment);
        let max = levels.values().copied().max().unwrap_or(0);
        for level in 0..=max {
            let mut started = Vec::new();
            for (c, spec) in &wanted {
                if self.tasks.contains_key(c)
                    || levels.get(&spec.service).copied().unwrap_or(0) != level
                {
                    continue;
                }
                let (cancel, cancel_rx) = watch::channel(false);
                let prefix = prefix_for(&deployment.name, c, width);
                let handle = tokio::spawn(supervise_loop(
                    self.shared.clone(),
                    spec.clone(),
                    revision,
                    prefix,
                    cancel_rx,
                ));
                self.tasks.insert(
                    c.clone(),
                    Task {
                        spec: spec.clone(),
                        cancel,
                        handle,
                    },
                );
                started.push(c.clone());
            }
            // Only the services others link to hold the next level back.
            started.retain(|c| {
                wanted.get(c).is_some_and(|spec| {
                    deployment
                        .services
                        .values()
                        .any(|s| s.links.iter().any(|l| l.target == spec.service))
                })
            });
            if level < max && !started.is_empty() {
                self.wait_running(&started).await;
            }
        }
        self.deployment = deployment;
        Ok(())
    }

    /// Snapshot the volumes of every `stale` instance whose image changes
    /// (reference or ID) and whose service keeps `snapshot_on_upgrade`: its
    /// task ends and its container stops first. Returns their old specs. If
    /// a snapshot fails, their tasks are started again on the old specs and
    /// the change is not applied.
    async fn snapshot_upgrades(
        &mut self,
        deployment: &Deployment,
        wanted: &BTreeMap<String, InstanceSpec>,
        stale: &[String],
        current: Option<&Revision>,
    ) -> Result<BTreeMap<String, InstanceSpec>> {
        let shared = self.shared.clone();
        let engine = &shared.engine;
        let state = &shared.state;
        let revision = current.map(|r| r.revision).unwrap_or(0);
        let mut done: BTreeMap<String, InstanceSpec> = BTreeMap::new();
        let mut failure = None;
        for c in stale {
            let (Some(w), Some(t)) = (wanted.get(c), self.tasks.get(c)) else {
                continue;
            };
            let upgrade = w.image != t.spec.image
                || (!w.image_id.is_empty() && w.image_id != t.spec.image_id);
            let enabled = deployment
                .services
                .get(&w.service)
                .is_some_and(|s| s.snapshot_on_upgrade);
            if !upgrade || !enabled {
                continue;
            }
            let Some(t) = self.tasks.remove(c) else {
                continue;
            };
            let _ = t.cancel.send(true);
            let _ = t.handle.await;
            let prefix = prefix_for(&deployment.name, c, 0);
            let r = async {
                engine.stop_container(c, t.spec.stop_timeout).await?;
                crate::data::snapshot::snapshot_instance(
                    engine,
                    state,
                    &deployment.name,
                    c,
                    revision,
                    deployment.snapshots_keep(&w.service),
                )
                .await
            }
            .await;
            done.insert(c.clone(), t.spec);
            match r {
                Ok(Some(s)) => say(
                    &prefix,
                    &format!("snapshot before upgrade: {}", s.path.display()),
                ),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(Error::Runtime(format!(
                        "snapshot of {c} before its upgrade failed: {e}; the change was not applied (turn snapshots off for the service with snapshot_on_upgrade = false)"
                    )));
                    break;
                }
            }
        }
        let Some(err) = failure else {
            return Ok(done);
        };
        // Back to the old specs: supervise them again.
        for (c, spec) in done {
            let (cancel, cancel_rx) = watch::channel(false);
            let prefix = prefix_for(&self.deployment.name, &c, 0);
            let handle = tokio::spawn(supervise_loop(
                self.shared.clone(),
                spec.clone(),
                revision,
                prefix,
                cancel_rx,
            ));
            self.tasks.insert(
                c,
                Task {
                    spec,
                    cancel,
                    handle,
                },
            );
        }
        Err(err)
    }

    /// Wait (up to five minutes, or until shutdown) until the containers run
    /// and, those with a health check, are healthy, so that the services
    /// linking to them start after them. Instances the operator stopped are
    /// not waited for.
    async fn wait_running(&self, containers: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut shutdown = self.shared.shutdown.clone();
        let mut said = false;
        loop {
            let mut waiting_for = None;
            for c in containers {
                if is_stopped_by_operator(&self.shared.state, c) {
                    continue;
                }
                let ready = matches!(
                    self.shared.engine.observe_container(c).await,
                    Ok(Some(s)) if s.is_running() && matches!(s.health.as_deref(), None | Some("healthy"))
                );
                if !ready {
                    waiting_for = Some(c.clone());
                    break;
                }
            }
            let Some(c) = waiting_for else { return };
            if *shutdown.borrow() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "berth: {c} is still not running and healthy; starting the services that link to it anyway"
                );
                return;
            }
            if !said && Instant::now() + Duration::from_secs(295) > deadline {
                eprintln!(
                    "berth: waiting for {c} to be healthy before starting the services that link to it"
                );
                said = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Stop every task (each stops and removes its container), then make
    /// sure no container is left. Volumes are kept.
    async fn stop_all(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in tasks.values() {
            let _ = t.cancel.send(true);
        }
        let mut leftovers = Vec::new();
        for (c, t) in tasks {
            let _ = t.handle.await;
            leftovers.push((c, t.spec.stop_timeout));
        }
        let engine = &self.shared.engine;
        let results = futures_util::future::join_all(
            leftovers
                .iter()
                .map(|(c, timeout)| engine.stop_and_remove(c, *timeout)),
        )
        .await;
        for (r, (c, _)) in results.into_iter().zip(&leftovers) {
            if let Err(e) = r {
                eprintln!("berth: {c}: {e}");
            }
        }
    }
}

/// The instance's name without the deployment prefix (`mail`, `web-2`).
fn short_name<'a>(deployment: &str, container: &'a str) -> &'a str {
    container
        .strip_prefix(deployment)
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or(container)
}

fn prefix_for(deployment: &str, container: &str, width: usize) -> String {
    format!("{:<width$}", short_name(deployment, container))
}

/// berth's own line about an instance, in the instance's prefix.
fn say(prefix: &str, msg: &str) {
    eprintln!("{prefix} | berth: {msg}");
}

/// Why the current run of an instance should end.
async fn interrupted(
    shared: &Shared,
    container: &str,
    cancel: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) {
    loop {
        if *cancel.borrow()
            || *shutdown.borrow()
            || is_stopped_by_operator(&shared.state, container)
            || shared.state.restart_request(container).exists()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = cancel.changed() => if r.is_err() { return },
            r = shutdown.changed() => if r.is_err() { return },
        }
    }
}

/// Sleep `d`, or less when the run is interrupted. True if interrupted.
async fn pause(
    shared: &Shared,
    container: &str,
    d: Duration,
    cancel: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = interrupted(shared, container, cancel, shutdown) => true,
    }
}

/// The life of one instance under `berth up`.
async fn supervise_loop(
    shared: Arc<Shared>,
    spec: InstanceSpec,
    revision: u64,
    prefix: String,
    mut cancel: watch::Receiver<bool>,
) {
    let c = spec.container.clone();
    let output: OutputFn = prefixed_output(prefix.clone());
    let opts = SuperviseOptions {
        notify_systemd: false,
        output: output.clone(),
        revision,
    };
    let mut shutdown = shared.shutdown.clone();
    let mut backoff = Backoff::new();
    let mut restarts: u64 = 0;
    let _ = markers::write_restarts(&shared.state, &c, 0);
    let done = |cancel: &watch::Receiver<bool>, shutdown: &watch::Receiver<bool>| {
        *cancel.borrow() || *shutdown.borrow()
    };
    loop {
        if done(&cancel, &shutdown) {
            return;
        }
        if is_stopped_by_operator(&shared.state, &c) {
            if let Err(e) = shared.engine.stop_and_remove(&c, spec.stop_timeout).await {
                say(&prefix, &format!("stopping: {e}"));
            }
            say(&prefix, "stopped (berth stop); waiting for `berth start`");
            while is_stopped_by_operator(&shared.state, &c) {
                if pause_plain(Duration::from_secs(1), &mut cancel, &mut shutdown).await {
                    return;
                }
            }
            backoff.reset();
            say(&prefix, "started (berth start)");
            continue;
        }
        if markers::take_restart_request(&shared.state, &c) {
            say(&prefix, "restarting with a fresh container (berth restart)");
            backoff.reset();
        }
        let started = Instant::now();
        let mut cancel2 = cancel.clone();
        let mut shutdown2 = shutdown.clone();
        let run = crate::supervise::run_instance(&shared.engine, &spec, &opts, async {
            interrupted(&shared, &c, &mut cancel2, &mut shutdown2).await;
        })
        .await;
        let ran = started.elapsed();
        match run {
            Ok(Outcome::Stopped) => continue,
            // Already reported by the supervisor; a fresh container follows.
            Ok(Outcome::Unhealthy(_)) => {}
            Ok(Outcome::Exited(status)) => {
                let again = match spec.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !status.success(),
                    RestartPolicy::No => false,
                };
                if !again {
                    say(
                        &prefix,
                        &format!(
                            "exited with status {}; restart policy {:?}: not restarting (`berth restart` starts it)",
                            status.code, spec.restart
                        ),
                    );
                    // Idle until told otherwise.
                    loop {
                        if pause(
                            &shared,
                            &c,
                            Duration::from_secs(3600),
                            &mut cancel,
                            &mut shutdown,
                        )
                        .await
                        {
                            break;
                        }
                    }
                    continue;
                }
                say(&prefix, &format!("exited with status {}", status.code));
            }
            Err(e) => {
                if done(&cancel, &shutdown) {
                    return;
                }
                say(&prefix, &format!("error: {e}"));
            }
        }
        restarts += 1;
        let _ = markers::write_restarts(&shared.state, &c, restarts);
        let wait = backoff.after_run(ran);
        say(
            &prefix,
            &format!(
                "restarting in {} (restart {restarts})",
                humantime::format_duration(wait)
            ),
        );
        let _ = pause(&shared, &c, wait, &mut cancel, &mut shutdown).await;
    }
}

/// Sleep, waking early on cancel or shutdown. True if it should end.
async fn pause_plain(
    d: Duration,
    cancel: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = cancel.changed() => {}
        _ = shutdown.changed() => {}
    }
    *cancel.borrow() || *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(short_name("ex", "ex-mail"), "mail");
        assert_eq!(short_name("ex", "ex-web-2"), "web-2");
        assert_eq!(prefix_for("ex", "ex-db", 5), "db   ");
    }
}
