//! `berth apply`: make the host match the deployment file.

use std::time::Duration;

use clap::Args;

use super::Context;
use super::plan::{IntegrationArg, berth_path};
use crate::apply::{self, ApplyOptions, IntegrationChoice};
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::instance::Integration;
use crate::integration::ssh_gateway;
use crate::plan::Action;
use crate::ssh::gateway;

#[derive(Debug, Args)]
pub struct ApplyArgs {
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

/// The apply options the flags ask for.
pub(crate) fn apply_options(args: &ApplyArgs, ctx: &Context) -> ApplyOptions {
    ApplyOptions {
        integration: IntegrationChoice::from(args.integration).resolve(),
        unit_dir: ctx.global.unit_dir.clone(),
        systemctl: !args.no_systemctl,
        berth_path: berth_path(),
        lock_timeout: args.lock_timeout,
        progress: if args.quiet {
            PullProgress::Quiet
        } else {
            PullProgress::Auto
        },
    }
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

/// Run the command; returns the exit code.
pub async fn run(ctx: &Context, args: ApplyArgs) -> Result<u8> {
    let deployment = ctx.load_deployment_warned()?;
    if let Some(l) = &args.ssh_listen {
        crate::ssh::gateway::check_listen(l).map_err(|_| {
            Error::Usage(format!(
                "--ssh-listen {:?}: expected ADDR:PORT, for example 0.0.0.0:2222 or 127.0.0.1:2200",
                l
            ))
        })?;
    }
    let integration = IntegrationChoice::from(args.integration).resolve();
    if integration == Integration::Systemd {
        ssh_gateway::check_unit_clash(&deployment)?;
    }
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let opts = ApplyOptions {
        integration,
        unit_dir: ctx.global.unit_dir.clone(),
        systemctl: !args.no_systemctl,
        berth_path: berth_path(),
        lock_timeout: args.lock_timeout,
        progress: if args.quiet {
            PullProgress::Quiet
        } else {
            PullProgress::Auto
        },
    };
    let quiet = args.quiet;
    let reporter: apply::Reporter = std::sync::Arc::new(move |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    });
    let report = apply::apply(&engine, &state, &deployment, &opts, reporter.clone())
        .await
        .map_err(|e| match e {
            Error::Runtime(m) => Error::Runtime(format!("apply of {}: {m}", deployment.name)),
            other => other,
        })?;
    let mut gateway_pending = Vec::new();
    match opts.integration {
        Integration::Systemd => {
            let g = ssh_gateway::reconcile_unit(
                &state,
                &opts.unit_dir,
                &opts.berth_path,
                args.ssh_listen.as_deref(),
                opts.systemctl,
            )
            .await
            .map_err(|e| Error::Runtime(format!("SSH gateway unit: {e}")))?;
            match &g.change {
                ssh_gateway::UnitChange::Installed { listen } => reporter(format!(
                    "installed {} (listening on {listen})",
                    gateway::UNIT_NAME
                )),
                ssh_gateway::UnitChange::Updated { listen } => reporter(format!(
                    "updated {} (listening on {listen})",
                    gateway::UNIT_NAME
                )),
                ssh_gateway::UnitChange::Removed => reporter(format!(
                    "removed {} (no deployment grants ssh keys)",
                    gateway::UNIT_NAME
                )),
                ssh_gateway::UnitChange::Unchanged => {}
            }
            gateway_pending = g.pending;
        }
        Integration::Docker => {
            if let Some(hint) = ssh_gateway::docker_hint(&deployment, args.ssh_listen.as_deref()) {
                reporter(hint);
            }
        }
        Integration::Foreground => {}
    }
    let count = |a: Action| report.plan.with_action(a).count();
    if !quiet {
        println!(
            "{}: revision {} applied ({}): {} created, {} recreated, {} started, {} removed, {} unchanged",
            deployment.name,
            report.revision,
            opts.integration.as_str(),
            count(Action::Create),
            count(Action::Recreate),
            count(Action::Start),
            count(Action::Remove),
            count(Action::Unchanged),
        );
        if !report.pending_systemctl.is_empty() || !gateway_pending.is_empty() {
            println!("systemctl was not run (--no-systemctl); to activate the units run:");
            for c in report.pending_systemctl.iter().chain(&gateway_pending) {
                println!("  {c}");
            }
        }
    }
    if args.wait {
        apply::health::wait_deployment(&engine, &state, &deployment, args.wait_timeout).await?;
        if !quiet {
            println!("{}: every instance is running and healthy", deployment.name);
        }
    }
    Ok(0)
}
