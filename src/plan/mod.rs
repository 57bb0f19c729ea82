//! `berth plan`: the difference between the desired instance specs and what
//! runs on the host. [`Plan::diff`] takes what is there ([`Observed`]: the
//! containers, volumes and network, the instance specs and units berth wrote
//! before, the operator's stops, the applied revision; gathered by
//! `apply::observe`) and says, per instance, create / recreate (with the
//! fields that changed) / start / remove / unchanged, plus volumes to create
//! and ports that change. It does no I/O. `apply` carries out exactly this
//! plan.
//!
//! Before that it makes sure every name the deployment would use is its
//! own: an existing container, volume, network or instance spec whose
//! labels (or recorded owner) name another deployment, service or instance
//! is a [`Error::Conflict`] (exit 2), reported before anything is changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::deployment::{Deployment, PortMapping, RestartPolicy};
use crate::engine::{ContainerInfo, ContainerState};
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, Integration};
use crate::names::{self, Claim};
use crate::state::Revision;

pub mod settings;

/// What happens to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// No container (or unit) yet: create it.
    Create,
    /// The resolved spec changed: replace the container with a fresh one.
    Recreate,
    /// The container is as specified but not running: start it.
    Start,
    /// Only files with a reload signal changed: update them in the
    /// running container and signal it, instead of replacing it.
    Reload,
    /// Nothing to do.
    Unchanged,
    /// The instance is no longer in the file: remove its container (and
    /// unit); its volumes stay.
    Remove,
}

impl Action {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Start => "start",
            Action::Reload => "reload",
            Action::Unchanged => "unchanged",
            Action::Remove => "remove",
        }
    }
}

/// The plan for one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstancePlan {
    /// Container name.
    pub container: String,
    /// Service name.
    pub service: String,
    /// 1-based instance number.
    pub index: u32,
    /// What happens.
    pub action: Action,
    /// Why: the fields that changed (`env.FOO: "a" → "b"`), or the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// The operator stopped it (`berth stop`): it is (re)created if needed
    /// but not started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped_by_operator: bool,
    /// ID of the container there now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_id: Option<String>,
    /// The desired spec (`None` for removals).
    #[serde(skip)]
    pub spec: Option<InstanceSpec>,
    /// The previously applied spec from the state directory, if any.
    #[serde(skip)]
    pub previous: Option<InstanceSpec>,
}

/// A volume that does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumePlan {
    /// Engine volume name.
    pub name: String,
    /// Container the volume is for.
    pub container: String,
    /// Service it belongs to.
    pub service: String,
    /// Instance number.
    pub index: u32,
    /// Where it is mounted.
    pub path: String,
}

/// A published port that appears or disappears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortChange {
    /// Container concerned.
    pub container: String,
    /// Port published before (`0.0.0.0:8080->80/tcp`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Port published after, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// How the plan looks at host integration.
#[derive(Debug, Clone)]
pub enum Supervision {
    /// Containers with Docker restart policies (or `berth up`'s supervisor):
    /// the containers are the truth.
    Containers(Integration),
    /// systemd units: the instance specs and unit files are the truth; the
    /// supervisor creates the containers.
    Systemd {
        /// Where units are written.
        unit_dir: PathBuf,
        /// The desired unit file text by container.
        units: BTreeMap<String, String>,
        /// The desired scheduled-update units (service and timer) by unit
        /// file name; empty when no service has auto_update on.
        schedule_units: BTreeMap<String, String>,
    },
}

/// What happens to a unit that is not an instance's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitAction {
    Create,
    Update,
    Remove,
}

/// A scheduled-update unit (`berth-update-<deployment>.service` or
/// `.timer`) that apply writes or removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleUnit {
    pub unit: String,
    pub action: UnitAction,
    /// The text to write (not for a removal).
    #[serde(skip)]
    pub text: Option<String>,
}

impl Supervision {
    /// The integration this target stands for.
    pub fn integration(&self) -> Integration {
        match self {
            Supervision::Containers(i) => *i,
            Supervision::Systemd { .. } => Integration::Systemd,
        }
    }
}

/// Labels of an engine object.
pub type Labels = BTreeMap<String, String>;

/// What is on the host, as far as the plan is concerned: gathered from the
/// engine and the state directory by `apply::observe`, so that
/// [`Plan::diff`] is a pure function of it and the desired instances.
#[derive(Debug)]
pub struct Observed {
    /// Every container on the host, not only this deployment's: one named
    /// like an instance of ours but someone else's must not be adopted.
    pub containers: Vec<ContainerInfo>,
    /// The instance specs berth wrote for this deployment, by container.
    pub previous: BTreeMap<String, InstanceSpec>,
    /// Instance specs under the names of desired instances that are not in
    /// `previous` (another deployment's), by container.
    pub other_specs: BTreeMap<String, InstanceSpec>,
    /// Volumes labelled as this deployment's.
    pub deployment_volumes: BTreeMap<String, Labels>,
    /// The other volumes that exist under a name a desired instance uses.
    pub other_volumes: BTreeMap<String, Labels>,
    /// The deployment network's labels, if it exists.
    pub network: Option<Labels>,
    /// Instances the operator stopped (`berth stop`).
    pub stopped: BTreeSet<String>,
    /// Under systemd: the unit file on disk of each desired instance that
    /// has one, by container.
    pub unit_files: BTreeMap<String, String>,
    /// Under another integration: the instances whose systemd unit file
    /// is still in the unit directory (from `--integration systemd`).
    pub units_left: BTreeSet<String>,
    /// The deployment's scheduled-update unit files in the unit
    /// directory, by unit file name.
    pub schedule_unit_files: BTreeMap<String, String>,
    /// The applied revision; a failure to read it is reported after the
    /// ownership checks, which come first.
    pub current: Result<Option<Revision>>,
}

