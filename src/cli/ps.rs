//! `berth ps`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct PsArgs {}

pub async fn run(_ctx: &Context, _args: PsArgs) -> Result<u8> {
    super::not_yet("ps")
}
