//! Conversions of one deployment that uses most settings: TOML loads back
//! to the same model, Compose carries what it has keys for, and every
//! other field is reported by service and field.

use std::path::Path;

use super::*;
use crate::deployment::{self, Format, LoadOptions};

const FULL: &str = r#"
name = "full"
snapshots_keep = 4
[keys]
alice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz7gYv3lCIVUp8dm3D1UOHdWLn56rxJ2RGCY5hCLIQk alice@host"
[services.db]
image = "postgres:16"
volumes = ["data:/var/lib/postgresql/data", "/srv/conf:/etc/conf:ro"]
env = { PASSWORD = "pa$$word with $${NOT_A_VAR}", EMPTY = "" }
memory = "512m"
cpus = 1.5
stop_timeout = 30
stop_signal = "SIGINT"
health = { cmd = "pg_isready", interval = "5s", timeout = "1500ms", retries = 3, on_unhealthy = "ignore" }
ulimits = { nofile = 1024, nproc = { soft = 100, hard = 200 } }
shm_size = "64m"
sysctls = { "net.core.somaxconn" = 1024 }
extra_hosts = ["db.local:10.0.0.5"]
dns = ["1.1.1.1", "2606:4700::1111"]
init = true
logging = { driver = "json-file", options = { max-size = "10m" } }
devices = ["/dev/null:/dev/nothing:r"]
[services.web]
image = "nginx:1.27"
count = 3
command = ["nginx", "-g", "daemon off;"]
entrypoint = "/docker-entrypoint.sh"
ports = ["8080", "127.0.0.1::81", "[::1]::90/udp"]
links = ["db:database"]
ssh = ["alice"]
ssh_shell = "/bin/bash"
restart = "on-failure"
user = "1000:1000"
workdir = "/srv"
hostname = "web-host"
labels = { "com.example.tier" = "front" }
read_only = true
tmpfs = ["/run", "/tmp:size=64m"]
cap_add = ["NET_ADMIN"]
cap_drop = ["ALL"]
snapshot_on_upgrade = false
snapshots_keep = 2
endpoint_mode = "dnsrr"
update_config = { parallelism = 2, delay = "5s", order = "start-first", failure_action = "pause", monitor = "1500ms", max_failure_ratio = 0.5 }
[configs.site]
content = "costs $$5\n"
[secrets.pw]
content = "hunter2 $$x"
[services.batch]
image = "busybox"
configs = ["site", { source = "site", target = "/etc/x", uid = 5, mode = "0600", reload = "SIGHUP" }]
secrets = ["pw"]
health = false
"#;

fn load_file(file: &Path, format: Option<Format>, set: Vec<(String, String)>) -> Deployment {
    let mut d = deployment::load(&LoadOptions {
        file: file.to_path_buf(),
        format,
        set,
        name: Some("full".into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    d.source = None;
    d
}

fn full() -> (tempfile::TempDir, Deployment) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, FULL).unwrap_or_else(|e| panic!("{e}"));
    let d = load_file(&file, None, vec![]);
    (dir, d)
}

fn write_out(out: &Output) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_to(dir.path(), &out.files).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn toml_loads_back_to_the_same_model() {
    let (_src, dep) = full();
    // On stdout: one file, the secret through its variable.
    let out = convert(&dep, Target::Toml, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.files.len(), 1);
    assert!(!out.files[0].content.contains("hunter2"));
    assert!(out.report.losses.is_empty(), "{:?}", out.report.losses);
    assert_eq!(out.report.notes.len(), 1, "{:?}", out.report.notes);
    let dir = write_out(&out);
    let set = vec![("BERTH_SECRET_PW".to_string(), "hunter2 $x".to_string())];
    let back = load_file(&dir.path().join("berth.toml"), None, set);
    assert_eq!(back, dep);
    // Into a directory: the secret as a 0600 file beside it.
    let out = convert(&dep, Target::Toml, true).unwrap_or_else(|e| panic!("{e}"));
    let dir = write_out(&out);
    let secret = dir.path().join("secrets/pw");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(out.report.notes.is_empty());
    let back = load_file(&dir.path().join("berth.toml"), None, vec![]);
    assert_eq!(back, dep);
}

#[test]
fn compose_carries_what_it_has_keys_for_and_reports_the_rest() {
    let (_src, dep) = full();
    let out = convert(&dep, Target::Compose, true).unwrap_or_else(|e| panic!("{e}"));
    let text = &out.files[0].content;
    assert!(!text.contains("hunter2"), "{text}");
    for key in [
        "mem_limit",
        "cpus",
        "stop_grace_period",
        "stop_signal",
        "healthcheck",
        "depends_on",
        "condition: service_healthy",
        "working_dir",
        "hostname",
        "cap_add",
        "cap_drop",
        "read_only",
        "tmpfs",
        "labels",
        "x-berth",
        "replicas",
        "restart: on-failure",
        "file: ./configs/site",
        "file: ./secrets/pw",
        "disable: true",
        "ulimits",
        "shm_size",
        "sysctls",
        "extra_hosts",
        "dns",
        "init: true",
        "driver: json-file",
        "/dev/null:/dev/nothing:r",
        "update_config",
        "order: start-first",
        "endpoint_mode: dnsrr",
    ] {
        assert!(text.contains(key), "no {key} in\n{text}");
    }
    let lost: Vec<(Option<&str>, &str)> = out
        .report
        .losses
        .iter()
        .map(|l| (l.service.as_deref(), l.field.as_str()))
        .collect();
    assert!(lost.contains(&(Some("web"), "links.db")), "{lost:?}");
    assert!(
        lost.contains(&(Some("batch"), "configs.site.reload")),
        "{lost:?}"
    );
    let text_report = out.report.text();
    assert!(
        text_report.contains("lost: services.web.links.db: "),
        "{text_report}"
    );
    let json = serde_json::to_value(&out.report).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["losses"].as_array().is_some_and(|l| l
            .iter()
            .any(|x| x["service"] == "batch" && x["field"] == "configs.site.reload")),
        "{json}"
    );
    // What Compose carries reads back as it was: only the reported fields differ.
    let dir = write_out(&out);
    let mut back = load_file(
        &dir.path().join("compose.yaml"),
        Some(Format::Compose),
        vec![],
    );
    let mut want = dep.clone();
    for svc in want.services.values_mut() {
        for l in &mut svc.links {
            l.alias = l.target.clone();
        }
        for m in &mut svc.configs {
            m.reload = None;
        }
        if let Some(h) = &mut svc.health {
            h.on_unhealthy = Default::default();
        }
    }
    assert!(
        lost.contains(&(Some("db"), "health.on_unhealthy")),
        "{lost:?}"
    );
    back.source = None;
    assert_eq!(back, want);
}

