//! From the deployment (and what the engine knows of its images) to the
//! instance specs: volumes, aliases, link variables, restart policies.

use std::collections::BTreeMap;

use crate::deployment::{Deployment, InstanceRef, Protocol, VolumeSource};
use crate::names;

use super::links::link_variables;
use super::{DigestKey, ImageInfo, InstanceSpec, Integration, MountSource, MountSpec};

/// The prefix of an instance's volume names: [`names::volume_prefix`].
pub fn volume_owner(deployment: &str, service: &str, index: u32) -> String {
    names::volume_prefix(deployment, service, index)
}

/// Resolve every instance of a deployment into its spec.
///
/// `images` maps image references to what the engine knows about them; an
/// image missing from it (not pulled yet, for `plan`) gives an empty
/// `image_id` and no image-declared volumes or ports.
pub fn resolve(
    deployment: &Deployment,
    images: &BTreeMap<String, ImageInfo>,
    integration: Integration,
) -> Vec<InstanceSpec> {
    match DigestKey::ephemeral() {
        Ok(key) => resolve_keyed(deployment, images, integration, &key),
        // No randomness: secrets' digests only need to differ from a
        // plain hash, which a fixed key still gives.
        Err(_) => resolve_keyed(deployment, images, integration, &DigestKey::fixed()),
    }
}

/// [`resolve`] with the key secrets' digests are made with: the state
/// directory's ([`DigestKey::for_state`]) wherever specs are compared with
/// what the host runs.
pub fn resolve_keyed(
    deployment: &Deployment,
    images: &BTreeMap<String, ImageInfo>,
    integration: Integration,
    key: &DigestKey,
) -> Vec<InstanceSpec> {
    let network = names::network_name(&deployment.name);
    // Extra aliases a service is reached by: the aliases links give it.
    let mut link_aliases: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for svc in deployment.services.values() {
        for link in &svc.links {
            if link.alias != link.target {
                link_aliases
                    .entry(link.target.as_str())
                    .or_default()
                    .push(link.alias.clone());
            }
        }
    }
    let mut out = Vec::new();
    for svc in deployment.services.values() {
        let image = images.get(&svc.image);
        let (files, contents) = super::files::resolve_files(deployment, svc, key);
        let mut env = BTreeMap::new();
        for inst in deployment.service_instances(svc) {
            env.clear();
            for link in &svc.links {
                let Some(target) = deployment.services.get(&link.target) else {
                    continue;
                };
                let mut ports: Vec<(u16, Protocol)> = images
                    .get(&target.image)
                    .map(|i| i.exposed_ports.clone())
                    .unwrap_or_default();
                ports.extend(target.ports.iter().map(|p| (p.container_port, p.protocol)));
                env.extend(link_variables(
                    &inst.container,
                    &link.alias,
                    &target.name,
                    &ports,
                ));
            }
            // The file's env wins over link variables of the same name.
            env.extend(svc.env.clone());
            out.push(instance_spec(
                deployment,
                &inst,
                image,
                &network,
                env.clone(),
                link_aliases.get(svc.name.as_str()),
                integration,
            ));
            if let Some(spec) = out.last_mut() {
                (spec.files, spec.contents) = (files.clone(), contents.clone());
            }
        }
    }
    out
}

fn instance_spec(
    deployment: &Deployment,
    inst: &InstanceRef,
    image: Option<&ImageInfo>,
    network: &str,
    env: BTreeMap<String, String>,
    extra_aliases: Option<&Vec<String>>,
    integration: Integration,
) -> InstanceSpec {
    // `instance_spec` is only called for instances of services in the deployment.
    let svc = &deployment.services[&inst.service];
    let owner = volume_owner(&deployment.name, &svc.name, inst.index);
    let mut mounts: Vec<MountSpec> = svc
        .volumes
        .iter()
        .map(|v| MountSpec {
            target: v.target.clone(),
            source: match &v.source {
                VolumeSource::Named(n) => MountSource::Volume {
                    name: names::volume_name(&owner, n),
                    from_image: false,
                },
                VolumeSource::Bind(p) => MountSource::Bind { path: p.clone() },
            },
            read_only: v.read_only,
        })
        .collect();
    if let Some(image) = image {
        for path in &image.volumes {
            let norm = path.trim_end_matches('/');
            if mounts
                .iter()
                .any(|m| m.target.trim_end_matches('/') == norm)
            {
                continue;
            }
            mounts.push(MountSpec {
                target: path.clone(),
                source: MountSource::Volume {
                    name: names::image_volume_name(&owner, path),
                    from_image: true,
                },
                read_only: false,
            });
        }
    }
    let mut aliases = vec![svc.name.clone()];
    if svc.count > 1 {
        aliases.push(inst.container.clone());
    }
    if let Some(extra) = extra_aliases {
        for a in extra {
            if !aliases.contains(a) {
                aliases.push(a.clone());
            }
        }
    }
    InstanceSpec {
        deployment: deployment.name.clone(),
        service: svc.name.clone(),
        index: inst.index,
        container: inst.container.clone(),
        image: svc.image.clone(),
        image_id: image.map(|i| i.id.clone()).unwrap_or_default(),
        command: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env,
        ports: svc.ports.clone(),
        mounts,
        network: network.to_string(),
        aliases,
        labels: svc.labels.clone(),
        restart: svc.restart,
        docker_restart: integration.docker_restart(svc.restart).to_string(),
        settings: svc.settings.clone(),
        stop_timeout: svc.stop_timeout_secs(),
        health: svc.health.clone(),
        files: Vec::new(),
        contents: Default::default(),
    }
}
