//! `--target swarm` on a real three-node swarm (`berth_test_support::swarm`):
//! berth talks to the manager's engine, one Swarm service per berth service.
//! Services are reached by name with `endpoint_mode = "dnsrr"`: the virtual
//! IP needs IPVS, which this kind of machine lacks.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_test_support::swarm::SwarmCluster;

use crate::support::{Workspace, base_image, bin, show, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// Run berth against the cluster's manager, with the swarm as target (by
/// `BERTH_TARGET`, as an operator's environment would set it), reaching
/// the other nodes' engines through `nodes.toml` in the workspace.
pub(crate) fn berth(c: &SwarmCluster, ws: &Workspace, args: &[&str]) -> Output {
    berth_command(c, ws, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run berth: {e}"))
}

/// [`berth`] not yet run.
pub(crate) fn berth_command(c: &SwarmCluster, ws: &Workspace, args: &[&str]) -> Command {
    let nodes = ws.path().join("nodes.toml");
    if !nodes.exists() {
        ws.write("nodes.toml", &c.nodes_file());
    }
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("DOCKER_HOST", c.manager_host())
        .env("BERTH_TARGET", "swarm")
        .env("BERTH_NODES", &nodes)
        .env("NO_COLOR", "1")
        .current_dir(ws.path())
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn ok(c: &SwarmCluster, ws: &Workspace, args: &[&str]) -> String {
    let out = berth(c, ws, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed:\n{}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A service's object version (it changes with every update).
fn version(c: &SwarmCluster, service: &str) -> String {
    c.docker_ok(
        0,
        &["service", "inspect", "-f", "{{.Version.Index}}", service],
    )
}

/// The deployment's services on the swarm.
fn services_of(c: &SwarmCluster, name: &str) -> Vec<String> {
    let out = c.docker_ok(
        0,
        &[
            "service",
            "ls",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "--format",
            "{{.Name}}",
        ],
    );
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

/// Serves `text` on port 80; stops at once on SIGTERM.
fn serve(text: &str) -> String {
    format!(
        r#"["sh", "-c", "mkdir -p /www && echo {text} > /www/index.html; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#
    )
}

fn lifecycle_file(name: &str, image: &str, mode: &str, extra: bool) -> String {
    let mut f = format!(
        r#"name = "{name}"

[services.db]
image = "{image}"
endpoint_mode = "dnsrr"
count = 3
command = {db}
stop_timeout = 2

[services.web]
image = "{image}"
endpoint_mode = "dnsrr"
links = ["db"]
ports = ["8080:80"]
env = {{ MODE = "{mode}" }}
command = {web}
stop_timeout = 2
"#,
        db = serve("db-answers"),
        web = serve("web-$MODE"),
    );
    if extra {
        f.push_str(&format!(
            "\n[services.extra]\nimage = \"{image}\"\nendpoint_mode = \"dnsrr\"\ncommand = {}\nstop_timeout = 2\n",
            serve("extra")
        ));
    }
    f
}

#[test]
fn apply_on_a_swarm_spreads_links_by_name_publishes_host_ports_updates_only_what_changed_and_destroys()
 {
    let c = SwarmCluster::start(3);
    let image = base_image();
    c.load_image(image);
    let ws = Workspace::new();
    let name = unique_name("sw");
    let file = ws.write("berth.toml", &lifecycle_file(&name, image, "one", true));
    let file = file.to_str().unwrap_or_else(|| panic!("path"));
    let (db, web, extra) = (
        format!("{name}-db"),
        format!("{name}-web"),
        format!("{name}-extra"),
    );

    let out = berth(&c, &ws, &["-f", file, "plan"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    // The image was only loaded on the nodes: no registry names its digest,
    // which the plan says once for the three services using it.
    let text = show(&out);
    assert_eq!(text.matches("could not be asked").count(), 1, "{text}");
    ok(&c, &ws, &["-f", file, "apply"]);
    assert_eq!(
        services_of(&c, &name),
        [db.clone(), extra.clone(), web.clone()]
    );

    // ps: one row per task with its node; db's three spread over three nodes.
    let ps = ok(&c, &ws, &["-f", file, "ps"]);
    let nodes_of = |ps: &str, service: &str| {
        let mut v: Vec<String> = ps
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(service))
            .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
            .collect();
        v.sort();
        v
    };
    assert_eq!(nodes_of(&ps, "db"), ["node0", "node1", "node2"], "{ps}");
    let web_node = nodes_of(&ps, "web");
    assert_eq!(web_node.len(), 1, "{ps}");
    let node = (0..c.nodes())
        .find(|n| c.hostname(*n) == web_node[0])
        .unwrap_or_else(|| panic!("web runs on an unknown node: {ps}"));

    // The host-mode port answers on the address of web's node.
    let mut answer = None;
    assert!(
        wait_for(WAIT, || {
            answer = c.http_get(c.addr(node), 8080, "/");
            answer.as_deref().is_some_and(|a| a.contains("web-one"))
        }),
        "{}:8080 did not answer web-one: {answer:?}",
        c.addr(node)
    );
    // web reaches db by name (db's tasks run on every node: by round
    // robin, across nodes).
    let id = c.docker_ok(
        node,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={web}"),
        ],
    );
    let id = id
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no web task on node{node}"))
        .to_string();
    let mut got = String::new();
    assert!(
        wait_for(WAIT, || {
            let out = c.docker(node, &["exec", &id, "wget", "-q", "-O", "-", "http://db/"]);
            got = show(&out);
            String::from_utf8_lossy(&out.stdout).contains("db-answers")
        }),
        "web did not reach db by name:\n{got}"
    );

    // Re-apply: nothing to do, nothing updated.
    let before = (version(&c, &db), version(&c, &web));
    let out = berth(&c, &ws, &["-f", file, "plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    ok(&c, &ws, &["-f", file, "apply"]);
    assert_eq!((version(&c, &db), version(&c, &web)), before);

    // An env change updates web only; the service left out of the file goes.
    ws.write("berth.toml", &lifecycle_file(&name, image, "two", false));
    let out = berth(&c, &ws, &["-f", file, "plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text.contains("env.MODE"), "{text}");
    assert!(text.contains(&format!("remove    {extra}")), "{text}");
    ok(&c, &ws, &["-f", file, "apply"]);
    assert_eq!(version(&c, &db), before.0, "db was updated");
    assert_ne!(version(&c, &web), before.1, "web was not updated");
    assert_eq!(services_of(&c, &name), [db.clone(), web.clone()]);
    let ps = ok(&c, &ws, &["-f", file, "ps"]);
    let node = (0..c.nodes())
        .find(|n| nodes_of(&ps, "web") == [c.hostname(*n)])
        .unwrap_or_else(|| panic!("web is not running on one node: {ps}"));
    let answer = c.http_get(c.addr(node), 8080, "/");
    assert!(
        answer.as_deref().is_some_and(|a| a.contains("web-two")),
        "{}:8080 after the update: {answer:?}",
        c.addr(node)
    );

    ok(&c, &ws, &["-f", file, "destroy"]);
    assert!(services_of(&c, &name).is_empty());
    let nets = c.docker_ok(
        0,
        &[
            "network",
            "ls",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "-q",
        ],
    );
    assert!(nets.trim().is_empty(), "network left: {nets}");
}

#[test]
fn a_failing_update_on_a_swarm_is_rolled_back_and_apply_fails_naming_the_task() {
    let c = SwarmCluster::start(3);
    let image = base_image();
    c.load_image(image);
    let ws = Workspace::new();
    let name = unique_name("swrb");
    let app = format!("{name}-app");
    let base = format!("{name}-base");
    // `base` changes with `app` and converges first (app links to it): the
    // failed apply must put it back too.
    let file = |healthy: bool| {
        let touch = if healthy { "touch /tmp/ok; " } else { "" };
        format!(
            r#"name = "{name}"

[services.base]
image = "{image}"
endpoint_mode = "dnsrr"
env = {{ GOOD = "{healthy}" }}
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
stop_timeout = 2

[services.app]
image = "{image}"
endpoint_mode = "dnsrr"
links = ["base"]
command = ["sh", "-c", "{touch}trap 'exit 0' TERM; sleep 3600 & wait"]
stop_timeout = 2
health = {{ cmd = ["test", "-f", "/tmp/ok"], interval = "1s", retries = 1 }}
"#
        )
    };
    let env_of = |service: &str| {
        c.docker_ok(
            0,
            &[
                "service",
                "inspect",
                "-f",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                service,
            ],
        )
    };
    let path = ws.write("berth.toml", &file(true));
    let path = path.to_str().unwrap_or_else(|| panic!("path"));
    ok(&c, &ws, &["-f", path, "apply"]);
    let good = c.docker_ok(
        0,
        &[
            "service",
            "inspect",
            "-f",
            "{{index .Spec.Labels \"berth.spec-hash\"}}",
            &app,
        ],
    );

    ws.write("berth.toml", &file(false));
    let out = berth(&c, &ws, &["-f", path, "apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply succeeded:\n{}", show(&out));
    assert!(
        err.contains("rolled back") && err.contains(&format!("task {app}.1")),
        "{}",
        show(&out)
    );
    // base had converged on its new spec; it is put back as well.
    assert!(
        err.contains(&format!("put back: {base} (rolled back)")),
        "{}",
        show(&out)
    );
    assert!(env_of(&base).contains("GOOD=true"), "{}", env_of(&base));
    // The previous spec runs again, healthy; the file still differs.
    assert_eq!(
        c.docker_ok(
            0,
            &[
                "service",
                "inspect",
                "-f",
                "{{index .Spec.Labels \"berth.spec-hash\"}}",
                &app
            ]
        ),
        good
    );
    assert!(
        wait_for(WAIT, || {
            let out = berth(&c, &ws, &["-f", path, "ps"]);
            String::from_utf8_lossy(&out.stdout).contains("running")
        }),
        "app is not running again after the rollback"
    );
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
}

/// The node (index) running `service`'s task, if one runs.
pub(crate) fn running_on(c: &SwarmCluster, service: &str) -> Option<usize> {
    let out = c.docker(
        0,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            service,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| l.contains("Running"))
        .filter_map(|l| l.split_whitespace().next())
        .find_map(|node| (0..c.nodes()).find(|i| c.hostname(*i) == node))
}

/// Run `script` in the service's container on `node`.
pub(crate) fn exec_on(c: &SwarmCluster, node: usize, service: &str, script: &str) -> String {
    let id = c.docker_ok(
        node,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ],
    );
    let id = id.lines().next().unwrap_or_default().to_string();
    c.docker_ok(node, &["exec", &id, "sh", "-c", script])
}

#[test]
fn a_service_with_volumes_stays_on_the_node_holding_them() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let name = unique_name("swpin");
    ws.write(
        "berth.toml",
        &format!(
            r#"name = "{name}"

[services.store]
image = "{image}"
endpoint_mode = "dnsrr"
volumes = ["data:/data"]
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#,
            image = base_image()
        ),
    );
    let out = berth(&c, &ws, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("pinned store to node"),
        "{}",
        show(&out)
    );
    let service = format!("{name}-store");
    assert!(wait_for(WAIT, || running_on(&c, &service).is_some()));
    let node = running_on(&c, &service).unwrap_or_else(|| panic!("no task of {service}"));
    assert_ne!(node, 0, "a worker holds the data, not the manager");
    exec_on(&c, node, &service, "echo kept > /data/f");

    // Its node goes away: the task is not started on a node without the data.
    c.kill_engine(node);
    c.wait_node(node, "down");
    let elsewhere = wait_for(Duration::from_secs(8), || {
        running_on(&c, &service).is_some_and(|n| n != node)
    });
    assert!(
        !elsewhere,
        "{service} started on a node without its volumes"
    );

    // Back: it runs there again, with its data.
    c.start_engine(node);
    c.wait_node(node, "ready");
    assert!(
        wait_for(WAIT, || running_on(&c, &service) == Some(node)),
        "{service} did not come back on node {node}"
    );
    assert_eq!(exec_on(&c, node, &service, "cat /data/f"), "kept");
    // Re-apply is a no-op; a second replica with volumes is refused.
    let plan = berth(&c, &ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let text = std::fs::read_to_string(ws.path().join("berth.toml")).unwrap_or_default();
    ws.write(
        "berth.toml",
        &text.replace("stop_timeout = 2", "stop_timeout = 2\ncount = 2"),
    );
    let refused = berth(&c, &ws, &["plan"]);
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        show(&refused).contains("named volumes"),
        "{}",
        show(&refused)
    );
}

#[test]
fn history_and_rollback_on_a_swarm_return_to_the_previous_spec() {
    let c = SwarmCluster::start(3);
    c.load_image(base_image());
    let ws = Workspace::new();
    let name = unique_name("swrb");
    let file = |v: &str| {
        format!(
            r#"name = "{name}"

[services.app]
image = "{image}"
endpoint_mode = "dnsrr"
env = {{ V = "{v}" }}
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#,
            image = base_image()
        )
    };
    let env_of = |c: &SwarmCluster| {
        c.docker_ok(
            0,
            &[
                "service",
                "inspect",
                "-f",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                &format!("{name}-app"),
            ],
        )
    };
    ws.write("berth.toml", &file("one"));
    ok(&c, &ws, &["apply"]);
    ws.write("berth.toml", &file("two"));
    ok(&c, &ws, &["apply"]);
    assert!(env_of(&c).contains("V=two"), "{}", env_of(&c));
    let history = ok(&c, &ws, &["history"]);
    assert!(history.contains("swarm"), "{history}");
    assert_eq!(
        history
            .lines()
            .filter(|l| l.trim_start().starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );
    ok(&c, &ws, &["rollback"]);
    assert!(env_of(&c).contains("V=one"), "{}", env_of(&c));
    // The file still says `two`: plan shows the way back to it.
    let plan = berth(&c, &ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    assert!(
        show(&plan).contains(r#"env.V: "one" → "two""#),
        "{}",
        show(&plan)
    );
}

/// `docker service inspect` of a service: the whole JSON the engine gives.
fn inspect_service(c: &SwarmCluster, service: &str) -> String {
    c.docker_ok(0, &["service", "inspect", service])
}

/// Names of the deployment's Swarm configs or secrets (`kind`: `config`,
/// `secret`).
fn objects_of(c: &SwarmCluster, kind: &str, name: &str) -> Vec<String> {
    let out = c.docker_ok(
        0,
        &[
            kind,
            "ls",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "--format",
            "{{.Name}}",
        ],
    );
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn configs_and_secrets_roll_their_users_and_image_tags_resolve_to_digests_on_a_swarm() {
    let c = SwarmCluster::start(3);
    let image = base_image();
    c.load_image(image);
    let registry = c.start_registry();
    let ws = Workspace::new();
    let name = unique_name("swf");
    // An image only the cluster's registry has under this tag.
    let reference = format!("{registry}/berth-test/{name}:v");
    let first = c.push(0, image, &reference);
    let secret = format!("pw-{}", berth_test_support::short_hash(&name));
    ws.write("pw.txt", &secret);
    let (app, other) = (format!("{name}-app"), format!("{name}-other"));
    let file = |conf: &str| {
        format!(
            r#"name = "{name}"

[configs.conf]
content = "{conf}"

[secrets.pw]
file = "pw.txt"

[services.app]
image = "{reference}"
configs = [{{ source = "conf", target = "/etc/app.conf", uid = 1, gid = 2, mode = "0440", reload = "SIGHUP" }}]
secrets = [{{ source = "pw", target = "/etc/keys/pw", mode = "0400" }}]
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2

[services.other]
image = "{reference}"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#
        )
    };
    let path = ws.write("berth.toml", &file("conf-one"));
    let path = path.to_str().unwrap_or_else(|| panic!("path"));
    let never_shown = |out: &Output, what: &str| {
        let text = show(out);
        assert!(!text.contains(&secret), "{what} shows the secret:\n{text}");
    };

    let out = berth(&c, &ws, &["-f", path, "apply"]);
    assert!(out.status.success(), "{}", show(&out));
    never_shown(&out, "apply");
    assert!(
        !show(&out).contains("could not be asked"),
        "the registry was reachable:\n{}",
        show(&out)
    );
    // The spec runs the digest the registry gave; the secret is in no
    // spec, label or env.
    let spec = inspect_service(&c, &app);
    assert!(!spec.contains(&secret), "service inspect shows the secret");
    assert!(spec.contains(&format!("{reference}@{first}")), "{spec}");
    let configs = objects_of(&c, "config", &name);
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert!(
        configs[0].starts_with(&format!("{name}_conf_")),
        "{configs:?}"
    );
    let secrets = objects_of(&c, "secret", &name);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert!(
        secrets[0].starts_with(&format!("{name}_pw_")),
        "{secrets:?}"
    );

    // The task has both, with their owners and modes.
    assert!(wait_for(WAIT, || running_on(&c, &app).is_some()));
    let node = running_on(&c, &app).unwrap_or_else(|| panic!("no task of {app}"));
    assert_eq!(
        exec_on(
            &c,
            node,
            &app,
            "stat -c '%a %u:%g' /etc/app.conf /etc/keys/pw; cat /etc/app.conf; echo; cat /etc/keys/pw"
        ),
        format!("440 1:2\n400 0:0\nconf-one\n{secret}")
    );

    // Nothing new: plan says so, apply changes nothing.
    let before = (version(&c, &app), version(&c, &other));
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shown(&out, "plan");
    for args in [
        &["plan", "-o", "json"][..],
        &["ps"],
        &["ps", "--output", "json"],
        &["history"],
    ] {
        let out = berth(&c, &ws, &[&["-f", path][..], args].concat());
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        never_shown(&out, &args.join(" "));
    }
    ok(&c, &ws, &["-f", path, "apply"]);
    assert_eq!((version(&c, &app), version(&c, &other)), before);

    // A config change rolls its user only (reload cannot reach tasks on
    // other nodes) and the old config goes.
    ws.write("berth.toml", &file("conf-two"));
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("config conf: content changed"), "{text}");
    assert!(text.contains("the service rolls"), "{text}");
    assert!(
        text.contains(&format!(
            "remove    config {} (no service uses it)",
            configs[0]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("create    config {name}_conf_")),
        "{text}"
    );
    assert!(
        !text.contains("conf-two"),
        "plan shows the content:\n{text}"
    );
    let out = berth(&c, &ws, &["-f", path, "apply"]);
    assert!(out.status.success(), "{}", show(&out));
    never_shown(&out, "apply");
    assert_ne!(version(&c, &app), before.0, "app was not updated");
    assert_eq!(version(&c, &other), before.1, "other was updated");
    let now = objects_of(&c, "config", &name);
    assert_eq!(now.len(), 1, "the old config was not removed: {now:?}");
    assert_ne!(now, configs);
    assert_eq!(objects_of(&c, "secret", &name), secrets);
    let node = running_on(&c, &app).unwrap_or_else(|| panic!("no task of {app}"));
    assert_eq!(exec_on(&c, node, &app, "cat /etc/app.conf"), "conf-two");

    // The same tag pushed again: plan names both digests, apply rolls both
    // services onto the new one, and once more is a no-op.
    // (The newer build declares a volume: the spec is made from it, not
    // from the manager's older copy of the tag.)
    let newer = berth_test_support::busybox_image("swarmfiles-newer", "VOLUME /data");
    c.load_image(&newer);
    // Pushed from a worker: the manager's copy of the tag is the old one.
    let second = c.push(1, &newer, &reference);
    assert_ne!(first, second);
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!(
            "image: {reference}@{first} → {reference}@{second}"
        )),
        "{text}"
    );
    let before = (version(&c, &app), version(&c, &other));
    ok(&c, &ws, &["-f", path, "apply"]);
    assert_ne!(version(&c, &app), before.0);
    assert_ne!(version(&c, &other), before.1);
    let spec = inspect_service(&c, &other);
    assert!(spec.contains(&format!("{reference}@{second}")), "{spec}");
    assert!(spec.contains(r#""Target": "/data""#), "{spec}");
    let before = (version(&c, &app), version(&c, &other));
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    ok(&c, &ws, &["-f", path, "apply"]);
    assert_eq!((version(&c, &app), version(&c, &other)), before);

    // Rollback runs the digest the earlier revision ran (which any node
    // can pull), not the manager's image ID; the file then rolls forward.
    ok(&c, &ws, &["-f", path, "rollback"]);
    let spec = inspect_service(&c, &other);
    assert!(spec.contains(&format!("{reference}@{first}")), "{spec}");
    ok(&c, &ws, &["-f", path, "apply"]);
    let spec = inspect_service(&c, &other);
    assert!(spec.contains(&format!("{reference}@{second}")), "{spec}");
    let before = (version(&c, &app), version(&c, &other));

    // The registry gone: the services keep the digest they run (no
    // change), and the plan says once that it could not ask.
    c.stop_registry();
    let out = berth(&c, &ws, &["-f", path, "plan"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("could not be asked").count(), 1, "{text}");
    assert!(text.contains("keep the digest they run"), "{text}");

    // A config made by hand under the name the next content would get is
    // not taken over: plan and apply refuse, and change nothing.
    let sum = Command::new("sh")
        .args(["-c", "printf %s conf-three | sha256sum"])
        .output()
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    let sum = String::from_utf8_lossy(&sum.stdout);
    let squatter = format!("{name}_conf_{}", &sum[..12]);
    let hand = ws.write("hand.txt", "by hand");
    c.docker_ok(0, &["config", "create", &squatter, &hand.to_string_lossy()]);
    ws.write("berth.toml", &file("conf-three"));
    for cmd in ["plan", "apply"] {
        let out = berth(&c, &ws, &["-f", path, cmd]);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            show(&out).contains(&format!("config {squatter} exists on the swarm")),
            "{}",
            show(&out)
        );
    }
    assert_eq!((version(&c, &app), version(&c, &other)), before);
    c.docker_ok(0, &["config", "rm", &squatter]);

    let out = berth(&c, &ws, &["-f", path, "destroy"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(services_of(&c, &name).is_empty());
    assert!(objects_of(&c, "config", &name).is_empty());
    assert!(objects_of(&c, "secret", &name).is_empty());
    // The registry goes with the cluster.
    let tag = c.tag.clone();
    drop(c);
    let left = berth_test_support::swarm::leftovers(&tag);
    assert!(left.is_empty(), "the cluster left things behind: {left:?}");
}

/// The deployment's networks on the swarm.
fn networks_of(c: &SwarmCluster, name: &str) -> String {
    c.docker_ok(
        0,
        &[
            "network",
            "ls",
            "--filter",
            &format!("label=berth.deployment={name}"),
            "-q",
        ],
    )
}

#[test]
fn a_swarm_refuses_placements_it_cannot_hold_updates_stateless_services_without_a_failed_request_and_shows_tasks_in_ps_and_logs()
 {
    let c = SwarmCluster::start(3);
    let image = base_image();
    c.load_image(image);
    let ws = Workspace::new();
    let name = unique_name("swops");
    let service = |svc: &str, body: &str| {
        format!(
            "\n[services.{svc}]\nimage = \"{image}\"\nendpoint_mode = \"dnsrr\"\nstop_timeout = 2\ncommand = {}\n{body}\n",
            serve(svc)
        )
    };

    // Placements the three nodes cannot hold: refused by plan and apply
    // (exit 2, naming service and port), nothing created.
    for (body, says) in [
        (
            service("web", "count = 4\nports = [\"8081:80\"]"),
            vec!["service web", "8081/tcp", "3 nodes"],
        ),
        (
            service(
                "web",
                "count = 3\nports = [\"8081:80\"]\nupdate_config = { order = \"start-first\" }",
            ),
            vec!["service web", "8081/tcp", "start-first"],
        ),
        (
            service("a", "count = 2\nports = [\"8082:80\"]")
                + &service("b", "count = 2\nports = [\"8082:80\"]"),
            vec!["services a, b", "8082/tcp", "4 tasks"],
        ),
        (
            service("gw", "extra_hosts = [\"gw:host-gateway\"]"),
            vec!["service gw", "host-gateway"],
        ),
    ] {
        ws.write("berth.toml", &format!("name = \"{name}\"\n{body}"));
        for cmd in ["plan", "apply"] {
            let out = berth(&c, &ws, &[cmd]);
            assert_eq!(out.status.code(), Some(2), "{cmd}:\n{}", show(&out));
            for s in &says {
                assert!(show(&out).contains(s), "{cmd}: no {s:?} in\n{}", show(&out));
            }
        }
        assert!(services_of(&c, &name).is_empty(), "{body}");
        assert!(networks_of(&c, &name).is_empty(), "{body}");
    }

    // A stateless service (one task: no second replica to answer for it),
    // a spread one with a health check, and one with a volume.
    let file = |v: &str| {
        format!(
            r#"name = "{name}"

[services.app]
image = "{image}"
endpoint_mode = "dnsrr"
env = {{ V = "{v}" }}
command = {app}
stop_timeout = 2

[services.spread]
image = "{image}"
endpoint_mode = "dnsrr"
count = 3
command = ["sh", "-c", "echo spread-says-hello; touch /tmp/ok; trap 'exit 0' TERM; sleep 3600 & wait"]
health = {{ cmd = ["test", "-f", "/tmp/ok"], interval = "1s", retries = 1 }}
stop_timeout = 2

[services.store]
image = "{image}"
endpoint_mode = "dnsrr"
volumes = ["data:/data"]
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
stop_timeout = 2
"#,
            app = serve("app-$V"),
        )
    };
    ws.write("berth.toml", &file("one"));
    ok(&c, &ws, &["apply"]);
    let app = format!("{name}-app");
    let order = |svc: &str| {
        c.docker_ok(
            0,
            &[
                "service",
                "inspect",
                "-f",
                "{{.Spec.UpdateConfig.Order}}",
                svc,
            ],
        )
    };
    assert_eq!(order(&app), "start-first");
    assert_eq!(order(&format!("{name}-store")), "stop-first");

    // ps: every task with its node and health; the volume with its service.
    let mut ps = String::new();
    assert!(
        wait_for(WAIT, || {
            ps = ok(&c, &ws, &["ps"]);
            ps.lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("spread"))
                .filter(|l| l.split_whitespace().nth(5) == Some("healthy"))
                .count()
                == 3
        }),
        "spread's tasks are not all healthy:\n{ps}"
    );
    let mut spread_nodes: Vec<&str> = ps
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("spread"))
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    spread_nodes.sort_unstable();
    assert_eq!(spread_nodes, ["node0", "node1", "node2"], "{ps}");
    let store_line = ps
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("store"))
        .unwrap_or_else(|| panic!("no store row:\n{ps}"));
    assert!(
        store_line.contains(&format!("{name}-store-data")),
        "{store_line}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&c, &ws, &["ps", "--output", "json"]))
        .unwrap_or_else(|e| panic!("ps --output json: {e}"));
    let rows = json.as_array().cloned().unwrap_or_default();
    let store = rows
        .iter()
        .find(|r| r["service"] == "store")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(
        store["volumes"],
        serde_json::json!([format!("{name}-store-data")])
    );
    assert!(
        store["node"]
            .as_str()
            .is_some_and(|n| n.starts_with("node"))
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["service"] == "spread" && r["health"] == "healthy")
            .count(),
        3,
        "{json}"
    );

    // logs: each line prefixed with its task and node, every node's task.
    let logs = ok(&c, &ws, &["logs", "spread"]);
    for n in 0..c.nodes() {
        assert!(
            logs.lines()
                .any(|l| l.contains(&format!("@{} ", c.hostname(n)))
                    && l.ends_with("| spread-says-hello")),
            "no line from {}:\n{logs}",
            c.hostname(n)
        );
    }
    assert!(logs.contains(&format!("{name}-spread.1.")), "{logs}");
    let json_lines = ok(&c, &ws, &["logs", "spread", "--output", "json"]);
    let mut json_nodes: Vec<String> = json_lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .filter(|v| v["line"] == "spread-says-hello" && v["task_id"].is_string())
        .filter_map(|v| v["node"].as_str().map(String::from))
        .collect();
    json_nodes.sort();
    assert_eq!(json_nodes, ["node0", "node1", "node2"], "{json_lines}");
    let tail = ok(&c, &ws, &["logs", "spread", "--tail", "0"]);
    assert!(tail.trim().is_empty(), "{tail}");
    // -f streams every task and keeps following.
    let followed = ws.path().join("followed.log");
    let mut follow = berth_command(&c, &ws, &["logs", "spread", "-f"])
        .stdout(std::fs::File::create(&followed).unwrap_or_else(|e| panic!("{e}")))
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run berth logs -f: {e}"));
    let mut seen = String::new();
    let all_three = wait_for(WAIT, || {
        seen = std::fs::read_to_string(&followed).unwrap_or_default();
        seen.matches("| spread-says-hello").count() == 3
    });
    let still_following = matches!(follow.try_wait(), Ok(None));
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        all_three && still_following,
        "logs -f (following: {still_following}):\n{seen}"
    );
    let missing = berth(&c, &ws, &["logs", "nope"]);
    assert_eq!(missing.status.code(), Some(2), "{}", show(&missing));

    // A rolling update of app while a client on the deployment's network
    // (in spread's task on the manager) asks it by name, again and again:
    // not one request fails. The client stops once it has seen the new
    // version answer 20 times (or after 1500 requests).
    // Each request looks the name up afresh (nslookup) and asks the address
    // it got (nc; busybox's `wget -T` crashed in the test image).
    let script = "ok=0; fail=0; two=0; i=0; \
        while [ $i -lt 1500 ] && [ $two -lt 20 ]; do i=$((i+1)); \
        ip=$(nslookup app 2>/dev/null | sed -n 's/^Address: *\\([0-9.]*\\)$/\\1/p' | head -n 1); \
        r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \"$ip\" 80 2>&1 | tail -n 1); \
        case \"$r\" in app-one) ok=$((ok+1));; app-two) ok=$((ok+1)); two=$((two+1));; *) fail=$((fail+1)); echo \"fail: [$ip] [$r]\";; esac; \
        sleep 0.1; done; echo \"ok=$ok fail=$fail two=$two\"";
    let spread_on_manager = c.docker_ok(
        0,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}-spread"),
        ],
    );
    let id = spread_on_manager
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no spread task on node0"))
        .to_string();
    // Answering before the update starts.
    let once = script.replace("[ $two -lt 20 ]", "[ $i -lt 2 ]");
    let first = c.docker_ok(0, &["exec", &id, "sh", "-c", &once]);
    assert_eq!(first, "ok=2 fail=0 two=0", "app does not answer");
    let client = Command::new("docker")
        .args(["exec", &id, "sh", "-c", script])
        .env("DOCKER_HOST", c.manager_host())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker exec: {e}"));
    std::thread::sleep(Duration::from_secs(2));
    ws.write("berth.toml", &file("two"));
    let out = berth(&c, &ws, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("updating service {app}"))
            && show(&out).contains("1 recreated, 0 started, 0 removed, 2 unchanged"),
        "{}",
        show(&out)
    );
    let result = client
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the client: {e}"));
    let text = show(&result);
    let last = String::from_utf8_lossy(&result.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(" fail=0 ") && last.ends_with("two=20"),
        "requests failed during the rolling update:\n{text}"
    );
    let ok_count: u32 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ok="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        ok_count > 20,
        "app-one never answered before the update:\n{text}"
    );

    // A changed update_config is a change of the service's spec.
    ws.write(
        "berth.toml",
        &file("two").replace(
            "env = { V = \"two\" }",
            "env = { V = \"two\" }\nupdate_config = { delay = \"1s\" }",
        ),
    );
    let plan = berth(&c, &ws, &["plan"]);
    assert_eq!(plan.status.code(), Some(3), "{}", show(&plan));
    assert!(
        show(&plan).contains("update.delay_ms: 0 → 1000"),
        "{}",
        show(&plan)
    );
}

/// Build one of the mail example's images on the host engine, as
/// `examples/mail/run.sh` does (same tag, same content).
fn build_example_image(dir: &str, tag: &str) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mail/images")
        .join(dir);
    let ctx = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = Command::new("cp")
        .arg("-R")
        .arg(format!("{}/.", src.display()))
        .arg(ctx.path())
        .output()
        .unwrap_or_else(|e| panic!("cp: {e}"));
    assert!(cp.status.success(), "{}", show(&cp));
    std::fs::copy(crate::support::BUSYBOX, ctx.path().join("busybox"))
        .unwrap_or_else(|e| panic!("busybox: {e}"));
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("docker build: {e}"));
    assert!(out.status.success(), "{}", show(&out));
}

/// The mail example as shipped, on a three-node swarm: the webmail on one
/// node reaches mail on another by name (its page shows mail's SMTP
/// greeting and an IMAP answer), served on a host-mode port of its node;
/// the users config reaches mail; ssh grants are kept and warned of; a
/// second apply is a no-op. The test adds to the file only its own name,
/// `endpoint_mode = "dnsrr"` (no IPVS here) and a placement for each
/// service, so the two are on different nodes.
#[test]
fn the_mail_example_runs_on_a_swarm_with_webmail_reaching_mail_across_nodes() {
    for (dir, tag) in [
        ("mail", "berth-example/mail:1"),
        ("webmail", "berth-example/webmail:1"),
    ] {
        build_example_image(dir, tag);
    }
    let c = SwarmCluster::start(3);
    c.load_image("berth-example/mail:1");
    c.load_image("berth-example/webmail:1");
    let ws = Workspace::new();
    let name = unique_name("swmail");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail");
    let text = std::fs::read_to_string(src.join("berth.toml")).unwrap_or_else(|e| panic!("{e}"));
    let users = std::fs::read_to_string(src.join("users")).unwrap_or_else(|e| panic!("{e}"));
    ws.write("users", &users);
    let mut edited = text.replace("name = \"mailexample\"", &format!("name = \"{name}\""));
    for (svc, node) in [("mail", c.hostname(1)), ("webmail", c.hostname(2))] {
        let header = format!("[services.{svc}]\n");
        assert!(edited.contains(&header), "{svc} in the example");
        edited = edited.replace(
            &header,
            &format!(
                "{header}endpoint_mode = \"dnsrr\"\nplacement = [\"node.hostname=={node}\"]\n"
            ),
        );
    }
    assert_ne!(edited, text);
    let file = ws.write("berth.toml", &edited);
    let file = file.to_str().unwrap_or_else(|| panic!("path"));
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "swarm-test", "-f"])
        .arg(ws.path().join("key"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(keygen.status.success(), "{}", show(&keygen));
    let key = std::fs::read_to_string(ws.path().join("key.pub")).unwrap_or_else(|e| panic!("{e}"));
    let set = format!("MAIL_SSH_KEY={}", key.trim());

    let out = berth(&c, &ws, &["-f", file, "--set", &set, "apply"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("service mail: its ssh keys are not served on a swarm yet"),
        "{text}"
    );

    // The page, from the bridge namespace, on the webmail node's address.
    let mut page = String::new();
    let answered = wait_for(WAIT, || {
        page = c
            .http_get(c.addr(2), 18480, "/cgi-bin/index.cgi")
            .unwrap_or_default();
        page.contains("smtp greeting: 220") && page.contains("imap: * STATUS")
    });
    assert!(answered, "webmail never reached mail: {page}");
    assert!(
        page.contains("MAIL_PORT_25_TCP_ADDR="),
        "link variables: {page}"
    );

    // Where each runs, as ps shows it.
    let ps = ok(
        &c,
        &ws,
        &["-f", file, "--set", &set, "ps", "--output", "json"],
    );
    let rows: serde_json::Value = serde_json::from_str(&ps).unwrap_or_else(|e| panic!("{e}: {ps}"));
    let node_of = |svc: &str| -> String {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["service"] == svc))
            .and_then(|r| r["node"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(node_of("mail"), c.hostname(1), "{ps}");
    assert_eq!(node_of("webmail"), c.hostname(2), "{ps}");

    let out = berth(&c, &ws, &["-f", file, "--set", &set, "plan"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second apply is a no-op: {}",
        show(&out)
    );
    ok(&c, &ws, &["-f", file, "--set", &set, "destroy"]);
}

/// When a service was created, from `docker service inspect`.
fn created_at(c: &SwarmCluster, service: &str) -> std::time::SystemTime {
    let t = c.docker_ok(0, &["service", "inspect", "-f", "{{.CreatedAt}}", service]);
    // Go prints `2026-12-02 18:05:01.123456789 +0000 UTC`.
    let rfc = t
        .trim_end_matches(" UTC")
        .trim_end_matches(" +0000")
        .replacen(' ', "T", 1);
    humantime::parse_rfc3339_weak(&rfc).unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

/// A service linking to another is created only once the other's task is
/// healthy: db turns healthy 6 s after it starts, and web, created by the
/// same apply, is created no sooner.
#[test]
fn a_linked_service_is_created_only_after_its_dependency_is_healthy_on_a_swarm() {
    let c = SwarmCluster::start(3);
    let image = base_image();
    c.load_image(image);
    let ws = Workspace::new();
    let name = unique_name("swdep");
    let file = format!(
        r#"name = "{name}"

[services.db]
image = "{image}"
endpoint_mode = "dnsrr"
command = ["sh", "-c", "trap 'exit 0' TERM; (sleep 6; touch /tmp/ok) & sleep 3600 & wait"]
stop_timeout = 2
health = {{ cmd = ["test", "-f", "/tmp/ok"], interval = "1s", retries = 30 }}

[services.web]
image = "{image}"
endpoint_mode = "dnsrr"
links = ["db"]
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
stop_timeout = 2
"#
    );
    let path = ws.write("berth.toml", &file);
    let path = path.to_str().unwrap_or_else(|| panic!("path"));
    ok(&c, &ws, &["-f", path, "apply"]);
    let (db, web) = (
        created_at(&c, &format!("{name}-db")),
        created_at(&c, &format!("{name}-web")),
    );
    let gap = web.duration_since(db).unwrap_or_default();
    assert!(
        gap >= Duration::from_secs(6),
        "web was created {gap:?} after db, before db could be healthy"
    );
    ok(&c, &ws, &["-f", path, "destroy"]);
}

/// `berth doctor` on a manager checks every node's engine address in the
/// nodes file: reached and the right node, missing, or another node's.
#[test]
fn doctor_on_a_swarm_checks_how_berth_reaches_each_nodes_engine() {
    let c = SwarmCluster::start(3);
    let ws = Workspace::new();
    let (n1, n2) = (c.hostname(1).to_string(), c.hostname(2).to_string());
    // node 1 right; node 2 given node 1's socket; the manager needs none.
    ws.write(
        "nodes.toml",
        &format!(
            "[nodes.{n1}]\nengine = \"{}\"\n[nodes.{n2}]\nengine = \"{}\"\n",
            c.docker_host(1),
            c.docker_host(1)
        ),
    );
    let out = berth(&c, &ws, &["doctor", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\n{}", show(&out)));
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no check {name:?}:\n{}", show(&out)))
    };
    assert_eq!(check(&format!("node {}", c.hostname(0)))["status"], "ok");
    assert_eq!(check(&format!("node {n1}"))["status"], "ok");
    let wrong = check(&format!("node {n2}"));
    assert_eq!(wrong["status"], "fail", "{wrong}");
    let detail = wrong["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("is swarm node {n1}")) && detail.contains(&n2),
        "{detail}"
    );
    assert_eq!(report["ok"], false);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // Without an entry for node 2: a note naming what to add; with a TCP
    // address: the file is refused, naming the entry.
    ws.write(
        "nodes.toml",
        &format!("[nodes.{n1}]\nengine = \"{}\"\n", c.docker_host(1)),
    );
    let out = berth(&c, &ws, &["doctor", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    let missing = report["checks"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == format!("node {n2}"))
                .cloned()
        })
        .expect("node 2 check");
    assert_eq!(missing["status"], "note", "{missing}");
    assert!(
        missing["fix"]
            .as_str()
            .is_some_and(|f| f.contains(&format!("[nodes.{n2}]"))),
        "{missing}"
    );
    ws.write(
        "nodes.toml",
        &format!("[nodes.{n1}]\nengine = \"tcp://127.0.0.1:2375\"\n"),
    );
    let out = berth(&c, &ws, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("nodes.{n1}.engine")) && text.contains("Unix sockets"),
        "{}",
        show(&out)
    );
}
