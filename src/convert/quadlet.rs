//! `--to quadlet`: podman's systemd generator units, with only the keys
//! podman-systemd.unit(5) documents: one `.container` unit per instance (as
//! berth runs them), a `.volume` unit per instance volume (named as berth
//! names them), and one `.network` unit for the deployment.

use std::fmt::Write;

use super::{FileRef, OutFile, Output, file_ref};
use crate::deployment::{Deployment, FileKind, OnUnhealthy, Service, VolumeSource};
use crate::error::Result;
use crate::names;

/// A value as systemd reads one word: quoted when it has to be, `%`
/// doubled (a specifier otherwise).
fn word(v: &str) -> String {
    let v = v.replace('%', "%%");
    if !v.is_empty() && !v.contains([' ', '"', '\'', '\\', '\t', '\n']) {
        return v;
    }
    let escaped = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{escaped}\"")
}

/// A command line: systemd expands `$VAR` in the `ExecStart=` Quadlet
/// makes of it, so `$` is doubled too.
fn words(list: &[String]) -> String {
    list.iter()
        .map(|w| word(&w.replace('$', "$$")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn secs(ms: u64) -> String {
    super::compose::duration(ms)
}

pub(super) fn convert(dep: &Deployment, out: &mut Output) -> Result<()> {
    let network = names::network_name(&dep.name);
    let net_unit = format!("{}.network", dep.name);
    out.files.push(OutFile {
        path: net_unit.clone(),
        content: format!("[Network]\nNetworkName={network}\n"),
        mode: 0o644,
    });
    // Where each config and secret is, decided once for every instance.
    let mut refs = std::collections::BTreeMap::new();
    for (kind, table) in [
        (FileKind::Config, &dep.configs),
        (FileKind::Secret, &dep.secrets),
    ] {
        for name in table.keys() {
            if let FileRef::File(p) = file_ref(dep, kind, name, true, out)? {
                if kind == FileKind::Secret {
                    out.report.note(
                        None,
                        format!("secrets.{name}"),
                        format!("podman reads secrets from its own store: run `podman secret create {name} {p}` first"),
                    );
                }
                refs.insert((kind, name.clone()), p);
            }
        }
    }
    if !dep.keys.is_empty() || !dep.deployment_keys.is_empty() {
        out.report.lose(
            None,
            "keys",
            "podman has no SSH gateway: the keys are not carried",
        );
    }
    if dep.snapshots_keep.is_some() {
        out.report
            .lose(None, "snapshots_keep", "podman keeps no volume snapshots");
    }
    if dep.notify.is_some() {
        out.report.lose(
            None,
            "notify",
            "podman auto-update runs no command after an update",
        );
    }
    if !dep.auto_update_services().is_empty() {
        out.report.lose(
            None,
            "auto_update",
            "podman auto-update runs on its own timer and rolls back neither an unhealthy container nor its data; berth's schedule is not carried",
        );
    }
    if dep.notify_url.is_some() {
        out.report.lose(
            None,
            "notify_url",
            "podman auto-update calls no webhook after an update",
        );
    }
    for svc in dep.services.values() {
        service_losses(svc, out);
        for inst in dep.service_instances(svc) {
            let text = container(dep, svc, &inst.container, &net_unit, &refs, out);
            out.files.push(OutFile {
                path: format!("{}.container", inst.container),
                content: text,
                mode: 0o644,
            });
        }
    }
    Ok(())
}

/// What a service sets that no unit can carry (once per service, not per instance).
fn service_losses(svc: &Service, out: &mut Output) {
    let r = &mut out.report;
    let n = Some(svc.name.as_str());
    if !svc.ssh.is_empty() || svc.ssh_shell.is_some() {
        r.lose(n, "ssh", "podman has no SSH gateway");
    }
    if !svc.snapshot_on_upgrade || svc.snapshots_keep.is_some() {
        r.lose(n, "snapshots_keep", "podman keeps no volume snapshots");
    }
    if svc.update_config.is_some() {
        r.lose(
            n,
            "update_config",
            "podman runs one host: no rolling update",
        );
    }
    if svc.endpoint_mode.is_some() {
        r.lose(
            n,
            "endpoint_mode",
            "podman runs one host: no swarm endpoint",
        );
    }
    if !svc.placement.is_empty() {
        r.lose(n, "placement", "podman runs one host: nothing to place");
    }
    for l in &svc.links {
        if l.alias != l.target {
            r.lose(
                n,
                format!("links.{}", l.target),
                format!(
                    "the alias {} is not carried; reach the service by its name",
                    l.alias
                ),
            );
        }
        r.lose(
            n,
            format!("links.{}", l.target),
            "podman sets no legacy link variables (<ALIAS>_NAME, <ALIAS>_PORT_*)",
        );
    }
    for (kind, m) in svc.file_mounts() {
        let field = format!("{}.{}", kind.key(), m.source);
        if kind == FileKind::Config && (m.uid != 0 || m.gid != 0 || m.mode != kind.default_mode()) {
            r.lose(
                n,
                format!("{field}.mode"),
                "a config is a read-only bind mount of the file: its owner and mode are the file's",
            );
        }
        if m.reload.is_some() {
            r.lose(
                n,
                format!("{field}.reload"),
                "a changed file needs the unit restarted",
            );
        }
    }
}

fn container(
    dep: &Deployment,
    svc: &Service,
    container: &str,
    net_unit: &str,
    refs: &std::collections::BTreeMap<(FileKind, String), String>,
    out: &mut Output,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[Unit]\nDescription=berth deployment {} service {}",
        dep.name, svc.name
    );
    for l in &svc.links {
        if let Some(target) = dep.services.get(&l.target) {
            for i in dep.service_instances(target) {
                let _ = writeln!(t, "Requires={0}.service\nAfter={0}.service", i.container);
            }
        }
    }
    let _ = writeln!(
        t,
        "\n[Container]\nImage={}\nContainerName={container}",
        word(&svc.image)
    );
    let _ = writeln!(t, "Network={net_unit}\nNetworkAlias={}", svc.name);
    if let Some(e) = &svc.entrypoint {
        let _ = writeln!(t, "Entrypoint={}", words(e));
    }
    if let Some(c) = &svc.command {
        let _ = writeln!(t, "Exec={}", words(c));
    }
    for (k, v) in &svc.env {
        let _ = writeln!(t, "Environment={}", word(&format!("{k}={v}")));
    }
    for p in &svc.ports {
        let _ = writeln!(t, "PublishPort={}", super::compose::port(p));
    }
    for v in &svc.volumes {
        let ro = if v.read_only { ":ro" } else { "" };
        let source = match &v.source {
            VolumeSource::Named(n) => {
                let unit = format!("{}.volume", names::volume_name(container, n));
                out.files.push(OutFile {
                    path: unit.clone(),
                    content: format!(
                        "[Volume]\nVolumeName={}\n",
                        names::volume_name(container, n)
                    ),
                    mode: 0o644,
                });
                unit
            }
            VolumeSource::Bind(p) => p.display().to_string(),
        };
        let _ = writeln!(t, "Volume={}", word(&format!("{source}:{}{ro}", v.target)));
    }
    for (kind, m) in svc.file_mounts() {
        let Some(path) = refs.get(&(kind, m.source.clone())) else {
            continue;
        };
        match kind {
            FileKind::Config => {
                let _ = writeln!(t, "Volume={}", word(&format!("./{path}:{}:ro", m.target)));
            }
            FileKind::Secret => {
                let _ = writeln!(
                    t,
                    "Secret={},target={},uid={},gid={},mode={:04o}",
                    m.source, m.target, m.uid, m.gid, m.mode
                );
            }
        }
    }
    let cs = &svc.settings;
    if let Some(u) = &cs.user {
        match u.split_once(':') {
            Some((user, group)) => {
                let _ = writeln!(t, "User={}\nGroup={}", word(user), word(group));
            }
            None => {
                let _ = writeln!(t, "User={}", word(u));
            }
        }
    }
    if let Some(w) = &cs.workdir {
        let _ = writeln!(t, "WorkingDir={}", word(w));
    }
    if let Some(h) = &cs.hostname {
        let _ = writeln!(t, "HostName={}", word(h));
    }
    for (k, v) in &svc.labels {
        let _ = writeln!(t, "Label={}", word(&format!("{k}={v}")));
    }
    for c in &cs.cap_add {
        let _ = writeln!(t, "AddCapability={c}");
    }
    for c in &cs.cap_drop {
        let _ = writeln!(t, "DropCapability={c}");
    }
    if cs.read_only {
        let _ = writeln!(t, "ReadOnly=true");
    }
    for p in &cs.tmpfs {
        let _ = writeln!(t, "Tmpfs={}", word(p));
    }
    if let Some(sig) = &cs.stop_signal {
        let _ = writeln!(t, "StopSignal={sig}");
    }
    if let Some(s) = svc.stop_timeout {
        let _ = writeln!(t, "StopTimeout={s}");
    }
    for (name, l) in &cs.ulimits {
        let _ = writeln!(t, "Ulimit={name}={}:{}", l.soft, l.hard);
    }
    if let Some(b) = cs.shm_size {
        let _ = writeln!(t, "ShmSize={b}");
    }
    for (k, v) in &cs.sysctls {
        let _ = writeln!(t, "Sysctl={}", word(&format!("{k}={v}")));
    }
    for h in &cs.extra_hosts {
        let _ = writeln!(t, "AddHost={}", word(h));
    }
    for d in &cs.dns {
        let _ = writeln!(t, "DNS={d}");
    }
    if let Some(i) = cs.init {
        let _ = writeln!(t, "RunInit={i}");
    }
    for d in &cs.devices {
        let _ = writeln!(t, "AddDevice={}", word(d));
    }
    if let Some(l) = &cs.logging {
        let _ = writeln!(t, "LogDriver={}", word(&l.driver));
        for (k, v) in &l.options {
            let _ = writeln!(t, "PodmanArgs={}", word(&format!("--log-opt={k}={v}")));
        }
    }
    // No dedicated keys: passed to podman as its own options.
    if let Some(m) = cs.memory {
        let _ = writeln!(t, "PodmanArgs=--memory={m}");
    }
    if let Some(c) = cs.cpus {
        let _ = writeln!(t, "PodmanArgs=--cpus={c}");
    }
    if cs.privileged {
        let _ = writeln!(t, "PodmanArgs=--privileged");
    }
    if let Some(h) = &svc.health {
        if h.disabled {
            let _ = writeln!(t, "HealthCmd=none");
        } else {
            match h.test.as_deref() {
                Some([kind, script]) if kind == "CMD-SHELL" => {
                    let _ = writeln!(t, "HealthCmd={}", word(script));
                }
                Some([kind, rest @ ..]) if kind == "CMD" => {
                    // podman reads a JSON array as the exec form.
                    let json = serde_json::to_string(rest).unwrap_or_default();
                    let _ = writeln!(t, "HealthCmd={}", word(&json));
                }
                _ => {}
            }
            for (key, v) in [
                ("HealthInterval", h.interval_ms),
                ("HealthTimeout", h.timeout_ms),
                ("HealthStartPeriod", h.start_period_ms),
            ] {
                if let Some(ms) = v {
                    let _ = writeln!(t, "{key}={}", secs(ms));
                }
            }
            if let Some(n) = h.retries {
                let _ = writeln!(t, "HealthRetries={n}");
            }
            // berth replaces an unhealthy container: podman kills it and
            // systemd's Restart= starts a fresh one.
            if h.on_unhealthy == OnUnhealthy::Restart {
                let _ = writeln!(t, "HealthOnFailure=kill");
            }
        }
    }
    let _ = writeln!(
        t,
        "\n[Service]\nRestart={}\n\n[Install]\nWantedBy=default.target",
        svc.restart.systemd()
    );
    t
}
