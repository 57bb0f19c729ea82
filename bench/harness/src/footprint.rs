//! Footprint: peak resident memory (`VmHWM`) of `berth up` supervising N
//! instances, read from `/proc` once all of them run and have settled.

use std::time::{Duration, Instant};

use bollard::Docker;

use crate::{Flags, LocalDeployment, write_json};

pub async fn run(docker: &Docker, args: &[String]) -> Result<(), String> {
    let flags = Flags::new(args);
    let instances = flags.number("--instances", 100)?.clamp(1, 100);
    let image = flags.required("--image")?;
    let out = flags.required("--out")?;
    let name = format!("bbfoot{}", std::process::id());
    // One service with N instances: the supervisor keeps one task, one log
    // stream and one engine wait per instance.
    let toml = format!(
        "name = \"{name}\"\n[services.s]\nimage = \"{image}\"\ncount = {instances}\ncommand = [\"sleep\", \"1000000\"]\nstop_signal = \"KILL\"\n"
    );
    let dep = LocalDeployment::new(flags.required("--berth")?, &toml)?;
    let started = Instant::now();
    let mut child = dep.spawn_up()?;
    let result = async {
        let names: Vec<String> = (1..=instances)
            .map(|i| {
                if instances == 1 {
                    format!("{name}-s")
                } else {
                    format!("{name}-s-{i}")
                }
            })
            .collect();
        crate::recover::wait_running(docker, &names, Duration::from_secs(600)).await?;
        let all_running = started.elapsed();
        // Let log streams and waits settle before reading the peak.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .map_err(|e| format!("read /proc status of berth up: {e}"))?;
        let field = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        Ok::<_, String>(serde_json::json!({
            "instances": instances,
            "all_running_s": all_running.as_secs_f64(),
            "vm_hwm_kb": field("VmHWM:"),
            "vm_rss_kb": field("VmRSS:"),
            "threads": field("Threads:"),
        }))
    }
    .await;
    dep.stop_up(&mut child);
    write_json(out, &result?)
}
