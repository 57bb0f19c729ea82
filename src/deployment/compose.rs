//! Compose files: the Compose specification's shape rewritten, in the
//! spanned tree, into the native shape, so that the native decoder maps every
//! setting (one place per fact) and every error still points into the
//! Compose file.
//!
//! Keys whose value has the native form keep their Compose name in the tree
//! and the decoder takes them for the native key ([`canonical`]), so that
//! messages name the key as written (`services.web.environment`). Keys with
//! another shape (long port and volume syntax, `depends_on`, `healthcheck`,
//! `deploy`, `x-berth`) are rewritten into the native form first.
//!
//! A key berth cannot honour is an error at the key (a warning with
//! `--lenient`, and the key is then left out); nothing is dropped unsaid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::decode::{Decoder, suggest};
use super::tree::{Entry, Node, Span, Value};

/// How to read a Compose file.
#[derive(Debug, Clone, Default)]
pub struct ComposeOptions {
    /// `--profile`: services in one of these profiles are deployed too.
    pub profiles: Vec<String>,
    /// `--lenient`: keys berth cannot honour are warnings, not errors.
    pub lenient: bool,
}

/// The native key a Compose key (as the rewrite leaves it) stands for.
pub fn canonical(key: &str) -> &str {
    match key {
        "environment" => "env",
        "working_dir" => "workdir",
        "mem_limit" | "deploy.resources.limits.memory" => "memory",
        "deploy.resources.limits.cpus" => "cpus",
        "deploy.replicas" => "count",
        "deploy.update_config" => "update_config",
        "deploy.endpoint_mode" => "endpoint_mode",
        "deploy.placement.constraints" => "placement",
        "stop_grace_period" => "stop_timeout",
        "healthcheck" => "health",
        "depends_on" => "links",
        "test" => "cmd",
        "x-berth.ssh" => "ssh",
        "x-berth.ssh_shell" => "ssh_shell",
        "x-berth.snapshot_on_upgrade" => "snapshot_on_upgrade",
        "x-berth.snapshots_keep" => "snapshots_keep",
        "x-berth.auto_update" => "auto_update",
        k => k,
    }
}

/// Service keys taken as they are (the native decoder reads their value).
const DIRECT: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "restart",
    "user",
    "working_dir",
    "hostname",
    "cap_add",
    "cap_drop",
    "read_only",
    "tmpfs",
    "stop_grace_period",
    "stop_signal",
    "mem_limit",
    "cpus",
    "privileged",
    "configs",
    "secrets",
    "ulimits",
    "shm_size",
    "sysctls",
    "extra_hosts",
    "dns",
    "init",
    "logging",
    "devices",
];

/// Service keys rewritten here.
const REWRITTEN: &[&str] = &[
    "ports",
    "volumes",
    "depends_on",
    "links",
    "healthcheck",
    "labels",
    "deploy",
    "networks",
    "profiles",
    "expose",
    "x-berth",
];

/// Compose service keys berth has no setting for.
const UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cgroup",
    "cgroup_parent",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "env_from",
    "extends",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "pull_policy",
    "runtime",
    "scale",
    "security_opt",
    "stdin_open",
    "storage_opt",
    "tty",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

const TOP_KEYS: &[&str] = &[
    "name", "services", "volumes", "networks", "configs", "secrets", "version", "x-berth",
];
const X_BERTH_TOP: &[&str] = &[
    "keys",
    "snapshots_keep",
    "notify",
    "notify_url",
    "auto_update",
];
const X_BERTH_SERVICE: &[&str] = &[
    "ssh",
    "ssh_shell",
    "snapshot_on_upgrade",
    "snapshots_keep",
    "auto_update",
];

/// The names Compose looks for, in its order.
pub const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Is this file named the way Compose names its files?
pub fn is_compose_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| FILE_NAMES.contains(&n))
}

/// The deployment file a command reads when it is not named: `default`
/// (`berth.toml`) when it exists, else the first Compose file of
/// [`FILE_NAMES`] beside it, else `default` (whose absence is then
/// reported as it always was).
pub fn default_file(default: &Path) -> std::path::PathBuf {
    if crate::input::present(default) {
        return default.to_path_buf();
    }
    let dir = default.parent().unwrap_or(Path::new(""));
    FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| crate::input::present(p))
        .unwrap_or_else(|| default.to_path_buf())
}