impl Default for Observed {
    /// An empty host.
    fn default() -> Self {
        Self {
            containers: Vec::new(),
            previous: BTreeMap::new(),
            other_specs: BTreeMap::new(),
            deployment_volumes: BTreeMap::new(),
            other_volumes: BTreeMap::new(),
            network: None,
            stopped: BTreeSet::new(),
            unit_files: BTreeMap::new(),
            units_left: BTreeSet::new(),
            schedule_unit_files: BTreeMap::new(),
            current: Ok(None),
        }
    }
}

/// What `apply` would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Deployment name.
    pub deployment: String,
    /// `systemd`, `docker` or `foreground`.
    pub integration: Integration,
    /// Images that are not on this host and will be pulled.
    pub images_to_pull: Vec<String>,
    /// The deployment network must be created.
    pub create_network: bool,
    /// Volumes to create.
    pub volumes_to_create: Vec<VolumePlan>,
    /// Every desired instance, then every removal.
    pub instances: Vec<InstancePlan>,
    /// Published ports that change.
    pub port_changes: Vec<PortChange>,
    /// systemd units of instances now kept running another way (switching
    /// from `--integration systemd`): stopped, disabled and removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units_to_remove: Vec<String>,
    /// The scheduled-update units to create, update or remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_units: Vec<ScheduleUnit>,
    /// What changes in the applied revision besides containers: keys and
    /// SSH grants, `ssh_shell`, snapshot settings, the integration...
    /// (see [`settings`]). Non-empty: apply writes a new revision.
    pub settings_changes: Vec<String>,
    /// Objects of the target besides instances, volumes and the network
    /// that are created or removed (the swarm: `config <name>`, `secret
    /// <name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectChange>,
    /// What the target could not find out or do as asked, said once (the
    /// swarm: an image whose registry could not give its tag's digest).
    /// Never a change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The registry digest each service's image tag resolved to, by
    /// service (the swarm): recorded in the revision, so a rollback runs
    /// exactly that image on whichever node its tasks land.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_digests: BTreeMap<String, String>,
}

/// An object of the target that is created or removed (see
/// [`Plan::objects`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectChange {
    /// [`Action::Create`] or [`Action::Remove`].
    pub action: Action,
    /// `config <name>`, with why for a removal.
    pub object: String,
}

fn port_text(p: &PortMapping) -> String {
    format!(
        "{}:{}->{}/{}",
        p.host_ip.as_deref().unwrap_or("0.0.0.0"),
        p.host_port
            .map(|h| h.to_string())
            .unwrap_or_else(|| "*".into()),
        p.container_port,
        p.protocol.as_str()
    )
}

impl Plan {
    /// True when applying would change something on the host.
    pub fn has_changes(&self) -> bool {
        !self.images_to_pull.is_empty()
            || self.create_network
            || !self.units_to_remove.is_empty()
            || !self.schedule_units.is_empty()
            || !self.volumes_to_create.is_empty()
            || !self.settings_changes.is_empty()
            || !self.objects.is_empty()
            || self.instances.iter().any(|i| i.action != Action::Unchanged)
    }

    /// Instances with a given action.
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &InstancePlan> {
        self.instances.iter().filter(move |i| i.action == action)
    }

