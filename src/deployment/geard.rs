//! OpenShift geard's JSON deployment format, accepted unchanged: top-level
//! `Keys` and `containers` (`name`, `count`, `image`, `publicports`,
//! `links`, `environment`), field names matched without regard to case.
//! What geard recorded after a deploy (`instances`, `IdPrefix`,
//! `RandomizeIds`) and what berth has no use for (`affinity`, a link's
//! `nonlocal`) is accepted and ignored.

use std::collections::{BTreeMap, HashSet};

use super::decode::{Decoder, ServiceSpans, suggest};
use super::interpolate::is_name;
use super::model::*;
use super::tree::{Entry, Node, Value};

/// Does the document look like a geard deployment (a top-level `containers`)?
pub fn is_geard(root: &Node) -> bool {
    root.as_map()
        .is_some_and(|m| m.iter().any(|e| e.key.eq_ignore_ascii_case("containers")))
}

const TOP: &[&str] = &[
    "containers",
    "keys",
    "instances",
    "idprefix",
    "randomizeids",
];
const CONTAINER: &[&str] = &[
    "name",
    "count",
    "image",
    "publicports",
    "links",
    "environment",
    "affinity",
];
const PORT: &[&str] = &["internal", "external"];
const LINK: &[&str] = &["to", "ports", "aliasports", "nonlocal"];
const ENV: &[&str] = &["name", "value"];
const KEY: &[&str] = &["type", "value"];

/// Sort a geard object's entries into the known fields (by lowercase name),
/// reporting unknown and repeated ones.
fn fields<'n>(
    d: &mut Decoder,
    entries: &'n [Entry],
    known: &[&str],
    context: &str,
) -> BTreeMap<&'static str, &'n Entry> {
    let mut out: BTreeMap<&'static str, &'n Entry> = BTreeMap::new();
    for e in entries {
        let lower = e.key.to_ascii_lowercase();
        match known.iter().find(|k| **k == lower) {
            Some(k) => {
                // `known` holds 'static strs; find gives a reference into it.
                let k: &'static str = static_name(k);
                if out.contains_key(k) {
                    d.err(
                        e.key_span,
                        format!(
                            "`{}` is given twice {context} (field names ignore case)",
                            e.key
                        ),
                        "keep one of them",
                    );
                } else {
                    out.insert(k, e);
                }
            }
            None => {
                let help = match suggest(&e.key, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known fields {context}: {}", known.join(", ")),
                };
                d.err(
                    e.key_span,
                    format!("unknown field `{}` {context}", e.key),
                    help,
                );
            }
        }
    }
    out
}

fn static_name(k: &str) -> &'static str {
    for list in [TOP, CONTAINER, PORT, LINK, ENV, KEY] {
        if let Some(s) = list.iter().find(|s| **s == k) {
            return s;
        }
    }
    ""
}

fn list<'n>(d: &mut Decoder, n: &'n Node, what: &str) -> &'n [Node] {
    match &n.value {
        Value::Seq(items) => items,
        Value::Null => &[],
        _ => {
            d.type_err(n, what, "a list", "write a JSON list [...]");
            &[]
        }
    }
}

fn port(d: &mut Decoder, n: &Node, what: &str, allow_zero: bool) -> Option<u16> {
    let v = d.integer(n, what)?;
    if v == 0 && allow_zero {
        return Some(0);
    }
    if (1..=65535).contains(&v) {
        Some(v as u16)
    } else {
        d.err(
            n.span,
            format!("`{what}` {v} is not a valid port"),
            "ports are 1 to 65535",
        );
        None
    }
}

