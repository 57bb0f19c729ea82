//! `berth plan`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct PlanArgs {}

pub async fn run(_ctx: &Context, _args: PlanArgs) -> Result<u8> {
    super::not_yet("plan")
}