/// The project name Compose derives from a directory name: lowercased,
/// characters outside `[a-z0-9_-]` removed, no leading `_` or `-`.
pub fn project_name_from_dir(dir: &str) -> String {
    let lower: String = dir
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

/// What the rewrite learnt about the file.
pub struct Rewritten {
    /// Whether the file has a top-level `name`.
    pub has_name: bool,
}

/// Rewrite a Compose document into the native shape, reporting what berth
/// cannot honour. `base_dir` resolves relative bind mounts.
pub fn rewrite(d: &mut Decoder, root: &mut Node, opts: &ComposeOptions) -> Rewritten {
    let mut out = Rewritten { has_name: false };
    let Value::Map(entries) = &mut root.value else {
        return out;
    };
    let taken = std::mem::take(entries);
    let mut kept = Vec::new();
    let mut declared: Option<BTreeSet<String>> = None;
    let mut services_at = None;
    for e in taken {
        match e.key.as_str() {
            "name" => {
                out.has_name = true;
                kept.push(e);
            }
            "services" | "configs" | "secrets" => {
                if e.key == "services" {
                    services_at = Some(kept.len());
                }
                kept.push(e);
            }
            "version" => d.warn(
                e.key_span,
                "`version` is obsolete and ignored",
                "remove it; the Compose specification has no versions",
            ),
            "volumes" => declared = Some(top_volumes(d, &e.value, opts)),
            "networks" => top_networks(d, &e.value, opts),
            "x-berth" => {
                if let Some(m) = d.map(&e.value, "x-berth") {
                    for x in m {
                        if X_BERTH_TOP.contains(&x.key.as_str()) {
                            kept.push(x.clone());
                        } else {
                            d.unknown_key(x, X_BERTH_TOP, "in `x-berth`");
                        }
                    }
                }
            }
            k if k.starts_with("x-") => {}
            "include" | "models" => cannot(d, &e, opts, "at the top level"),
            _ => d.unknown_key(&e, TOP_KEYS, "at the top level"),
        }
    }
    let declared = declared.unwrap_or_default();
    if let Some(i) = services_at
        && let Value::Map(services) = &mut kept[i].value.value
    {
        let mut named_by: BTreeMap<String, Vec<(String, Span)>> = BTreeMap::new();
        services.retain(|s| in_profiles(d, s, opts));
        for s in services.iter_mut() {
            service(d, s, opts, &declared, &mut named_by);
        }
        for (vol, users) in named_by {
            let names: BTreeSet<&str> = users.iter().map(|(s, _)| s.as_str()).collect();
            if names.len() > 1
                && let Some((_, span)) = users.get(1)
            {
                let list: Vec<&str> = names.into_iter().collect();
                report(
                    d,
                    *span,
                    opts,
                    format!(
                        "the volume `{vol}` is shared by the services {}",
                        list.join(", ")
                    ),
                    "berth gives every container its own volumes (`<container>-<volume>`); give each service its own volume, or share a host directory as a bind mount",
                );
            }
        }
    }
    *entries = kept;
    out
}

/// A key berth cannot honour: an error, or with `--lenient` a warning.
fn cannot(d: &mut Decoder, e: &Entry, opts: &ComposeOptions, context: &str) {
    report(
        d,
        e.key_span,
        opts,
        format!("berth cannot honour `{}` {context}", e.key),
        if opts.lenient {
            "remove it from the file to deploy without this warning"
        } else {
            "remove it, or pass --lenient to deploy without it (a warning instead of this error)"
        },
    );
}

fn report(d: &mut Decoder, span: Span, opts: &ComposeOptions, msg: String, help: &str) {
    if opts.lenient {
        d.warn(span, format!("{msg}; left out (--lenient)"), help);
    } else {
        d.err(span, msg, help);
    }
}

/// Is the service in no profile, or in one that was asked for?
fn in_profiles(d: &mut Decoder, s: &Entry, opts: &ComposeOptions) -> bool {
    let Some(p) = s
        .value
        .as_map()
        .and_then(|m| m.iter().find(|e| e.key == "profiles"))
    else {
        return true;
    };
    let what = format!("services.{}.profiles", s.key);
    match d.string_list(&p.value, &what) {
        Some(l) => l.iter().any(|(p, _)| opts.profiles.contains(p)),
        None => true,
    }
}

fn top_volumes(d: &mut Decoder, v: &Node, opts: &ComposeOptions) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if v.value == Value::Null {
        return out;
    }
    let Some(m) = d.map(v, "volumes") else {
        return out;
    };
    for vol in m {
        out.insert(vol.key.clone());
        match &vol.value.value {
            Value::Null => {}
            Value::Map(keys) => {
                for k in keys {
                    // The engine's default driver is the one berth uses.
                    let local = k.key == "driver"
                        && matches!(&k.value.value, Value::Str(s) if s == "local");
                    if !k.key.starts_with("x-") && !local {
                        cannot(d, k, opts, &format!("in volume `{}`", vol.key));
                    }
                }
            }
            _ => {
                d.type_err(
                    &vol.value,
                    &format!("volumes.{}", vol.key),
                    "empty or a table",
                    "declare the volume with `name: {}`",
                );
            }
        }
    }
    out
}

fn top_networks(d: &mut Decoder, v: &Node, opts: &ComposeOptions) {
    let Some(m) = d.map(v, "networks") else {
        return;
    };
    for n in m {
        let plain = matches!(&n.value.value, Value::Null)
            || matches!(&n.value.value, Value::Map(k) if k.is_empty());
        if n.key != "default" || !plain {
            report(
                d,
                n.key_span,
                opts,
                format!("berth cannot honour the network `{}`", n.key),
                "every deployment gets one network of its own, where services reach each other by name; remove the network",
            );
        }
    }
}