    /// Compare the desired `specs` of `deployment` with what is on the host
    /// (`observed`, gathered by `apply::observe`). No I/O: the same inputs
    /// give the same plan.
    ///
    /// `missing_images` are the references not on this host (their specs
    /// carry no image ID yet, so their instances show as changing).
    /// Refuses with [`Error::Conflict`] names that two instances would share
    /// and names that are someone else's (see [`Observed`]).
    pub fn diff(
        deployment: &Deployment,
        specs: &[InstanceSpec],
        observed: Observed,
        missing_images: &[String],
        target: &Supervision,
    ) -> Result<Plan> {
        let name = &deployment.name;
        check_collisions(specs)?;
        let Observed {
            containers: all_containers,
            previous,
            other_specs,
            deployment_volumes: existing_volumes,
            other_volumes,
            network: network_labels,
            stopped: stopped_set,
            unit_files,
            units_left,
            schedule_unit_files,
            current,
        } = observed;
        let containers: Vec<ContainerInfo> = all_containers
            .iter()
            .filter(|c| c.labels.get(names::LABEL_DEPLOYMENT) == Some(name))
            .cloned()
            .collect();
        let by_name: BTreeMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.name.as_str(), c)).collect();
        let network = names::network_name(name);
        let mut conflicts = Vec::new();
        let create_network = match &network_labels {
            None => true,
            Some(labels) => {
                conflicts.extend(crate::engine::networks::network_conflict(
                    &network, name, labels,
                ));
                false
            }
        };

        let all_by_name: BTreeMap<&str, &ContainerInfo> = all_containers
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        for spec in specs {
            // The spec file berth keeps per container (and the unit made
            // from it): this deployment's are in `previous`; one of another
            // deployment was read by the container's name.
            let on_disk = previous
                .get(&spec.container)
                .or_else(|| other_specs.get(&spec.container));
            conflicts.extend(container_conflict(
                spec,
                all_by_name.get(spec.container.as_str()).copied(),
                on_disk,
            ));
        }

        let mut candidates = Vec::new();
        let mut seen_volumes = BTreeSet::new();
        for spec in specs {
            for (vol, path, owner) in spec.volume_owners() {
                if !seen_volumes.insert(vol.to_string()) {
                    continue;
                }
                if let Some(labels) = existing_volumes.get(vol) {
                    if let Claim::Other(theirs) = owner.claim(labels) {
                        conflicts.push(names::conflict_message("volume", vol, &theirs, &owner));
                    }
                    continue;
                }
                candidates.push((
                    VolumePlan {
                        name: vol.to_string(),
                        container: spec.container.clone(),
                        service: spec.service.clone(),
                        index: spec.index,
                        path: path.to_string(),
                    },
                    owner,
                ));
            }
        }
        // Volumes of these names that are not labelled as this deployment's.
        let mut volumes_to_create = Vec::new();
        for (v, owner) in candidates {
            match other_volumes.get(&v.name) {
                None => volumes_to_create.push(v),
                Some(labels) => match owner.claim(labels) {
                    // A volume without any berth label was made by hand
                    // (pre-filled data for this instance, say): berth never
                    // made it, so it is nobody else's, and it is used as it is.
                    Claim::Same | Claim::Unlabelled => {}
                    Claim::Other(theirs) => {
                        conflicts.push(names::conflict_message("volume", &v.name, &theirs, &owner))
                    }
                },
            }
        }
        if !conflicts.is_empty() {
            return Err(Error::Conflict(conflicts.join("\n")));
        }

        let mut instances = Vec::new();
        let mut port_changes = Vec::new();
        for spec in specs {
            let hash = spec.hash();
            let prev = previous.get(&spec.container);
            let container = by_name.get(spec.container.as_str()).copied();
            let stopped = stopped_set.contains(&spec.container);
            let image_missing = missing_images.contains(&spec.image);
            let mut changes = Vec::new();
            if image_missing {
                changes.push(format!("image {} is not on this host: pull it", spec.image));
            }
            let action = match target {
                Supervision::Containers(_) => match container {
                    None => Action::Create,
                    Some(c) if c.spec_hash() == Some(hash.as_str()) && !image_missing => {
                        // Started unless running, stopped by the operator,
                        // or finished on its own under a policy that does
                        // not restart it (a one-shot job that exited is
                        // left as it is).
                        let finished_for_good = c.state == ContainerState::Exited
                            && spec.restart != RestartPolicy::Always;
                        if c.state == ContainerState::Running || stopped || finished_for_good {
                            Action::Unchanged
                        } else {
                            Action::Start
                        }
                    }
                    Some(c) => {
                        changes.extend(explain(prev, spec, c.spec_hash()));
                        Action::Recreate
                    }
                },
                Supervision::Systemd {
                    unit_dir, units, ..
                } => {
                    let unit_path = unit_dir.join(names::unit_name(&spec.container));
                    let on_disk = unit_files.get(&spec.container);
                    let wanted = units.get(&spec.container);
                    match prev {
                        None => Action::Create,
                        Some(p) => {
                            let mut recreate = false;
                            if p.hash() != hash || image_missing {
                                changes.extend(explain(Some(p), spec, Some(&p.hash())));
                                recreate = true;
                            }
                            if on_disk != wanted {
                                changes.push(format!(
                                    "unit {} {}",
                                    unit_path.display(),
                                    if on_disk.is_some() {
                                        "changed"
                                    } else {
                                        "missing"
                                    }
                                ));
                                recreate = true;
                            }
                            // A container left by an interrupted apply, or by
                            // an older spec, is replaced.
                            if let Some(c) = container
                                && c.spec_hash() != Some(hash.as_str())
                            {
                                changes.push("running container has an older spec".into());
                                recreate = true;
                            }
                            if recreate {
                                Action::Recreate
                            } else {
                                Action::Unchanged
                            }
                        }
                    }
                }
            };
            // Files with a reload signal are left out of the hash: a change
            // of only those is made in the running container.
            let reloads = prev
                .map(|p| crate::instance::files::reloads(&p.files, &spec.files))
                .unwrap_or_default();
            let action = match action {
                Action::Unchanged | Action::Start if !reloads.is_empty() => {
                    changes.extend(crate::instance::files::diff_lines(
                        &prev.map(|p| p.files.clone()).unwrap_or_default(),
                        &spec.files,
                    ));
                    if action == Action::Start {
                        // Not running: a fresh container gets the new files.
                        Action::Recreate
                    } else {
                        Action::Reload
                    }
                }
                other => other,
            };
            if matches!(action, Action::Create | Action::Recreate) {
                let before: BTreeSet<String> = prev
                    .map(|p| p.ports.iter().map(port_text).collect())
                    .unwrap_or_default();
                let after: BTreeSet<String> = spec.ports.iter().map(port_text).collect();
                for p in before.difference(&after) {
                    port_changes.push(PortChange {
                        container: spec.container.clone(),
                        before: Some(p.clone()),
                        after: None,
                    });
                }
                for p in after.difference(&before) {
                    port_changes.push(PortChange {
                        container: spec.container.clone(),
                        before: None,
                        after: Some(p.clone()),
                    });
                }
            }
            instances.push(InstancePlan {
                container: spec.container.clone(),
                service: spec.service.clone(),
                index: spec.index,
                action,
                changes: if action == Action::Unchanged {
                    Vec::new()
                } else {
                    changes
                },
                stopped_by_operator: stopped,
                current_id: container.map(|c| c.id.clone()),
                spec: Some(spec.clone()),
                previous: prev.cloned(),
            });
        }

        // Removals: containers and specs of this deployment no longer wanted.
        let wanted: BTreeSet<&str> = specs.iter().map(|s| s.container.as_str()).collect();
        let mut gone: BTreeSet<String> = containers
            .iter()
            .filter(|c| !wanted.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        gone.extend(
            previous
                .keys()
                .filter(|c| !wanted.contains(c.as_str()))
                .cloned(),
        );
        for c in gone {
            let prev = previous.get(&c);
            let info = by_name.get(c.as_str());
            for p in prev.map(|p| p.ports.clone()).unwrap_or_default() {
                port_changes.push(PortChange {
                    container: c.clone(),
                    before: Some(port_text(&p)),
                    after: None,
                });
            }
            instances.push(InstancePlan {
                service: prev
                    .map(|p| p.service.clone())
                    .or_else(|| info.and_then(|i| i.service().map(String::from)))
                    .unwrap_or_default(),
                index: prev
                    .map(|p| p.index)
                    .or_else(|| info.and_then(|i| i.instance()))
                    .unwrap_or(0),
                action: Action::Remove,
                changes: vec!["no longer in the deployment file (its volumes are kept)".into()],
                stopped_by_operator: stopped_set.contains(&c),
                current_id: info.map(|i| i.id.clone()),
                spec: None,
                previous: prev.cloned(),
                container: c,
            });
        }

        // Numeric order of ports within each container reads best.
        port_changes.sort_by_key(|p| {
            let text = p
                .after
                .as_ref()
                .or(p.before.as_ref())
                .cloned()
                .unwrap_or_default();
            let container_port: u32 = text
                .split("->")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (p.container.clone(), container_port, p.after.is_some())
        });
        let current = current?;
        let recreated: BTreeSet<String> = instances
            .iter()
            .filter(|i| i.action != Action::Unchanged && i.action != Action::Start)
            .map(|i| i.service.clone())
            .collect();
        let settings_changes = settings::changes(
            current.as_ref(),
            deployment,
            target.integration().as_str(),
            &recreated,
        );
        // Units of instances now kept running another way must go, or
        // systemd and the engine would fight over the containers.
        let units_to_remove = if target.integration() == Integration::Systemd {
            Vec::new()
        } else {
            instances
                .iter()
                .filter(|i| units_left.contains(&i.container))
                .map(|i| names::unit_name(&i.container))
                .collect()
        };
        let wanted_schedule = match target {
            Supervision::Systemd { schedule_units, .. } => schedule_units.clone(),
            Supervision::Containers(_) => BTreeMap::new(),
        };
        let mut schedule_units: Vec<ScheduleUnit> = wanted_schedule
            .into_iter()
            .filter_map(|(unit, text)| {
                let action = match schedule_unit_files.get(&unit) {
                    None => UnitAction::Create,
                    Some(t) if *t != text => UnitAction::Update,
                    Some(_) => return None,
                };
                Some(ScheduleUnit {
                    unit,
                    action,
                    text: Some(text),
                })
            })
            .collect();
        let wanted_names: BTreeSet<&str> = match target {
            Supervision::Systemd { schedule_units, .. } => {
                schedule_units.keys().map(String::as_str).collect()
            }
            Supervision::Containers(_) => BTreeSet::new(),
        };
        schedule_units.extend(
            schedule_unit_files
                .keys()
                .filter(|u| !wanted_names.contains(u.as_str()))
                .map(|u| ScheduleUnit {
                    unit: u.clone(),
                    action: UnitAction::Remove,
                    text: None,
                }),
        );
        let mut images_to_pull: Vec<String> = missing_images.to_vec();
        images_to_pull.sort();
        images_to_pull.dedup();
        Ok(Plan {
            deployment: name.clone(),
            integration: target.integration(),
            images_to_pull,
            create_network,
            volumes_to_create,
            instances,
            port_changes,
            units_to_remove,
            schedule_units,
            settings_changes,
            objects: Vec::new(),
            warnings: Vec::new(),
            image_digests: BTreeMap::new(),
        })
    }

    /// The plan as text for the operator.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let push = |out: &mut String, s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        push(
            &mut out,
            format!(
                "deployment {} (integration: {})",
                self.deployment,
                self.integration.as_str()
            ),
        );
        for img in &self.images_to_pull {
            push(&mut out, format!("  pull      image {img}"));
        }
        if self.create_network {
            push(
                &mut out,
                format!(
                    "  create    network {}",
                    names::network_name(&self.deployment)
                ),
            );
        }
        for v in &self.volumes_to_create {
            push(
                &mut out,
                format!(
                    "  create    volume {} ({} at {})",
                    v.name, v.container, v.path
                ),
            );
        }
        for o in &self.objects {
            push(&mut out, format!("  {:<9} {}", o.action.as_str(), o.object));
        }
        for i in &self.instances {
            let mut line = format!("  {:<9} {}", i.action.as_str(), i.container);
            if i.stopped_by_operator && i.action != Action::Remove {
                line.push_str(" (stopped by operator: stays stopped)");
            }
            push(&mut out, line);
            for c in &i.changes {
                push(&mut out, format!("              {c}"));
            }
        }
        for u in &self.units_to_remove {
            push(
                &mut out,
                format!(
                    "  remove    unit {u} (kept running by {} now)",
                    self.integration.as_str()
                ),
            );
        }
        for u in &self.schedule_units {
            let verb = match u.action {
                UnitAction::Create => "create",
                UnitAction::Update => "update",
                UnitAction::Remove => "remove",
            };
            push(
                &mut out,
                format!("  {verb:<9} unit {} (scheduled updates)", u.unit),
            );
        }
        for c in &self.settings_changes {
            push(&mut out, format!("  update    {c}"));
        }
        for p in &self.port_changes {
            let text = match (&p.before, &p.after) {
                (Some(b), None) => format!("  port      {} - {b}", p.container),
                (None, Some(a)) => format!("  port      {} + {a}", p.container),
                (b, a) => format!("  port      {} {b:?} → {a:?}", p.container),
            };
            push(&mut out, text);
        }
        for w in &self.warnings {
            push(&mut out, format!("  warning   {w}"));
        }
        let n = self
            .instances
            .iter()
            .filter(|i| i.action != Action::Unchanged)
            .count();
        if self.has_changes() {
            let mut summary = format!("{n} instance{} to change", if n == 1 { "" } else { "s" });
            let k = self.settings_changes.len();
            if k > 0 {
                summary.push_str(&format!(
                    ", {k} setting{} to update",
                    if k == 1 { "" } else { "s" }
                ));
            }
            push(&mut out, summary);
        } else {
            push(&mut out, "no changes".to_string());
        }
        // Values from the file (paths, env changes) may hold control characters.
        crate::echo::text(&out).into_owned()
    }
}

