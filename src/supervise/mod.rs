//! The life of one instance: the main process of a systemd unit
//! (`berth supervise <container>`) and the building block of `berth up`.
//!
//! [`run_instance`] makes sure the image, network and volumes exist, removes
//! a stale container of the instance's name, creates and starts a fresh
//! container (Docker restart policy `no`: whoever calls this restarts it),
//! optionally tells systemd it is ready, streams the container's output,
//! and returns when the container exits (with its status) or when
//! `shutdown` resolves (after stopping the container within its stop
//! timeout and removing it).
//!
//! Running many instances in one process (`berth up`): resolve the specs
//! with [`crate::apply::desired`], then per instance loop on
//! [`run_instance`] with [`prefixed_output`] and a shared shutdown future
//! (for example a `tokio::sync::watch` receiver), restarting on
//! [`Outcome::Exited`] as the instance's restart policy says.

pub mod backoff;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;

use crate::deployment::RestartPolicy;
use crate::engine::{Engine, ExitStatus, PullProgress};
use crate::error::{Error, Result};
use crate::instance::InstanceSpec;
use crate::names;
use crate::target::docker::replace_container_with_hash;
use backoff::{CrashRecord, RunEnd};

/// Which stream a chunk of container output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

/// Where container output goes: called with every chunk.
pub type OutputFn = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// Output written unchanged to this process's stdout / stderr (what a
/// systemd unit wants: the journal gets the container's lines).
pub fn stdio_output() -> OutputFn {
    Arc::new(|stream, bytes| {
        // A closed stdout/stderr must not kill the supervisor: ignore write errors.
        match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(bytes);
                let _ = err.flush();
            }
        }
    })
}

/// Output with every line prefixed (`mail | ...`), for many instances in
/// one terminal. Partial lines are completed with a newline.
pub fn prefixed_output(prefix: impl Into<String>) -> OutputFn {
    let prefix = prefix.into();
    Arc::new(move |stream, bytes| {
        let text = String::from_utf8_lossy(bytes);
        let mut buf = String::new();
        for line in text.lines() {
            buf.push_str(&prefix);
            buf.push_str(" | ");
            buf.push_str(line);
            buf.push('\n');
        }
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(buf.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(buf.as_bytes()),
        };
    })
}

/// Options of [`run_instance`].
#[derive(Clone)]
pub struct SuperviseOptions {
    /// Send `READY=1` to systemd once the container runs (no-op without
    /// `NOTIFY_SOCKET`).
    pub notify_systemd: bool,
    /// Where the container's output goes.
    pub output: OutputFn,
    /// Revision label for the container.
    pub revision: u64,
}

impl std::fmt::Debug for SuperviseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuperviseOptions")
            .field("notify_systemd", &self.notify_systemd)
            .field("revision", &self.revision)
            .finish()
    }
}

impl Default for SuperviseOptions {
    fn default() -> Self {
        Self {
            notify_systemd: false,
            output: stdio_output(),
            revision: 0,
        }
    }
}

/// How a supervised run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container exited by itself with this status (it is left in place,
    /// stopped, for `berth logs`; the next run replaces it).
    Exited(ExitStatus),
    /// `shutdown` resolved: the container was stopped and removed.
    Stopped,
    /// Its health check declared it unhealthy and its `on_unhealthy` is
    /// `restart`: the container was stopped and removed. Carries the last
    /// check's summary (`exit 1: output`).
    Unhealthy(String),
}

/// Send `READY=1` to systemd. Not being under systemd is fine
/// (`NOTIFY_SOCKET` unset: no-op); a failing notification is logged and
/// systemd's start timeout decides.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// How often the supervisor looks at the container's health.
pub const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Watch the container's health: notify systemd READY once it runs and,
/// when it has a check, is healthy (or is unhealthy with `on_unhealthy =
/// "ignore"`); return the last check's summary when it turns unhealthy and
/// `restart` is asked for. Never returns otherwise.
async fn watch_health(
    engine: &Engine,
    spec: &InstanceSpec,
    notify: bool,
    already_ready: bool,
    output: &OutputFn,
) -> String {
    let restart = spec.on_unhealthy() == crate::deployment::OnUnhealthy::Restart;
    let mut ready = already_ready;
    let mut last_status: Option<String> = None;
    loop {
        // A failing inspect is transient (the wait on the container sees a
        // real exit): try again at the next poll.
        if let Ok(Some(st)) = engine.observe_container(&spec.container).await {
            let health = st.health.clone();
            let unhealthy = health.as_deref() == Some("unhealthy");
            // With `restart`, the replacement message says it all.
            if health != last_status && health.is_some() && !(unhealthy && restart) {
                let line = match (health.as_deref(), st.last_check()) {
                    (Some("unhealthy"), Some(c)) => format!(
                        "berth: {} is unhealthy; last check: {}\n",
                        spec.container,
                        c.summary()
                    ),
                    (Some(h), _) => format!("berth: {} is {h}\n", spec.container),
                    (None, _) => String::new(),
                };
                output(Stream::Stderr, line.as_bytes());
                last_status = health.clone();
            }
            if unhealthy && restart {
                return st
                    .last_check()
                    .map(|c| c.summary())
                    .unwrap_or_else(|| "no check output".into());
            }
            // Without a check, ready means started (as before health
            // checks existed, even if it already exited: systemd then sees
            // the exit and restarts it); with one, running and healthy.
            let ready_now = match health.as_deref() {
                None => true,
                Some("healthy") | Some("unhealthy") => st.is_running(),
                Some(_) => false,
            };
            if !ready && ready_now {
                ready = true;
                if notify {
                    notify_ready();
                }
            }
            if ready && health.is_none() {
                // No check: nothing more to watch.
                std::future::pending::<()>().await;
            }
        }
        // Quick until ready (dependents wait for it), calmer afterwards.
        let pause = if ready { HEALTH_POLL * 2 } else { HEALTH_POLL };
        tokio::time::sleep(pause).await;
    }
}

