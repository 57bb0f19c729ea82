//! The command line. One file per command; each holds the command's arguments
//! and printing, nothing else: the work happens in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::deployment::{self, Deployment};
use crate::error::{EXIT_INVALID, Error, Result};
use crate::state::{DEFAULT_STATE_DIR, DEFAULT_UNIT_DIR, StateDir};

// `print!`, `println!` and `eprintln!` in every command file go through
// `crate::stdout`, so a closed pipe ends the output quietly instead of
// panicking (these shadow the std macros for the modules declared below).
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!($($arg)*))
    };
}
macro_rules! println {
    () => {
        $crate::stdout::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! eprintln {
    () => {
        $crate::stdout::write_err_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_err_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod apply;
mod authorized_keys;
mod backup;
mod completions;
mod convert;
mod destroy;
mod doctor;
mod exec;
mod history;
mod logs;
mod man_pages;
mod move_;
mod plan;
mod ps;
mod render;
mod restore;
mod rollback;
mod schema;
mod snapshots;
mod ssh_gateway;
mod start_stop;
mod supervise;
mod up;
mod update;
mod validate;

/// What `berth --version` prints after the name: the package version and
/// the commit (with its date) berth was built from, or `commit unknown`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_COMMIT"),
    ")"
);

/// berth: deploy Docker containers as always-running services from one file.
#[derive(Debug, Parser)]
// `--version` names the commit it was built from (see build.rs).
#[command(name = "berth", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts. In every command's help they come last,
/// under their own heading, so the command's own options stand out.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The deployment file (TOML, YAML or JSON; geard JSON and Compose files
    /// accepted). Not given: berth.toml, else compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml in this directory.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "BERTH_FILE",
        default_value = DEFAULT_FILE
    )]
    pub file: PathBuf,
    /// Deployment name, overriding the file's `name` (geard files: the file stem;
    /// Compose files: Compose's project name, `-p` as with docker compose).
    #[arg(long, short = 'p', global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// The file's format, when its name does not say it.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<FileFormat>,
    /// Compose files: also deploy the services of this profile (repeatable).
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Compose files: keys berth cannot honour are warnings (and left out), not errors.
    #[arg(long, global = true)]
    pub lenient: bool,
    /// Set an interpolation variable; wins over the environment, `.env` and `[vars]`.
    #[arg(long = "set", global = true, value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Where berth keeps instance specs, revisions, locks and keys.
    #[arg(long, global = true, env = "BERTH_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// How berth reaches each swarm node's engine (default: nodes.toml in
    /// the state directory).
    #[arg(long, global = true, env = "BERTH_NODES", value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// Where systemd units are written.
    #[arg(long, global = true, env = "BERTH_UNIT_DIR", default_value = DEFAULT_UNIT_DIR)]
    pub unit_dir: PathBuf,
    /// More log output (-v info, -vv debug, -vvv trace). `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Toml,
    Yaml,
    Json,
    /// A Compose file.
    Compose,
}

impl From<FileFormat> for deployment::Format {
    fn from(f: FileFormat) -> Self {
        match f {
            FileFormat::Toml => deployment::Format::Toml,
            FileFormat::Yaml => deployment::Format::Yaml,
            FileFormat::Json => deployment::Format::Json,
            FileFormat::Compose => deployment::Format::Compose,
        }
    }
}

