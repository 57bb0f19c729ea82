//! `berth supervise CONTAINER`: the main process of a generated unit.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The instance's container name (`<deployment>-<service>[-<n>]`).
    pub container: String,
}

/// Run the command; returns the exit code.
pub async fn run(ctx: &Context, args: SuperviseArgs) -> Result<u8> {
    // The supervisor connects to the engine itself, after any crash-loop wait.
    crate::supervise::supervise_container(&ctx.state_dir(), &args.container).await
}
