//! `berth rollback [--to REVISION] [--with-data]`.

use clap::Args;

use super::Context;
use crate::data::lifecycle;
use crate::engine::Engine;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision to return to (see `berth history`); default: the one
    /// before the current.
    #[arg(long, value_name = "REVISION")]
    pub to: Option<u64>,
    /// Also put back the volumes' snapshot taken when that revision was
    /// left (the current contents are saved as a pre-restore snapshot).
    #[arg(long)]
    pub with_data: bool,
    #[command(flatten)]
    pub apply_args: super::apply::ApplyArgs,
}

pub async fn run(ctx: &Context, args: RollbackArgs) -> Result<u8> {
    let deployment = super::backup::deployment_name(ctx)?;
    let engine = Engine::connect().await?;
    let opts = super::apply::converge_options(&args.apply_args, ctx)?;
    let quiet = args.apply_args.quiet;
    let r = lifecycle::rollback(
        &engine,
        &ctx.state_dir(),
        &deployment,
        args.to,
        args.with_data,
        &opts,
        super::apply::reporter(quiet),
    )
    .await?;
    if !r.unpinned.is_empty() {
        eprintln!(
            "warning: the image IDs of revision {} are gone for {}; they run their image reference as it resolves now",
            r.from_revision,
            r.unpinned.join(", ")
        );
    }
    if args.with_data && !r.without_snapshot.is_empty() {
        eprintln!(
            "warning: no snapshot of revision {} for {}; their data was left as it is",
            r.from_revision,
            r.without_snapshot.join(", ")
        );
    }
    for v in r.restored.iter().filter(|_| !quiet) {
        eprintln!("restored {} ({} bytes)", v.volume, v.bytes);
    }
    if !quiet {
        println!(
            "{deployment}: rolled back to revision {} as revision {}{}",
            r.from_revision,
            r.outcome.applied.revision,
            if args.with_data {
                format!(" with data ({} volumes restored)", r.restored.len())
            } else {
                String::new()
            }
        );
    }
    super::apply::finish(r.outcome, quiet)
}
