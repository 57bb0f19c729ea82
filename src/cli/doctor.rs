//! `berth doctor`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct DoctorArgs {}

pub async fn run(_ctx: &Context, _args: DoctorArgs) -> Result<u8> {
    super::not_yet("doctor")
}
