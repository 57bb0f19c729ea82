//! The Docker Swarm target: the engine berth talks to (`DOCKER_HOST`) is a
//! swarm manager, and each berth service becomes one Swarm service
//! ([`SwarmSpec`], `count` replicas) on one attachable overlay network per
//! deployment. The apply workflow is the host's (lock, desired, plan,
//! converge, revision); this target plans against the live services
//! ([`plan`]) and carries the plan out ([`converge`]): removed services
//! first, then the rest in link order, each level waited for until its
//! tasks run (healthy, where there is a check) before the services linking
//! to it; a failed update is rolled back by Swarm and reported.
//!
//! How services are reached by name (`endpoint_mode`, `vip` by default, or
//! `dnsrr`) and how their tasks are rolled over (`update_config`) are part
//! of each service's spec, so a plan shows their changes. A plan refuses a
//! placement of host-mode ports the swarm's nodes cannot hold
//! ([`plan::check_placement`]).
//!
//! Image tags are resolved to digests when planning ([`resolve_images`]):
//! each service runs `image:tag@sha256:...`, so an apply after a push to
//! the same tag rolls the services using it, and one with nothing new is a
//! no-op. Configs and secrets are Swarm configs and secrets named after
//! their content: a change is a new object, which rolls the services using
//! it; objects nothing uses any more are removed once the apply converged.
//! What the deployment grants over SSH is published the same way, for the
//! gateway on every node ([`access`]).

pub mod access;
pub mod converge;
pub mod data;
pub mod ops;
pub mod plan;
pub mod relocate;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::deployment::{Deployment, InstanceRef};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{InstanceSpec, Integration, SwarmSpec};
use crate::names;
use crate::plan::{Plan, Supervision};
use crate::state::StateDir;
use crate::target::{Control, Step, Target};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Swarm {
    /// The image digests the last plan chose, by Swarm service (`None`: the
    /// tag as the nodes have it): what the apply that planned deploys, even
    /// when the tag moves meanwhile.
    digests: Mutex<BTreeMap<String, Option<String>>>,
    /// Services scaled to 0 for a snapshot before their upgrade, with the
    /// replicas they had: given back if the apply fails (the update gives
    /// them the file's replicas when it succeeds).
    held: Mutex<BTreeMap<String, u64>>,
    /// The nodes file (`None`: the state directory's).
    nodes: Option<std::path::PathBuf>,
}

/// How long the registry may take to name one image's digest.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A reference written with its digest (`repo:tag@sha256:...`, as a
/// rollback pins one) is that tag at that digest: the same spec as an apply
/// that resolved the tag to it (so the recorded spec, and the next plan,
/// read the same whichever way it was given).
fn split_written_digests(desired: &mut BTreeMap<String, SwarmSpec>) {
    for spec in desired.values_mut() {
        if spec.image_digest.is_none()
            && let Some((image, digest)) = spec.image.rsplit_once('@')
            && digest.starts_with("sha256:")
            && !image.is_empty()
        {
            spec.image_digest = Some(digest.to_string());
            spec.image = image.to_string();
        }
    }
}

