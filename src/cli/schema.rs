//! `berth schema`.

use clap::Args;

use super::Context;
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub async fn run(_ctx: &Context, _args: SchemaArgs) -> Result<u8> {
    let text = serde_json::to_string_pretty(&crate::deployment::schema::json_schema())
        .map_err(|e| Error::Runtime(format!("cannot encode the schema: {e}")))?;
    println!("{text}");
    Ok(0)
}