/// Make sure what an instance needs exists: its image (pulled if missing),
/// the deployment network and its volumes (labelled). Returns the spec to
/// create, with the image ID refreshed if the recorded image is gone.
pub async fn prepare(engine: &Engine, spec: &InstanceSpec, revision: u64) -> Result<InstanceSpec> {
    let mut spec = spec.clone();
    // The image, the network and the volumes are independent requests: make
    // them at once, since they sit between a crash and its replacement.
    let image = async {
        let by_id = if spec.image_id.is_empty() {
            None
        } else {
            engine.image_info(&spec.image_id).await?
        };
        if by_id.is_some() {
            return Ok(None);
        }
        let info = engine
            .ensure_images(std::slice::from_ref(&spec.image), PullProgress::Lines)
            .await?;
        Ok::<_, Error>(info.get(&spec.image).map(|i| i.id.clone()))
    };
    let network = engine.ensure_network(&spec.deployment);
    let volumes = futures_util::future::try_join_all(spec.volume_owners().into_iter().map(
        |(vol, path, owner)| {
            let labels = spec.volume_labels(&owner, path, revision);
            async move {
                let have = engine.ensure_volume(vol, &labels).await?;
                // Never mount someone else's data (see `names::Owner::claim`).
                match owner.claim(&have) {
                    names::Claim::Other(theirs) => Err(Error::Conflict(names::conflict_message(
                        "volume", vol, &theirs, &owner,
                    ))),
                    _ => Ok(()),
                }
            }
        },
    ));
    let (image_id, _, _) = tokio::try_join!(image, network, volumes)?;
    if let Some(id) = image_id {
        if !spec.image_id.is_empty() && spec.image_id != id {
            tracing::warn!(
                "{}: image {} is gone; using {} ({}) instead",
                spec.container,
                spec.image_id,
                spec.image,
                id
            );
        }
        spec.image_id = id;
    }
    Ok(spec)
}

/// Run one instance until its container exits or `shutdown` resolves.
/// See the module documentation.
pub async fn run_instance(
    engine: &Engine,
    spec: &InstanceSpec,
    opts: &SuperviseOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Outcome> {
    // Label with the hash of the spec as applied, so `plan` recognises the
    // container even if `prepare` had to refresh the image ID.
    let applied_hash = spec.hash();
    let spec = prepare(engine, spec, opts.revision).await?;
    replace_container_with_hash(engine, &spec, opts.revision, "no", &applied_hash).await?;
    engine.start_container(&spec.container).await?;

    let output = opts.output.clone();
    let mut logs = engine.container_output(&spec.container, true, "all");
    let log_task = tokio::spawn(async move {
        while let Some(item) = logs.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    output(Stream::Stderr, &message)
                }
                Ok(other) => output(Stream::Stdout, other.as_ref()),
                Err(e) => {
                    tracing::debug!("output stream ended: {e}");
                    break;
                }
            }
        }
    });

    // Without a health check the instance is ready once started: tell
    // systemd now, before the container can exit (as quick as it may be).
    let has_check = engine
        .observe_container(&spec.container)
        .await
        .ok()
        .flatten()
        .is_some_and(|s| s.health.is_some());
    if !has_check && opts.notify_systemd {
        notify_ready();
    }

    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        status = engine.wait_container(&spec.container) => Outcome::Exited(status?),
        check = watch_health(engine, &spec, opts.notify_systemd, !has_check, &opts.output) => {
            let msg = format!(
                "berth: {} is unhealthy (last check: {check}); replacing it with a fresh container\n",
                spec.container
            );
            (opts.output)(Stream::Stderr, msg.as_bytes());
            engine.stop_container(&spec.container, spec.stop_timeout).await?;
            engine.remove_container(&spec.container).await?;
            Outcome::Unhealthy(check)
        }
        () = &mut shutdown => {
            if opts.notify_systemd {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            }
            engine.stop_container(&spec.container, spec.stop_timeout).await?;
            engine.remove_container(&spec.container).await?;
            Outcome::Stopped
        }
    };
    // Let the rest of the output through; the stream ends with the container.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), log_task).await;
    Ok(outcome)
}

