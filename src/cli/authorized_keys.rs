//! `berth authorized-keys`.

use clap::Args;

use super::Context;
use crate::error::{Error, Result};
use crate::ssh::openssh;

#[derive(Debug, Args)]
pub struct AuthorizedKeysArgs {
    /// The login sshd asks about (`%u`): `service`, `service-N` or `deployment.service[-N]`.
    pub user: String,
}

pub async fn run(ctx: &Context, args: AuthorizedKeysArgs) -> Result<u8> {
    let berth = std::env::current_exe()
        .map_err(|e| Error::Runtime(format!("cannot find the berth executable: {e}")))?;
    let state_root = std::path::absolute(&ctx.global.state_dir)
        .map_err(|e| Error::io(&ctx.global.state_dir, e))?;
    for line in openssh::authorized_keys(&ctx.state_dir(), &berth, &state_root, &args.user) {
        println!("{line}");
    }
    Ok(0)
}
