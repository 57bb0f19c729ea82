//! `berth up`'s supervisor: one process keeps a whole deployment running,
//! for hosts without systemd (any init, or none).
//!
//! `berth up` applies the deployment through the same path as `berth apply`
//! ([`crate::apply::up`]), with this target carrying out the plan: every
//! instance gets one task running the supervise core
//! ([`crate::supervise::run_instance`]) in a loop: a fresh container on every
//! start, Docker restart policy `no`, exponential backoff when it keeps
//! crashing ([`Backoff`]). Services start in dependency order (links),
//! independent ones in parallel; removed instances' tasks end, changed
//! ones get a fresh task and container.
//!
//! The operator's intent reaches the tasks through marker files (see
//! [`crate::state::markers`]), polled about once a second: a stopped instance
//! stays stopped until `berth start`; `berth restart` asks for a fresh
//! container. Other berth commands see this target through
//! [`Foreground::observer`]: they set the markers and wait for the running
//! supervisor to act on them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::{Control, HostOptions, Step, Supervised, Target};
use crate::deployment::{Deployment, InstanceRef, RestartPolicy};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, Integration};
use crate::plan::{Action, VolumePlan};
use crate::state::StateDir;
use crate::state::markers::{self, is_stopped as is_stopped_by_operator};
use crate::supervise::{Outcome, OutputFn, SuperviseOptions, prefixed_output};

pub use crate::supervise::backoff::{BACKOFF_MAX, BACKOFF_MIN, BACKOFF_RESET_AFTER, Backoff};

/// What every instance task shares.
struct Shared {
    engine: Engine,
    state: StateDir,
    shutdown: watch::Receiver<bool>,
}

struct Task {
    spec: InstanceSpec,
    revision: u64,
    cancel: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Task {
    /// End the task (its run stops the container) and wait for it.
    async fn end(self) -> InstanceSpec {
        let _ = self.cancel.send(true);
        let _ = self.handle.await;
        self.spec
    }
}

/// The supervisor inside `berth up`.
struct Supervisor {
    shared: Arc<Shared>,
    host: HostOptions,
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Instances held for a copy ([`Target::hold`]): their task ended; the
    /// spec and revision to run again on [`Target::release`].
    held: Mutex<BTreeMap<String, (InstanceSpec, u64)>>,
}

/// The foreground target: supervising in this process
/// ([`Foreground::supervising`]), or seen from another berth command
/// ([`Foreground::observer`]).
pub struct Foreground {
    sup: Option<Supervisor>,
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

impl Foreground {
    /// The view of other berth commands: they talk to a running `berth up`
    /// through markers.
    pub fn observer() -> Self {
        Self { sup: None }
    }

