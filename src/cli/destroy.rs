//! `berth destroy`: remove the deployment from this host; volumes are kept
//! unless `--volumes`.

use std::time::Duration;

use clap::Args;

use super::Context;
use crate::apply::destroy::{DestroyOptions, destroy};
use crate::engine::Engine;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Also remove the deployment's volumes and the data in them.
    #[arg(long)]
    pub volumes: bool,
    /// Do not run systemctl (only remove unit files).
    #[arg(long)]
    pub no_systemctl: bool,
    /// Fail if an apply of this deployment still runs after this long.
    #[arg(long, value_name = "DURATION", value_parser = super::apply::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// Where the deployment runs: this host, or a Docker Swarm.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

/// Run the command; returns the exit code.
pub async fn run(ctx: &Context, args: DestroyArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    // `--name` alone is enough: a deployment can be destroyed after its file is gone.
    let name = match &ctx.global.name {
        Some(n) => n.clone(),
        None => ctx.load_deployment()?.name,
    };
    let engine = Engine::connect().await?;
    if args.target == super::plan::TargetArg::Swarm {
        if args.volumes {
            return Err(crate::Error::Usage(
                "destroy --target swarm --volumes: the volumes live on each node and are not removed from here yet".into(),
            ));
        }
        let reporter: crate::apply::Reporter = std::sync::Arc::new(|l: String| eprintln!("{l}"));
        let done = crate::target::swarm::ops::destroy(
            &engine,
            &ctx.state_dir(),
            &name,
            args.lock_timeout,
            &reporter,
        )
        .await?;
        let files = match done.files.len() {
            0 => String::new(),
            1 => ", 1 config or secret".to_string(),
            n => format!(", {n} configs and secrets"),
        };
        println!(
            "{name}: destroyed on the swarm (removed {} service{}{files}{}; volumes kept on their nodes)",
            done.services.len(),
            if done.services.len() == 1 { "" } else { "s" },
            if done.network { " and the network" } else { "" },
        );
        return Ok(0);
    }
    let opts = DestroyOptions {
        volumes: args.volumes,
        unit_dir: ctx.global.unit_dir.clone(),
        systemctl: !args.no_systemctl,
        lock_timeout: args.lock_timeout,
        berth_path: super::plan::berth_path(),
    };
    let reporter: crate::apply::Reporter = std::sync::Arc::new(|l: String| eprintln!("{l}"));
    let state = ctx.state_dir();
    let report = destroy(&engine, &state, &name, &opts, reporter).await?;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let n = |v: usize, what: &str| format!("{v} {what}{}", plural(v));
    println!(
        "{name}: destroyed (removed {}, {}, {}, {}, {} of state)",
        n(report.containers.len(), "container"),
        n(report.units.len(), "unit"),
        n(report.volumes.len(), "volume"),
        n(report.snapshots.len(), "snapshot"),
        n(report.state_files.len(), "file"),
    );
    for f in &report.state_files {
        println!("removed {}", f.display());
    }
    if !report.kept_volumes.is_empty() || !report.kept_snapshots.is_empty() {
        println!(
            "kept {} and {} (the data; remove with `berth --name {name} destroy --volumes`):",
            n(report.kept_volumes.len(), "volume"),
            n(report.kept_snapshots.len(), "snapshot"),
        );
        for v in &report.kept_volumes {
            println!("  volume   {v}");
        }
        for s in &report.kept_snapshots {
            println!("  snapshot {}", s.display());
        }
    }
    Ok(0)
}
