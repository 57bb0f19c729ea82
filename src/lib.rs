//! berth deploys Docker containers as always-running services on a Linux host,
//! from one declarative deployment file.
//!
//! Data flows one way: the deployment file is parsed into a
//! [`deployment::Deployment`] (typed, interpolated, validated); [`instance`]
//! resolves it into the containers to run; [`plan`] diffs those against what
//! runs (a pure function); [`apply`] carries the plan out on a
//! [`target::Target`] (systemd units, Docker restart policies, or berth's
//! own foreground supervisor); the [`engine`] is the only code that talks
//! to Docker, [`state`] owns the state directory, and [`supervise`] runs the
//! life of one instance.
//!
//! The binary in `src/main.rs` and the command files in [`cli`] are thin:
//! arguments and printing only.

pub mod apply;
pub mod cli;
pub mod convert;
pub mod data;
pub mod deployment;
pub mod doctor;
pub mod echo;
pub mod engine;
pub mod error;
pub mod input;
pub mod instance;
pub mod names;
pub mod ops;
pub mod plan;
pub mod ssh;
pub mod state;
pub mod stdout;
pub mod supervise;
pub mod target;

pub use error::{Error, Result};
