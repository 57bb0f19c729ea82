//! `berth convert`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Context, OutputFormat};
use crate::convert::{self, Target};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ToArg {
    /// A Compose file (compose.yaml).
    Compose,
    /// Kubernetes manifests (kubernetes.yaml; Secrets in secrets.yaml, only with -o).
    Kubernetes,
    /// podman Quadlet units (.container, .volume, .network); needs -o.
    Quadlet,
    /// berth's own TOML (berth.toml).
    Toml,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The format to write.
    #[arg(long, value_enum)]
    pub to: ToArg,
    /// Write into this directory (made if missing); configs and secrets
    /// become files beside the main one, a secret's value mode 0600.
    /// Without it, the one file goes to stdout.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Fail (exit 1, nothing written) when any field cannot be carried.
    #[arg(long)]
    pub strict: bool,
    /// The loss report: text, or json (on stdout with -o, else on stderr).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(ctx: &Context, args: ConvertArgs) -> Result<u8> {
    let loaded = match super::validate::load_or_report(ctx)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let target = match args.to {
        ToArg::Compose => Target::Compose,
        ToArg::Quadlet => Target::Quadlet,
        ToArg::Kubernetes => Target::Kubernetes,
        ToArg::Toml => Target::Toml,
    };
    let out = convert::convert(&loaded.deployment, target, args.out_dir.is_some())?;
    if args.out_dir.is_none() && out.files.len() > 1 {
        return Err(Error::Usage(format!(
            "--to {} writes {} files: give -o DIR",
            target.as_str(),
            out.files.len()
        )));
    }
    let report = match args.output {
        OutputFormat::Table => out.report.text(),
        OutputFormat::Json => serde_json::to_string_pretty(&out.report)
            .map_err(|e| Error::Runtime(format!("cannot encode the report: {e}")))?,
    };
    let failed = args.strict && !out.report.losses.is_empty();
    let json_on_stdout = args.output == OutputFormat::Json && args.out_dir.is_some();
    if json_on_stdout {
        println!("{report}");
    } else {
        eprintln!("{}", report.trim_end());
    }
    if failed {
        eprintln!(
            "error: --strict: {} field(s) cannot be carried to {}; nothing written",
            out.report.losses.len(),
            target.as_str()
        );
        return Ok(1);
    }
    match &args.out_dir {
        Some(dir) => convert::write_to(dir, &out.files)?,
        None => {
            for f in &out.files {
                print!("{}", f.content);
            }
        }
    }
    Ok(0)
}