/// Resolve the image tag of every service in `desired` to the digest its
/// registry serves now, asking once per image (all at once) through the
/// manager's engine (distribution inspect). An image the registry cannot
/// be asked about keeps the digest its live service runs, if it runs the
/// same image, else its tag as today; each such image is one warning.
/// A digest `berth update` rolled a service back from (`bad`) is not taken
/// by that service: it keeps the digest it runs, with a warning.
/// Returns the digest each service runs (by Swarm service) and the warnings.
pub async fn resolve_images(
    engine: &Engine,
    desired: &mut BTreeMap<String, SwarmSpec>,
    observed: &plan::Observed,
    bad: &crate::state::BadDigests,
) -> (BTreeMap<String, Option<String>>, Vec<String>) {
    split_written_digests(desired);
    let images: std::collections::BTreeSet<String> = desired
        .values()
        .filter(|s| s.image_digest.is_none())
        // A digest, or an image ID (a rollback pins the one it ran), names
        // one image already.
        .filter(|s| !s.image.contains('@') && !s.image.starts_with("sha256:"))
        .map(|s| s.image.clone())
        .collect();
    let found: BTreeMap<String, std::result::Result<String, String>> =
        futures_util::future::join_all(images.into_iter().map(|image| async move {
            let r = match tokio::time::timeout(DIGEST_TIMEOUT, engine.registry_digest(&image)).await
            {
                Ok(Ok(d)) => Ok(d),
                // What the registry (or the way to it) said, without berth's
                // context (the warning gives its own).
                Ok(Err(Error::Engine {
                    source: bollard::errors::Error::DockerResponseServerError { message, .. },
                    ..
                })) => Err(message),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}s", DIGEST_TIMEOUT.as_secs())),
            };
            (image, r)
        }))
        .await
        .into_iter()
        .collect();
    let mut warnings = Vec::new();
    let mut kept_any: BTreeMap<String, bool> = BTreeMap::new();
    for spec in desired.values_mut() {
        // What the live service runs, if it runs this image.
        let live = observed
            .services
            .get(&spec.name)
            .and_then(|l| l.labels.get(names::LABEL_SWARM_SPEC))
            .and_then(|t| serde_json::from_str::<SwarmSpec>(t).ok())
            .filter(|r| r.image == spec.image)
            .and_then(|r| r.image_digest);
        match found.get(&spec.image) {
            Some(Ok(d))
                if bad.get(&spec.service).is_some_and(|b| b.contains(d))
                    && live.as_ref().is_some_and(|l| l != d) =>
            {
                warnings.push(format!(
                    "service {}: {} names {d}, which `berth update` rolled back from; it keeps running {} until the tag names another build",
                    spec.service,
                    spec.image,
                    live.as_deref().unwrap_or_default()
                ));
                spec.image_digest = live;
            }
            Some(Ok(d)) => spec.image_digest = Some(d.clone()),
            Some(Err(_)) => {
                *kept_any.entry(spec.image.clone()).or_default() |= live.is_some();
                spec.image_digest = live;
            }
            None => {}
        }
    }
    for (image, r) in &found {
        if let Err(e) = r {
            let what = if kept_any.get(image).copied().unwrap_or(false) {
                "services already running it keep the digest they run, new ones run the tag as each node has it"
            } else {
                "its services run the tag as each node has it, and a push to the same tag is not picked up"
            };
            warnings.push(format!(
                "image {image}: the registry could not be asked for the digest of its tag ({}); {what}",
                e.trim()
            ));
        }
    }
    let digests = desired
        .values()
        .map(|s| (s.name.clone(), s.image_digest.clone()))
        .collect();
    (digests, warnings)
}

impl Swarm {
    pub fn new() -> Self {
        Self::default()
    }

    /// A swarm target reaching the nodes' engines through `nodes` (`None`:
    /// the state directory's nodes file).
    pub fn with_nodes(nodes: Option<std::path::PathBuf>) -> Self {
        Self {
            nodes,
            ..Self::default()
        }
    }

    /// Scale every service [`Target::hold`] held back to its replicas
    /// (after a failed apply); a failure is only warned of (the next apply
    /// scales it back, its plan shows it at 0).
    async fn release_held(&self, engine: &Engine, report: &crate::target::Reporter) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        for (service, replicas) in held {
            match data::release(engine, &service, replicas).await {
                Ok(()) => report(format!(
                    "service {service}: scaled back to {replicas} (held for a snapshot; this apply failed)"
                )),
                Err(e) => report(format!("warning: {e}")),
            }
        }
    }

    /// One [`SwarmSpec`] per service of `deployment`, by service name, from
    /// each service's first instance.
    pub fn services(
        &self,
        deployment: &Deployment,
        specs: &[InstanceSpec],
    ) -> BTreeMap<String, SwarmSpec> {
        let mut out = BTreeMap::new();
        for svc in deployment.services.values() {
            if let Some(first) = specs.iter().find(|s| s.service == svc.name) {
                out.insert(svc.name.clone(), SwarmSpec::from_instance(first, svc));
            }
        }
        out
    }
}

fn not_yet(what: &str) -> Error {
    Error::Usage(format!("{what} is not available on a swarm yet"))
}

#[async_trait::async_trait]
impl Target for Swarm {
    fn integration(&self) -> Integration {
        Integration::Swarm
    }

