//! `berth apply`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct ApplyArgs {}

pub async fn run(_ctx: &Context, _args: ApplyArgs) -> Result<u8> {
    super::not_yet("apply")
}
