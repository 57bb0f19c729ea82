//! What `berth ps` shows: one row per instance, from the engine's view of the
//! deployment's containers plus the operator's markers in the state directory.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::select::Selected;
use crate::engine::Engine;
use crate::engine::ops::{ContainerStatus, PublishedPort};
use crate::error::Result;
use crate::names;
use crate::state::StateDir;
use crate::state::markers;
use crate::supervise::backoff::CrashRecord;
use crate::target::Supervised;
use crate::target::systemd::ctl::UnitStatus;

/// One line of `berth ps`. The JSON form uses these field names; keep them stable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRow {
    pub deployment: String,
    pub service: String,
    /// Container name.
    pub instance: String,
    /// `running`, `stopped`, `exited(<code>)`, `restarting`, `paused`,
    /// `created`, `missing`, `failed`.
    pub state: String,
    /// Why the instance failed or is restarting, when `state` is `failed`
    /// or `restarting` (else null).
    pub reason: Option<String>,
    /// `healthy`, `unhealthy`, `starting`, or `-` without a health check.
    pub health: String,
    /// The last health-check result (`exit 1: first line of output`), if any.
    pub last_check: Option<String>,
    /// Seconds since the container started, while it runs.
    pub uptime_seconds: Option<u64>,
    /// Restarts by the engine's restart policy plus restarts by `berth up`.
    pub restarts: u64,
    pub ports: Vec<PublishedPort>,
    pub image: String,
    pub container_id: Option<String>,
    /// The integration that keeps it running (from the applied revision).
    pub integration: Option<String>,
    /// False for containers of the deployment that the file no longer lists.
    pub in_spec: bool,
    /// Under systemd: the state of the instance's unit.
    pub unit: Option<UnitStatus>,
    /// Under systemd: quick failures in a row, as counted by `berth supervise`
    /// for its crash-loop backoff.
    pub consecutive_failures: Option<u32>,
}

/// Parse the engine's RFC 3339 timestamps (nanosecond fractions, `Z`).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
}

/// Compact duration for tables: `42s`, `5m10s`, `3h12m`, `2d4h`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn row_state(c: &ContainerStatus, stopped_marker: bool) -> (String, Option<String>) {
    match c.status.as_str() {
        "running" => ("running".into(), None),
        "restarting" => ("restarting".into(), None),
        "paused" => ("paused".into(), None),
        _ if stopped_marker => ("stopped".into(), None),
        "created" => match &c.error {
            Some(e) => ("failed".into(), Some(e.clone())),
            None => ("created".into(), None),
        },
        "exited" | "dead" => {
            if let Some(e) = &c.error {
                ("failed".into(), Some(e.clone()))
            } else if c.oom_killed {
                ("failed".into(), Some("killed: out of memory".into()))
            } else {
                (format!("exited({})", c.exit_code.unwrap_or(-1)), None)
            }
        }
        other => (other.to_string(), None),
    }
}

/// Build the rows for one deployment from an engine listing (pure; see
/// [`collect`] for the engine side).
pub fn rows(
    state: &StateDir,
    target: &Selected,
    containers: &[ContainerStatus],
    now: SystemTime,
) -> Vec<InstanceRow> {
    let d = &target.deployment;
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for inst in d.instances() {
        let stopped = markers::is_stopped(state, &inst.container);
        let sup_restarts = markers::read_restarts(state, &inst.container);
        let image = d
            .services
            .get(&inst.service)
            .map(|s| s.image.clone())
            .unwrap_or_default();
        let row = match containers.iter().find(|c| c.name == inst.container) {
            Some(c) => {
                seen.push(&c.name);
                let mut row = row_from(c, target, stopped, sup_restarts, now, true);
                // The engine records the image ID berth created it from;
                // the reference in the file is what the operator knows.
                if !image.is_empty() {
                    row.image = image;
                }
                row
            }
            None => InstanceRow {
                deployment: d.name.clone(),
                service: inst.service.clone(),
                instance: inst.container.clone(),
                state: if stopped { "stopped" } else { "missing" }.into(),
                reason: None,
                health: "-".into(),
                last_check: None,
                uptime_seconds: None,
                restarts: sup_restarts,
                ports: vec![],
                image,
                container_id: None,
                integration: target.integration.map(|i| i.as_str().to_string()),
                in_spec: true,
                unit: None,
                consecutive_failures: None,
            },
        };
        out.push(row);
    }
    for c in containers {
        if !seen.contains(&c.name.as_str()) {
            let stopped = markers::is_stopped(state, &c.name);
            out.push(row_from(c, target, stopped, 0, now, false));
        }
    }
    out
}

