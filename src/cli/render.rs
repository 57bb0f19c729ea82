//! `berth render`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct RenderArgs {}

pub async fn run(_ctx: &Context, _args: RenderArgs) -> Result<u8> {
    super::not_yet("render")
}
