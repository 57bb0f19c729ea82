//! `berth exec`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct ExecArgs {}

pub async fn run(_ctx: &Context, _args: ExecArgs) -> Result<u8> {
    super::not_yet("exec")
}
