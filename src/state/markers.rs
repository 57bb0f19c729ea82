//! Files in `<state>/instances/` that carry an operator's intent to the
//! supervisors, whatever the integration:
//!
//! - `<container>.stopped`: written by `berth stop`, removed by `berth start`
//!   and `berth restart`. While it exists the instance stays stopped: `berth up`
//!   does not (re)start it, `apply` must not start it either, and `ps` shows it
//!   as `stopped` rather than `missing`/`exited`.
//! - `<container>.restart`: written by `berth restart` for a running `berth up`,
//!   which replaces the container with a fresh one and removes the file.
//! - `<container>.restarts`: how many times `berth up` restarted the instance
//!   (a decimal number), shown by `ps`.
//!
//! A running `berth up` polls these about once a second.

use std::path::PathBuf;

use super::StateDir;
use crate::error::{Error, Result};

/// True while the operator's stop holds: `apply` and `up` never start the
/// instance, not even when its spec changed (a changed instance is
/// recreated but left stopped); `berth start` removes the marker.
pub fn is_stopped(state: &StateDir, container: &str) -> bool {
    state.stopped_marker(container).exists()
}

fn touch(path: PathBuf, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(&path, text).map_err(|e| Error::io(path, e))
}

fn remove(path: PathBuf) -> Result<()> {
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Record that the operator stopped this instance.
pub fn set_stopped(state: &StateDir, container: &str) -> Result<()> {
    touch(
        state.stopped_marker(container),
        "stopped by `berth stop`; `berth start` starts it again\n",
    )
}

/// Forget a stop: the instance may run again.
pub fn clear_stopped(state: &StateDir, container: &str) -> Result<()> {
    remove(state.stopped_marker(container))
}

/// Ask a running `berth up` for a fresh container.
pub fn request_restart(state: &StateDir, container: &str) -> Result<()> {
    touch(state.restart_request(container), "")
}

/// Consume a restart request; true if there was one.
pub fn take_restart_request(state: &StateDir, container: &str) -> bool {
    std::fs::remove_file(state.restart_request(container)).is_ok()
}

/// Restarts recorded by the foreground supervisor (0 when none).
pub fn read_restarts(state: &StateDir, container: &str) -> u64 {
    std::fs::read_to_string(state.restart_count(container))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn write_restarts(state: &StateDir, container: &str, n: u64) -> Result<()> {
    touch(state.restart_count(container), &format!("{n}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_marker_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        assert!(!is_stopped(&state, "d-web"));
        set_stopped(&state, "d-web").expect("set");
        assert!(is_stopped(&state, "d-web"));
        assert!(!is_stopped(&state, "d-web-2"));
        clear_stopped(&state, "d-web").expect("clear");
        clear_stopped(&state, "d-web").expect("clearing twice is fine");
        assert!(!is_stopped(&state, "d-web"));
        assert!(!take_restart_request(&state, "d-web"));
        request_restart(&state, "d-web").expect("request");
        assert!(take_restart_request(&state, "d-web"));
        assert!(!take_restart_request(&state, "d-web"));
        assert_eq!(read_restarts(&state, "d-web"), 0);
        write_restarts(&state, "d-web", 7).expect("write");
        assert_eq!(read_restarts(&state, "d-web"), 7);
    }
}
