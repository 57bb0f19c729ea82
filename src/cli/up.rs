//! `berth up`: supervise the whole deployment in the foreground.

use std::sync::Arc;

use clap::Args;

use super::Context;
use super::plan::berth_path;
use crate::engine::{Engine, PullProgress};
use crate::error::Result;
use crate::integration::foreground::{self, UpOptions};

#[derive(Debug, Args)]
pub struct UpArgs {}

pub async fn run(ctx: &Context, _args: UpArgs) -> Result<u8> {
    // Read once up front so that an invalid file fails before anything starts.
    ctx.load_deployment()?;
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let opts = UpOptions {
        unit_dir: ctx.global.unit_dir.clone(),
        berth_path: berth_path(),
        progress: PullProgress::Auto,
    };
    let loader_ctx = ctx.clone();
    let load: foreground::Loader = Arc::new(move || loader_ctx.load_deployment());
    foreground::up(&engine, &state, &opts, load).await?;
    Ok(0)
}
