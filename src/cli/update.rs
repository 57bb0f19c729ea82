//! `berth update [SERVICE...] [--check] [--output json]`: move services to
//! the digest their image tag names now, rolling back one that is not
//! healthy (see `crate::ops::update`).

use std::time::Duration;

use clap::Args;

use super::{Context, OutputFormat};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops::update::{self, Change, NotChecked};

/// `--check` exits with this when something would change.
pub const EXIT_WOULD_CHANGE: u8 = 3;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The services to update (default: every service whose image is a tag).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Only list what would change; exit 3 when anything would, 0 when not.
    #[arg(long)]
    pub check: bool,
    /// Update the deployment NAME as last applied on this host, without
    /// reading a file (what the auto_update schedule runs).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// Only the services auto_update is on for, with the deployment's
    /// auto_update timings unless given here (what the schedule runs).
    #[arg(long, conflicts_with = "services")]
    pub auto: bool,
    /// How long each updated service may take to be running and healthy
    /// before it is rolled back (`30s`, `2m`). Default 2m.
    #[arg(long, value_name = "DURATION", value_parser = super::apply::parse_duration)]
    pub health_timeout: Option<Duration>,
    /// How long an updated service must then stay running (and healthy)
    /// before the next one is updated. Default 5s.
    #[arg(long, value_name = "DURATION", value_parser = super::apply::parse_duration)]
    pub settle: Option<Duration>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub apply_args: super::apply::ApplyArgs,
}

fn print_changes(
    changes: &[Change],
    skipped: &[Change],
    not_checked: &[NotChecked],
    output: OutputFormat,
) -> Result<()> {
    match output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&serde_json::json!({
                "changes": changes,
                "skipped_bad": skipped,
                "not_checked": not_checked,
            }))
            .map_err(|e| Error::Runtime(format!("cannot print JSON: {e}")))?;
            println!("{json}");
        }
        OutputFormat::Table => {
            for c in changes {
                println!(
                    "{}\t{}\t{} -> {}",
                    c.service,
                    c.image,
                    c.from.as_deref().unwrap_or("unknown"),
                    c.to
                );
            }
            for c in skipped {
                println!(
                    "{}\t{}\tskipped: {} was rolled back from before",
                    c.service, c.image, c.to
                );
            }
            for n in not_checked {
                eprintln!(
                    "warning: {} ({}) not checked: {}",
                    n.service, n.image, n.error
                );
            }
        }
    }
    Ok(())
}

pub async fn run(ctx: &Context, args: UpdateArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.apply_args.target);
    let state = ctx.state_dir();
    let deployment = match &args.deployment {
        Some(name) => update::applied_deployment(&state, name)?,
        None => ctx.load_deployment_warned()?,
    };
    let which = update::Which::from_args(&args.services, args.auto);
    let engine = Engine::connect().await?;
    if args.check {
        let r = update::check(&engine, &state, &deployment, &which).await?;
        print_changes(&r.changes, &r.skipped_bad, &r.not_checked, args.output)?;
        return Ok(if r.changes.is_empty() {
            0
        } else {
            EXIT_WOULD_CHANGE
        });
    }
    let mut opts = super::apply::converge_options(&args.apply_args, ctx)?;
    // An update keeps the deployment where it runs unless told otherwise.
    if args.apply_args.integration == super::plan::IntegrationArg::Auto
        && args.apply_args.target == super::plan::TargetArg::Host
    {
        opts.apply.integration =
            crate::apply::effective_integration(&state, &deployment.name, None)?;
    }
    // With --auto, the deployment's auto_update timings, unless given here.
    let base = match (&deployment.auto_update, args.auto) {
        (Some(a), true) => update::Timing::of(a),
        _ => update::Timing::of(&Default::default()),
    };
    let timing = update::Timing {
        wait: args.health_timeout.unwrap_or(base.wait),
        settle: args.settle.unwrap_or(base.settle),
    };
    let r = update::update(
        &engine,
        &state,
        &deployment,
        &which,
        &opts,
        timing,
        super::apply::reporter(args.apply_args.quiet),
    )
    .await?;
    if !args.apply_args.quiet || args.output == OutputFormat::Json {
        print_changes(&r.updated, &r.skipped_bad, &r.not_checked, args.output)?;
    }
    Ok(0)
}
