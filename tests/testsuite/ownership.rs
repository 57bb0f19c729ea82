//! Names join with `-` and may contain `-`, so two deployments (or two
//! services) can give one container or volume name. berth must never mount,
//! adopt, replace or remove what the labels say is someone else's, and must
//! keep using the volumes older berth versions made (fewer labels).

use crate::support::*;

fn id_of(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Id}}", container])
}

/// Containers (any state, anyone's) that mount `volume`.
fn users_of(volume: &str) -> Vec<String> {
    let mut v: Vec<String> = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("volume={volume}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(String::from)
    .collect();
    v.sort();
    v
}

fn labels_of_volume(volume: &str) -> serde_json::Value {
    inspect("volume", volume)
        .map(|v| v["Labels"].clone())
        .unwrap_or_default()
}

fn service(name: &str, volumes: &str) -> String {
    format!(
        "[services.{name}]\nimage = \"{}\"\ncommand = [\"sleep\", \"3600\"]\nstop_timeout = 1\nvolumes = [{volumes}]\n",
        base_image()
    )
}

/// `a.toml`: deployment `a`, service `x`, volume `y-data`; `ax.toml`:
/// deployment `a-x`, service `y`, volume `data`. Both name `a-x-y-data`.
fn write_colliding(ws: &Workspace, a: &str, ax: &str) {
    ws.write(
        "a.toml",
        &format!("name = \"{a}\"\n{}", service("x", "\"y-data:/data\"")),
    );
    ws.write(
        "ax.toml",
        &format!("name = \"{ax}\"\n{}", service("y", "\"data:/data\"")),
    );
}

#[test]
fn cli_a_deployment_cannot_take_over_another_deployments_volume() {
    // Deployment `a`, service `x`, volume `y-data` and deployment `a-x`,
    // service `y`, volume `data` both map to the volume `a-x-y-data`.
    let a = unique_name("take");
    let ax = format!("{a}-x");
    let _ca = Cleanup::new(&a);
    let _cax = Cleanup::new(&ax);
    let ws = Workspace::new();
    write_colliding(&ws, &a, &ax);
    let out = run(&ws, &["apply", "-f", "a.toml", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let volume = format!("{a}-x-y-data");
    docker_ok(&[
        "exec",
        &format!("{a}-x"),
        "sh",
        "-c",
        "echo mine > /data/owner",
    ]);
    let labels_before = labels_of_volume(&volume);
    assert_eq!(labels_before["berth.deployment"], a.as_str());

    for cmd in ["plan", "apply"] {
        let out = run(&ws, &[cmd, "-f", "ax.toml", "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "volume {volume} belongs to deployment {a}, service x, instance 1, volume y-data"
            )) && err.contains(&format!(
                "deployment {ax}, service y, instance 1, volume data"
            )),
            "{cmd}: {err}"
        );
    }
    // Nothing of the second deployment exists; the volume is the first's,
    // with its data, mounted by the first's container only.
    assert!(containers_of(&ax).is_empty(), "{:?}", containers_of(&ax));
    assert!(
        inspect("network", &ax).is_none(),
        "network {ax} was created"
    );
    assert!(volumes_of(&ax).is_empty());
    // (Only the apply lock's directory may exist.)
    assert!(
        !ws.state_dir()
            .join("deployments")
            .join(&ax)
            .join("current.json")
            .exists()
    );
    assert!(
        !ws.state_dir()
            .join("instances")
            .join(format!("{ax}-y.json"))
            .exists()
    );
    assert_eq!(labels_of_volume(&volume), labels_before);
    assert_eq!(users_of(&volume), vec![format!("{a}-x")]);
    assert_eq!(
        docker_ok(&["exec", &format!("{a}-x"), "cat", "/data/owner"]),
        "mine"
    );
}

#[test]
fn cli_an_instance_spec_and_unit_of_another_deployment_are_not_overwritten() {
    // Deployment `a` service `x-y` and deployment `a-x` service `y` are both
    // the instance `a-x-y`: one spec file, one unit `berth-a-x-y.service`.
    let a = unique_name("unit");
    let ax = format!("{a}-x");
    let _ca = Cleanup::new(&a);
    let _cax = Cleanup::new(&ax);
    let ws = Workspace::new();
    ws.write("a.toml", &format!("name = \"{a}\"\n{}", service("x-y", "")));
    ws.write("ax.toml", &format!("name = \"{ax}\"\n{}", service("y", "")));
    let apply = |file: &str| {
        run(
            &ws,
            &[
                "apply",
                "-f",
                file,
                "--integration",
                "systemd",
                "--no-systemctl",
            ],
        )
    };
    let out = apply("a.toml");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let unit = ws.unit_dir().join(format!("berth-{a}-x-y.service"));
    let spec = ws
        .state_dir()
        .join("instances")
        .join(format!("{a}-x-y.json"));
    let unit_before = std::fs::read(&unit).expect("unit written");
    let spec_before = std::fs::read(&spec).expect("instance spec written");

    let out = run(&ws, &["plan", "-f", "ax.toml", "--integration", "systemd"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = apply("ax.toml");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "instance {a}-x-y: berth already runs this name for deployment {a}, service x-y, instance 1"
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&unit).expect("unit kept"), unit_before);
    assert_eq!(std::fs::read(&spec).expect("spec kept"), spec_before);
    assert!(
        !ws.state_dir()
            .join("deployments")
            .join(&ax)
            .join("current.json")
            .exists()
    );
}

#[test]
fn cli_a_container_named_like_ours_but_labelled_for_someone_else_is_left_alone() {
    let name = unique_name("labelled");
    let other = unique_name("other");
    let _c = Cleanup::new(&name);
    let _co = Cleanup::new(&other);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app", "\"data:/data\"")),
    );
    // Berth's labels, but another deployment's: what `other` with a service
    // named to collide would have left.
    let container = format!("{name}-app");
    docker_ok(&[
        "create",
        "--name",
        &container,
        "--label",
        &format!("berth.deployment={other}"),
        "--label",
        "berth.service=app",
        "--label",
        "berth.instance=1",
        base_image(),
        "sleep",
        "3600",
    ]);
    let id = id_of(&container);
    for cmd in ["plan", "apply"] {
        let out = run(&ws, &[cmd, "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "container {container} belongs to deployment {other}, service app, instance 1"
            )),
            "{cmd}: {err}"
        );
    }
    assert_eq!(id_of(&container), id, "the container was replaced");
    assert!(volumes_of(&name).is_empty(), "a volume was created");
    assert!(
        inspect("network", &name).is_none(),
        "the network was created"
    );
    // destroy, even with --volumes, removes only what is labelled ours.
    let out = run(&ws, &["destroy", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(id_of(&container), id, "destroy removed the container");
}

#[test]
fn cli_a_container_of_another_service_of_the_same_deployment_is_not_adopted() {
    // The file had a service `app-2`; now service `app` runs two instances
    // and its second would be `<name>-app-2`.
    let name = unique_name("samedep");
    let _c = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app-2", "")),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let id = id_of(&format!("{name}-app-2"));
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}count = 2\n", service("app", "")),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "container {name}-app-2 belongs to deployment {name}, service app-2, instance 1"
        )),
        "{err}"
    );
    assert_eq!(id_of(&format!("{name}-app-2")), id);
    assert!(inspect("container", &format!("{name}-app-1")).is_none());
}

