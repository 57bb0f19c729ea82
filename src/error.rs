//! The library's one error enum. Every variant knows its exit code, so the
//! binary maps failures to `0 / 1 / 2` in one place.

use std::path::PathBuf;

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
    Spec(#[from] crate::spec::SpecErrors),

    /// Invalid command-line usage that clap could not catch (for example an
    /// unknown service name given to `berth stop`).
    #[error("{0}")]
    Usage(String),

    /// An object on the host has the name berth would give to something of
    /// this deployment, but its labels say it belongs to someone else (or
    /// berth did not make it). Found before anything was changed.
    #[error("{0}")]
    Conflict(String),

    /// The Docker engine could not be reached, is too old, or refused a request.
    #[error("docker engine: {context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// A runtime failure with a message meant for the operator.
    #[error("{0}")]
    Runtime(String),

    /// File-system trouble, with the path involved.
    #[error("{path}: {source}")]
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
