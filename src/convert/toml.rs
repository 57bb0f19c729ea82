//! `--to toml`: berth's own file, which loads back to the same model. The
//! file form is the one stored deployments are checked with (one mapping
//! of the model to a file); only secrets are written differently, so their
//! values never land in the main file.

use serde_json::{Map, Value, json};

use super::{FileRef, OutFile, Output, file_ref};
use crate::deployment::{Deployment, FileKind};
use crate::error::{Error, Result};

/// The main file's name.
pub const FILE: &str = "berth.toml";

pub(super) fn convert(dep: &Deployment, to_dir: bool, out: &mut Output) -> Result<()> {
    let mut form = crate::deployment::stored::file_form(dep);
    if let Some(top) = form.as_object_mut()
        && !dep.secrets.is_empty()
    {
        let mut secrets = Map::new();
        for name in dep.secrets.keys() {
            let v = match file_ref(dep, FileKind::Secret, name, to_dir, out)? {
                FileRef::File(p) => json!({ "file": p }),
                FileRef::Environment(var) => json!({ "environment": var }),
                FileRef::Content(_) => {
                    return Err(Error::Runtime("a secret is never written inline".into()));
                }
            };
            secrets.insert(name.clone(), v);
        }
        top.insert("secrets".into(), Value::Object(secrets));
    }
    if !dep.deployment_keys.is_empty() {
        out.report.lose(
            None,
            "deployment_keys",
            "geard's deployment-wide keys have no native form; add them to [keys] and each service's ssh list",
        );
    }
    let text = toml::to_string(&form)
        .map_err(|e| Error::Runtime(format!("cannot write the TOML file: {e}")))?;
    out.files.insert(
        0,
        OutFile {
            path: FILE.into(),
            content: text,
            mode: 0o644,
        },
    );
    Ok(())
}
