//! `berth render`.

use clap::Args;

use super::{Context, OutputFormat};
use crate::apply;
use crate::deployment::render::{RenderIntegration, Rendered};
use crate::error::{Error, Result};
use crate::instance::Integration;
use crate::target::systemd::unit::UnitOptions;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// What to render for: by default the integration the deployment was
    /// applied with on this host, else this host's default (as `apply`).
    #[arg(long, value_enum)]
    pub integration: Option<super::plan::IntegrationArg>,
    /// table: readable text with the unit files; json: everything, machine-readable.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(ctx: &Context, args: RenderArgs) -> Result<u8> {
    let loaded = match super::validate::load_or_report(ctx)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let dep = loaded.deployment;
    let state = ctx.state_dir();
    let integration =
        apply::effective_integration(&state, &dep.name, args.integration.map(Into::into))?;
    // The units exactly as `apply` would write them on this host.
    let opts = UnitOptions::for_host(state.root())?;
    let how = match integration {
        Integration::Systemd => RenderIntegration::Systemd(&opts),
        Integration::Docker => RenderIntegration::Docker,
        Integration::Foreground => RenderIntegration::Foreground,
        Integration::Swarm => {
            return Err(Error::Usage(format!(
                "{} was last applied to a swarm; render shows what a host runs (give --integration)",
                dep.name
            )));
        }
    };
    let mut rendered = Rendered::build(&dep, how).with_warnings(&loaded.warnings);
    if let RenderIntegration::Systemd(opts) = how {
        let unit_dir = std::path::absolute(&ctx.global.unit_dir)
            .map_err(|e| Error::io(&ctx.global.unit_dir, e))?;
        rendered = rendered
            .with_schedule_units(crate::target::systemd::timer::render(&dep, opts, &unit_dir));
    }
    match args.output {
        OutputFormat::Table => print!("{}", rendered.text()),
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&rendered).map_err(|e| {
                Error::Runtime(format!("cannot encode the rendered deployment: {e}"))
            })?;
            println!("{text}");
        }
    }
    Ok(0)
}
