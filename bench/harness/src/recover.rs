//! Recovery latency: from a crash (the container's main process killed with
//! SIGKILL from the host, as the kernel's OOM killer or a fault would) until a
//! container of the same name runs again, as the engine's `start` event
//! stamps it. The same measurement for three supervisors:
//!
//! - `up`: `berth up` (a fresh container each time),
//! - `systemd`: berth's units under a real systemd (see
//!   `berth_test_support::systemd_host`), `berth supervise` per instance,
//! - `docker`: the engine's own `restart: always` (the same container again).
//!
//! Each kill hits a container that has run for `--settle` seconds (default
//! 11), so every supervisor treats it as a one-off crash of a stable service
//! rather than a crash loop (Docker resets its restart delay after 10 s, as
//! berth does); K services are killed in turn so samples need not wait for
//! one another.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_test_support::systemd_host::{HostDeployment, SystemdHost};
use bollard::Docker;
use bollard::models::RestartPolicyNameEnum;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, EventMessage, HostConfig, NetworkCreateRequest,
    NetworkingConfig, RestartPolicy,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptions, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{Flags, LocalDeployment, signal, write_json};

/// How long one recovery may take before the run fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(docker: &Docker, args: &[String]) -> Result<(), String> {
    let mode = args.first().map(String::as_str).unwrap_or_default();
    let flags = Flags::new(args.get(1..).unwrap_or_default());
    let services = flags.number("--services", 10)?.max(1);
    let samples = flags.number("--samples", 30)?;
    let settle = Duration::from_secs(u64::from(flags.number("--settle", 11)?));
    let image = flags.required("--image")?;
    let out = flags.required("--out")?;
    let toml = deployment(image, services);
    let latencies = match mode {
        "up" => {
            let name = format!("bbrecup{}", std::process::id());
            let dep = LocalDeployment::new(flags.required("--berth")?, &toml.replace("NAME", &name))?;
            let mut child = dep.spawn_up()?;
            let names = container_names(&name, services);
            let result = async {
                wait_running(docker, &names, Duration::from_secs(300)).await?;
                measure(docker, &names, samples, settle).await
            }
            .await;
            dep.stop_up(&mut child);
            result?
        }
        "systemd" => {
            let berth = flags.required("--berth")?;
            // The harness panics (after cleaning up) if the host cannot boot.
            let host = SystemdHost::boot(Path::new(berth));
            let d = HostDeployment::new(&host, "recover");
            d.write(&toml);
            d.apply();
            for i in 1..=services {
                d.wait_active(&format!("s{i}"));
            }
            let names = container_names(&d.name, services);
            measure(docker, &names, samples, settle).await?
        }
        "docker" => {
            let name = format!("bbrecdk{}", std::process::id());
            let names = container_names(&name, services);
            let result = async {
                // On a user-defined network with an alias, as berth's
                // containers are (and as docker-compose would put them):
                // the engine's network setup is part of every start.
                docker
                    .create_network(NetworkCreateRequest {
                        name: name.clone(),
                        driver: Some("bridge".into()),
                        labels: Some(HashMap::from([("berth.bench".to_string(), name.clone())])),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("create network {name}: {e}"))?;
                for (i, n) in names.iter().enumerate() {
                    create_restart_always(docker, n, image, &name, &format!("s{}", i + 1)).await?;
                }
                wait_running(docker, &names, Duration::from_secs(300)).await?;
                measure(docker, &names, samples, settle).await
            }
            .await;
            for n in &names {
                let _ = docker
                    .remove_container(
                        n,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
            let _ = docker.remove_network(&name).await;
            result?
        }
        _ => return Err("usage: berth-bench recover up|systemd|docker --image IMAGE --out FILE [--berth PATH] [--services K] [--samples N] [--settle S]".into()),
    };
    write_json(
        out,
        &serde_json::json!({
            "mode": mode,
            "services": services,
            "settle_s": settle.as_secs(),
            "samples_ms": latencies,
        }),
    )
}

/// K independent services that just sleep; killed with SIGKILL on stop so
/// that tearing down is quick.
fn deployment(image: &str, services: u32) -> String {
    let mut t = String::from("name = \"NAME\"\n");
    for i in 1..=services {
        t.push_str(&format!(
            "[services.s{i}]\nimage = \"{image}\"\ncommand = [\"sleep\", \"1000000\"]\nstop_signal = \"KILL\"\n"
        ));
    }
    t
}

fn container_names(deployment: &str, services: u32) -> Vec<String> {
    (1..=services)
        .map(|i| format!("{deployment}-s{i}"))
        .collect()
}

async fn create_restart_always(
    docker: &Docker,
    name: &str,
    image: &str,
    network: &str,
    alias: &str,
) -> Result<(), String> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["sleep".into(), "1000000".into()]),
        labels: Some(HashMap::from([(
            "berth.bench".to_string(),
            name.to_string(),
        )])),
        host_config: Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![alias.to_string()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .map_err(|e| format!("create {name}: {e}"))?;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| format!("start {name}: {e}"))
}

/// Main PID and start time of a running container.
async fn running(docker: &Docker, name: &str) -> Option<(u32, SystemTime)> {
    let c = docker.inspect_container(name, None).await.ok()?;
    let state = c.state?;
    if state.running != Some(true) {
        return None;
    }
    let pid = u32::try_from(state.pid?).ok().filter(|p| *p > 0)?;
    let started = humantime::parse_rfc3339(state.started_at.as_deref()?).ok()?;
    Some((pid, started))
}

/// Wait until every named container runs (at most `limit`).
pub async fn wait_running(
    docker: &Docker,
    names: &[String],
    limit: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    for n in names {
        while running(docker, n).await.is_none() {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{n} did not start"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Kill each container in turn, `samples` times in all; the milliseconds
/// from each kill to the engine's `start` event of that name.
async fn measure(
    docker: &Docker,
    names: &[String],
    samples: u32,
    settle: Duration,
) -> Result<Vec<f64>, String> {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string()]),
    ]);
    let mut stream = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }));
    // Read events all the time, so none is missed while a sample settles.
    let (tx, mut rx) = mpsc::unbounded_channel::<EventMessage>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    for s in 0..samples as usize {
        let name = &names[s % names.len()];
        let (pid, started) = running(docker, name)
            .await
            .ok_or_else(|| format!("{name} is not running"))?;
        let age = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        if age < settle {
            tokio::time::sleep(settle - age).await;
        }
        while rx.try_recv().is_ok() {}
        let killed = SystemTime::now();
        if !signal(pid, libc::SIGKILL) {
            return Err(format!("cannot kill PID {pid} of {name}"));
        }
        let back = tokio::time::timeout(RECOVERY_LIMIT, async {
            while let Some(ev) = rx.recv().await {
                let same = ev
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get("name"))
                    .is_some_and(|n| n == name);
                if same {
                    return ev.time_nano;
                }
            }
            None
        })
        .await
        .map_err(|_| format!("{name} did not run again within {RECOVERY_LIMIT:?}"))?
        .ok_or("the engine's event stream ended")?;
        let ms = (i128::from(back) - nanos(killed)) as f64 / 1e6;
        eprintln!("recover: {name}: {ms:.0} ms");
        out.push(ms);
    }
    reader.abort();
    Ok(out)
}
