//! `berth plan`: what `apply` would change (exit 0: nothing, 3: changes).

use clap::Args;

use super::{Context, OutputFormat};
use crate::apply::{self, IntegrationChoice};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Exit code of `berth plan` when applying would change something.
pub const EXIT_CHANGES: u8 = 3;

/// `--integration auto|systemd|docker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IntegrationArg {
    /// systemd when PID 1 is systemd, else docker.
    #[default]
    Auto,
    /// One systemd unit per instance running `berth supervise`.
    Systemd,
    /// Docker restart policies (`unless-stopped`).
    Docker,
}

impl From<IntegrationArg> for IntegrationChoice {
    fn from(a: IntegrationArg) -> Self {
        match a {
            IntegrationArg::Auto => IntegrationChoice::Auto,
            IntegrationArg::Systemd => IntegrationChoice::Systemd,
            IntegrationArg::Docker => IntegrationChoice::Docker,
        }
    }
}

/// `--target host|swarm`: where the deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TargetArg {
    /// This host (kept running as `--integration` says).
    #[default]
    Host,
    /// The Docker Swarm whose manager `DOCKER_HOST` points at.
    Swarm,
}

impl TargetArg {
    /// The integration to apply or look with: the swarm, or on the host
    /// `integration` resolved.
    /// `--integration` means nothing on a swarm, so it is refused there.
    pub fn integration(
        self,
        integration: IntegrationArg,
    ) -> crate::error::Result<crate::instance::Integration> {
        match (self, integration) {
            (TargetArg::Swarm, IntegrationArg::Auto) => Ok(crate::instance::Integration::Swarm),
            (TargetArg::Swarm, _) => Err(crate::error::Error::Usage(
                "--integration chooses what keeps instances running on this host; it does not apply with --target swarm (Swarm keeps its tasks running)".into(),
            )),
            (TargetArg::Host, i) => Ok(IntegrationChoice::from(i).resolve()),
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where the deployment runs: this host, or a Docker Swarm through its
    /// manager's engine (`DOCKER_HOST`).
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = TargetArg::Host)]
    pub target: TargetArg,
    /// How instances are kept running (as for `apply`).
    #[arg(long, value_enum, default_value_t = IntegrationArg::Auto)]
    pub integration: IntegrationArg,
    /// Print the plan as a table or as JSON.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// The running `berth` binary, for unit files.
pub(crate) fn berth_path() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "/usr/local/bin/berth".into())
}

/// Run the command; returns the exit code.
pub async fn run(ctx: &Context, args: PlanArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    let deployment = ctx.load_deployment_warned()?;
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let integration = args.target.integration(args.integration)?;
    let host = crate::target::HostOptions {
        unit_dir: ctx.global.unit_dir.clone(),
        berth_path: berth_path(),
        systemctl: false,
        nodes: ctx.global.nodes.clone(),
    };
    let target = crate::target::for_host(integration, &host);
    if integration != crate::instance::Integration::Swarm {
        for w in crate::target::swarm_only_warnings(&deployment) {
            eprintln!("{w}");
        }
    }
    let plan = apply::preview(&engine, &state, &deployment, target.as_ref()).await?;
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&serde_json::json!({
                "changes": plan.has_changes(),
                "plan": plan,
            }))
            .map_err(|e| Error::Runtime(format!("cannot print the plan: {e}")))?;
            println!("{text}");
        }
        OutputFormat::Table => print!("{}", plan.render()),
    }
    Ok(if plan.has_changes() { EXIT_CHANGES } else { 0 })
}
