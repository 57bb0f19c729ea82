//! Engine calls for day-to-day operation: what a deployment's containers are
//! doing (`ps`) and their output (`logs`).

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
};
use futures_util::Stream;
use futures_util::StreamExt;
use serde::Serialize;

use super::{Engine, is_not_found};
use crate::error::{Error, Result};
use crate::names;

/// A port the engine published on the host for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = match self.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => String::new(),
            ip if ip.contains(':') => format!("[{ip}]:"),
            ip => format!("{ip}:"),
        };
        write!(
            f,
            "{ip}{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// What the engine says about one container, reduced to what operation needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub id: String,
    /// Container name without the leading `/`.
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    pub status: String,
    pub exit_code: Option<i64>,
    /// The engine's error text (for example when starting failed).
    pub error: Option<String>,
    pub oom_killed: bool,
    /// RFC 3339 start time of the current (or last) run.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `healthy`, `unhealthy`, `starting`, or `None` without a health check.
    pub health: Option<String>,
    /// The engine's recent health-check results (it keeps the last five),
    /// oldest first; empty without a check.
    pub checks: Vec<CheckResult>,
    /// Restarts done by the engine's restart policy.
    pub restart_count: i64,
    pub restart_policy: Option<String>,
    pub ports: Vec<PublishedPort>,
    pub labels: HashMap<String, String>,
    /// Seconds the engine waits after the stop signal, when set on the container.
    pub stop_timeout: Option<i64>,
}

/// One health-check run, as the engine recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// RFC 3339 time the check started.
    pub start: Option<String>,
    /// The check's exit code (0 healthy; -1 when it could not run or timed out).
    pub exit_code: i64,
    /// Its output (stdout and stderr, truncated by the engine).
    pub output: String,
}

impl CheckResult {
    /// `exit 1: first line of output` (one line, for tables and messages).
    pub fn summary(&self) -> String {
        let first = self
            .output
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if first.is_empty() {
            format!("exit {}", self.exit_code)
        } else {
            format!("exit {}: {first}", self.exit_code)
        }
    }
}

impl ContainerStatus {
    /// The most recent health-check result, if any.
    pub fn last_check(&self) -> Option<&CheckResult> {
        self.checks.last()
    }

    pub fn is_running(&self) -> bool {
        self.status == "running" || self.status == "restarting" || self.status == "paused"
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Reduce an inspect answer. Missing fields become empty values rather
    /// than errors: the engine omits what does not apply.
    pub fn from_inspect(c: ContainerInspectResponse) -> Self {
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let mut ports = Vec::new();
        if let Some(map) = c.network_settings.and_then(|n| n.ports) {
            for (key, bindings) in map {
                let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
                let Ok(container_port) = port.parse::<u16>() else {
                    continue;
                };
                for b in bindings.unwrap_or_default() {
                    let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok())
                    else {
                        continue;
                    };
                    ports.push(PublishedPort {
                        host_ip: b.host_ip.unwrap_or_default(),
                        host_port,
                        container_port,
                        protocol: proto.to_string(),
                    });
                }
            }
        }
        ports.sort_by(|a, b| {
            (a.container_port, &a.protocol, a.host_port, &a.host_ip).cmp(&(
                b.container_port,
                &b.protocol,
                b.host_port,
                &b.host_ip,
            ))
        });
        let empty_to_none = |s: Option<String>| s.filter(|s| !s.is_empty());
        let checks: Vec<CheckResult> = state
            .health
            .as_ref()
            .and_then(|h| h.log.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| CheckResult {
                start: r.start.filter(|s| !s.is_empty()),
                exit_code: r.exit_code.unwrap_or(-1),
                output: r.output.unwrap_or_default(),
            })
            .collect();
        Self {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: config.image.clone().unwrap_or_default(),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            exit_code: state.exit_code,
            error: empty_to_none(state.error),
            oom_killed: state.oom_killed.unwrap_or(false),
            started_at: empty_to_none(state.started_at).filter(|s| !s.starts_with("0001-")),
            finished_at: empty_to_none(state.finished_at).filter(|s| !s.starts_with("0001-")),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            checks,
            restart_count: c.restart_count.unwrap_or(0),
            restart_policy: c
                .host_config
                .and_then(|h| h.restart_policy)
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .filter(|n| !n.is_empty()),
            ports,
            labels: config.labels.unwrap_or_default(),
            stop_timeout: config.stop_timeout,
        }
    }
}

