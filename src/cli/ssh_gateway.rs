//! `berth ssh-gateway`.

use clap::Args;
use clap::builder::TypedValueParser;

use super::Context;
use crate::engine::Engine;
use crate::error::Result;
use crate::ssh::admission::{self, Limits, Startups};
use crate::ssh::{access, gateway, hostkey};

#[derive(Debug, Args)]
pub struct SshGatewayArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = gateway::DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds a connection gets to log in before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = admission::LOGIN_GRACE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub login_grace: u64,
    /// Connections not logged in yet, overall: from START on, a new one
    /// waits for a place (no banner yet) with a probability rising from
    /// RATE % to 100 % at FULL (sshd's MaxStartups, deferring instead of
    /// dropping); stalled ones are closed to make room.
    #[arg(long, value_name = "START:RATE:FULL", default_value_t = admission::STARTUPS)]
    pub max_startups: Startups,
    /// Connections not logged in yet, per source address (IPv6: per /64).
    #[arg(long, value_name = "N", default_value_t = admission::PER_SOURCE,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub per_source_max_startups: usize,
    /// Print the SHA256 fingerprint of the host key (creating the key if needed) and exit.
    #[arg(long)]
    pub fingerprint: bool,
    /// `swarm`: also serve the swarm's deployments, as their applies
    /// published them on the manager (DOCKER_HOST; on a worker, a
    /// manager's socket brought here), reaching each task's node through
    /// the nodes file. Run one such gateway on every node.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: SshGatewayArgs) -> Result<u8> {
    if !args.fingerprint {
        gateway::check_listen(&args.listen)?;
    }
    let state = ctx.state_dir();
    let key = hostkey::load_or_create(&state)?;
    if args.fingerprint {
        println!("{}", hostkey::fingerprint(&key));
        return Ok(0);
    }
    let engine = Engine::connect().await?;
    let swarm = args.target == super::plan::TargetArg::Swarm;
    if swarm {
        engine.require_manager().await?;
    }
    let sources = access::Sources {
        state,
        swarm: swarm.then(|| engine.clone()),
    };
    let nodes = ctx.load_nodes_file()?;
    let (listener, addr) = gateway::bind(&args.listen).await?;
    println!(
        "berth ssh-gateway listening on {addr} (host key {})",
        hostkey::fingerprint(&key)
    );
    crate::stdout::flush();
    let limits = Limits {
        login_grace: std::time::Duration::from_secs(args.login_grace),
        startups: args.max_startups,
        per_source: args.per_source_max_startups,
    };
    gateway::serve(engine, sources, nodes, listener, key, limits).await?;
    Ok(0)
}
