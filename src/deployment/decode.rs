//! Decoding the spanned value tree into the model, collecting every error
//! with its location. Shared by the native format and geard's.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::SpecError;
use super::dotenv;
use super::files;
use super::interpolate::is_name;
use super::model::*;
use super::source::Source;
use super::tree::{Entry, Node, Span, Value};
use super::values::{self, Problem};
use crate::names::check_name;

pub const NAME_RULES: &str = "names are letters, digits, `_`, `-` and `.`, start with a letter or digit and are at most 63 characters long (they become container, unit and volume names)";

/// Where the parts of a service that other services refer to were written.
#[derive(Debug, Default, Clone)]
pub struct ServiceSpans {
    pub name: Span,
    pub count: Option<Span>,
    /// One span per entry in `Service::ports` (an entry with a range repeats its span).
    pub ports: Vec<Span>,
    pub links: Vec<Span>,
    pub ssh: Vec<Span>,
    /// One span per entry in `Service::volumes`.
    pub volumes: Vec<Span>,
    /// One span per entry in `Service::cap_add`.
    pub cap_add: Vec<Span>,
    pub privileged: Option<Span>,
    /// Every config and secret a service mounts: kind, name, where named.
    pub file_sources: Vec<(FileKind, String, Span)>,
}

/// Collects errors while decoding one file.
pub struct Decoder<'a> {
    pub src: &'a Source,
    pub errors: Vec<SpecError>,
    /// Settings that are valid but deserve the operator's attention.
    pub warnings: Vec<SpecError>,
    /// The deployment file's directory, for `env_file`.
    pub base_dir: PathBuf,
    /// Keys that are defined but invalid (already reported): `ssh` entries
    /// naming them are not reported again as undefined.
    pub bad_keys: Vec<String>,
    /// Known keys an unknown key was taken for a typo of: "missing" errors
    /// for them would only repeat the typo.
    pub suggested: Vec<&'static str>,
    /// The variables (every source merged), for `environment` of a config
    /// or secret.
    pub vars: BTreeMap<String, String>,
    /// Reading a Compose file: its key names are taken for the native ones
    /// (see [`super::compose::canonical`]).
    pub compose: bool,
    /// For a swarm ([`super::LoadOptions::swarm`]).
    pub swarm: bool,
}

impl<'a> Decoder<'a> {
    pub fn new(src: &'a Source) -> Self {
        let base_dir = src.path.parent().map(Path::to_path_buf).unwrap_or_default();
        Decoder {
            src,
            errors: Vec::new(),
            warnings: Vec::new(),
            base_dir,
            bad_keys: Vec::new(),
            suggested: Vec::new(),
            vars: BTreeMap::new(),
            compose: false,
            swarm: false,
        }
    }

    /// The native key an entry's key stands for (itself, but for Compose files).
    pub fn key<'k>(&self, k: &'k str) -> &'k str {
        if self.compose {
            super::compose::canonical(k)
        } else {
            k
        }
    }

    pub fn err(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        let e = self.src.error(span, message, Some(help.into()));
        self.errors.push(e);
    }

    pub fn warn(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        let w = self.src.error(span, message, Some(help.into()));
        self.warnings.push(w);
    }

    pub fn problem(&mut self, span: Span, p: Problem) {
        self.err(span, p.message, p.help);
    }

    pub fn type_err(&mut self, n: &Node, what: &str, expected: &str, help: &str) {
        if n.value == Value::Invalid {
            return;
        }
        let found = match &n.value {
            Value::Str(s) => format!("the string {s:?}"),
            other => other.kind().to_string(),
        };
        self.err(
            n.span,
            format!("`{what}` must be {expected}, found {found}"),
            help,
        );
    }

    /// Report a key that is not one of `known`, suggesting the closest.
    pub fn unknown_key(&mut self, e: &Entry, known: &[&'static str], context: &str) {
        let help = match suggest(&e.key, known.iter().copied()) {
            Some(s) => {
                self.suggested.push(s);
                format!("did you mean `{s}`?")
            }
            None => match compose_alias(&e.key) {
                Some(h) => h.to_string(),
                None => format!("known keys {context}: {}", known.join(", ")),
            },
        };
        self.err(
            e.key_span,
            format!("unknown key `{}` {context}", e.key),
            help,
        );
    }

    pub fn map<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &n.value {
            Value::Map(m) => Some(m),
            _ => {
                self.type_err(
                    n,
                    what,
                    "a table (mapping)",
                    "write a table of keys and values here",
                );
                None
            }
        }
    }

    /// The document itself, which must be a mapping.
    pub fn root_map<'n>(&mut self, n: &'n Node) -> Option<&'n [Entry]> {
        match &n.value {
            Value::Map(m) => Some(m),
            other => {
                self.err(
                    n.span,
                    format!("the deployment file must be a table of keys and values, found {}", other.kind()),
                    "start from `name` and `services`, e.g. name = \"demo\" and a [services.web] table",
                );
                None
            }
        }
    }

    pub fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_err(n, what, "a string", string_help(n));
                None
            }
        }
    }

    /// A string, or a number taken as its text (`user = 1000`).
    pub fn string_or_number(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => {
                self.type_err(n, what, "a string", string_help(n));
                None
            }
        }
    }

    /// A whole number; a string holding one is accepted too, so that
    /// `count = "${COUNT}"` works.
    pub fn integer(&mut self, n: &Node, what: &str) -> Option<i64> {
        match &n.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse::<i64>().ok(),
            _ => {
                self.type_err(n, what, "a whole number", "write a number such as 2");
                None
            }
        }
    }

    /// A boolean written as a boolean: `true` or `false`, not a string.
    pub fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match &n.value {
            Value::Bool(b) => Some(*b),
            _ => {
                let key = what.rsplit('.').next().unwrap_or(what);
                self.type_err(
                    n,
                    what,
                    "the boolean true or false",
                    &format!("write {key} = true or {key} = false, without quotes"),
                );
                None
            }
        }
    }

    /// A list of strings. Numbers are taken as their text (`ports = [80]`).
    pub fn string_list(&mut self, n: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        let Value::Seq(items) = &n.value else {
            self.type_err(n, what, "a list", "write a list, e.g. [\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match &item.value {
                Value::Str(s) => out.push((s.clone(), item.span)),
                Value::Int(v) => out.push((v.to_string(), item.span)),
                _ => self.type_err(item, &format!("{what}[{i}]"), "a string", string_help(item)),
            }
        }
        Some(out)
    }

    /// A single string or a list of strings.
    pub fn string_or_list(&mut self, n: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        match &n.value {
            Value::Str(s) => Some(vec![(s.clone(), n.span)]),
            Value::Seq(_) => self.string_list(n, what),
            _ => {
                self.type_err(
                    n,
                    what,
                    "a string or a list of strings",
                    "write \"a\" or [\"a\", \"b\"]",
                );
                None
            }
        }
    }

    /// A scalar taken as text, for environment and label values.
    pub fn scalar_text(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => {
                self.err(
                    n.span,
                    format!("`{what}` has no value"),
                    "write an empty string \"\" for an empty value",
                );
                None
            }
            _ => {
                self.type_err(n, what, "a string", string_help(n));
                None
            }
        }
    }

    pub fn name(&mut self, name: &str, span: Span, kind: &str) -> bool {
        match check_name(name) {
            Ok(()) => true,
            Err(p) => {
                self.err(
                    span,
                    format!("{kind} name `{}` {p}", name.escape_debug()),
                    NAME_RULES,
                );
                false
            }
        }
    }

    /// Read one `env_file` into `env`.
    pub fn env_file(&mut self, rel: &str, span: Span, env: &mut BTreeMap<String, String>) {
        let path = self.base_dir.join(rel);
        let bytes = match crate::input::read_capped(&path, crate::input::MAX_ENV_FILE) {
            Ok(b) => b,
            Err(e) if e.is_refusal() => {
                self.err(
                    span,
                    format!("env_file `{rel}` {}", e.reason()),
                    "an env_file is a regular file of KEY=value lines",
                );
                return;
            }
            Err(e) => {
                self.err(
                    span,
                    format!("cannot read env_file `{rel}`: {}", e.reason()),
                    format!(
                        "env_file paths are relative to the deployment file's directory; berth looked for `{}`",
                        path.display()
                    ),
                );
                return;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            self.err(
                span,
                format!("env_file `{rel}` is not UTF-8 text"),
                "save the file as UTF-8",
            );
            return;
        };
        let env_src = Source::env_file(path, text);
        let (entries, diags) = dotenv::parse(&env_src.text);
        for d in diags {
            self.errors.push(env_src.diag(d));
        }
        for e in entries {
            env.insert(e.key, e.value);
        }
    }
}

