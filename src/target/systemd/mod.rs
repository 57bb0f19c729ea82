//! systemd units: one `berth-<container>.service` per instance, running
//! `berth supervise`, which starts a fresh container on every start. The
//! instance specs and unit files are the truth; the containers come and go.

pub mod ctl;
pub mod timer;
pub mod unit;

use std::collections::BTreeMap;

use self::ctl::{Systemctl, systemd_running};
use self::unit::{UnitOptions, host_systemd_version, render_unit};
use super::{Control, HostOptions, Reporter, Step, Supervised, Target};
use crate::deployment::{Deployment, InstanceRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::Integration;
use crate::names;
use crate::plan::{Action, Supervision, VolumePlan};
use crate::ssh::gateway;
use crate::state::StateDir;
use crate::supervise::backoff::CrashRecord;

/// The systemd target.
#[derive(Debug, Clone)]
pub struct Systemd {
    opts: HostOptions,
}

impl Systemd {
    pub fn new(opts: HostOptions) -> Self {
        Self { opts }
    }

    /// `systemctl` as this target runs it: only where systemd runs.
    fn ctl(&self) -> Systemctl {
        Systemctl::new(self.opts.systemctl && systemd_running())
    }
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[async_trait::async_trait]
impl Target for Systemd {
    fn integration(&self) -> Integration {
        Integration::Systemd
    }

    fn unit_dir(&self) -> Option<&std::path::Path> {
        Some(&self.opts.unit_dir)
    }

    fn check(&self, deployment: &Deployment) -> Result<()> {
        if self.opts.systemctl && !systemd_running() {
            return Err(Error::Runtime(format!(
                "--integration systemd: systemd is not running on this host (PID 1 is not systemd, /run/systemd/system is missing), so units could not be started; use --integration docker, or --no-systemctl to only write the units to {}",
                self.opts.unit_dir.display()
            )));
        }
        super::ssh_gateway::check_unit_clash(deployment)?;
        timer::check_clash(deployment, &self.opts.unit_dir)
    }

    fn supervision(&self, state: &StateDir, deployment: &Deployment) -> Result<Supervision> {
        // Units use newer restart settings only where the host's systemd
        // has them, and reach the engine this apply talks to.
        let opts = UnitOptions::new(&self.opts.berth_path, absolute(state.root()))
            .with_systemd_version(host_systemd_version())
            .with_docker_host(std::env::var("DOCKER_HOST").ok());
        // A path systemd cannot run is an error now, not a unit that never starts.
        opts.check()?;
        let units = deployment
            .instances()
            .iter()
            .map(|i| (i.container.clone(), render_unit(deployment, i, &opts)))
            .collect();
        Ok(Supervision::Systemd {
            unit_dir: self.opts.unit_dir.clone(),
            units,
            schedule_units: timer::render(deployment, &opts, &absolute(&self.opts.unit_dir)),
        })
    }

    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>> {
        let all: Vec<&VolumePlan> = step.plan.volumes_to_create.iter().collect();
        super::create_volumes(step.engine, step.specs, &all, step.revision, step.report).await?;
        let units = match step.supervision {
            Supervision::Systemd { units, .. } => units.clone(),
            Supervision::Containers(_) => BTreeMap::new(),
        };
        let ctl = Systemctl::new(self.opts.systemctl);
        let mut pending = converge_units(step, &self.opts.unit_dir, &units, ctl.clone()).await?;
        pending.extend(timer::converge(step.plan, &self.opts.unit_dir, &ctl, step.report).await?);
        Ok(pending)
    }

    async fn hold(&self, engine: &Engine, container: &str) -> Result<()> {
        // Stopping the container alone would have the supervisor start a
        // fresh one in the middle of the copy.
        self.ctl().stop(&[names::unit_name(container)]).await?;
        let _ = engine;
        Ok(())
    }

    async fn release(&self, _engine: &Engine, container: &str) -> Result<()> {
        self.ctl().start(&[names::unit_name(container)]).await
    }

    async fn control(
        &self,
        _engine: &Engine,
        _state: &StateDir,
        _deployment: &Deployment,
        instances: &[InstanceRef],
        action: Control,
        _was_stopped: &[bool],
    ) -> Result<Vec<String>> {
        // The operator's command acts now, whatever `--no-systemctl` an
        // apply was given: disabled, a stopped unit stays stopped at boot.
        let ctl = Systemctl::new(true);
        let mut report = Vec::new();
        for inst in instances {
            let unit = vec![inst.unit()];
            match action {
                Control::Stop => ctl.run(&["disable", "--now"], &unit).await?,
                Control::Start => ctl.run(&["enable", "--now"], &unit).await?,
                Control::Restart => {
                    ctl.run(&["restart"], &unit).await?;
                    ctl.run(&["enable"], &unit).await?;
                }
            }
            report.push(format!(
                "{}: {} ({})",
                inst.container,
                action.verb(),
                unit[0]
            ));
        }
        Ok(report)
    }

    fn supervised(
        &self,
        state: &StateDir,
        _deployment: &Deployment,
        container: &str,
    ) -> Supervised {
        if !crate::doctor::systemd_is_pid1() {
            return Supervised::Container;
        }
        match ctl::unit_status(&names::unit_name(container)) {
            Some(unit) => Supervised::Unit {
                unit,
                crashes: CrashRecord::load(state, container),
            },
            None => Supervised::Container,
        }
    }

    async fn reconcile_gateway(
        &self,
        state: &StateDir,
        _deployment: Option<&Deployment>,
        listen: Option<&str>,
        report: &Reporter,
    ) -> Result<Vec<String>> {
        use super::ssh_gateway::{UnitChange, reconcile_unit};
        let g = reconcile_unit(
            state,
            &self.opts.unit_dir,
            &self.opts.berth_path,
            listen,
            self.opts.systemctl,
        )
        .await
        .map_err(|e| Error::Runtime(format!("SSH gateway unit: {e}")))?;
        match &g.change {
            UnitChange::Installed { listen } => report(format!(
                "installed {} (listening on {listen})",
                gateway::UNIT_NAME
            )),
            UnitChange::Updated { listen } => report(format!(
                "updated {} (listening on {listen})",
                gateway::UNIT_NAME
            )),
            UnitChange::Removed => report(format!(
                "removed {} (no deployment grants ssh keys)",
                gateway::UNIT_NAME
            )),
            UnitChange::Unchanged => {}
        }
        Ok(g.pending)
    }
}

/// Write specs and units, and run systemctl for what the plan changes.
async fn converge_units(
    step: &Step<'_>,
    unit_dir: &std::path::Path,
    units: &BTreeMap<String, String>,
    ctl: Systemctl,
) -> Result<Vec<String>> {
    let plan = step.plan;
    let mut pending = Vec::new();
    // Removed instances: stop and disable their units first, so systemd
    // does not restart what is being removed.
    let removed: Vec<String> = plan
        .with_action(Action::Remove)
        .map(|i| names::unit_name(&i.container))
        .collect();
    if !removed.is_empty() {
        ctl.stop(&removed).await?;
        ctl.disable(&removed).await?;
        if !ctl.enabled() {
            pending.push(format!("systemctl disable --now {}", removed.join(" ")));
        }
        for i in plan.with_action(Action::Remove) {
            ctl::remove_unit(unit_dir, &i.container)?;
        }
    }
    super::remove_instances(step.engine, step.state, plan, step.report).await?;

    let mut units_changed = !removed.is_empty();
    let mut to_restart = Vec::new();
    let mut to_start = Vec::new();
    let mut to_enable = Vec::new();
    for item in &plan.instances {
        let Some(spec) = &item.spec else { continue };
        // Before the spec is written: an apply killed in between reloads again.
        if item.action == Action::Reload {
            step.engine
                .reload_changed_files(spec, item.previous.as_ref())
                .await?;
        }
        spec.write(step.state)?;
        if let Some(text) = units.get(&spec.container) {
            units_changed |= ctl::write_unit(unit_dir, &spec.container, text)?;
        }
        let unit = names::unit_name(&spec.container);
        // A unit the operator stopped stays disabled (not started at boot).
        if item.stopped_by_operator {
            continue;
        }
        to_enable.push(unit.clone());
        match item.action {
            Action::Create | Action::Start => to_start.push(unit),
            Action::Recreate => to_restart.push(unit),
            // Starting a running unit is a no-op; this restarts units that
            // an interrupted apply left stopped.
            Action::Unchanged | Action::Reload => to_start.push(unit),
            Action::Remove => {}
        }
        if item.action != Action::Unchanged {
            (step.report)(format!(
                "{} unit {}",
                match item.action {
                    Action::Create => "created",
                    _ => "updated",
                },
                names::unit_name(&spec.container)
            ));
        }
    }
    // Reload only when something changed: a no-op apply changes nothing.
    // (Any instance being created or recreated also reloads, which covers a
    // unit file written by an apply that was killed before its reload.)
    units_changed |= plan
        .instances
        .iter()
        .any(|i| matches!(i.action, Action::Create | Action::Recreate));
    if units_changed {
        ctl.daemon_reload().await?;
    }
    ctl.enable(&to_enable).await?;
    ctl.restart(&to_restart).await?;
    ctl.start(&to_start).await?;
    if !ctl.enabled() {
        if units_changed {
            pending.push("systemctl daemon-reload".into());
        }
        if !to_enable.is_empty() {
            pending.push(format!("systemctl enable {}", to_enable.join(" ")));
        }
        if !to_restart.is_empty() {
            pending.push(format!("systemctl restart {}", to_restart.join(" ")));
        }
        if !to_start.is_empty() {
            pending.push(format!("systemctl start {}", to_start.join(" ")));
        }
    }
    Ok(pending)
}

/// Switching instances from systemd to another target: their units must
/// go, or the supervisor and the new keeper would fight over the container.
pub(crate) async fn remove_units_left(
    plan: &crate::plan::Plan,
    unit_dir: &std::path::Path,
    systemctl: bool,
    report: &Reporter,
) -> Result<()> {
    let ctl = Systemctl::new(systemctl && systemd_running());
    // No scheduler of systemd's runs this deployment's updates any more.
    timer::converge(plan, unit_dir, &ctl, report).await?;
    if plan.units_to_remove.is_empty() {
        return Ok(());
    }
    let units = plan.units_to_remove.clone();
    ctl.stop(&units).await?;
    ctl.disable(&units).await?;
    for u in &units {
        let path = unit_dir.join(u);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    ctl.daemon_reload().await?;
    for u in units {
        report(format!(
            "removed unit {u} (instances now kept running by Docker)"
        ));
    }
    Ok(())
}