fn service(
    d: &mut Decoder,
    s: &mut Entry,
    opts: &ComposeOptions,
    declared: &BTreeSet<String>,
    named_by: &mut BTreeMap<String, Vec<(String, Span)>>,
) {
    let sname = s.key.clone();
    let Value::Map(entries) = &mut s.value.value else {
        return; // the decoder reports it
    };
    let taken = std::mem::take(entries);
    let mut kept: Vec<Entry> = Vec::new();
    let mut links: Option<(Span, Vec<Node>)> = None;
    let mut tmpfs: Vec<Node> = Vec::new();
    let ctx = format!("in service `{sname}`");
    for mut e in taken {
        let what = format!("services.{sname}.{}", e.key);
        match e.key.as_str() {
            k if DIRECT.contains(&k) => {
                if k == "environment" {
                    environment(d, &mut e.value);
                }
                if (k == "configs" || k == "secrets")
                    && let Value::Seq(items) = &mut e.value.value
                {
                    for item in items {
                        octal_mode(d, item);
                    }
                }
                if k == "restart"
                    && let Value::Str(r) = &e.value.value
                    && let Some(n) = r.strip_prefix("on-failure:")
                {
                    report(
                        d,
                        e.value.span,
                        opts,
                        format!("berth cannot honour the retry limit of `restart: on-failure:{n}`"),
                        "write `on-failure`: berth restarts a failed container every time",
                    );
                    e.value.value = Value::Str("on-failure".into());
                }
                kept.push(e);
            }
            "ports" => {
                if let Value::Seq(items) = &mut e.value.value {
                    for item in items.iter_mut() {
                        long_port(d, item, &what);
                    }
                }
                kept.push(e);
            }
            "volumes" => {
                if let Value::Seq(items) = &mut e.value.value {
                    let mut keep = Vec::new();
                    for mut item in std::mem::take(items) {
                        match volume(d, &mut item, &what, opts) {
                            Some(Mount::Volume(name)) => {
                                if !declared.contains(&name) {
                                    d.err(
                                        item.span,
                                        format!("the volume `{name}` is not declared in the top-level `volumes`"),
                                        format!("add it at the top level: volumes: {{ {name}: }}"),
                                    );
                                }
                                named_by
                                    .entry(name)
                                    .or_default()
                                    .push((sname.clone(), item.span));
                                keep.push(item);
                            }
                            Some(Mount::Other) => keep.push(item),
                            Some(Mount::Tmpfs) => tmpfs.push(item),
                            None => {}
                        }
                    }
                    *items = keep;
                }
                kept.push(e);
            }
            "depends_on" | "links" => {
                let entry = links.get_or_insert((e.key_span, Vec::new()));
                let list = &mut entry.1;
                depends_on(d, &e, &what, opts, list);
            }
            "healthcheck" => {
                healthcheck(d, &mut e.value, &what, opts);
                kept.push(e);
            }
            "labels" => {
                if let Value::Seq(items) = &e.value.value {
                    let mut map = Vec::new();
                    for item in items {
                        match &item.value {
                            Value::Str(l) => {
                                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                                map.push(Entry {
                                    key: k.to_string(),
                                    key_span: item.span,
                                    value: Node::new(Value::Str(v.to_string()), item.span),
                                });
                            }
                            _ => d.type_err(
                                item,
                                &what,
                                "a list of \"key=value\"",
                                "write - \"key=value\"",
                            ),
                        }
                    }
                    e.value.value = Value::Map(map);
                }
                kept.push(e);
            }
            "deploy" => deploy(d, &e, opts, &mut kept),
            "networks" => {
                let names: Vec<(String, Span)> = match &e.value.value {
                    Value::Seq(_) => d.string_list(&e.value, &what).unwrap_or_default(),
                    Value::Map(m) => m
                        .iter()
                        .map(|n| {
                            let plain = matches!(&n.value.value, Value::Null)
                                || matches!(&n.value.value, Value::Map(k) if k.is_empty());
                            // Options on the default network (aliases, addresses) are not plain.
                            let name = if plain {
                                n.key.clone()
                            } else {
                                format!("{} (with options)", n.key)
                            };
                            (name, n.key_span)
                        })
                        .collect(),
                    _ => {
                        d.type_err(&e.value, &what, "a list", "write - default");
                        Vec::new()
                    }
                };
                for (n, span) in names {
                    if n != "default" {
                        report(
                            d,
                            span,
                            opts,
                            format!("berth cannot honour the network `{n}` of service `{sname}`"),
                            "services reach each other by name on the deployment's own network; remove it",
                        );
                    }
                }
            }
            // Checked (and the service left out) before.
            "profiles" => {}
            // On the deployment's network every port is reachable already.
            "expose" => {}
            "x-berth" => {
                if let Some(m) = d.map(&e.value, &what) {
                    for x in m {
                        if X_BERTH_SERVICE.contains(&x.key.as_str()) {
                            let mut x = x.clone();
                            x.key = format!("x-berth.{}", x.key);
                            kept.push(x);
                        } else {
                            d.unknown_key(x, X_BERTH_SERVICE, "in `x-berth`");
                        }
                    }
                }
            }
            k if k.starts_with("x-") => {}
            k if UNSUPPORTED.contains(&k) => cannot(d, &e, opts, &ctx),
            _ => {
                let known: Vec<&'static str> = DIRECT
                    .iter()
                    .chain(REWRITTEN)
                    .chain(UNSUPPORTED)
                    .copied()
                    .collect();
                let help = match suggest(&e.key, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "see the Compose section of berth's README for the keys berth reads".into()
                    }
                };
                d.err(e.key_span, format!("unknown key `{}` {ctx}", e.key), help);
            }
        }
    }
    if let Some((span, list)) = links {
        kept.push(Entry {
            key: "depends_on".into(),
            key_span: span,
            value: Node::new(Value::Seq(list), span),
        });
    }
    if !tmpfs.is_empty() {
        match kept.iter_mut().find(|e| e.key == "tmpfs") {
            Some(t) => match &mut t.value.value {
                Value::Seq(items) => items.extend(tmpfs),
                Value::Str(_) => {
                    let one = t.value.clone();
                    t.value.value = Value::Seq(std::iter::once(one).chain(tmpfs).collect());
                }
                _ => {}
            },
            None => {
                let span = tmpfs[0].span;
                kept.push(Entry {
                    key: "tmpfs".into(),
                    key_span: span,
                    value: Node::new(Value::Seq(tmpfs), span),
                });
            }
        }
    }
    *entries = kept;
}

