//! Checking a deployment that was stored rather than read from a file (the
//! revision a `backup --with-deployment` archive carries, which may come from
//! another host and be crafted).
//!
//! The check is the file's own: the model is written back as the native
//! deployment file it would have come from and that text goes through
//! [`super::load_str`] like any file, so every rule a file obeys applies and
//! none is written twice. The loaded result must then equal the stored
//! model exactly: a model no file can produce (a value only the model can
//! hold, such as a volume path with a `:`) is refused too.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::model::*;
use super::{Format, LoadOptions, SpecError, SpecErrors};

/// Check `dep` as a deployment file would be checked; `origin` names where
/// it was stored (it appears in every message). Returns the model as the
/// file reads it.
pub fn check_stored(dep: &Deployment, origin: &Path) -> Result<super::Loaded, SpecErrors> {
    let text = serde_json::to_string_pretty(&file_form(dep)).unwrap_or_default();
    // Secrets go in through variables, as an operator would pass them (not
    // inline, which the file check warns about).
    let opts = LoadOptions {
        file: origin.to_path_buf(),
        set: dep
            .secrets
            .values()
            .enumerate()
            .map(|(i, s)| (stored_secret_var(i), s.content.clone()))
            .collect(),
        ..Default::default()
    };
    let super::Loaded {
        deployment: mut loaded,
        warnings,
    } = super::load_text(&opts, Format::Json, text, false)?;
    loaded.source = None;
    // geard's top-level `Keys` have no native spelling: each goes through
    // the parser geard files use.
    let mut errors = Vec::new();
    for k in &dep.deployment_keys {
        match super::keys::parse_key_lenient(&k.name, &k.openssh) {
            Ok(parsed) if parsed == *k && crate::names::check_name(&k.name).is_ok() => {
                loaded.deployment_keys.push(parsed)
            }
            _ => errors.push(SpecError::whole_file(
                Some(origin),
                format!(
                    "deployment key `{}` is not a valid OpenSSH public key",
                    k.name.escape_debug()
                ),
                "the stored deployment was altered; take the backup again",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    let mut stored = dep.clone();
    stored.source = None;
    if loaded != stored {
        return Err(SpecErrors(vec![SpecError::whole_file(
            Some(origin),
            format!(
                "the stored deployment holds {} that no deployment file can produce",
                first_difference(&stored, &loaded)
            ),
            "the stored deployment was altered; take the backup again",
        )]));
    }
    Ok(super::Loaded {
        deployment: loaded,
        warnings,
    })
}

/// Where two models differ, for the message (`services.web.volumes`).
fn first_difference(a: &Deployment, b: &Deployment) -> String {
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    fn walk(a: &Value, b: &Value, path: String) -> String {
        if let (Value::Object(ma), Value::Object(mb)) = (a, b) {
            for (k, x) in ma {
                if mb.get(k) != Some(x) {
                    let p = if path.is_empty() {
                        k.escape_debug().to_string()
                    } else {
                        format!("{path}.{}", k.escape_debug())
                    };
                    return walk(x, mb.get(k).unwrap_or(&Value::Null), p);
                }
            }
            if let Some(k) = mb.keys().find(|k| !ma.contains_key(*k)) {
                return format!("{path}.{}", k.escape_debug());
            }
        }
        if path.is_empty() {
            "a value".into()
        } else {
            format!("a value in `{path}`")
        }
    }
    walk(&va, &vb, String::new())
}

/// `$` is written `$$`, so that interpolation gives every string back as it
/// is stored.
fn s(text: &str) -> Value {
    Value::String(text.replace('$', "$$"))
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().map(|x| s(x)).collect())
}

fn string_map(map: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

/// The native deployment file (JSON form) that reads as `dep`.
pub(crate) fn file_form(dep: &Deployment) -> Value {
    let mut top = Map::new();
    top.insert("name".into(), s(&dep.name));
    if !dep.keys.is_empty() {
        top.insert(
            "keys".into(),
            Value::Object(
                dep.keys
                    .iter()
                    .map(|(k, key)| (k.clone(), s(&key.openssh)))
                    .collect(),
            ),
        );
    }
    if let Some(n) = dep.snapshots_keep {
        top.insert("snapshots_keep".into(), json!(n));
    }
    if let Some(argv) = &dep.notify {
        top.insert("notify".into(), strings(argv));
    }
    if let Some(a) = &dep.auto_update {
        top.insert("auto_update".into(), a.file_form());
    }
    if let Some(url) = &dep.notify_url {
        top.insert("notify_url".into(), s(url));
    }
    if !dep.configs.is_empty() {
        let configs = dep
            .configs
            .iter()
            .map(|(k, c)| (k.clone(), json!({ "content": s(&c.content) })))
            .collect();
        top.insert("configs".into(), Value::Object(configs));
    }
    if !dep.secrets.is_empty() {
        let secrets = dep
            .secrets
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), json!({ "environment": stored_secret_var(i) })))
            .collect();
        top.insert("secrets".into(), Value::Object(secrets));
    }
    let services: Map<String, Value> = dep
        .services
        .iter()
        .map(|(k, svc)| (k.clone(), service_form(svc)))
        .collect();
    top.insert("services".into(), Value::Object(services));
    Value::Object(top)
}

/// The variable the `i`th stored secret is passed in.
fn stored_secret_var(i: usize) -> String {
    format!("BERTH_STORED_SECRET_{i}")
}

fn mounts_form(mounts: &[FileMount]) -> Value {
    Value::Array(
        mounts
            .iter()
            .map(|m| {
                let mut v = json!({
                    "source": s(&m.source),
                    "target": s(&m.target),
                    "uid": m.uid,
                    "gid": m.gid,
                    "mode": format!("{:04o}", m.mode),
                });
                if let (Some(r), Some(o)) = (&m.reload, v.as_object_mut()) {
                    o.insert("reload".into(), s(r));
                }
                v
            })
            .collect(),
    )
}

fn service_form(svc: &Service) -> Value {
    // Destructured without `..`: a new field of `Service` does not compile
    // until it is written here too.
    let Service {
        name: _,
        image,
        count,
        command,
        entrypoint,
        ports,
        env,
        volumes,
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
    let mut m = Map::new();
    m.insert("image".into(), s(image));
    m.insert("count".into(), json!(count));
    if let Some(c) = command {
        m.insert("command".into(), strings(c));
    }
    if let Some(c) = entrypoint {
        m.insert("entrypoint".into(), strings(c));
    }
    m.insert(
        "ports".into(),
        Value::Array(ports.iter().map(|p| s(&port_form(p))).collect()),
    );
    m.insert("env".into(), string_map(env));
    m.insert(
        "volumes".into(),
        Value::Array(
            volumes
                .iter()
                .map(|v| {
                    let source = match &v.source {
                        VolumeSource::Named(n) => n.clone(),
                        VolumeSource::Bind(p) => p.to_string_lossy().into_owned(),
                    };
                    let ro = if v.read_only { ":ro" } else { "" };
                    s(&format!("{source}:{}{ro}", v.target))
                })
                .collect(),
        ),
    );
    m.insert(
        "links".into(),
        Value::Array(
            links
                .iter()
                .map(|l| s(&format!("{}:{}", l.target, l.alias)))
                .collect(),
        ),
    );
    m.insert("ssh".into(), strings(ssh));
    if let Some(sh) = ssh_shell {
        m.insert("ssh_shell".into(), s(sh));
    }
    m.insert("restart".into(), s(restart.systemd()));
    m.insert("labels".into(), string_map(labels));
    if let Some(t) = stop_timeout {
        m.insert("stop_timeout".into(), json!(t));
    }
    // Every container setting's JSON form is one the decoder reads.
    if let Ok(Value::Object(settings)) = serde_json::to_value(settings) {
        m.extend(settings);
    }
    m.insert("snapshot_on_upgrade".into(), json!(snapshot_on_upgrade));
    if let Some(n) = snapshots_keep {
        m.insert("snapshots_keep".into(), json!(n));
    }
    if let Some(h) = health {
        m.insert("health".into(), health_form(h));
    }
    if !configs.is_empty() {
        m.insert("configs".into(), mounts_form(configs));
    }
    if !secrets.is_empty() {
        m.insert("secrets".into(), mounts_form(secrets));
    }
    if let Some(on) = auto_update {
        m.insert("auto_update".into(), json!(on));
    }
    if let Some(u) = update_config {
        m.insert("update_config".into(), update_config_form(u));
    }
    if let Some(e) = endpoint_mode {
        m.insert("endpoint_mode".into(), s(e.as_str()));
    }
    if !placement.is_empty() {
        m.insert("placement".into(), strings(placement));
    }
    Value::Object(m)
}

/// `update_config` as the file writes it (durations in milliseconds).
pub(crate) fn update_config_form(u: &UpdateConfig) -> Value {
    let mut m = Map::new();
    if let Some(p) = u.parallelism {
        m.insert("parallelism".into(), json!(p));
    }
    for (key, v) in [("delay", u.delay_ms), ("monitor", u.monitor_ms)] {
        if let Some(ms) = v {
            m.insert(key.into(), Value::String(format!("{ms}ms")));
        }
    }
    if let Some(o) = u.order {
        m.insert("order".into(), s(o.as_str()));
    }
    if let Some(a) = u.failure_action {
        m.insert("failure_action".into(), s(a.as_str()));
    }
    if let Some(r) = u.max_failure_ratio {
        m.insert("max_failure_ratio".into(), json!(r));
    }
    Value::Object(m)
}

fn port_form(p: &PortMapping) -> String {
    let host = p.host_port.map(|h| h.to_string()).unwrap_or_default();
    let front = match &p.host_ip {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{host}:"),
        Some(ip) => format!("{ip}:{host}:"),
        None if host.is_empty() => String::new(),
        None => format!("{host}:"),
    };
    format!("{front}{}/{}", p.container_port, p.protocol.as_str())
}

fn health_form(h: &Health) -> Value {
    if h.disabled {
        // Anything else set beside `disabled` cannot be written: the
        // comparison refuses it.
        return json!(false);
    }
    let mut m = Map::new();
    match h.test.as_deref() {
        Some([kind, script]) if kind == "CMD-SHELL" => {
            m.insert("cmd".into(), s(script));
        }
        Some([kind, rest @ ..]) if kind == "CMD" => {
            m.insert("cmd".into(), strings(rest));
        }
        // Not a form a file has: it reads back differently, which the
        // comparison refuses.
        Some(other) => {
            m.insert("cmd".into(), strings(other));
        }
        None => {}
    }
    for (key, v) in [
        ("interval", h.interval_ms),
        ("timeout", h.timeout_ms),
        ("start_period", h.start_period_ms),
    ] {
        if let Some(ms) = v {
            m.insert(key.into(), Value::String(format!("{ms}ms")));
        }
    }
    if let Some(r) = h.retries {
        m.insert("retries".into(), json!(r));
    }
    let action = match h.on_unhealthy {
        OnUnhealthy::Restart => "restart",
        OnUnhealthy::Ignore => "ignore",
    };
    m.insert("on_unhealthy".into(), s(action));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, text).unwrap();
        let mut d = super::super::load(&LoadOptions {
            file,
            ..Default::default()
        })
        .unwrap();
        d.source = None;
        d
    }

    const FULL: &str = r#"
name = "full"
snapshots_keep = 4
[keys]
alice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz7gYv3lCIVUp8dm3D1UOHdWLn56rxJ2RGCY5hCLIQk alice@host"
[services.db]
image = "postgres:16"
volumes = ["data:/var/lib/postgresql/data", "/srv/conf:/etc/conf:ro"]
env = { PASSWORD = "pa$$word with $${NOT_A_VAR}", EMPTY = "" }
memory = "512m"
cpus = 1.5
stop_timeout = 30
stop_signal = "INT"
health = { cmd = "pg_isready", interval = "5s", timeout = "1500ms", retries = 3, on_unhealthy = "ignore" }
[services.web]
image = "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000"
count = 3
command = ["nginx", "-g", "daemon off;"]
entrypoint = "/docker-entrypoint.sh"
ports = ["8080", "127.0.0.1::81", "[::1]::90/udp"]
links = ["db", "db:database"]
ssh = ["alice"]
ssh_shell = "/bin/bash"
restart = "on-failure"
user = "1000:1000"
workdir = "/srv"
hostname = "web-host"
labels = { "com.example.tier" = "front" }
read_only = true
tmpfs = ["/run", "/tmp:size=64m"]
cap_add = ["NET_ADMIN"]
cap_drop = ["ALL"]
privileged = true
snapshot_on_upgrade = false
snapshots_keep = 2
[configs.site]
content = "costs $$5\n"
[secrets.pw]
content = "hunter2 $$x"
[services.batch]
image = "busybox"
user = "7:8"
configs = ["site", { source = "site", target = "/etc/x", uid = 5, mode = "0600", reload = "HUP" }]
secrets = ["pw"]
health = false
ports = ["[::1]:9090:90/udp", "0.0.0.0:7000-7001:70-71/sctp"]
"#;

    #[test]
    fn a_loaded_deployment_passes_as_it_is() {
        let d = load(FULL);
        let checked = check_stored(&d, Path::new("backup.tar.zst")).unwrap();
        assert_eq!(checked.deployment, d);
        assert_eq!(d.secrets["pw"].content, "hunter2 $x");
        assert_eq!(d.services["batch"].configs[0].uid, 7, "a numeric user owns");
        // Stored secrets are passed as variables: no warning about inline text.
        assert!(
            !checked
                .warnings
                .0
                .iter()
                .any(|w| w.message.contains("written inline")),
            "{:?}",
            checked.warnings
        );
    }

    #[test]
    fn every_fixture_passes_as_it_is() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["example.toml", "example.yaml", "example.json", "geard.json"] {
            let mut d = super::super::load(&LoadOptions {
                file: dir.join(name),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            d.source = None;
            match check_stored(&d, Path::new("b.tar.zst")) {
                Ok(checked) => assert_eq!(checked.deployment, d, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }

    #[test]
    fn what_a_file_refuses_is_refused() {
        let base = load(FULL);
        let origin = Path::new("crafted.tar.zst");
        type Change = Box<dyn Fn(&mut Deployment)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "newline in a service name",
                Box::new(|d| {
                    let mut svc = d.services.remove("batch").unwrap();
                    svc.name = "x\nExecStartPre=/bin/evil".into();
                    d.services.insert(svc.name.clone(), svc);
                }),
            ),
            (
                "../ in a service name",
                Box::new(|d| {
                    let mut svc = d.services.remove("batch").unwrap();
                    svc.name = "../../etc".into();
                    d.services.insert(svc.name.clone(), svc);
                }),
            ),
            (
                "key and name disagree",
                Box::new(|d| {
                    let mut svc = d.services.remove("batch").unwrap();
                    svc.name = "other".into();
                    d.services.insert("batch".into(), svc);
                }),
            ),
            ("bad deployment name", Box::new(|d| d.name = "a/b".into())),
            (
                "count out of range",
                Box::new(|d| d.services.get_mut("db").unwrap().count = 1000),
            ),
            (
                "NUL in env",
                Box::new(|d| {
                    d.services
                        .get_mut("db")
                        .unwrap()
                        .env
                        .insert("X".into(), "a\0b".into());
                }),
            ),
            (
                "bad env name",
                Box::new(|d| {
                    d.services
                        .get_mut("db")
                        .unwrap()
                        .env
                        .insert("A=B\nC".into(), "x".into());
                }),
            ),
            (
                "reserved label",
                Box::new(|d| {
                    d.services
                        .get_mut("db")
                        .unwrap()
                        .labels
                        .insert("berth.deployment".into(), "other".into());
                }),
            ),
            (
                "volume target with a colon",
                Box::new(|d| {
                    d.services.get_mut("db").unwrap().volumes[0].target = "/a:/b".into();
                }),
            ),
            (
                "relative bind",
                Box::new(|d| {
                    d.services.get_mut("db").unwrap().volumes[1].source =
                        VolumeSource::Bind("../../etc".into());
                }),
            ),
            (
                "undefined link",
                Box::new(|d| {
                    d.services.get_mut("web").unwrap().links[0].target = "nope".into();
                }),
            ),
            (
                "unknown ssh key",
                Box::new(|d| {
                    d.services
                        .get_mut("web")
                        .unwrap()
                        .ssh
                        .push("mallory".into())
                }),
            ),
            (
                "altered fingerprint",
                Box::new(|d| {
                    d.keys.get_mut("alice").unwrap().fingerprint = "SHA256:forged".into();
                }),
            ),
            (
                "bad image",
                Box::new(|d| d.services.get_mut("db").unwrap().image = "UPPER CASE".into()),
            ),
            (
                "user with a newline",
                Box::new(|d| d.services.get_mut("db").unwrap().settings.user = Some("0\nx".into())),
            ),
            (
                "health test of no file form",
                Box::new(|d| {
                    d.services.get_mut("db").unwrap().health = Some(Health {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    })
                }),
            ),
            (
                "source path is ignored but deployment keys are checked",
                Box::new(|d| {
                    d.deployment_keys.push(SshKey {
                        name: "key-1".into(),
                        openssh: "ssh-ed25519 bogus".into(),
                        fingerprint: "SHA256:x".into(),
                    })
                }),
            ),
        ];
        for (what, change) in cases {
            let mut d = base.clone();
            change(&mut d);
            let e = check_stored(&d, origin).expect_err(what);
            assert!(e.to_string().contains("crafted.tar.zst"), "{what}: {e}");
        }
    }
}
