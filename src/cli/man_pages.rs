//! `berth man-pages DIR` (hidden): write the man pages of berth and every
//! command, from the clap definitions, for packaging (`scripts/build-deb`).

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Cli, Context};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// Directory to write `berth.1`, `berth-apply.1`, ... into (created if missing).
    pub dir: PathBuf,
}

pub async fn run(_ctx: &Context, args: ManPagesArgs) -> Result<u8> {
    std::fs::create_dir_all(&args.dir).map_err(|e| Error::io(&args.dir, e))?;
    clap_mangen::generate_to(Cli::command(), &args.dir).map_err(|e| Error::io(&args.dir, e))?;
    Ok(0)
}
