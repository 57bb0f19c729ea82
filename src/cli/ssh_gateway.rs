//! `berth ssh-gateway`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct SshGatewayArgs {}

pub async fn run(_ctx: &Context, _args: SshGatewayArgs) -> Result<u8> {
    super::not_yet("ssh-gateway")
}
