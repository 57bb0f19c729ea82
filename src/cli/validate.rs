//! `berth validate`.

use clap::Args;

use super::{Context, OutputFormat};
use crate::deployment::{self, Loaded};
use crate::error::{EXIT_INVALID, Result};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// text, or json: `{"valid", "file", "errors", "warnings", ...}` with
    /// every problem as `{severity, file, line, column, message, help}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Check the file for this host, or for a Docker Swarm (where each task
    /// binds its host ports on its own node).
    #[arg(long, value_enum, env = "BERTH_TARGET", default_value_t = super::plan::TargetArg::Host)]
    pub target: super::plan::TargetArg,
}

pub async fn run(ctx: &Context, args: ValidateArgs) -> Result<u8> {
    let ctx = &ctx.for_target(args.target);
    if args.output == OutputFormat::Json {
        return run_json(ctx);
    }
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

/// `validate --output json`: the verdict on stdout, exit 2 when invalid.
fn run_json(ctx: &Context) -> Result<u8> {
    let (value, code) = match deployment::load_checked(&ctx.load_options()?) {
        Ok(Loaded {
            deployment: dep,
            warnings,
        }) => (
            serde_json::json!({
                "valid": true,
                "file": ctx.global.file,
                "deployment": dep.name,
                "services": dep.services.len(),
                "instances": dep.instances().len(),
                "errors": [],
                "warnings": warning_list(&warnings),
            }),
            0,
        ),
        Err(errors) => {
            let list: Vec<deployment::Diagnostic> =
                errors.0.iter().map(|e| e.diagnostic()).collect();
            (
                serde_json::json!({
                    "valid": false,
                    "file": ctx.global.file,
                    "errors": list,
                    // An invalid file's warnings are not worked out.
                    "warnings": [],
                }),
                EXIT_INVALID,
            )
        }
    };
    let text = serde_json::to_string_pretty(&value)
        .map_err(|e| crate::Error::Runtime(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(code)
}

/// Warnings in the same shape as errors.
fn warning_list(warnings: &deployment::SpecWarnings) -> Vec<deployment::Diagnostic> {
    warnings
        .0
        .iter()
        .map(|w| deployment::Diagnostic {
            severity: "warning",
            ..w.diagnostic()
        })
        .collect()
}

/// Load the deployment file and print its warnings; if it is invalid, print
/// every problem (in colour on a terminal, never with `NO_COLOR`) and give
/// the exit code.
pub(super) fn load_or_report(ctx: &Context) -> Result<std::result::Result<Loaded, u8>> {
    match deployment::load_checked(&ctx.load_options()?) {
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
