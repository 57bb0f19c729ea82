//! Compose files in: a Compose file deploys as it is, and reads the same
//! as docker-compose (v1, a peer here) reads it.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The body of `GET /` on 127.0.0.1:port, if it answers.
fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn health(container: &str) -> Option<String> {
    inspect("container", container)?["State"]["Health"]["Status"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_compose_file_applies_plans_clean_and_reads_as_docker_compose_reads_it() {
    let name = unique_name("compose");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    let port = free_port();
    // Written the way projects write them: an anchor, an extension key,
    // both port syntaxes, a named volume, depends_on with a condition,
    // interpolation with a default and from `.env`.
    ws.write(
        ".env",
        &format!("WEB_PORT={port}\nGREETING=hello from env\n"),
    );
    ws.write(
        "compose.yaml",
        &format!(
            r#"x-base: &base
  image: {image}
  restart: unless-stopped
  stop_grace_period: 1s

services:
  db:
    <<: *base
    command: ["sh", "-c", "echo ready > /data/ready; exec sleep 3600"]
    volumes:
      - dbdata:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/data/ready"]
      interval: 1s
      retries: 30
  web:
    <<: *base
    command: ["sh", "-c", "mkdir -p /www; echo \"$$GREETING\" > /www/index.html; exec httpd -f -p 8080 -h /www"]
    environment:
      GREETING: ${{GREETING}}
      LEVEL: ${{LEVEL:-info}}
    ports:
      - "127.0.0.1:${{WEB_PORT}}:8080"
    depends_on:
      db:
        condition: service_healthy

volumes:
  dbdata: {{}}
"#
        ),
    );
    let out = run(
        &ws,
        &[
            "apply",
            "-f",
            "compose.yaml",
            "-p",
            &name,
            "--integration",
            "docker",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let web = format!("{name}-web");
    let db = format!("{name}-db");
    assert!(
        wait_for(WAIT, || http_get(port)
            .is_some_and(|b| b.trim() == "hello from env")),
        "the published port does not answer with the environment's greeting: {:?}",
        http_get(port)
    );
    let env = inspect("container", &web).expect("web container")["Config"]["Env"].clone();
    assert!(
        env.as_array()
            .is_some_and(|e| e.iter().any(|v| v == "LEVEL=info")),
        "{env}"
    );
    assert!(
        wait_for(WAIT, || health(&db).as_deref() == Some("healthy")),
        "db never turned healthy: {:?}",
        health(&db)
    );
    // web started only once db was healthy.
    let started = |c: &str| {
        inspect("container", c).expect("container")["State"]["StartedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(started(&web) > started(&db));
    assert!(
        volumes_of(&name).contains(&format!("{name}-db-dbdata")),
        "{:?}",
        volumes_of(&name)
    );

    let out = run(
        &ws,
        &[
            "plan",
            "-f",
            "compose.yaml",
            "-p",
            &name,
            "--integration",
            "docker",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan is not a no-op: {}",
        show(&out)
    );

    // docker-compose reads the same services and images from the file.
    let peer = Command::new("docker-compose")
        .args(["-f", "compose.yaml", "-p", &name, "config"])
        .current_dir(ws.path())
        .output()
        .expect("run docker-compose");
    assert!(peer.status.success(), "{}", show(&peer));
    let peer: serde_json::Value = serde_saphyr::from_str(&String::from_utf8_lossy(&peer.stdout))
        .expect("compose config YAML");
    let render = run(
        &ws,
        &[
            "render",
            "-f",
            "compose.yaml",
            "-p",
            &name,
            "--output",
            "json",
        ],
    );
    assert_eq!(render.status.code(), Some(0), "{}", show(&render));
    let ours: serde_json::Value = serde_json::from_slice(&render.stdout).expect("render JSON");
    let peer_services = peer["services"].as_object().expect("services");
    let our_services = ours["model"]["services"].as_object().expect("services");
    assert_eq!(peer_services.len(), our_services.len());
    for (k, v) in peer_services {
        assert_eq!(
            v["image"].as_str(),
            our_services[k]["image"].as_str(),
            "image of {k}"
        );
    }
}
