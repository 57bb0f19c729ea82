//! `berth supervise`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct SuperviseArgs {}

pub async fn run(_ctx: &Context, _args: SuperviseArgs) -> Result<u8> {
    super::not_yet("supervise")
}
