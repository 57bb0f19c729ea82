//! `berth history [--output json]`: the applied revisions kept for a deployment.

use clap::Args;

use super::{Context, OutputFormat};
use crate::data::lifecycle;
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Table for people, JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(ctx: &Context, args: HistoryArgs) -> Result<u8> {
    let deployment = super::backup::deployment_name(ctx)?;
    let state = ctx.state_dir();
    let revisions = lifecycle::history(&state, &deployment)?;
    let current = state.read_current(&deployment)?.map(|r| r.revision);
    match args.output {
        OutputFormat::Json => {
            let list: Vec<serde_json::Value> = revisions
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "revision": r.revision,
                        "applied_at": r.applied_at,
                        "integration": r.integration,
                        "cause": r.cause.as_deref().unwrap_or("apply"),
                        "current": Some(r.revision) == current,
                        "images": r.deployment.services.iter()
                            .map(|(n, s)| (n.clone(), serde_json::json!({
                                "image": s.image,
                                "image_id": r.image_ids.get(n),
                            })))
                            .collect::<serde_json::Map<_, _>>(),
                    })
                })
                .collect();
            let json = serde_json::to_string_pretty(&list)
                .map_err(|e| Error::Runtime(format!("cannot print JSON: {e}")))?;
            println!("{json}");
        }
        OutputFormat::Table => {
            println!(
                "{:>8}  {:<20}  {:<11}  {:<24}  IMAGES",
                "REVISION", "APPLIED", "INTEGRATION", "CAUSE"
            );
            for r in &revisions {
                let images: Vec<String> = r
                    .deployment
                    .services
                    .iter()
                    .map(|(n, s)| {
                        let id = r
                            .image_ids
                            .get(n)
                            .map(|i| {
                                let short = i.strip_prefix("sha256:").unwrap_or(i);
                                format!(" ({})", &short[..short.len().min(12)])
                            })
                            .unwrap_or_default();
                        format!("{n}={}{id}", s.image)
                    })
                    .collect();
                // Digests in a cause are cut as image IDs are.
                let cause = r.cause.as_deref().unwrap_or("apply");
                let cause = shorten_digests(cause);
                println!(
                    "{:>8}{} {:<20}  {:<11}  {:<24}  {}",
                    r.revision,
                    if Some(r.revision) == current {
                        "*"
                    } else {
                        " "
                    },
                    r.applied_at,
                    r.integration,
                    cause,
                    images.join(", ")
                );
            }
        }
    }
    Ok(0)
}

/// `sha256:` followed by 64 hex digits, cut to 12 of them.
fn shorten_digests(text: &str) -> String {
    text.split(' ')
        .map(|w| match w.strip_prefix("sha256:") {
            Some(hex) => match hex.get(..12) {
                Some(short) if hex.len() > 12 => format!("sha256:{short}"),
                _ => w.to_string(),
            },
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
