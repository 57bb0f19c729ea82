//! Which instances of a deployment have data, where it is mounted, and how
//! to stop and start an instance around a copy.
//!
//! The engine is the source of truth: berth-owned volumes carry
//! `berth.deployment`, `berth.service` and `berth.instance` labels (and, for
//! image-declared paths, `berth.volume-path`). The instance's container (found
//! by the same labels) and its spec in the state directory add mount paths
//! and the image; neither has to exist (a stopped `systemd` instance has no
//! container, a fresh host has no state).
//!
//! On a swarm ([`Site::Swarm`]) an instance is a service's (replicas share
//! one volume set, on the node its pin label names: instance 1); its
//! volumes are the live spec's, reached through that node's engine, and it
//! is stopped for a copy by scaling the service to 0 and back
//! ([`crate::target::swarm::data::hold`]).

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::engine::archive::LABEL_CARRIER;
use crate::engine::nodes::NodeEngines;
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, MountSource};
use crate::names;
use crate::state::StateDir;

/// One volume of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVolume {
    pub name: String,
    /// Where the instance mounts it, when known.
    pub mount_path: Option<String>,
    /// Persists an image-declared `VOLUME`.
    pub from_image: bool,
    pub labels: BTreeMap<String, String>,
}

/// One instance with data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInstance {
    pub deployment: String,
    pub service: String,
    pub index: u32,
    pub container: String,
    /// ID of its container, if one exists now.
    pub container_id: Option<String>,
    /// True when that container is running.
    pub running: bool,
    /// Image reference and ID the instance runs (container first, then spec).
    pub image: Option<String>,
    pub image_id: Option<String>,
    /// Seconds between stop signal and SIGKILL.
    pub stop_timeout: u64,
    pub volumes: Vec<DataVolume>,
    /// On a swarm: the service and the node holding its volumes.
    pub swarm: Option<SwarmPlace>,
}

/// Where a swarm service's volumes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmPlace {
    /// The Swarm service (`<deployment>-<service>`).
    pub service: String,
    /// ID of the node carrying its pin label (none yet: see [`Site::engine`]).
    pub node: Option<String>,
    /// The pin label ([`crate::instance::swarm::pin_label`]).
    pub pin: String,
    /// The service's own placement, which a new pin must meet.
    pub placement: Vec<String>,
}

impl DataInstance {
    /// The labels berth puts on this instance's volumes.
    pub fn labels(&self) -> BTreeMap<String, String> {
        instance_labels(&self.deployment, &self.service, self.index)
    }

    /// An image on this host to create carriers from.
    pub fn carrier_image(&self) -> Option<&str> {
        self.image_id.as_deref().or(self.image.as_deref())
    }
}

/// `berth.deployment`, `berth.service`, `berth.instance`.
pub fn instance_labels(deployment: &str, service: &str, index: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_DEPLOYMENT.to_string(), deployment.to_string()),
        (names::LABEL_SERVICE.to_string(), service.to_string()),
        (names::LABEL_INSTANCE.to_string(), index.to_string()),
    ])
}