/// `environment`: `KEY` alone (list) or `KEY:` with no value (map) passes
/// the variable on from where berth runs, as Compose does, and leaves it
/// out when it is not set there.
fn environment(d: &mut Decoder, v: &mut Node) {
    match &mut v.value {
        Value::Seq(items) => items.retain_mut(|item| match &item.value {
            Value::Str(s) if !s.contains('=') => match d.vars.get(s.as_str()) {
                Some(val) => {
                    item.value = Value::Str(format!("{s}={val}"));
                    true
                }
                None => false,
            },
            _ => true,
        }),
        Value::Map(m) => m.retain_mut(|e| {
            if e.value.value != Value::Null {
                return true;
            }
            match d.vars.get(&e.key) {
                Some(val) => {
                    e.value.value = Value::Str(val.clone());
                    true
                }
                None => false,
            }
        }),
        _ => {}
    }
}

/// A mount's `mode` as Compose reads it: `0440` (and `0o440`) is octal,
/// another bare number the mode in decimal (`288`); the native form is an
/// octal string.
fn octal_mode(d: &Decoder, item: &mut Node) {
    let Value::Map(m) = &mut item.value else {
        return;
    };
    for e in m.iter_mut().filter(|e| e.key == "mode") {
        if let Value::Int(n) = e.value.value {
            let raw = d.src.slice(e.value.span).trim();
            let digits = raw.strip_prefix("0o").unwrap_or(raw);
            let octal =
                if raw.starts_with('0') && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    format!("0{}", digits.trim_start_matches('0'))
                } else {
                    format!("0{n:o}")
                };
            e.value.value = Value::Str(octal);
        }
    }
}

/// A long-syntax port (`target`, `published`, `host_ip`, `protocol`) as
/// the short string.
fn long_port(d: &mut Decoder, item: &mut Node, what: &str) {
    let Value::Map(m) = &item.value else {
        return;
    };
    let mut target = None;
    let mut published = None;
    let mut host_ip = None;
    let mut protocol = None;
    for e in m {
        let w = format!("{what}.{}", e.key);
        match e.key.as_str() {
            "target" => target = d.string_or_number(&e.value, &w),
            "published" => published = d.string_or_number(&e.value, &w),
            "host_ip" => host_ip = d.string(&e.value, &w),
            "protocol" => protocol = d.string(&e.value, &w),
            // Descriptive only, or Swarm's routing mesh (a plain published port here).
            "name" | "app_protocol" | "mode" => {}
            _ => d.unknown_key(
                e,
                &[
                    "target",
                    "published",
                    "host_ip",
                    "protocol",
                    "mode",
                    "name",
                    "app_protocol",
                ],
                "in a port",
            ),
        }
    }
    let Some(target) = target else {
        d.err(
            item.span,
            format!("a port of `{what}` has no `target`"),
            "write the container port: target: 80",
        );
        item.value = Value::Invalid;
        return;
    };
    let mut s = String::new();
    if let Some(ip) = host_ip {
        if ip.contains(':') {
            s.push_str(&format!("[{ip}]:"));
        } else {
            s.push_str(&format!("{ip}:"));
        }
        if published.is_none() {
            s.push(':');
        }
    }
    if let Some(p) = published {
        s.push_str(&format!("{p}:"));
    }
    s.push_str(&target);
    if let Some(p) = protocol {
        s.push_str(&format!("/{p}"));
    }
    item.value = Value::Str(s);
}

