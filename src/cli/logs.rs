//! `berth logs`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct LogsArgs {}

pub async fn run(_ctx: &Context, _args: LogsArgs) -> Result<u8> {
    super::not_yet("logs")
}
