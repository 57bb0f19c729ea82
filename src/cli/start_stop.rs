//! `berth start|stop|restart SERVICE...`.

use clap::Args;

use super::Context;
use crate::engine::Engine;
use crate::error::Result;
use crate::ops::{control, select};

pub use crate::target::Control as Action;

#[derive(Debug, Args)]
pub struct StartStopArgs {
    /// Services (`mail`) or instances (`mail-2`).
    #[arg(required = true)]
    pub services: Vec<String>,
}

pub async fn run(ctx: &Context, action: Action, args: StartStopArgs) -> Result<u8> {
    let state = ctx.state_dir();
    let t = select::resolve(&state, &ctx.global.file, ctx.global.name.as_deref(), || {
        ctx.load_deployment()
    })?;
    let instances = select::select_instances(&t.deployment, &args.services)?;
    let engine = Engine::connect().await?;
    for line in control::run(&engine, &state, &t, &instances, action).await? {
        println!("{line}");
    }
    Ok(0)
}