/// How listings are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the deployment file; every error with file:line:col.
    Validate(validate::ValidateArgs),
    /// Print the resolved model and the unit files; touches nothing.
    Render(render::RenderArgs),
    /// What `apply` would change on this host (exit 0: nothing, 3: changes).
    Plan(plan::PlanArgs),
    /// Make the host match the deployment file.
    Apply(apply::ApplyArgs),
    /// Supervise the whole deployment in the foreground until Ctrl-C.
    Up(up::UpArgs),
    /// List instances and their state.
    Ps(ps::PsArgs),
    /// Show a service's output.
    Logs(logs::LogsArgs),
    /// Run a command (default: a shell) in a service's container.
    Exec(exec::ExecArgs),
    /// Start stopped services.
    Start(start_stop::StartStopArgs),
    /// Stop services; they stay stopped until started.
    Stop(start_stop::StartStopArgs),
    /// Restart services with fresh containers.
    Restart(start_stop::StartStopArgs),
    /// Remove the deployment from this host; volumes are kept unless asked.
    Destroy(destroy::DestroyArgs),
    /// Run one instance: the main process of a generated systemd unit.
    Supervise(supervise::SuperviseArgs),
    /// The built-in SSH server: `ssh <service>@host` lands in that container.
    SshGateway(ssh_gateway::SshGatewayArgs),
    /// Print the keys granted to a login, for OpenSSH's AuthorizedKeysCommand.
    AuthorizedKeys(authorized_keys::AuthorizedKeysArgs),
    /// Check that this host is ready for berth.
    Doctor(doctor::DoctorArgs),
    /// Write the deployment for another engine (Compose, Quadlet) or as berth TOML.
    Convert(convert::ConvertArgs),
    /// Print the JSON Schema of the deployment file.
    Schema(schema::SchemaArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Write the man pages of berth and every command into a directory.
    #[command(hide = true)]
    ManPages(man_pages::ManPagesArgs),
    /// Save the volumes of services into one archive.
    Backup(backup::BackupArgs),
    /// Put a backup's volumes back (checksums verified first).
    Restore(restore::RestoreArgs),
    /// List the volume snapshots kept in the state directory.
    Snapshots(snapshots::SnapshotsArgs),
    /// List the applied revisions of the deployment.
    History(history::HistoryArgs),
    /// Return to an earlier applied revision (images and spec, optionally data).
    Rollback(rollback::RollbackArgs),
    /// Move a swarm service and its volumes to another node.
    Move(move_::MoveArgs),
    /// Move services to the digest their image tag names now; roll back
    /// one that is not healthy, with its data.
    Update(update::UpdateArgs),
}

/// The deployment file when none is named; without it, a Compose file
/// (`compose.yaml`, ...) in the same directory is read instead.
pub const DEFAULT_FILE: &str = "berth.toml";

/// What every command gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    pub global: GlobalArgs,
    /// The command runs against a swarm (`--target swarm`): the file is read
    /// for one ([`deployment::LoadOptions::swarm`]).
    pub swarm: bool,
}

impl Context {
    /// This context for a command with `--target target`.
    pub fn for_target(&self, target: plan::TargetArg) -> Context {
        Context {
            global: self.global.clone(),
            swarm: target == plan::TargetArg::Swarm,
        }
    }

    pub fn state_dir(&self) -> StateDir {
        StateDir::new(&self.global.state_dir)
    }

    /// Where a data command (backup, restore) works: `--target`, else where
    /// the deployment was applied.
    pub fn site_request(&self, target: plan::TargetArg) -> crate::data::instances::SiteRequest {
        crate::data::instances::SiteRequest {
            swarm: target == plan::TargetArg::Swarm,
            nodes: self.nodes_file(),
        }
    }

    /// The engines of the swarm `manager` manages, reached through the
    /// nodes file (`--nodes`, else the state directory's).
    pub async fn node_engines(
        &self,
        manager: &crate::engine::Engine,
    ) -> Result<crate::engine::nodes::NodeEngines> {
        let file = crate::engine::nodes::NodesFile::load(&self.nodes_file())?;
        crate::engine::nodes::NodeEngines::new(manager, file).await
    }

    /// The nodes file: `--nodes`, else the state directory's.
    pub fn nodes_file(&self) -> PathBuf {
        self.global
            .nodes
            .clone()
            .unwrap_or_else(|| self.state_dir().nodes_file())
    }

    /// The nodes file, read (`--nodes`, else the state directory's).
    pub fn load_nodes_file(&self) -> Result<crate::engine::nodes::NodesFile> {
        crate::engine::nodes::NodesFile::load(&self.nodes_file())
    }

