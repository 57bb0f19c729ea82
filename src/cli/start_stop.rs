//! `berth start|stop|restart SERVICE...`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

#[derive(Debug, Args)]
pub struct StartStopArgs {
    /// Services (`mail`) or instances (`mail-2`).
    #[arg(required = true)]
    pub services: Vec<String>,
}

pub async fn run(_ctx: &Context, action: Action, _args: StartStopArgs) -> Result<u8> {
    super::not_yet(match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    })
}
