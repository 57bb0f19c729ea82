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

use crate::error::{Error, Result};
use crate::state::StateDir;

/// `<state>/instances/<container>.stopped` (the same file `apply` honours).
pub fn stopped_marker(state: &StateDir, container: &str) -> PathBuf {
    crate::apply::instance::stopped_marker(state, container)
}

/// `<state>/instances/<container>.restart`
pub fn restart_request(state: &StateDir, container: &str) -> PathBuf {
    state.instances_dir().join(format!("{container}.restart"))
}

/// `<state>/instances/<container>.restarts`
pub fn restarts_file(state: &StateDir, container: &str) -> PathBuf {
    state.instances_dir().join(format!("{container}.restarts"))
}

pub fn is_stopped(state: &StateDir, container: &str) -> bool {
    stopped_marker(state, container).exists()
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
        stopped_marker(state, container),
        "stopped by `berth stop`; `berth start` starts it again\n",
    )
}

/// Forget a stop: the instance may run again.
pub fn clear_stopped(state: &StateDir, container: &str) -> Result<()> {
    remove(stopped_marker(state, container))
}

/// Ask a running `berth up` for a fresh container.
pub fn request_restart(state: &StateDir, container: &str) -> Result<()> {
    touch(restart_request(state, container), "")
}

/// Consume a restart request; true if there was one.
pub fn take_restart_request(state: &StateDir, container: &str) -> bool {
    std::fs::remove_file(restart_request(state, container)).is_ok()
}

/// Restarts recorded by the foreground supervisor (0 when none).
pub fn read_restarts(state: &StateDir, container: &str) -> u64 {
    std::fs::read_to_string(restarts_file(state, container))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn write_restarts(state: &StateDir, container: &str, n: u64) -> Result<()> {
    touch(restarts_file(state, container), &format!("{n}\n"))
}

/// Remove the foreground supervisor's files of an instance that is gone
/// (its restart count and any pending restart request).
pub fn forget(state: &StateDir, container: &str) {
    let _ = std::fs::remove_file(restarts_file(state, container));
    let _ = std::fs::remove_file(restart_request(state, container));
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
