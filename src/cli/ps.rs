//! `berth ps`.

use clap::Args;

use super::{Context, OutputFormat};
use crate::engine::Engine;
use crate::error::Result;
use crate::ops::{select, status};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// A deployment applied on this host (default: the one in -f, else every applied one).
    pub deployment: Option<String>,
    /// Table for people, JSON (an array of instances, stable keys) for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Where the deployment runs: this host, or a Docker Swarm (one row per
    /// task, with its node).
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: PsArgs) -> Result<u8> {
    if args.target == super::plan::TargetArg::Swarm {
        return run_swarm(ctx, args).await;
    }
    let state = ctx.state_dir();
    let mut targets = Vec::new();
    if let Some(name) = args.deployment.as_deref() {
        // An explicit name wins over a berth.toml lying in the directory.
        targets.push(select::resolve(
            &state,
            std::path::Path::new(""),
            Some(name),
            unreachable_load,
        )?);
    } else if crate::input::present(&ctx.global.file) || ctx.global.name.is_some() {
        targets.push(select::resolve(
            &state,
            &ctx.global.file,
            ctx.global.name.as_deref(),
            || ctx.load_deployment(),
        )?);
    } else {
        for name in state.list_deployments()? {
            targets.push(select::resolve(
                &state,
                std::path::Path::new(""),
                Some(&name),
                unreachable_load,
            )?);
        }
    }
    let engine = Engine::connect().await?;
    let mut rows = Vec::new();
    for t in &targets {
        rows.extend(status::collect(&engine, &state, t).await?);
    }
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&rows)
                .map_err(|e| crate::Error::Runtime(format!("cannot encode JSON: {e}")))?;
            println!("{text}");
        }
        OutputFormat::Table => {
            // On a terminal a long PORTS cell is clipped so the table stays
            // readable; a pipe gets every binding (as does --output json).
            let width = std::io::IsTerminal::is_terminal(&std::io::stdout())
                .then_some(PORTS_WIDTH_ON_TERMINAL);
            print!("{}", status::render_table(&rows, width));
        }
    }
    Ok(0)
}

/// Widest PORTS cell on a terminal: two bindings of one port fit.
const PORTS_WIDTH_ON_TERMINAL: usize = 48;

/// `resolve` only reads the file when the path is a file; the empty path never is.
fn unreachable_load() -> Result<crate::deployment::Deployment> {
    Err(crate::Error::Usage("no deployment file given".into()))
}

/// `ps --target swarm`: the tasks of the named deployment (or the file's,
/// or every one applied from here).
async fn run_swarm(ctx: &Context, args: PsArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    use crate::target::swarm::ops;
    let names = match (&args.deployment, &ctx.global.name) {
        (Some(n), _) | (None, Some(n)) => vec![n.clone()],
        (None, None) if crate::input::present(&ctx.global.file) => {
            vec![ctx.load_deployment()?.name]
        }
        (None, None) => ctx.state_dir().list_deployments()?,
    };
    let engine = Engine::connect().await?;
    // Health is read on each task's node where the nodes file reaches it.
    let nodes = match ctx.node_engines(&engine).await {
        Ok(n) => Some(n),
        Err(crate::Error::Usage(e)) => return Err(crate::Error::Usage(e)),
        Err(_) => None,
    };
    let mut rows = Vec::new();
    for name in &names {
        rows.extend(ops::ps(&engine, nodes.as_ref(), name).await?);
    }
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&rows)
                .map_err(|e| crate::Error::Runtime(format!("cannot encode JSON: {e}")))?;
            println!("{text}");
        }
        OutputFormat::Table => print!("{}", ops::render_table(&rows)),
    }
    Ok(0)
}
