//! `berth start|stop|restart`: the operator's intent, remembered in a marker
//! file so that a stopped instance stays stopped until started (see
//! [`crate::state::markers`]), and carried out by the target that keeps the
//! deployment running ([`Target::control`]):
//!
//! - systemd: `systemctl disable --now` / `enable --now` / `restart` of the
//!   instance's unit (disabled, it stays stopped across reboots too).
//! - docker: the engine stops the container; its restart policy
//!   (`unless-stopped`) keeps a stopped container stopped across daemon
//!   restarts. `start` and `restart` replace it with a fresh container made
//!   from the instance spec (volumes carry the data over).
//! - foreground (`berth up`): the running supervisor sees the marker within
//!   about a second and stops, starts or replaces the container; this command
//!   waits for that to happen.

use super::select::Selected;
use crate::deployment::InstanceRef;
use crate::engine::Engine;
use crate::error::Result;
use crate::instance::Integration;
use crate::state::StateDir;
use crate::state::markers;
use crate::target::{self, Control, Target};

/// The host target `sel` is kept running by. Never applied here: Docker's
/// view (act on the containers that exist).
pub fn target_of(sel: &Selected, host: &target::HostOptions) -> Box<dyn Target> {
    target::for_host(sel.integration.unwrap_or(Integration::Docker), host)
}

/// Carry out `action` on `instances`; returns one line per instance for the operator.
pub async fn run(
    engine: &Engine,
    state: &StateDir,
    sel: &Selected,
    instances: &[InstanceRef],
    action: Control,
) -> Result<Vec<String>> {
    // Which instances the operator had stopped, before this command.
    let was_stopped: Vec<bool> = instances
        .iter()
        .map(|i| markers::is_stopped(state, &i.container))
        .collect();
    for inst in instances {
        match action {
            Control::Stop => markers::set_stopped(state, &inst.container)?,
            Control::Start | Control::Restart => {
                markers::clear_stopped(state, &inst.container)?;
                // The operator asked for it: no crash-loop wait on this start.
                crate::supervise::backoff::CrashRecord::remove(state, &inst.container);
            }
        }
    }
    target_of(sel, &target::HostOptions::observing())
        .control(
            engine,
            state,
            &sel.deployment,
            instances,
            action,
            &was_stopped,
        )
        .await
}
