//! `berth doctor`.

use clap::Args;

use super::{Context, OutputFormat};
use crate::doctor;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Table for people, JSON (`{"ok": bool, "checks": [...]}`) for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(ctx: &Context, args: DoctorArgs) -> Result<u8> {
    // The deployment's ports are checked when its file exists (`-f`, default
    // berth.toml); an invalid file is reported as a problem, not a crash.
    let deployment = ctx
        .global
        .file
        .is_file()
        .then(|| ctx.load_deployment().map_err(|e| e.to_string()));
    let opts = doctor::Options {
        state_dir: ctx.global.state_dir.clone(),
        unit_dir: ctx.global.unit_dir.clone(),
        nodes_file: ctx.nodes_file(),
        deployment,
    };
    let report = doctor::run(&opts).await;
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| crate::Error::Runtime(format!("cannot encode JSON: {e}")))?;
            println!("{text}");
        }
        OutputFormat::Table => print!("{}", doctor::render(&report)),
    }
    Ok(if report.ok { 0 } else { 1 })
}
