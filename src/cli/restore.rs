//! `berth restore FILE [--service S] [--force] [--deployment NAME]`.

use std::path::PathBuf;

use clap::Args;

use super::Context;
use crate::data::restore;
use crate::engine::Engine;
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written by `berth backup`.
    pub file: PathBuf,
    /// Only this service or instance (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Replace the contents of volumes that are not empty (the current
    /// contents are saved under <state>/snapshots first).
    #[arg(long)]
    pub force: bool,
    /// Restore into this deployment instead of the backup's (also: --name).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> Result<u8> {
    if args.file.as_os_str() == "-" {
        return Err(Error::Usage(
            "restore reads the archive twice (all checksums first, then the data): give a file, not -".into(),
        ));
    }
    let opts = restore::RestoreOptions {
        services: args.services,
        force: args.force,
        deployment: args.deployment.or_else(|| ctx.global.name.clone()),
    };
    let engine = Engine::connect().await?;
    let progress = super::backup::data_progress();
    let restored =
        restore::restore(&engine, &ctx.state_dir(), &args.file, &opts, &progress).await?;
    progress.finish_and_clear();
    for r in &restored {
        match &r.previous {
            Some(p) => eprintln!(
                "restored {} ({} bytes; previous content saved in {})",
                r.volume,
                r.bytes,
                p.display()
            ),
            None => eprintln!("restored {} ({} bytes)", r.volume, r.bytes),
        }
    }
    Ok(0)
}
