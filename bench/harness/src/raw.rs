//! The floor for berth's cold-apply benchmark: create the same objects berth
//! creates for N independent services (a user-defined bridge network; per
//! service a named volume and a container with that volume, a published port
//! and a network alias) and start them, all in parallel, straight through the
//! engine API. No planning, no state, no checks: nothing berth does can be
//! faster than this on the same engine.
//!
//! ```text
//! berth-bench raw up   PREFIX IMAGE N BASE_PORT
//! berth-bench raw down PREFIX N
//! ```

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::future::join_all;

/// `raw up PREFIX IMAGE N BASE_PORT` or `raw down PREFIX N`.
pub async fn run(docker: &Docker, args: &[String]) -> Result<(), String> {
    let num = |i: usize| -> Result<u32, String> {
        args.get(i)
            .ok_or("missing argument")?
            .parse::<u32>()
            .map_err(|e| e.to_string())
    };
    match args.first().map(String::as_str) {
        Some("up") => {
            let prefix = args.get(1).ok_or("missing PREFIX")?;
            let image = args.get(2).ok_or("missing IMAGE")?;
            let n = num(3)?;
            let base = num(4)?;
            docker
                .create_network(NetworkCreateRequest {
                    name: prefix.to_string(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([(
                        "berth.bench".to_string(),
                        prefix.to_string(),
                    )])),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let results =
                join_all((1..=n).map(|i| up_one(docker, prefix, image, i, base + i))).await;
            results.into_iter().collect::<Result<Vec<_>, _>>()?;
            Ok(())
        }
        Some("down") => {
            let prefix = args.get(1).ok_or("missing PREFIX")?;
            let n = num(2)?;
            let results = join_all((1..=n).map(|i| down_one(docker, prefix, i))).await;
            results.into_iter().collect::<Result<Vec<_>, _>>()?;
            let _ = docker.remove_network(prefix).await;
            Ok(())
        }
        _ => Err("usage: berth-bench raw up PREFIX IMAGE N BASE_PORT | raw down PREFIX N".into()),
    }
}

async fn up_one(
    docker: &Docker,
    prefix: &str,
    image: &str,
    i: u32,
    port: u32,
) -> Result<(), String> {
    let name = format!("{prefix}-s{i}");
    let labels = HashMap::from([("berth.bench".to_string(), prefix.to_string())]);
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(format!("{name}-data")),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let bindings = HashMap::from([(
        "80/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: None,
            host_port: Some(port.to_string()),
        }]),
    )]);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["sleep".into(), "1000000".into()]),
        labels: Some(labels),
        exposed_ports: Some(vec!["80/tcp".to_string()]),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{name}-data:/data")]),
            port_bindings: Some(bindings),
            network_mode: Some(prefix.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                prefix.to_string(),
                EndpointSettings {
                    aliases: Some(vec![format!("s{i}")]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| e.to_string())?;
    docker
        .start_container(&name, None)
        .await
        .map_err(|e| e.to_string())
}

async fn down_one(docker: &Docker, prefix: &str, i: u32) -> Result<(), String> {
    let name = format!("{prefix}-s{i}");
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    let _ = docker
        .remove_volume(
            &format!("{name}-data"),
            Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
        )
        .await;
    Ok(())
}