enum Mount {
    Volume(String),
    Tmpfs,
    Other,
}

/// A volume entry, short or long, rewritten to the short native form
/// (relative bind mounts made absolute; a long tmpfs becomes a tmpfs entry).
fn volume(d: &mut Decoder, item: &mut Node, what: &str, opts: &ComposeOptions) -> Option<Mount> {
    let (source, target, read_only, kind) = match &item.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.splitn(2, ':').collect();
            match parts.as_slice() {
                [src, rest] => {
                    let kind = if is_path(src) { "bind" } else { "volume" };
                    (src.to_string(), rest.to_string(), false, kind.to_string())
                }
                // Anonymous: the native decoder says what to do.
                _ => return Some(Mount::Other),
            }
        }
        Value::Map(m) => {
            let mut kind = None;
            let mut source = None;
            let mut target = None;
            let mut read_only = false;
            let mut size = None;
            for e in m {
                let w = format!("{what}.{}", e.key);
                match e.key.as_str() {
                    "type" => kind = d.string(&e.value, &w),
                    "source" => source = d.string(&e.value, &w),
                    "target" => target = d.string(&e.value, &w),
                    "read_only" => read_only = d.boolean(&e.value, &w).unwrap_or(false),
                    "tmpfs" => {
                        for t in e.value.as_map().unwrap_or(&[]) {
                            match t.key.as_str() {
                                "size" => size = d.string_or_number(&t.value, &format!("{w}.size")),
                                _ => cannot(d, t, opts, "in a tmpfs mount"),
                            }
                        }
                    }
                    // Defaults of the engine berth keeps, or hints without effect here.
                    "consistency" => {}
                    "bind" | "volume" => {
                        for o in e.value.as_map().unwrap_or(&[]) {
                            // Docker's short syntax creates a missing host path too.
                            if !(e.key == "bind" && o.key == "create_host_path") {
                                cannot(d, o, opts, &format!("in a {} mount", e.key));
                            }
                        }
                    }
                    _ => d.unknown_key(
                        e,
                        &[
                            "type",
                            "source",
                            "target",
                            "read_only",
                            "bind",
                            "volume",
                            "tmpfs",
                        ],
                        "in a volume",
                    ),
                }
            }
            let Some(target) = target else {
                d.err(
                    item.span,
                    format!("a volume of `{what}` has no `target`"),
                    "write the path in the container: target: /data",
                );
                return None;
            };
            match kind.as_deref() {
                Some("tmpfs") => {
                    let t = match size {
                        Some(s) => format!("{target}:size={s}"),
                        None => target,
                    };
                    item.value = Value::Str(t);
                    return Some(Mount::Tmpfs);
                }
                Some(k @ ("volume" | "bind")) => {
                    let Some(source) = source else {
                        d.err(
                            item.span,
                            format!("a {k} of `{what}` has no `source`"),
                            "name the volume or host path: source: data",
                        );
                        return None;
                    };
                    (source, target, read_only, k.to_string())
                }
                Some(other) => {
                    d.err(
                        item.span,
                        format!("berth cannot honour a mount of type `{other}`"),
                        "use a volume, a bind mount or a tmpfs",
                    );
                    return None;
                }
                None => {
                    d.err(
                        item.span,
                        format!("a volume of `{what}` has no `type`"),
                        "write type: volume, bind or tmpfs",
                    );
                    return None;
                }
            }
        }
        _ => return Some(Mount::Other),
    };
    let source = if kind == "bind" {
        resolve(&d.base_dir, &source, d.vars.get("HOME").map(String::as_str))
    } else {
        source
    };
    let ro = if read_only { ":ro" } else { "" };
    item.value = Value::Str(format!("{source}:{target}{ro}"));
    Some(if kind == "volume" {
        Mount::Volume(source)
    } else {
        Mount::Other
    })
}

fn is_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

