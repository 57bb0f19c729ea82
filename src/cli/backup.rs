//! `berth backup [SERVICE...|--all] -o FILE`.

use std::path::PathBuf;

use clap::Args;

use super::Context;
use crate::data::backup;
use crate::engine::Engine;
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Services (`mail`) or instances (`mail-2`) whose volumes to save.
    #[arg(conflicts_with = "all")]
    pub services: Vec<String>,
    /// Every instance of the deployment that has volumes.
    #[arg(long)]
    pub all: bool,
    /// Where to write the archive (zstd-compressed tar); `-` for stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Copy while the instances run instead of stopping them meanwhile.
    #[arg(long)]
    pub live: bool,
    /// Also store the applied deployment (its current revision), so that
    /// `berth restore FILE --apply` can bring it up on another host.
    /// (`--with-spec` is the older name.)
    #[arg(long, requires = "all", alias = "with-spec")]
    pub with_deployment: bool,
    /// Where the deployment runs: this host, or a Docker Swarm (each
    /// service's volumes on its node, the service scaled to 0 meanwhile);
    /// default: where it was applied.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: BackupArgs) -> Result<u8> {
    if args.services.is_empty() && !args.all {
        return Err(Error::Usage(
            "name the services to back up, or --all for every one".into(),
        ));
    }
    let deployment = deployment_name(ctx)?;
    let engine = Engine::connect().await?;
    let site = ctx
        .site_request(args.target)
        .open(&engine, &ctx.state_dir(), &deployment)
        .await?;
    let to_stdout = args.output.as_os_str() == "-";
    let output = if to_stdout {
        backup::Output::Stream {
            name: "<stdout>".into(),
            writer: Box::new(std::io::stdout()),
        }
    } else {
        backup::Output::File(args.output.clone())
    };
    let progress = data_progress();
    let manifest = backup::backup_deployment(
        &site,
        &ctx.state_dir(),
        &deployment,
        &args.services,
        output,
        args.live,
        args.with_deployment,
        &super::apply::reporter(false),
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let volumes: Vec<_> = manifest.volumes().collect();
    let bytes: u64 = volumes.iter().map(|(_, v)| v.size).sum();
    eprintln!(
        "backed up {} volume{} of {} ({} bytes{}){}",
        volumes.len(),
        if volumes.len() == 1 { "" } else { "s" },
        deployment,
        bytes,
        if args.live { ", live" } else { "" },
        if to_stdout {
            String::new()
        } else {
            format!(" to {}", args.output.display())
        }
    );
    if manifest.holds_secrets {
        eprintln!(
            "the archive holds the deployment's secrets: keep it as private as {}",
            ctx.state_dir().root().display()
        );
    }
    Ok(0)
}

/// The deployment to work on ([`crate::ops::select::resolve_name`]): the
/// deployment file's when it exists, else `--name`, else the only
/// deployment applied in the state directory.
pub(super) fn deployment_name(ctx: &Context) -> Result<String> {
    crate::ops::select::resolve_name(
        &ctx.state_dir(),
        &ctx.global.file,
        ctx.global.name.as_deref(),
        || ctx.load_deployment(),
    )
}

/// A byte counter on stderr when it is a terminal; hidden otherwise.
pub(super) fn data_progress() -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg}  {bytes} ({binary_bytes_per_sec})")
    {
        pb.set_style(style);
    }
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}
