//! `berth apply`: carry out a [`Plan`](crate::plan::Plan).

pub mod instance;

pub use instance::{InstanceSpec, Integration, MountSource, MountSpec};
