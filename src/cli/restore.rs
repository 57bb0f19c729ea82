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
    /// Bring up the deployment stored in the backup (`backup --with-deployment`)
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
    let quiet = args.apply_args.quiet;
    if !args.apply {
        let a = &args.apply_args;
        let applying = [
            (
                a.integration != super::plan::IntegrationArg::Auto,
                "--integration",
            ),
            (a.no_systemctl, "--no-systemctl"),
            (a.wait, "--wait"),
            (a.ssh_listen.is_some(), "--ssh-listen"),
        ];
        if let Some((_, flag)) = applying.iter().find(|(given, _)| *given) {
            return Err(Error::Usage(format!(
                "{flag} is about applying the deployment: it needs --apply"
            )));
        }
    }
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let progress = super::backup::data_progress();
    let rename = args.deployment.or_else(|| ctx.global.name.clone());
    if args.apply {
        let opts = super::apply::converge_options(&args.apply_args, ctx)?;
        let stored = crate::data::lifecycle::read_stored_backup(
            &args.file,
            rename.as_deref(),
            args.allow_special_files,
        )
        .await?;
        super::print_warnings(&stored.warnings);
        if stored.holds_secrets() && !quiet {
            eprintln!(
                "the backup holds secrets: they are stored root-only in {} and delivered into the containers",
                state.root().display()
            );
        }
        let (restored, outcome) = crate::data::lifecycle::restore_and_apply(
            &engine,
            &state,
            stored,
            args.force,
            &opts,
            super::apply::reporter(quiet),
            &progress,
        )
        .await?;
        progress.finish_and_clear();
        let applied = &outcome.applied;
        let n = applied.plan.instances.len();
        if !quiet {
            println!(
                "restored {} volume{} and applied revision {} ({n} instance{})",
                restored.len(),
                if restored.len() == 1 { "" } else { "s" },
                applied.revision,
                if n == 1 { "" } else { "s" },
            );
        }
        return super::apply::finish(outcome, quiet);
    }
    let opts = restore::RestoreOptions {
        services: args.services,
        force: args.force,
        deployment: rename,
        allow_special_files: args.allow_special_files,
    };
    let restored = restore::restore(
        &engine,
        &ctx.site_request(args.apply_args.target),
        &state,
        &args.file,
        &opts,
        args.apply_args.lock_timeout,
        &super::apply::reporter(false),
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    for r in restored.iter().filter(|_| !quiet) {
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
