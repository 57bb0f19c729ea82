//! The swarm's side of a plan: the deployment's live services (and the
//! other services and network under names it would use), diffed against
//! the desired [`SwarmSpec`]s into the same [`Plan`] a host gets, one
//! item per service: `create`, `recreate` (a rolling update of its tasks,
//! naming the fields that change), `unchanged` or `remove`. Before that,
//! [`check_placement`] refuses host-mode ports the nodes cannot hold.

use std::collections::BTreeMap;

use crate::deployment::{Deployment, FileKind};
use crate::engine::Engine;
use crate::engine::networks::network_conflict;
use crate::engine::services::{NodeInfo, ServiceInfo};
use crate::engine::swarm_files::SwarmObject;
use crate::error::{Error, Result};
use crate::instance::{Integration, SwarmSpec};
use crate::names;
use crate::plan::{Action, InstancePlan, Labels, ObjectChange, Plan};

/// What is on the swarm for a plan.
#[derive(Debug, Default)]
pub struct Observed {
    /// The services labelled as the deployment's, by name.
    pub services: BTreeMap<String, ServiceInfo>,
    /// Services of other owners under a name a desired service uses.
    pub others: BTreeMap<String, ServiceInfo>,
    /// The deployment network's labels, if it exists.
    pub network: Option<Labels>,
    /// Configs and secrets of other owners under a name a desired service
    /// uses: kind, name, and the deployment they belong to (if any).
    pub other_files: Vec<(FileKind, String, Option<String>)>,
    /// The deployment's configs and secrets.
    pub files: Vec<SwarmObject>,
}

/// Read what [`diff`] compares `desired` against.
pub async fn observe(
    engine: &Engine,
    deployment: &Deployment,
    desired: &BTreeMap<String, SwarmSpec>,
) -> Result<Observed> {
    let services: BTreeMap<String, ServiceInfo> = engine
        .list_services(&deployment.name)
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut others = BTreeMap::new();
    for spec in desired.values() {
        if !services.contains_key(&spec.name)
            && let Some(s) = engine.service(&spec.name).await?
        {
            others.insert(spec.name.clone(), s);
        }
    }
    let network = engine
        .network_labels(&names::network_name(&deployment.name))
        .await?;
    let mut other_files = Vec::new();
    let objects: std::collections::BTreeSet<(FileKind, String)> = desired
        .values()
        .flat_map(|s| s.files.iter().map(|f| (f.kind, f.object.clone())))
        .collect();
    for (kind, object) in objects {
        if let Some(o) = engine.swarm_file(kind, &object).await? {
            let owner = o.labels.get(names::LABEL_DEPLOYMENT).cloned();
            if owner.as_deref() != Some(deployment.name.as_str()) {
                other_files.push((kind, object, owner));
            }
        }
    }
    let files = engine.list_swarm_files(&deployment.name).await?;
    Ok(Observed {
        services,
        others,
        network,
        other_files,
        files,
    })
}