pub fn decode(
    d: &mut Decoder,
    root: &Node,
    name: String,
) -> Option<(Deployment, BTreeMap<String, ServiceSpans>)> {
    let entries = d.root_map(root)?;
    let top = fields(d, entries, TOP, "at the top level of a geard deployment");
    let mut deployment_keys = Vec::new();
    if let Some(k) = top.get("keys") {
        for (i, item) in list(d, &k.value, "Keys").iter().enumerate() {
            let Some(m) = d.map(item, &format!("Keys[{i}]")) else {
                continue;
            };
            let f = fields(d, m, KEY, "in a geard key");
            let kname = format!("key-{}", i + 1);
            if let Some(t) = f.get("type")
                && let Some(ty) = d.string(&t.value, &format!("Keys[{i}].Type"))
                && !ty.eq_ignore_ascii_case("authorized_keys")
            {
                d.err(
                    t.value.span,
                    format!("unknown key type `{ty}`"),
                    "geard keys have \"Type\": \"authorized_keys\"",
                );
                continue;
            }
            match f.get("value") {
                Some(v) => {
                    if let Some(text) = d.string(&v.value, &format!("Keys[{i}].Value")) {
                        match super::keys::parse_key_lenient(&kname, &text) {
                            Ok(key) => deployment_keys.push(key),
                            Err(p) => d.problem(v.value.span, p),
                        }
                    }
                }
                None => d.err(
                    item.span,
                    format!("geard key {} has no `Value`", i + 1),
                    "add \"Value\": \"ssh-ed25519 AAAA...\"",
                ),
            }
        }
    }
    let mut services = BTreeMap::new();
    let mut spans = BTreeMap::new();
    let containers = top
        .get("containers")
        .map(|c| list(d, &c.value, "containers"))
        .unwrap_or(&[]);
    if containers.is_empty() {
        let span = top
            .get("containers")
            .map(|c| c.value.span)
            .unwrap_or_default();
        d.err(
            span,
            "the deployment has no containers",
            "add at least one container with a name and an image",
        );
    }
    for (i, c) in containers.iter().enumerate() {
        let Some(m) = d.map(c, &format!("containers[{i}]")) else {
            continue;
        };
        let f = fields(d, m, CONTAINER, "in a geard container");
        let Some(name_e) = f.get("name") else {
            d.err(
                c.span,
                format!("container {} has no `name`", i + 1),
                "add \"name\": \"web\"",
            );
            continue;
        };
        let Some(sname) = d.string(&name_e.value, &format!("containers[{i}].name")) else {
            continue;
        };
        let name_span = name_e.value.span;
        if !d.name(&sname, name_span, "service") {
            continue;
        }
        if services.contains_key(&sname) {
            d.err(
                name_span,
                format!("two containers are named `{sname}`"),
                "give every container its own name",
            );
            continue;
        }
        let what = |k: &str| format!("containers[{i}].{k}");
        let mut svc = Service::new(sname.clone(), String::new());
        let mut sp = ServiceSpans {
            name: name_span,
            ..Default::default()
        };
        match f.get("image") {
            Some(e) => {
                if let Some(img) = d.string(&e.value, &what("image")) {
                    match super::values::check_image(&img) {
                        Ok(()) => svc.image = img,
                        Err(p) => d.problem(e.value.span, p),
                    }
                }
            }
            None => d.err(
                name_span,
                format!("container `{sname}` has no `image`"),
                "add \"image\": \"repository:tag\"",
            ),
        }
        if let Some(e) = f.get("count") {
            sp.count = Some(e.value.span);
            if let Some(n) = d.integer(&e.value, &what("count")) {
                if (1..=100).contains(&n) {
                    svc.count = n as u32;
                } else {
                    d.err(
                        e.value.span,
                        format!("`{}` must be between 1 and 100, found {n}", what("count")),
                        "set count to the number of instances to run, 1 to 100",
                    );
                }
            }
        }
        if let Some(e) = f.get("publicports") {
            for (j, p) in list(d, &e.value, &what("publicports")).iter().enumerate() {
                let Some(pm) = d.map(p, &format!("{}[{j}]", what("publicports"))) else {
                    continue;
                };
                let pf = fields(d, pm, PORT, "in a geard public port");
                let Some(internal) = pf.get("internal") else {
                    d.err(
                        p.span,
                        "public port without `internal`",
                        "write {\"internal\": 80, \"external\": 8080}",
                    );
                    continue;
                };
                let Some(cport) = port(
                    d,
                    &internal.value,
                    &format!("{}[{j}].internal", what("publicports")),
                    false,
                ) else {
                    continue;
                };
                let host = match pf.get("external") {
                    Some(x) => match port(
                        d,
                        &x.value,
                        &format!("{}[{j}].external", what("publicports")),
                        true,
                    ) {
                        Some(0) => None,
                        Some(h) => Some(h),
                        None => continue,
                    },
                    None => None,
                };
                if svc.ports.len() >= super::decode::MAX_PORTS {
                    d.err(
                        p.span,
                        format!(
                            "container `{sname}` publishes more than {} ports",
                            super::decode::MAX_PORTS
                        ),
                        "publish fewer ports",
                    );
                    break;
                }
                svc.ports.push(PortMapping {
                    host_ip: None,
                    host_port: host,
                    container_port: cport,
                    protocol: Protocol::Tcp,
                });
                sp.ports.push(p.span);
            }
        }
        if let Some(e) = f.get("links") {
            let mut link_targets: HashSet<String> = HashSet::new();
            for (j, l) in list(d, &e.value, &what("links")).iter().enumerate() {
                let Some(lm) = d.map(l, &format!("{}[{j}]", what("links"))) else {
                    continue;
                };
                let lf = fields(d, lm, LINK, "in a geard link");
                for k in ["ports", "aliasports"] {
                    if let Some(x) = lf.get(k) {
                        for (n, item) in list(d, &x.value, k).iter().enumerate() {
                            port(d, item, &format!("{}[{j}].{k}[{n}]", what("links")), false);
                        }
                    }
                }
                let Some(to) = lf.get("to") else {
                    d.err(l.span, "link without `to`", "write {\"to\": \"service\"}");
                    continue;
                };
                let Some(target) = d.string(&to.value, "to") else {
                    continue;
                };
                if !d.name(&target, to.value.span, "link target") {
                    continue;
                }
                if !link_targets.insert(target.clone()) {
                    d.err(
                        to.value.span,
                        format!("container `{sname}` links to `{target}` twice"),
                        "keep one of them",
                    );
                    continue;
                }
                svc.links.push(Link {
                    alias: target.clone(),
                    target,
                });
                sp.links.push(to.value.span);
            }
        }
        if let Some(e) = f.get("environment") {
            for (j, item) in list(d, &e.value, &what("environment")).iter().enumerate() {
                let Some(em) = d.map(item, &format!("{}[{j}]", what("environment"))) else {
                    continue;
                };
                let ef = fields(d, em, ENV, "in a geard environment entry");
                let Some(n) = ef.get("name") else {
                    d.err(
                        item.span,
                        "environment entry without `name`",
                        "write {\"name\": \"KEY\", \"value\": \"...\"}",
                    );
                    continue;
                };
                let Some(key) = d.string(&n.value, "name") else {
                    continue;
                };
                if !is_name(&key) {
                    d.err(n.value.span, format!("environment variable name `{}` is not valid", key.escape_debug()), "environment variable names are letters, digits and _, not starting with a digit");
                    continue;
                }
                let value = match ef.get("value") {
                    Some(v) => match d.scalar_text(&v.value, "value") {
                        Some(v) => v,
                        None => continue,
                    },
                    None => String::new(),
                };
                if svc.env.insert(key.clone(), value).is_some() {
                    d.err(
                        n.value.span,
                        format!("environment variable `{key}` is set twice"),
                        "keep one of them",
                    );
                }
            }
        }
        services.insert(sname.clone(), svc);
        spans.insert(sname, sp);
    }
    Some((
        Deployment {
            name,
            source: None,
            keys: BTreeMap::new(),
            deployment_keys,
            snapshots_keep: None,
            configs: Default::default(),
            secrets: Default::default(),
            notify: None,
            notify_url: None,
            services,
        },
        spans,
    ))
}