/// What to do when a string was expected and something else was written.
fn string_help(n: &Node) -> &'static str {
    match n.value {
        Value::Map(_) | Value::Seq(_) => "write a single string here, e.g. \"value\"",
        _ => "put the value in quotes",
    }
}

/// The closest candidate, if it is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let lower = word.to_ascii_lowercase();
    if word.len() > 100 {
        return None;
    }
    candidates
        .take(1000)
        .filter(|c| c.len() <= 100)
        .map(|c| {
            (
                c,
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
            )
        })
        .filter(|(c, d)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| c)
}

/// Compose keys berth spells differently.
fn compose_alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "environment" => "berth calls this `env`",
        "working_dir" => "berth calls this `workdir`",
        "mem_limit" => "berth calls this `memory`",
        "depends_on" => "use `links`: a service starts after the services it links to",
        "container_name" => "berth names containers `<deployment>-<service>` itself",
        "build" => "berth deploys images; build them beforehand",
        "networks" => {
            "every deployment gets its own network, and services reach each other by name"
        }
        "expose" => "containers on the deployment's network reach each other on every port",
        _ => return None,
    })
}

/// Most published ports (after expanding ranges) one service may have.
pub const MAX_PORTS: usize = 5000;

pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "count",
    "command",
    "entrypoint",
    "ports",
    "env",
    "env_file",
    "volumes",
    "links",
    "ssh",
    "ssh_shell",
    "restart",
    "user",
    "workdir",
    "hostname",
    "labels",
    "stop_timeout",
    "stop_signal",
    "memory",
    "cpus",
    "read_only",
    "tmpfs",
    "cap_add",
    "cap_drop",
    "privileged",
    "ulimits",
    "shm_size",
    "sysctls",
    "extra_hosts",
    "dns",
    "init",
    "logging",
    "devices",
    "snapshot_on_upgrade",
    "snapshots_keep",
    "auto_update",
    "health",
    "configs",
    "secrets",
    "update_config",
    "endpoint_mode",
    "placement",
];

/// The keys of a service's `update_config` (Compose's `deploy.update_config`).
pub const UPDATE_CONFIG_KEYS: &[&str] = &[
    "parallelism",
    "delay",
    "order",
    "failure_action",
    "monitor",
    "max_failure_ratio",
];

/// The service keys that configure berth itself (access, snapshots, where
/// variables come from) rather than the container: every other key of
/// [`SERVICE_KEYS`] is part of the instance, so a change recreates it.
pub const SERVICE_KEYS_NOT_IN_CONTAINER: &[&str] = &[
    "env_file",
    "ssh",
    "ssh_shell",
    "snapshot_on_upgrade",
    "snapshots_keep",
    "auto_update",
];

/// Is `key` a service key that is part of the container (see
/// [`SERVICE_KEYS_NOT_IN_CONTAINER`])?
pub fn is_container_key(key: &str) -> bool {
    SERVICE_KEYS.contains(&key) && !SERVICE_KEYS_NOT_IN_CONTAINER.contains(&key)
}

pub const HEALTH_KEYS: &[&str] = &[
    "cmd",
    "interval",
    "timeout",
    "start_period",
    "retries",
    "on_unhealthy",
];

pub const TOP_KEYS: &[&str] = &[
    "name",
    "vars",
    "keys",
    "services",
    "snapshots_keep",
    "configs",
    "secrets",
    "notify",
    "auto_update",
    "notify_url",
];

