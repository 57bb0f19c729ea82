//! The resolved view `berth render` prints: every instance with its
//! container, unit, volumes, network and link environment, and its unit text.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Deployment, FileKind, PortMapping, Service, VolumeSource};
use crate::names;
use crate::target::systemd::unit::{UnitOptions, render_unit};

/// Note printed about volumes the image declares.
fn image_volumes_note() -> String {
    format!(
        "every VOLUME the image declares is also kept in a named volume {}; those are known only when the image is inspected, at apply time",
        names::IMAGE_VOLUME_PATTERN
    )
}

/// What keeps the instances running, as far as rendering goes.
#[derive(Debug, Clone, Copy)]
pub enum RenderIntegration<'a> {
    /// One unit per instance, rendered with these options.
    Systemd(&'a UnitOptions),
    /// Docker's restart policies.
    Docker,
    /// `berth up` in the foreground.
    Foreground,
}

impl RenderIntegration<'_> {
    fn name(&self) -> &'static str {
        match self {
            RenderIntegration::Systemd(_) => "systemd",
            RenderIntegration::Docker => "docker",
            RenderIntegration::Foreground => "foreground",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub deployment: String,
    /// `systemd`, `docker` or `foreground`: what the output describes.
    pub integration: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub network: String,
    /// Services in start order.
    pub start_order: Vec<String>,
    pub instances: Vec<RenderedInstance>,
    pub image_volumes: String,
    /// The validated model itself.
    pub model: Deployment,
    /// The file's warnings (dangerous settings), located.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RenderedWarning>,
    /// The services scheduled updates move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auto_update: Vec<String>,
    /// Under systemd: the scheduled-update units (service and timer) by
    /// unit file name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub schedule_units: BTreeMap<String, String>,
}

