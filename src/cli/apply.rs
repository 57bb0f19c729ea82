//! `berth apply`: make the host match the deployment file.

use std::time::Duration;

use clap::Args;

use super::Context;
use super::plan::{IntegrationArg, TargetArg, berth_path};
use crate::apply::converge::{self, ConvergeOptions, Outcome};
use crate::apply::{self, ApplyOptions};
use crate::engine::{Engine, PullProgress};
use crate::error::Result;
use crate::plan::Action;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Where the deployment runs: this host, or a Docker Swarm through its
    /// manager's engine (`DOCKER_HOST`); a swarm apply always waits until
    /// every changed service has converged.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = TargetArg::Host)]
    pub target: TargetArg,
    /// How instances are kept running: systemd units, Docker restart
    /// policies, or auto (systemd when PID 1 is systemd).
    #[arg(long, value_enum, default_value_t = IntegrationArg::Auto)]
    pub integration: IntegrationArg,
    /// With systemd: write units and instance specs but run no systemctl
    /// command (prints the commands to run instead).
    #[arg(long)]
    pub no_systemctl: bool,
    /// Fail if another apply of this deployment still runs after this long
    /// (`30s`, `2m`); default: wait.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// Return only once every instance runs and, those with a health check,
    /// is healthy; fail (exit 1) naming the ones that are not, with their
    /// last check output.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (`30s`, `2m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m", requires = "wait")]
    pub wait_timeout: Duration,
    /// Print only errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// With systemd, where the SSH gateway unit (installed while any
    /// deployment on this host grants `ssh` keys) listens. Default: the
    /// address of the installed unit, else 0.0.0.0:2222.
    #[arg(long, value_name = "ADDR:PORT")]
    pub ssh_listen: Option<String>,
}

/// The options the flags ask for.
pub(crate) fn converge_options(args: &ApplyArgs, ctx: &Context) -> Result<ConvergeOptions> {
    Ok(ConvergeOptions {
        apply: ApplyOptions {
            integration: args.target.integration(args.integration)?,
            unit_dir: ctx.global.unit_dir.clone(),
            systemctl: !args.no_systemctl,
            berth_path: berth_path(),
            lock_timeout: args.lock_timeout,
            progress: if args.quiet {
                PullProgress::Quiet
            } else {
                PullProgress::Auto
            },
            cause: None,
            nodes: ctx.global.nodes.clone(),
        },
        ssh_listen: args.ssh_listen.clone(),
        // A swarm apply waits for convergence itself.
        wait: (args.wait && args.target == TargetArg::Host).then_some(args.wait_timeout),
    })
}

/// Progress lines on stderr unless `quiet`.
pub(crate) fn reporter(quiet: bool) -> apply::Reporter {
    std::sync::Arc::new(move |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    })
}

pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1h)"))
}

/// The systemctl commands `--no-systemctl` left to the operator, then the
/// outcome of `--wait` (printed after the command's summary line).
pub(crate) fn finish(outcome: Outcome, quiet: bool) -> Result<u8> {
    if !quiet && !outcome.pending_systemctl.is_empty() {
        println!("systemctl was not run (--no-systemctl); to activate the units run:");
        for c in &outcome.pending_systemctl {
            println!("  {c}");
        }
    }
    if let Some(waited) = outcome.waited {
        waited?;
        if !quiet {
            println!(
                "{}: every instance is running and healthy",
                outcome.deployment
            );
        }
    }
    Ok(0)
}

/// Run the command; returns the exit code.
pub async fn run(ctx: &Context, args: ApplyArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    let deployment = ctx.load_deployment_warned()?;
    let opts = converge_options(&args, ctx)?;
    let engine = Engine::connect().await?;
    let outcome = converge::converge(
        &engine,
        &ctx.state_dir(),
        &deployment,
        &opts,
        reporter(args.quiet),
    )
    .await?;
    let report = &outcome.applied;
    let count = |a: Action| report.plan.with_action(a).count();
    if !args.quiet {
        println!(
            "{}: revision {} applied ({}): {} created, {} recreated, {} started, {} removed, {} unchanged",
            deployment.name,
            report.revision,
            opts.apply.integration.as_str(),
            count(Action::Create),
            count(Action::Recreate),
            count(Action::Start),
            count(Action::Remove),
            count(Action::Unchanged),
        );
    }
    finish(outcome, args.quiet)
}
