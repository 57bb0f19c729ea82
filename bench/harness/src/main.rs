//! berth's benchmark harness, driven by `bench/run`:
//!
//! ```text
//! berth-bench raw up PREFIX IMAGE N BASE_PORT   # the cold-apply floor
//! berth-bench raw down PREFIX N
//! berth-bench recover MODE --berth PATH --image IMAGE [--services K] [--samples N] --out FILE
//! berth-bench footprint --berth PATH --image IMAGE [--instances N] --out FILE
//! berth-bench swarm --berth PATH --image IMAGE [--sizes 20,100] [--runs N] --out DIR
//! ```
//!
//! Figures are written as JSON for `bench/report.py`. Everything the harness
//! creates is labelled `berth.bench` (or belongs to a uniquely named berth
//! deployment) and is removed before it exits.

mod footprint;
mod raw;
mod recover;
mod swarm;

use std::process::ExitCode;

use bollard::Docker;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| e.to_string())?
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("raw") => raw::run(&docker, rest).await,
        Some("recover") => recover::run(&docker, rest).await,
        Some("footprint") => footprint::run(&docker, rest).await,
        Some("swarm") => swarm::run(rest).await,
        _ => Err("usage: berth-bench raw|recover|footprint|swarm ... (see bench/README.md)".into()),
    }
}

/// Options of the form `--name value` after the positional arguments.
pub struct Flags<'a>(&'a [String]);

impl<'a> Flags<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Self(args)
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&'a str, String> {
        self.get(name).ok_or_else(|| format!("missing {name}"))
    }

    pub fn number(&self, name: &str, default: u32) -> Result<u32, String> {
        self.get(name)
            .map(|v| v.parse().map_err(|e| format!("{name} {v:?}: {e}")))
            .unwrap_or(Ok(default))
    }
}

/// A berth deployment in a temporary directory with its own state and unit
/// directories, so the harness never touches the host's berth state.
pub struct LocalDeployment {
    pub berth: std::path::PathBuf,
    pub dir: tempfile::TempDir,
    pub file: std::path::PathBuf,
}

impl LocalDeployment {
    pub fn new(berth: &str, toml: &str) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, toml).map_err(|e| e.to_string())?;
        Ok(Self {
            berth: berth.into(),
            dir,
            file,
        })
    }

    /// A `berth` command with this deployment's state directory.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.berth);
        c.args(args)
            .arg("-f")
            .arg(&self.file)
            .env("BERTH_STATE_DIR", self.dir.path().join("state"))
            .env("BERTH_UNIT_DIR", self.dir.path().join("units"))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Start `berth up` in the background, its output in `up.log`.
    pub fn spawn_up(&self) -> Result<std::process::Child, String> {
        let log =
            std::fs::File::create(self.dir.path().join("up.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        self.command(&["up", "--no-ssh"])
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start berth up: {e}"))
    }

    /// Stop a `berth up` started by [`Self::spawn_up`] (SIGTERM, as an init
    /// would) and remove whatever is left of the deployment.
    pub fn stop_up(&self, child: &mut std::process::Child) {
        signal(child.id(), libc::SIGTERM);
        let _ = child.wait();
        let _ = self.command(&["destroy", "--volumes"]).output();
    }
}

/// Send a signal to a process.
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Write a JSON value to a file.
pub fn write_json(path: &str, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("write {path}: {e}"))
}
