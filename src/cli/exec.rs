//! `berth exec`.

use clap::Args;

use super::Context;
use crate::engine::Engine;
use crate::engine::exec::ExecRequest;
use crate::error::{Error, Result};
use crate::ssh::access::{self, Lookup};
use crate::ssh::place::{self, Located};
use crate::ssh::{local, openssh};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// `service`, `service-N` or `deployment.service[-N]` (with --name: the deployment).
    #[arg(required_unless_present = "ssh")]
    pub service: Option<String>,
    /// Command and arguments (default: the service's shell).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Never allocate a terminal, even when attached to one.
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    /// sshd's forced command (see `berth authorized-keys`): run
    /// $SSH_ORIGINAL_COMMAND, or a shell, in CONTAINER.
    #[arg(long, value_name = "CONTAINER", conflicts_with_all = ["service", "command"])]
    pub ssh: Option<String>,
    /// `swarm`: the swarm's deployments are the ones published on the
    /// manager (DOCKER_HOST), as `berth ssh-gateway --target swarm` reads
    /// them. A swarm deployment applied from this state directory is found
    /// either way.
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: ExecArgs) -> Result<u8> {
    let state = ctx.state_dir();
    let tty = !args.no_tty && local::on_terminal();
    let mut env = Vec::new();
    if tty && let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    // A shell, or anything run through /bin/sh, may be started through the
    // wrapper that lets a hung-up terminal end the session.
    let mut track_pid = true;
    let (engine, container, cmd) = if let Some(container) = args.ssh {
        if crate::names::check_name(&container).is_err() {
            return Err(Error::Usage(format!(
                "--ssh {container:?}: not a container name"
            )));
        }
        let cmd = match std::env::var("SSH_ORIGINAL_COMMAND") {
            Ok(c) if !c.trim().is_empty() => vec!["/bin/sh".into(), "-c".into(), c],
            _ => vec![openssh::shell_for_container(&state, &container)],
        };
        (Engine::connect().await?, container, cmd)
    } else {
        let service = args.service.unwrap_or_default();
        let login = match &ctx.global.name {
            Some(d) => format!("{d}.{service}"),
            None => service.clone(),
        };
        let swarm = args.target == super::plan::TargetArg::Swarm;
        // The engine is asked first only when it holds the deployments: a
        // login unknown to the state directory is a usage error without it.
        let manager = if swarm {
            Some(Engine::connect().await?)
        } else {
            None
        };
        let sources = access::Sources {
            state: state.clone(),
            swarm: manager.clone(),
        };
        let target = match sources.resolve(&login).await {
            Lookup::Found(t) => t,
            Lookup::Ambiguous(ts) => {
                let names: Vec<_> = ts.iter().map(|t| t.qualified.as_str()).collect();
                return Err(Error::Usage(format!(
                    "{login:?} names more than one container; use one of: {}",
                    names.join(", ")
                )));
            }
            Lookup::Unknown => {
                return Err(Error::Usage(format!(
                    "no applied deployment in {}{} has a service instance {login:?}",
                    state.root().display(),
                    if swarm { " or on the swarm" } else { "" }
                )));
            }
        };
        let engine = match manager {
            Some(e) => e,
            None => Engine::connect().await?,
        };
        // The nodes file is read only for a swarm: a host never needs it.
        let nodes = if target.swarm {
            ctx.load_nodes_file()?
        } else {
            Default::default()
        };
        let place = match place::locate(&engine, &nodes, &target).await? {
            Located::Running(p) => p,
            Located::NotRunning(why) => return Err(Error::Runtime(why)),
        };
        let cmd = if args.command.is_empty() {
            vec![target.shell.clone()]
        } else {
            // An exec-form command: the image need not have /bin/sh.
            track_pid = false;
            args.command
        };
        (place.engine, place.container, cmd)
    };
    let spec = ExecRequest {
        container,
        cmd,
        tty,
        env,
        size: if tty { local::terminal_size() } else { None },
        track_pid,
    };
    local::run_attached(&engine, &spec).await
}
