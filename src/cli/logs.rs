//! `berth logs`.

use clap::Args;

use super::Context;
use crate::engine::Engine;
use crate::engine::ops::LogOptions;
use crate::error::Result;
use crate::ops::{logs, target};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Service (`mail`: all its instances) or instance (`web-2`).
    pub service: String,
    /// Keep streaming new output until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each instance.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Prefix each line with the engine's timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
}

pub async fn run(ctx: &Context, args: LogsArgs) -> Result<u8> {
    let state = ctx.state_dir();
    let t = target::resolve(&state, &ctx.global.file, ctx.global.name.as_deref(), || {
        ctx.load_deployment()
    })?;
    let instances = target::select_instances(&t.deployment, std::slice::from_ref(&args.service))?;
    let containers: Vec<String> = instances.into_iter().map(|i| i.container).collect();
    let engine = Engine::connect().await?;
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    logs::show(&engine, &containers, &opts, containers.len() > 1).await?;
    Ok(0)
}