/// Decode a native deployment file.
pub fn native(
    d: &mut Decoder,
    root: &Node,
    name_override: Option<&str>,
) -> Option<(Deployment, BTreeMap<String, ServiceSpans>)> {
    let entries = d.root_map(root)?;
    let mut name: Option<(String, Span)> = None;
    let mut keys = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut spans = BTreeMap::new();
    let mut saw_services = false;
    let mut saw_name = false;
    let mut snapshots_keep = None;
    let mut notify = None;
    let mut auto_update = None;
    let mut notify_url = None;
    let mut configs = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut bad_files = std::collections::BTreeSet::new();
    for e in entries {
        match e.key.as_str() {
            "configs" => configs = files::sources(d, &e.value, FileKind::Config, &mut bad_files),
            "secrets" => secrets = files::sources(d, &e.value, FileKind::Secret, &mut bad_files),
            "snapshots_keep" => snapshots_keep = keep_count(d, &e.value, "snapshots_keep"),
            "notify" => notify = notify_command(d, &e.value),
            "auto_update" => auto_update = auto_update_table(d, &e.value),
            "notify_url" => notify_url = webhook_url(d, &e.value),
            "name" => {
                saw_name = true;
                if let Some(n) = d.string(&e.value, "name") {
                    name = Some((n, e.value.span));
                }
            }
            "vars" => {
                // Read by the loader before interpolation; only checked here.
                if let Some(m) = d.map(&e.value, "vars") {
                    for v in m {
                        if !is_name(&v.key) {
                            d.err(
                                v.key_span,
                                format!("variable name `{}` is not valid", v.key.escape_debug()),
                                "variable names are letters, digits and _, not starting with a digit",
                            );
                        }
                        d.scalar_text(&v.value, &format!("vars.{}", v.key));
                    }
                }
            }
            "keys" => {
                if let Some(m) = d.map(&e.value, "keys") {
                    for k in m {
                        if !d.name(&k.key, k.key_span, "key") {
                            d.bad_keys.push(k.key.clone());
                            continue;
                        }
                        let Some(text) = d.string(&k.value, &format!("keys.{}", k.key)) else {
                            continue;
                        };
                        match super::keys::parse_key(&k.key, &text) {
                            Ok(key) => {
                                keys.insert(k.key.clone(), key);
                            }
                            Err(p) => {
                                d.bad_keys.push(k.key.clone());
                                d.problem(k.value.span, p);
                            }
                        }
                    }
                }
            }
            "services" => {
                saw_services = true;
                if let Some(m) = d.map(&e.value, "services") {
                    if m.is_empty() {
                        d.err(
                            e.value.span,
                            "the deployment has no services",
                            "add at least one service with an image",
                        );
                    }
                    for s in m {
                        let ok_name = d.name(&s.key, s.key_span, "service");
                        if let Some((svc, sp)) = service(d, s)
                            && ok_name
                        {
                            services.insert(s.key.clone(), svc);
                            spans.insert(s.key.clone(), sp);
                        }
                    }
                }
            }
            // Extension keys, as in Compose: room for YAML anchors and notes.
            k if k.starts_with("x-") => {}
            _ => d.unknown_key(e, TOP_KEYS, "at the top level"),
        }
    }
    if !saw_services && !d.suggested.contains(&"services") {
        d.err(
            Span::default(),
            "the deployment has no `services`",
            "add a services table with at least one service, e.g. [services.web] image = \"nginx\"",
        );
    }
    files::check_references(d, &configs, &secrets, &bad_files, &spans);
    let name = match (name_override, name) {
        (Some(n), _) => n.to_string(),
        (None, Some((n, span))) => {
            d.name(&n, span, "deployment");
            n
        }
        (None, None) if saw_name || d.suggested.contains(&"name") => String::new(),
        (None, None) => {
            d.err(
                Span::default(),
                "the deployment has no `name`",
                "add name = \"...\" at the top of the file, or pass --name",
            );
            String::new()
        }
    };
    Some((
        Deployment {
            name,
            source: None,
            keys,
            deployment_keys: Vec::new(),
            snapshots_keep,
            services,
            configs,
            secrets,
            notify,
            auto_update,
            notify_url,
        },
        spans,
    ))
}

pub const AUTO_UPDATE_KEYS: &[&str] = &["schedule", "randomized_delay", "health_timeout", "settle"];

