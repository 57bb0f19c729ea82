//! The deployment file: formats (TOML, YAML, JSON, geard JSON), interpolation,
//! validation, and the resolved [`Deployment`] model they all map onto.
//!
//! Entry point: [`load`]. Every problem in the input is collected and
//! returned at once as [`SpecErrors`], each located in its file.

mod check;
pub mod compose;
mod danger;
mod decode;
pub use decode::is_container_key;
pub mod dotenv;
mod files;
mod geard;
pub mod interpolate;
mod json;
pub mod keys;
pub mod model;
pub mod placement;
pub use placement::Constraint;
pub mod render;
pub mod schedule;
pub mod schema;
mod source;
pub mod stored;
mod toml;
mod tree;
pub mod values;
mod yaml;

pub use model::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::echo;
use crate::input::{self, InputError};

use source::Source;
use tree::{Node, Span, Value};

/// How to read a deployment file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The deployment file.
    pub file: PathBuf,
    /// Deployment name override (`--name`); geard files take the file stem otherwise.
    pub name: Option<String>,
    /// `--set VAR=value`, highest precedence.
    pub set: Vec<(String, String)>,
    /// The process environment to interpolate from (`std::env::vars()` in the
    /// binary; tests pass their own).
    pub env: std::collections::BTreeMap<String, String>,
    /// `--format`: the file's format when its name does not say it.
    pub format: Option<Format>,
    /// How to read a Compose file (`--profile`, `--lenient`).
    pub compose: compose::ComposeOptions,
    /// The deployment runs on a swarm (`--target swarm`): a host port is
    /// bound on each node a task runs on, so the one-host rules of published
    /// ports (a fixed host port published by one instance, and by one
    /// service) give way to the swarm target's placement check in `plan`.
    pub swarm: bool,
}

/// One problem found in the input, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file the problem is in (deployment file, `.env`, an `env_file`), or
    /// `None` for problems with `--set` arguments.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub line: usize,
    pub column: usize,
    /// The source line, for the snippet (escaped, and a window of it for
    /// long lines); never a line of an env file.
    pub snippet: Option<String>,
    /// 1-based column of the caret within `snippet` (differs from `column`
    /// when a long line is shown in part).
    pub snippet_column: usize,
    /// What is wrong.
    pub message: String,
    /// What would fix it.
    pub help: Option<String>,
}

/// Every problem found in the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecErrors(pub Vec<SpecError>);

/// Every part of a diagnostic that can hold input (the path, the message,
/// the help, the source line) is shown through [`crate::echo`], here and
/// only here: escaped, quoted values and long lines capped.
impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write_as(f, "error")
    }
}

impl SpecError {
    /// The located form, as an `error` or a `warning`.
    fn write_as(&self, f: &mut std::fmt::Formatter<'_>, kind: &str) -> std::fmt::Result {
        let message = echo::line(&self.message);
        match &self.file {
            Some(p) if self.line == 0 => write!(f, "{}: {kind}: {message}", echo::path(p))?,
            Some(p) => write!(
                f,
                "{}:{}:{}: {kind}: {message}",
                echo::path(p),
                self.line,
                self.column,
            )?,
            None => write!(f, "{kind}: {message}")?,
        }
        if let Some(line) = &self.snippet {
            let (line, column) = echo::snippet(line, self.snippet_column);
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            write!(f, "\n{pad} |\n{gutter} | {line}\n{pad} | ")?;
            let caret_at: String = line
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{caret_at}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", echo::line(help))?;
        }
        Ok(())
    }
}

/// Settings of a valid file that deserve the operator's attention (they
/// hand a container power over the host), located like errors. They do not
/// make the file invalid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecWarnings(pub Vec<SpecError>);

impl std::fmt::Display for SpecWarnings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            w.write_as(f, "warning")?;
        }
        Ok(())
    }
}

impl SpecWarnings {
    /// The plain form (`Display`), or with ANSI colours for a terminal.
    pub fn render(&self, color: bool) -> String {
        colorize(&self.to_string(), color, "warning", "\x1b[1;33m")
    }
}