/// Names that two of `specs` give to different things: one container name
/// for two instances, or one volume name for two volumes (of two instances,
/// or a listed volume and an image-declared one of the same instance).
/// The file's own names are checked when it is read; this also sees the
/// image-declared volumes, and specs that did not come from a file.
pub fn name_collisions(specs: &[InstanceSpec]) -> Vec<String> {
    let mut out = Vec::new();
    let mut containers: BTreeMap<&str, &InstanceSpec> = BTreeMap::new();
    let mut volumes: BTreeMap<&str, names::Owner> = BTreeMap::new();
    for spec in specs {
        if let Some(first) = containers.insert(&spec.container, spec) {
            out.push(format!(
                "container {}: both {} and {} would have this name; rename one of the services",
                spec.container,
                first.owner(),
                spec.owner()
            ));
        }
        for (vol, _, owner) in spec.volume_owners() {
            match volumes.get(vol) {
                Some(first) if *first != owner => out.push(format!(
                    "volume {vol}: both {first} and {owner} would use this volume; rename one of them"
                )),
                Some(_) => {}
                None => {
                    volumes.insert(vol, owner);
                }
            }
        }
    }
    out
}

/// [`name_collisions`] as an error: refused before the host is even looked at.
pub fn check_collisions(specs: &[InstanceSpec]) -> Result<()> {
    let collisions = name_collisions(specs);
    if collisions.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict(collisions.join("\n")))
    }
}