/// A Compose bind-mount source: relative to the file's directory, `~` the
/// home directory, lexically normalised (no `.` or `..` left).
fn resolve(base: &Path, src: &str, home: Option<&str>) -> String {
    let p = match (src.strip_prefix('~'), home) {
        (Some(rest), Some(h)) => PathBuf::from(format!("{h}{rest}")),
        _ if src.starts_with('/') => PathBuf::from(src),
        _ => {
            let base = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            std::path::absolute(base)
                .unwrap_or_else(|_| base.to_path_buf())
                .join(src)
        }
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

/// `depends_on` (a list, or a table with `condition`) and legacy `links`
/// (`service[:alias]`), as berth links: start after the target and, when
/// it has a health check, after it is healthy.
fn depends_on(d: &mut Decoder, e: &Entry, what: &str, opts: &ComposeOptions, out: &mut Vec<Node>) {
    let has = |out: &Vec<Node>, t: &str| {
        out.iter().any(|n| match &n.value {
            Value::Str(s) => s.split(':').next() == Some(t),
            _ => false,
        })
    };
    match &e.value.value {
        Value::Seq(_) => {
            for (t, span) in d.string_list(&e.value, what).unwrap_or_default() {
                let target = t.split(':').next().unwrap_or("").to_string();
                if !has(out, &target) || e.key == "links" {
                    out.retain(|n| !matches!(&n.value, Value::Str(s) if *s == target));
                    out.push(Node::new(Value::Str(t), span));
                }
            }
        }
        Value::Map(m) if e.key == "depends_on" => {
            for dep in m {
                for o in dep.value.as_map().unwrap_or(&[]) {
                    let w = format!("{what}.{}.{}", dep.key, o.key);
                    match o.key.as_str() {
                        "condition" => match d.string(&o.value, &w).as_deref() {
                            Some("service_started" | "service_healthy") | None => {}
                            Some(c) => report(
                                d,
                                o.value.span,
                                opts,
                                format!("berth cannot honour the condition `{c}`"),
                                "berth services run all the time: a service starts after those it depends on are running and, when they have a health check, healthy (service_started, service_healthy)",
                            ),
                        },
                        // berth restarts the dependants' containers only when their own spec changes.
                        "restart" => {}
                        "required" => {
                            if d.boolean(&o.value, &w) == Some(false) {
                                cannot(d, o, opts, "with false (a dependency is always required)");
                            }
                        }
                        _ => d.unknown_key(
                            o,
                            &["condition", "restart", "required"],
                            &format!("in `{what}.{}`", dep.key),
                        ),
                    }
                }
                if !has(out, &dep.key) {
                    out.push(Node::new(Value::Str(dep.key.clone()), dep.key_span));
                }
            }
        }
        _ => d.type_err(
            &e.value,
            what,
            "a list of services",
            "write depends_on: [db]",
        ),
    }
}

/// `healthcheck`: `test` as berth's `cmd`, `disable: true` and
/// `test: ["NONE"]` as `health = false`.
fn healthcheck(d: &mut Decoder, v: &mut Node, what: &str, opts: &ComposeOptions) {
    let Value::Map(m) = &mut v.value else {
        return;
    };
    let mut disabled = false;
    m.retain_mut(|e| {
        let w = format!("{what}.{}", e.key);
        match e.key.as_str() {
            "disable" => {
                disabled |= d.boolean(&e.value, &w) == Some(true);
                false
            }
            "start_interval" => {
                cannot(d, e, opts, &format!("in `{what}`"));
                false
            }
            "test" => {
                match &mut e.value.value {
                    Value::Seq(items) => {
                        let first = match items.first().map(|n| &n.value) {
                            Some(Value::Str(s)) => s.clone(),
                            _ => String::new(),
                        };
                        match first.as_str() {
                            "NONE" => disabled = true,
                            "CMD" => {
                                items.remove(0);
                            }
                            "CMD-SHELL" if items.len() == 2 => {
                                let shell = items.remove(1);
                                e.value.value = shell.value;
                            }
                            _ => d.err(
                                e.value.span,
                                format!("`{w}` must start with \"CMD\", \"CMD-SHELL\" or \"NONE\""),
                                "write test: [\"CMD\", \"prog\", \"arg\"], [\"CMD-SHELL\", \"shell command\"] or a string (run by /bin/sh -c)",
                            ),
                        }
                    }
                    Value::Str(_) => {}
                    _ => {}
                }
                true
            }
            _ => true,
        }
    });
    if disabled {
        v.value = Value::Bool(false);
    }
}

/// `deploy`: `replicas`, `resources.limits` (`memory`, `cpus`),
/// `update_config` and `endpoint_mode`.
fn deploy(d: &mut Decoder, e: &Entry, opts: &ComposeOptions, kept: &mut Vec<Entry>) {
    let ctx = "in `deploy`";
    let Some(m) = d.map(&e.value, "deploy") else {
        return;
    };
    for k in m {
        match k.key.as_str() {
            "replicas" => kept.push(Entry {
                key: "deploy.replicas".into(),
                ..k.clone()
            }),
            "resources" => {
                for r in k.value.as_map().unwrap_or(&[]) {
                    if r.key != "limits" {
                        cannot(d, r, opts, "in `deploy.resources`");
                        continue;
                    }
                    for l in r.value.as_map().unwrap_or(&[]) {
                        match l.key.as_str() {
                            "memory" | "cpus" => {
                                let twin = if l.key == "memory" {
                                    "mem_limit"
                                } else {
                                    "cpus"
                                };
                                if kept.iter().any(|x| x.key == twin) {
                                    d.err(
                                        l.key_span,
                                        format!(
                                            "the {} limit is set twice, here and in `{twin}`",
                                            l.key
                                        ),
                                        "keep one of them",
                                    );
                                }
                                kept.push(Entry {
                                    key: format!("deploy.resources.limits.{}", l.key),
                                    ..l.clone()
                                });
                            }
                            _ => cannot(d, l, opts, "in `deploy.resources.limits`"),
                        }
                    }
                }
            }
            "update_config" | "endpoint_mode" => kept.push(Entry {
                key: format!("deploy.{}", k.key),
                ..k.clone()
            }),
            "placement" => {
                for p in k.value.as_map().unwrap_or(&[]) {
                    if p.key == "constraints" {
                        kept.push(Entry {
                            key: "deploy.placement.constraints".into(),
                            ..p.clone()
                        });
                    } else {
                        cannot(d, p, opts, "in `deploy.placement`");
                    }
                }
            }
            "mode" if matches!(&k.value.value, Value::Str(s) if s == "replicated") => {}
            _ => cannot(d, k, opts, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unnamed_file_is_berth_toml_else_the_first_compose_file() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("berth.toml");
        assert_eq!(default_file(&default), default);
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").unwrap();
        assert_eq!(
            default_file(&default),
            dir.path().join("docker-compose.yml")
        );
        std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
        assert_eq!(default_file(&default), dir.path().join("compose.yaml"));
        std::fs::write(&default, "").unwrap();
        assert_eq!(default_file(&default), default);
    }

    use super::*;

    #[test]
    fn project_names_follow_compose() {
        assert_eq!(project_name_from_dir("My App.v2"), "myappv2");
        assert_eq!(project_name_from_dir("_web-Stack"), "web-stack");
        assert_eq!(project_name_from_dir("..."), "");
    }

    #[test]
    fn bind_sources_resolve_against_the_file() {
        let base = Path::new("/srv/app");
        assert_eq!(resolve(base, "./data", None), "/srv/app/data");
        assert_eq!(resolve(base, "../shared/x", None), "/srv/shared/x");
        assert_eq!(resolve(base, "~/conf", Some("/home/op")), "/home/op/conf");
        assert_eq!(resolve(base, "/etc/x/./y", None), "/etc/x/y");
    }
}

#[cfg(test)]
mod load_tests {
    use super::super::*;

    fn load_compose(text: &str, f: impl FnOnce(&mut LoadOptions)) -> Result<Loaded, SpecErrors> {
        let mut o = LoadOptions {
            file: PathBuf::from("/nonexistent/Web Stack/compose.yaml"),
            env: BTreeMap::from([
                ("FROM_HOST".to_string(), "host-value".to_string()),
                ("HOME".to_string(), "/home/op".to_string()),
            ]),
            ..Default::default()
        };
        f(&mut o);
        load_str_checked(&o, Format::Compose, text.into())
    }

    fn ok(text: &str) -> Deployment {
        load_compose(text, |_| {})
            .unwrap_or_else(|e| panic!("{e}"))
            .deployment
    }

    #[test]
    fn compose_keys_map_onto_the_model() {
        let d = ok(r#"
services:
  web:
    image: nginx:1.27
    entrypoint: /docker-entrypoint.sh
    command: nginx -g "daemon off;"
    environment:
      - A=1
      - FROM_HOST
      - NOT_SET_ANYWHERE
    labels: ["tier=front", "empty"]
    ports:
      - 80
      - target: 443
        published: "8443"
        host_ip: ::1
        protocol: udp
    volumes:
      - ./html:/usr/share/nginx/html:ro
      - type: bind
        source: ~/certs
        target: /certs
        read_only: true
      - type: volume
        source: cache
        target: /var/cache/nginx
    depends_on: [api]
    links: ["api:backend"]
    restart: on-failure
    user: "101:101"
    working_dir: /srv
    hostname: web1
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    read_only: true
    tmpfs: /run
    stop_grace_period: 1m30s
    stop_signal: SIGQUIT
    privileged: false
    expose: ["8080"]
    networks: [default]
    deploy:
      resources:
        limits: { memory: 128m, cpus: "0.25" }
    x-berth:
      ssh: [admin]
      snapshots_keep: 2
  api:
    image: busybox:1.36
    healthcheck:
      disable: true
    deploy: { replicas: 2 }
  worker:
    image: busybox:1.36
    profiles: [jobs]
volumes:
  cache:
x-berth:
  keys:
    admin: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII1R1yTY2hZIksre0u2J+ExGVznPcoG/tJXbZP9GqV/r admin@laptop
"#);
        assert_eq!(
            d.name, "webstack",
            "Compose's project name from the directory"
        );
        assert!(!d.services.contains_key("worker"), "profile not asked for");
        let w = &d.services["web"];
        assert_eq!(
            w.entrypoint.as_deref(),
            Some(&["/docker-entrypoint.sh".to_string()][..])
        );
        assert_eq!(w.command.as_ref().map(Vec::len), Some(3));
        assert_eq!(w.env["A"], "1");
        assert_eq!(w.env["FROM_HOST"], "host-value");
        assert!(!w.env.contains_key("NOT_SET_ANYWHERE"));
        assert_eq!(w.labels["tier"], "front");
        assert_eq!(w.labels["empty"], "");
        assert_eq!(w.ports.len(), 2);
        assert_eq!(w.ports[0].host_port, None);
        assert_eq!(w.ports[1].host_port, Some(8443));
        assert_eq!(w.ports[1].host_ip.as_deref(), Some("::1"));
        assert_eq!(w.ports[1].protocol, Protocol::Udp);
        let sources: Vec<_> = w
            .volumes
            .iter()
            .map(|v| (v.source.clone(), v.read_only))
            .collect();
        assert_eq!(
            sources,
            [
                (
                    VolumeSource::Bind("/nonexistent/Web Stack/html".into()),
                    true
                ),
                (VolumeSource::Bind("/home/op/certs".into()), true),
                (VolumeSource::Named("cache".into()), false),
            ]
        );
        assert_eq!(w.links.len(), 1);
        assert_eq!(
            (w.links[0].target.as_str(), w.links[0].alias.as_str()),
            ("api", "backend")
        );
        assert_eq!(w.restart, RestartPolicy::OnFailure);
        assert_eq!(w.settings.user.as_deref(), Some("101:101"));
        assert_eq!(w.settings.workdir.as_deref(), Some("/srv"));
        assert_eq!(w.settings.hostname.as_deref(), Some("web1"));
        assert_eq!(w.settings.cap_add, ["NET_ADMIN"]);
        assert!(w.settings.read_only);
        assert_eq!(w.settings.tmpfs, ["/run"]);
        assert_eq!(w.stop_timeout, Some(90));
        assert_eq!(w.settings.memory, Some(128 << 20));
        assert_eq!(w.settings.cpus, Some(0.25));
        assert_eq!(d.services["api"].count, 2);
        assert_eq!(w.ssh, ["admin"]);
        assert_eq!(w.snapshots_keep, Some(2));
        assert!(d.keys.contains_key("admin"));
        assert_eq!(d.services["api"].health, Some(Health::disabled()));
    }

    #[test]
    fn profiles_lenient_and_names() {
        let text = "name: fromfile\nservices:\n  a:\n    image: busybox:1.36\n    ipc: host\n  b:\n    image: busybox:1.36\n    profiles: [debug]\n";
        let e = load_compose(text, |_| {}).unwrap_err().to_string();
        assert!(
            e.contains("5:5: error: berth cannot honour `ipc` in service `a`"),
            "{e}"
        );
        let l = load_compose(text, |o| {
            o.compose.lenient = true;
            o.compose.profiles = vec!["debug".into()];
            o.env
                .insert("COMPOSE_PROJECT_NAME".into(), "fromenv".into());
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.deployment.name, "fromenv");
        assert!(l.deployment.services.contains_key("b"));
        assert!(l.warnings.to_string().contains(
            "5:5: warning: berth cannot honour `ipc` in service `a`; left out (--lenient)"
        ));
        let l = load_compose(text, |o| o.compose.lenient = true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.deployment.name, "fromfile");
        let l = load_compose(text, |o| {
            o.compose.lenient = true;
            o.name = Some("flag".into());
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.deployment.name, "flag");
    }

    #[test]
    fn mount_modes_are_read_as_compose_reads_them() {
        let d = ok(
            "services:\n  a:\n    image: busybox:1.36\n    configs:\n      - source: c\n        target: /c\n        mode: 0440\n      - source: c\n        target: /d\n        mode: 288\nconfigs:\n  c:\n    content: x\n",
        );
        let modes: Vec<u32> = d.services["a"].configs.iter().map(|f| f.mode).collect();
        assert_eq!(modes, [0o440, 0o440]);
    }

    #[test]
    fn healthcheck_forms() {
        let d = ok(
            "services:\n  a:\n    image: busybox:1.36\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready\"]\n      timeout: 5s\n  b:\n    image: busybox:1.36\n    healthcheck:\n      test: [\"NONE\"]\n  c:\n    image: busybox:1.36\n    healthcheck:\n      test: curl -f localhost\n",
        );
        let a = d.services["a"]
            .health
            .clone()
            .unwrap_or_else(|| panic!("a"));
        assert_eq!(
            a.test,
            Some(vec!["CMD-SHELL".to_string(), "pg_isready".to_string()])
        );
        assert_eq!(a.timeout_ms, Some(5000));
        assert_eq!(d.services["b"].health, Some(Health::disabled()));
        let c = d.services["c"]
            .health
            .clone()
            .unwrap_or_else(|| panic!("c"));
        assert_eq!(
            c.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "curl -f localhost".to_string()
            ])
        );
    }
}