/// A deployment read from its file, with the warnings it deserves.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub deployment: Deployment,
    pub warnings: SpecWarnings,
}

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().take(echo::MAX_ERRORS_SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        if n > echo::MAX_ERRORS_SHOWN {
            writeln!(f, "\n... and {} more", n - echo::MAX_ERRORS_SHOWN)?;
        }
        write!(f, "{n} error{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for SpecErrors {}

/// A problem as a structured object (`berth validate --output json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: &'static str,
    /// The file it is in; `null` for `--set` arguments.
    pub file: Option<PathBuf>,
    /// 1-based; `null` when the problem concerns the whole file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl SpecError {
    /// The structured form of this error.
    pub fn diagnostic(&self) -> Diagnostic {
        let known = self.line > 0;
        Diagnostic {
            severity: "error",
            file: self.file.clone(),
            line: known.then_some(self.line),
            column: (known && self.column > 0).then_some(self.column),
            message: self.message.clone(),
            help: self.help.clone(),
        }
    }
}

impl SpecErrors {
    /// The plain form (`Display`), or the same text with ANSI colours for a
    /// terminal: `error` in red, the gutter in blue, `help` in cyan.
    pub fn render(&self, color: bool) -> String {
        colorize(&self.to_string(), color, "error", "\x1b[1;31m")
    }
}

/// Colour located diagnostics of one `kind` (`error`, `warning`): the kind in
/// `KIND_COLOR`, the gutter in blue, `help` in cyan.
fn colorize(plain: &str, color: bool, kind: &str, kind_color: &str) -> String {
    if !color {
        return plain.to_string();
    }
    const BLUE: &str = "\x1b[1;34m";
    const CYAN: &str = "\x1b[1;36m";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    let infix = format!(": {kind}: ");
    let prefix = format!("{kind}: ");
    let mut out = String::with_capacity(plain.len() + 256);
    for line in plain.lines() {
        if let Some(i) = line
            .find(&infix)
            .or_else(|| line.starts_with(&prefix).then_some(0))
        {
            let (loc, rest) = line.split_at(i);
            let msg = rest.trim_start_matches(": ").trim_start_matches(&prefix);
            let sep = if loc.is_empty() { "" } else { ": " };
            out.push_str(&format!(
                "{BOLD}{loc}{RESET}{sep}{kind_color}{kind}{RESET}: {BOLD}{msg}{RESET}"
            ));
        } else if let Some(h) = line.strip_prefix("  help: ") {
            out.push_str(&format!("  {CYAN}help{RESET}: {h}"));
        } else if let Some((gutter, rest)) = line.split_once(" |") {
            if gutter.trim().chars().all(|c| c.is_ascii_digit()) {
                let rest_colored = if gutter.trim().is_empty() && rest.contains('^') {
                    format!("{kind_color}{rest}{RESET}")
                } else {
                    rest.to_string()
                };
                out.push_str(&format!("{BLUE}{gutter} |{RESET}{rest_colored}"));
            } else {
                out.push_str(line);
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// The formats a deployment file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
    /// A Compose file (YAML in the Compose specification's shape).
    Compose,
}

impl Format {
    /// The format a file name says: Compose's own names, else the extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        if compose::is_compose_name(path) {
            return Some(Format::Compose);
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl SpecError {
    /// A problem with a whole file (it cannot be read, ...), or with the
    /// command line when `file` is `None`.
    pub fn whole_file(
        file: Option<&Path>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        SpecError {
            file: file.map(Path::to_path_buf),
            line: 0,
            column: 0,
            snippet: None,
            snippet_column: 0,
            message: message.into(),
            help: Some(help.into()),
        }
    }
}

/// Read, interpolate and validate a deployment file.
pub fn load(opts: &LoadOptions) -> Result<Deployment, SpecErrors> {
    load_checked(opts).map(|l| l.deployment)
}

/// [`load`], keeping the warnings the file deserves.
pub fn load_checked(opts: &LoadOptions) -> Result<Loaded, SpecErrors> {
    let path = &opts.file;
    let one =
        |msg: String, help: &str| SpecErrors(vec![SpecError::whole_file(Some(path), msg, help)]);
    // A device or FIFO is refused before the name is looked at: that it is
    // no file at all is what the operator needs to hear.
    let bytes = input::read_capped(path, input::MAX_DEPLOYMENT_FILE);
    if let Err(e) = &bytes
        && e.is_refusal()
    {
        return Err(one(
            format!("the deployment file {}", e.reason()),
            match e {
                InputError::TooLarge { .. } => "this does not look like a deployment file",
                _ => "pass the deployment file with -f FILE",
            },
        ));
    }
    let Some(format) = opts.format.or_else(|| Format::from_path(path)) else {
        return Err(one(
            "cannot tell the file's format from its name".into(),
            "name the deployment file *.toml, *.yaml, *.yml or *.json (a Compose file compose.yaml or docker-compose.yml), or pass --format",
        ));
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            return Err(one(
                format!("cannot read the deployment file: {}", e.reason()),
                "pass the deployment file with -f FILE (the default is berth.toml in the current directory)",
            ));
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let src = Source::new(
                path.clone(),
                String::from_utf8_lossy(e.as_bytes()).into_owned(),
            );
            return Err(SpecErrors(vec![src.error(
                Span::new(at, at + 1),
                "the file is not valid UTF-8 text",
                Some("save the file as UTF-8".into()),
            )]));
        }
    };
    load_str_checked(opts, format, text)
}

/// [`load`] for text already in memory (`opts.file` still names it, and
/// locates `.env` and `env_file`s).
pub fn load_str(
    opts: &LoadOptions,
    format: Format,
    text: String,
) -> Result<Deployment, SpecErrors> {
    load_str_checked(opts, format, text).map(|l| l.deployment)
}

/// [`load_str`], keeping the warnings the file deserves.
pub fn load_str_checked(
    opts: &LoadOptions,
    format: Format,
    text: String,
) -> Result<Loaded, SpecErrors> {
    load_text(opts, format, text, true)
}

/// [`load_str_checked`]; without `read_dotenv` no `.env` beside `opts.file`
/// is read (for text that is not a file on disk, see [`stored`]).
fn load_text(
    opts: &LoadOptions,
    format: Format,
    text: String,
    read_dotenv: bool,
) -> Result<Loaded, SpecErrors> {
    let src = Source::new(opts.file.clone(), text);
    let (tree, diags) = match format {
        Format::Toml => toml::parse(&src.text),
        Format::Yaml | Format::Compose => yaml::parse(&src.text),
        Format::Json => json::parse(&src.text),
    };
    let mut errors: Vec<SpecError> = diags.into_iter().map(|d| src.diag(d)).collect();
    let Some(mut root) = tree else {
        return Err(finish(errors));
    };
    let is_compose = format == Format::Compose;
    let geard = !is_compose && geard::is_geard(&root);

    // Variables, highest precedence first: --set, environment, .env, [vars].
    let mut layers: Vec<BTreeMap<String, String>> = Vec::new();
    let mut set = BTreeMap::new();
    for (k, v) in &opts.set {
        if interpolate::is_name(k) {
            set.insert(k.clone(), v.clone());
        } else {
            errors.push(SpecError::whole_file(
                None,
                format!("--set {k}=...: `{k}` is not a valid variable name"),
                "variable names are letters, digits and _, not starting with a digit",
            ));
        }
    }
    layers.push(set);
    layers.push(opts.env.clone());
    let base_dir = opts
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dotenv_path = base_dir.join(".env");
    let mut dotenv_vars = BTreeMap::new();
    let dotenv = if read_dotenv {
        Some(input::read_capped(&dotenv_path, input::MAX_ENV_FILE))
    } else {
        None
    };
    match dotenv {
        None => {}
        Some(Ok(bytes)) => match String::from_utf8(bytes) {
            Ok(t) => {
                let env_src = Source::env_file(dotenv_path.clone(), t);
                let (entries, diags) = dotenv::parse(&env_src.text);
                errors.extend(diags.into_iter().map(|d| env_src.diag(d)));
                for e in entries {
                    dotenv_vars.insert(e.key, e.value);
                }
            }
            Err(_) => errors.push(SpecError::whole_file(
                Some(&dotenv_path),
                "the .env file is not UTF-8 text",
                "save the .env file beside the deployment file as UTF-8, or remove it",
            )),
        },
        // No `.env` is the usual case.
        Some(Err(e)) if e.is_not_found() => {}
        Some(Err(e)) => errors.push(SpecError::whole_file(
            Some(&dotenv_path),
            if e.is_refusal() {
                format!("the .env file {}", e.reason())
            } else {
                format!("cannot read the .env file: {}", e.reason())
            },
            "make the .env file beside the deployment file a readable file of KEY=value lines, or remove it",
        )),
    }
    layers.push(dotenv_vars);
    let mut file_vars = BTreeMap::new();
    if !geard
        && !is_compose
        && let Some(Value::Map(vars)) = root
            .as_map()
            .and_then(|m| m.iter().find(|e| e.key == "vars"))
            .map(|e| &e.value.value)
    {
        for v in vars {
            let text = match &v.value.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue, // reported by the decoder
            };
            file_vars.insert(v.key.clone(), text);
        }
    }
    layers.push(file_vars);
    let lookup = |name: &str| layers.iter().find_map(|l| l.get(name).cloned());
    let mut unset = Vec::new();
    let mode = Interpolation {
        skip_vars: !geard && !is_compose,
        compose: is_compose.then_some(&mut unset),
    };
    interpolate_tree(&src, &mut root, &lookup, mode, "", &mut errors);

    let mut d = decode::Decoder::new(&src);
    d.swarm = opts.swarm;
    d.warnings.extend(unset);
    for layer in layers.iter().rev() {
        d.vars
            .extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(n) = &opts.name
        && let Err(p) = crate::names::check_name(n)
    {
        errors.push(SpecError::whole_file(
            None,
            format!("--name: deployment name `{}` {p}", n.escape_debug()),
            decode::NAME_RULES,
        ));
    }
    let decoded = if is_compose {
        d.compose = true;
        let rewritten = compose::rewrite(&mut d, &mut root, &opts.compose);
        let name = compose_name(opts, &lookup, rewritten.has_name, &mut errors);
        decode::native(&mut d, &root, name.as_deref())
    } else if geard {
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => {
                let stem = opts
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Err(p) = crate::names::check_name(&stem) {
                    errors.push(SpecError::whole_file(
                        Some(&opts.file),
                        format!(
                            "the deployment name `{}` (taken from the file name) {p}",
                            stem.escape_debug()
                        ),
                        "pass a name with --name, or rename the file",
                    ));
                }
                stem
            }
        };
        geard::decode(&mut d, &root, name)
    } else {
        decode::native(&mut d, &root, opts.name.as_deref())
    };
    if let Some((dep, spans)) = &decoded {
        check::cross(&mut d, dep, spans);
        danger::warnings(&mut d, dep, spans);
    }
    errors.append(&mut d.errors);
    match decoded {
        Some((mut dep, _)) if errors.is_empty() => {
            dep.source =
                Some(std::path::absolute(&opts.file).unwrap_or_else(|_| opts.file.clone()));
            let mut warnings = d.warnings;
            warnings.sort_by_key(|w| (w.line, w.column));
            Ok(Loaded {
                deployment: dep,
                warnings: SpecWarnings(warnings),
            })
        }
        _ => Err(finish(errors)),
    }
}

fn finish(mut errors: Vec<SpecError>) -> SpecErrors {
    // Reading order: command-line problems first, then by file and position.
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    errors.dedup();
    SpecErrors(errors)
}

/// The project name of a Compose file, by Compose's rules: `--name` (`-p`),
/// then `COMPOSE_PROJECT_NAME`, then the file's `name` (`None`: the decoder
/// reads it), then the directory's name.
fn compose_name(
    opts: &LoadOptions,
    lookup: &dyn Fn(&str) -> Option<String>,
    has_name: bool,
    errors: &mut Vec<SpecError>,
) -> Option<String> {
    if let Some(n) = &opts.name {
        return Some(n.clone());
    }
    if let Some(n) = lookup("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        if let Err(p) = crate::names::check_name(&n) {
            errors.push(SpecError::whole_file(
                None,
                format!(
                    "COMPOSE_PROJECT_NAME: deployment name `{}` {p}",
                    n.escape_debug()
                ),
                decode::NAME_RULES,
            ));
        }
        return Some(n);
    }
    if has_name {
        return None;
    }
    let dir = std::path::absolute(&opts.file)
        .ok()
        .and_then(|p| {
            p.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let n = compose::project_name_from_dir(&dir);
    if let Err(p) = crate::names::check_name(&n) {
        errors.push(SpecError::whole_file(
            Some(&opts.file),
            format!(
                "the deployment name `{}` (taken from the directory's name) {p}",
                n.escape_debug()
            ),
            "give the file a top-level `name`, or pass --name",
        ));
    }
    Some(n)
}

/// How [`interpolate_tree`] treats the file.
struct Interpolation<'u> {
    /// Leave the top-level `vars` as written (native files).
    skip_vars: bool,
    /// Compose's rules; the undefined variables are collected here as warnings.
    compose: Option<&'u mut Vec<SpecError>>,
}

/// Interpolate every string value (not keys; not `vars` itself). `path`
/// names the value in errors (`services.web.env.DOMAIN`).
fn interpolate_tree(
    src: &Source,
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    mut mode: Interpolation,
    path: &str,
    errors: &mut Vec<SpecError>,
) {
    let skip_vars = mode.skip_vars;
    match &mut node.value {
        Value::Str(s) => {
            if s.contains('$') {
                let done = match mode.compose.as_mut() {
                    None => interpolate::interpolate(s, lookup),
                    Some(warnings) => interpolate::interpolate_compose(s, lookup).map(|(v, unset)| {
                        for u in unset {
                            let at = locate_in_source(src, node.span, s, u.offset);
                            let used = if path.is_empty() {
                                String::new()
                            } else {
                                format!(" (used in `{path}`)")
                            };
                            warnings.push(src.error(
                                Span::new(at, at + 1),
                                format!("variable `{}`{used} is not set; it is taken as empty", u.variable),
                                Some(format!("set it in the environment or in a `.env` file beside the Compose file, or give a default: ${{{}:-default}}", u.variable)),
                            ));
                        }
                        v
                    }),
                };
                match done {
                    Ok(v) => *s = v,
                    Err(errs) => {
                        for e in errs {
                            let at = locate_in_source(src, node.span, s, e.offset);
                            let message = match &e.variable {
                                Some(v) if !path.is_empty() => {
                                    format!("variable `{v}` (used in `{path}`) is not defined")
                                }
                                _ => e.message,
                            };
                            errors.push(src.error(Span::new(at, at + 1), message, Some(e.help)));
                        }
                        node.value = Value::Invalid;
                        return;
                    }
                }
            }
            if s.contains('\0') {
                // Nothing downstream (the engine, environment variables,
                // unit files) can carry a NUL byte.
                let what = if path.is_empty() {
                    "a value".to_string()
                } else {
                    format!("`{path}`")
                };
                errors.push(src.error(
                    node.span,
                    format!("{what} contains a NUL character"),
                    Some("remove the NUL (\\u0000) from the value".into()),
                ));
                node.value = Value::Invalid;
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let p = format!("{path}[{i}]");
                let m = Interpolation {
                    skip_vars: false,
                    compose: mode.compose.as_deref_mut(),
                };
                interpolate_tree(src, item, lookup, m, &p, errors);
            }
        }
        Value::Map(entries) => {
            for e in entries {
                if skip_vars && path.is_empty() && e.key == "vars" {
                    continue;
                }
                let p = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                let m = Interpolation {
                    skip_vars: false,
                    compose: mode.compose.as_deref_mut(),
                };
                interpolate_tree(src, &mut e.value, lookup, m, &p, errors);
            }
        }
        _ => {}
    }
}

/// Byte offset in the file of byte `offset` of a string value written at
/// `span`, when the value is written without escapes up to that point;
/// otherwise the start of the value.
fn locate_in_source(src: &Source, span: Span, value: &str, offset: usize) -> usize {
    let raw = src.slice(span);
    let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else if raw.starts_with('"') || raw.starts_with('\'') {
        1
    } else {
        0
    };
    let prefix = value.get(..offset).unwrap_or("");
    if raw.get(quote..).is_some_and(|r| r.starts_with(prefix)) {
        span.start + quote + prefix.len()
    } else {
        span.start
    }
}

#[cfg(test)]
mod tests;