/// Why an instance may not take the name of its container: a container of
/// that name that is someone else's, or an instance spec (and so a unit)
/// berth wrote for someone else (`on_disk`: the one under its name).
fn container_conflict(
    spec: &InstanceSpec,
    existing: Option<&ContainerInfo>,
    on_disk: Option<&InstanceSpec>,
) -> Vec<String> {
    let owner = spec.owner();
    let mut out = Vec::new();
    if let Some(c) = existing {
        match owner.claim(&c.labels) {
            Claim::Same => {}
            Claim::Unlabelled => out.push(format!(
                "container {} exists and was not made by berth (it has no berth labels), but {owner} would use its name. \
                 Nothing was changed: remove or rename that container, or rename the service or the deployment (--name)",
                spec.container
            )),
            Claim::Other(theirs) => out.push(names::conflict_message(
                "container",
                &spec.container,
                &theirs,
                &owner,
            )),
        }
    }
    if let Some(p) = on_disk
        && p.owner() != owner
        && out.is_empty()
    {
        out.push(format!(
            "instance {}: berth already runs this name for {} (its instance spec and unit), but {owner} would use it; \
             names are joined with `-`, so these two give the same name. Nothing was changed: \
             rename the service or the deployment (--name) so the names differ",
            spec.container,
            p.owner()
        ));
    }
    out
}

/// Why an instance is recreated: the field diff against the previous spec
/// when that spec is the one the container was made from, else the hashes.
fn explain(
    prev: Option<&InstanceSpec>,
    desired: &InstanceSpec,
    current_hash: Option<&str>,
) -> Vec<String> {
    match prev {
        Some(p) if current_hash.is_none() || current_hash == Some(p.hash().as_str()) => {
            let d = p.diff(desired);
            if d.is_empty() {
                vec!["container was made from a different spec".into()]
            } else {
                d.into_iter().map(|l| mask_secret(&l)).collect()
            }
        }
        _ => vec![format!(
            "spec hash {} → {} (previous spec not recorded)",
            current_hash.unwrap_or("(none)"),
            desired.hash()
        )],
    }
}

