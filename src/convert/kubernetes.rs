//! `--to kubernetes`: a Deployment per service (a StatefulSet when it has
//! named volumes, whose claim templates give every replica its own volume
//! as berth does), a Service for the ports it publishes, ConfigMaps,
//! Secrets (only into a 0600 file), probes from the health check, and
//! init containers that wait for linked services.

use serde_json::{Map, Value, json};

use super::{OutFile, Output};
use crate::deployment::{Deployment, FileKind, OnUnhealthy, Service, VolumeSource};
use crate::error::{Error, Result};

/// The manifests' file; Secrets (with their values) go to [`SECRETS`].
pub const FILE: &str = "kubernetes.yaml";
pub const SECRETS: &str = "secrets.yaml";

/// Image of the init containers that wait for a linked service.
const WAIT_IMAGE: &str = "busybox:1.36";

/// A DNS-1123 name from a berth name (lowercase, `-` for anything else).
fn k8s_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    n.trim_matches('-').to_string()
}

fn labels(dep: &Deployment, svc: &Service) -> Value {
    json!({
        "app.kubernetes.io/name": k8s_name(&svc.name),
        "app.kubernetes.io/part-of": k8s_name(&dep.name),
    })
}

/// Whole seconds, at least 1, from milliseconds.
fn secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

fn yaml(docs: &[Value]) -> Result<String> {
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(
            &serde_saphyr::to_string(d)
                .map_err(|e| Error::Runtime(format!("cannot write the manifests: {e}")))?,
        );
    }
    Ok(text)
}

pub(super) fn convert(dep: &Deployment, to_dir: bool, out: &mut Output) -> Result<()> {
    let mut docs = Vec::new();
    for (name, c) in &dep.configs {
        docs.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("config-{}", k8s_name(name)) },
            "data": { "content": c.content },
        }));
    }
    let mut secret_docs = Vec::new();
    for (name, s) in &dep.secrets {
        let obj = format!("secret-{}", k8s_name(name));
        if to_dir {
            secret_docs.push(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": obj },
                "type": "Opaque",
                "stringData": { "content": s.content },
            }));
            out.report.note(
                None,
                format!("secrets.{name}"),
                format!("its value is in {SECRETS} (mode 0600), as a Secret needs it"),
            );
        } else {
            out.report.note(
                None,
                format!("secrets.{name}"),
                format!("its value is not written out: kubectl create secret generic {obj} --from-file=content=FILE (or give -o DIR)"),
            );
        }
    }
    if !dep.keys.is_empty() || !dep.deployment_keys.is_empty() {
        out.report.lose(
            None,
            "keys",
            "Kubernetes has no SSH gateway: the keys are not carried",
        );
    }
    if dep.snapshots_keep.is_some() {
        out.report.lose(
            None,
            "snapshots_keep",
            "Kubernetes keeps no volume snapshots",
        );
    }
    if dep.notify.is_some() {
        out.report.lose(
            None,
            "notify",
            "Kubernetes runs no command after an image update",
        );
    }
    if !dep.auto_update_services().is_empty() {
        out.report.lose(
            None,
            "auto_update",
            "Kubernetes does not follow a tag to new digests on a schedule, nor roll data back",
        );
    }
    if dep.notify_url.is_some() {
        out.report.lose(
            None,
            "notify_url",
            "Kubernetes calls no webhook after an image update",
        );
    }
    for svc in dep.services.values() {
        service(dep, svc, out, &mut docs);
    }
    out.files.insert(
        0,
        OutFile {
            path: FILE.into(),
            content: yaml(&docs)?,
            mode: 0o644,
        },
    );
    if !secret_docs.is_empty() {
        out.files.push(OutFile {
            path: SECRETS.into(),
            content: yaml(&secret_docs)?,
            mode: 0o600,
        });
    }
    Ok(())
}

