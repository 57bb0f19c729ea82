//! berth deploys Docker containers as always-running services on a Linux host,
//! from one declarative deployment file.
//!
//! Data flows one way: the deployment file is parsed into a [`deployment::Deployment`]
//! (typed, interpolated, validated); the [`engine`] reads what runs on the host;
//! [`plan`] diffs the two; [`apply`] carries the plan out through an
//! [`integration`] (systemd units, Docker restart policies, or berth's own
//! foreground supervisor), and [`supervise`] runs the life of one instance.
//!
//! The binary in `src/main.rs` and the command files in [`cli`] are thin:
//! arguments and printing only.

pub mod apply;
pub mod cli;
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
