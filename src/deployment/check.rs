//! Checks across services: links, ssh keys, published host ports, and the
//! names services give to containers (and their units) and volumes.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::decode::{Decoder, ServiceSpans, suggest};
use super::model::{Deployment, PortMapping, Protocol, VolumeSource};
use super::tree::Span;
use crate::names;

pub fn cross(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    links(d, dep, spans);
    ssh_keys(d, dep, spans);
    ports(d, dep, spans);
    host_names(d, dep, spans);
}

fn links(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    for svc in dep.services.values() {
        let Some(sp) = spans.get(&svc.name) else {
            continue;
        };
        for (i, link) in svc.links.iter().enumerate() {
            let span = sp.links.get(i).copied().unwrap_or(sp.name);
            if link.target == svc.name {
                d.err(
                    span,
                    format!("service `{}` links to itself", svc.name),
                    "a service reaches itself without a link; remove this entry",
                );
            } else if !dep.services.contains_key(&link.target) {
                let help = match suggest(&link.target, dep.services.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "links name services of this deployment: {}",
                        dep.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                d.err(
                    span,
                    format!(
                        "service `{}` links to `{}`, which is not a service of this deployment",
                        svc.name, link.target
                    ),
                    help,
                );
            }
        }
    }
    // Cycles: depth-first search over links to existing, other services.
    let names: Vec<&String> = dep.services.keys().collect();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the path, 2 = done
    let mut reported: Vec<Vec<String>> = Vec::new();
    for start in &names {
        let mut path: Vec<(&str, usize)> = Vec::new();
        if state.contains_key(start.as_str()) {
            continue;
        }
        path.push((start.as_str(), 0));
        state.insert(start.as_str(), 1);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let li = *next;
            let Some(link) = dep.services.get(node).and_then(|svc| svc.links.get(li)) else {
                state.insert(node, 2);
                path.pop();
                continue;
            };
            *next += 1;
            let target = link.target.as_str();
            if target == node || !dep.services.contains_key(target) {
                continue;
            }
            match state.get(target) {
                None => {
                    state.insert(target, 1);
                    path.push((target, 0));
                }
                Some(1) => {
                    let from = path.iter().position(|(n, _)| *n == target).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|(n, _)| n.to_string()).collect();
                    // The same cycle found from another start is reported once.
                    let mut key = cycle.clone();
                    key.sort();
                    if reported.len() < 20 && !reported.contains(&key) {
                        reported.push(key);
                        cycle.push(target.to_string());
                        let span = spans
                            .get(node)
                            .and_then(|s| s.links.get(li).copied())
                            .unwrap_or_default();
                        d.err(
                            span,
                            format!("link cycle: {}", cycle.join(" -> ")),
                            "a service starts after the services it links to, so links cannot go round in a circle; remove one of these links",
                        );
                    }
                }
                Some(_) => {}
            }
        }
    }
}