    /// A supervisor for `berth up`: its tasks end when `shutdown` turns true.
    pub fn supervising(
        engine: &Engine,
        state: &StateDir,
        host: HostOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            sup: Some(Supervisor {
                shared: Arc::new(Shared {
                    engine: engine.clone(),
                    state: state.clone(),
                    shutdown,
                }),
                host,
                tasks: Mutex::new(BTreeMap::new()),
                held: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// How many instances are supervised.
    pub async fn supervised_count(&self) -> usize {
        match &self.sup {
            Some(s) => s.tasks.lock().await.len(),
            None => 0,
        }
    }

    /// End every task (each stops and removes its container), then make
    /// sure no container is left. Volumes are kept.
    pub async fn stop_all(&self) {
        let Some(sup) = &self.sup else { return };
        let tasks = std::mem::take(&mut *sup.tasks.lock().await);
        for t in tasks.values() {
            let _ = t.cancel.send(true);
        }
        let mut leftovers = Vec::new();
        for (c, t) in tasks {
            let timeout = t.spec.stop_timeout;
            let _ = t.handle.await;
            leftovers.push((c, timeout));
        }
        let engine = &sup.shared.engine;
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

    fn supervisor(&self) -> Result<&Supervisor> {
        self.sup.as_ref().ok_or_else(|| {
            Error::Runtime(
                "this deployment is kept running by `berth up`: change it there (edit the file and send berth up SIGHUP)".into(),
            )
        })
    }
}

#[async_trait::async_trait]
impl Target for Foreground {
    fn integration(&self) -> Integration {
        Integration::Foreground
    }

    fn unit_dir(&self) -> Option<&std::path::Path> {
        self.sup.as_ref().map(|s| s.host.unit_dir.as_path())
    }

    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>> {
        let sup = self.supervisor()?;
        let (engine, plan, deployment) = (step.engine, step.plan, step.deployment);
        let wanted: BTreeMap<&str, &InstanceSpec> = plan
            .instances
            .iter()
            .filter(|i| i.action != Action::Remove)
            .filter_map(|i| i.spec.as_ref().map(|s| (i.container.as_str(), s)))
            .collect();
        sup.held.lock().await.clear();
        let mut tasks = sup.tasks.lock().await;
        // Tasks of removed or changed instances end first; their containers
        // go with them.
        let stale: Vec<String> = tasks
            .iter()
            // A task runs its own copy of the spec, so files with a reload
            // signal that changed get a fresh container here too.
            .filter(|(c, t)| {
                wanted.get(c.as_str()).is_none_or(|w| {
                    w.hash() != t.spec.hash()
                        || !crate::instance::files::reloads(&t.spec.files, &w.files).is_empty()
                })
            })
            .map(|(c, _)| c.clone())
            .collect();
        for c in &stale {
            if let Some(t) = tasks.remove(c) {
                let spec = t.end().await;
                engine.stop_and_remove(c, spec.stop_timeout).await?;
            }
        }
        super::remove_instances(engine, step.state, plan, step.report).await?;
        super::systemd::remove_units_left(
            plan,
            &sup.host.unit_dir,
            sup.host.systemctl,
            step.report,
        )
        .await?;
        for item in plan.with_action(Action::Recreate) {
            let timeout = item.previous.as_ref().map(|p| p.stop_timeout);
            engine
                .stop_and_remove(
                    &item.container,
                    timeout.unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT),
                )
                .await?;
        }
        let all: Vec<&VolumePlan> = plan.volumes_to_create.iter().collect();
        super::create_volumes(engine, step.specs, &all, step.revision, step.report).await?;
        for spec in wanted.values() {
            spec.write(step.state)?;
        }

        // Start what is not supervised yet, level by level (links first).
        let width = wanted
            .keys()
            .map(|c| short_name(&deployment.name, c).len())
            .max()
            .unwrap_or(0);
        let levels = deployment.link_levels();
        let max = levels.values().copied().max().unwrap_or(0);
        for level in 0..=max {
            let mut started = Vec::new();
            for (c, spec) in &wanted {
                if tasks.contains_key(*c)
                    || levels.get(&spec.service).copied().unwrap_or(0) != level
                {
                    continue;
                }
                let prefix = prefix_for(&deployment.name, c, width);
                tasks.insert(
                    c.to_string(),
                    sup.spawn((*spec).clone(), step.revision, prefix),
                );
                started.push(c.to_string());
            }
            // Only the services others link to hold the next level back.
            started.retain(|c| {
                wanted.get(c.as_str()).is_some_and(|spec| {
                    deployment
                        .services
                        .values()
                        .any(|s| s.links.iter().any(|l| l.target == spec.service))
                })
            });
            if level < max && !started.is_empty() {
                sup.wait_running(&started).await;
            }
        }
        Ok(Vec::new())
    }

    async fn hold(&self, _engine: &Engine, container: &str) -> Result<()> {
        let sup = self.supervisor()?;
        let task = sup.tasks.lock().await.remove(container);
        if let Some(t) = task {
            let revision = t.revision;
            let spec = t.end().await;
            sup.held
                .lock()
                .await
                .insert(container.to_string(), (spec, revision));
        }
        Ok(())
    }

    async fn release(&self, _engine: &Engine, container: &str) -> Result<()> {
        let sup = self.supervisor()?;
        let held = sup.held.lock().await.remove(container);
        if let Some((spec, revision)) = held {
            let prefix = prefix_for(&spec.deployment, container, 0);
            let task = sup.spawn(spec, revision, prefix);
            sup.tasks.lock().await.insert(container.to_string(), task);
        }
        Ok(())
    }

    async fn control(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        instances: &[InstanceRef],
        action: Control,
        was_stopped: &[bool],
    ) -> Result<Vec<String>> {
        let mut report = Vec::new();
        if running_up(state, &deployment.name).is_none() {
            // No supervisor runs: the marker is the whole story for start;
            // stop also stops what is left.
            for inst in instances {
                match action {
                    Control::Stop => {
                        engine
                            .stop_container(&inst.container, super::stop_timeout(deployment, inst))
                            .await?;
                        engine.remove_container(&inst.container).await?;
                        report.push(format!("{}: stopped", inst.container));
                    }
                    Control::Start | Control::Restart => report.push(format!(
                        "{}: will start with the next `berth up` (none is running)",
                        inst.container
                    )),
                }
            }
            return Ok(report);
        }
        for (inst, was_stopped) in instances.iter().zip(was_stopped) {
            let before = engine.observe_container(&inst.container).await?;
            let idle = !was_stopped && before.as_ref().is_none_or(|c| !c.is_running());
            // `start` of an instance that exited for good (restart policy
            // `no`/`on-failure`) asks for a new run, like restart.
            if action == Control::Restart || (action == Control::Start && idle) {
                markers::request_restart(state, &inst.container)?;
            }
            let timeout = super::stop_timeout(deployment, inst) + 30;
            wait_for(engine, inst, action, before.map(|c| c.id), timeout).await?;
            report.push(format!("{}: {} by berth up", inst.container, action.verb()));
        }
        Ok(report)
    }

    fn supervised(
        &self,
        state: &StateDir,
        deployment: &Deployment,
        _container: &str,
    ) -> Supervised {
        if running_up(state, &deployment.name).is_some() {
            Supervised::Restarts
        } else {
            Supervised::Container
        }
    }
}

/// Wait until a running `berth up` has done what the marker asked.
async fn wait_for(
    engine: &Engine,
    inst: &InstanceRef,
    action: Control,
    before: Option<String>,
    timeout_secs: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let now = engine.observe_container(&inst.container).await?;
        let done = match action {
            // `berth up` removes the container of a stopped instance.
            Control::Stop => now.is_none(),
            Control::Start => now.as_ref().is_some_and(|c| c.is_running()),
            Control::Restart => now
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

impl Supervisor {
    fn spawn(&self, spec: InstanceSpec, revision: u64, prefix: String) -> Task {
        let (cancel, cancel_rx) = watch::channel(false);
        let handle = tokio::spawn(supervise_loop(
            self.shared.clone(),
            spec.clone(),
            revision,
            prefix,
            cancel_rx,
        ));
        Task {
            spec,
            revision,
            cancel,
            handle,
        }
    }

    /// Wait (up to five minutes, or until shutdown) until the containers run
    /// and, those with a health check, are healthy, so that the services
    /// linking to them start after them. Instances the operator stopped are
    /// not waited for. Unlike `apply`'s wait, the services linking to them
    /// start anyway afterwards: a supervisor keeps trying.
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
