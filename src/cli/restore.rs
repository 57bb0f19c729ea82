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
    /// Bring up the deployment stored in the backup (`backup --with-spec`)
    /// on this host, its volumes restored before any instance starts;
    /// `--name NEW` renames it.
    #[arg(long = "apply", conflicts_with = "services")]
    pub apply: bool,
    /// Recreate device nodes, FIFOs, setuid/setgid files and files with
    /// capabilities. Only for archives whose manifest records that berth
    /// backed them up from a volume that held them; refused otherwise.
    #[arg(long)]
    pub allow_special_files: bool,
    #[command(flatten)]
    pub apply_args: super::apply::ApplyArgs,
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> Result<u8> {
    if args.file.as_os_str() == "-" {
        return Err(Error::Usage(
            "restore reads the archive twice (all checksums first, then the data): give a file, not -".into(),
        ));
    }
    if args.apply {
        let engine = Engine::connect().await?;
        let opts = super::apply::apply_options(&args.apply_args, ctx);
        let progress = super::backup::data_progress();
        let rename = args.deployment.or_else(|| ctx.global.name.clone());
        let (restored, applied) = crate::data::lifecycle::restore_and_apply(
            &engine,
            &ctx.state_dir(),
            &args.file,
            rename.as_deref(),
            args.force,
            args.allow_special_files,
            &opts,
            super::apply::reporter(args.apply_args.quiet),
            &progress,
        )
        .await?;
        progress.finish_and_clear();
        println!(
            "restored {} volume{} and applied revision {} ({} instance{})",
            restored.len(),
            if restored.len() == 1 { "" } else { "s" },
            applied.revision,
            applied.plan.instances.len(),
            if applied.plan.instances.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        return Ok(0);
    }
    let opts = restore::RestoreOptions {
        services: args.services,
        force: args.force,
        deployment: args.deployment.or_else(|| ctx.global.name.clone()),
        allow_special_files: args.allow_special_files,
    };
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    // Not while an apply (or backup, rollback) of the target deployment runs.
    let progress = super::backup::data_progress();
    progress.set_message(format!("verifying {}", args.file.display()));
    let manifest = restore::verify(&args.file, args.allow_special_files).await?;
    let target = opts
        .deployment
        .clone()
        .unwrap_or_else(|| manifest.deployment.clone());
    crate::names::check_name(&target)
        .map_err(|p| Error::Usage(format!("deployment name {target:?} {p}")))?;
    let _lock =
        crate::data::lifecycle::lock(&state, &target, &super::apply::reporter(false)).await?;
    let restored =
        restore::restore_verified(&engine, &state, &args.file, manifest, &opts, &progress).await?;
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