    /// What this slice of the swarm target cannot run yet is refused
    /// before anything is touched.
    fn check(&self, deployment: &Deployment) -> Result<()> {
        // Nothing on a swarm would run the schedule; silently never
        // updating would be worse than saying so.
        if let Some(first) = deployment.auto_update_services().first() {
            return Err(Error::Usage(format!(
                "service {first}: auto_update is not available on a swarm yet (run `berth apply --target swarm` after pushing a new image: apply resolves tags to digests)"
            )));
        }
        for svc in deployment.services.values() {
            let refuse = |what: &str| {
                Err(Error::Usage(format!(
                    "service {}: {what} is not available on a swarm yet",
                    svc.name
                )))
            };
            if svc.settings.privileged {
                return refuse("privileged (Swarm services cannot be privileged)");
            }
            if svc.settings.tmpfs.iter().any(|t| t.contains(':')) {
                return refuse("tmpfs options");
            }
            if svc.settings.shm_size.is_some() {
                return refuse("shm_size (a Swarm task spec has no /dev/shm size)");
            }
            if !svc.settings.devices.is_empty() {
                return refuse("devices (a Swarm task spec maps no host devices)");
            }
            // A Swarm port config has no address: the port would be
            // published on every address of the node.
            if let Some(p) = svc.ports.iter().find(|p| p.host_ip.is_some()) {
                return Err(Error::Usage(format!(
                    "service {}: port {}:{}:{}: a swarm publishes a port on every address of the node it runs on, not on one; remove the address (or use --target host)",
                    svc.name,
                    p.host_ip.as_deref().unwrap_or_default(),
                    p.host_port.map(|h| h.to_string()).unwrap_or_default(),
                    p.container_port
                )));
            }
            if let Some(h) = svc
                .settings
                .extra_hosts
                .iter()
                .find(|h| h.ends_with(":host-gateway"))
            {
                return Err(Error::Usage(format!(
                    "service {}: extra_hosts entry {h:?}: host-gateway is the address of one host's engine, which a swarm task does not have; write the address (\"host:10.0.0.5\")",
                    svc.name
                )));
            }
            // Volumes are a node's own: replicas on one node would share
            // them, replicas elsewhere would find them empty.
            let named = |v: &crate::deployment::VolumeMount| {
                matches!(v.source, crate::deployment::VolumeSource::Named(_))
            };
            if svc.count > 1 && svc.volumes.iter().any(named) {
                return refuse("count > 1 with named volumes (each volume lives on one node)");
            }
        }
        Ok(())
    }

    fn unit_dir(&self) -> Option<&std::path::Path> {
        None
    }

    async fn plan(
        &self,
        engine: &Engine,
        state: &StateDir,
        deployment: &Deployment,
        specs: &[InstanceSpec],
        missing_images: &[String],
        _supervision: &Supervision,
    ) -> Result<Plan> {
        engine.require_manager().await?;
        let mut desired = self.services(deployment, specs);
        let nodes = engine.list_nodes().await?;
        plan::check_placement(&desired, &nodes)?;
        let observed = plan::observe(engine, deployment, &desired).await?;
        let bad = state.read_bad_digests(&deployment.name)?;
        let (digests, warnings) = resolve_images(engine, &mut desired, &observed, &bad).await;
        *self.digests.lock().unwrap_or_else(|p| p.into_inner()) = digests;
        let mut plan = plan::diff(deployment, &desired, &observed, missing_images)?;
        plan.warnings = warnings;
        plan.image_digests = desired
            .values()
            .filter_map(|s| s.image_digest.clone().map(|d| (s.service.clone(), d)))
            .collect();
        Ok(plan)
    }

    /// Tags whose registry digest is not the one the manager's copy came
    /// from: the services will run the registry's, so what the image
    /// declares (its `VOLUME`s, health check) is read from that. Images
    /// whose registry cannot be asked are left as they are (the plan warns).
    async fn images_to_refresh(&self, engine: &Engine, references: &[String]) -> Vec<String> {
        let tags: std::collections::BTreeSet<&String> = references
            .iter()
            .filter(|r| !r.contains('@') && !r.starts_with("sha256:"))
            .collect();
        let stale = futures_util::future::join_all(tags.into_iter().map(|r| async move {
            let Ok(Some(local)) = engine.image_info(r).await else {
                return None;
            };
            let (repo, _) = crate::engine::images::split_reference(r);
            let have = engine
                .repo_digests(&local.id, &repo)
                .await
                .unwrap_or_default();
            match tokio::time::timeout(DIGEST_TIMEOUT, engine.registry_digest(r)).await {
                Ok(Ok(d)) if !have.contains(&d) => Some(r.clone()),
                _ => None,
            }
        }))
        .await;
        stale.into_iter().flatten().collect()
    }

