//! `berth validate`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub async fn run(_ctx: &Context, _args: ValidateArgs) -> Result<u8> {
    super::not_yet("validate")
}
