//! Container limits and runtime settings (ulimits, shm_size, sysctls,
//! extra_hosts, dns, init, logging, devices) reach the running container, from
//! berth's own file and from a Compose file.

use crate::support::*;

/// `sh -c script` inside `container`, its trimmed stdout.
fn exec(container: &str, script: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", script])
        .trim()
        .to_string()
}

/// Checks what the container's kernel view and its engine record show.
fn check_container(container: &str) {
    // The service's own processes (PID 1 and its child): an exec'd shell
    // gets the engine's limits for exec, not necessarily the container's.
    for pid in ["1", "$(pidof sleep)"] {
        let limits = exec(
            container,
            &format!("grep 'Max open files' /proc/{pid}/limits"),
        );
        assert_eq!(
            limits.split_whitespace().collect::<Vec<_>>()[3..5],
            ["1024", "2048"],
            "{limits}"
        );
    }
    assert!(
        wait_for(std::time::Duration::from_secs(20), || exec(
            container,
            "cat /tmp/ulimit 2>/dev/null"
        ) == "1024"),
        "ulimit -n of the service's shell: {}",
        exec(container, "cat /tmp/ulimit 2>/dev/null")
    );
    // df -k: the size column of /dev/shm, in KiB.
    let shm = exec(container, "df -k /dev/shm | tail -1 | awk '{print $2}'");
    assert_eq!(shm, "32768", "shm size");
    assert_eq!(exec(container, "cat /proc/sys/net/core/somaxconn"), "511");
    let hosts = exec(container, "cat /etc/hosts");
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["192.0.2.10", "db.example"]),
        "{hosts}"
    );
    assert_eq!(exec(container, "cat /proc/1/comm"), "docker-init");
    let i = inspect("container", container).expect("container");
    let hc = &i["HostConfig"];
    // On a user-defined network resolv.conf names the engine's resolver,
    // which forwards to these servers; the engine records them here.
    assert_eq!(hc["Dns"], serde_json::json!(["192.0.2.53"]), "{hc}");
    assert_eq!(hc["LogConfig"]["Type"], "json-file", "{hc}");
    assert_eq!(hc["LogConfig"]["Config"]["max-size"], "1m", "{hc}");
    assert_eq!(hc["LogConfig"]["Config"]["max-file"], "2", "{hc}");
    assert_eq!(hc["Init"], true, "{hc}");
}

#[test]
fn container_limits_and_runtime_settings_reach_the_container() {
    let name = unique_name("csettings");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"
[services.app]
image = "{image}"
command = ["sh", "-c", "ulimit -n > /tmp/ulimit; exec sleep 3600"]
stop_timeout = 1
ulimits = {{ nofile = {{ soft = 1024, hard = 2048 }} }}
shm_size = "32m"
sysctls = {{ "net.core.somaxconn" = 511 }}
extra_hosts = ["db.example:192.0.2.10"]
dns = "192.0.2.53"
init = true
logging = {{ driver = "json-file", options = {{ max-size = "1m", max-file = 2 }} }}
devices = ["/dev/null:/dev/berth-null:r"]
"#
        ),
    );
    let out = run(
        &ws,
        &["apply", "-f", "berth.toml", "--integration", "docker"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let containers = containers_of(&name);
    assert_eq!(containers.len(), 1, "{containers:?}");
    check_container(&containers[0]);
    assert_eq!(
        exec(&containers[0], "test -c /dev/berth-null && echo device"),
        "device"
    );
    let out = run(
        &ws,
        &["plan", "-f", "berth.toml", "--integration", "docker"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan is not a no-op: {}",
        show(&out)
    );
}

#[test]
fn compose_container_settings_apply() {
    let name = unique_name("csettings-compose");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    ws.write(
        "compose.yaml",
        &format!(
            r#"services:
  app:
    image: {image}
    command: ["sh", "-c", "ulimit -n > /tmp/ulimit; exec sleep 3600"]
    stop_grace_period: 1s
    ulimits:
      nofile:
        soft: 1024
        hard: 2048
    shm_size: 32m
    sysctls:
      - net.core.somaxconn=511
    extra_hosts:
      db.example: 192.0.2.10
    dns: [192.0.2.53]
    init: true
    logging:
      driver: json-file
      options:
        max-size: 1m
        max-file: "2"
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
    let containers = containers_of(&name);
    assert_eq!(containers.len(), 1, "{containers:?}");
    check_container(&containers[0]);
}