#[test]
fn a_secret_never_reaches_stdout() {
    let (_src, dep) = full();
    let out = convert(&dep, Target::Compose, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.files.len(), 1);
    let text = &out.files[0].content;
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("environment: BERTH_SECRET_PW"), "{text}");
    assert!(text.contains("content:"), "the config inline: {text}");
}

#[test]
fn quadlet_writes_one_container_unit_per_instance_with_documented_keys() {
    let (_src, dep) = full();
    let out = convert(&dep, Target::Quadlet, true).unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
    for p in [
        "full.network",
        "full-db.container",
        "full-db-data.volume",
        "full-web-1.container",
        "full-web-3.container",
        "full-batch.container",
        "configs/site",
        "secrets/pw",
    ] {
        assert!(paths.contains(&p), "no {p} in {paths:?}");
    }
    let unit = |p: &str| {
        &out.files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p}"))
            .content
    };
    let web = unit("full-web-2.container");
    for line in [
        "Image=nginx:1.27",
        "Exec=nginx -g \"daemon off;\"",
        "Requires=full-db.service",
        "After=full-db.service",
        "PublishPort=127.0.0.1::81/tcp",
        "User=1000",
        "Group=1000",
        "WorkingDir=/srv",
        "HostName=web-host",
        "Label=com.example.tier=front",
        "AddCapability=NET_ADMIN",
        "DropCapability=ALL",
        "ReadOnly=true",
        "Tmpfs=/tmp:size=64m",
        "Network=full.network",
        "Restart=on-failure",
    ] {
        assert!(web.lines().any(|l| l == line), "no {line} in\n{web}");
    }
    let db = unit("full-db.container");
    for line in [
        "Volume=full-db-data.volume:/var/lib/postgresql/data",
        "Volume=/srv/conf:/etc/conf:ro",
        "HealthCmd=pg_isready",
        "HealthInterval=5s",
        "HealthTimeout=1500ms",
        "HealthRetries=3",
        "StopTimeout=30",
        "StopSignal=SIGINT",
        "Environment=\"PASSWORD=pa$word with ${NOT_A_VAR}\"",
        "Ulimit=nofile=1024:1024",
        "Ulimit=nproc=100:200",
        "ShmSize=67108864",
        "Sysctl=net.core.somaxconn=1024",
        "AddHost=db.local:10.0.0.5",
        "DNS=1.1.1.1",
        "DNS=2606:4700::1111",
        "RunInit=true",
        "LogDriver=json-file",
        "PodmanArgs=--log-opt=max-size=10m",
        "AddDevice=/dev/null:/dev/nothing:r",
    ] {
        assert!(db.lines().any(|l| l == line), "no {line} in\n{db}");
    }
    // Only keys podman-systemd.unit(5) documents, in the sections it puts them.
    let documented = [
        "Description",
        "Requires",
        "After",
        "Image",
        "ContainerName",
        "Network",
        "NetworkAlias",
        "Entrypoint",
        "Exec",
        "Environment",
        "PublishPort",
        "Volume",
        "Secret",
        "User",
        "Group",
        "WorkingDir",
        "HostName",
        "Label",
        "AddCapability",
        "DropCapability",
        "ReadOnly",
        "Tmpfs",
        "StopSignal",
        "StopTimeout",
        "PodmanArgs",
        "HealthCmd",
        "HealthInterval",
        "HealthTimeout",
        "HealthStartPeriod",
        "HealthRetries",
        "HealthOnFailure",
        "Ulimit",
        "ShmSize",
        "Sysctl",
        "AddHost",
        "DNS",
        "RunInit",
        "LogDriver",
        "AddDevice",
        "Restart",
        "WantedBy",
        "NetworkName",
        "VolumeName",
    ];
    for f in out.files.iter().filter(|f| !f.path.contains('/')) {
        for l in f
            .content
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('['))
        {
            let key = l.split('=').next().unwrap_or("");
            assert!(documented.contains(&key), "{key} in {}", f.path);
        }
    }
    let lost: Vec<(Option<&str>, &str)> = out
        .report
        .losses
        .iter()
        .map(|l| (l.service.as_deref(), l.field.as_str()))
        .collect();
    assert!(lost.contains(&(Some("web"), "ssh")), "{lost:?}");
    assert!(
        lost.contains(&(Some("batch"), "configs.site.reload")),
        "{lost:?}"
    );
}

