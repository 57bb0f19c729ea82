//! `berth snapshots`: the volume snapshots kept in the state directory.

use clap::Args;

use super::{Context, OutputFormat};
use crate::data::snapshot;
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Every deployment's snapshots, not only this deployment's.
    #[arg(long)]
    pub all: bool,
    /// Table for people, JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(ctx: &Context, args: SnapshotsArgs) -> Result<u8> {
    let deployment = if args.all {
        None
    } else {
        Some(super::backup::deployment_name(ctx)?)
    };
    let list = snapshot::list(&ctx.state_dir(), deployment.as_deref())?;
    match args.output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&list)
                .map_err(|e| Error::Runtime(format!("cannot print JSON: {e}")))?;
            println!("{json}");
        }
        OutputFormat::Table => {
            println!(
                "{:<32} {:>8} {:<12} {:<17} {:>12}  PATH",
                "INSTANCE", "REVISION", "KIND", "TAKEN", "BYTES"
            );
            for s in &list {
                println!(
                    "{:<32} {:>8} {:<12} {:<17} {:>12}  {}",
                    s.container,
                    s.revision
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.kind,
                    s.taken,
                    s.size,
                    s.path.display()
                );
            }
        }
    }
    Ok(0)
}