fn service(dep: &Deployment, svc: &Service, out: &mut Output, docs: &mut Vec<Value>) {
    let r = &mut out.report;
    let n = Some(svc.name.as_str());
    let name = k8s_name(&svc.name);
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert("image".into(), json!(svc.image));
    // Kubernetes' `command` replaces the ENTRYPOINT, `args` the CMD.
    if let Some(e) = &svc.entrypoint {
        c.insert("command".into(), json!(e));
    }
    if let Some(a) = &svc.command {
        c.insert("args".into(), json!(a));
    }
    if !svc.env.is_empty() {
        let env: Vec<Value> = svc
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        c.insert("env".into(), Value::Array(env));
    }
    let mut svc_ports = Vec::new();
    if !svc.ports.is_empty() {
        let mut ports = Vec::new();
        for p in &svc.ports {
            let proto = p.protocol.as_str().to_ascii_uppercase();
            ports.push(json!({ "containerPort": p.container_port, "protocol": proto }));
            svc_ports.push(json!({
                "name": format!("{}-{}", p.protocol.as_str(), p.container_port),
                "port": p.container_port, "targetPort": p.container_port, "protocol": proto,
            }));
            if p.host_port.is_some() || p.host_ip.is_some() {
                r.lose(
                    n,
                    format!("ports.{}", super::compose::port(p)),
                    "the host side is not published: the Service is ClusterIP (add a NodePort, LoadBalancer or Ingress)",
                );
            }
        }
        svc_ports.dedup();
        c.insert("ports".into(), Value::Array(ports));
    }
    let cs = &svc.settings;
    if let Some(w) = &cs.workdir {
        c.insert("workingDir".into(), json!(w));
    }
    let mut sec = Map::new();
    if let Some(u) = &cs.user {
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        match (user.parse::<u64>(), group.map(|g| g.parse::<u64>())) {
            (Ok(uid), None) => {
                sec.insert("runAsUser".into(), json!(uid));
            }
            (Ok(uid), Some(Ok(gid))) => {
                sec.insert("runAsUser".into(), json!(uid));
                sec.insert("runAsGroup".into(), json!(gid));
            }
            _ => r.lose(
                n,
                "user",
                "Kubernetes takes numeric ids only (runAsUser, runAsGroup)",
            ),
        }
    }
    if cs.read_only {
        sec.insert("readOnlyRootFilesystem".into(), json!(true));
    }
    if cs.privileged {
        sec.insert("privileged".into(), json!(true));
    }
    if !cs.cap_add.is_empty() || !cs.cap_drop.is_empty() {
        let mut caps = Map::new();
        if !cs.cap_add.is_empty() {
            caps.insert("add".into(), json!(cs.cap_add));
        }
        if !cs.cap_drop.is_empty() {
            caps.insert("drop".into(), json!(cs.cap_drop));
        }
        sec.insert("capabilities".into(), Value::Object(caps));
    }
    if !sec.is_empty() {
        c.insert("securityContext".into(), Value::Object(sec));
    }
    let mut limits = Map::new();
    if let Some(m) = cs.memory {
        limits.insert("memory".into(), json!(m.to_string()));
    }
    if let Some(cpu) = cs.cpus {
        limits.insert("cpu".into(), json!(cpu.to_string()));
    }
    if !limits.is_empty() {
        c.insert("resources".into(), json!({ "limits": limits }));
    }
    // Pod-level (hostAliases, dnsConfig, securityContext) or node-level in
    // Kubernetes; not written yet, so reported.
    let node = "Kubernetes sets it for the pod or the node, not the container; not written";
    for (set, key) in [
        (!cs.ulimits.is_empty(), "ulimits"),
        (cs.shm_size.is_some(), "shm_size"),
        (!cs.sysctls.is_empty(), "sysctls"),
        (!cs.extra_hosts.is_empty(), "extra_hosts"),
        (!cs.dns.is_empty(), "dns"),
        (cs.init.is_some(), "init"),
        (cs.logging.is_some(), "logging"),
        (!cs.devices.is_empty(), "devices"),
    ] {
        if set {
            r.lose(n, key, node);
        }
    }
    if cs.stop_signal.is_some() {
        r.lose(
            n,
            "stop_signal",
            "Kubernetes stops containers with the image's STOPSIGNAL or SIGTERM",
        );
    }
    if let Some(h) = &svc.health
        && !h.disabled
    {
        match h.test.as_deref() {
            Some([kind, script]) if kind == "CMD-SHELL" => {
                probes(&mut c, json!(["/bin/sh", "-c", script]), h)
            }
            Some([kind, rest @ ..]) if kind == "CMD" => probes(&mut c, json!(rest), h),
            _ => r.lose(
                n,
                "health",
                "Kubernetes does not run the image's HEALTHCHECK: no probe",
            ),
        }
    }
    // Volumes: named ones as claims per replica, binds as hostPath, tmpfs
    // as memory-backed emptyDir, configs and secrets from their objects.
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut claims = Vec::new();
    for (i, v) in svc.volumes.iter().enumerate() {
        match &v.source {
            VolumeSource::Named(vol) => {
                let claim = k8s_name(vol);
                mounts
                    .push(json!({ "name": claim, "mountPath": v.target, "readOnly": v.read_only }));
                if !claims
                    .iter()
                    .any(|c: &Value| c["metadata"]["name"] == claim)
                {
                    claims.push(json!({
                        "metadata": { "name": claim },
                        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
                    }));
                }
            }
            VolumeSource::Bind(p) => {
                let vname = format!("host-{i}");
                mounts
                    .push(json!({ "name": vname, "mountPath": v.target, "readOnly": v.read_only }));
                volumes.push(
                    json!({ "name": vname, "hostPath": { "path": p.display().to_string() } }),
                );
            }
        }
    }
    if !claims.is_empty() {
        r.note(
            n,
            "volumes",
            "each replica gets a 1Gi claim: set the size your data needs",
        );
    }
    for (i, t) in cs.tmpfs.iter().enumerate() {
        let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        let vname = format!("tmpfs-{i}");
        let mut empty = json!({ "medium": "Memory" });
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o.strip_prefix("size=") {
                Some(size) => empty["sizeLimit"] = json!(quantity(size)),
                None => r.lose(
                    n,
                    format!("tmpfs.{path}"),
                    format!("the option {o} has no emptyDir form"),
                ),
            }
        }
        mounts.push(json!({ "name": vname, "mountPath": path }));
        volumes.push(json!({ "name": vname, "emptyDir": empty }));
    }
    for (i, (kind, m)) in svc.file_mounts().enumerate() {
        let field = format!("{}.{}", kind.key(), m.source);
        let vname = format!("{}-{i}", kind.as_str());
        let src = match kind {
            FileKind::Config => {
                json!({ "configMap": { "name": format!("config-{}", k8s_name(&m.source)), "defaultMode": m.mode } })
            }
            FileKind::Secret => {
                json!({ "secret": { "secretName": format!("secret-{}", k8s_name(&m.source)), "defaultMode": m.mode } })
            }
        };
        let mut vol = json!({ "name": vname });
        if let (Some(o), Value::Object(s)) = (vol.as_object_mut(), src) {
            o.extend(s);
        }
        volumes.push(vol);
        mounts.push(
            json!({ "name": vname, "mountPath": m.target, "subPath": "content", "readOnly": true }),
        );
        if m.uid != 0 || m.gid != 0 {
            r.lose(
                n,
                format!("{field}.uid"),
                "a mounted ConfigMap or Secret is owned by root (use the pod's fsGroup)",
            );
        }
        if m.reload.is_some() {
            r.lose(
                n,
                format!("{field}.reload"),
                "a subPath mount is not updated: restart the pods on a change",
            );
        }
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), Value::Array(mounts));
    }
    // Links: wait for the target's Service to answer before starting.
    let mut init = Vec::new();
    for l in &svc.links {
        let target = dep.services.get(&l.target);
        match target.and_then(|t| t.ports.first()) {
            Some(p) if p.protocol == crate::deployment::Protocol::Tcp => init.push(json!({
                "name": format!("wait-for-{}", k8s_name(&l.target)),
                "image": WAIT_IMAGE,
                "command": ["sh", "-c", format!("until nc -z {} {}; do sleep 1; done", k8s_name(&l.target), p.container_port)],
            })),
            _ => r.lose(n, format!("links.{}", l.target), "the linked service publishes no TCP port to wait for: no start ordering"),
        }
        if l.alias != l.target {
            r.lose(
                n,
                format!("links.{}", l.target),
                format!(
                    "the alias {} is not carried; the Service is named {}",
                    l.alias,
                    k8s_name(&l.target)
                ),
            );
        }
        r.lose(
            n,
            format!("links.{}", l.target),
            "Kubernetes sets no legacy link variables (<ALIAS>_NAME, <ALIAS>_PORT_*)",
        );
    }
    if svc.restart != crate::deployment::RestartPolicy::Always {
        r.lose(
            n,
            "restart",
            "a Deployment or StatefulSet always restarts its containers",
        );
    }
    if !svc.ssh.is_empty() || svc.ssh_shell.is_some() {
        r.lose(n, "ssh", "Kubernetes has no SSH gateway (kubectl exec)");
    }
    if !svc.snapshot_on_upgrade || svc.snapshots_keep.is_some() {
        r.lose(n, "snapshots_keep", "Kubernetes keeps no volume snapshots");
    }
    if svc.update_config.is_some() {
        r.lose(
            n,
            "update_config",
            "not written as a Deployment strategy (maxSurge, maxUnavailable): Kubernetes' default rolling update applies",
        );
    }
    if svc.endpoint_mode.is_some() {
        r.lose(
            n,
            "endpoint_mode",
            "a swarm setting: a Kubernetes Service is reached as Kubernetes decides (cluster IP, or headless for a StatefulSet)",
        );
    }
    if !svc.placement.is_empty() {
        r.lose(
            n,
            "placement",
            "swarm constraints are not written as a nodeSelector or affinity",
        );
    }
    let mut pod = Map::new();
    pod.insert("containers".into(), json!([Value::Object(c)]));
    if !init.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init));
    }
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    if let Some(h) = &cs.hostname {
        pod.insert("hostname".into(), json!(k8s_name(h)));
    }
    if let Some(t) = svc.stop_timeout {
        pod.insert("terminationGracePeriodSeconds".into(), json!(t));
    }
    let mut template_meta = json!({ "labels": labels(dep, svc) });
    if !svc.labels.is_empty() {
        // Docker labels are free text; annotations take any value.
        template_meta["annotations"] = json!(svc.labels);
    }
    let mut spec = json!({
        "replicas": svc.count,
        "selector": { "matchLabels": labels(dep, svc) },
        "template": { "metadata": template_meta, "spec": pod },
    });
    let kind = if claims.is_empty() {
        "Deployment"
    } else {
        spec["serviceName"] = json!(name);
        spec["volumeClaimTemplates"] = Value::Array(claims);
        "StatefulSet"
    };
    docs.push(json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": { "name": name, "labels": labels(dep, svc) },
        "spec": spec,
    }));
    if !svc_ports.is_empty() {
        docs.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "labels": labels(dep, svc) },
            "spec": { "selector": labels(dep, svc), "ports": svc_ports },
        }));
    } else if kind == "StatefulSet" {
        // The Service a StatefulSet names: headless, for its pods' names.
        docs.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "labels": labels(dep, svc) },
            "spec": { "selector": labels(dep, svc), "clusterIP": "None" },
        }));
    }
}

