//! Day-to-day operation of an applied deployment: which deployment a command
//! means ([`select`]), what its instances are doing ([`status`]), stopping and
//! starting them under every integration ([`control`], through the markers
//! of [`crate::state::markers`]), and their output ([`logs`]).

pub mod control;
pub mod logs;
pub mod notify;
pub mod select;
pub mod status;
pub mod update;
