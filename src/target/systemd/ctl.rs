//! Controlling systemd for the units berth writes: writing and removing unit
//! files, `daemon-reload`, enable / disable, start / restart / stop.
//! The unit text itself comes from [`super::unit::render_unit`].
//!
//! `systemctl` runs as a subprocess (it is systemd's own interface; berth
//! never shells out to the docker CLI).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::names;

/// True when this host runs systemd as PID 1 (the check systemd's own
/// `sd_booted()` makes).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Path of an instance's unit file.
pub fn unit_path(unit_dir: &Path, container: &str) -> PathBuf {
    unit_dir.join(names::unit_name(container))
}

/// Write a unit file (mode 0644, atomically) if its content differs.
/// Returns true when the file was written.
pub fn write_unit(unit_dir: &Path, container: &str, text: &str) -> Result<bool> {
    write_unit_file(unit_dir, &names::unit_name(container), text)
}

/// [`write_unit`] for any unit file name (an instance's, or another unit
/// berth writes, such as the scheduled update's timer).
pub fn write_unit_file(unit_dir: &Path, name: &str, text: &str) -> Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let path = unit_dir.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    std::fs::create_dir_all(unit_dir).map_err(|e| Error::io(unit_dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(unit_dir).map_err(|e| Error::io(unit_dir, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(true)
}

/// Remove a unit file; a missing one is not an error.
pub fn remove_unit(unit_dir: &Path, container: &str) -> Result<()> {
    let path = unit_path(unit_dir, container);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Runs `systemctl`, or only records what it would run when disabled
/// (`--no-systemctl`, or writing units for another host).
#[derive(Debug, Clone)]
pub struct Systemctl {
    enabled: bool,
}

impl Systemctl {
    /// A controller that runs `systemctl` when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// Whether commands are actually run.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Run `systemctl <args> <units...>`; no-op for an empty unit list
    /// (except `daemon-reload`, which takes none).
    pub async fn run(&self, args: &[&str], units: &[String]) -> Result<()> {
        if !self.enabled || (units.is_empty() && args != ["daemon-reload"]) {
            return Ok(());
        }
        let out = tokio::process::Command::new("systemctl")
            .args(args)
            .args(units)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                Error::Runtime(format!(
                    "cannot run systemctl {}: {e} (is systemd installed?)",
                    args.join(" ")
                ))
            })?;
        if !out.status.success() {
            return Err(Error::Runtime(format!(
                "systemctl {} {} failed: {}",
                args.join(" "),
                units.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `systemctl daemon-reload`.
    pub async fn daemon_reload(&self) -> Result<()> {
        self.run(&["daemon-reload"], &[]).await
    }

    /// `systemctl enable` (without starting).
    pub async fn enable(&self, units: &[String]) -> Result<()> {
        self.run(&["enable", "--quiet"], units).await
    }

    /// `systemctl disable`.
    pub async fn disable(&self, units: &[String]) -> Result<()> {
        self.run(&["disable", "--quiet"], units).await
    }

    /// `systemctl restart`.
    pub async fn restart(&self, units: &[String]) -> Result<()> {
        self.run(&["restart"], units).await
    }

    /// `systemctl start`.
    pub async fn start(&self, units: &[String]) -> Result<()> {
        self.run(&["start"], units).await
    }

    /// `systemctl stop`.
    pub async fn stop(&self, units: &[String]) -> Result<()> {
        self.run(&["stop"], units).await
    }
}

/// What `systemctl show` says about an instance's unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// `ActiveState`: `active`, `activating`, `failed`, `inactive`, ...
    pub active_state: String,
    /// `SubState`: `running`, `start`, `auto-restart`, `failed`, `dead`, ...
    pub sub_state: String,
    /// `Result`: `success`, `exit-code`, `start-limit-hit`, ...
    pub result: String,
    /// `NRestarts`: automatic restarts since the unit was last started by hand.
    pub n_restarts: u64,
}

impl UnitStatus {
    /// Parse `systemctl show -p ActiveState,SubState,Result,NRestarts` output.
    pub fn parse(text: &str) -> Self {
        let mut u = Self::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("ActiveState", v)) => u.active_state = v.to_string(),
                Some(("SubState", v)) => u.sub_state = v.to_string(),
                Some(("Result", v)) => u.result = v.to_string(),
                Some(("NRestarts", v)) => u.n_restarts = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        u
    }
}

/// A unit's state, from `systemctl show` (None when systemctl fails).
pub fn unit_status(unit: &str) -> Option<UnitStatus> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", "ActiveState,SubState,Result,NRestarts", unit])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(UnitStatus::parse(&String::from_utf8_lossy(&out.stdout)))
}