/// The plan for `desired` against `observed`. No I/O. A service or network
/// under one of the deployment's names that is not its own is a conflict.
pub fn diff(
    deployment: &Deployment,
    desired: &BTreeMap<String, SwarmSpec>,
    observed: &Observed,
    missing_images: &[String],
) -> Result<Plan> {
    let name = &deployment.name;
    if let Some((service, s)) = observed.others.iter().next() {
        let owner = s
            .labels
            .get(names::LABEL_DEPLOYMENT)
            .map(|d| format!("deployment {}", d.escape_debug()))
            .unwrap_or_else(|| "no berth deployment (made by hand?)".into());
        return Err(Error::Conflict(format!(
            "service {service} exists on the swarm and belongs to {owner}, but deployment {name} would use that name. \
             Nothing was changed: rename the deployment (--name)"
        )));
    }
    if let Some((kind, object, owner)) = observed.other_files.first() {
        let owner = owner
            .as_ref()
            .map(|d| format!("deployment {}", d.escape_debug()))
            .unwrap_or_else(|| "no berth deployment (made by hand?)".into());
        return Err(Error::Conflict(format!(
            "{} {object} exists on the swarm and belongs to {owner}, but deployment {name} would use that name. \
             Nothing was changed: remove it (docker {} rm {object}) or rename the deployment (--name)",
            kind.as_str(),
            kind.as_str()
        )));
    }
    let network = names::network_name(name);
    if let Some(labels) = &observed.network
        && let Some(msg) = network_conflict(&network, name, labels)
    {
        return Err(Error::Conflict(msg));
    }

    let mut instances = Vec::new();
    for spec in desired.values() {
        let live = observed.services.get(&spec.name);
        let (action, changes) = match live {
            None => (Action::Create, Vec::new()),
            Some(live) => {
                let changes = changes(live, spec);
                let action = if changes.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Recreate
                };
                (action, changes)
            }
        };
        instances.push(InstancePlan {
            container: spec.name.clone(),
            service: spec.service.clone(),
            index: 1,
            action,
            changes,
            stopped_by_operator: false,
            current_id: live.map(|l| l.id.clone()),
            spec: None,
            previous: None,
        });
    }
    for live in observed.services.values() {
        if desired.values().any(|d| d.name == live.name) {
            continue;
        }
        instances.push(InstancePlan {
            container: live.name.clone(),
            service: live
                .labels
                .get(names::LABEL_SERVICE)
                .cloned()
                .unwrap_or_default(),
            index: 1,
            action: Action::Remove,
            changes: vec!["no longer in the file".into()],
            stopped_by_operator: false,
            current_id: Some(live.id.clone()),
            spec: None,
            previous: None,
        });
    }
    // Configs and secrets: the desired ones missing are made, those no
    // desired service uses go once the apply converged.
    let access = super::access::object(deployment)?.map(|(name, _)| name);
    let mut wanted: std::collections::BTreeSet<(FileKind, &str)> = desired
        .values()
        .flat_map(|s| s.files.iter().map(|f| (f.kind, f.object.as_str())))
        .collect();
    // What the deployment grants over SSH, for the gateways on every node.
    wanted.extend(access.as_deref().map(|a| (FileKind::Config, a)));
    let mut objects = Vec::new();
    for (kind, object) in &wanted {
        if !observed
            .files
            .iter()
            .any(|o| o.kind == *kind && o.name == *object)
        {
            objects.push(ObjectChange {
                action: Action::Create,
                object: format!("{} {object}", kind.as_str()),
            });
        }
    }
    for o in &observed.files {
        if !wanted.contains(&(o.kind, o.name.as_str())) {
            let why = if o.labels.get(names::LABEL_ROLE).map(String::as_str)
                == Some(super::access::ROLE)
            {
                "an earlier ssh access list"
            } else {
                "no service uses it"
            };
            objects.push(ObjectChange {
                action: Action::Remove,
                object: format!("{} {} ({why})", o.kind.as_str(), o.name),
            });
        }
    }
    Ok(Plan {
        deployment: name.clone(),
        integration: Integration::Swarm,
        images_to_pull: missing_images.to_vec(),
        create_network: observed.network.is_none(),
        volumes_to_create: Vec::new(),
        instances,
        port_changes: Vec::new(),
        units_to_remove: Vec::new(),
        schedule_units: Vec::new(),
        settings_changes: Vec::new(),
        objects,
        warnings: Vec::new(),
        image_digests: BTreeMap::new(),
    })
}

/// What differs between the live service and `spec`: the recorded spec
/// field by field, and the replicas the live service asks for (scaled by
/// hand) or a spec made by another berth.
fn changes(live: &ServiceInfo, spec: &SwarmSpec) -> Vec<String> {
    let recorded = live
        .labels
        .get(names::LABEL_SWARM_SPEC)
        .and_then(|t| serde_json::from_str::<SwarmSpec>(t).ok());
    let mut out = match &recorded {
        Some(r) => r.diff(spec),
        None => vec!["spec: (not recorded by berth) → the file's".into()],
    };
    let wanted = u64::from(spec.replicas);
    if recorded
        .as_ref()
        .is_some_and(|r| r.replicas == spec.replicas)
        && live.replicas != Some(wanted)
    {
        out.push(format!(
            "replicas (live): {} → {wanted}{}",
            live.replicas
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(not replicated)".into()),
            // berth scales a service to 0 only to copy its volumes, and
            // scales it back; at 0 it was left so by an interrupted copy
            // (or by hand), and the apply runs it again.
            if live.replicas == Some(0) {
                " (scaled to 0: held by an interrupted backup, restore or snapshot, or by hand)"
            } else {
                ""
            }
        ));
    }
    if out.is_empty() && live.labels.get(names::LABEL_SPEC_HASH) != Some(&spec.hash()) {
        out.push("spec hash: differs from the recorded spec".into());
    }
    out
}