#[test]
fn cli_a_volume_of_another_deployment_is_not_removed_by_destroy() {
    let name = unique_name("keepvol");
    let other = unique_name("othervol");
    let _c = Cleanup::new(&name);
    let _co = Cleanup::new(&other);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app", "\"data:/data\"")),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Named like one of ours, labelled as another deployment's.
    let theirs = format!("{name}-app-extra");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        &format!("berth.deployment={other}"),
        &theirs,
    ]);
    let out = run(&ws, &["destroy", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(volumes_of(&name).is_empty(), "{:?}", volumes_of(&name));
    assert!(
        inspect("volume", &theirs).is_some(),
        "destroy removed {theirs}"
    );
}

#[test]
fn cli_volumes_made_by_an_older_berth_are_still_used_by_their_instance() {
    // Older berth versions labelled volumes without `berth.volume`.
    let name = unique_name("oldvol");
    let _c = Cleanup::new(&name);
    let ws = Workspace::new();
    let volume = format!("{name}-app-data");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        &format!("berth.deployment={name}"),
        "--label",
        "berth.service=app",
        "--label",
        "berth.instance=1",
        "--label",
        "berth.revision=1",
        "--label",
        "berth.volume-path=/data",
        &volume,
    ]);
    docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        base_image(),
        "sh",
        "-c",
        "echo kept > /data/old",
    ]);
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app", "\"data:/data\"")),
    );
    let out = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("create    volume"),
        "{}",
        show(&out)
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        docker_ok(&["exec", &format!("{name}-app"), "cat", "/data/old"]),
        "kept"
    );
    assert_eq!(users_of(&volume), vec![format!("{name}-app")]);
    // Its labels stay as they were: berth does not relabel what it adopts.
    assert!(labels_of_volume(&volume).get("berth.volume").is_none());
}

