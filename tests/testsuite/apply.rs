//! Deploying to the real engine: plan, apply, supervise, destroy.
//!
//! Library-level tests build the resolved model directly and call berth's
//! apply; the engine's own view is checked through the docker CLI
//! (independent of berth's engine code).

use std::collections::BTreeMap;

use berth::apply::destroy::{DestroyOptions, destroy};
use berth::apply::{self, ApplyOptions, ApplyReport};
use berth::deployment::Deployment;
use berth::engine::{Engine, PullProgress};
use berth::instance::{InstanceSpec, Integration};
use berth::plan::{Action, Plan};
use berth::state::StateDir;
use serde_json::{Value, json};

use crate::support::*;

/// A service in the resolved model's JSON form, with test-friendly defaults.
fn svc(name: &str, image: &str, extra: Value) -> (String, Value) {
    let mut v = json!({
        "name": name,
        "image": image,
        "count": 1,
        "command": ["sleep", "3600"],
        "stop_timeout": 1,
    });
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            base.insert(k.clone(), x.clone());
        }
    }
    (name.to_string(), v)
}

fn deployment(name: &str, services: Vec<(String, Value)>) -> Deployment {
    let services: serde_json::Map<String, Value> = services.into_iter().collect();
    serde_json::from_value(json!({ "name": name, "services": services }))
        .unwrap_or_else(|e| panic!("test deployment does not match the model: {e}"))
}

fn opts(ws: &Workspace, integration: Integration) -> ApplyOptions {
    ApplyOptions {
        integration,
        unit_dir: ws.unit_dir(),
        systemctl: false,
        berth_path: bin().to_path_buf(),
        lock_timeout: None,
        progress: PullProgress::Quiet,
        cause: None,
        nodes: None,
    }
}

async fn engine() -> Engine {
    Engine::connect().await.expect("engine reachable")
}

async fn apply_docker(ws: &Workspace, dep: &Deployment) -> ApplyReport {
    let engine = engine().await;
    apply::apply(
        &engine,
        &StateDir::new(ws.state_dir()),
        dep,
        &opts(ws, Integration::Docker),
        apply::quiet(),
    )
    .await
    .unwrap_or_else(|e| panic!("apply failed: {e}"))
}

async fn plan_docker(ws: &Workspace, dep: &Deployment) -> Plan {
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let target = opts(ws, Integration::Docker).target();
    apply::preview(&engine, &state, dep, target.as_ref())
        .await
        .expect("plan")
}

fn id_of(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Id}}", container])
}

fn ids(deployment: &str) -> BTreeMap<String, String> {
    containers_of(deployment)
        .into_iter()
        .map(|c| {
            let id = id_of(&c);
            (c, id)
        })
        .collect()
}

fn running(container: &str) -> bool {
    docker_ok(&["inspect", "-f", "{{.State.Running}}", container]) == "true"
}

fn exec(container: &str, cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    docker(&args)
}

