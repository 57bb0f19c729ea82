//! `--to compose`: the Compose specification's YAML. Every berth setting
//! Compose has a key for maps onto it; berth's own (SSH, snapshots) go
//! under `x-berth`, which berth reads back; the rest is reported.

use serde_json::{Map, Value, json};

use super::{FileRef, OutFile, Output, file_ref};
use crate::deployment::{
    Deployment, FileKind, FileMount, Health, OnUnhealthy, Service, VolumeSource,
};
use crate::error::{Error, Result};

/// The main file's name.
pub const FILE: &str = "compose.yaml";

/// Compose interpolates `$`: written `$$` so every string reads back as it is.
fn s(text: &str) -> Value {
    Value::String(text.replace('$', "$$"))
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().map(|x| s(x)).collect())
}

/// A Compose duration from milliseconds (`5s`, `1500ms`).
pub(crate) fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

pub(super) fn convert(dep: &Deployment, to_dir: bool, out: &mut Output) -> Result<()> {
    let mut top = Map::new();
    // `name` is left out: docker-compose v1 refuses it; the project name is
    // given with `-p` (berth reads it the same way).
    out.report.note(
        None,
        "name",
        format!("not written (older Compose versions refuse it): give -p {} to docker compose and berth", dep.name),
    );
    let mut services = Map::new();
    let mut volumes = Map::new();
    for svc in dep.services.values() {
        services.insert(svc.name.clone(), service(dep, svc, out, &mut volumes));
    }
    top.insert("services".into(), Value::Object(services));
    if !volumes.is_empty() {
        top.insert("volumes".into(), Value::Object(volumes));
    }
    for (kind, table) in [
        (FileKind::Config, &dep.configs),
        (FileKind::Secret, &dep.secrets),
    ] {
        if table.is_empty() {
            continue;
        }
        let mut m = Map::new();
        for name in table.keys() {
            let v = match file_ref(dep, kind, name, to_dir, out)? {
                FileRef::File(p) => json!({ "file": format!("./{p}") }),
                FileRef::Content(c) => json!({ "content": s(&c) }),
                FileRef::Environment(var) => json!({ "environment": var }),
            };
            m.insert(name.clone(), v);
        }
        top.insert(kind.key().into(), Value::Object(m));
    }
    let mut x = Map::new();
    if !dep.keys.is_empty() {
        let keys = dep
            .keys
            .iter()
            .map(|(k, key)| (k.clone(), s(&key.openssh)))
            .collect();
        x.insert("keys".into(), Value::Object(keys));
    }
    if let Some(n) = dep.snapshots_keep {
        x.insert("snapshots_keep".into(), json!(n));
    }
    if let Some(argv) = &dep.notify {
        x.insert("notify".into(), strings(argv));
    }
    if let Some(a) = &dep.auto_update {
        x.insert("auto_update".into(), a.file_form());
    }
    if let Some(url) = &dep.notify_url {
        x.insert("notify_url".into(), json!(url));
    }
    if !x.is_empty() {
        top.insert("x-berth".into(), Value::Object(x));
    }
    if !dep.deployment_keys.is_empty() {
        out.report.lose(
            None,
            "deployment_keys",
            "keys granted to every container have no Compose form; name them in x-berth.keys and list them in each service's x-berth.ssh",
        );
    }
    let text = serde_saphyr::to_string(&Value::Object(top))
        .map_err(|e| Error::Runtime(format!("cannot write the Compose file: {e}")))?;
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

fn service(
    dep: &Deployment,
    svc: &Service,
    out: &mut Output,
    volumes: &mut Map<String, Value>,
) -> Value {
    // Destructured without `..`: a new field of `Service` does not compile
    // until its conversion is decided here.
    let Service {
        name,
        image,
        count,
        command,
        entrypoint,
        ports,
        env,
        volumes: mounts,
        links,
        ssh,
        ssh_shell,
        restart,
        settings,
        labels,
        stop_timeout,
        snapshot_on_upgrade,
        snapshots_keep,
        health,
        configs,
        secrets,
        auto_update,
        update_config,
        endpoint_mode,
        placement,
    } = svc;
    let r = &mut out.report;
    let n = Some(name.as_str());
    let mut m = Map::new();
    m.insert("image".into(), s(image));
    let mut deploy = Map::new();
    if *count != 1 {
        deploy.insert("replicas".into(), json!(count));
    }
    if let Some(u) = update_config {
        deploy.insert(
            "update_config".into(),
            crate::deployment::stored::update_config_form(u),
        );
    }
    if let Some(e) = endpoint_mode {
        deploy.insert("endpoint_mode".into(), s(e.as_str()));
    }
    if !placement.is_empty() {
        deploy.insert("placement".into(), json!({ "constraints": placement }));
    }
    if !deploy.is_empty() {
        m.insert("deploy".into(), Value::Object(deploy));
    }
    if let Some(c) = command {
        m.insert("command".into(), strings(c));
    }
    if let Some(c) = entrypoint {
        m.insert("entrypoint".into(), strings(c));
    }
    if !ports.is_empty() {
        m.insert(
            "ports".into(),
            Value::Array(ports.iter().map(|p| s(&port(p))).collect()),
        );
    }
    if !env.is_empty() {
        m.insert(
            "environment".into(),
            Value::Object(env.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        );
    }
    if !mounts.is_empty() {
        let mut list = Vec::new();
        for v in mounts {
            let source = match &v.source {
                VolumeSource::Named(vol) => {
                    volumes.insert(vol.clone(), json!({}));
                    if *count > 1 {
                        r.lose(
                            n,
                            format!("volumes.{vol}"),
                            "berth gives every instance its own volume; Compose's replicas share one",
                        );
                    }
                    vol.clone()
                }
                VolumeSource::Bind(p) => p.to_string_lossy().into_owned(),
            };
            let ro = if v.read_only { ":ro" } else { "" };
            list.push(s(&format!("{source}:{}{ro}", v.target)));
        }
        m.insert("volumes".into(), Value::Array(list));
    }
    if !links.is_empty() {
        let mut deps = Map::new();
        for l in links {
            let healthy = dep
                .services
                .get(&l.target)
                .and_then(|t| t.health.as_ref())
                .is_some_and(|h| !h.disabled);
            let condition = if healthy {
                "service_healthy"
            } else {
                "service_started"
            };
            deps.insert(l.target.clone(), json!({ "condition": condition }));
            if l.alias != l.target {
                r.lose(
                    n,
                    format!("links.{}", l.target),
                    format!(
                        "the alias {} has no depends_on form; the service is reached by its name",
                        l.alias
                    ),
                );
            }
            r.lose(
                n,
                format!("links.{}", l.target),
                "Compose sets no legacy link variables (<ALIAS>_NAME, <ALIAS>_PORT_*)",
            );
        }
        m.insert("depends_on".into(), Value::Object(deps));
    }
    let mut x = Map::new();
    if !ssh.is_empty() {
        x.insert("ssh".into(), strings(ssh));
    }
    if let Some(sh) = ssh_shell {
        x.insert("ssh_shell".into(), s(sh));
    }
    if !snapshot_on_upgrade {
        x.insert("snapshot_on_upgrade".into(), json!(false));
    }
    if let Some(k) = snapshots_keep {
        x.insert("snapshots_keep".into(), json!(k));
    }
    if let Some(on) = auto_update {
        x.insert("auto_update".into(), json!(on));
    }
    if !x.is_empty() {
        m.insert("x-berth".into(), Value::Object(x));
    }
    m.insert("restart".into(), s(restart.systemd()));
    // Every container setting has a Compose key of its own.
    let cs = settings;
    if let Some(u) = &cs.user {
        m.insert("user".into(), s(u));
    }
    if let Some(w) = &cs.workdir {
        m.insert("working_dir".into(), s(w));
    }
    if let Some(h) = &cs.hostname {
        m.insert("hostname".into(), s(h));
    }
    if let Some(b) = cs.memory {
        m.insert("mem_limit".into(), json!(b));
    }
    if let Some(c) = cs.cpus {
        m.insert("cpus".into(), json!(c));
    }
    if cs.read_only {
        m.insert("read_only".into(), json!(true));
    }
    if !cs.tmpfs.is_empty() {
        m.insert("tmpfs".into(), strings(&cs.tmpfs));
    }
    if !cs.cap_add.is_empty() {
        m.insert("cap_add".into(), strings(&cs.cap_add));
    }
    if !cs.cap_drop.is_empty() {
        m.insert("cap_drop".into(), strings(&cs.cap_drop));
    }
    if cs.privileged {
        m.insert("privileged".into(), json!(true));
    }
    if let Some(sig) = &cs.stop_signal {
        m.insert("stop_signal".into(), s(sig));
    }
    if !cs.ulimits.is_empty() {
        let u = cs.ulimits.iter().map(|(k, l)| {
            let v = if l.soft == l.hard {
                json!(l.soft)
            } else {
                json!({ "soft": l.soft, "hard": l.hard })
            };
            (k.clone(), v)
        });
        m.insert("ulimits".into(), Value::Object(u.collect()));
    }
    if let Some(b) = cs.shm_size {
        m.insert("shm_size".into(), json!(b));
    }
    if !cs.sysctls.is_empty() {
        let v = cs.sysctls.iter().map(|(k, v)| (k.clone(), s(v)));
        m.insert("sysctls".into(), Value::Object(v.collect()));
    }
    if !cs.extra_hosts.is_empty() {
        m.insert("extra_hosts".into(), strings(&cs.extra_hosts));
    }
    if !cs.dns.is_empty() {
        m.insert("dns".into(), strings(&cs.dns));
    }
    if let Some(i) = cs.init {
        m.insert("init".into(), json!(i));
    }
    if let Some(l) = &cs.logging {
        let mut lm = Map::new();
        lm.insert("driver".into(), s(&l.driver));
        if !l.options.is_empty() {
            let o = l.options.iter().map(|(k, v)| (k.clone(), s(v)));
            lm.insert("options".into(), Value::Object(o.collect()));
        }
        m.insert("logging".into(), Value::Object(lm));
    }
    if !cs.devices.is_empty() {
        m.insert("devices".into(), strings(&cs.devices));
    }
    if !labels.is_empty() {
        m.insert(
            "labels".into(),
            Value::Object(labels.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        );
    }
    if let Some(t) = stop_timeout {
        m.insert("stop_grace_period".into(), s(&format!("{t}s")));
    }
    if let Some(h) = health {
        m.insert("healthcheck".into(), healthcheck(h));
        // Compose has no key for it: docker compose ignores an unhealthy
        // container, berth reading the file back replaces it.
        if !h.disabled {
            let reason = match h.on_unhealthy {
                OnUnhealthy::Restart => {
                    "Compose reports an unhealthy container but does not replace it"
                }
                OnUnhealthy::Ignore => {
                    "no Compose key: berth reading this file back replaces unhealthy containers"
                }
            };
            r.lose(n, "health.on_unhealthy", reason);
        }
    }
    for (key, list) in [("configs", configs), ("secrets", secrets)] {
        if list.is_empty() {
            continue;
        }
        let items = list.iter().map(|f| mount(f, name, key, r)).collect();
        m.insert(key.into(), Value::Array(items));
    }
    Value::Object(m)
}

fn mount(f: &FileMount, service: &str, key: &str, r: &mut super::Report) -> Value {
    if let Some(sig) = &f.reload {
        r.lose(
            Some(service),
            format!("{key}.{}.reload", f.source),
            format!("Compose recreates the container on a change instead of sending {sig}"),
        );
    }
    json!({
        "source": f.source,
        "target": s(&f.target),
        "uid": f.uid.to_string(),
        "gid": f.gid.to_string(),
        "mode": f.mode,
    })
}

pub(crate) fn port(p: &crate::deployment::PortMapping) -> String {
    let host = p.host_port.map(|h| h.to_string()).unwrap_or_default();
    let front = match &p.host_ip {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{host}:"),
        Some(ip) => format!("{ip}:{host}:"),
        None if host.is_empty() => String::new(),
        None => format!("{host}:"),
    };
    format!("{front}{}/{}", p.container_port, p.protocol.as_str())
}

fn healthcheck(h: &Health) -> Value {
    if h.disabled {
        return json!({ "disable": true });
    }
    let mut m = Map::new();
    if let Some(t) = &h.test {
        m.insert("test".into(), strings(t));
    }
    for (key, v) in [
        ("interval", h.interval_ms),
        ("timeout", h.timeout_ms),
        ("start_period", h.start_period_ms),
    ] {
        if let Some(ms) = v {
            m.insert(key.into(), Value::String(duration(ms)));
        }
    }
    if let Some(n) = h.retries {
        m.insert("retries".into(), json!(n));
    }
    Value::Object(m)
}
