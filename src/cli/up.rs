//! `berth up`: supervise the whole deployment in the foreground.

use std::sync::Arc;

use clap::Args;

use super::Context;
use super::plan::berth_path;
use crate::apply::up::{self, UpOptions};
use crate::engine::{Engine, PullProgress};
use crate::error::Result;
use crate::ssh::gateway;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the SSH gateway listens (it runs in this process when the
    /// deployment grants `ssh` keys).
    #[arg(long, value_name = "ADDR:PORT", default_value = gateway::DEFAULT_LISTEN)]
    pub ssh_listen: String,
    /// Do not run the SSH gateway even though keys are granted.
    #[arg(long)]
    pub no_ssh: bool,
}

pub async fn run(ctx: &Context, args: UpArgs) -> Result<u8> {
    // An invalid file fails before the engine is asked (its warnings are
    // printed when `up` reads it).
    ctx.load_deployment()?;
    let engine = Engine::connect().await?;
    let opts = UpOptions {
        host: crate::target::HostOptions {
            unit_dir: ctx.global.unit_dir.clone(),
            berth_path: berth_path(),
            systemctl: crate::target::systemd::ctl::systemd_running(),
            nodes: None,
        },
        progress: PullProgress::Auto,
        ssh_listen: (!args.no_ssh).then_some(args.ssh_listen),
    };
    let loader_ctx = ctx.clone();
    let load: up::Loader = Arc::new(move || loader_ctx.load_deployment_warned());
    up::up(&engine, &ctx.state_dir(), &opts, load).await?;
    Ok(0)
}
