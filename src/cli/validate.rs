//! `berth validate`.

use clap::Args;

use super::Context;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub async fn run(ctx: &Context, _args: ValidateArgs) -> Result<u8> {
    let dep = ctx.load_deployment()?;
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
