//! The built-in SSH gateway and the OpenSSH `AuthorizedKeysCommand` mode.
//!
//! - [`access`]: login names to containers, and the keys granted to them,
//!   read from the applied revisions in the state directory.
//! - [`gateway`]: `berth ssh-gateway`, an SSH server on russh whose sessions
//!   are engine execs in one container.
//! - [`openssh`]: `berth authorized-keys` for hosts that keep sshd, and the
//!   host-user scheme that goes with it (documented there).
//! - [`place`]: the engine and container (on a swarm: node and task) a
//!   login's session runs in, for the gateway and `berth exec` alike.
//! - [`local`]: attach this process's terminal or stdio to an exec (`berth
//!   exec`, and `berth exec --ssh`, sshd's forced command).
//! - [`admission`]: the gateway's bounds on connections that have not
//!   logged in (per source address and overall, login grace time).
//! - [`killable`]: a connection the gateway can close from outside its
//!   session task.
//! - [`hostkey`]: the gateway's host key.
//! - [`quickack`]: the gateway's connections acknowledge received data at
//!   once (no 40 ms stalls behind OpenSSH's Nagle).

pub mod access;
pub mod admission;
pub mod gateway;
pub mod hostkey;
pub mod killable;
pub mod local;
pub mod openssh;
pub mod place;
pub mod quickack;
