//! Crash-loop backoff shared by the supervisors.
//!
//! [`Backoff`] is the schedule: a container that had been running for a
//! while ([`BACKOFF_RESET_AFTER`]) is replaced at once; one that keeps
//! failing quickly waits 1 s, 2 s, 4 s, ... capped at 30 s. `berth up` keeps one in memory per
//! instance. Under systemd every start is a fresh `berth supervise` process,
//! so the schedule's position lives in the state directory instead: a
//! [`CrashRecord`] in `<state>/instances/<container>.crashes` counts the
//! consecutive quick failures and remembers the last start and exit status
//! (which `berth ps` shows).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::deployment::RestartPolicy;
use crate::error::{Error, Result};
use crate::state::StateDir;

/// First wait before restarting a container that exited.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The wait never grows beyond this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long is considered healthy: when it ends, the
/// next one starts at once and the schedule starts over. Ten seconds, as
/// Docker's own restart policy counts it.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Exponential backoff for crash loops: no wait after a stable run (one of
/// at least [`BACKOFF_RESET_AFTER`]), then 1s, 2s, 4s, ... capped at 30s for
/// runs that keep ending quickly.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// The wait before the next start, after a run that lasted `ran`.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= BACKOFF_RESET_AFTER {
            // A one-off crash of a stable service: replace it now.
            self.next = BACKOFF_MIN;
            return Duration::ZERO;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    /// Forget past crashes (the operator started the instance again).
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The most container starts a crash-looping instance (one whose
    /// container exits at once) can make within `window`: the first start,
    /// then one after each wait of the schedule that still fits.
    pub fn max_starts_within(window: Duration) -> u32 {
        let mut b = Backoff::new();
        let mut elapsed = Duration::ZERO;
        let mut starts = 1;
        loop {
            elapsed += b.after_run(Duration::ZERO);
            if elapsed > window {
                return starts;
            }
            starts += 1;
        }
    }
}

/// How one run of an instance ended, as far as the crash count cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The container exited by itself with this status.
    Exited(i64),
    /// The supervisor could not create or run the container.
    Failed(String),
    /// The supervisor was told to stop (operator, shutdown, reboot).
    Stopped,
}