/// Every instance of `deployment` that has at least one berth-owned volume,
/// by container name.
pub async fn discover(
    engine: &Engine,
    state: &StateDir,
    deployment: &str,
) -> Result<Vec<DataInstance>> {
    let volumes = engine.list_volumes(deployment).await?;
    let containers: Vec<_> = engine
        .list_containers(deployment, &[])
        .await?
        .into_iter()
        .filter(|c| !c.labels.contains_key(LABEL_CARRIER))
        .collect();
    // A missing or unreadable state directory only loses the extra detail.
    let specs = InstanceSpec::read_all(state, deployment).unwrap_or_default();

    let mut groups: BTreeMap<(String, u32), Vec<crate::engine::volumes::VolumeInfo>> =
        BTreeMap::new();
    for v in volumes {
        let (Some(service), Some(index)) = (
            v.labels.get(names::LABEL_SERVICE).cloned(),
            v.labels
                .get(names::LABEL_INSTANCE)
                .and_then(|i| i.parse::<u32>().ok()),
        ) else {
            tracing::warn!(
                "volume {} is labelled for {deployment} but has no service/instance label; skipped",
                v.name
            );
            continue;
        };
        groups.entry((service, index)).or_default().push(v);
    }

    let mut out = Vec::new();
    for ((service, index), vols) in groups {
        let container = containers
            .iter()
            .find(|c| c.service() == Some(service.as_str()) && c.instance() == Some(index));
        let spec = specs
            .iter()
            .find(|s| s.service == service && s.index == index);
        let name = match (container, spec) {
            (Some(c), _) => c.name.clone(),
            (None, Some(s)) => s.container.clone(),
            (None, None) => {
                // Derive from the volume names: `<d>-<s>-<n>-...` when the
                // service runs several instances, `<d>-<s>-...` otherwise.
                let multi = names::container_name(deployment, &service, index, 2);
                if vols
                    .iter()
                    .all(|v| v.name.starts_with(&format!("{multi}-")))
                {
                    multi
                } else {
                    names::container_name(deployment, &service, index, 1)
                }
            }
        };
        let inspect = match container {
            Some(c) => engine.inspect_container(&c.id).await?,
            None => None,
        };
        let mut mounts: BTreeMap<String, String> = BTreeMap::new();
        if let Some(i) = &inspect {
            for m in i.mounts.iter().flatten() {
                if let (Some(n), Some(d)) = (&m.name, &m.destination) {
                    mounts.insert(n.clone(), d.clone());
                }
            }
        }
        let mut from_image_spec: BTreeMap<String, bool> = BTreeMap::new();
        if let Some(s) = spec {
            for m in &s.mounts {
                if let MountSource::Volume { name, from_image } = &m.source {
                    mounts
                        .entry(name.clone())
                        .or_insert_with(|| m.target.clone());
                    from_image_spec.insert(name.clone(), *from_image);
                }
            }
        }
        let data_volumes = vols
            .into_iter()
            .map(|v| {
                let label_path = v.labels.get(names::LABEL_VOLUME_PATH).cloned();
                DataVolume {
                    mount_path: mounts.get(&v.name).cloned().or(label_path.clone()),
                    from_image: from_image_spec
                        .get(&v.name)
                        .copied()
                        .unwrap_or(label_path.is_some()),
                    labels: v.labels,
                    name: v.name,
                }
            })
            .collect();
        let stop_timeout = spec
            .map(|s| s.stop_timeout)
            .or_else(|| {
                inspect
                    .as_ref()
                    .and_then(|i| i.config.as_ref())
                    .and_then(|c| c.stop_timeout)
                    .and_then(|t| u64::try_from(t).ok())
            })
            .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT);
        out.push(DataInstance {
            deployment: deployment.to_string(),
            service,
            index,
            container: name,
            container_id: container.map(|c| c.id.clone()),
            running: container.is_some_and(|c| c.state == crate::engine::ContainerState::Running),
            image: container
                .map(|c| c.image.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| spec.map(|s| s.image.clone())),
            image_id: container
                .map(|c| c.image_id.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| spec.map(|s| s.image_id.clone()).filter(|i| !i.is_empty())),
            stop_timeout,
            volumes: data_volumes,
            swarm: None,
        });
    }
    out.sort_by(|a, b| a.container.cmp(&b.container));
    Ok(out)
}

