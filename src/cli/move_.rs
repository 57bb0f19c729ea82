//! `berth move SERVICE --to NODE [--prune-source]`.

use std::time::Duration;

use clap::Args;

use super::{Context, OutputFormat};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::target::swarm::relocate::{self, MoveRequest};

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The service to move (a swarm service with volumes, pinned to the
    /// node holding them).
    pub service: String,
    /// The node to move it to (hostname or node ID).
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// Remove the old node's copy of the volumes once the service runs on
    /// the new node (alone: after an earlier move, removes what it left).
    #[arg(long)]
    pub prune_source: bool,
    /// Print what was done as text or as JSON.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Fail if an apply of this deployment still runs after this long.
    #[arg(long, value_name = "DURATION", value_parser = super::apply::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// Where the deployment runs: only a Docker Swarm has nodes to move between.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: MoveArgs) -> Result<u8> {
    if args.target != super::plan::TargetArg::Swarm {
        return Err(Error::Usage(
            "berth move carries a service between the nodes of a swarm: run it with --target swarm (BERTH_TARGET=swarm) against the swarm's manager; nothing was changed".into(),
        ));
    }
    let ctx = &ctx.for_target(args.target);
    let deployment = super::backup::deployment_name(ctx)?;
    let manager = Engine::connect().await?;
    let nodes = ctx.node_engines(&manager).await?;
    let req = MoveRequest {
        deployment,
        service: args.service,
        to: args.to,
        prune_source: args.prune_source,
        lock_timeout: args.lock_timeout,
    };
    let r = relocate::relocate(
        &nodes,
        &ctx.state_dir(),
        &req,
        &super::apply::reporter(false),
    )
    .await?;
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&r)
                .map_err(|e| Error::Runtime(format!("cannot print the move as JSON: {e}")))?;
            println!("{text}");
        }
        OutputFormat::Table => {
            if r.moved {
                let bytes: u64 = r.volumes.iter().map(|v| v.contents.bytes).sum();
                println!(
                    "moved {} from node {} to node {}{}",
                    r.service,
                    r.from,
                    r.to,
                    if r.volumes.is_empty() {
                        " (its volumes were copied and verified by an earlier run)".to_string()
                    } else {
                        format!(
                            " ({} volume{}, {} bytes, copy verified)",
                            r.volumes.len(),
                            if r.volumes.len() == 1 { "" } else { "s" },
                            bytes
                        )
                    }
                );
            }
            for v in &r.pruned {
                println!("removed volume {v} from node {}", r.from);
            }
            if let Some(node) = &r.kept_on {
                println!(
                    "the old copy on node {node} is kept; remove it with `berth move {} --to {} --prune-source`",
                    r.service, r.to
                );
            }
        }
    }
    Ok(0)
}