/// `berth supervise CONTAINER`: wait out any crash-loop backoff, connect to
/// the engine (`DOCKER_HOST`), read the instance spec from the state
/// directory and run it until it exits (returning its exit code) or
/// SIGTERM/SIGINT arrives (returning 0).
pub async fn supervise_container(state: &crate::state::StateDir, container: &str) -> Result<u8> {
    names::check_name(container)
        .map_err(|p| Error::Usage(format!("container name {container:?} {p}")))?;
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);

    // Crash-loop backoff: systemd restarts the unit after a short fixed
    // delay; the supervisor adds the growing part, counted across its own
    // restarts in the state directory.
    let mut record = CrashRecord::load(state, container);
    let wait = record.wait();
    if !wait.is_zero() {
        let what = format!(
            "{} quick failure{} in a row{}; waiting {}s before starting a fresh container",
            record.failures,
            if record.failures == 1 { "" } else { "s" },
            match (&record.last_error, record.last_exit) {
                (Some(e), _) => format!(" (last: {e})"),
                (None, Some(code)) => format!(" (last exit status {code})"),
                (None, None) => String::new(),
            },
            wait.as_secs()
        );
        tracing::warn!("{container}: {what}");
        notify_status(&what, Some(wait + Duration::from_secs(START_TIMEOUT_SECS)));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => return Ok(0),
        }
        notify_status("starting", None);
    }
    record.started(SystemTime::now());
    if let Err(e) = record.save(state, container) {
        tracing::warn!("cannot record the start of {container}: {e}");
    }
    // An unreachable engine or a missing spec is a quick failure too: systemd
    // restarts the unit, and the next attempt waits longer.
    let failed = |mut record: CrashRecord, e: Error| {
        record.ended(
            SystemTime::now(),
            RunEnd::Failed(e.to_string()),
            RestartPolicy::Always,
        );
        let _ = record.save(state, container);
        e
    };
    let engine = match Engine::connect().await {
        Ok(engine) => engine,
        Err(e) => return Err(failed(record, e)),
    };
    let spec = match InstanceSpec::read(state, container) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            let e = Error::Runtime(format!(
                "no instance spec for {container} in {}: run `berth apply` first",
                state.instances_dir().display()
            ));
            return Err(failed(record, e));
        }
        Err(e) => return Err(failed(record, e)),
    };
    let revision = state
        .read_current(&spec.deployment)
        .ok()
        .flatten()
        .map(|r| r.revision)
        .unwrap_or(0);
    let opts = SuperviseOptions {
        notify_systemd: true,
        output: stdio_output(),
        revision,
    };

    let run = run_instance(&engine, &spec, &opts, shutdown);
    tokio::pin!(run);
    let stable = tokio::time::sleep(backoff::BACKOFF_RESET_AFTER);
    let result = tokio::select! {
        r = &mut run => r,
        () = stable => {
            // Ran long enough to count as stable: a later crash starts the
            // schedule over (also after a power loss that skips the exit).
            record.stable();
            let _ = record.save(state, container);
            run.await
        }
    };
    let end = match &result {
        Ok(Outcome::Stopped) => RunEnd::Stopped,
        Ok(Outcome::Exited(status)) => RunEnd::Exited(status.code),
        Ok(Outcome::Unhealthy(check)) => RunEnd::Failed(format!("unhealthy: {check}")),
        Err(e) => RunEnd::Failed(e.to_string()),
    };
    record.ended(SystemTime::now(), end, spec.restart);
    if let Err(e) = record.save(state, container) {
        tracing::warn!("cannot record how {container} ended: {e}");
    }
    match result? {
        Outcome::Stopped => Ok(0),
        Outcome::Exited(status) => Ok(u8::try_from(status.code).unwrap_or(1)),
        // Non-zero so that systemd restarts the unit with a fresh container.
        Outcome::Unhealthy(_) => Ok(1),
    }
}

/// The start timeout a unit gives the supervisor once it is past its backoff
/// wait (the unit's own `TimeoutStartSec=`).
const START_TIMEOUT_SECS: u64 = crate::target::systemd::unit::TIMEOUT_START_SEC;

/// Tell systemd what the supervisor is doing (`STATUS=`, shown by
/// `systemctl status`), extending the start timeout to `extend` from now.
/// A no-op outside systemd; failures are only logged.
fn notify_status(status: &str, extend: Option<Duration>) {
    let mut states = vec![sd_notify::NotifyState::Status(status)];
    if let Some(d) = extend {
        let usec = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        states.push(sd_notify::NotifyState::ExtendTimeoutUsec(usec));
    }
    if let Err(e) = sd_notify::notify(false, &states) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

/// A future that resolves on SIGTERM or SIGINT.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::Runtime(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::Runtime(format!("cannot handle SIGINT: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
