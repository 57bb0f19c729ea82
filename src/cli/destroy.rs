//! `berth destroy`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct DestroyArgs {}

pub async fn run(_ctx: &Context, _args: DestroyArgs) -> Result<u8> {
    super::not_yet("destroy")
}
