//! `berth up`: supervise the whole deployment in the foreground.

use std::sync::Arc;

use clap::Args;

use super::Context;
use super::plan::berth_path;
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::integration::foreground::{self, UpOptions};
use crate::integration::ssh_gateway;
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
    // Read once up front so that an invalid file fails before anything starts.
    let deployment = ctx.load_deployment()?;
    if !args.no_ssh {
        gateway::check_listen(&args.ssh_listen).map_err(|_| {
            Error::Usage(format!(
                "--ssh-listen {:?}: expected ADDR:PORT, for example 0.0.0.0:2222 or 127.0.0.1:2200",
                args.ssh_listen
            ))
        })?;
    }
    let engine = Engine::connect().await?;
    let state = ctx.state_dir();
    let gw = if args.no_ssh {
        None
    } else {
        ssh_gateway::spawn_foreground(&engine, &state, &deployment, &args.ssh_listen).await?
    };
    if let Some(g) = &gw {
        eprintln!(
            "berth: ssh gateway listening on {} (host key {})",
            g.addr, g.fingerprint
        );
    }
    let opts = UpOptions {
        unit_dir: ctx.global.unit_dir.clone(),
        berth_path: berth_path(),
        progress: PullProgress::Auto,
    };
    let loader_ctx = ctx.clone();
    let load: foreground::Loader = Arc::new(move || loader_ctx.load_deployment());
    let result = foreground::up(&engine, &state, &opts, load).await;
    if let Some(g) = gw {
        g.stop().await;
    }
    result?;
    Ok(0)
}