/// A tmpfs size (`64m`, `1g`) as a Kubernetes quantity (`64Mi`, `1Gi`).
fn quantity(size: &str) -> String {
    let lower = size.to_ascii_lowercase();
    for (suffix, unit) in [("k", "Ki"), ("m", "Mi"), ("g", "Gi")] {
        if let Some(num) = lower.strip_suffix(suffix) {
            return format!("{num}{unit}");
        }
    }
    size.to_string()
}

fn probes(c: &mut Map<String, Value>, command: Value, h: &crate::deployment::Health) {
    let mut p = json!({ "exec": { "command": command } });
    if let Some(ms) = h.interval_ms {
        p["periodSeconds"] = json!(secs(ms));
    }
    if let Some(ms) = h.timeout_ms {
        p["timeoutSeconds"] = json!(secs(ms));
    }
    if let Some(ms) = h.start_period_ms {
        p["initialDelaySeconds"] = json!(secs(ms));
    }
    if let Some(n) = h.retries {
        p["failureThreshold"] = json!(n.max(1));
    }
    // Readiness always (Services route to healthy pods only); liveness,
    // which replaces the container, only where berth would replace it.
    c.insert("readinessProbe".into(), p.clone());
    if h.on_unhealthy == OnUnhealthy::Restart {
        c.insert("livenessProbe".into(), p);
    }
}
