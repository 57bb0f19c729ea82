//! `berth up`: supervise the whole deployment in the foreground.

use std::sync::{Arc, Mutex};

use clap::Args;

use super::Context;
use super::plan::berth_path;
use crate::apply::up::{self, UpOptions};
use crate::engine::{Engine, PullProgress};
use crate::error::{Error, Result};
use crate::ssh::gateway;
use crate::target::ssh_gateway::{self, ForegroundGateway};

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
    let deployment = ctx.load_deployment_warned()?;
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
    // The gateway starts with the first file that grants keys: at once, or
    // when a file re-read on SIGHUP starts granting them. It then stays up
    // (it looks keys up in the applied state, so revoked keys stop working).
    let gw: Arc<Mutex<Option<ForegroundGateway>>> = Arc::new(Mutex::new(None));
    let start_gateway = {
        let (gw, engine, state) = (gw.clone(), engine.clone(), state.clone());
        let (no_ssh, listen) = (args.no_ssh, args.ssh_listen.clone());
        move |d: &crate::deployment::Deployment| -> Result<()> {
            let mut slot = gw.lock().unwrap_or_else(|p| p.into_inner());
            if no_ssh || slot.is_some() {
                return Ok(());
            }
            if let Some(g) = ssh_gateway::start_foreground(&engine, &state, d, &listen)? {
                eprintln!(
                    "berth: ssh gateway listening on {} (host key {})",
                    g.addr, g.fingerprint
                );
                *slot = Some(g);
            }
            Ok(())
        }
    };
    start_gateway(&deployment)?;
    let opts = UpOptions {
        host: crate::target::HostOptions {
            unit_dir: ctx.global.unit_dir.clone(),
            berth_path: berth_path(),
            systemctl: crate::target::systemd::ctl::systemd_running(),
        },
        progress: PullProgress::Auto,
    };
    let loader_ctx = ctx.clone();
    let load: up::Loader = Arc::new(move || {
        let d = loader_ctx.load_deployment_warned()?;
        // A gateway that cannot start must not stop the services.
        if let Err(e) = start_gateway(&d) {
            eprintln!("berth: {e}");
        }
        Ok(d)
    });
    let result = up::up(&engine, &state, &opts, load).await;
    let running = gw.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(g) = running {
        g.stop().await;
    }
    result?;
    Ok(0)
}
