//! Decoding `configs` and `secrets`: the top-level tables (where each
//! file's content comes from) and the services' mounts of them (target,
//! owner, mode, reload signal), with every check a mount needs.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::{Decoder, ServiceSpans, suggest};
use super::model::{FileKind, FileMount, FileSource, Service};
use super::tree::{Entry, Node, Span, Value};
use super::values;

/// Keys of a top-level config or secret.
pub const SOURCE_KEYS: &[&str] = &["file", "content", "environment"];
/// Keys of a service's mount in its long form.
pub const MOUNT_KEYS: &[&str] = &["source", "target", "uid", "gid", "mode", "reload"];

/// Top-level `configs` or `secrets`: name -> content. Names whose
/// definition is wrong (already reported) go to `bad`, so that mounts of
/// them are not reported again as unknown.
pub fn sources(
    d: &mut Decoder,
    v: &Node,
    kind: FileKind,
    bad: &mut BTreeSet<String>,
) -> BTreeMap<String, FileSource> {
    let mut out = BTreeMap::new();
    let what = kind.key();
    let Some(entries) = d.map(v, what) else {
        return out;
    };
    for e in entries {
        if !d.name(&e.key, e.key_span, kind.as_str()) {
            bad.insert(e.key.clone());
            continue;
        }
        match source(d, e, kind) {
            Some(s) => {
                out.insert(e.key.clone(), s);
            }
            None => {
                bad.insert(e.key.clone());
            }
        }
    }
    out
}

fn source(d: &mut Decoder, e: &Entry, kind: FileKind) -> Option<FileSource> {
    let name = &e.key;
    let what = format!("{}.{name}", kind.key());
    let help = match kind {
        FileKind::Config => {
            "give the config one of file = \"path\" (beside the deployment file), content = \"text\" or environment = \"VARIABLE\""
        }
        FileKind::Secret => {
            "give the secret one of file = \"path\" (beside the deployment file) or environment = \"VARIABLE\""
        }
    };
    let entries = match &e.value.value {
        Value::Map(m) => m,
        _ => {
            d.type_err(&e.value, &what, "a table", help);
            return None;
        }
    };
    let mut found: Vec<(&Entry, &str)> = Vec::new();
    for f in entries {
        match f.key.as_str() {
            k @ ("file" | "content" | "environment") => found.push((f, k)),
            k if k.starts_with("x-") => {}
            _ => {
                d.unknown_key(f, SOURCE_KEYS, &format!("in {} `{name}`", kind.as_str()));
                return None;
            }
        }
    }
    let (f, how) = match found.as_slice() {
        [one] => *one,
        [] => {
            d.err(
                e.key_span,
                format!(
                    "{} `{name}` says nowhere its content comes from",
                    kind.as_str()
                ),
                help,
            );
            return None;
        }
        [_, second, ..] => {
            d.err(
                second.0.key_span,
                format!(
                    "{} `{name}` has more than one of file, content and environment",
                    kind.as_str()
                ),
                "keep one of them",
            );
            return None;
        }
    };
    let fwhat = format!("{what}.{how}");
    let text = d.string(&f.value, &fwhat)?;
    let content = match how {
        "content" => {
            if kind == FileKind::Secret {
                d.warn(
                    f.key_span,
                    format!("secret `{name}` is written inline in the deployment file"),
                    "whoever reads the file (or its history in version control) reads the secret: keep it in a root-only file (file = \"...\") or pass it in a variable (environment = \"VARIABLE\")",
                );
            }
            text
        }
        "environment" => {
            if !super::interpolate::is_name(&text) {
                d.err(
                    f.value.span,
                    format!("`{fwhat}`: `{}` is not a variable name", text.escape_debug()),
                    "write the name of the variable that holds the value, e.g. environment = \"DB_PASSWORD\"",
                );
                return None;
            }
            match d.vars.get(&text) {
                Some(v) => v.clone(),
                None => {
                    d.err(
                        f.value.span,
                        format!("variable `{text}` (used in `{fwhat}`) is not defined"),
                        format!(
                            "set {text} in the environment, in .env beside the deployment file, with --set {text}=..., or in [vars]"
                        ),
                    );
                    return None;
                }
            }
        }
        _ => read_file(d, &text, f.value.span, kind, name)?,
    };
    if content.len() as u64 > crate::input::MAX_FILE_CONTENT {
        d.err(
            f.value.span,
            format!(
                "{} `{name}` is larger than {}",
                kind.as_str(),
                crate::input::size(crate::input::MAX_FILE_CONTENT)
            ),
            "configs and secrets are small files; put large data in a volume",
        );
        return None;
    }
    if content.contains('\0') {
        d.err(
            f.value.span,
            format!("{} `{name}` contains a NUL character", kind.as_str()),
            "configs and secrets are text files",
        );
        return None;
    }
    Some(FileSource { content })
}