/// Hide values of environment variables whose names look secret.
fn mask_secret(line: &str) -> String {
    let Some(rest) = line.strip_prefix("env.") else {
        return line.to_string();
    };
    let key = rest
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if ["PASSWORD", "SECRET", "TOKEN", "KEY", "PASS"]
        .iter()
        .any(|s| key.contains(s))
    {
        format!("env.{key}: (value changed, hidden)")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::ImageInfo;
    use crate::instance::resolve;

    fn dep(services: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({ "name": "d", "services": services }))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_listed_volume_named_like_an_image_declared_one_collides() {
        let image_volume = names::image_volume_name("d-s", "/var/lib/data");
        let listed = image_volume
            .strip_prefix("d-s-")
            .unwrap_or_else(|| panic!("{image_volume}"));
        let d = dep(serde_json::json!({
            "s": {"name": "s", "image": "img", "count": 1, "volumes": [
                {"source": {"named": listed}, "target": "/other"}
            ]}
        }));
        let images = BTreeMap::from([(
            "img".to_string(),
            ImageInfo {
                id: "sha256:1".into(),
                exposed_ports: vec![],
                volumes: vec!["/var/lib/data".into()],
                healthcheck: false,
            },
        )]);
        let specs = resolve(&d, &images, Integration::Docker);
        let c = name_collisions(&specs);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with(&format!("volume {image_volume}: both deployment d, service s, instance 1, volume {listed} and deployment d, service s, instance 1, volume /var/lib/data")), "{c:?}");
        // Without the image's VOLUME there is nothing to collide with.
        assert!(name_collisions(&resolve(&d, &BTreeMap::new(), Integration::Docker)).is_empty());
    }

    // Plan::diff against hosts described by hand.

    fn web(extra: serde_json::Value) -> Deployment {
        let mut web = serde_json::json!({
            "name": "web", "image": "img", "count": 1,
            "env": {"MODE": "a", "DB_PASSWORD": "old"},
            "ports": [{"host_port": 8080, "container_port": 80}],
            "volumes": [{"source": {"named": "data"}, "target": "/data"}]
        });
        if let (Some(w), serde_json::Value::Object(e)) = (web.as_object_mut(), extra) {
            w.extend(e);
        }
        dep(serde_json::json!({ "web": web, "db": {"name": "db", "image": "pg", "count": 1} }))
    }

    fn specs(d: &Deployment) -> Vec<InstanceSpec> {
        resolve(d, &BTreeMap::new(), Integration::Docker)
    }

    fn spec<'a>(specs: &'a [InstanceSpec], container: &str) -> &'a InstanceSpec {
        specs
            .iter()
            .find(|s| s.container == container)
            .unwrap_or_else(|| panic!("no spec {container}"))
    }

    /// The container apply makes from `spec`.
    fn container(spec: &InstanceSpec, state: ContainerState) -> ContainerInfo {
        let mut labels = spec.labels.clone();
        labels.extend(spec.berth_labels(1));
        labels.insert(names::LABEL_SPEC_HASH.into(), spec.hash());
        ContainerInfo {
            id: format!("id-{}", spec.container),
            name: spec.container.clone(),
            image: spec.image.clone(),
            image_id: String::new(),
            labels,
            state,
            status: String::new(),
            created: 0,
        }
    }

    fn revision(d: &Deployment) -> Revision {
        Revision {
            revision: 1,
            applied_at: "2026-01-01T00:00:00Z".into(),
            integration: "docker".into(),
            deployment: d.clone(),
            image_ids: BTreeMap::new(),
            cause: None,
            image_digests: Default::default(),
        }
    }

    /// The host after `d` was applied under Docker: every container running.
    fn applied(d: &Deployment) -> Observed {
        let specs = specs(d);
        let mut volumes = BTreeMap::new();
        for s in &specs {
            for (vol, _, owner) in s.volume_owners() {
                volumes.insert(vol.to_string(), owner.labels());
            }
        }
        Observed {
            containers: specs
                .iter()
                .map(|s| container(s, ContainerState::Running))
                .collect(),
            previous: specs
                .iter()
                .map(|s| (s.container.clone(), s.clone()))
                .collect(),
            deployment_volumes: volumes,
            network: Some(BTreeMap::from([(
                names::LABEL_DEPLOYMENT.to_string(),
                "d".to_string(),
            )])),
            current: Ok(Some(revision(d))),
            ..Observed::default()
        }
    }

    fn docker() -> Supervision {
        Supervision::Containers(Integration::Docker)
    }

    fn diff(d: &Deployment, observed: Observed) -> Plan {
        Plan::diff(d, &specs(d), observed, &[], &docker()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn actions(plan: &Plan) -> Vec<(&str, Action)> {
        plan.instances
            .iter()
            .map(|i| (i.container.as_str(), i.action))
            .collect()
    }

    fn conflict(d: &Deployment, observed: Observed) -> String {
        match Plan::diff(d, &specs(d), observed, &[], &docker()) {
            Err(Error::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_host_creates_everything() {
        let d = web(serde_json::json!({}));
        let plan = diff(&d, Observed::default());
        assert_eq!(
            actions(&plan),
            [("d-db", Action::Create), ("d-web", Action::Create)]
        );
        assert!(plan.create_network);
        assert_eq!(plan.volumes_to_create.len(), 1);
        assert_eq!(plan.volumes_to_create[0].name, "d-web-data");
        assert_eq!(plan.volumes_to_create[0].path, "/data");
        assert_eq!(plan.port_changes.len(), 1);
        assert_eq!(
            plan.port_changes[0].after.as_deref(),
            Some("0.0.0.0:8080->80/tcp")
        );
        assert_eq!(
            plan.settings_changes,
            ["first revision of this deployment on this host"]
        );
        assert!(plan.has_changes());
    }

    #[test]
    fn the_host_as_applied_is_no_change() {
        let d = web(serde_json::json!({}));
        let plan = diff(&d, applied(&d));
        assert_eq!(
            actions(&plan),
            [("d-db", Action::Unchanged), ("d-web", Action::Unchanged)]
        );
        assert!(!plan.create_network);
        assert!(plan.volumes_to_create.is_empty());
        assert!(plan.port_changes.is_empty());
        assert!(plan.settings_changes.is_empty());
        assert!(plan.instances.iter().all(|i| i.changes.is_empty()));
        assert!(!plan.has_changes());
        assert!(plan.render().ends_with("no changes\n"), "{}", plan.render());
    }

    #[test]
    fn a_changed_spec_recreates_that_instance_and_names_the_fields() {
        let before = web(serde_json::json!({}));
        let after = web(serde_json::json!({
            "env": {"MODE": "b", "DB_PASSWORD": "new"},
            "ports": [{"host_port": 8081, "container_port": 80}]
        }));
        let plan = diff(&after, applied(&before));
        assert_eq!(
            actions(&plan),
            [("d-db", Action::Unchanged), ("d-web", Action::Recreate)]
        );
        let web = &plan.instances[1];
        assert_eq!(web.current_id.as_deref(), Some("id-d-web"));
        assert!(
            web.changes.contains(&"env.MODE: \"a\" → \"b\"".to_string()),
            "{:?}",
            web.changes
        );
        // A secret-looking variable is named, its values are not.
        assert!(
            web.changes
                .contains(&"env.DB_PASSWORD: (value changed, hidden)".to_string()),
            "{:?}",
            web.changes
        );
        assert!(
            !web.changes
                .iter()
                .any(|c| c.contains("new") || c.contains("old"))
        );
        assert!(
            web.changes.iter().any(|c| c.starts_with("ports")),
            "{:?}",
            web.changes
        );
        let ports: Vec<(Option<&str>, Option<&str>)> = plan
            .port_changes
            .iter()
            .map(|p| (p.before.as_deref(), p.after.as_deref()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("0.0.0.0:8080->80/tcp"), None),
                (None, Some("0.0.0.0:8081->80/tcp"))
            ]
        );
        // The service's container fields are explained by the recreate.
        assert!(
            plan.settings_changes.is_empty(),
            "{:?}",
            plan.settings_changes
        );
    }

    #[test]
    fn a_container_from_an_unrecorded_spec_is_recreated_by_hash() {
        let d = web(serde_json::json!({}));
        let mut host = applied(&d);
        host.previous.clear();
        host.containers[1]
            .labels
            .insert(names::LABEL_SPEC_HASH.into(), "old-hash".into());
        let plan = diff(&d, host);
        assert_eq!(plan.instances[1].action, Action::Recreate);
        assert_eq!(
            plan.instances[1].changes,
            [format!(
                "spec hash old-hash → {} (previous spec not recorded)",
                spec(&specs(&d), "d-web").hash()
            )]
        );
    }

    #[test]
    fn a_stopped_container_is_started_unless_the_operator_or_its_policy_says_otherwise() {
        let d = web(serde_json::json!({}));
        let mut host = applied(&d);
        host.containers[0].state = ContainerState::Exited;
        host.containers[1].state = ContainerState::Exited;
        host.stopped.insert("d-web".into());
        let plan = diff(&d, host);
        assert_eq!(
            actions(&plan),
            [("d-db", Action::Start), ("d-web", Action::Unchanged)]
        );
        assert!(plan.instances[1].stopped_by_operator);
        assert!(
            plan.render()
                .contains("d-web (stopped by operator: stays stopped)")
        );

        // A one-shot job that finished is left as it is.
        let d = web(serde_json::json!({"restart": "no"}));
        let mut host = applied(&d);
        host.containers[1].state = ContainerState::Exited;
        assert_eq!(diff(&d, host).instances[1].action, Action::Unchanged);
    }

    #[test]
    fn a_service_gone_from_the_file_is_removed_and_its_ports_closed() {
        let before = web(serde_json::json!({}));
        let after = dep(serde_json::json!({"db": {"name": "db", "image": "pg", "count": 1}}));
        let plan = diff(&after, applied(&before));
        assert_eq!(
            actions(&plan),
            [("d-db", Action::Unchanged), ("d-web", Action::Remove)]
        );
        let gone = &plan.instances[1];
        assert_eq!((gone.service.as_str(), gone.index), ("web", 1));
        assert_eq!(gone.current_id.as_deref(), Some("id-d-web"));
        assert!(gone.spec.is_none() && gone.previous.is_some());
        assert_eq!(
            gone.changes,
            ["no longer in the deployment file (its volumes are kept)"]
        );
        assert_eq!(plan.port_changes.len(), 1);
        assert_eq!(
            plan.port_changes[0].before.as_deref(),
            Some("0.0.0.0:8080->80/tcp")
        );
        // Only the container is gone: no volume is touched.
        assert!(plan.volumes_to_create.is_empty());
    }

    #[test]
    fn scaling_up_creates_the_new_instances_and_down_removes_them() {
        let count =
            |n: u32| dep(serde_json::json!({"w": {"name": "w", "image": "img", "count": n}}));
        let names: Vec<String> = specs(&count(3))
            .iter()
            .map(|s| s.container.clone())
            .collect();
        assert_eq!(names, ["d-w-1", "d-w-2", "d-w-3"]);

        let up = diff(&count(3), applied(&count(2)));
        assert_eq!(
            actions(&up),
            [
                ("d-w-1", Action::Unchanged),
                ("d-w-2", Action::Unchanged),
                ("d-w-3", Action::Create)
            ]
        );
        // `count` is a container field: the create explains it.
        assert!(up.settings_changes.is_empty(), "{:?}", up.settings_changes);

        let down = diff(&count(2), applied(&count(3)));
        assert_eq!(
            actions(&down),
            [
                ("d-w-1", Action::Unchanged),
                ("d-w-2", Action::Unchanged),
                ("d-w-3", Action::Remove)
            ]
        );
        assert_eq!(down.instances[2].index, 3);

        // From one instance, its container's name changes (`d-w` becomes
        // `d-w-1`); its volumes keep their names (see names::volume_prefix).
        let from_one = diff(&count(2), applied(&count(1)));
        assert_eq!(
            actions(&from_one),
            [
                ("d-w-1", Action::Create),
                ("d-w-2", Action::Create),
                ("d-w", Action::Remove)
            ]
        );
    }

    #[test]
    fn a_missing_image_is_pulled_and_its_instances_change() {
        let d = web(serde_json::json!({}));
        let missing = ["img".to_string(), "img".to_string()];
        let plan = Plan::diff(&d, &specs(&d), applied(&d), &missing, &docker())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.images_to_pull, ["img"]);
        assert_eq!(plan.instances[0].action, Action::Unchanged);
        assert_eq!(plan.instances[1].action, Action::Recreate);
        assert_eq!(
            plan.instances[1].changes[0],
            "image img is not on this host: pull it"
        );
    }

    #[test]
    fn names_that_are_someone_elses_are_refused() {
        let d = web(serde_json::json!({}));
        let web_spec = spec(&specs(&d), "d-web").clone();
        let other = |key: &str| -> BTreeMap<String, String> {
            let mut l = web_spec.owner().labels();
            l.insert(key.into(), "other".into());
            l
        };

        // A container of our name that another deployment made.
        let mut host = Observed::default();
        let mut theirs = container(&web_spec, ContainerState::Running);
        theirs.labels = other(names::LABEL_DEPLOYMENT);
        host.containers.push(theirs);
        let m = conflict(&d, host);
        assert!(m.starts_with("container d-web"), "{m}");

        // One nobody labelled.
        let mut host = Observed::default();
        let mut bare = container(&web_spec, ContainerState::Running);
        bare.labels.clear();
        host.containers.push(bare);
        assert!(conflict(&d, host).contains("was not made by berth"));

        // A volume of our name that belongs to another service.
        let mut host = Observed::default();
        host.other_volumes
            .insert("d-web-data".into(), other(names::LABEL_SERVICE));
        assert!(conflict(&d, host).starts_with("volume d-web-data"));

        // A volume made by hand, without labels, is used as it is.
        let mut host = Observed::default();
        host.other_volumes
            .insert("d-web-data".into(), BTreeMap::new());
        assert!(diff(&d, host).volumes_to_create.is_empty());

        // A network of our name not labelled as ours.
        let host = Observed {
            network: Some(BTreeMap::new()),
            ..Observed::default()
        };
        assert!(conflict(&d, host).starts_with("network d"));

        // An instance spec another deployment keeps under our name.
        let mut host = Observed::default();
        let mut foreign = web_spec.clone();
        foreign.deployment = "d-web".into();
        host.other_specs.insert("d-web".into(), foreign);
        assert!(conflict(&d, host).contains("berth already runs this name"));

        // Every conflict at once, before anything else: even an unreadable
        // applied revision comes second.
        let mut host = applied(&d);
        host.network = Some(BTreeMap::new());
        host.other_specs.clear();
        host.containers[1].labels = other(names::LABEL_INSTANCE);
        host.current = Err(Error::Runtime("corrupt".into()));
        let m = conflict(&d, host);
        assert_eq!(m.lines().count(), 2, "{m}");
    }

    #[test]
    fn two_instances_with_one_name_are_refused_before_the_host_counts() {
        let d = dep(serde_json::json!({
            "s": {"name": "s", "image": "img", "count": 2},
            "s-2": {"name": "s-2", "image": "img", "count": 1}
        }));
        let m = conflict(&d, Observed::default());
        assert!(m.starts_with("container d-s-2: both"), "{m}");
    }

    #[test]
    fn under_systemd_the_unit_files_count() {
        let d = dep(serde_json::json!({"w": {"name": "w", "image": "img", "count": 1}}));
        let specs = resolve(&d, &BTreeMap::new(), Integration::Systemd);
        let target = Supervision::Systemd {
            unit_dir: PathBuf::from("/units"),
            units: BTreeMap::from([("d-w".to_string(), "unit text".to_string())]),
            schedule_units: BTreeMap::new(),
        };
        let previous: BTreeMap<String, InstanceSpec> = specs
            .iter()
            .map(|s| (s.container.clone(), s.clone()))
            .collect();
        let plan = |observed: Observed| {
            Plan::diff(&d, &specs, observed, &[], &target).unwrap_or_else(|e| panic!("{e}"))
        };

        let fresh = plan(Observed::default());
        assert_eq!(actions(&fresh), [("d-w", Action::Create)]);
        assert_eq!(fresh.integration, Integration::Systemd);

        let missing_unit = plan(Observed {
            previous: previous.clone(),
            ..Observed::default()
        });
        assert_eq!(missing_unit.instances[0].action, Action::Recreate);
        assert_eq!(
            missing_unit.instances[0].changes,
            [format!("unit /units/{} missing", names::unit_name("d-w"))]
        );

        let same = plan(Observed {
            previous: previous.clone(),
            unit_files: BTreeMap::from([("d-w".to_string(), "unit text".to_string())]),
            ..Observed::default()
        });
        assert_eq!(same.instances[0].action, Action::Unchanged);
        // Its own units are never stale.
        let own = plan(Observed {
            previous: previous.clone(),
            unit_files: BTreeMap::from([("d-w".to_string(), "unit text".to_string())]),
            units_left: ["d-w".to_string()].into(),
            ..Observed::default()
        });
        assert!(own.units_to_remove.is_empty());

        let changed_unit = plan(Observed {
            previous,
            unit_files: BTreeMap::from([("d-w".to_string(), "old text".to_string())]),
            ..Observed::default()
        });
        assert!(changed_unit.instances[0].changes[0].ends_with(" changed"));
    }

    #[test]
    fn leaving_systemd_removes_the_units_of_every_instance_named() {
        let before = web(serde_json::json!({}));
        let after = dep(serde_json::json!({"db": {"name": "db", "image": "pg", "count": 1}}));
        let mut host = applied(&before);
        host.units_left = ["d-db".to_string(), "d-web".to_string(), "d-x".to_string()].into();
        let plan = diff(&after, host);
        // The kept instance's and the removed one's; no other unit.
        assert_eq!(
            plan.units_to_remove,
            [names::unit_name("d-db"), names::unit_name("d-web")]
        );
        assert!(plan.has_changes());
        assert!(
            plan.render().contains(&format!(
                "remove    unit {} (kept running by docker now)",
                names::unit_name("d-db")
            )),
            "{}",
            plan.render()
        );
        let mut host = applied(&after);
        host.units_left.clear();
        assert!(diff(&after, host).units_to_remove.is_empty());
    }

    #[test]
    fn a_setting_outside_the_containers_shows_as_an_update_only() {
        let before = web(serde_json::json!({}));
        let after = web(serde_json::json!({"ssh_shell": "/bin/sh"}));
        let plan = diff(&after, applied(&before));
        assert!(plan.instances.iter().all(|i| i.action == Action::Unchanged));
        assert_eq!(
            plan.settings_changes,
            ["web: ssh_shell: (unset) → \"/bin/sh\""]
        );
        assert!(plan.has_changes());
        assert!(
            plan.render().contains("1 setting to update"),
            "{}",
            plan.render()
        );

        // Another integration is a change of its own.
        let d = web(serde_json::json!({}));
        let mut host = applied(&d);
        if let Ok(Some(r)) = &mut host.current {
            r.integration = "systemd".into();
        }
        assert_eq!(
            diff(&d, host).settings_changes,
            ["integration: systemd → docker"]
        );
    }

    #[test]
    fn two_services_with_one_container_name_collide() {
        let d = dep(serde_json::json!({
            "s": {"name": "s", "image": "img", "count": 2},
            "s-1": {"name": "s-1", "image": "img", "count": 1}
        }));
        let c = name_collisions(&resolve(&d, &BTreeMap::new(), Integration::Docker));
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("container d-s-1: both"), "{c:?}");
    }
}