/// The top-level `auto_update`: `true` (the default schedule), `false`
/// (none), or a table of [`AUTO_UPDATE_KEYS`].
fn auto_update_table(d: &mut Decoder, v: &Node) -> Option<AutoUpdate> {
    const HELP: &str = "write auto_update = true, or a table such as { schedule = \"daily\", randomized_delay = \"1h\" }";
    let entries = match &v.value {
        Value::Bool(true) => return Some(AutoUpdate::default()),
        Value::Bool(false) => return None,
        Value::Map(m) => m,
        _ => {
            d.type_err(v, "auto_update", "true, false or a table", HELP);
            return None;
        }
    };
    let mut a = AutoUpdate::default();
    let mut ok = true;
    for e in entries {
        let n = &e.value;
        let what = format!("auto_update.{}", e.key);
        match d.key(&e.key) {
            "schedule" => match d.string(n, &what) {
                Some(t) => match super::schedule::Schedule::parse(&t) {
                    Ok(s) => a.schedule = s,
                    Err(m) => {
                        d.err(
                            n.span,
                            format!("`{what}`: {m}"),
                            super::schedule::SCHEDULE_HELP,
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "randomized_delay" | "health_timeout" | "settle" => {
                let text = match &n.value {
                    Value::Str(s) => Some(s.clone()),
                    Value::Int(i) => Some(i.to_string()),
                    _ => {
                        d.type_err(
                            n,
                            &what,
                            "a duration",
                            "write a duration such as \"30s\" or \"1h\"",
                        );
                        None
                    }
                };
                match text.map(|t| values::parse_duration_secs(&t)) {
                    Some(Ok(secs)) if secs > 7 * 86400 => {
                        d.err(
                            n.span,
                            format!("`{what}` of {secs} seconds is longer than a week"),
                            "write a duration of at most 7 days",
                        );
                        ok = false;
                    }
                    Some(Ok(0)) if e.key == "health_timeout" => {
                        d.err(
                            n.span,
                            format!("`{what}` must be longer than 0s"),
                            "write a duration such as \"2m\"",
                        );
                        ok = false;
                    }
                    Some(Ok(secs)) => match e.key.as_str() {
                        "randomized_delay" => a.randomized_delay_secs = secs,
                        "health_timeout" => a.health_timeout_secs = Some(secs),
                        _ => a.settle_secs = Some(secs),
                    },
                    Some(Err(p)) => {
                        d.problem(n.span, p);
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            _ => {
                d.unknown_key(e, AUTO_UPDATE_KEYS, "in auto_update");
                ok = false;
            }
        }
    }
    ok.then_some(a)
}

/// `notify_url`: an absolute `http://` or `https://` URL with a host.
fn webhook_url(d: &mut Decoder, v: &Node) -> Option<String> {
    const HELP: &str = "write \"https://host/path\" (the event is POSTed to it as JSON)";
    let url = d.string(v, "notify_url")?;
    let why = match url.parse::<http::Uri>() {
        _ if !url.starts_with("http://") && !url.starts_with("https://") => {
            "must start with http:// or https://".to_string()
        }
        Err(e) => format!("is not a URL ({e})"),
        Ok(u) if u.host().is_none_or(str::is_empty) => "names no host".to_string(),
        Ok(_) => return Some(url),
    };
    d.err(v.span, format!("`notify_url` {why}"), HELP);
    None
}

/// `notify`: a shell command (run by `/bin/sh -c`) or a non-empty argv.
fn notify_command(d: &mut Decoder, v: &Node) -> Option<Vec<String>> {
    const HELP: &str =
        "write \"shell command\" (run by /bin/sh -c) or [\"/path/to/prog\", \"arg\"]";
    let argv = match &v.value {
        Value::Str(s) if !s.trim().is_empty() => {
            vec!["/bin/sh".to_string(), "-c".to_string(), s.clone()]
        }
        Value::Seq(_) => d
            .string_list(v, "notify")?
            .into_iter()
            .map(|(s, _)| s)
            .collect(),
        Value::Str(_) => {
            d.err(v.span, "`notify` is empty", HELP);
            return None;
        }
        _ => {
            d.type_err(v, "notify", "a string or a list of strings", HELP);
            return None;
        }
    };
    if argv.first().is_none_or(|p| p.is_empty()) {
        d.err(v.span, "`notify` names no program", HELP);
        return None;
    }
    Some(argv)
}

/// `snapshots_keep`: how many upgrade snapshots to keep per instance, 1 to 1000.
fn keep_count(d: &mut Decoder, v: &Node, what: &str) -> Option<usize> {
    let n = d.integer(v, what)?;
    if (1..=1000).contains(&n) {
        usize::try_from(n).ok()
    } else {
        d.err(
            v.span,
            format!("`{what}` must be between 1 and 1000, found {n}"),
            "set snapshots_keep to how many snapshots to keep per instance, e.g. 3; turn snapshots off with snapshot_on_upgrade = false",
        );
        None
    }
}

fn service(d: &mut Decoder, s: &Entry) -> Option<(Service, ServiceSpans)> {
    let sname = &s.key;
    let path = |k: &str| format!("services.{sname}.{k}");
    let entries = d.map(&s.value, &format!("services.{sname}"))?;
    let mut svc = Service::new(sname.clone(), String::new());
    let mut spans = ServiceSpans {
        name: s.key_span,
        ..Default::default()
    };
    let mut have_image = false;
    let mut env_files: Vec<(String, Span)> = Vec::new();
    let mut env_inline: Vec<(String, String)> = Vec::new();
    let mut file_mounts = Vec::new();
    let mut read_only_span = None;
    for e in entries {
        let v = &e.value;
        let what = path(&e.key);
        match d.key(&e.key) {
            "image" => {
                have_image = true;
                if let Some(img) = d.string(v, &what) {
                    match values::check_image(&img) {
                        Ok(()) => svc.image = img,
                        Err(p) => d.problem(v.span, p),
                    }
                }
            }
            "count" => {
                spans.count = Some(v.span);
                if let Some(n) = d.integer(v, &what) {
                    if (1..=i64::from(MAX_COUNT)).contains(&n) {
                        svc.count = n as u32;
                    } else {
                        d.err(
                            v.span,
                            format!("`{what}` must be between 1 and {MAX_COUNT}, found {n}"),
                            format!("set count to the number of instances to run, 1 to {MAX_COUNT}"),
                        );
                    }
                }
            }
            "command" | "entrypoint" => {
                let words = match &v.value {
                    Value::Str(s) => match values::shell_split(s) {
                        Ok(w) => Some(w),
                        Err(p) => {
                            d.problem(v.span, p);
                            None
                        }
                    },
                    Value::Seq(_) => d
                        .string_list(v, &what)
                        .map(|l| l.into_iter().map(|(s, _)| s).collect()),
                    _ => {
                        d.type_err(v, &what, "a string or a list of strings", "write \"cmd arg\" or [\"cmd\", \"arg\"]");
                        None
                    }
                };
                if e.key == "command" {
                    svc.command = words;
                } else {
                    svc.entrypoint = words;
                }
            }
            "ports" => {
                if let Some(list) = port_entries(d, v, &what) {
                    for (p, span) in list {
                        match values::parse_port(&p) {
                            Ok(maps) if svc.ports.len() + maps.len() > MAX_PORTS => {
                                d.err(
                                    span,
                                    format!("service `{sname}` publishes more than {MAX_PORTS} ports"),
                                    "publish fewer ports, or a smaller range",
                                );
                                break;
                            }
                            Ok(maps) => {
                                for m in maps {
                                    svc.ports.push(m);
                                    spans.ports.push(span);
                                }
                            }
                            Err(prob) => d.problem(span, prob),
                        }
                    }
                }
            }
            "env" => env_inline.extend(env_map(d, v, &what)),
            "env_file" => {
                if let Some(l) = d.string_or_list(v, &what) {
                    env_files.extend(l);
                }
            }
            "volumes" => {
                if let Some(list) = d.string_list(v, &what) {
                    let mut targets: HashSet<String> = HashSet::new();
                    for (entry, span) in list {
                        match values::parse_volume(&entry) {
                            Ok(m) => {
                                if !targets.insert(m.target.clone()) {
                                    d.err(
                                        span,
                                        format!("two volumes are mounted at `{}` in service `{sname}`", m.target),
                                        "mount one volume per container path",
                                    );
                                } else {
                                    svc.volumes.push(m);
                                    spans.volumes.push(span);
                                }
                            }
                            Err(p) => d.problem(span, p),
                        }
                    }
                }
            }
            "links" => {
                if let Some(list) = d.string_list(v, &what) {
                    let mut aliases: HashSet<String> = HashSet::new();
                    for (entry, span) in list {
                        match values::parse_link(&entry) {
                            Ok(l) => {
                                if !aliases.insert(l.alias.clone()) {
                                    d.err(
                                        span,
                                        format!("service `{sname}` links to the alias `{}` twice", l.alias),
                                        "give each link its own alias: \"service:alias\"",
                                    );
                                    continue;
                                }
                                svc.links.push(l);
                                spans.links.push(span);
                            }
                            Err(p) => d.problem(span, p),
                        }
                    }
                }
            }
            "ssh" => {
                if let Some(list) = d.string_list(v, &what) {
                    for (k, span) in list {
                        svc.ssh.push(k);
                        spans.ssh.push(span);
                    }
                }
            }
            "ssh_shell" => {
                if let Some(sh) = d.string(v, &what) {
                    if sh.starts_with('/') {
                        svc.ssh_shell = Some(sh);
                    } else {
                        d.err(v.span, format!("`{what}` must be an absolute path, found {sh:?}"), "write the shell's path in the container, e.g. \"/bin/bash\"");
                    }
                }
            }
            "restart" => {
                if let Some(r) = d.string(v, &what) {
                    match r.as_str() {
                        // `unless-stopped` is what `always` already means under
                        // berth: a service stopped with `berth stop` stays stopped.
                        "always" | "unless-stopped" => svc.restart = RestartPolicy::Always,
                        "on-failure" => svc.restart = RestartPolicy::OnFailure,
                        "no" | "never" => svc.restart = RestartPolicy::No,
                        other => {
                            let help = match suggest(other, ["always", "on-failure", "no"].into_iter()) {
                                Some(s) => format!("did you mean \"{s}\"? restart is \"always\" (the default), \"on-failure\" or \"no\""),
                                None => "restart is \"always\" (the default), \"on-failure\" or \"no\"".to_string(),
                            };
                            d.err(v.span, format!("unknown restart policy `{other}`"), help);
                        }
                    }
                }
            }
            "user" => {
                if let Some(u) = d.string_or_number(v, &what) {
                    let ok = !u.is_empty()
                        && u.split(':').count() <= 2
                        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
                    if ok {
                        svc.settings.user = Some(u);
                    } else {
                        d.err(v.span, format!("`{what}` {u:?} is not a user"), "write a user name or uid, optionally with a group: \"1000:1000\"");
                    }
                }
            }
            "workdir" => {
                if let Some(w) = d.string(v, &what) {
                    if w.starts_with('/') {
                        svc.settings.workdir = Some(w);
                    } else {
                        d.err(v.span, format!("`{what}` must be an absolute path, found {w:?}"), "write the directory inside the container from the root, e.g. \"/app\"");
                    }
                }
            }
            "hostname" => {
                if let Some(h) = d.string(v, &what) {
                    match values::check_hostname(&h) {
                        Ok(()) => svc.settings.hostname = Some(h),
                        Err(p) => d.problem(v.span, p),
                    }
                }
            }
            "labels" => {
                if let Some(m) = d.map(v, &what) {
                    for l in m {
                        if l.key.is_empty() || l.key.chars().any(|c| c.is_control() || c == '=') {
                            d.err(l.key_span, format!("label name {:?} is not valid", l.key), "label names are non-empty and contain no `=` or control characters");
                            continue;
                        }
                        if l.key.starts_with("berth.") {
                            d.err(l.key_span, format!("label `{}` uses the reserved prefix `berth.`", l.key), "berth sets the berth.* labels itself; choose another name");
                            continue;
                        }
                        if let Some(val) = d.scalar_text(&l.value, &format!("{what}.{}", l.key)) {
                            svc.labels.insert(l.key.clone(), val);
                        }
                    }
                }
            }
            "stop_timeout" => {
                let secs = match &v.value {
                    Value::Int(i) if *i >= 0 => Some(*i as u64),
                    Value::Int(i) => {
                        d.err(v.span, format!("`{what}` must not be negative, found {i}"), "write seconds, e.g. 30");
                        None
                    }
                    Value::Str(s) => match values::parse_duration_secs(s) {
                        Ok(n) => Some(n),
                        Err(p) => {
                            d.problem(v.span, p);
                            None
                        }
                    },
                    _ => {
                        d.type_err(v, &what, "seconds or a duration", "write 30 or \"30s\"");
                        None
                    }
                };
                if let Some(n) = secs {
                    if n > 24 * 3600 {
                        d.err(v.span, format!("`{what}` of {n} seconds is longer than a day"), "write a stop timeout of at most 86400 seconds");
                    } else {
                        svc.stop_timeout = Some(n);
                    }
                }
            }
            "stop_signal" => {
                if let Some(sig) = d.string_or_number(v, &what) {
                    match values::parse_signal(&sig) {
                        Ok(s) => svc.settings.stop_signal = Some(s),
                        Err(p) => d.problem(v.span, p),
                    }
                }
            }
            "memory" => {
                let text = match &v.value {
                    Value::Int(i) => Some(i.to_string()),
                    Value::Str(s) => Some(s.clone()),
                    _ => {
                        d.type_err(v, &what, "a size", "write a size such as \"512m\" or \"1g\"");
                        None
                    }
                };
                if let Some(t) = text {
                    match values::parse_memory(&t) {
                        Ok(b) => svc.settings.memory = Some(b),
                        Err(p) => d.problem(v.span, p),
                    }
                }
            }
            "cpus" => {
                let n = match &v.value {
                    Value::Int(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    Value::Str(s) => match s.trim().parse::<f64>() {
                        Ok(f) => Some(f),
                        Err(_) => {
                            d.type_err(v, &what, "a number", "write a number of cores, e.g. 0.5 or 2");
                            None
                        }
                    },
                    _ => {
                        d.type_err(v, &what, "a number", "write a number of cores, e.g. 0.5 or 2");
                        None
                    }
                };
                if let Some(n) = n {
                    if n.is_finite() && n > 0.0 && n <= 1024.0 {
                        svc.settings.cpus = Some(n);
                    } else {
                        d.err(v.span, format!("`{what}` must be a number of cores greater than 0, found {n}"), "write a number of cores, e.g. 0.5 or 2");
                    }
                }
            }
            "configs" | "secrets" => {
                let kind = if e.key == "configs" {
                    FileKind::Config
                } else {
                    FileKind::Secret
                };
                file_mounts.extend(files::mounts(d, v, kind, &what));
            }
            "read_only" => {
                read_only_span = Some(v.span);
                if let Some(b) = d.boolean(v, &what) {
                    svc.settings.read_only = b;
                }
            }
            "snapshot_on_upgrade" => {
                if let Some(b) = d.boolean(v, &what) {
                    svc.snapshot_on_upgrade = b;
                }
            }
            "snapshots_keep" => svc.snapshots_keep = keep_count(d, v, &what),
            "auto_update" => match &v.value {
                Value::Bool(b) => svc.auto_update = Some(*b),
                Value::Map(_) => d.err(
                    v.span,
                    format!("`{what}` takes true or false; the schedule is set for the whole deployment"),
                    "write auto_update = true here, and the schedule in the top-level [auto_update] table",
                ),
                _ => d.type_err(v, &what, "true or false", "write auto_update = true or auto_update = false"),
            },
            "privileged" => match &v.value {
                Value::Bool(b) => {
                    svc.settings.privileged = *b;
                    spans.privileged = Some(v.span);
                }
                _ => d.type_err(
                    v,
                    &what,
                    "the boolean true or false",
                    "privileged gives the container full access to the host, so it must be written exactly as privileged = true (no quotes); remove it otherwise",
                ),
            },
            "tmpfs" => {
                if let Some(l) = d.string_or_list(v, &what) {
                    for (t, span) in l {
                        let path = t.split(':').next().unwrap_or("");
                        if path.starts_with('/') {
                            svc.settings.tmpfs.push(t);
                        } else {
                            d.err(span, format!("tmpfs `{t}` is not an absolute container path"), "write \"/run\" or \"/run:size=64m\"");
                        }
                    }
                }
            }
            "cap_add" | "cap_drop" => {
                if let Some(l) = d.string_list(v, &what) {
                    let mut caps = Vec::new();
                    let mut cap_spans = Vec::new();
                    for (c, span) in l {
                        match values::parse_capability(&c) {
                            Ok(c) => {
                                caps.push(c);
                                cap_spans.push(span);
                            }
                            Err(p) => d.problem(span, p),
                        }
                    }
                    if e.key == "cap_add" {
                        svc.settings.cap_add = caps;
                        spans.cap_add = cap_spans;
                    } else {
                        svc.settings.cap_drop = caps;
                    }
                }
            }
            "health" => svc.health = health(d, v, &what),
            "update_config" => svc.update_config = update_config(d, v, &what),
            "placement" => {
                for (c, span) in d.string_list(v, &what).unwrap_or_default() {
                    match crate::deployment::Constraint::parse(&c) {
                        Ok(_) => svc.placement.push(c),
                        Err(why) => d.err(
                            span,
                            format!("placement constraint `{c}` {why}"),
                            "write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, e.g. \"node.labels.disk==ssd\", \"node.role==worker\", \"node.hostname!=node1\"",
                        ),
                    }
                }
            }
            "endpoint_mode" => {
                if let Some(m) = d.string(v, &what) {
                    match EndpointMode::parse(m.trim()) {
                        Some(m) => svc.endpoint_mode = Some(m),
                        None => d.err(
                            v.span,
                            format!("unknown endpoint mode `{m}`"),
                            "endpoint_mode is \"vip\" (one virtual address, the default) or \"dnsrr\" (the name resolves to every task's address)",
                        ),
                    }
                }
            }
            "ulimits" => svc.settings.ulimits = ulimits(d, v, &what),
            "shm_size" => {
                if let Some(t) = d.string_or_number(v, &what) {
                    match values::parse_size(&what, &t) {
                        Ok(0) => d.err(v.span, format!("`{what}` must be greater than 0"), "write a size such as \"64m\""),
                        Ok(b) => svc.settings.shm_size = Some(b),
                        Err(p) => d.problem(v.span, p),
                    }
                }
            }
            "sysctls" => {
                for (k, val, span) in map_or_list(d, v, &what, '=') {
                    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        d.err(span, format!("sysctl name {k:?} is not valid"), "write a kernel parameter name such as \"net.core.somaxconn\"");
                    } else {
                        svc.settings.sysctls.insert(k, val);
                    }
                }
            }
            "extra_hosts" => {
                for (host, ip, span) in map_or_list(d, v, &what, ':') {
                    match values::check_extra_host(&host, &ip) {
                        Ok(ip) => svc.settings.extra_hosts.push(format!("{host}:{ip}")),
                        Err(p) => d.problem(span, p),
                    }
                }
            }
            "dns" => {
                if let Some(l) = d.string_or_list(v, &what) {
                    for (ip, span) in l {
                        if ip.trim().parse::<std::net::IpAddr>().is_ok() {
                            svc.settings.dns.push(ip.trim().to_string());
                        } else {
                            d.err(span, format!("dns server `{ip}` is not an IP address"), "write an IPv4 or IPv6 address, e.g. \"1.1.1.1\"");
                        }
                    }
                }
            }
            "init" => {
                if let Some(b) = d.boolean(v, &what) {
                    svc.settings.init = Some(b);
                }
            }
            "logging" => svc.settings.logging = logging(d, v, &what),
            "devices" => {
                if let Some(l) = d.string_list(v, &what) {
                    for (dev, span) in l {
                        match values::parse_device(&dev) {
                            Ok(dev) => svc.settings.devices.push(dev),
                            Err(p) => d.problem(span, p),
                        }
                    }
                }
            }
            k if k.starts_with("x-") => {}
            _ => d.unknown_key(e, SERVICE_KEYS, &format!("in service `{sname}`")),
        }
    }
    if !have_image && !d.suggested.contains(&"image") {
        d.err(
            s.key_span,
            format!("service `{sname}` has no `image`"),
            "every service runs an image: add image = \"repository:tag\"",
        );
    }
    // env_file entries first, env on top.
    for (f, span) in env_files {
        d.env_file(&f, span, &mut svc.env);
    }
    for (k, v) in env_inline {
        svc.env.insert(k, v);
    }
    files::finish(d, &mut svc, &mut spans, file_mounts, read_only_span);
    Some((svc, spans))
}

/// `update_config`: a table of [`UPDATE_CONFIG_KEYS`], Compose's shape.
fn update_config(d: &mut Decoder, v: &Node, what: &str) -> Option<UpdateConfig> {
    let entries = d.map(v, what)?;
    let mut u = UpdateConfig::default();
    let mut ok = true;
    for e in entries {
        let n = &e.value;
        let key_what = format!("{what}.{}", e.key);
        match e.key.as_str() {
            "parallelism" => match d.integer(n, &key_what) {
                Some(p) if (0..=i64::from(MAX_COUNT)).contains(&p) => {
                    u.parallelism = Some(p as u64)
                }
                Some(p) => {
                    d.err(n.span, format!("`{key_what}` must be between 0 and {MAX_COUNT}, found {p}"), "parallelism is how many tasks are updated at once, e.g. 1 (0: all at once)");
                    ok = false;
                }
                None => ok = false,
            },
            "delay" | "monitor" => {
                let text = match &n.value {
                    Value::Str(s) => Some(s.clone()),
                    Value::Int(i) => Some(i.to_string()),
                    _ => {
                        d.type_err(
                            n,
                            &key_what,
                            "a duration",
                            "write a duration such as \"10s\" or \"500ms\"",
                        );
                        None
                    }
                };
                let zero = |t: &str| {
                    t.trim() == "0"
                        || humantime::parse_duration(t.trim()).is_ok_and(|d| d.is_zero())
                };
                let ms = match text {
                    Some(t) if zero(&t) => Some(0),
                    Some(t) => match values::parse_duration_ms(&t) {
                        Ok(ms) => Some(ms),
                        Err(p) => {
                            d.problem(n.span, p);
                            None
                        }
                    },
                    None => None,
                };
                match ms {
                    Some(ms) if e.key == "delay" => u.delay_ms = Some(ms),
                    Some(ms) => u.monitor_ms = Some(ms),
                    None => ok = false,
                }
            }
            "order" => match d.string(n, &key_what) {
                Some(o) => match UpdateOrder::parse(o.trim()) {
                    Some(o) => u.order = Some(o),
                    None => {
                        d.err(n.span, format!("unknown update order `{o}`"), "order is \"start-first\" (the new task runs before the old one stops) or \"stop-first\"");
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "failure_action" => match d.string(n, &key_what) {
                Some(a) => match FailureAction::parse(a.trim()) {
                    Some(a) => u.failure_action = Some(a),
                    None => {
                        d.err(n.span, format!("unknown failure action `{a}`"), "failure_action is \"rollback\" (the default), \"pause\" or \"continue\"");
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "max_failure_ratio" => {
                let r = match &n.value {
                    Value::Int(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    Value::Str(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match r {
                    Some(r) if (0.0..=1.0).contains(&r) => u.max_failure_ratio = Some(r),
                    _ => {
                        d.err(n.span, format!("`{key_what}` must be a number from 0 to 1"), "max_failure_ratio is the fraction of new tasks that may fail, e.g. 0 or 0.2");
                        ok = false;
                    }
                }
            }
            k if k.starts_with("x-") => {}
            _ => {
                d.unknown_key(e, UPDATE_CONFIG_KEYS, &format!("in `{what}`"));
                ok = false;
            }
        }
    }
    ok.then_some(u)
}

/// `health = false`, or a table of `cmd`, `interval`, `timeout`,
/// `start_period`, `retries` and `on_unhealthy`.
fn health(d: &mut Decoder, v: &Node, what: &str) -> Option<Health> {
    const HELP: &str = "write health = { cmd = \"test -f /tmp/ok\", interval = \"5s\" }, or health = false to disable the image's check";
    let entries = match &v.value {
        Value::Bool(false) => return Some(Health::disabled()),
        Value::Bool(true) => {
            d.err(
                v.span,
                format!("`{what} = true` says nothing about the check"),
                "the image's HEALTHCHECK is used by default; write a table to set one, or health = false to disable it",
            );
            return None;
        }
        Value::Map(m) => m,
        _ => {
            d.type_err(v, what, "a table or false", HELP);
            return None;
        }
    };
    let mut h = Health::default();
    let mut ok = true;
    for e in entries {
        let n = &e.value;
        let key_what = format!("{what}.{}", e.key);
        match d.key(&e.key) {
            "cmd" => match &n.value {
                Value::Str(s) if s.trim().is_empty() => {
                    d.err(
                        n.span,
                        format!("`{key_what}` is empty"),
                        "write the command that checks the service, e.g. \"test -f /tmp/ok\"",
                    );
                    ok = false;
                }
                Value::Str(s) => h.test = Some(vec!["CMD-SHELL".to_string(), s.clone()]),
                Value::Seq(_) => match d.string_list(n, &key_what) {
                    Some(l) if l.is_empty() => {
                        d.err(n.span, format!("`{key_what}` is an empty list"), "write the program and its arguments, e.g. [\"test\", \"-f\", \"/tmp/ok\"]");
                        ok = false;
                    }
                    Some(l) => {
                        let mut test = vec!["CMD".to_string()];
                        test.extend(l.into_iter().map(|(s, _)| s));
                        h.test = Some(test);
                    }
                    None => ok = false,
                },
                _ => {
                    d.type_err(
                        n,
                        &key_what,
                        "a string or a list of strings",
                        "write \"shell command\" (run by /bin/sh -c) or [\"prog\", \"arg\"]",
                    );
                    ok = false;
                }
            },
            "interval" | "timeout" | "start_period" => {
                let text = match &n.value {
                    Value::Str(s) => Some(s.clone()),
                    Value::Int(i) => Some(i.to_string()),
                    _ => {
                        d.type_err(
                            n,
                            &key_what,
                            "a duration",
                            "write a duration such as \"5s\" or \"500ms\"",
                        );
                        None
                    }
                };
                match text.map(|t| values::parse_duration_ms(&t)) {
                    Some(Ok(ms)) => match e.key.as_str() {
                        "interval" => h.interval_ms = Some(ms),
                        "timeout" => h.timeout_ms = Some(ms),
                        _ => h.start_period_ms = Some(ms),
                    },
                    Some(Err(p)) => {
                        d.problem(n.span, p);
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            "retries" => match d.integer(n, &key_what) {
                Some(r) if (1..=1000).contains(&r) => h.retries = Some(r as u32),
                Some(r) => {
                    d.err(n.span, format!("`{key_what}` must be between 1 and 1000, found {r}"), "retries is how many failed checks in a row make the service unhealthy, e.g. 3");
                    ok = false;
                }
                None => ok = false,
            },
            "on_unhealthy" => match d.string(n, &key_what).as_deref() {
                Some("restart") => h.on_unhealthy = OnUnhealthy::Restart,
                Some("ignore") => h.on_unhealthy = OnUnhealthy::Ignore,
                Some(other) => {
                    let help = match suggest(other, ["restart", "ignore"].into_iter()) {
                        Some(s) => format!("did you mean \"{s}\"? on_unhealthy is \"restart\" (the default) or \"ignore\""),
                        None => "on_unhealthy is \"restart\" (the default: replace the container) or \"ignore\"".to_string(),
                    };
                    d.err(
                        n.span,
                        format!("unknown on_unhealthy action `{other}`"),
                        help,
                    );
                    ok = false;
                }
                None => ok = false,
            },
            k if k.starts_with("x-") => {}
            _ => {
                d.unknown_key(e, HEALTH_KEYS, &format!("in `{what}`"));
                ok = false;
            }
        }
    }
    ok.then_some(h)
}

/// `ports` as a list of strings or bare numbers.
fn port_entries(d: &mut Decoder, v: &Node, what: &str) -> Option<Vec<(String, Span)>> {
    d.string_list(v, what)
}

/// `env` as a table or a list of `KEY=value` strings.
fn env_map(d: &mut Decoder, v: &Node, what: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let check =
        |d: &mut Decoder, key: &str, span: Span| -> bool {
            if is_name(key) {
                true
            } else {
                d.err(
                span,
                format!("environment variable name `{}` is not valid", key.escape_debug()),
                "environment variable names are letters, digits and _, not starting with a digit",
            );
                false
            }
        };
    match &v.value {
        Value::Map(m) => {
            for e in m {
                if check(d, &e.key, e.key_span)
                    && let Some(val) = d.scalar_text(&e.value, &format!("{what}.{}", e.key))
                {
                    out.push((e.key.clone(), val));
                }
            }
        }
        Value::Seq(_) => {
            if let Some(list) = d.string_list(v, what) {
                let mut seen: HashSet<String> = HashSet::new();
                for (item, span) in list {
                    match item.split_once('=') {
                        Some((k, val)) => {
                            if !seen.insert(k.to_string()) {
                                d.err(span, format!("environment variable `{k}` is set twice"), "keep one of them");
                            } else if check(d, k, span) {
                                out.push((k.to_string(), val.to_string()));
                            }
                        }
                        None => d.err(
                            span,
                            format!("env entry `{item}` has no value"),
                            format!("write \"{item}=value\"; to pass a value from the host, write \"{item}=${{{item}}}\""),
                        ),
                    }
                }
            }
        }
        _ => d.type_err(
            v,
            what,
            "a table or a list of \"KEY=value\"",
            "write env = { KEY = \"value\" }",
        ),
    }
    out
}

/// Resource limit names the engine knows (Docker's `--ulimit`).
const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `ulimits`: name -> a number (soft and hard) or `{ soft, hard }`; -1 is
/// unlimited.
fn ulimits(d: &mut Decoder, v: &Node, what: &str) -> BTreeMap<String, Ulimit> {
    const HELP: &str =
        "write nofile = 1024, or nofile = { soft = 1024, hard = 4096 } (-1 is unlimited)";
    let mut out = BTreeMap::new();
    let Some(m) = d.map(v, what) else {
        return out;
    };
    for e in m {
        let w = format!("{what}.{}", e.key);
        if !ULIMIT_NAMES.contains(&e.key.as_str()) {
            let help = match suggest(&e.key, ULIMIT_NAMES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? limits are {}", ULIMIT_NAMES.join(", ")),
                None => format!("limits are {}", ULIMIT_NAMES.join(", ")),
            };
            d.err(e.key_span, format!("unknown ulimit `{}`", e.key), help);
            continue;
        }
        let num = |d: &mut Decoder, n: &Node, w: &str| -> Option<i64> {
            match &n.value {
                Value::Int(i) if *i >= -1 => Some(*i),
                Value::Str(s) if s.trim().parse::<i64>().is_ok_and(|i| i >= -1) => {
                    s.trim().parse().ok()
                }
                Value::Int(i) => {
                    d.err(
                        n.span,
                        format!("`{w}` must be a number of at least -1, found {i}"),
                        HELP,
                    );
                    None
                }
                _ => {
                    d.type_err(n, w, "a number of at least -1", HELP);
                    None
                }
            }
        };
        let limit = match &e.value.value {
            Value::Map(parts) => {
                let (mut soft, mut hard) = (None, None);
                for p in parts {
                    let pw = format!("{w}.{}", p.key);
                    match p.key.as_str() {
                        "soft" => soft = num(d, &p.value, &pw),
                        "hard" => hard = num(d, &p.value, &pw),
                        _ => d.err(p.key_span, format!("unknown key `{pw}`"), HELP),
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) => Some(Ulimit { soft, hard }),
                    _ => {
                        if !parts.iter().all(|p| p.key == "soft" || p.key == "hard")
                            || parts.len() < 2
                        {
                            d.err(
                                e.value.span,
                                format!("`{w}` needs both `soft` and `hard`"),
                                HELP,
                            );
                        }
                        None
                    }
                }
            }
            _ => num(d, &e.value, &w).map(|n| Ulimit { soft: n, hard: n }),
        };
        if let Some(l) = limit {
            // -1 is unlimited, above any number.
            let above = |a: i64, b: i64| b != -1 && (a == -1 || a > b);
            if above(l.soft, l.hard) {
                d.err(
                    e.value.span,
                    format!(
                        "`{w}`: soft limit {} is above the hard limit {}",
                        l.soft, l.hard
                    ),
                    "the soft limit must not exceed the hard limit",
                );
            } else {
                out.insert(e.key.clone(), l);
            }
        }
    }
    out
}

/// A map of names to scalars, or a list of `name<sep>value` strings (the
/// two forms Compose allows for `sysctls` and `extra_hosts`). A list entry
/// splits at its first `sep` (Compose also writes `=` for hosts).
fn map_or_list(d: &mut Decoder, v: &Node, what: &str, sep: char) -> Vec<(String, String, Span)> {
    let mut out = Vec::new();
    match &v.value {
        Value::Map(m) => {
            for e in m {
                if let Some(val) = d.scalar_text(&e.value, &format!("{what}.{}", e.key)) {
                    out.push((e.key.clone(), val, e.key_span));
                }
            }
        }
        Value::Seq(_) => {
            for (entry, span) in d.string_list(v, what).unwrap_or_default() {
                let split = entry.split_once(sep).or_else(|| {
                    if sep == ':' {
                        entry.split_once('=')
                    } else {
                        None
                    }
                });
                match split {
                    Some((k, val)) => {
                        out.push((k.trim().to_string(), val.trim().to_string(), span))
                    }
                    None => d.err(
                        span,
                        format!("`{what}` entry `{entry}` has no `{sep}`"),
                        format!("write \"name{sep}value\" entries, or a table"),
                    ),
                }
            }
        }
        _ => d.type_err(
            v,
            what,
            "a table or a list",
            &format!("write a table, or a list of \"name{sep}value\""),
        ),
    }
    out
}

/// `logging = { driver = "...", options = { ... } }`.
fn logging(d: &mut Decoder, v: &Node, what: &str) -> Option<Logging> {
    const HELP: &str =
        "write logging = { driver = \"json-file\", options = { max-size = \"10m\" } }";
    let m = d.map(v, what)?;
    let mut driver = None;
    let mut options = BTreeMap::new();
    for e in m {
        let w = format!("{what}.{}", e.key);
        match e.key.as_str() {
            "driver" => {
                if let Some(s) = d.string(&e.value, &w) {
                    if s.trim().is_empty() {
                        d.err(e.value.span, format!("`{w}` is empty"), HELP);
                    } else {
                        driver = Some(s);
                    }
                }
            }
            "options" => {
                if let Some(opts) = d.map(&e.value, &w) {
                    for o in opts {
                        if let Some(val) = d.scalar_text(&o.value, &format!("{w}.{}", o.key)) {
                            options.insert(o.key.clone(), val);
                        }
                    }
                }
            }
            _ => d.unknown_key(e, &["driver", "options"], &format!("in `{what}`")),
        }
    }
    match driver {
        Some(driver) => Some(Logging { driver, options }),
        None => {
            if !m.iter().any(|e| e.key == "driver") {
                d.err(v.span, format!("`{what}` has no `driver`"), HELP);
            }
            None
        }
    }
}
