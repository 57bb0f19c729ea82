//! `berth authorized-keys`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct AuthorizedKeysArgs {}

pub async fn run(_ctx: &Context, _args: AuthorizedKeysArgs) -> Result<u8> {
    super::not_yet("authorized-keys")
}
