//! `berth logs`.

use clap::Args;

use super::Context;
use crate::engine::Engine;
use crate::engine::ops::LogOptions;
use crate::error::Result;
use crate::ops::{logs, select};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Service (`mail`: all its instances) or instance (`web-2`).
    pub service: String,
    /// Keep streaming new output until Ctrl-C (`-f` after `logs`; give the
    /// deployment file before `logs` or as `--file`).
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines of each instance.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Prefix each line with the engine's timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show the recent health-check results (exit code and output) instead
    /// of the container's output.
    #[arg(long, conflicts_with_all = ["follow", "tail", "timestamps", "output"])]
    pub health: bool,
    /// text, or json: one object per line, `{"instance", "stream",
    /// "timestamp", "line"}`, for scripts.
    #[arg(long, value_enum, default_value_t = LogsFormat::Text)]
    pub output: LogsFormat,
    /// Where the deployment runs: this host, or a Docker Swarm (each line
    /// prefixed with its task and node).
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

/// `berth logs --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogsFormat {
    Text,
    Json,
}

pub async fn run(ctx: &Context, args: LogsArgs) -> Result<u8> {
    if args.target == super::plan::TargetArg::Swarm {
        return run_swarm(ctx, args).await;
    }
    let state = ctx.state_dir();
    let t = select::resolve(&state, &ctx.global.file, ctx.global.name.as_deref(), || {
        ctx.load_deployment()
    })?;
    let instances = select::select_instances(&t.deployment, std::slice::from_ref(&args.service))?;
    let containers: Vec<String> = instances.into_iter().map(|i| i.container).collect();
    let engine = Engine::connect().await?;
    if args.health {
        print!("{}", logs::health_report(&engine, &containers).await?);
        return Ok(0);
    }
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    let json = args.output == LogsFormat::Json;
    logs::show(&engine, &containers, &opts, containers.len() > 1, json).await?;
    Ok(0)
}

/// `logs --target swarm`: the tasks of a service of the file's deployment
/// (or the one `--name` names).
async fn run_swarm(ctx: &Context, args: LogsArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    if args.health {
        return Err(crate::Error::Usage(
            "--health reads the engine's health-check results of a host's containers; on a swarm, `berth ps --target swarm` shows each task's health".into(),
        ));
    }
    let deployment = match &ctx.global.name {
        Some(n) => n.clone(),
        None => {
            let d = ctx.load_deployment()?;
            if !d.services.contains_key(&args.service) {
                return Err(crate::Error::Usage(format!(
                    "deployment {} has no service {:?} (services: {})",
                    d.name,
                    args.service,
                    d.services.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            d.name
        }
    };
    crate::names::check_name(&args.service)
        .map_err(|p| crate::Error::Usage(format!("service name {:?} {p}", args.service)))?;
    let engine = Engine::connect().await?;
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
    };
    let json = args.output == LogsFormat::Json;
    crate::target::swarm::ops::logs(&engine, &deployment, &args.service, &opts, json).await?;
    Ok(0)
}

/// `berth logs SERVICE -f` follows, as `docker logs -f` does, while `-f` is
/// berth's global short option for the deployment file. After the `logs`
/// subcommand, `-f` therefore means `--follow`; before it, it stays `--file`.
pub fn follow_short_flag(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut seen_logs = false;
    let mut prev_takes_value = false;
    for (i, a) in args.into_iter().enumerate() {
        let text = a.to_str().unwrap_or("");
        if i > 0 && !seen_logs && !prev_takes_value && text == "logs" {
            seen_logs = true;
        } else if seen_logs && text == "-f" {
            out.push("--follow".into());
            continue;
        }
        // Global options that take a separate value (`-f FILE`, `--name N`...):
        // their value is never the subcommand.
        prev_takes_value = !seen_logs
            && matches!(
                text,
                "-f" | "--file" | "--name" | "--set" | "--state-dir" | "--unit-dir"
            );
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::follow_short_flag;

    fn rw(args: &[&str]) -> Vec<String> {
        follow_short_flag(args.iter().map(|a| a.into()))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn dash_f_after_logs_follows() {
        assert_eq!(
            rw(&["berth", "logs", "mail", "-f"]),
            ["berth", "logs", "mail", "--follow"]
        );
        assert_eq!(
            rw(&["berth", "-f", "logs", "logs", "-f", "x"]),
            ["berth", "-f", "logs", "logs", "--follow", "x"]
        );
        assert_eq!(
            rw(&["berth", "-f", "a.toml", "ps"]),
            ["berth", "-f", "a.toml", "ps"]
        );
    }
}
