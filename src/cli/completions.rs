//! `berth completions SHELL`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Context, VERSION};
use crate::error::Result;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub async fn run(_ctx: &Context, args: CompletionsArgs) -> Result<u8> {
    let mut cmd = public_command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "berth", &mut script);
    crate::stdout::write_bytes(&script);
    Ok(0)
}

/// berth's command line without its hidden commands: clap_complete offers
/// every subcommand, hidden or not, and `man-pages` is for packaging only.
fn public_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("berth")
        .version(VERSION)
        .propagate_version(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}