/// One warning about the file, for `render --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedWarning {
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Rendered {
    /// Attach the file's warnings.
    pub fn with_warnings(mut self, warnings: &super::SpecWarnings) -> Self {
        self.warnings = warnings
            .0
            .iter()
            .map(|w| RenderedWarning {
                line: w.line,
                column: w.column,
                message: w.message.clone(),
                help: w.help.clone(),
            })
            .collect();
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedInstance {
    pub service: String,
    pub index: u32,
    pub container: String,
    /// The unit's name and text (systemd only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub image: String,
    pub ports: Vec<String>,
    pub volumes: Vec<RenderedVolume>,
    /// Legacy link variables derivable from the file.
    pub link_env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_text: Option<String>,
    /// Docker's restart policy on the container (`no` where systemd or
    /// `berth up` restarts it).
    pub docker_restart: &'static str,
    /// Configs and secrets delivered into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RenderedFile>,
}

/// A config or secret as an instance gets it.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedFile {
    /// `config` or `secret`.
    pub kind: &'static str,
    /// Its name in the file.
    pub name: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// Octal, `0440`.
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    /// `sha256:<hex>` of a config's content; none for a secret (a plain
    /// hash of a short secret gives it away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes.
    pub bytes: usize,
}

fn files(dep: &Deployment, svc: &Service) -> Vec<RenderedFile> {
    svc.file_mounts()
        .map(|(kind, m)| {
            let content = dep
                .file_source(kind, &m.source)
                .map(|s| s.content.as_str())
                .unwrap_or("");
            RenderedFile {
                kind: kind.as_str(),
                name: m.source.clone(),
                target: m.target.clone(),
                uid: m.uid,
                gid: m.gid,
                mode: format!("{:04o}", m.mode),
                reload: m.reload.clone(),
                sha256: (kind == FileKind::Config)
                    .then(|| crate::instance::files::config_digest(content)),
                bytes: content.len(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedVolume {
    /// `named` (a volume berth owns) or `bind` (a host path).
    pub kind: &'static str,
    /// The Docker volume name, or the host path.
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Where it comes from: `file` (listed in the deployment file).
    pub origin: &'static str,
}

fn port_text(p: &PortMapping) -> String {
    let proto = p.protocol.as_str();
    let ip = match &p.host_ip {
        Some(ip) if ip.contains(':') => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    match p.host_port {
        Some(h) => format!("{ip}{h}:{}/{proto}", p.container_port),
        None if ip.is_empty() => {
            format!("{}/{proto} (host port picked at start)", p.container_port)
        }
        None => format!(
            "{ip}:{}/{proto} (host port picked at start)",
            p.container_port
        ),
    }
}

fn volumes(svc: &Service, prefix: &str) -> Vec<RenderedVolume> {
    svc.volumes
        .iter()
        .map(|v| match &v.source {
            VolumeSource::Named(n) => RenderedVolume {
                kind: "named",
                source: names::volume_name(prefix, n),
                target: v.target.clone(),
                read_only: v.read_only,
                origin: "file",
            },
            VolumeSource::Bind(p) => RenderedVolume {
                kind: "bind",
                source: p.display().to_string(),
                target: v.target.clone(),
                read_only: v.read_only,
                origin: "file",
            },
        })
        .collect()
}

impl Rendered {
    pub fn build(dep: &Deployment, how: RenderIntegration<'_>) -> Rendered {
        let instances = dep
            .instances()
            .into_iter()
            .filter_map(|inst| {
                let svc = dep.services.get(&inst.service)?;
                Some(RenderedInstance {
                    service: inst.service.clone(),
                    index: inst.index,
                    container: inst.container.clone(),
                    unit: matches!(how, RenderIntegration::Systemd(_)).then(|| inst.unit()),
                    image: svc.image.clone(),
                    ports: svc.ports.iter().map(port_text).collect(),
                    // The volumes' own prefix: instance 1 keeps `<deployment>-<service>`
                    // whatever the count (see `names::volume_prefix`).
                    volumes: volumes(svc, &names::volume_prefix(&dep.name, &svc.name, inst.index)),
                    link_env: dep.link_env(&inst),
                    unit_text: match how {
                        RenderIntegration::Systemd(opts) => Some(render_unit(dep, &inst, opts)),
                        _ => None,
                    },
                    docker_restart: match how {
                        RenderIntegration::Docker => svc.restart.docker(),
                        _ => "no",
                    },
                    files: files(dep, svc),
                })
            })
            .collect();
        Rendered {
            deployment: dep.name.clone(),
            integration: how.name(),
            source: dep.source.as_ref().map(|p| p.display().to_string()),
            network: names::network_name(&dep.name),
            start_order: dep.start_order().iter().map(|s| s.name.clone()).collect(),
            instances,
            image_volumes: image_volumes_note(),
            // Secrets' content never leaves the state directory.
            model: dep.redacted(),
            warnings: Vec::new(),
            auto_update: dep.auto_update_services(),
            schedule_units: BTreeMap::new(),
        }
    }

    /// The same, with the scheduled-update units systemd would run.
    pub fn with_schedule_units(mut self, units: BTreeMap<String, String>) -> Self {
        self.schedule_units = units;
        self
    }

    /// The human-readable form.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "deployment: {}", self.deployment);
        if let Some(s) = &self.source {
            let _ = writeln!(o, "file:       {s}");
        }
        let _ = writeln!(
            o,
            "network:    {} (services reach each other by name)",
            self.network
        );
        let _ = writeln!(o, "start order: {}", self.start_order.join(", "));
        let _ = writeln!(
            o,
            "integration: {}",
            match self.integration {
                "systemd" => "systemd (one unit per instance runs `berth supervise`)",
                "docker" => "docker (the engine's restart policies keep containers running)",
                _ => "foreground (`berth up` supervises every instance)",
            }
        );
        if let Some(a) = self.model.update_schedule() {
            let _ = writeln!(
                o,
                "auto_update: {} on {}, run by {}",
                self.auto_update.join(", "),
                a.summary(),
                match self.integration {
                    "systemd" => "a systemd timer",
                    "docker" => "nothing (--integration docker refuses it)",
                    _ => "`berth up`",
                }
            );
        }
        for svc in self.model.services.values() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "service {}: image {}, {} instance{}, restart {}",
                svc.name,
                svc.image,
                svc.count,
                if svc.count == 1 { "" } else { "s" },
                svc.restart.systemd()
            );
            if let Some(c) = &svc.entrypoint {
                let _ = writeln!(o, "  entrypoint: {c:?}");
            }
            if let Some(c) = &svc.command {
                let _ = writeln!(o, "  command: {c:?}");
            }
            if let Some(h) = &svc.health {
                let _ = writeln!(o, "  health: {}", describe_health(h));
            }
            if !svc.links.is_empty() {
                let links: Vec<String> = svc
                    .links
                    .iter()
                    .map(|l| {
                        if l.alias == l.target {
                            l.target.clone()
                        } else {
                            format!("{} as {}", l.target, l.alias)
                        }
                    })
                    .collect();
                let _ = writeln!(o, "  links: {}", links.join(", "));
            }
            if !svc.env.is_empty() {
                let _ = writeln!(o, "  env:");
                for (k, v) in &svc.env {
                    let _ = writeln!(o, "    {k}={v}");
                }
            }
            let keys: Vec<String> = self
                .model
                .keys_for(&svc.name)
                .iter()
                .map(|k| format!("{} ({})", k.name, k.fingerprint))
                .collect();
            if !keys.is_empty() {
                let _ = writeln!(o, "  ssh keys: {}", keys.join(", "));
            }
            for inst in self.instances.iter().filter(|i| i.service == svc.name) {
                let keeper = match &inst.unit {
                    Some(u) => format!("unit {u}"),
                    None if self.integration == "docker" => {
                        format!("restart policy {}", inst.docker_restart)
                    }
                    None => "supervised by `berth up`".to_string(),
                };
                let _ = writeln!(
                    o,
                    "  instance {}: container {}, {keeper}",
                    inst.index, inst.container
                );
                for p in &inst.ports {
                    let _ = writeln!(o, "    port {p}");
                }
                for v in &inst.volumes {
                    let _ = writeln!(
                        o,
                        "    volume {} -> {}{} ({} {}, from the file)",
                        v.source,
                        v.target,
                        if v.read_only { " read-only" } else { "" },
                        v.kind,
                        if v.kind == "named" { "volume" } else { "mount" },
                    );
                }
                for f in &inst.files {
                    let what = match &f.sha256 {
                        Some(h) => format!("{} bytes, {h}", f.bytes),
                        None => "content hidden".to_string(),
                    };
                    let reload = match &f.reload {
                        Some(sig) => format!(", a change sends {sig}"),
                        None => String::new(),
                    };
                    let _ = writeln!(
                        o,
                        "    {} {} -> {} (owner {}:{}, mode {}, {what}{reload})",
                        f.kind, f.name, f.target, f.uid, f.gid, f.mode
                    );
                }
                let _ = writeln!(
                    o,
                    "    volumes the image declares: kept as {}, known at apply time",
                    names::IMAGE_VOLUME_PATTERN
                );
                if !inst.link_env.is_empty() {
                    let _ = writeln!(o, "    link environment:");
                    for (k, v) in &inst.link_env {
                        let _ = writeln!(o, "      {k}={v}");
                    }
                }
            }
        }
        for inst in &self.instances {
            if let (Some(unit), Some(text)) = (&inst.unit, &inst.unit_text) {
                let _ = writeln!(o);
                let _ = writeln!(o, "# {unit}");
                o.push_str(text);
            }
        }
        for (unit, text) in &self.schedule_units {
            let _ = writeln!(o);
            let _ = writeln!(o, "# {unit}");
            o.push_str(text);
        }
        // Values from the file may hold control characters.
        crate::echo::text(&o).into_owned()
    }
}

/// One line for a health check: `test -f /tmp/ok every 5s (timeout 30s,
/// 3 retries, start period 0s), on unhealthy: restart`.
fn describe_health(h: &super::model::Health) -> String {
    if h.disabled {
        return "disabled (health = false; the image's HEALTHCHECK is not run)".into();
    }
    let ms = |v: Option<u64>| match v {
        Some(ms) => humantime::format_duration(std::time::Duration::from_millis(ms)).to_string(),
        None => "default".into(),
    };
    let cmd = match h.test.as_deref() {
        Some([kind, script]) if kind == "CMD-SHELL" => script.clone(),
        Some([kind, rest @ ..]) if kind == "CMD" => format!("{rest:?}"),
        _ => "the image's HEALTHCHECK command".into(),
    };
    let retries = h
        .retries
        .map(|r| r.to_string())
        .unwrap_or_else(|| "default".into());
    let action = match h.on_unhealthy {
        super::model::OnUnhealthy::Restart => "replace the container",
        super::model::OnUnhealthy::Ignore => "ignore",
    };
    format!(
        "{cmd}; interval {}, timeout {}, start period {}, retries {retries}; on unhealthy: {action}",
        ms(h.interval_ms),
        ms(h.timeout_ms),
        ms(h.start_period_ms)
    )
}