/// Consecutive quick failures of one instance, kept across supervisor
/// processes in `<state>/instances/<container>.crashes` (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashRecord {
    /// Runs in a row that failed within [`BACKOFF_RESET_AFTER`] of their start.
    pub failures: u32,
    /// When the last run started (seconds since the epoch; 0: never).
    pub last_start: u64,
    /// Exit status of the last run that exited by itself.
    pub last_exit: Option<i64>,
    /// Why the last run could not start its container, if it could not.
    pub last_error: Option<String>,
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CrashRecord {
    /// The record of an instance; a missing or unreadable file is an empty
    /// record (the worst that costs is one backoff step too few).
    pub fn load(state: &StateDir, container: &str) -> Self {
        let path = state.crash_record(container);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Write the record (atomically).
    pub fn save(&self, state: &StateDir, container: &str) -> Result<()> {
        let path = state.crash_record(container);
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Runtime(format!("cannot serialise crash record: {e}")))?;
        crate::state::write_private(&path, &json)
    }

    /// Forget the record (the operator started the instance again).
    pub fn remove(state: &StateDir, container: &str) {
        let _ = std::fs::remove_file(state.crash_record(container));
    }

    /// How long to wait before the next start: nothing after a clean
    /// record, then [`Backoff`]'s schedule by the number of failures.
    pub fn wait(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let mut b = Backoff::new();
        let mut wait = Duration::ZERO;
        // The schedule reaches its cap long before 64 steps.
        for _ in 0..self.failures.min(64) {
            wait = b.after_run(Duration::ZERO);
        }
        wait
    }

    /// A run starts now.
    pub fn started(&mut self, now: SystemTime) {
        self.last_start = epoch_secs(now);
    }

    /// The container ran long enough to count as stable: forget past failures.
    pub fn stable(&mut self) {
        self.failures = 0;
    }

    /// A run ended at `now`: count it as a quick failure, or clear the count
    /// after a stable run, a clean exit under `on-failure`, or a stop.
    pub fn ended(&mut self, now: SystemTime, end: RunEnd, policy: RestartPolicy) {
        let ran = Duration::from_secs(epoch_secs(now).saturating_sub(self.last_start));
        let quick = ran < BACKOFF_RESET_AFTER;
        match end {
            RunEnd::Stopped => self.failures = 0,
            RunEnd::Exited(code) => {
                self.last_exit = Some(code);
                self.last_error = None;
                let clean = code == 0 && policy == RestartPolicy::OnFailure;
                if quick && !clean {
                    self.failures = self.failures.saturating_add(1);
                } else {
                    self.failures = 0;
                }
            }
            RunEnd::Failed(e) => {
                self.last_error = Some(e);
                if quick {
                    self.failures = self.failures.saturating_add(1);
                } else {
                    self.failures = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(100);
        let waits: Vec<u64> = (0..8).map(|_| b.after_run(quick).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.after_run(Duration::from_secs(9)).as_secs(), 30);
        assert_eq!(b.after_run(Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(b.after_run(quick).as_secs(), 1);
        assert_eq!(b.after_run(quick).as_secs(), 2);
        b.reset();
        assert_eq!(b.after_run(quick).as_secs(), 1);
    }

    #[test]
    fn starts_within_window_follow_the_schedule() {
        // Starts at 0, 1, 3, 7, 15, 31, 61 seconds (waits only).
        assert_eq!(Backoff::max_starts_within(Duration::from_secs(0)), 1);
        assert_eq!(Backoff::max_starts_within(Duration::from_secs(1)), 2);
        assert_eq!(Backoff::max_starts_within(Duration::from_secs(10)), 4);
        assert_eq!(Backoff::max_starts_within(Duration::from_secs(20)), 5);
        assert_eq!(Backoff::max_starts_within(Duration::from_secs(61)), 7);
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn crash_record_counts_quick_failures_and_resets() {
        let mut r = CrashRecord::default();
        assert_eq!(r.wait(), Duration::ZERO, "first start waits for nothing");
        let mut waits = Vec::new();
        let mut t = 1_000;
        for _ in 0..7 {
            r.started(at(t));
            r.ended(at(t + 2), RunEnd::Exited(3), RestartPolicy::Always);
            waits.push(r.wait().as_secs());
            t += 100;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(r.failures, 7);
        assert_eq!(r.last_exit, Some(3));
        // Errors before the container runs count too, and are remembered.
        r.started(at(t));
        r.ended(
            at(t),
            RunEnd::Failed("no image".into()),
            RestartPolicy::Always,
        );
        assert_eq!(r.failures, 8);
        assert_eq!(r.last_error.as_deref(), Some("no image"));
        // A run of ten seconds or more is stable: the count starts over.
        r.started(at(t));
        r.ended(at(t + 10), RunEnd::Exited(3), RestartPolicy::Always);
        assert_eq!((r.failures, r.wait()), (0, Duration::ZERO));
        assert_eq!(r.last_error, None);
        // A quick clean exit is a failure under `always` (it loops) but not
        // under `on-failure` (systemd does not restart it).
        r.started(at(t));
        r.ended(at(t + 1), RunEnd::Exited(0), RestartPolicy::Always);
        assert_eq!(r.failures, 1);
        r.started(at(t));
        r.ended(at(t + 1), RunEnd::Exited(0), RestartPolicy::OnFailure);
        assert_eq!(r.failures, 0);
        // A stop clears it; so does a stable stretch while running.
        r.failures = 4;
        r.ended(at(t + 1), RunEnd::Stopped, RestartPolicy::Always);
        assert_eq!(r.failures, 0);
        r.failures = 4;
        r.stable();
        assert_eq!(r.wait(), Duration::ZERO);
        // A clock that went backwards counts as a quick run, not a panic.
        r.started(at(t + 500));
        r.ended(at(t), RunEnd::Exited(1), RestartPolicy::Always);
        assert_eq!(r.failures, 1);
    }

    #[test]
    fn crash_record_round_trips_through_the_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        assert_eq!(CrashRecord::load(&state, "ex-web"), CrashRecord::default());
        let r = CrashRecord {
            failures: 3,
            last_start: 42,
            last_exit: Some(3),
            last_error: None,
        };
        r.save(&state, "ex-web").expect("save");
        assert_eq!(CrashRecord::load(&state, "ex-web"), r);
        std::fs::write(state.crash_record("ex-web"), "garbage").expect("write");
        assert_eq!(CrashRecord::load(&state, "ex-web"), CrashRecord::default());
        CrashRecord::remove(&state, "ex-web");
        assert!(!state.crash_record("ex-web").exists());
    }
}