/// Narrow `all` to the named services or instances (`mail`, `mail-2`,
/// `<deployment>-mail-2`). An unknown name is a usage error.
pub fn select(all: Vec<DataInstance>, wanted: &[String]) -> Result<Vec<DataInstance>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    for w in wanted {
        let known = all.iter().any(|i| matches(i, w));
        if !known {
            let mut services: Vec<&str> = all.iter().map(|i| i.service.as_str()).collect();
            services.dedup();
            return Err(Error::Usage(format!(
                "no volumes of service or instance {w:?} in deployment {} (services with volumes: {})",
                all.first().map(|i| i.deployment.as_str()).unwrap_or("?"),
                if services.is_empty() {
                    "none".to_string()
                } else {
                    services.join(", ")
                }
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|i| wanted.iter().any(|w| matches(i, w)))
        .collect())
}

fn matches(i: &DataInstance, w: &str) -> bool {
    i.service == w
        || i.container == w
        || format!("{}-{}", i.service, i.index) == w
        || i.container == format!("{}-{w}", i.deployment)
}

/// How an instance was stopped, so it is started again the same way.
#[derive(Debug)]
pub enum Stopped {
    /// It was not running; leave it so.
    NotRunning,
    /// Never applied by berth here (no revision, so no integration known):
    /// stopped through the engine.
    Engine { container: String },
    /// Stopped as `berth stop` does it, through the integration the applied
    /// revision names: systemd units are stopped with `systemctl` (stopping
    /// the container alone would make systemd start a fresh one in the middle
    /// of the copy), a running `berth up` is told through the operator's stop
    /// marker, Docker-policy containers through the engine. The marker also
    /// keeps a concurrent `apply` from starting the instance meanwhile; should
    /// berth die before starting it again, it stays stopped like after
    /// `berth stop` until `berth start`.
    Ops {
        target: Box<crate::ops::select::Selected>,
        instance: crate::deployment::InstanceRef,
    },
    /// A swarm service scaled to 0: scaled back to `replicas`. Should berth
    /// die meanwhile, the next `berth apply` scales it back (its plan shows
    /// the live replicas against the file's).
    Swarm { service: String, replicas: u64 },
}

/// Stop an instance for a consistent copy, the way its integration expects.
pub async fn stop(engine: &Engine, state: &StateDir, inst: &DataInstance) -> Result<Stopped> {
    use crate::ops::control::run;
    use crate::target::Control;
    if !inst.running {
        return Ok(Stopped::NotRunning);
    }
    let Some(rev) = state.read_current(&inst.deployment)? else {
        engine
            .stop_container(&inst.container, inst.stop_timeout)
            .await?;
        return Ok(Stopped::Engine {
            container: inst.container.clone(),
        });
    };
    let target = crate::ops::select::Selected {
        deployment: rev.deployment,
        integration: crate::instance::Integration::parse(&rev.integration),
    };
    let instance = crate::deployment::InstanceRef {
        deployment: inst.deployment.clone(),
        service: inst.service.clone(),
        index: inst.index,
        container: inst.container.clone(),
    };
    run(
        engine,
        state,
        &target,
        std::slice::from_ref(&instance),
        Control::Stop,
    )
    .await?;
    // Whatever the integration did, the container must be down (or gone)
    // before its volumes are read.
    engine
        .stop_container(&inst.container, inst.stop_timeout)
        .await?;
    Ok(Stopped::Ops {
        target: Box::new(target),
        instance,
    })
}

/// Start an instance again the way [`stop`] stopped it.
pub async fn start(engine: &Engine, state: &StateDir, stopped: Stopped) -> Result<()> {
    use crate::ops::control::run;
    use crate::target::Control;
    match stopped {
        Stopped::NotRunning => Ok(()),
        Stopped::Engine { container } => engine.start_container(&container).await,
        Stopped::Swarm { service, .. } => Err(Error::Runtime(format!(
            "service {service} is held on a swarm, not on this host's engine"
        ))),
        Stopped::Ops { target, instance } => run(
            engine,
            state,
            &target,
            std::slice::from_ref(&instance),
            Control::Start,
        )
        .await
        .map(|_| ()),
    }
}

/// Which [`Site`] a command works on, for [`SiteRequest::open`].
#[derive(Debug, Clone)]
pub struct SiteRequest {
    /// `--target swarm`.
    pub swarm: bool,
    /// The nodes file (`--nodes`, else the state directory's).
    pub nodes: std::path::PathBuf,
}

impl SiteRequest {
    /// The site of `deployment`: its swarm when asked, or when its applied
    /// revision ran there (its nodes' engines reached through the nodes
    /// file); else `engine`'s host.
    pub async fn open(&self, engine: &Engine, state: &StateDir, deployment: &str) -> Result<Site> {
        let applied_on_swarm = state
            .read_current(deployment)?
            .is_some_and(|r| r.integration == crate::instance::Integration::Swarm.as_str());
        if !(self.swarm || applied_on_swarm) {
            return Ok(Site::Host(engine.clone()));
        }
        let file = crate::engine::nodes::NodesFile::load(&self.nodes)?;
        Ok(Site::Swarm(NodeEngines::new(engine, file).await?))
    }
}

/// Where a deployment's volumes are, and what stops its instances for a
/// copy: one host's engine, or a swarm's nodes (each service's volumes on
/// its pinned node). Backup, restore and snapshots take one and are
/// otherwise the same code.
#[derive(Debug, Clone)]
pub enum Site {
    Host(Engine),
    Swarm(NodeEngines),
}

impl Site {
    /// For messages: "this engine" or "the swarm".
    pub fn describe(&self) -> &'static str {
        match self {
            Site::Host(_) => "this engine",
            Site::Swarm(_) => "the swarm",
        }
    }

    /// Every instance of `deployment` with volumes here ([`discover`] on a
    /// host; on a swarm, every service of the deployment whose live spec
    /// mounts named volumes).
    pub async fn discover(&self, state: &StateDir, deployment: &str) -> Result<Vec<DataInstance>> {
        match self {
            Site::Host(engine) => discover(engine, state, deployment).await,
            Site::Swarm(nodes) => discover_swarm(nodes, deployment).await,
        }
    }

    /// The engine holding `inst`'s volumes. A swarm service whose volumes no
    /// node holds yet is refused unless `pin`, which pins it first as an
    /// apply does ([`crate::target::swarm::converge::ensure_pin`]).
    pub async fn engine(&self, inst: &DataInstance, pin: bool) -> Result<Engine> {
        let nodes = match self {
            Site::Host(e) => return Ok(e.clone()),
            Site::Swarm(nodes) => nodes,
        };
        let Some(place) = &inst.swarm else {
            return Ok(nodes.manager().clone());
        };
        let node = match &place.node {
            Some(n) => n.clone(),
            None if pin => {
                crate::target::swarm::converge::ensure_pin(
                    nodes.manager(),
                    &inst.service,
                    &place.pin,
                    &place.placement,
                    &crate::target::quiet(),
                )
                .await?;
                let now = nodes.manager().list_nodes().await?;
                now.into_iter()
                    .find(|n| n.labels.contains_key(&place.pin))
                    .map(|n| n.id)
                    .ok_or_else(|| {
                        Error::Runtime(format!(
                            "service {}: no node carries its pin label {} after pinning it",
                            place.service, place.pin
                        ))
                    })?
            }
            None => {
                return Err(Error::Usage(format!(
                    "service {} has volumes but no swarm node holds them (no node carries its label {}); `berth apply --target swarm` pins it",
                    place.service, place.pin
                )));
            }
        };
        nodes.engine(&node).await
    }

    /// Stop `inst` for a consistent copy: the way its integration expects on
    /// a host ([`stop`]); on a swarm its service is scaled to 0 and waited
    /// for until no task runs, whatever its replicas (tasks of a service
    /// scaled down may still be stopping).
    pub async fn stop(&self, state: &StateDir, inst: &DataInstance) -> Result<Stopped> {
        match (self, &inst.swarm) {
            (Site::Swarm(nodes), Some(place)) => {
                let replicas = crate::target::swarm::data::hold(
                    nodes.manager(),
                    &place.service,
                    inst.stop_timeout,
                )
                .await?;
                Ok(Stopped::Swarm {
                    service: place.service.clone(),
                    replicas,
                })
            }
            (Site::Host(engine), _) => stop(engine, state, inst).await,
            (Site::Swarm(nodes), None) => stop(nodes.manager(), state, inst).await,
        }
    }

    /// Start an instance again the way [`Site::stop`] stopped it.
    pub async fn start(&self, state: &StateDir, stopped: Stopped) -> Result<()> {
        match (self, stopped) {
            (Site::Swarm(nodes), Stopped::Swarm { service, replicas }) => {
                crate::target::swarm::data::release(nodes.manager(), &service, replicas).await
            }
            (Site::Host(engine), s) => start(engine, state, s).await,
            (Site::Swarm(nodes), s) => start(nodes.manager(), state, s).await,
        }
    }
}

/// The services of `deployment` on the swarm whose live spec mounts named
/// volumes, each as instance 1 named as on a host (`<deployment>-<service>`,
/// its volumes too), so that a backup taken on either restores on the other.
async fn discover_swarm(nodes: &NodeEngines, deployment: &str) -> Result<Vec<DataInstance>> {
    let mut out = Vec::new();
    for live in nodes.manager().list_services(deployment).await? {
        let Some(service) = live.labels.get(names::LABEL_SERVICE) else {
            continue;
        };
        let Some(data) =
            crate::target::swarm::data::service_data(nodes, deployment, service).await?
        else {
            continue;
        };
        if data.volumes.is_empty() {
            continue;
        }
        let labels = instance_labels(deployment, service, 1);
        out.push(DataInstance {
            deployment: deployment.to_string(),
            service: service.clone(),
            index: 1,
            container: names::container_name(deployment, service, 1, 1),
            container_id: None,
            running: true,
            image: Some(data.spec.image_ref()),
            image_id: None,
            stop_timeout: data.spec.stop_timeout,
            volumes: data
                .volumes
                .iter()
                .map(|v| DataVolume {
                    name: v.name.clone(),
                    mount_path: Some(v.path.clone()),
                    from_image: v.from_image,
                    labels: labels.clone(),
                })
                .collect(),
            swarm: Some(SwarmPlace {
                service: data.swarm_name.clone(),
                node: data.node.as_ref().map(|n| n.id.clone()),
                pin: crate::instance::swarm::pin_label(deployment, service),
                placement: data.spec.placement.clone(),
            }),
        });
    }
    out.sort_by(|a, b| a.container.cmp(&b.container));
    Ok(out)
}
