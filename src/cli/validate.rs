//! `berth validate`.

use clap::Args;

use super::Context;
use crate::error::{EXIT_INVALID, Result};
use crate::spec::{self, Loaded};

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub async fn run(ctx: &Context, _args: ValidateArgs) -> Result<u8> {
    let dep = match load_or_report(ctx)? {
        Ok(loaded) => loaded.deployment,
        Err(code) => return Ok(code),
    };
    let instances = dep.instances().len();
    let services = dep.services.len();
    println!(
        "ok: {}: deployment {}, {} service{}, {} instance{}",
        ctx.global.file.display(),
        dep.name,
        services,
        if services == 1 { "" } else { "s" },
        instances,
        if instances == 1 { "" } else { "s" },
    );
    Ok(0)
}

/// Load the deployment file and print its warnings; if it is invalid, print
/// every problem (in colour on a terminal, never with `NO_COLOR`) and give
/// the exit code.
pub(super) fn load_or_report(ctx: &Context) -> Result<std::result::Result<Loaded, u8>> {
    match spec::load_checked(&ctx.load_options()?) {
        Ok(loaded) => {
            super::print_warnings(&loaded.warnings);
            Ok(Ok(loaded))
        }
        Err(errors) => {
            let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none();
            eprintln!("{}", errors.render(color));
            Ok(Err(EXIT_INVALID))
        }
    }
}