fn row_from(
    c: &ContainerStatus,
    target: &Selected,
    stopped: bool,
    sup_restarts: u64,
    now: SystemTime,
    in_spec: bool,
) -> InstanceRow {
    let (state, reason) = row_state(c, stopped);
    let uptime_seconds = if c.status == "running" {
        c.started_at
            .as_deref()
            .and_then(parse_time)
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs())
    } else {
        None
    };
    InstanceRow {
        deployment: target.deployment.name.clone(),
        service: c
            .label(names::LABEL_SERVICE)
            .unwrap_or_default()
            .to_string(),
        instance: c.name.clone(),
        state,
        reason,
        health: c.health.clone().unwrap_or_else(|| "-".into()),
        last_check: c.last_check().map(|r| r.summary()),
        uptime_seconds,
        restarts: u64::try_from(c.restart_count).unwrap_or(0) + sup_restarts,
        ports: c.ports.clone(),
        image: c.image.clone(),
        container_id: Some(c.id.clone()),
        integration: target.integration.map(|i| i.as_str().to_string()),
        in_spec,
        unit: None,
        consecutive_failures: None,
    }
}

/// The PORTS cell: every binding, grouped as `docker ps` groups them.
///
/// Bindings are ordered by container port, then address; a run of
/// consecutive ports on the same address and protocol is compressed to a
/// range (`0.0.0.0:8000-8002->8000-8002/tcp`). The engine binds a port once
/// per address family and may pick different host ports for each
/// (moby/moby#43246), so both are shown, as docker does:
/// `0.0.0.0:49153->80/tcp, :::49154->80/tcp`.
pub fn ports_text(ports: &[PublishedPort]) -> String {
    let mut sorted: Vec<&PublishedPort> = ports.iter().collect();
    sorted.sort_by(|a, b| {
        (a.container_port, &a.host_ip, a.host_port, &a.protocol).cmp(&(
            b.container_port,
            &b.host_ip,
            b.host_port,
            &b.protocol,
        ))
    });
    sorted.dedup();
    // (address, protocol, first host, last host, first container, last container)
    type Group<'a> = (&'a str, &'a str, u16, u16, u16, u16);
    let mut groups: Vec<Group> = Vec::new();
    for p in sorted {
        let extends = groups.iter_mut().rev().find(|g| {
            g.0 == p.host_ip
                && g.1 == p.protocol
                && g.3.checked_add(1) == Some(p.host_port)
                && g.5.checked_add(1) == Some(p.container_port)
        });
        match extends {
            Some(g) => {
                g.3 = p.host_port;
                g.5 = p.container_port;
            }
            None => groups.push((
                &p.host_ip,
                &p.protocol,
                p.host_port,
                p.host_port,
                p.container_port,
                p.container_port,
            )),
        }
    }
    let range = |a: u16, b: u16| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    groups
        .iter()
        .map(|&(ip, proto, h0, h1, c0, c1)| {
            // Docker 20.10 writes the wildcards as `0.0.0.0:` and `:::`;
            // any other IPv6 address in brackets, so the port stays readable.
            let ip = match ip {
                "" => String::new(),
                ip if ip.contains(':') && ip != "::" => format!("[{ip}]:"),
                ip => format!("{ip}:"),
            };
            format!("{ip}{}->{}/{proto}", range(h0, h1), range(c0, c1))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorten a PORTS cell for a terminal at a binding boundary; the JSON
/// output and a pipe get the whole text.
pub fn clip_ports(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let parts: Vec<&str> = text.split(", ").collect();
    let mut kept = String::new();
    for (i, part) in parts.iter().enumerate() {
        let rest = parts.len() - i;
        let tail = format!(", +{rest} more");
        let candidate = if kept.is_empty() {
            part.to_string()
        } else {
            format!("{kept}, {part}")
        };
        if candidate.chars().count() + tail.chars().count() > max && !kept.is_empty() {
            return format!("{kept}, +{rest} more");
        }
        kept = candidate;
    }
    kept
}

/// Ask the engine about one deployment and build its rows.
pub async fn collect(
    engine: &Engine,
    state: &StateDir,
    target: &Selected,
) -> Result<Vec<InstanceRow>> {
    let containers = engine
        .deployment_containers(&target.deployment.name)
        .await?;
    let mut rows = rows(state, target, &containers, SystemTime::now());
    // What the target knows beyond the containers: under a running
    // `berth up`, an exited instance that restarts is waiting out its
    // backoff; under systemd the unit is restarted, not the container (its
    // count, and what the unit is doing).
    let Some(integration) = target.integration else {
        return Ok(rows);
    };
    let keeper = crate::target::for_host(integration, &crate::target::HostOptions::observing());
    let mut restarts = false;
    for r in rows.iter_mut().filter(|r| r.in_spec) {
        match keeper.supervised(state, &target.deployment, &r.instance) {
            Supervised::Container => {}
            Supervised::Restarts => restarts = true,
            Supervised::Unit { unit, crashes } => apply_unit_status(r, unit, &crashes),
        }
    }
    if restarts {
        mark_restarting(&mut rows, &target.deployment);
    }
    Ok(rows)
}

/// Rows of exited instances whose restart policy restarts them become
/// `restarting` (the supervisor will start a fresh container).
pub fn mark_restarting(rows: &mut [InstanceRow], deployment: &crate::deployment::Deployment) {
    use crate::deployment::RestartPolicy;
    for r in rows.iter_mut().filter(|r| r.in_spec) {
        let Some(code) = r
            .state
            .strip_prefix("exited(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let restarts = match deployment.services.get(&r.service).map(|s| s.restart) {
            Some(RestartPolicy::Always) => true,
            Some(RestartPolicy::OnFailure) => code != 0,
            _ => false,
        };
        if restarts {
            r.state = "restarting".into();
        }
    }
}

/// Fold a unit's state and the supervisor's crash record into a row (pure).
///
/// An instance whose container is not running is `failed` when its unit
/// failed (systemd gave up, or the restart policy does not restart it), and
/// `restarting` while the unit is on its way to a fresh container (waiting
/// out `RestartSec=` or the supervisor's crash-loop backoff). The reason
/// names the last exit status or error, the quick failures in a row and
/// the unit's state.
pub fn apply_unit_status(row: &mut InstanceRow, unit: UnitStatus, record: &CrashRecord) {
    row.restarts += unit.n_restarts;
    row.consecutive_failures = Some(record.failures);
    let settled = matches!(row.state.as_str(), "running" | "stopped" | "paused");
    let next = match unit.active_state.as_str() {
        "failed" => Some("failed"),
        "activating" => Some("restarting"),
        _ => None,
    };
    if let (false, Some(next)) = (settled, next) {
        let exit = row
            .state
            .strip_prefix("exited(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.parse::<i64>().ok())
            .or(record.last_exit);
        let mut parts: Vec<String> = Vec::new();
        if let Some(r) = row.reason.take() {
            parts.push(r);
        }
        if let Some(e) = &record.last_error {
            parts.push(e.clone());
        } else if let Some(code) = exit {
            parts.push(format!("exit status {code}"));
        }
        if record.failures > 0 {
            let s = if record.failures == 1 { "" } else { "s" };
            parts.push(format!("{} quick failure{s} in a row", record.failures));
        }
        parts.push(format!(
            "unit {}/{}, result {}, {} restarts",
            unit.active_state, unit.sub_state, unit.result, unit.n_restarts
        ));
        row.state = next.to_string();
        row.reason = Some(parts.join("; "));
    }
    row.unit = Some(unit);
}

/// Aligned table, one line per row, with a header. `ports_width` clips
/// the PORTS cell (for a terminal); `None` prints every binding.
pub fn render_table(rows: &[InstanceRow], ports_width: Option<usize>) -> String {
    let header = [
        "INSTANCE",
        "STATE",
        "HEALTH",
        "UPTIME",
        "RESTARTS",
        "PORTS",
        "IMAGE",
        "LAST CHECK",
    ];
    let mut lines: Vec<[String; 8]> = vec![header.map(String::from)];
    for r in rows {
        let state = match &r.reason {
            Some(reason) => format!("{} ({reason})", r.state),
            None => r.state.clone(),
        };
        let ports = if r.ports.is_empty() {
            "-".to_string()
        } else {
            let text = ports_text(&r.ports);
            match ports_width {
                Some(max) => clip_ports(&text, max),
                None => text,
            }
        };
        lines.push([
            r.instance.clone(),
            state,
            r.health.clone(),
            r.uptime_seconds
                .map(|s| short_duration(Duration::from_secs(s)))
                .unwrap_or_else(|| "-".into()),
            r.restarts.to_string(),
            ports,
            r.image.clone(),
            r.last_check
                .as_deref()
                .map(|c| {
                    // Long outputs would push the table apart: the JSON has it whole.
                    if c.chars().count() > 60 {
                        format!("{}...", c.chars().take(57).collect::<String>())
                    } else {
                        c.to_string()
                    }
                })
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i + 1 == l.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::select::tests::deployment;

    fn container(name: &str, status: &str) -> ContainerStatus {
        ContainerStatus {
            id: format!("id-{name}"),
            name: name.into(),
            image: "img".into(),
            status: status.into(),
            exit_code: Some(3),
            error: None,
            oom_killed: false,
            started_at: Some("2026-01-01T00:00:00.123456789Z".into()),
            finished_at: None,
            health: None,
            checks: vec![],
            restart_count: 2,
            restart_policy: None,
            ports: vec![
                PublishedPort {
                    host_ip: "0.0.0.0".into(),
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                },
                PublishedPort {
                    host_ip: "::".into(),
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                },
            ],
            labels: [(names::LABEL_SERVICE.to_string(), "web".to_string())].into(),
            stop_timeout: None,
        }
    }

    #[test]
    fn rows_cover_running_exited_stopped_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let target = Selected {
            deployment: deployment(&[("mail", 1), ("web", 3)]),
            integration: Some(crate::instance::Integration::Docker),
        };
        markers::set_stopped(&state, "ex-web-3").expect("marker");
        let now = parse_time("2026-01-01T00:01:05Z").expect("time");
        let cs = vec![
            container("ex-web-1", "running"),
            container("ex-web-2", "exited"),
            container("ex-web-3", "exited"),
            container("ex-web-4", "exited"),
        ];
        let rows = rows(&state, &target, &cs, now);
        let states: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.instance.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("ex-mail", "missing"),
                ("ex-web-1", "running"),
                ("ex-web-2", "exited(3)"),
                ("ex-web-3", "stopped"),
                ("ex-web-4", "exited(3)"),
            ]
        );
        assert_eq!(rows[1].uptime_seconds, Some(64));
        assert_eq!(rows[1].ports.len(), 2, "every binding, IPv4 and IPv6");
        assert_eq!(rows[1].restarts, 2);
        assert!(!rows[4].in_spec);
        let mut marked = rows.clone();
        mark_restarting(&mut marked, &target.deployment);
        assert_eq!(marked[2].state, "restarting");
        assert_eq!(marked[4].state, "exited(3)", "not in the file: left as is");
        let table = render_table(&rows, None);
        assert!(table.starts_with("INSTANCE "), "{table}");
        assert!(
            table.contains("0.0.0.0:8080->80/tcp, :::8080->80/tcp"),
            "{table}"
        );
        assert!(table.contains("1m04s"), "{table}");
        // Columns line up: STATE starts at the same offset on every line.
        let at = table.find("STATE").expect("header");
        for l in table.lines() {
            assert_eq!(l.as_bytes()[at - 1], b' ', "{table}");
            assert_ne!(l.as_bytes()[at], b' ', "{table}");
        }
    }

    #[test]
    fn a_crash_looping_unit_shows_as_restarting_or_failed_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let target = Selected {
            deployment: deployment(&[("web", 1)]),
            integration: Some(crate::instance::Integration::Systemd),
        };
        let now = parse_time("2026-01-01T00:01:05Z").expect("time");
        let cs = vec![container("ex-web", "exited")];
        let record = CrashRecord {
            failures: 4,
            last_start: 0,
            last_exit: Some(3),
            last_error: None,
        };
        let unit = |active: &str, sub: &str| {
            UnitStatus::parse(&format!(
                "ActiveState={active}\nSubState={sub}\nResult=exit-code\nNRestarts=5\n"
            ))
        };
        let mut row = rows(&state, &target, &cs, now).remove(0);
        assert_eq!(row.state, "exited(3)");
        apply_unit_status(&mut row, unit("activating", "auto-restart"), &record);
        assert_eq!(row.state, "restarting");
        assert_eq!(
            row.reason.as_deref(),
            Some(
                "exit status 3; 4 quick failures in a row; unit activating/auto-restart, result exit-code, 5 restarts"
            )
        );
        assert_eq!(row.restarts, 2 + 5);
        assert_eq!(row.consecutive_failures, Some(4));
        let json = serde_json::to_value(&row).expect("json");
        assert_eq!(json["unit"]["sub_state"], "auto-restart");
        assert_eq!(json["unit"]["n_restarts"], 5);

        let mut row = rows(&state, &target, &cs, now).remove(0);
        apply_unit_status(&mut row, unit("failed", "failed"), &record);
        assert_eq!(row.state, "failed");
        assert!(
            row.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("exit status 3;"))
        );

        // The supervisor could not even create the container: its error is the reason.
        let broken = CrashRecord {
            last_error: Some("no such image".into()),
            ..record.clone()
        };
        let mut row = rows(&state, &target, &[], now).remove(0);
        assert_eq!(row.state, "missing");
        apply_unit_status(&mut row, unit("activating", "start"), &broken);
        assert_eq!(row.state, "restarting");
        assert!(
            row.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("no such image;"))
        );

        // A running container or an operator's stop is left as it is.
        let mut row = rows(&state, &target, &[container("ex-web", "running")], now).remove(0);
        apply_unit_status(&mut row, unit("active", "running"), &CrashRecord::default());
        assert_eq!(
            (row.state.as_str(), row.reason.as_deref()),
            ("running", None)
        );
        assert_eq!(row.consecutive_failures, Some(0));
    }

    fn port(ip: &str, host: u16, container: u16, proto: &str) -> PublishedPort {
        PublishedPort {
            host_ip: ip.into(),
            host_port: host,
            container_port: container,
            protocol: proto.into(),
        }
    }

    #[test]
    fn ports_are_grouped_as_docker_ps_groups_them() {
        // The engine picked different host ports per family (moby/moby#43246).
        let split = [
            port("::", 49154, 80, "tcp"),
            port("0.0.0.0", 49153, 80, "tcp"),
        ];
        assert_eq!(
            ports_text(&split),
            "0.0.0.0:49153->80/tcp, :::49154->80/tcp"
        );
        // A contiguous range on each family is one entry per family.
        let mut range = Vec::new();
        for p in 8000..=8002 {
            range.push(port("0.0.0.0", p, p, "tcp"));
            range.push(port("::", p, p, "tcp"));
        }
        range.push(port("127.0.0.1", 4190, 4190, "tcp"));
        range.push(port("0.0.0.0", 53, 53, "udp"));
        range.push(port("::1", 9000, 90, "tcp"));
        assert_eq!(
            ports_text(&range),
            "0.0.0.0:53->53/udp, [::1]:9000->90/tcp, 127.0.0.1:4190->4190/tcp, \
             0.0.0.0:8000-8002->8000-8002/tcp, :::8000-8002->8000-8002/tcp"
        );
        // Not contiguous on both sides: separate entries.
        let gaps = [
            port("0.0.0.0", 10, 80, "tcp"),
            port("0.0.0.0", 12, 81, "tcp"),
        ];
        assert_eq!(ports_text(&gaps), "0.0.0.0:10->80/tcp, 0.0.0.0:12->81/tcp");
    }

    #[test]
    fn a_long_ports_cell_is_clipped_at_a_binding() {
        let text = "0.0.0.0:25->25/tcp, :::25->25/tcp, 0.0.0.0:143->143/tcp, :::143->143/tcp";
        assert_eq!(clip_ports(text, 200), text);
        let clipped = clip_ports(text, 48);
        assert_eq!(clipped, "0.0.0.0:25->25/tcp, :::25->25/tcp, +2 more");
        assert!(clipped.chars().count() <= 48);
        // One binding wider than the limit is kept whole rather than cut.
        assert_eq!(
            clip_ports("0.0.0.0:25->25/tcp, x", 5),
            "0.0.0.0:25->25/tcp, +1 more"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(Duration::from_secs(5)), "5s");
        assert_eq!(short_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(short_duration(Duration::from_secs(3 * 3600 + 120)), "3h02m");
        assert_eq!(
            short_duration(Duration::from_secs(2 * 86400 + 3600)),
            "2d1h"
        );
    }
}
