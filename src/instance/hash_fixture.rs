//! The spec hash decides whether a new berth recreates containers that an
//! older one made: these literals were recorded from the code before the
//! instance model moved, and must not change (a change here means every
//! container on every upgraded host is recreated).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::deployment::{Deployment, Format, LoadOptions, load_str};

const FILE: &str = r#"
name = "fx"

[services.mail]
image = "mailimg:1"
ports = ["25:25", "127.0.0.1:4190:4190/tcp", "5353:53/udp", "8080"]
env = { LOCAL_DOMAINS = "example.org", MAILNAME = "mail.example.org" }
volumes = ["spool:/var/spool/exim4", "/etc/ssl/certs:/etc/ssl/certs:ro", "data:/data:ro"]
restart = "always"
hostname = "mail.example.org"
labels = { "org.example.role" = "mail", "org.example.tier" = "back" }
stop_timeout = "30s"
stop_signal = "SIGQUIT"
memory = "512m"
cpus = 1.5
cap_add = ["NET_ADMIN", "SYS_TIME"]
cap_drop = ["MKNOD"]
command = ["exim", "-bdf", "-q30m"]
entrypoint = ["/entry.sh", "--"]
user = "mail:mail"
workdir = "/var/mail"
read_only = true
tmpfs = ["/run", "/tmp:size=64m"]
privileged = true
health = { cmd = "test -f /tmp/ok", interval = "5s", timeout = "2s", start_period = "10s", retries = 3, on_unhealthy = "ignore" }

[services.web]
image = "webimg"
count = 2
links = ["mail", "mail:smtp"]
env = ["SMTP_PORT=overridden", "A=b c"]
command = "httpd -f"
health = false
restart = "on-failure"
"#;

fn images() -> BTreeMap<String, ImageInfo> {
    BTreeMap::from([
        (
            "mailimg:1".to_string(),
            ImageInfo {
                id: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
                    .into(),
                exposed_ports: vec![(143, Protocol::Tcp), (25, Protocol::Tcp)],
                volumes: vec!["/var/spool/exim4/".into(), "/var/lib/state".into()],
                healthcheck: true,
            },
        ),
        (
            "webimg".to_string(),
            ImageInfo {
                id: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
                    .into(),
                ..Default::default()
            },
        ),
    ])
}

fn deployment() -> Deployment {
    let opts = LoadOptions {
        file: PathBuf::from("/nonexistent/fx.toml"),
        name: None,
        set: Vec::new(),
        env: BTreeMap::new(),
        ..Default::default()
    };
    load_str(&opts, Format::Toml, FILE.into()).unwrap_or_else(|e| panic!("fixture file: {e:?}"))
}

fn specs(integration: Integration) -> Vec<InstanceSpec> {
    resolve(&deployment(), &images(), integration)
}

/// The deployment as a revision records it reads back as itself: the
/// settings shared with the instance spec survive the round trip.
#[test]
fn the_deployment_round_trips_through_its_recorded_json() {
    let dep = deployment();
    let json = serde_json::to_string_pretty(&dep).unwrap_or_else(|e| panic!("{e}"));
    let back: Deployment = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, dep);
    assert_eq!(dep.services["mail"].settings.cpus, Some(1.5));
}

#[test]
fn spec_hashes_are_those_of_the_recorded_code() {
    let want = [
        (
            Integration::Systemd,
            "fx-mail",
            "sha256:b02e40d8b4211a5fee8d3f15232bb67571a3c20a94c354b6e7624a43d72da85d",
        ),
        (
            Integration::Systemd,
            "fx-web-1",
            "sha256:6b9413a7167fdce1314f0266a2ec503ea83d38ec4524191305d6194ead4b3908",
        ),
        (
            Integration::Systemd,
            "fx-web-2",
            "sha256:7a8a367660a0fb9cb4dcec107cbe6f0e96e03cfa66017c87d3bf3822d0bc17f8",
        ),
        (
            Integration::Docker,
            "fx-mail",
            "sha256:df696da85fbaea924f9a43696fb91a0c2c2991eb61ed9de3cad2a3db8baa1cd7",
        ),
        (
            Integration::Docker,
            "fx-web-1",
            "sha256:577ab26be9eb61a352368112e3bc5f77ed8255db342b4fe6f702346279257f6c",
        ),
        (
            Integration::Docker,
            "fx-web-2",
            "sha256:b61e1a76d2212c2c30e5ba3016db747a953d2ee064e8ca7787ae2710742d0d79",
        ),
    ];
    let mut got = Vec::new();
    for integration in [Integration::Systemd, Integration::Docker] {
        for s in specs(integration) {
            got.push((integration, s.container.clone(), s.hash()));
        }
    }
    let got: Vec<(Integration, &str, &str)> = got
        .iter()
        .map(|(i, c, h)| (*i, c.as_str(), h.as_str()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_written_instance_spec_is_the_recorded_json() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = StateDir::new(dir.path().join("state"));
    let want = [
        (
            "fx-mail",
            include_str!("../../tests/fixtures/instance-spec/fx-mail.json"),
        ),
        (
            "fx-web-1",
            include_str!("../../tests/fixtures/instance-spec/fx-web-1.json"),
        ),
    ];
    let specs = specs(Integration::Systemd);
    for (container, json) in want {
        let spec = specs
            .iter()
            .find(|s| s.container == container)
            .unwrap_or_else(|| panic!("{container} resolved"));
        spec.write(&state).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(state.instance_spec(container))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, json, "{container}");
        // And it reads back as the same spec (what `berth supervise` runs).
        let back = InstanceSpec::read(&state, container).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.as_ref(), Some(spec));
    }
}
