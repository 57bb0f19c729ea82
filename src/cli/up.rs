//! `berth up`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct UpArgs {}

pub async fn run(_ctx: &Context, _args: UpArgs) -> Result<u8> {
    super::not_yet("up")
}
