//! systemd integration: one unit per instance, `berth-<container>.service`,
//! whose main process is `berth supervise <container>`.
//!
//! Units are world-readable, so they carry no environment values or secrets:
//! the supervisor reads those from the root-only state directory.

use std::path::PathBuf;

use crate::spec::{Deployment, InstanceRef};

/// What a rendered unit needs to know about this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOptions {
    /// Absolute path of the `berth` binary the unit runs.
    pub berth_path: PathBuf,
    /// The state directory the supervisor reads the instance spec from.
    pub state_dir: PathBuf,
}

/// Render the unit file of one instance.
pub fn render_unit(deployment: &Deployment, instance: &InstanceRef, opts: &UnitOptions) -> String {
    let svc = deployment.services.get(&instance.service);
    let mut after = vec![
        "docker.service".to_string(),
        "network-online.target".to_string(),
    ];
    let mut wants = after.clone();
    if let Some(svc) = svc {
        for link in &svc.links {
            if let Some(target) = deployment.services.get(&link.target) {
                for t in deployment.service_instances(target) {
                    after.push(t.unit());
                    wants.push(t.unit());
                }
            }
        }
    }
    let restart = svc.map(|s| s.restart.systemd()).unwrap_or("always");
    // Room for the container's own stop timeout plus removing it.
    let stop_timeout = svc.map(|s| s.stop_timeout_secs()).unwrap_or(10) + 30;
    format!(
        "[Unit]\nDescription=berth {dep}/{svc} instance {idx} (container {ctr})\nAfter={after}\nWants={wants}\n\n[Service]\nType=notify\nNotifyAccess=main\nExecStart={bin} --state-dir {state} supervise {ctr}\nRestart={restart}\nRestartSec=1\nTimeoutStopSec={stop_timeout}\nKillMode=mixed\n\n[Install]\nWantedBy=multi-user.target\n",
        dep = instance.deployment,
        svc = instance.service,
        idx = instance.index,
        ctr = instance.container,
        after = after.join(" "),
        wants = wants.join(" "),
        bin = opts.berth_path.display(),
        state = opts.state_dir.display(),
    )
}