/// A config's or secret's `file`, relative to the deployment file. Its
/// content is never echoed, in errors either.
fn read_file(d: &mut Decoder, rel: &str, span: Span, kind: FileKind, name: &str) -> Option<String> {
    let path = d.base_dir.join(rel);
    let k = kind.as_str();
    let bytes =
        match crate::input::read_capped(&path, crate::input::MAX_FILE_CONTENT) {
            Ok(b) => b,
            Err(e) if e.is_refusal() => {
                d.err(
                    span,
                    format!("the file `{rel}` of {k} `{name}` {}", e.reason()),
                    "a config or secret is read from a regular file",
                );
                return None;
            }
            Err(e) => {
                d.err(
                span,
                format!("cannot read the file `{rel}` of {k} `{name}`: {}", e.reason()),
                format!(
                    "paths are relative to the deployment file's directory; berth looked for `{}`",
                    path.display()
                ),
            );
                return None;
            }
        };
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(_) => {
            d.err(
                span,
                format!("the file `{rel}` of {k} `{name}` is not UTF-8 text"),
                "berth delivers configs and secrets as text files",
            );
            None
        }
    }
}

/// A mount as written, before the service's other settings are known.
pub struct PendingMount {
    kind: FileKind,
    source: String,
    source_span: Span,
    target: Option<String>,
    target_span: Span,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    reload: Option<String>,
}

/// A service's `configs` or `secrets` list: names (`["users"]`) or tables.
pub fn mounts(d: &mut Decoder, v: &Node, kind: FileKind, what: &str) -> Vec<PendingMount> {
    let mut out = Vec::new();
    let Value::Seq(items) = &v.value else {
        d.type_err(
            v,
            what,
            "a list",
            &format!(
                "write {} = [\"name\"] or [{{ source = \"name\", target = \"/path\" }}]",
                kind.key()
            ),
        );
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let iwhat = format!("{what}[{i}]");
        match &item.value {
            Value::Str(s) => out.push(PendingMount {
                kind,
                source: s.clone(),
                source_span: item.span,
                target: None,
                target_span: item.span,
                uid: None,
                gid: None,
                mode: None,
                reload: None,
            }),
            Value::Map(entries) => {
                if let Some(m) = long_mount(d, item, entries, kind, &iwhat) {
                    out.push(m);
                }
            }
            _ => d.type_err(
                item,
                &iwhat,
                "a name or a table",
                "write \"name\" or { source = \"name\", target = \"/path\" }",
            ),
        }
    }
    out
}

