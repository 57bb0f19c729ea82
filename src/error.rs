//! The library's one error enum. Every variant knows its exit code, so the
//! binary maps failures to `0 / 1 / 2` in one place. Its messages often hold
//! input (names, paths, what the engine or an archive said), so every one is
//! shown through [`crate::echo`]: escaped and capped, whoever prints it.

use std::path::PathBuf;

use crate::echo;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a runtime failure (engine, I/O, systemd, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid input or usage. Nothing on the host was touched.
pub const EXIT_INVALID: u8 = 2;

/// Everything that can go wrong in berth.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deployment file (or its `.env`, `env_file`s, `--set` values) is invalid.
    /// Carries every problem found, each located in its file.
    #[error(transparent)]
    Spec(#[from] crate::deployment::SpecErrors),

    /// Invalid command-line usage that clap could not catch (for example an
    /// unknown service name given to `berth stop`).
    #[error("{}", echo::lines(.0))]
    Usage(String),

    /// An object on the host has the name berth would give to something of
    /// this deployment, but its labels say it belongs to someone else (or
    /// berth did not make it). Found before anything was changed.
    #[error("{0}")]
    Conflict(String),

    /// The Docker engine could not be reached, is too old, or refused a request.
    #[error("docker engine: {}: {}", echo::lines(context), echo::lines(&source.to_string()))]
    Engine {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// Another berth command holds the deployment's lock (an apply, a
    /// restore, `berth up`) and did not let go within the time allowed.
    #[error(
        "another berth apply of {deployment} still holds {} after {}; try again later",
        echo::path(path),
        humantime::format_duration(*waited)
    )]
    Locked {
        deployment: String,
        path: PathBuf,
        waited: std::time::Duration,
    },

    /// Some instances could not be created, started or removed; the others
    /// converged. One line per failed (or skipped) instance.
    #[error("{}", echo::lines(&failures.join("\n")))]
    Instances { failures: Vec<String> },

    /// `--wait`: the apply succeeded, but these instances were not running
    /// and healthy in time (one line each, with their last check output).
    #[error(
        "{} of {total} instances of {deployment} not running and healthy after {}:\n{}",
        not_ready.len(),
        humantime::format_duration(*waited),
        echo::lines(&not_ready.iter().map(|n| format!("  {n}")).collect::<Vec<_>>().join("\n"))
    )]
    NotReady {
        deployment: String,
        total: usize,
        waited: std::time::Duration,
        not_ready: Vec<String>,
    },

    /// A runtime failure with a message meant for the operator.
    #[error("{}", echo::lines(.0))]
    Runtime(String),

    /// An input file that is no file berth reads (a device, a FIFO, too large).
    #[error("{}", echo::lines(&.0.to_string()))]
    Input(#[from] crate::input::InputError),

    /// File-system trouble, with the path involved.
    #[error("{}: {}", echo::path(path), echo::lines(&source.to_string()))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::Usage(_) | Error::Conflict(_) => EXIT_INVALID,
            Error::Input(e) if e.is_refusal() => EXIT_INVALID,
            _ => EXIT_FAILURE,
        }
    }

    /// Wrap an engine error with what berth was trying to do.
    pub fn engine(context: impl Into<String>, source: bollard::errors::Error) -> Self {
        Error::Engine {
            context: context.into(),
            source,
        }
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_and_capped_whoever_prints_them() {
        let huge = "v".repeat(100_000);
        let e = Error::Runtime(format!("bad `\x1b[2J{huge}`\nsecond\x07 line"));
        let text = e.to_string();
        assert_eq!(
            text,
            format!(
                "bad `\\x1b[2J{}...`\nsecond\\x07 line",
                "v".repeat(crate::echo::MAX_QUOTED - 10)
            )
        );
        let e = Error::io("a\rb", std::io::Error::other("x\u{202e}y"));
        assert_eq!(e.to_string(), "a\\rb: x\\u{202e}y");
    }

    #[test]
    fn refused_input_files_exit_2_and_failed_reads_1() {
        let refused = crate::input::read_capped(std::path::Path::new("/dev/null"), 1).unwrap_err();
        assert_eq!(Error::from(refused).exit_code(), EXIT_INVALID);
        let missing =
            crate::input::read_capped(std::path::Path::new("/nonexistent/x"), 1).unwrap_err();
        assert_eq!(Error::from(missing).exit_code(), EXIT_FAILURE);
    }
}
