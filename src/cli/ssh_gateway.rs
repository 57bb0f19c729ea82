//! `berth ssh-gateway`.

use clap::Args;

use super::Context;
use crate::engine::Engine;
use crate::error::Result;
use crate::ssh::{gateway, hostkey};

#[derive(Debug, Args)]
pub struct SshGatewayArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = gateway::DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds a connection gets to log in before it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = gateway::LOGIN_GRACE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub login_grace: u64,
    /// Print the SHA256 fingerprint of the host key (creating the key if needed) and exit.
    #[arg(long)]
    pub fingerprint: bool,
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
    let (listener, addr) = gateway::bind(&args.listen).await?;
    println!(
        "berth ssh-gateway listening on {addr} (host key {})",
        hostkey::fingerprint(&key)
    );
    crate::stdout::flush();
    let grace = std::time::Duration::from_secs(args.login_grace);
    gateway::serve(engine, state, listener, key, grace).await?;
    Ok(0)
}