fn long_mount(
    d: &mut Decoder,
    item: &Node,
    entries: &[Entry],
    kind: FileKind,
    what: &str,
) -> Option<PendingMount> {
    let mut m = PendingMount {
        kind,
        source: String::new(),
        source_span: item.span,
        target: None,
        target_span: item.span,
        uid: None,
        gid: None,
        mode: None,
        reload: None,
    };
    let mut ok = true;
    let mut have_source = false;
    for e in entries {
        let v = &e.value;
        let fwhat = format!("{what}.{}", e.key);
        match e.key.as_str() {
            "source" => match d.string(v, &fwhat) {
                Some(s) => {
                    have_source = true;
                    m.source = s;
                    m.source_span = v.span;
                }
                None => ok = false,
            },
            "target" => match d.string(v, &fwhat) {
                Some(t) => {
                    m.target = Some(t);
                    m.target_span = v.span;
                }
                None => ok = false,
            },
            "uid" | "gid" => {
                let n = match &v.value {
                    Value::Int(i) => Some(*i),
                    Value::Str(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                match n.and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n < u32::MAX => {
                        if e.key == "uid" {
                            m.uid = Some(n);
                        } else {
                            m.gid = Some(n);
                        }
                    }
                    _ => {
                        d.err(
                            v.span,
                            format!("`{fwhat}` must be a numeric id"),
                            "write the number, e.g. uid = 1000 (names mean nothing outside the image)",
                        );
                        ok = false;
                    }
                }
            }
            "mode" => match &v.value {
                Value::Str(s)
                    if !s.is_empty()
                        && s.len() <= 4
                        && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
                {
                    match u32::from_str_radix(s, 8) {
                        Ok(n) if n <= 0o777 => m.mode = Some(n),
                        _ => {
                            d.err(
                                v.span,
                                format!("`{fwhat}` \"{s}\" sets more than permission bits"),
                                "write permission bits only, e.g. \"0440\" (no setuid, setgid or sticky bit)",
                            );
                            ok = false;
                        }
                    }
                }
                _ => {
                    d.err(
                        v.span,
                        format!("`{fwhat}` must be octal digits in a string"),
                        "write the mode as a string, e.g. mode = \"0440\" (a bare number is ambiguous between formats)",
                    );
                    ok = false;
                }
            },
            "reload" => match d.string_or_number(v, &fwhat) {
                Some(sig) => match values::parse_signal(&sig) {
                    Ok(s) => m.reload = Some(s),
                    Err(p) => {
                        d.problem(v.span, p);
                        ok = false;
                    }
                },
                None => ok = false,
            },
            k if k.starts_with("x-") => {}
            _ => {
                d.unknown_key(e, MOUNT_KEYS, &format!("in `{what}`"));
                ok = false;
            }
        }
    }
    if !have_source && ok {
        d.err(
            item.span,
            format!("`{what}` has no `source`"),
            format!("name the {} it mounts: source = \"name\"", kind.as_str()),
        );
        ok = false;
    }
    ok.then_some(m)
}

/// Finish a service's mounts once all its settings are known: default
/// targets, owners (the service's numeric `user`, else root) and modes;
/// targets must be absolute, distinct from each other and from volumes,
/// not below a tmpfs, and the root file system writable.
pub fn finish(
    d: &mut Decoder,
    svc: &mut Service,
    spans: &mut ServiceSpans,
    pending: Vec<PendingMount>,
    read_only_span: Option<Span>,
) {
    let (user_uid, user_gid) = numeric_user(svc.settings.user.as_deref());
    let mut targets: BTreeSet<String> = svc
        .volumes
        .iter()
        .map(|v| v.target.trim_end_matches('/').to_string())
        .collect();
    for p in pending {
        let target = p
            .target
            .clone()
            .unwrap_or_else(|| p.kind.default_target(&p.source));
        let sname = &svc.name;
        spans
            .file_sources
            .push((p.kind, p.source.clone(), p.source_span));
        if let Err(why) = check_target(&target) {
            d.err(
                p.target_span,
                format!(
                    "{} target `{}` {why}",
                    p.kind.as_str(),
                    target.escape_debug()
                ),
                "write the file's absolute path in the container, e.g. \"/etc/app/app.conf\"",
            );
            continue;
        }
        if !targets.insert(target.clone()) {
            d.err(
                p.target_span,
                format!("two mounts are at `{target}` in service `{sname}`"),
                "give each config, secret and volume its own path",
            );
            continue;
        }
        if let Some(t) = svc.settings.tmpfs.iter().find(|t| {
            let dir = t.split(':').next().unwrap_or("").trim_end_matches('/');
            target.starts_with(&format!("{dir}/"))
        }) {
            let dir = t.split(':').next().unwrap_or("");
            d.err(
                p.target_span,
                format!(
                    "{} target `{target}` is below the tmpfs `{dir}` of service `{sname}`",
                    p.kind.as_str()
                ),
                "the tmpfs is mounted when the container starts and would hide the file: choose a path outside it",
            );
            continue;
        }
        if let Some(span) = read_only_span
            && svc.settings.read_only
        {
            d.err(
                span,
                format!("service `{sname}` mounts configs or secrets but has a read-only root file system"),
                "berth copies configs and secrets into the container before it starts, which needs a writable root file system: remove read_only",
            );
            // Once per service is enough.
            return;
        }
        let m = FileMount {
            source: p.source.clone(),
            target,
            uid: p.uid.unwrap_or(user_uid),
            gid: p.gid.unwrap_or(if p.uid.is_some() { 0 } else { user_gid }),
            mode: p.mode.unwrap_or(p.kind.default_mode()),
            reload: p.reload,
        };
        match p.kind {
            FileKind::Config => svc.configs.push(m),
            FileKind::Secret => svc.secrets.push(m),
        }
    }
}

/// `user = "1000"` or `"1000:1000"`: the ids the files default to; a name
/// (resolved only inside the image) or no user: root.
fn numeric_user(user: Option<&str>) -> (u32, u32) {
    let Some(u) = user else { return (0, 0) };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    match uid.parse::<u32>() {
        Ok(uid) => (uid, gid.and_then(|g| g.parse().ok()).unwrap_or(0)),
        Err(_) => (0, 0),
    }
}

fn check_target(t: &str) -> Result<(), &'static str> {
    if !t.starts_with('/') {
        return Err("is not an absolute path");
    }
    if t == "/" || t.ends_with('/') {
        return Err("names a directory, not a file");
    }
    if t.split('/').any(|c| c == ".." || c == ".") || t.contains("//") {
        return Err("is not a plain path (no `.`, `..` or `//`)");
    }
    if t.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    Ok(())
}

/// Every mount must name a config or secret the file defines.
pub fn check_references(
    d: &mut Decoder,
    configs: &BTreeMap<String, FileSource>,
    secrets: &BTreeMap<String, FileSource>,
    bad: &BTreeSet<String>,
    spans: &BTreeMap<String, ServiceSpans>,
) {
    for (svc, sp) in spans {
        for (kind, source, span) in &sp.file_sources {
            let defined = match kind {
                FileKind::Config => configs,
                FileKind::Secret => secrets,
            };
            if defined.contains_key(source) || bad.contains(source) {
                continue;
            }
            let known = defined.keys().chain(bad.iter()).map(String::as_str);
            let help = match suggest(source, known) {
                Some(s) => format!("did you mean `{s}`?"),
                None if defined.is_empty() => format!(
                    "define it at the top level: [{}.{source}] with file = \"...\"",
                    kind.key()
                ),
                None => format!(
                    "the {} defined are: {}",
                    kind.key(),
                    defined.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            d.err(
                *span,
                format!(
                    "service `{svc}` mounts the {} `{}`, which is not defined",
                    kind.as_str(),
                    source.escape_debug()
                ),
                help,
            );
        }
    }
}
