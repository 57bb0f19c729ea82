//! `berth schema`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub async fn run(_ctx: &Context, _args: SchemaArgs) -> Result<u8> {
    super::not_yet("schema")
}