fn exec_ok(container: &str, cmd: &[&str]) -> String {
    let out = exec(container, cmd);
    assert!(
        out.status.success(),
        "exec {cmd:?} in {container} failed: {}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_from_nothing_then_reapply_is_a_noop() {
    let name = unique_name("fresh");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let dep = deployment(
        &name,
        vec![
            svc(
                "db",
                img,
                json!({"volumes": [{"source": {"named": "data"}, "target": "/data"}],
                       "env": {"ROLE": "db"}}),
            ),
            svc(
                "web",
                img,
                json!({"links": [{"target": "db", "alias": "db"}]}),
            ),
        ],
    );
    let report = apply_docker(&ws, &dep).await;
    assert_eq!(report.plan.with_action(Action::Create).count(), 2);
    assert_eq!(report.revision, 1);
    let db = format!("{name}-db");
    let web = format!("{name}-web");
    assert_eq!(containers_of(&name), vec![db.clone(), web.clone()]);
    assert!(running(&db) && running(&web));
    assert_eq!(volumes_of(&name), vec![format!("{db}-data")]);
    assert_eq!(networks_of(&name), vec![name.clone()]);
    let info = inspect("container", &db).expect("db inspect");
    assert_eq!(info["Config"]["Labels"]["berth.deployment"], json!(name));
    assert_eq!(info["Config"]["Labels"]["berth.service"], json!("db"));
    assert_eq!(info["Config"]["Labels"]["berth.instance"], json!("1"));
    assert_eq!(info["Config"]["Labels"]["berth.revision"], json!("1"));
    assert!(
        info["Config"]["Labels"]["berth.spec-hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    assert_eq!(
        info["HostConfig"]["RestartPolicy"]["Name"],
        json!("unless-stopped")
    );
    assert!(
        info["NetworkSettings"]["Networks"][&name]["Aliases"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("db")))
    );
    // The instance spec is kept privately for `berth supervise`.
    let spec_file = ws.state_dir().join("instances").join(format!("{db}.json"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&spec_file)
            .expect("spec file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        ws.state_dir()
            .join(format!("deployments/{name}/current.json"))
            .is_file()
    );

    let before = ids(&name);
    let plan = plan_docker(&ws, &dep).await;
    assert!(!plan.has_changes(), "{}", plan.render());
    let again = apply_docker(&ws, &dep).await;
    assert_eq!(again.plan.with_action(Action::Unchanged).count(), 2);
    assert_eq!(again.revision, 1, "a no-op apply makes no new revision");
    assert_eq!(
        ids(&name),
        before,
        "a no-op apply keeps the same containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_change_recreates_only_that_service_and_plan_says_why() {
    let name = unique_name("envchg");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let mk = |v: &str| {
        deployment(
            &name,
            vec![
                svc("a", img, json!({"env": {"GREETING": v}})),
                svc("b", img, json!({})),
            ],
        )
    };
    apply_docker(&ws, &mk("hello")).await;
    let before = ids(&name);
    let changed = mk("bonjour");
    let plan = plan_docker(&ws, &changed).await;
    let a = plan
        .instances
        .iter()
        .find(|i| i.service == "a")
        .expect("a planned");
    assert_eq!(a.action, Action::Recreate);
    assert!(
        a.changes
            .iter()
            .any(|c| c.contains("env.GREETING") && c.contains("hello") && c.contains("bonjour")),
        "{:?}",
        a.changes
    );
    let report = apply_docker(&ws, &changed).await;
    assert_eq!(report.revision, 2);
    let after = ids(&name);
    let ca = format!("{name}-a");
    let cb = format!("{name}-b");
    assert_ne!(before[&ca], after[&ca], "a is recreated");
    assert_eq!(before[&cb], after[&cb], "b is untouched");
    assert_eq!(exec_ok(&ca, &["sh", "-c", "echo $GREETING"]), "bonjour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_data_survives_restart_recreate_upgrade_and_scale_down_up() {
    let name = unique_name("voldata");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let v1 = busybox_image("voldata-v1", "LABEL version=1");
    let v2 = busybox_image("voldata-v2", "LABEL version=2");
    let vol = json!([{"source": {"named": "data"}, "target": "/data"}]);
    let mk = |img: &str, count: u32, env: &str| {
        deployment(
            &name,
            vec![svc(
                "store",
                img,
                json!({"count": count, "volumes": vol, "env": {"E": env}}),
            )],
        )
    };
    apply_docker(&ws, &mk(&v1, 2, "1")).await;
    let c1 = format!("{name}-store-1");
    let c2 = format!("{name}-store-2");
    exec_ok(&c1, &["sh", "-c", "echo one > /data/f"]);
    exec_ok(&c2, &["sh", "-c", "echo two > /data/f"]);
    // restart
    docker_ok(&["restart", "-t", "1", &c1]);
    assert_eq!(exec_ok(&c1, &["cat", "/data/f"]), "one");
    // recreate (spec change)
    apply_docker(&ws, &mk(&v1, 2, "2")).await;
    assert_eq!(exec_ok(&c1, &["cat", "/data/f"]), "one");
    // image upgrade
    let before = id_of(&c1);
    apply_docker(&ws, &mk(&v2, 2, "2")).await;
    assert_ne!(id_of(&c1), before, "new image, new container");
    assert_eq!(exec_ok(&c1, &["cat", "/data/f"]), "one");
    // scale down: the highest-numbered instance goes, its volume stays, and
    // the remaining instance keeps its data under its new container name
    apply_docker(&ws, &mk(&v2, 1, "2")).await;
    let single = format!("{name}-store");
    assert_eq!(containers_of(&name), vec![single.clone()]);
    assert_eq!(exec_ok(&single, &["cat", "/data/f"]), "one");
    assert_eq!(
        volumes_of(&name),
        vec![format!("{c2}-data"), format!("{single}-data")]
    );
    // scale up again: instance 2 finds its data
    apply_docker(&ws, &mk(&v2, 2, "2")).await;
    assert_eq!(exec_ok(&c2, &["cat", "/data/f"]), "two");
    assert_eq!(exec_ok(&c1, &["cat", "/data/f"]), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_declared_volume_gets_a_named_volume() {
    let name = unique_name("imgvol");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = busybox_image("imgvol", "VOLUME /var/spool/mail");
    let dep = deployment(&name, vec![svc("mail", &img, json!({}))]);
    apply_docker(&ws, &dep).await;
    let c = format!("{name}-mail");
    let expected = berth::names::image_volume_name(&c, "/var/spool/mail");
    assert_eq!(volumes_of(&name), vec![expected.clone()]);
    let info = inspect("container", &c).expect("inspect");
    let mounts = info["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m["Name"] == json!(expected) && m["Destination"] == json!("/var/spool/mail")),
        "{mounts:?}"
    );
    let vinfo = inspect("volume", &expected).expect("volume");
    assert_eq!(
        vinfo["Labels"]["berth.volume-path"],
        json!("/var/spool/mail")
    );
    exec_ok(&c, &["sh", "-c", "echo kept > /var/spool/mail/m"]);
    apply_docker(
        &ws,
        &deployment(&name, vec![svc("mail", &img, json!({"env": {"X": "1"}}))]),
    )
    .await;
    assert_eq!(exec_ok(&c, &["cat", "/var/spool/mail/m"]), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_give_variables_and_names_resolve_and_published_port_answers() {
    let name = unique_name("links");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mail = busybox_image("links-mail", "EXPOSE 25");
    let port = free_port();
    let httpd = [
        "sh",
        "-c",
        "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www",
    ];
    let dep = deployment(
        &name,
        vec![
            svc(
                "mail",
                &mail,
                json!({"command": ["sh", "-c", "while true; do echo 220 ready | nc -l -p 25; done"]}),
            ),
            svc(
                "webmail",
                base_image(),
                json!({
                    "command": httpd,
                    "hostname": "webmail",
                    "links": [{"target": "mail", "alias": "smtp"}],
                    "ports": [{"host_ip": "127.0.0.1", "host_port": port, "container_port": 80}],
                }),
            ),
        ],
    );
    apply_docker(&ws, &dep).await;
    let web = format!("{name}-webmail");
    let env = exec_ok(&web, &["env"]);
    for expected in [
        format!("SMTP_NAME=/{web}/smtp"),
        "SMTP_PORT=tcp://mail:25".to_string(),
        "SMTP_PORT_25_TCP=tcp://mail:25".to_string(),
        "SMTP_PORT_25_TCP_ADDR=mail".to_string(),
        "SMTP_PORT_25_TCP_PORT=25".to_string(),
        "SMTP_PORT_25_TCP_PROTO=tcp".to_string(),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing in:\n{env}"
        );
    }
    // Name resolution on the deployment network, by service name and link alias.
    exec_ok(&web, &["ping", "-c1", "-W2", "mail"]);
    exec_ok(&web, &["ping", "-c1", "-W2", "smtp"]);
    let banner = exec_ok(&web, &["sh", "-c", "nc mail 25 </dev/null"]);
    assert!(banner.contains("220 ready"), "{banner}");
    let m = format!("{name}-mail");
    let page = exec_ok(&m, &["wget", "-qO-", "http://webmail/"]);
    assert_eq!(page, "hello-webmail");
    // Published port answers from the host.
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut body);
            if body.contains("hello-webmail") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.contains("hello-webmail"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_three_and_removing_a_service_keeps_its_volumes() {
    let name = unique_name("count3");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let vol = json!([{"source": {"named": "data"}, "target": "/data"}]);
    let full = deployment(
        &name,
        vec![
            svc("worker", img, json!({"count": 3})),
            svc("cache", img, json!({"volumes": vol})),
        ],
    );
    apply_docker(&ws, &full).await;
    let mut expected: Vec<String> = (1..=3).map(|i| format!("{name}-worker-{i}")).collect();
    expected.insert(0, format!("{name}-cache"));
    assert_eq!(containers_of(&name), expected);
    for c in &expected {
        assert!(running(c), "{c} runs");
    }
    // Each worker is reachable by its container name and by the service name.
    exec_ok(
        &format!("{name}-cache"),
        &["ping", "-c1", "-W2", &format!("{name}-worker-2")],
    );
    exec_ok(&format!("{name}-cache"), &["ping", "-c1", "-W2", "worker"]);

    let without_cache = deployment(&name, vec![svc("worker", img, json!({"count": 3}))]);
    let report = apply_docker(&ws, &without_cache).await;
    assert_eq!(report.plan.with_action(Action::Remove).count(), 1);
    assert_eq!(containers_of(&name), expected[1..].to_vec());
    assert_eq!(volumes_of(&name), vec![format!("{name}-cache-data")]);
    assert!(
        !ws.state_dir()
            .join(format!("instances/{name}-cache.json"))
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_keeps_volumes_and_destroy_volumes_removes_exactly_ours() {
    let name = unique_name("destroy");
    let other = unique_name("destroyother");
    let _cleanup = Cleanup::new(&name);
    let _cleanup_other = Cleanup::new(&other);
    let ws = Workspace::new();
    let img = base_image();
    let vol = json!([{"source": {"named": "data"}, "target": "/data"}]);
    let dep = deployment(&name, vec![svc("s", img, json!({"volumes": vol}))]);
    let dep_other = deployment(&other, vec![svc("s", img, json!({"volumes": vol}))]);
    apply_docker(&ws, &dep).await;
    apply_docker(&ws, &dep_other).await;
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let dopts = |volumes| DestroyOptions {
        volumes,
        unit_dir: ws.unit_dir(),
        systemctl: false,
        lock_timeout: None,
        berth_path: bin().to_path_buf(),
    };
    let r = destroy(&engine, &state, &name, &dopts(false), apply::quiet())
        .await
        .expect("destroy");
    assert_eq!(r.containers, vec![format!("{name}-s")]);
    assert!(containers_of(&name).is_empty());
    assert!(networks_of(&name).is_empty());
    assert_eq!(volumes_of(&name), vec![format!("{name}-s-data")]);
    assert!(!ws.state_dir().join(format!("deployments/{name}")).exists());
    // Apply again: the kept volume is reused.
    apply_docker(&ws, &dep).await;
    destroy(&engine, &state, &name, &dopts(true), apply::quiet())
        .await
        .expect("destroy --volumes");
    assert!(volumes_of(&name).is_empty());
    assert!(containers_of(&name).is_empty());
    // The other deployment is untouched.
    assert_eq!(containers_of(&other), vec![format!("{other}-s")]);
    assert_eq!(volumes_of(&other), vec![format!("{other}-s-data")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_converge_and_lock_timeout_fails() {
    let name = unique_name("lock");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let dep = deployment(
        &name,
        vec![svc("a", img, json!({})), svc("b", img, json!({"count": 2}))],
    );
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let o = opts(&ws, Integration::Docker);
    let (r1, r2) = tokio::join!(
        apply::apply(&engine, &state, &dep, &o, apply::quiet()),
        apply::apply(&engine, &state, &dep, &o, apply::quiet()),
    );
    let (r1, r2) = (r1.expect("first apply"), r2.expect("second apply"));
    // One of them did the work, the other found nothing left to do.
    let created =
        r1.plan.with_action(Action::Create).count() + r2.plan.with_action(Action::Create).count();
    assert_eq!(created, 3);
    assert_eq!(containers_of(&name).len(), 3);

    // While the lock is held, an apply with a timeout gives up with a message.
    let _held = apply::lock::lock_deployment(&state, &name, None, || {})
        .await
        .expect("lock");
    let mut o2 = o.clone();
    o2.lock_timeout = Some(std::time::Duration::from_millis(300));
    let err = apply::apply(&engine, &state, &dep, &o2, apply::quiet())
        .await
        .expect_err("lock timeout");
    assert!(err.to_string().contains("still holds"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_integration_writes_units_and_specs_without_systemctl() {
    let name = unique_name("units");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let dep = deployment(
        &name,
        vec![
            svc("db", img, json!({})),
            svc(
                "web",
                img,
                json!({"links": [{"target": "db", "alias": "db"}], "env": {"SECRET": "s3"}}),
            ),
        ],
    );
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let o = opts(&ws, Integration::Systemd);
    let r = apply::apply(&engine, &state, &dep, &o, apply::quiet())
        .await
        .expect("apply systemd");
    assert!(
        r.pending_systemctl
            .iter()
            .any(|c| c.contains("daemon-reload"))
    );
    let unit = ws.unit_dir().join(format!("berth-{name}-web.service"));
    let text = std::fs::read_to_string(&unit).expect("unit written");
    assert!(text.contains(&format!("supervise {name}-web")), "{text}");
    assert!(!text.contains("s3"), "no secrets in world-readable units");
    let spec = InstanceSpec::read(&state, &format!("{name}-web"))
        .expect("read spec")
        .expect("spec written");
    assert_eq!(spec.docker_restart, "no");
    assert_eq!(spec.env.get("SECRET").map(String::as_str), Some("s3"));
    // No containers: the supervisor creates them.
    assert!(containers_of(&name).is_empty());
    let again = apply::apply(&engine, &state, &dep, &o, apply::quiet())
        .await
        .expect("re-apply");
    assert_eq!(again.plan.with_action(Action::Unchanged).count(), 2);
    assert!(
        !again
            .pending_systemctl
            .iter()
            .any(|c| c.contains("daemon-reload") || c.contains("restart")),
        "a no-op apply neither reloads nor restarts: {:?}",
        again.pending_systemctl
    );

    // With systemctl wanted but no systemd on this host: a clear refusal.
    if !berth::target::systemd::ctl::systemd_running() {
        let mut o2 = o.clone();
        o2.systemctl = true;
        let err = apply::apply(&engine, &state, &dep, &o2, apply::quiet())
            .await
            .expect_err("no systemd here");
        assert!(err.to_string().contains("systemd is not running"), "{err}");
    }
}

/// `berth supervise CONTAINER` runs the instance from its spec file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervise_runs_fresh_container_streams_output_and_stops_on_sigterm() {
    let name = unique_name("sup");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let vol = json!([{"source": {"named": "data"}, "target": "/data"}]);
    let dep = deployment(
        &name,
        vec![
            svc(
                "loop",
                img,
                json!({"volumes": vol, "command": ["sh", "-c", "echo started; echo oops >&2; date >> /data/runs; exec sleep 3600"]}),
            ),
            svc(
                "once",
                img,
                json!({"command": ["sh", "-c", "echo bye; exit 7"]}),
            ),
        ],
    );
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    apply::apply(
        &engine,
        &state,
        &dep,
        &opts(&ws, Integration::Systemd),
        apply::quiet(),
    )
    .await
    .expect("write specs");

    // Exit status passes through.
    let out = run(&ws, &["supervise", &format!("{name}-once")]);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bye"),
        "{}",
        show(&out)
    );

    // SIGTERM: container stopped and removed, exit 0; a stale container is replaced.
    let c = format!("{name}-loop");
    let mut ids_seen = Vec::new();
    for _ in 0..2 {
        let child = std::process::Command::new(bin())
            .args(["supervise", &c])
            .env("BERTH_STATE_DIR", ws.state_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn supervise");
        let mut id = String::new();
        for _ in 0..100 {
            if let Some(i) = inspect("container", &c)
                && i["State"]["Running"] == json!(true)
            {
                id = i["Id"].as_str().unwrap_or_default().to_string();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!id.is_empty(), "container started");
        ids_seen.push(id);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal");
        let out = child.wait_with_output().expect("supervise exits");
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("started"),
            "{}",
            show(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("oops"),
            "{}",
            show(&out)
        );
        assert!(inspect("container", &c).is_none(), "container removed");
    }
    assert_ne!(ids_seen[0], ids_seen[1], "a fresh container every start");
    // Same volume across runs.
    let vol = format!("{c}-data");
    let out = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/data"),
        "--entrypoint",
        "cat",
        img,
        "/data/runs",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_local_registry_and_refused_pull_leaves_deployment_untouched() {
    let name = unique_name("pull");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut open = Registry::start(None);
    let mut locked = Registry::start(Some(("berth", "s3cret")));
    let local = busybox_image("pull", "LABEL pulled=yes");
    let public = open.push(&local, &format!("{name}/app:1"));
    let private = locked.push(&local, &format!("{name}/app:2"));
    assert!(
        inspect("image", &public).is_none(),
        "not local before apply"
    );

    let dep = deployment(&name, vec![svc("app", &public, json!({}))]);
    let report = apply_docker(&ws, &dep).await;
    assert_eq!(report.plan.with_action(Action::Create).count(), 1);
    let c = format!("{name}-app");
    assert!(running(&c));
    assert!(inspect("image", &public).is_some(), "pulled");
    let before = ids(&name);

    // The private image without credentials: refused, before anything is touched.
    let changed = deployment(&name, vec![svc("app", &private, json!({}))]);
    let engine = engine().await;
    let err = apply::apply(
        &engine,
        &StateDir::new(ws.state_dir()),
        &changed,
        &opts(&ws, Integration::Docker),
        apply::quiet(),
    )
    .await
    .expect_err("pull must be refused");
    let msg = err.to_string();
    assert!(msg.contains(&private), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert_eq!(ids(&name), before, "running deployment untouched");
    assert!(running(&c));
}

/// `berth supervise` pulls a missing image with the credentials of
/// `$DOCKER_CONFIG/config.json`, and says what to do without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervise_pulls_with_registry_credentials() {
    let name = unique_name("auth");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut locked = Registry::start(Some(("berth", "s3cret")));
    let local = busybox_image("auth", "LABEL auth=yes");
    let private = locked.push(&local, &format!("{name}/app:1"));
    let dep = deployment(
        &name,
        vec![svc(
            "app",
            &private,
            json!({"command": ["sh", "-c", "echo pulled-and-ran; exit 3"]}),
        )],
    );
    // Resolve without the image (it is not local) and write the spec, as
    // an apply on another host would have.
    let specs = berth::instance::resolve(&dep, &BTreeMap::new(), Integration::Systemd);
    let state = StateDir::new(ws.state_dir());
    for s in &specs {
        s.write(&state).expect("write spec");
    }
    let c = format!("{name}-app");
    let empty = tempfile::tempdir().expect("empty config dir");
    let out = std::process::Command::new(bin())
        .args(["supervise", &c])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("DOCKER_CONFIG", empty.path())
        .output()
        .expect("run supervise");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("docker login"), "{err}");
    assert!(inspect("container", &c).is_none());

    let out = std::process::Command::new(bin())
        .args(["supervise", &c])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("DOCKER_CONFIG", &locked.client_config)
        .output()
        .expect("run supervise");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pulled-and-ran"));
}

/// An apply interrupted at arbitrary points (the future dropped mid-way,
/// as a killed process would leave it), then run again, converges: one
/// container per instance, volumes intact, nothing stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_apply_then_apply_again_converges() {
    let name = unique_name("interrupt");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let vol = json!([{"source": {"named": "data"}, "target": "/data"}]);
    let mk = |env: &str| {
        deployment(
            &name,
            vec![
                svc("a", img, json!({"volumes": vol, "env": {"V": env}})),
                svc("b", img, json!({"count": 3, "env": {"V": env}})),
                svc(
                    "c",
                    img,
                    json!({"links": [{"target": "a", "alias": "a"}], "env": {"V": env}}),
                ),
            ],
        )
    };
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let o = opts(&ws, Integration::Docker);
    apply::apply(&engine, &state, &mk("0"), &o, apply::quiet())
        .await
        .expect("first apply");
    exec_ok(&format!("{name}-a"), &["sh", "-c", "echo keep > /data/f"]);
    for (round, ms) in [5u64, 40, 120, 300, 600].into_iter().enumerate() {
        let dep = mk(&round.to_string());
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(ms),
            apply::apply(&engine, &state, &dep, &o, apply::quiet()),
        )
        .await;
        let r = apply::apply(&engine, &state, &dep, &o, apply::quiet())
            .await
            .expect("apply after interruption");
        let _ = r;
        let plan = plan_docker(&ws, &dep).await;
        assert!(!plan.has_changes(), "round {round}: {}", plan.render());
        let cs = containers_of(&name);
        assert_eq!(cs.len(), 5, "round {round}: {cs:?}");
        for c in &cs {
            assert!(running(c), "{c} runs");
            assert_eq!(exec_ok(c, &["sh", "-c", "echo $V"]), round.to_string());
        }
        assert_eq!(exec_ok(&format!("{name}-a"), &["cat", "/data/f"]), "keep");
    }
}

// ---- Binary-driven: the `berth` command with deployment files ----

/// A TOML deployment file of `n` sleeping services (`s01`..), with a volume
/// on the first and `V` in every environment.
fn toml_services(name: &str, n: usize, v: &str) -> String {
    let img = base_image();
    let mut text = format!("name = \"{name}\"\n");
    for i in 1..=n {
        text.push_str(&format!(
            "\n[services.s{i:02}]\nimage = \"{img}\"\ncommand = [\"sleep\", \"3600\"]\nstop_timeout = 1\nenv = {{ V = \"{v}\" }}\n"
        ));
        if i == 1 {
            text.push_str("volumes = [\"data:/data\"]\n");
        }
    }
    text
}

#[test]
fn cli_plan_apply_exit_codes_json_and_noop() {
    let name = unique_name("cli");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let port = free_port();
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"

[services.db]
image = "{img}"
command = ["sleep", "3600"]
stop_timeout = 1
volumes = ["data:/data"]

[services.web]
image = "{img}"
command = ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]
stop_timeout = 1
links = ["db:database"]
ports = ["127.0.0.1:{port}:80"]
env = {{ MODE = "one" }}
"#
        ),
    );
    let out = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("create    {name}-web")), "{text}");
    assert!(text.contains(&format!("volume {name}-db-data")), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "{text}"
    );
    assert!(containers_of(&name).is_empty(), "plan touches nothing");

    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        containers_of(&name),
        vec![format!("{name}-db"), format!("{name}-web")]
    );
    let env = exec_ok(&format!("{name}-web"), &["env"]);
    assert!(
        env.contains(&format!("DATABASE_NAME=/{name}-web/database")),
        "{env}"
    );
    exec_ok(&format!("{name}-web"), &["ping", "-c1", "-W2", "database"]);
    let before = ids(&name);

    let out = run(
        &ws,
        &["plan", "--integration", "docker", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(v["changes"], json!(false));
    assert_eq!(v["plan"]["instances"][0]["action"], json!("unchanged"));

    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(ids(&name), before, "no-op apply keeps containers");

    // Change one service's env: plan says recreate and why, exit 3.
    let file = std::fs::read_to_string(ws.path().join("berth.toml")).expect("read");
    ws.write(
        "berth.toml",
        &file.replace("MODE = \"one\"", "MODE = \"two\""),
    );
    let out = run(&ws, &["plan", "--integration", "docker", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let web = v["plan"]["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["service"] == json!("web")).cloned())
        .expect("web in plan");
    assert_eq!(web["action"], json!("recreate"));
    assert!(web["changes"].to_string().contains("env.MODE"), "{web}");
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let after = ids(&name);
    assert_eq!(after[&format!("{name}-db")], before[&format!("{name}-db")]);
    assert_ne!(
        after[&format!("{name}-web")],
        before[&format!("{name}-web")]
    );

    // Destroy keeps the volume.
    let out = run(&ws, &["destroy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(containers_of(&name).is_empty());
    assert_eq!(volumes_of(&name), vec![format!("{name}-db-data")]);
    let out = run(&ws, &["destroy", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(volumes_of(&name).is_empty());
}

#[test]
fn cli_invalid_file_exits_2_and_touches_nothing() {
    let name = unique_name("invalid");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.a]\nimage = \"{}\"\nlinks = [\"nosuch\"]\n",
            base_image()
        ),
    );
    for cmd in ["plan", "apply"] {
        let out = run(&ws, &[cmd, "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
    }
    assert!(containers_of(&name).is_empty());
    assert!(volumes_of(&name).is_empty());
    assert!(networks_of(&name).is_empty());
    assert!(!ws.state_dir().join("instances").exists());
}

#[test]
fn cli_sigkill_during_apply_then_apply_converges() {
    // An apply killed at varied points (before, during and after its
    // removes, creates and starts) leaves the engine finishing its requests;
    // the very next apply must converge anyway, every round.
    const N: usize = 6;
    let name = unique_name("sigkill");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("berth.toml", &toml_services(&name, N, "0"));
    let out = run(&ws, &["apply", "--integration", "docker", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let first = format!("{name}-s01");
    exec_ok(&first, &["sh", "-c", "echo keep > /data/f"]);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut rounds = 0;
    // Kill points: at fixed times (image checks, plan, stops), and just as
    // the first old container has stopped, when the apply's removes,
    // creates and starts are in flight (plus 0 to 300 ms); as many rounds
    // as fit.
    let kills: [(bool, u64); 12] = [
        (true, 0),
        (false, 40),
        (true, 50),
        (true, 0),
        (false, 400),
        (true, 150),
        (true, 0),
        (true, 300),
        (false, 150),
        (true, 20),
        (true, 100),
        (true, 0),
    ];
    for (round, (after_stop, ms)) in kills.into_iter().enumerate() {
        if round >= 5 && started.elapsed() > std::time::Duration::from_secs(40) {
            break;
        }
        rounds += 1;
        let v = (round + 1).to_string();
        ws.write("berth.toml", &toml_services(&name, N, &v));
        let mut child = std::process::Command::new(bin())
            .args(["apply", "--integration", "docker", "-q"])
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("BERTH_UNIT_DIR", ws.unit_dir())
            .current_dir(ws.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn apply");
        if after_stop {
            let filter = format!("label=berth.deployment={name}");
            loop {
                let states =
                    docker_ok(&["ps", "-a", "--filter", &filter, "--format", "{{.State}}"]);
                let states: Vec<&str> = states.lines().collect();
                let exited = states.len() < N || states.iter().any(|s| *s != "running");
                if exited || matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = run(&ws, &["apply", "--integration", "docker", "-q"]);
        if out.status.code() != Some(0) {
            failures.push(format!(
                "round {round} (killed after {ms} ms): {}",
                show(&out)
            ));
            // Converge for the next round (and the checks below).
            let out = run(&ws, &["apply", "--integration", "docker", "-q"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}, second apply: {}",
                show(&out)
            );
        }
        let out = run(&ws, &["plan", "--integration", "docker"]);
        let listing = || {
            docker_ok(&[
                "ps",
                "-a",
                "--filter",
                &format!("label=berth.deployment={name}"),
                "--format",
                "{{.Names}} {{.State}} {{.CreatedAt}} {{.Labels}}",
            ])
        };
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}\n{}",
            show(&out),
            listing()
        );
        // One engine call for all: every container runs the new spec.
        let cs = containers_of(&name);
        assert_eq!(cs.len(), N, "round {round}: {cs:?}");
        let mut args = vec![
            "inspect",
            "--format",
            "{{.State.Running}} {{range .Config.Env}}{{.}} {{end}}",
        ];
        args.extend(cs.iter().map(String::as_str));
        let states = docker_ok(&args);
        for line in states.lines() {
            assert!(line.starts_with("true "), "round {round}: {states}");
            assert!(
                line.contains(&format!(" V={v} ")),
                "round {round}: {states}"
            );
        }
        assert_eq!(volumes_of(&name), vec![format!("{first}-data")]);
    }
    assert_eq!(exec_ok(&first, &["cat", "/data/f"]), "keep");
    assert!(
        failures.is_empty(),
        "the first apply after a killed one failed in {} of {rounds} rounds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_between_plan_and_start_is_created_again() {
    // What a killed apply's remove, still in the engine, does to the next
    // apply: the plan saw the container, and it is gone when started.
    let name = unique_name("gone");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let dep = deployment(&name, vec![svc("a", base_image(), json!({}))]);
    apply_docker(&ws, &dep).await;
    let c = format!("{name}-a");
    docker_ok(&["stop", "-t", "0", &c]);
    let plan = plan_docker(&ws, &dep).await;
    let item = plan
        .instances
        .iter()
        .find(|i| i.container == c)
        .expect("instance in plan");
    assert_eq!(item.action, Action::Start, "{plan:?}");
    let old = id_of(&c);
    docker_ok(&["rm", "-f", &c]);
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    berth::target::docker::converge_instance(&engine, &state, item, 1)
        .await
        .unwrap_or_else(|e| panic!("converge: {e}"));
    assert!(running(&c));
    assert_ne!(id_of(&c), old);
    assert!(!plan_docker(&ws, &dep).await.has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_between_plan_and_create_by_another_deployment_is_left_alone() {
    let name = unique_name("taken");
    let other = unique_name("taken-other");
    let _cleanup = Cleanup::new(&name);
    let _other_cleanup = Cleanup::new(&other);
    let ws = Workspace::new();
    let dep = deployment(&name, vec![svc("a", base_image(), json!({}))]);
    let plan = plan_docker(&ws, &dep).await;
    let item = plan.instances.first().expect("instance in plan");
    assert_eq!(item.action, Action::Create);
    // The name is taken after the plan, by a container of another deployment.
    let c = format!("{name}-a");
    docker_ok(&[
        "create",
        "--name",
        &c,
        "--label",
        &format!("berth.deployment={other}"),
        base_image(),
        "sleep",
        "3600",
    ]);
    let foreign = id_of(&c);
    let engine = engine().await;
    engine.ensure_network(&name).await.expect("network");
    let state = StateDir::new(ws.state_dir());
    let err = berth::target::docker::converge_instance(&engine, &state, item, 1)
        .await
        .expect_err("another deployment's container is not taken over");
    assert!(
        err.to_string()
            .contains(&format!("container {c} belongs to deployment {other}")),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2, "a conflict is refused input: {err}");
    assert_eq!(id_of(&c), foreign);
}

#[test]
fn cli_two_concurrent_applies_both_succeed_without_duplicates() {
    let name = unique_name("concurrent");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("berth.toml", &toml_services(&name, 6, "x"));
    let spawn = || {
        std::process::Command::new(bin())
            .args(["apply", "--integration", "docker"])
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("BERTH_UNIT_DIR", ws.unit_dir())
            .env("NO_COLOR", "1")
            .current_dir(ws.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn apply")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert_eq!(a.status.code(), Some(0), "{}", show(&a));
    assert_eq!(b.status.code(), Some(0), "{}", show(&b));
    assert_eq!(containers_of(&name).len(), 6);
    let out = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The revision advanced once: the second apply found nothing to do.
    let rev: Value = serde_json::from_str(
        &std::fs::read_to_string(
            ws.state_dir()
                .join(format!("deployments/{name}/current.json")),
        )
        .expect("current.json"),
    )
    .expect("revision JSON");
    assert_eq!(rev["revision"], json!(1));
}

#[test]
fn cli_pull_with_credentials_from_docker_config() {
    let name = unique_name("cliauth");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let mut locked = Registry::start(Some(("berth", "s3cret")));
    let local = busybox_image("cliauth", "LABEL cliauth=yes");
    let private = locked.push(&local, &format!("{name}/app:1"));
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.app]\nimage = \"{private}\"\ncommand = [\"sleep\", \"3600\"]\nstop_timeout = 1\n"
        ),
    );
    let apply_with = |config: &std::path::Path| {
        std::process::Command::new(bin())
            .args(["apply", "--integration", "docker"])
            .env("BERTH_STATE_DIR", ws.state_dir())
            .env("DOCKER_CONFIG", config)
            .env("NO_COLOR", "1")
            .current_dir(ws.path())
            .output()
            .expect("run apply")
    };
    let empty = tempfile::tempdir().expect("empty dir");
    let out = apply_with(empty.path());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&private) && err.contains("docker login"),
        "{err}"
    );
    assert!(containers_of(&name).is_empty());
    assert!(
        networks_of(&name).is_empty(),
        "nothing touched before the pull"
    );

    let out = apply_with(&locked.client_config);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(running(&format!("{name}-app")));
    // Plain progress lines when not on a terminal.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{private}: pulling")),
        "{}",
        show(&out)
    );
}

#[test]
fn cli_systemd_integration_refuses_without_systemd_and_writes_units_with_no_systemctl() {
    if berth::target::systemd::ctl::systemd_running() {
        return; // proven by the systemd host tests instead
    }
    let name = unique_name("clisd");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write("berth.toml", &toml_services(&name, 2, "x"));
    let out = run(&ws, &["apply", "--integration", "systemd"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("systemd is not running"),
        "{}",
        show(&out)
    );
    assert!(!ws.unit_dir().exists(), "nothing written");
    let out = run(
        &ws,
        &["apply", "--integration", "systemd", "--no-systemctl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("systemctl daemon-reload"), "{stdout}");
    for i in ["s01", "s02"] {
        let unit = ws.unit_dir().join(format!("berth-{name}-{i}.service"));
        let text = std::fs::read_to_string(&unit).expect("unit");
        assert!(text.contains("supervise"), "{text}");
    }
    let out = run(&ws, &["plan", "--integration", "systemd"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // destroy removes the units
    let out = run(&ws, &["destroy", "--no-systemctl"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        std::fs::read_dir(ws.unit_dir())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );

    // Switching from systemd to Docker restart policies: the units go.
    let out = run(
        &ws,
        &["apply", "--integration", "systemd", "--no-systemctl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("remove    unit berth-{name}-s01.service")),
        "{text}"
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(containers_of(&name).len(), 2);
    let out = run(&ws, &["destroy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        std::fs::read_dir(ws.unit_dir())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

/// Removes one container by name on drop (for containers a test made
/// without berth's labels).
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn cli_apply_refuses_to_replace_a_container_it_did_not_create() {
    let name = unique_name("foreign");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let c = format!("{name}-app");
    let _foreign = RemoveOnDrop(c.clone());
    docker_ok(&["create", "--name", &c, base_image(), "sleep", "1"]);
    let foreign_id = id_of(&c);
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.app]\nimage = \"{}\"\ncommand = [\"sleep\", \"3600\"]\n",
            base_image()
        ),
    );
    // Found by the plan, before anything is touched: exit 2.
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("container {c} exists and was not made by berth")),
        "{err}"
    );
    assert_eq!(id_of(&c), foreign_id, "the foreign container is untouched");
    assert!(networks_of(&name).is_empty(), "the network was created");
}

#[test]
fn cli_unreachable_engine_is_a_clear_error() {
    let ws = Workspace::new();
    let name = unique_name("noengine");
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n[services.a]\nimage = \"busybox\"\n"),
    );
    let out = std::process::Command::new(bin())
        .args(["plan"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("BERTH_STATE_DIR", ws.state_dir())
        .current_dir(ws.path())
        .output()
        .expect("run plan");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the engine at unix:///nonexistent/docker.sock"),
        "{err}"
    );
}

/// Every kind of invalid input is refused by `apply` with exit 2 before the
/// engine or the state directory is touched.
#[test]
fn cli_rejections_leave_engine_and_state_untouched() {
    let img = base_image();
    let cases: Vec<(&str, String)> = vec![
        (
            "unknownkey",
            format!("[services.a]\nimage = \"{img}\"\nimagee = \"x\"\n"),
        ),
        (
            "badport",
            format!("[services.a]\nimage = \"{img}\"\nports = [\"99999:80\"]\n"),
        ),
        (
            "badlink",
            format!("[services.a]\nimage = \"{img}\"\nlinks = [\"nosuch\"]\n"),
        ),
        (
            "zerocount",
            format!("[services.a]\nimage = \"{img}\"\ncount = 0\n"),
        ),
        (
            "badsvcname",
            format!("[services.\"a/b\"]\nimage = \"{img}\"\n"),
        ),
        (
            "undefinedvar",
            format!(
                "[services.a]\nimage = \"{img}\"\nenv = {{ X = \"${{NOPE_UNDEFINED_VAR}}\" }}\n"
            ),
        ),
        ("syntax", format!("[services.a\nimage = \"{img}\"\n")),
        (
            "missingenvfile",
            format!("[services.a]\nimage = \"{img}\"\nenv_file = \"nope.env\"\n"),
        ),
        (
            "relvolume",
            format!("[services.a]\nimage = \"{img}\"\nvolumes = [\"data:relative/path\"]\n"),
        ),
    ];
    for (tag, body) in cases {
        let name = unique_name(tag);
        let _cleanup = Cleanup::new(&name);
        let ws = Workspace::new();
        ws.write("berth.toml", &format!("name = \"{name}\"\n{body}"));
        let out = run(&ws, &["apply", "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{tag}: {}", show(&out));
        assert!(!out.stderr.is_empty(), "{tag}: says why");
        assert!(containers_of(&name).is_empty(), "{tag}");
        assert!(volumes_of(&name).is_empty(), "{tag}");
        assert!(networks_of(&name).is_empty(), "{tag}");
        assert!(!ws.state_dir().exists(), "{tag}: state untouched");
    }
}

/// An instance the operator stopped (`<state>/instances/<container>.stopped`)
/// stays stopped through apply, even when its spec changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_stopped_instance_stays_stopped_through_apply() {
    let name = unique_name("stopped");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let mk = |v: &str| {
        deployment(
            &name,
            vec![
                svc("a", img, json!({"env": {"V": v}})),
                svc("b", img, json!({"env": {"V": v}})),
            ],
        )
    };
    apply_docker(&ws, &mk("1")).await;
    let a = format!("{name}-a");
    let b = format!("{name}-b");
    // What `berth stop a` does: the marker, then the container stopped.
    let state = StateDir::new(ws.state_dir());
    std::fs::write(state.stopped_marker(&a), b"").expect("marker");
    docker_ok(&["stop", "-t", "1", &a]);

    let plan = plan_docker(&ws, &mk("1")).await;
    assert!(!plan.has_changes(), "{}", plan.render());
    apply_docker(&ws, &mk("1")).await;
    assert!(!running(&a), "unchanged: stays stopped");

    let report = apply_docker(&ws, &mk("2")).await;
    let item = report
        .plan
        .instances
        .iter()
        .find(|i| i.container == a)
        .expect("a planned");
    assert_eq!(item.action, Action::Recreate);
    assert!(item.stopped_by_operator);
    assert!(!running(&a), "changed: recreated but still stopped");
    let env = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &a,
    ]);
    assert!(env.lines().any(|l| l == "V=2"), "{env}");
    assert!(running(&b));
}

/// A service that cannot start fails the apply, naming it; independent
/// services still converge and those linking to it are skipped. Fixing
/// the file and applying again converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_instance_spares_independent_services() {
    let name = unique_name("partial");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let mk = |cmd: &str| {
        deployment(
            &name,
            vec![
                svc("bad", img, json!({"command": [cmd]})),
                svc(
                    "dependent",
                    img,
                    json!({"links": [{"target": "bad", "alias": "bad"}]}),
                ),
                svc("good", img, json!({})),
            ],
        )
    };
    let engine = engine().await;
    let state = StateDir::new(ws.state_dir());
    let o = opts(&ws, Integration::Docker);
    let err = apply::apply(&engine, &state, &mk("/no/such/binary"), &o, apply::quiet())
        .await
        .expect_err("bad cannot start");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{name}-bad")), "{msg}");
    assert!(
        msg.contains(&format!(
            "{name}-dependent: skipped, its link target bad failed"
        )),
        "{msg}"
    );
    assert!(
        running(&format!("{name}-good")),
        "independent service converged"
    );
    assert!(inspect("container", &format!("{name}-dependent")).is_none());

    let fixed = mk("sleep");
    let fixed = {
        let mut d = fixed;
        if let Some(s) = d.services.get_mut("bad") {
            s.command = Some(vec!["sleep".into(), "3600".into()]);
        }
        d
    };
    apply::apply(&engine, &state, &fixed, &o, apply::quiet())
        .await
        .expect("fixed apply converges");
    for s in ["bad", "dependent", "good"] {
        assert!(running(&format!("{name}-{s}")), "{s}");
    }
}

/// What the engine shows matches every container setting the file gives.
#[test]
fn cli_container_settings_match_the_file() {
    let name = unique_name("settings");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let img = base_image();
    let port = free_port();
    ws.write("app.env", "FROM_FILE=yes\nSHARED=file\n");
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"

[services.app]
image = "{img}"
entrypoint = ["sh", "-c"]
command = ["exec sleep 3600"]
env_file = "app.env"
env = {{ SHARED = "env", PLAIN = "1" }}
ports = ["127.0.0.1:{port}:8080/udp", "9090"]
volumes = ["data:/data:ro", "{host}:/hostdir"]
user = "1000:1000"
workdir = "/tmp"
hostname = "box"
labels = {{ "org.example.role" = "app" }}
stop_timeout = 7
stop_signal = "SIGUSR1"
memory = "64m"
cpus = 0.5
read_only = true
tmpfs = ["/run", "/scratch:size=16m"]
cap_add = ["NET_ADMIN"]
cap_drop = ["MKNOD"]
restart = "on-failure"
"#,
            host = ws.path().display()
        ),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let c = format!("{name}-app");
    let i = inspect("container", &c).expect("inspect");
    let cfg = &i["Config"];
    let host = &i["HostConfig"];
    assert_eq!(cfg["Entrypoint"], json!(["sh", "-c"]));
    assert_eq!(cfg["Cmd"], json!(["exec sleep 3600"]));
    let env: Vec<String> = cfg["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for e in ["FROM_FILE=yes", "SHARED=env", "PLAIN=1"] {
        assert!(env.iter().any(|x| x == e), "{e} in {env:?}");
    }
    assert_eq!(cfg["User"], json!("1000:1000"));
    assert_eq!(cfg["WorkingDir"], json!("/tmp"));
    assert_eq!(cfg["Hostname"], json!("box"));
    assert_eq!(cfg["Labels"]["org.example.role"], json!("app"));
    assert_eq!(cfg["StopSignal"], json!("SIGUSR1"));
    assert_eq!(cfg["StopTimeout"], json!(7));
    assert_eq!(host["Memory"], json!(64 * 1024 * 1024));
    assert_eq!(host["NanoCpus"], json!(500_000_000));
    assert_eq!(host["ReadonlyRootfs"], json!(true));
    assert_eq!(host["Tmpfs"]["/run"], json!(""));
    assert_eq!(host["Tmpfs"]["/scratch"], json!("size=16m"));
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(host["CapDrop"], json!(["MKNOD"]));
    assert_eq!(host["RestartPolicy"]["Name"], json!("on-failure"));
    assert_eq!(
        host["PortBindings"]["8080/udp"][0],
        json!({"HostIp": "127.0.0.1", "HostPort": port.to_string()})
    );
    assert!(host["PortBindings"]["9090/tcp"].is_array(), "{host}");
    let mounts = i["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m["Name"] == json!(format!("{c}-data"))
                && m["Destination"] == json!("/data")
                && m["RW"] == json!(false)),
        "{mounts:?}"
    );
    assert!(
        mounts
            .iter()
            .any(|m| m["Type"] == json!("bind") && m["Destination"] == json!("/hostdir")),
        "{mounts:?}"
    );
    assert!(running(&c));
    // And the process really runs as that user, in that directory.
    assert_eq!(exec_ok(&c, &["id", "-u"]), "1000");
    assert_eq!(exec_ok(&c, &["pwd"]), "/tmp");
}