/// One chunk of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How much output to fetch.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// `None`: everything.
    pub tail: Option<u64>,
    pub timestamps: bool,
}

impl Engine {
    /// Inspect one container by name or ID; `None` if it does not exist.
    pub async fn observe_container(&self, name: &str) -> Result<Option<ContainerStatus>> {
        match self
            .docker()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(ContainerStatus::from_inspect(c))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting container {name}"), e)),
        }
    }

    /// Every container (any state) labelled as belonging to `deployment`,
    /// inspected concurrently, sorted by name.
    pub async fn deployment_containers(&self, deployment: &str) -> Result<Vec<ContainerStatus>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert(
            "label".into(),
            vec![format!("{}={deployment}", names::LABEL_DEPLOYMENT)],
        );
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker()
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing containers of {deployment}"), e))?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        let inspected =
            futures_util::future::join_all(ids.iter().map(|id| self.observe_container(id))).await;
        let mut out = Vec::new();
        for r in inspected {
            // A container removed between list and inspect is simply gone.
            if let Some(c) = r? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Host ports published by running containers that do not belong to
    /// `deployment`: `(container name, host port, protocol)`.
    pub async fn published_ports_elsewhere(
        &self,
        deployment: &str,
    ) -> Result<Vec<(String, u16, String)>> {
        let list = self
            .docker()
            .list_containers(None)
            .await
            .map_err(|e| Error::engine("listing running containers", e))?;
        let mut out = Vec::new();
        for c in list {
            let ours = c
                .labels
                .as_ref()
                .and_then(|l| l.get(names::LABEL_DEPLOYMENT))
                .is_some_and(|d| d == deployment);
            if ours {
                continue;
            }
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            for p in c.ports.unwrap_or_default() {
                if let Some(public) = p.public_port {
                    let proto = p
                        .typ
                        .map(|t| t.to_string())
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "tcp".into());
                    out.push((name.clone(), public, proto));
                }
            }
        }
        Ok(out)
    }

    /// A container's output as a stream of chunks (line-ish, as the engine
    /// framed them). With `follow`, the stream lasts until the container stops.
    pub fn log_stream(
        &self,
        name: &str,
        opts: &LogOptions,
    ) -> impl Stream<Item = Result<LogChunk>> + Send + 'static {
        let name_owned = name.to_string();
        self.docker()
            .logs(name, Some(logs_options(opts)))
            .filter_map(move |item| {
                let what = name_owned.clone();
                async move { log_chunk(item, &what) }
            })
    }
}

/// The engine's log query for `opts` (a container's logs and a task's alike).
pub(crate) fn logs_options(opts: &LogOptions) -> bollard::query_parameters::LogsOptions {
    let tail = opts
        .tail
        .map(|n| n.to_string())
        .unwrap_or_else(|| "all".into());
    LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(opts.follow)
        .timestamps(opts.timestamps)
        .tail(&tail)
        .build()
}

/// One frame of a log stream of `what`, as a chunk (`None`: stdin, never
/// shown).
pub(crate) fn log_chunk(
    item: std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
    what: &str,
) -> Option<Result<LogChunk>> {
    use bollard::container::LogOutput;
    match item {
        Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
            Some(Ok(LogChunk::Stdout(message.to_vec())))
        }
        Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk::Stderr(message.to_vec()))),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(Error::engine(format!("reading the logs of {what}"), e))),
    }
}