#[test]
fn cli_new_volumes_say_which_volume_of_the_instance_they_are() {
    let name = unique_name("vollabel");
    let _c = Cleanup::new(&name);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app", "\"data:/data\"")),
    );
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let labels = labels_of_volume(&format!("{name}-app-data"));
    assert_eq!(labels["berth.deployment"], name.as_str());
    assert_eq!(labels["berth.service"], "app");
    assert_eq!(labels["berth.instance"], "1");
    assert_eq!(labels["berth.volume"], "data");
}

/// Removes a network this test made (without berth's labels) on drop.
struct NetworkOnDrop(String);

impl Drop for NetworkOnDrop {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

#[test]
fn cli_a_network_named_like_the_deployment_but_not_its_own_is_not_joined_or_removed() {
    let name = unique_name("net");
    let _c = Cleanup::new(&name);
    let _net = NetworkOnDrop(name.clone());
    let id = docker_ok(&["network", "create", &name]);
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!("name = \"{name}\"\n{}", service("app", "")),
    );
    for cmd in ["plan", "apply"] {
        let out = run(&ws, &[cmd, "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("network {name} exists and was not made by berth")),
            "{cmd}: {err}"
        );
    }
    assert!(containers_of(&name).is_empty());
    let out = run(&ws, &["destroy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        docker_ok(&["network", "inspect", "-f", "{{.Id}}", &name]),
        id
    );
    // Docker's own networks are refused alike: a deployment named `host`
    // would otherwise run its containers on the host's network.
    let out = run(&ws, &["plan", "--integration", "docker", "--name", "host"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("network host exists and was not made by berth"),
        "{}",
        show(&out)
    );
}

#[test]
fn cli_up_refuses_another_deployments_instance_before_writing_anything() {
    let a = unique_name("upown");
    let ax = format!("{a}-x");
    let _ca = Cleanup::new(&a);
    let _cax = Cleanup::new(&ax);
    let ws = Workspace::new();
    ws.write("a.toml", &format!("name = \"{a}\"\n{}", service("x-y", "")));
    ws.write("ax.toml", &format!("name = \"{ax}\"\n{}", service("y", "")));
    let out = run(&ws, &["apply", "-f", "a.toml", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let container = format!("{a}-x-y");
    let id = id_of(&container);
    let spec = ws
        .state_dir()
        .join("instances")
        .join(format!("{container}.json"));
    let spec_before = std::fs::read(&spec).expect("instance spec");
    let mut up = Background::spawn(bin(), &ws, "up", &["-f", "ax.toml", "up", "--no-ssh"]);
    let status = up.wait_exit(std::time::Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "berth up did not refuse:\n{}",
        up.output()
    );
    assert!(
        up.output().contains(&format!(
            "container {container} belongs to deployment {a}, service x-y, instance 1"
        )),
        "{}",
        up.output()
    );
    assert_eq!(
        std::fs::read(&spec).expect("instance spec kept"),
        spec_before
    );
    assert_eq!(id_of(&container), id);
    assert!(containers_of(&ax).is_empty());
}

#[test]
fn cli_restore_never_writes_into_another_deployments_volume() {
    // A backup of deployment `a-x` (service `y`, volume `data`) restored
    // while deployment `a` (service `x`, volume `y-data`) holds the volume
    // `a-x-y-data`: even with --force, a's data stays a's.
    let a = unique_name("rest");
    let ax = format!("{a}-x");
    let _ca = Cleanup::new(&a);
    let _cax = Cleanup::new(&ax);
    let ws = Workspace::new();
    write_colliding(&ws, &a, &ax);
    let out = run(&ws, &["apply", "-f", "ax.toml", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    docker_ok(&[
        "exec",
        &format!("{ax}-y"),
        "sh",
        "-c",
        "echo theirs > /data/owner",
    ]);
    let archive = ws.path().join("ax.tar.zst");
    let archive = archive.to_str().expect("utf-8 path");
    let out = run(&ws, &["-f", "ax.toml", "backup", "--all", "-o", archive]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = run(&ws, &["destroy", "-f", "ax.toml", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = run(&ws, &["apply", "-f", "a.toml", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let volume = format!("{a}-x-y-data");
    docker_ok(&[
        "exec",
        &format!("{a}-x"),
        "sh",
        "-c",
        "echo mine > /data/owner",
    ]);
    let labels_before = labels_of_volume(&volume);
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["restore", archive];
        args.extend_from_slice(extra);
        let out = run(&ws, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "volume {volume} belongs to deployment {a}, service x, instance 1, volume y-data"
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(labels_of_volume(&volume), labels_before);
    assert_eq!(
        docker_ok(&["exec", &format!("{a}-x"), "cat", "/data/owner"]),
        "mine"
    );
    assert!(containers_of(&ax).is_empty(), "{:?}", containers_of(&ax));
}
