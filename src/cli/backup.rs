//! `berth backup [SERVICE...|--all] -o FILE`.

use std::path::PathBuf;

use clap::Args;

use super::Context;
use crate::data::{backup, instances};
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
    #[arg(long, requires = "all")]
    pub with_spec: bool,
}

pub async fn run(ctx: &Context, args: BackupArgs) -> Result<u8> {
    if args.services.is_empty() && !args.all {
        return Err(Error::Usage(
            "name the services to back up, or --all for every one".into(),
        ));
    }
    let deployment = deployment_name(ctx)?;
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let spec = if args.with_spec {
        match state.read_current(&deployment)? {
            Some(r) => Some(Box::new(r)),
            None => {
                return Err(Error::Usage(format!(
                    "--with-spec: deployment {deployment} was never applied with state directory {}; there is no applied deployment to store",
                    state.root().display()
                )));
            }
        }
    } else {
        None
    };
    // Not while an apply (or restore, rollback) of the deployment runs.
    let _lock =
        crate::data::lifecycle::lock(&state, &deployment, &super::apply::reporter(false)).await?;
    let all = instances::discover(&engine, &state, &deployment).await?;
    if all.is_empty() {
        return Err(Error::Usage(format!(
            "deployment {deployment} has no volumes on this engine; nothing to back up"
        )));
    }
    let chosen = instances::select(all, &args.services)?;
    let opts = backup::BackupOptions {
        live: args.live,
        spec,
    };
    let to_stdout = args.output.as_os_str() == "-";
    let progress = data_progress();
    let manifest = if to_stdout {
        let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
        let (m, mut out) =
            backup::backup(&engine, &state, &deployment, &chosen, out, &opts, &progress).await?;
        std::io::Write::flush(&mut out).map_err(|e| Error::io("<stdout>", e))?;
        m
    } else {
        backup::backup_to_file(
            &engine,
            &state,
            &deployment,
            &chosen,
            &args.output,
            &opts,
            &progress,
        )
        .await?
    };
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
    Ok(0)
}

/// The deployment to work on: `--name`, else the deployment file's name
/// when the file exists, else the only deployment applied in the state
/// directory.
pub(super) fn deployment_name(ctx: &Context) -> Result<String> {
    if let Some(n) = &ctx.global.name {
        crate::names::check_name(n).map_err(|p| Error::Usage(format!("--name {n:?} {p}")))?;
        return Ok(n.clone());
    }
    if crate::input::present(&ctx.global.file) {
        return Ok(ctx.load_deployment()?.name);
    }
    let state = ctx.state_dir();
    match state.list_deployments()?.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Error::Usage(format!(
            "no deployment file {} and no deployment applied in {}; pass -f FILE or --name NAME",
            ctx.global.file.display(),
            state.root().display()
        ))),
        many => Err(Error::Usage(format!(
            "no deployment file {} and several deployments are applied in {} ({}); choose one with -f FILE or --name NAME",
            ctx.global.file.display(),
            state.root().display(),
            many.join(", ")
        ))),
    }
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