/// The nodes a service's tasks may run on: ready and active nodes matching
/// its placement. A service pinned to the node holding its volumes may run
/// only on the node with its pin label, whatever that node's state (it
/// waits for it); before its first apply one node will be chosen.
fn eligible<'a>(spec: &SwarmSpec, nodes: &'a [NodeInfo]) -> Vec<Option<&'a str>> {
    let placed = |n: &&NodeInfo| meets_placement(&spec.placement, n);
    match &spec.pinned_by {
        Some(label) => {
            let pinned: Vec<Option<&str>> = nodes
                .iter()
                .filter(placed)
                .filter(|n| n.labels.contains_key(label))
                .map(|n| Some(n.id.as_str()))
                .collect();
            if pinned.is_empty() {
                // Chosen at apply among the ready, active nodes.
                let any = nodes
                    .iter()
                    .filter(placed)
                    .any(|n| n.state == "ready" && n.availability == "active");
                if any { vec![None] } else { Vec::new() }
            } else {
                pinned
            }
        }
        None => nodes
            .iter()
            .filter(placed)
            .filter(|n| n.state == "ready" && n.availability == "active")
            .map(|n| Some(n.id.as_str()))
            .collect(),
    }
}

/// Does `node` meet the service's own `placement` (as far as berth can
/// tell; Swarm decides the rest)?
pub fn meets_placement(placement: &[String], node: &NodeInfo) -> bool {
    crate::deployment::placement::meets_all(
        placement,
        &crate::deployment::placement::NodeFacts {
            id: &node.id,
            hostname: &node.hostname,
            role: &node.role,
            labels: &node.labels,
        },
    )
}

fn tasks_text(n: u32) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}

