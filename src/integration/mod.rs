//! Host integration: what keeps instances running. systemd units, Docker
//! restart policies, or berth's own foreground supervisor.

pub mod docker;
pub mod foreground;
pub mod ssh_gateway;
pub mod systemd;
pub mod systemd_ctl;