    /// Parse `--set` arguments.
    pub fn set_vars(&self) -> Result<Vec<(String, String)>> {
        self.global
            .set
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(Error::Usage(format!(
                    "--set {kv:?}: expected VAR=VALUE, for example --set DOMAIN=example.org"
                ))),
            })
            .collect()
    }

    /// Options for reading the deployment file named by `-f`.
    pub fn load_options(&self) -> Result<deployment::LoadOptions> {
        Ok(deployment::LoadOptions {
            file: self.global.file.clone(),
            name: self.global.name.clone(),
            set: self.set_vars()?,
            env: std::env::vars().collect(),
            format: self.global.format.map(Into::into),
            compose: deployment::compose::ComposeOptions {
                profiles: self.global.profiles.clone(),
                lenient: self.global.lenient,
            },
            swarm: self.swarm,
        })
    }

    /// Read, interpolate and validate the deployment file.
    pub fn load_deployment(&self) -> Result<Deployment> {
        Ok(deployment::load(&self.load_options()?)?)
    }

    /// [`Context::load_deployment`], printing the file's warnings (for the
    /// commands that check or apply it: validate, render, plan, apply, up).
    pub fn load_deployment_warned(&self) -> Result<Deployment> {
        let loaded = deployment::load_checked(&self.load_options()?)?;
        print_warnings(&loaded.warnings);
        Ok(loaded.deployment)
    }
}

/// Print a file's warnings on stderr (in colour on a terminal, never with `NO_COLOR`).
pub(crate) fn print_warnings(warnings: &deployment::SpecWarnings) {
    if warnings.0.is_empty() {
        return;
    }
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    eprintln!("{}", warnings.render(color));
}

/// Parse the command line, run the command, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(logs::follow_short_flag(std::env::args_os()));
    init_tracing(cli.global.verbose);
    let mut global = cli.global.clone();
    // Not named (`-f`, BERTH_FILE): berth.toml, else a Compose file here.
    if global.file.as_os_str() == DEFAULT_FILE && std::env::var_os("BERTH_FILE").is_none() {
        global.file = deployment::compose::default_file(Path::new(DEFAULT_FILE));
    }
    let ctx = Context {
        global,
        swarm: false,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(ctx, cli.command)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    };
    crate::stdout::flush();
    match crate::stdout::failure() {
        Some(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
        None => ExitCode::from(code),
    }
}

async fn run(ctx: Context, command: Command) -> Result<u8> {
    match command {
        Command::Validate(a) => validate::run(&ctx, a).await,
        Command::Render(a) => render::run(&ctx, a).await,
        Command::Plan(a) => plan::run(&ctx, a).await,
        Command::Apply(a) => apply::run(&ctx, a).await,
        Command::Up(a) => up::run(&ctx, a).await,
        Command::Ps(a) => ps::run(&ctx, a).await,
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Exec(a) => exec::run(&ctx, a).await,
        Command::Start(a) => start_stop::run(&ctx, start_stop::Action::Start, a).await,
        Command::Stop(a) => start_stop::run(&ctx, start_stop::Action::Stop, a).await,
        Command::Restart(a) => start_stop::run(&ctx, start_stop::Action::Restart, a).await,
        Command::Destroy(a) => destroy::run(&ctx, a).await,
        Command::Supervise(a) => supervise::run(&ctx, a).await,
        Command::SshGateway(a) => ssh_gateway::run(&ctx, a).await,
        Command::AuthorizedKeys(a) => authorized_keys::run(&ctx, a).await,
        Command::Doctor(a) => doctor::run(&ctx, a).await,
        Command::Convert(a) => convert::run(&ctx, a).await,
        Command::Schema(a) => schema::run(&ctx, a).await,
        Command::Completions(a) => completions::run(&ctx, a).await,
        Command::ManPages(a) => man_pages::run(&ctx, a).await,
        Command::Backup(a) => backup::run(&ctx, a).await,
        Command::Restore(a) => restore::run(&ctx, a).await,
        Command::Snapshots(a) => snapshots::run(&ctx, a).await,
        Command::History(a) => history::run(&ctx, a).await,
        Command::Rollback(a) => rollback::run(&ctx, a).await,
        Command::Update(a) => update::run(&ctx, a).await,
        Command::Move(a) => move_::run(&ctx, a).await,
    }
}

/// Print an error for the operator: spec errors as located diagnostics,
/// everything else with its chain of causes.
fn report(e: &Error) {
    match e {
        Error::Spec(errors) => eprintln!("{errors}"),
        other => {
            let mut msg = format!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = crate::echo::lines(&s.to_string());
                if !msg.contains(&s_text) {
                    msg.push_str(&format!("\n  caused by: {s_text}"));
                }
                source = s.source();
            }
            eprintln!("{msg}");
        }
    }
    if e.exit_code() == EXIT_INVALID {
        tracing::debug!("invalid input; nothing on the host was changed");
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},berth::audit=info")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
