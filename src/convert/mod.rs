//! `berth convert`: a loaded deployment written for another engine
//! (Compose, Quadlet) or as berth's own TOML, with a [`Report`] of every
//! field the target has no place for. Pure: it returns the files, the
//! command writes them.

mod compose;
mod kubernetes;
mod quadlet;
mod report;
mod toml;

pub use report::{Loss, Report};

use crate::deployment::{Deployment, FileKind};
use crate::error::{Error, Result};

/// The formats `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Compose,
    Toml,
    Quadlet,
    Kubernetes,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Compose => "compose",
            Target::Toml => "toml",
            Target::Quadlet => "quadlet",
            Target::Kubernetes => "kubernetes",
        }
    }
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Relative to the output directory (`compose.yaml`, `secrets/db`).
    pub path: String,
    pub content: String,
    /// Permission bits it is written with (0600 for a secret's value).
    pub mode: u32,
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The main file first.
    pub files: Vec<OutFile>,
    pub report: Report,
}

/// Convert `dep`. `to_dir`: the output goes to a directory, so configs and
/// secrets can be files beside the main one (a secret's value only ever in
/// a 0600 file, never on stdout).
pub fn convert(dep: &Deployment, target: Target, to_dir: bool) -> Result<Output> {
    let mut out = Output {
        files: vec![],
        report: Report::new(target.as_str()),
    };
    match target {
        Target::Compose => compose::convert(dep, to_dir, &mut out)?,
        Target::Toml => toml::convert(dep, to_dir, &mut out)?,
        Target::Quadlet => quadlet::convert(dep, &mut out)?,
        Target::Kubernetes => kubernetes::convert(dep, to_dir, &mut out)?,
    }
    out.report.files = out.files.iter().map(|f| f.path.clone()).collect();
    Ok(out)
}

/// How the output refers to a top-level config or secret.
pub(crate) enum FileRef {
    /// A file beside the main one (relative path).
    File(String),
    /// Its content, written inline (configs only).
    Content(String),
    /// A variable the operator sets to the value (secrets without a directory).
    Environment(String),
}

/// The variable a secret's value is passed in when it cannot be a file.
pub(crate) fn secret_var(name: &str) -> String {
    let up: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BERTH_SECRET_{up}")
}

/// Where the config or secret `name` goes: with a directory, a file beside
/// the main one (a secret's 0600); without, a config inline and a secret
/// through a variable (noted in the report).
pub(crate) fn file_ref(
    dep: &Deployment,
    kind: FileKind,
    name: &str,
    to_dir: bool,
    out: &mut Output,
) -> Result<FileRef> {
    let content = dep
        .file_source(kind, name)
        .map(|s| s.content.clone())
        .unwrap_or_default();
    // Names were checked when the file was loaded; a path separator here
    // would write outside the output directory.
    if crate::names::check_name(name).is_err() || name.contains('/') {
        return Err(Error::Usage(format!(
            "{} name {name:?} cannot be a file name",
            kind.as_str()
        )));
    }
    if to_dir {
        let path = format!("{}/{name}", kind.key());
        out.files.push(OutFile {
            path: path.clone(),
            content,
            mode: match kind {
                FileKind::Config => 0o644,
                FileKind::Secret => 0o600,
            },
        });
        return Ok(FileRef::File(path));
    }
    match kind {
        FileKind::Config => Ok(FileRef::Content(content)),
        FileKind::Secret => {
            let var = secret_var(name);
            out.report.note(
                None,
                format!("secrets.{name}"),
                format!("its value is not written out: set {var} to it (or give -o DIR to get it as a 0600 file)"),
            );
            Ok(FileRef::Environment(var))
        }
    }
}

#[cfg(test)]
mod tests;

/// Write the files under `dir` (made if missing), each with its mode set
/// before its content goes in, so that a secret is never readable by
/// others, not even for a moment in a file that was there before.
pub fn write_to(dir: &std::path::Path, files: &[OutFile]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &std::path::Path, e: std::io::Error| {
        Error::Runtime(format!("cannot write {}: {e}", crate::echo::path(what)))
    };
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(f.mode)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| io(&path, e))?;
        file.set_len(0).map_err(|e| io(&path, e))?;
        file.write_all(f.content.as_bytes())
            .map_err(|e| io(&path, e))?;
    }
    Ok(())
}