fn nodes_text(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

/// Refuse a placement of published ports that cannot work. A host-mode
/// port is bound on the node a task runs on, so each node holds at most one
/// task publishing a given port: the tasks of one service publishing a
/// fixed port (its replicas, plus those a start-first update starts beside
/// them) need as many eligible nodes (see [`eligible`]), and so do the
/// tasks of all the services publishing the same port together. No I/O.
pub fn check_placement(desired: &BTreeMap<String, SwarmSpec>, nodes: &[NodeInfo]) -> Result<()> {
    // (port, protocol) → the services publishing it.
    let mut by_port: BTreeMap<(u16, &str), Vec<&SwarmSpec>> = BTreeMap::new();
    for spec in desired.values() {
        let mut seen = Vec::new();
        for p in &spec.ports {
            if let Some(port) = p.host_port {
                let key = (port, p.protocol.as_str());
                if !seen.contains(&key) {
                    seen.push(key);
                    by_port.entry(key).or_default().push(spec);
                }
            }
        }
    }
    for ((port, proto), specs) in &by_port {
        let mut union: Vec<&str> = Vec::new();
        let mut to_pin = 0usize;
        let mut total = 0u32;
        for spec in specs {
            let can = eligible(spec, nodes);
            let surge = spec.update.surge(spec.replicas);
            let need = spec.replicas.saturating_add(surge);
            if need as usize > can.len() {
                let during = if surge > 0 {
                    format!(
                        " ({} and {} more beside them during its {} update)",
                        tasks_text(spec.replicas),
                        surge,
                        spec.update.order.as_str()
                    )
                } else {
                    String::new()
                };
                let fix = if surge > 0 {
                    "lower count, set update_config.order = \"stop-first\", or add nodes"
                } else {
                    "lower count, publish the port in fewer tasks, or add nodes"
                };
                return Err(Error::Usage(format!(
                    "service {}: {}{during} publish host-mode port {port}/{proto}, but only {} can run them \
                     (each node binds the port for one task; nodes counted: ready, active and matching the service's placement). \
                     Nothing was changed: {fix}",
                    spec.service,
                    tasks_text(need),
                    nodes_text(can.len()),
                )));
            }
            total = total.saturating_add(need);
            for n in can {
                match n {
                    Some(id) if !union.contains(&id) => union.push(id),
                    Some(_) => {}
                    None => to_pin += 1,
                }
            }
        }
        // A service with volumes not pinned yet gets one node, at best one
        // the others do not use.
        let free = nodes
            .iter()
            .filter(|n| n.state == "ready" && n.availability == "active")
            .filter(|n| !union.contains(&n.id.as_str()))
            .count();
        let room = union.len() + to_pin.min(free);
        if specs.len() > 1 && total as usize > room {
            let names: Vec<&str> = specs.iter().map(|s| s.service.as_str()).collect();
            return Err(Error::Usage(format!(
                "services {} all publish host-mode port {port}/{proto}: {} between them, but only {} can run them \
                 (each node binds the port for one task). Nothing was changed: publish the port from one service, \
                 use different host ports, lower count, or add nodes",
                names.join(", "),
                tasks_text(total),
                nodes_text(room),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::{PortMapping, UpdateConfig, UpdateOrder};
    use crate::instance::SwarmUpdate;

    fn spec(service: &str, replicas: u32, port: u16, order: Option<UpdateOrder>) -> SwarmSpec {
        let mut s: SwarmSpec = serde_json::from_value(serde_json::json!({
            "deployment": "d", "service": service, "name": format!("d-{service}"),
            "image": "busybox", "replicas": replicas, "network": "d",
            "endpoint_mode": "dnsrr", "restart": "always", "stop_timeout": 2,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        s.ports = vec![PortMapping {
            host_ip: None,
            host_port: Some(port),
            container_port: 80,
            protocol: Default::default(),
        }];
        let config = order.map(|o| UpdateConfig {
            order: Some(o),
            ..Default::default()
        });
        s.update = SwarmUpdate::resolve(config.as_ref(), false, true);
        s
    }

    fn node(id: &str, state: &str, availability: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: id.into(),
            role: "worker".into(),
            state: state.into(),
            addr: String::new(),
            leader: false,
            availability: availability.into(),
            labels: BTreeMap::new(),
        }
    }

    fn check(specs: Vec<SwarmSpec>, nodes: &[NodeInfo]) -> std::result::Result<(), String> {
        let desired = specs.into_iter().map(|s| (s.service.clone(), s)).collect();
        check_placement(&desired, nodes).map_err(|e| {
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        })
    }

    #[test]
    fn host_mode_ports_need_a_node_per_task() {
        let three = [
            node("a", "ready", "active"),
            node("b", "ready", "active"),
            node("c", "ready", "active"),
        ];
        assert!(check(vec![spec("web", 3, 80, None)], &three).is_ok());
        let e = check(vec![spec("web", 4, 80, None)], &three).unwrap_err();
        assert!(
            e.contains("service web: 4 tasks") && e.contains("80/tcp") && e.contains("3 nodes"),
            "{e}"
        );
        // Down and drained nodes do not count.
        let fewer = [
            node("a", "ready", "active"),
            node("b", "down", "active"),
            node("c", "ready", "drain"),
        ];
        let e = check(vec![spec("web", 2, 80, None)], &fewer).unwrap_err();
        assert!(e.contains("only 1 node can"), "{e}");
        // A start-first update starts a task beside the old ones.
        let e = check(
            vec![spec("web", 3, 80, Some(UpdateOrder::StartFirst))],
            &three,
        )
        .unwrap_err();
        assert!(e.contains("start-first"), "{e}");
        assert!(
            check(
                vec![spec("web", 2, 80, Some(UpdateOrder::StartFirst))],
                &three
            )
            .is_ok()
        );
        // Two services on one port share the nodes; other ports do not.
        let e = check(vec![spec("a", 2, 80, None), spec("b", 2, 80, None)], &three).unwrap_err();
        assert!(e.contains("services a, b") && e.contains("4 tasks"), "{e}");
        assert!(check(vec![spec("a", 2, 80, None), spec("b", 1, 80, None)], &three).is_ok());
        assert!(check(vec![spec("a", 3, 80, None), spec("b", 3, 81, None)], &three).is_ok());
    }

    #[test]
    fn a_pinned_service_counts_only_its_node() {
        let mut nodes = [node("a", "ready", "active"), node("b", "ready", "active")];
        let pinned = |s: &str| {
            let mut p = spec(s, 1, 80, None);
            p.pinned_by = Some(crate::instance::swarm::pin_label("d", s));
            p
        };
        // Not pinned yet: each gets a node, while there are free ones.
        assert!(check(vec![pinned("x"), pinned("y")], &nodes).is_ok());
        assert!(check(vec![pinned("x"), pinned("y"), pinned("z")], &nodes).is_err());
        // Both pinned to one node: one port there, two tasks.
        for n in &mut nodes[..1] {
            n.labels
                .insert(crate::instance::swarm::pin_label("d", "x"), "true".into());
            n.labels
                .insert(crate::instance::swarm::pin_label("d", "y"), "true".into());
        }
        let e = check(vec![pinned("x"), pinned("y")], &nodes).unwrap_err();
        assert!(e.contains("services x, y"), "{e}");
        // Pinned to a node that is down: it waits for it, not refused.
        nodes[0].state = "down".into();
        assert!(check(vec![pinned("x")], &nodes).is_ok());
    }

    fn deployment() -> Deployment {
        serde_json::from_value(serde_json::json!({"name": "d", "services": {}}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Service `s` of deployment `d` mounting config `conf` as `object`.
    fn desired(object: &str) -> BTreeMap<String, SwarmSpec> {
        let spec: SwarmSpec = serde_json::from_value(serde_json::json!({
            "deployment": "d", "service": "s", "name": "d-s", "image": "i",
            "replicas": 1, "network": "d", "endpoint_mode": "dnsrr",
            "restart": "always", "stop_timeout": 1,
            "files": [{"kind": "config", "name": "conf", "object": object,
                       "target": "/c", "uid": 0, "gid": 0, "mode": 292}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        BTreeMap::from([("s".to_string(), spec)])
    }

    fn object(name: &str, owner: Option<&str>) -> SwarmObject {
        SwarmObject {
            kind: FileKind::Config,
            id: format!("id-{name}"),
            name: name.into(),
            labels: owner
                .map(|o| (names::LABEL_DEPLOYMENT.to_string(), o.to_string()))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn configs_to_make_and_to_remove_are_in_the_plan() {
        let observed = Observed {
            files: vec![object("d_conf_old", Some("d"))],
            ..Default::default()
        };
        let plan = diff(&deployment(), &desired("d_conf_new"), &observed, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan.objects,
            [
                ObjectChange {
                    action: Action::Create,
                    object: "config d_conf_new".into()
                },
                ObjectChange {
                    action: Action::Remove,
                    object: "config d_conf_old (no service uses it)".into()
                }
            ]
        );
        assert!(plan.render().contains("  remove    config d_conf_old"));
        // In use and there: nothing to do for it.
        let observed = Observed {
            files: vec![object("d_conf_new", Some("d"))],
            ..Default::default()
        };
        let plan = diff(&deployment(), &desired("d_conf_new"), &observed, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plan.objects.is_empty(), "{:?}", plan.objects);
    }

    #[test]
    fn a_config_of_another_owner_under_a_name_the_deployment_uses_is_a_conflict() {
        let observed = Observed {
            other_files: vec![(FileKind::Config, "d_conf_new".into(), None)],
            ..Default::default()
        };
        let err = diff(&deployment(), &desired("d_conf_new"), &observed, &[])
            .err()
            .unwrap_or_else(|| panic!("no conflict"));
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(
            err.to_string().contains(
                "config d_conf_new exists on the swarm and belongs to no berth deployment"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_service_left_at_0_replicas_is_scaled_back_and_the_plan_says_why() {
        let want = spec("db", 1, 80, None);
        let live = |replicas: u64| ServiceInfo {
            id: "id".into(),
            name: want.name.clone(),
            version: 1,
            labels: BTreeMap::from([
                (
                    names::LABEL_SWARM_SPEC.to_string(),
                    serde_json::to_string(&want).unwrap_or_else(|e| panic!("{e}")),
                ),
                (names::LABEL_SPEC_HASH.to_string(), want.hash()),
            ]),
            replicas: Some(replicas),
            update: None,
        };
        assert!(changes(&live(1), &want).is_empty());
        assert_eq!(
            changes(&live(0), &want),
            [
                "replicas (live): 0 → 1 (scaled to 0: held by an interrupted backup, restore or snapshot, or by hand)"
            ]
        );
        assert_eq!(changes(&live(3), &want), ["replicas (live): 3 → 1"]);
    }
}