    async fn ensure_network(&self, engine: &Engine, deployment: &Deployment) -> Result<String> {
        engine.ensure_network_of(&deployment.name, true).await
    }

    async fn converge(&self, step: &Step<'_>) -> Result<Vec<String>> {
        let mut desired = self.services(step.deployment, step.specs);
        // The digests the plan showed; resolved now if it did not run.
        let digests = self
            .digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if desired.values().all(|s| digests.contains_key(&s.name)) {
            split_written_digests(&mut desired);
            for s in desired.values_mut() {
                s.image_digest = digests.get(&s.name).cloned().flatten();
            }
        } else {
            let observed = plan::observe(step.engine, step.deployment, &desired).await?;
            let bad = step.state.read_bad_digests(&step.deployment.name)?;
            let (_, warnings) = resolve_images(step.engine, &mut desired, &observed, &bad).await;
            for w in warnings {
                (step.report)(format!("warning: {w}"));
            }
        }
        match converge::converge(step, &desired).await {
            Ok(()) => {
                // The updates gave the held services the file's replicas.
                self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
                Ok(Vec::new())
            }
            Err(e) => {
                self.release_held(step.engine, step.report).await;
                Err(e)
            }
        }
    }

    /// Scale the service to 0 and wait until no task of it runs (a snapshot
    /// of its volumes follows, on its node).
    async fn hold(&self, engine: &Engine, container: &str) -> Result<()> {
        let stop_timeout = engine
            .service(container)
            .await?
            .and_then(|s| s.labels.get(names::LABEL_SWARM_SPEC).cloned())
            .and_then(|t| serde_json::from_str::<SwarmSpec>(&t).ok())
            .map(|s| s.stop_timeout)
            .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT);
        let replicas = data::hold(engine, container, stop_timeout).await?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(container.to_string())
            .or_insert(replicas);
        Ok(())
    }

    async fn release(&self, engine: &Engine, container: &str) -> Result<()> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
        match held {
            Some(replicas) => data::release(engine, container, replicas).await,
            None => Ok(()),
        }
    }

    /// The live service's recorded image (with its digest) against the one
    /// this plan deploys.
    async fn image_changed(
        &self,
        engine: &Engine,
        deployment: &Deployment,
        item: &crate::plan::InstancePlan,
    ) -> Result<bool> {
        if item.action != crate::plan::Action::Recreate {
            return Ok(false);
        }
        let Some(svc) = deployment.services.get(&item.service) else {
            return Ok(false);
        };
        let Some(recorded) = engine
            .service(&item.container)
            .await?
            .and_then(|s| s.labels.get(names::LABEL_SWARM_SPEC).cloned())
            .and_then(|t| serde_json::from_str::<SwarmSpec>(&t).ok())
        else {
            return Ok(false);
        };
        let digest = self
            .digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&item.container)
            .cloned()
            .flatten();
        let wanted = match digest {
            Some(d) if !svc.image.contains('@') => format!("{}@{d}", svc.image),
            _ => svc.image.clone(),
        };
        Ok(recorded.image_ref() != wanted)
    }

    /// Each service's volumes are on its pinned node, reached through the
    /// nodes file.
    async fn data_site(
        &self,
        engine: &Engine,
        state: &StateDir,
    ) -> Result<crate::data::instances::Site> {
        let path = self.nodes.clone().unwrap_or_else(|| state.nodes_file());
        let file = crate::engine::nodes::NodesFile::load(&path)?;
        Ok(crate::data::instances::Site::Swarm(
            crate::engine::nodes::NodeEngines::new(engine, file).await?,
        ))
    }

    async fn control(
        &self,
        _engine: &Engine,
        _state: &StateDir,
        _deployment: &Deployment,
        _instances: &[InstanceRef],
        _action: Control,
        _was_stopped: &[bool],
    ) -> Result<Vec<String>> {
        Err(not_yet("start, stop and restart"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::deployment::{ContainerSettings, Logging, RestartPolicy, Ulimit};

    /// Container settings the Swarm service spec carries.
    const MAPPED: &[&str] = &[
        "user",
        "workdir",
        "hostname",
        "memory",
        "cpus",
        "read_only",
        "tmpfs",
        "cap_add",
        "cap_drop",
        "stop_signal",
        "ulimits",
        "sysctls",
        "extra_hosts",
        "dns",
        "init",
        "logging",
    ];
    /// Container settings `check` refuses on a swarm.
    const REFUSED: &[&str] = &["privileged", "shm_size", "devices"];

    /// Every setting set, each away from its default. A struct literal
    /// without `..Default::default()`: a new setting does not compile here
    /// until it is listed as mapped or refused above.
    fn every_setting() -> ContainerSettings {
        ContainerSettings {
            user: Some("7:8".into()),
            workdir: Some("/srv".into()),
            hostname: Some("h".into()),
            memory: Some(64 << 20),
            cpus: Some(0.5),
            read_only: true,
            tmpfs: vec!["/run".into()],
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            privileged: true,
            stop_signal: Some("SIGINT".into()),
            ulimits: BTreeMap::from([("nofile".into(), Ulimit { soft: 10, hard: 20 })]),
            shm_size: Some(1 << 20),
            sysctls: BTreeMap::from([("net.core.somaxconn".into(), "64".into())]),
            extra_hosts: vec!["db:10.0.0.2".into()],
            dns: vec!["10.0.0.53".into()],
            init: Some(true),
            logging: Some(Logging {
                driver: "local".into(),
                options: BTreeMap::new(),
            }),
            devices: vec!["/dev/null:/dev/x:rwm".into()],
        }
    }

    /// `settings` with only `key` of [`every_setting`].
    fn only(key: &str) -> ContainerSettings {
        let all = serde_json::to_value(every_setting()).unwrap_or_default();
        let mut one = serde_json::Map::new();
        if let Some(v) = all.get(key) {
            one.insert(key.to_string(), v.clone());
        }
        serde_json::from_value(serde_json::Value::Object(one))
            .unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    fn swarm_spec(settings: ContainerSettings) -> SwarmSpec {
        SwarmSpec {
            deployment: "d".into(),
            service: "s".into(),
            name: "d-s".into(),
            image: "busybox".into(),
            image_digest: None,
            replicas: 1,
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            network: "d".into(),
            aliases: Vec::new(),
            endpoint_mode: crate::instance::EndpointMode::Vip,
            update: Default::default(),
            restart: RestartPolicy::Always,
            settings,
            stop_timeout: 10,
            health: None,
            pinned_by: None,
            placement: Vec::new(),
            files: Vec::new(),
            contents: Default::default(),
        }
    }

    /// The task template of the service spec, without berth's labels (which
    /// record the whole spec, and so differ whatever the mapping does).
    fn task_template(settings: ContainerSettings) -> serde_json::Value {
        let spec =
            crate::engine::services::service_spec(&swarm_spec(settings), 1, &Default::default())
                .unwrap_or_else(|e| panic!("{e}"));
        let mut t = serde_json::to_value(spec.task_template).unwrap_or_default();
        if let Some(c) = t.get_mut("ContainerSpec").and_then(|c| c.as_object_mut()) {
            c.remove("Labels");
        }
        t
    }

    fn deployment_with(settings: ContainerSettings) -> Deployment {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "name = \"d\"\n[services.s]\nimage = \"busybox\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut d = crate::deployment::load(&crate::deployment::LoadOptions {
            file,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        if let Some(s) = d.services.get_mut("s") {
            s.settings = settings;
        }
        d
    }

    #[test]
    fn files_are_referenced_by_id_with_owner_and_mode_and_the_image_by_digest() {
        use crate::deployment::FileKind;
        use crate::instance::swarm::SwarmFile;
        let mut spec = swarm_spec(ContainerSettings::default());
        spec.image_digest = Some("sha256:abc".into());
        for (kind, name, target) in [
            (FileKind::Config, "conf", "/etc/app.conf"),
            (FileKind::Secret, "pw", "/run/secrets/pw"),
        ] {
            spec.files.push(SwarmFile {
                kind,
                name: name.into(),
                object: format!("d_{name}_0123"),
                target: target.into(),
                uid: 7,
                gid: 8,
                mode: 0o440,
                digest: String::new(),
                reload: None,
            });
        }
        let none = crate::engine::services::service_spec(&spec, 1, &Default::default());
        assert!(
            none.err()
                .is_some_and(|e| e.to_string().contains("d_conf_0123")),
            "a spec without the config's ID"
        );
        let ids = BTreeMap::from([
            (
                (FileKind::Config, "d_conf_0123".to_string()),
                "cid".to_string(),
            ),
            (
                (FileKind::Secret, "d_pw_0123".to_string()),
                "sid".to_string(),
            ),
        ]);
        let made =
            crate::engine::services::service_spec(&spec, 1, &ids).unwrap_or_else(|e| panic!("{e}"));
        let c = serde_json::to_value(made.task_template.and_then(|t| t.container_spec))
            .unwrap_or_default();
        assert_eq!(c["Image"], "busybox@sha256:abc");
        let file =
            serde_json::json!({"Name": "/etc/app.conf", "UID": "7", "GID": "8", "Mode": 0o440});
        assert_eq!(c["Configs"][0]["File"], file);
        assert_eq!(c["Configs"][0]["ConfigID"], "cid");
        assert_eq!(c["Configs"][0]["ConfigName"], "d_conf_0123");
        assert_eq!(c["Secrets"][0]["File"]["Name"], "/run/secrets/pw");
        assert_eq!(c["Secrets"][0]["SecretID"], "sid");
    }

    #[test]
    fn every_container_setting_is_mapped_or_refused_on_a_swarm() {
        let all = serde_json::to_value(every_setting()).unwrap_or_default();
        let keys: Vec<&str> = all
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut listed: Vec<&str> = MAPPED.iter().chain(REFUSED).copied().collect();
        listed.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, listed, "settings vs the lists above");

        let swarm = Swarm::new();
        let plain = task_template(ContainerSettings::default());
        for key in MAPPED {
            assert!(
                swarm.check(&deployment_with(only(key))).is_ok(),
                "{key} is refused"
            );
            assert_ne!(
                task_template(only(key)),
                plain,
                "{key} does not reach the Swarm service spec"
            );
        }
        for key in REFUSED {
            let err = swarm
                .check(&deployment_with(only(key)))
                .err()
                .unwrap_or_else(|| panic!("{key} is not refused"));
            assert!(err.to_string().contains("service s"), "{err}");
        }
    }

    #[test]
    fn the_update_config_reaches_the_service_spec_and_host_gateway_is_refused() {
        let mut spec = swarm_spec(ContainerSettings::default());
        spec.update = crate::instance::SwarmUpdate::resolve(
            Some(&crate::deployment::UpdateConfig {
                delay_ms: Some(1500),
                parallelism: Some(2),
                ..Default::default()
            }),
            false,
            false,
        );
        let s = crate::engine::services::service_spec(&spec, 1, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let u = serde_json::to_value(s.update_config).unwrap_or_default();
        assert_eq!(u["Order"], "start-first", "{u}");
        assert_eq!(u["Parallelism"], 2, "{u}");
        assert_eq!(u["Delay"], 1_500_000_000i64, "{u}");
        assert_eq!(u["FailureAction"], "rollback", "{u}");
        let r = serde_json::to_value(s.rollback_config).unwrap_or_default();
        assert_eq!(r["Order"], "start-first", "{r}");

        let gw = ContainerSettings {
            extra_hosts: vec!["gw:host-gateway".into()],
            ..Default::default()
        };
        let err = Swarm::new()
            .check(&deployment_with(gw))
            .err()
            .unwrap_or_else(|| panic!("host-gateway accepted"));
        assert!(err.to_string().contains("host-gateway"), "{err}");
        assert_eq!(err.exit_code(), 2);

        let mut d = deployment_with(ContainerSettings::default());
        if let Some(s) = d.services.get_mut("s") {
            s.ports = vec![crate::deployment::PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8080),
                container_port: 80,
                protocol: Default::default(),
            }];
        }
        let err = Swarm::new()
            .check(&d)
            .err()
            .unwrap_or_else(|| panic!("a port address accepted"));
        assert!(err.to_string().contains("port 127.0.0.1:8080:80"), "{err}");
    }

    #[test]
    fn auto_update_is_refused_on_a_swarm() {
        let mut d = deployment_with(ContainerSettings::default());
        Swarm::new()
            .check(&d)
            .unwrap_or_else(|e| panic!("plain deployment refused: {e}"));
        if let Some(s) = d.services.get_mut("s") {
            s.auto_update = Some(true);
        }
        let err = Swarm::new()
            .check(&d)
            .err()
            .unwrap_or_else(|| panic!("auto_update accepted"));
        assert!(err.to_string().contains("service s: auto_update"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