#[test]
fn kubernetes_writes_workloads_services_and_secrets_only_into_a_0600_file() {
    let (_src, dep) = full();
    let out = convert(&dep, Target::Kubernetes, true).unwrap_or_else(|e| panic!("{e}"));
    let main = &out.files[0];
    assert_eq!(main.path, "kubernetes.yaml");
    assert!(!main.content.contains("hunter2"), "{}", main.content);
    for want in [
        "kind: StatefulSet",
        "volumeClaimTemplates",
        "kind: Deployment",
        "kind: Service",
        "kind: ConfigMap",
        "readinessProbe",
        "replicas: 3",
        "readOnlyRootFilesystem: true",
        "terminationGracePeriodSeconds: 30",
        "runAsUser: 1000",
        "medium: Memory",
        "sizeLimit: 64Mi",
    ] {
        assert!(
            main.content.contains(want),
            "no {want} in\n{}",
            main.content
        );
    }
    // db ignores an unhealthy state: readiness only, no liveness probe.
    assert!(!main.content.contains("livenessProbe"), "{}", main.content);
    let secrets = out
        .files
        .iter()
        .find(|f| f.path == "secrets.yaml")
        .unwrap_or_else(|| panic!("no secrets.yaml"));
    assert_eq!(secrets.mode, 0o600);
    assert!(secrets.content.contains("hunter2"));
    // Without a directory the Secret is left out, and the note says how to make it.
    let out = convert(&dep, Target::Kubernetes, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.files.len(), 1);
    assert!(out.files.iter().all(|f| !f.content.contains("hunter2")));
    assert!(
        out.report
            .notes
            .iter()
            .any(|n| n.reason.contains("kubectl create secret"))
    );
    let lost: Vec<(Option<&str>, &str)> = out
        .report
        .losses
        .iter()
        .map(|l| (l.service.as_deref(), l.field.as_str()))
        .collect();
    assert!(lost.contains(&(Some("web"), "restart")), "{lost:?}");
    assert!(lost.contains(&(Some("db"), "stop_signal")), "{lost:?}");
    for key in [
        "ulimits",
        "shm_size",
        "sysctls",
        "extra_hosts",
        "dns",
        "init",
        "logging",
        "devices",
    ] {
        assert!(lost.contains(&(Some("db"), key)), "{key}: {lost:?}");
    }
}

/// Compose → berth → Compose → berth: the same model.
#[test]
fn a_compose_file_converted_back_to_compose_reads_as_the_same_deployment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("compose.yaml");
    let text = r#"
x-common: &common
  restart: unless-stopped
  labels: { tier: back }
services:
  db:
    <<: *common
    image: postgres:16
    environment: { POSTGRES_PASSWORD_FILE: /run/secrets/pw }
    volumes: [ "data:/var/lib/postgresql/data" ]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
      interval: 10s
      retries: 5
    secrets: [ pw ]
    stop_grace_period: 1m
  web:
    image: nginx:1.27
    ports: [ "127.0.0.1:8080:80" ]
    depends_on:
      db: { condition: service_healthy }
    deploy: { resources: { limits: { memory: 256m, cpus: "0.5" } } }
    tmpfs: [ /run ]
    cap_drop: [ ALL ]
    read_only: true
volumes:
  data: {}
secrets:
  pw: { file: ./pw.txt }
"#;
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("pw.txt"), "s3cret").unwrap_or_else(|e| panic!("{e}"));
    let first = load_file(&file, Some(Format::Compose), vec![]);
    let out = convert(&first, Target::Compose, true).unwrap_or_else(|e| panic!("{e}"));
    let written = write_out(&out);
    let back = load_file(
        &written.path().join("compose.yaml"),
        Some(Format::Compose),
        vec![],
    );
    // Only on_unhealthy is reported lost, and it reads back as it was (the default).
    assert_eq!(back, first);
    let again = convert(&back, Target::Compose, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.files, out.files,
        "the second conversion writes the same files"
    );
}
