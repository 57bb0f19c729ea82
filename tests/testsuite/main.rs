//! berth's integration tests: one binary (as cargo does it), one module per area.
//! They drive the built `berth` binary against the real Docker engine.

mod apply;
mod compose;
mod container_settings;
mod convert;
mod data;
mod files;
mod health;
mod hostile_archives;
mod invalid_files;
mod lifecycle;
mod ops;
mod ownership;
mod package;
mod pipes;
mod plan;
mod reliability;
mod spec_commands;
mod ssh;
mod ssh_integrations;
mod support;
mod swarm;
mod swarm_cluster;
mod swarm_data;
mod swarm_move;
mod swarm_ssh;
mod swarm_update;
mod systemd_host;
mod units;
mod up;
mod update;
mod upgrade;