fn ssh_keys(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    for svc in dep.services.values() {
        let Some(sp) = spans.get(&svc.name) else {
            continue;
        };
        for (i, key) in svc.ssh.iter().enumerate() {
            if dep.keys.contains_key(key) || d.bad_keys.contains(key) {
                continue;
            }
            let span = sp.ssh.get(i).copied().unwrap_or(sp.name);
            let help = match suggest(key, dep.keys.keys().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if dep.keys.is_empty() => {
                    format!("define it under `keys`: {key} = \"ssh-ed25519 AAAA...\"")
                }
                None => format!(
                    "the keys defined under `keys` are: {}",
                    dep.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            d.err(
                span,
                format!(
                    "service `{}` grants ssh to the undefined key `{key}`",
                    svc.name
                ),
                help,
            );
        }
    }
}

fn overlaps(a: &PortMapping, b: &PortMapping) -> bool {
    let any = |ip: &Option<String>| ip.as_deref().is_none_or(|s| s == "0.0.0.0" || s == "::");
    a.host_port == b.host_port
        && a.protocol == b.protocol
        && (any(&a.host_ip) || any(&b.host_ip) || a.host_ip == b.host_ip)
}

fn show(p: &PortMapping) -> String {
    let port = p.host_port.unwrap_or(0);
    match &p.host_ip {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{port}/{}", p.protocol.as_str()),
        Some(ip) => format!("{ip}:{port}/{}", p.protocol.as_str()),
        None => format!("{port}/{}", p.protocol.as_str()),
    }
}

/// A published host port: the service, the mapping and where it is written.
type Published<'a> = (&'a str, &'a PortMapping, Span);

fn ports(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    let mut all: Vec<(&str, &PortMapping, Span, u32)> = Vec::new();
    for svc in dep.services.values() {
        let Some(sp) = spans.get(&svc.name) else {
            continue;
        };
        for (i, p) in svc.ports.iter().enumerate() {
            if p.host_port.is_some() {
                all.push((
                    &svc.name,
                    p,
                    sp.ports.get(i).copied().unwrap_or(sp.name),
                    svc.count,
                ));
            }
        }
    }
    // In the order they are written.
    all.sort_by_key(|(_, _, span, _)| span.start);
    // Published so far, by host port and protocol (addresses differ within).
    let mut seen: HashMap<(Option<u16>, Protocol), Vec<Published>> = HashMap::new();
    let mut count_reported: HashSet<&str> = HashSet::new();
    for (svc, p, span, count) in all {
        // On a swarm each task binds the port on its own node: how many
        // fit is the placement check's (the swarm target's plan).
        if count > 1 && !d.swarm {
            if count_reported.insert(svc) {
                d.err(
                    span,
                    format!("service `{svc}` runs {count} instances, but host port {} can be published by only one of them", show(p)),
                    "publish the container port alone (e.g. \"80\") to let the host pick a port for each instance, or set count = 1",
                );
            }
            continue;
        }
        let group = seen.entry((p.host_port, p.protocol)).or_default();
        if let Some((other, first, first_span)) = group
            .iter()
            .find(|(o, q, _)| overlaps(p, q) && (!d.swarm || *o == svc))
        {
            let (line, col) = d.src.line_col(first_span.start);
            let first_text = show(first);
            let other = other.to_string();
            d.err(
                span,
                format!("host port {} is published twice", show(p)),
                format!(
                    "service `{other}` already publishes it as {first_text} at line {line}, column {col}; each host port can be published once"
                ),
            );
            continue;
        }
        group.push((svc, p, span));
    }
}

/// Most name collisions reported: one pair of clashing services can make
/// a hundred (one per instance).
const MAX_NAME_COLLISIONS: usize = 20;

/// `instance n of service `s`` or `service `s`` when it runs one.
fn instance_text(service: &str, index: u32, count: u32) -> String {
    if count > 1 {
        format!("instance {index} of service `{service}`")
    } else {
        format!("service `{service}`")
    }
}

/// Names are joined with `-` and may contain `-`, so two services can give
/// one container (and unit) name, or one volume name: deployment `d` with
/// service `s` (count = 2) and service `s-1` both name a container `d-s-1`;
/// service `a` with volume `b-data` and service `a-b` with volume `data`
/// both name the volume `d-a-b-data`. Either would share a container or
/// data between two services, so both are errors. (Image-declared volumes
/// are known once the image is, and checked by `plan`.)
fn host_names(d: &mut Decoder, dep: &Deployment, spans: &BTreeMap<String, ServiceSpans>) {
    let mut reported = 0;
    // Container name -> (description, where its service is named).
    let mut containers: HashMap<String, (String, Span)> = HashMap::new();
    // Volume name -> (description, where it is written).
    let mut volumes: HashMap<String, (String, Span)> = HashMap::new();
    // In the order the services are written, so the later one is reported.
    let mut order: Vec<&super::model::Service> = dep.services.values().collect();
    order.sort_by_key(|svc| spans.get(&svc.name).map(|s| s.name.start).unwrap_or(0));
    for svc in order {
        let Some(sp) = spans.get(&svc.name) else {
            continue;
        };
        for inst in dep.service_instances(svc) {
            let who = instance_text(&svc.name, inst.index, svc.count);
            if inst.container == names::GATEWAY_UNIT_STEM {
                d.err(
                    sp.name,
                    format!(
                        "the unit of {who} would be {}, the unit of berth's SSH gateway",
                        names::unit_name(&inst.container)
                    ),
                    "rename the service, or the deployment (--name)",
                );
            }
            let mut clash = |d: &mut Decoder,
                             seen: &mut HashMap<String, (String, Span)>,
                             name: String,
                             what: String,
                             span: Span,
                             help: &str| {
                match seen.get(&name) {
                    Some((first, first_span)) => {
                        if reported < MAX_NAME_COLLISIONS {
                            reported += 1;
                            let (line, col) = d.src.line_col(first_span.start);
                            d.err(
                                span,
                                format!("{what} would be named `{name}`, like {first} (line {line}, column {col})"),
                                help,
                            );
                        }
                    }
                    None => {
                        seen.insert(name, (what, span));
                    }
                }
            };
            clash(
                d,
                &mut containers,
                inst.container.clone(),
                format!("the container of {who}"),
                sp.name,
                "containers are named <deployment>-<service>, with -<n> when count > 1, and names may contain `-`; rename one of the services so their names differ",
            );
            let prefix = names::volume_prefix(&dep.name, &svc.name, inst.index);
            for (i, v) in svc.volumes.iter().enumerate() {
                let VolumeSource::Named(key) = &v.source else {
                    continue;
                };
                clash(
                    d,
                    &mut volumes,
                    names::volume_name(&prefix, key),
                    format!("volume `{key}` of {who}"),
                    sp.volumes.get(i).copied().unwrap_or(sp.name),
                    "volumes are named <deployment>-<service>[-<n>]-<volume>, and names may contain `-`; rename the volume or the service so the names differ",
                );
            }
        }
    }
}
