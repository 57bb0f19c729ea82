//! berth on a real systemd host: systemd as PID 1 in a container from a
//! Debian bookworm rootfs (see `berth_test_support::systemd_host`), the
//! engine's socket mounted in, the freshly built `berth` inside.
//!
//! The first build of the host image runs debootstrap (about a minute);
//! later runs reuse the image by tag. If Debian's packages cannot be reached
//! these tests fail with that reason.

use std::time::Duration;

use berth::target::systemd::unit::{UnitOptions, render_units};
use berth_test_support::systemd_host::{
    HOST_BERTH, HostDeployment, SystemdHost, newer_systemd_image,
};

use crate::support::bin;

fn boot() -> SystemdHost {
    SystemdHost::boot(bin())
}

#[test]
fn host_boots_systemd_and_runs_berth_with_the_engine_socket() {
    let host = boot();
    assert_eq!(
        host.sh_ok("readlink /proc/1/exe"),
        "/usr/lib/systemd/systemd"
    );
    let state = host.sh_ok("systemctl is-system-running || true");
    assert!(state == "running" || state == "degraded", "{state}");
    let version = host.sh_ok(&format!("{HOST_BERTH} --version"));
    assert!(version.starts_with("berth "), "{version}");
    // The engine's socket is there and is the engine's.
    host.sh_ok("test -S /var/run/docker.sock");
}

#[test]
fn reboot_restarts_systemd_and_keeps_the_disk() {
    let host = boot();
    host.sh_ok("echo kept > /var/lib/marker && echo gone > /run/marker");
    host.sh_ok("logger -t berth-test before-reboot");
    // reboot() itself fails unless systemd shut down cleanly (exit code 0).
    host.reboot();
    assert_eq!(host.sh_ok("cat /var/lib/marker"), "kept");
    assert!(
        !host.sh("test -e /run/marker").status.success(),
        "/run survived the reboot"
    );
    assert!(host.previous_journal().contains("before-reboot"));
    assert!(
        !host.journal().contains("before-reboot"),
        "the journal after a reboot holds the previous boot"
    );
    host.power_cycle();
    assert_eq!(host.sh_ok("cat /var/lib/marker"), "kept");
}

/// Units rendered by berth for the host load in the real systemd without a
/// complaint, and the paths in ExecStart reach the program exactly, however
/// many spaces, `%`, `$`, quotes and backslashes they hold.
#[test]
fn rendered_units_load_in_real_systemd_and_pass_the_arguments_exactly() {
    let host = boot();
    let d = crate::units::scaled();

    // The real berth, where berth installs it.
    let opts = UnitOptions::new(HOST_BERTH, "/var/lib/berth");
    let units = render_units(&d, &opts);
    for u in &units {
        host.write_file(&format!("/etc/systemd/system/{}", u.name), &u.text);
    }
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    let out = host.exec(&[&["systemd-analyze", "verify", "--man=no"][..], &names[..]].concat());
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify in the host:\n{}",
        crate::support::show(&out)
    );
    host.sh_ok("systemctl daemon-reload");
    for u in &units {
        assert_eq!(
            host.unit_property(&u.name, "LoadState"),
            "loaded",
            "{}",
            u.name
        );
        assert_eq!(host.unit_property(&u.name, "Type"), "notify", "{}", u.name);
    }

    // A stand-in for berth at an awkward path that records its arguments.
    let odd_dir = "/opt/berth tools/100%/$HOME";
    let odd_state = "/srv/st \"dq\" 'sq' \\ %n $USER ${X} tab\there";
    host.write_file(
        &format!("{odd_dir}/berth"),
        "#!/bin/sh\nfor a in \"$0\" \"$@\"; do printf '%s\\n' \"$a\"; done > /tmp/args\n",
    );
    host.exec(&["chmod", "+x", &format!("{odd_dir}/berth")]);
    let opts = UnitOptions::new(format!("{odd_dir}/berth"), odd_state);
    opts.check()
        .expect("the awkward path is one systemd can run");
    let unit = &render_units(&d, &opts)[0];
    host.write_file(&format!("/etc/systemd/system/{}", unit.name), &unit.text);
    let out = host.exec(&["systemd-analyze", "verify", "--man=no", &unit.name]);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify of {}:\n{}\n{}",
        unit.name,
        crate::support::show(&out),
        unit.text
    );
    host.sh_ok("systemctl daemon-reload");
    // The stand-in exits without notifying, so the start fails; its
    // arguments are what matters here.
    let _ = host.exec(&["systemctl", "start", &unit.name]);
    let args = host.wait_for(
        "the stand-in to record its arguments",
        Duration::from_secs(30),
        || {
            let out = host.exec(&["cat", "/tmp/args"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    let want = format!(
        "{odd_dir}/berth\n--state-dir\n{odd_state}\nsupervise\n{}\n",
        units[0]
            .name
            .trim_start_matches("berth-")
            .trim_end_matches(".service")
    );
    assert_eq!(args, want, "unit:\n{}", unit.text);
}

// ---------------------------------------------------------------------------
// Scenarios: `berth apply --integration systemd` inside the host.

/// Two services, `web` linking to `db`; `db` keeps data in a volume and
/// both say who they are on stdout. They stop promptly on SIGTERM.
const TWO_SERVICES: &str = r#"
name = "NAME"

[services.db]
image = "IMAGE"
command = ["sh", "-c", "echo db-says-hello; [ -f /data/first ] || echo $$RANDOM > /data/first; trap 'exit 0' TERM; while :; do sleep 1; done"]
volumes = ["data:/data"]
stop_timeout = 5

[services.web]
image = "IMAGE"
links = ["db"]
command = ["sh", "-c", "echo web-says-hello; trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 5
"#;

/// Every stopped or exited container of a deployment (there should be none
/// while everything runs).
fn stopped_containers(deployment: &str) -> Vec<String> {
    crate::support::docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(String::from)
    .collect()
}

#[test]
fn apply_runs_one_active_unit_per_instance_with_output_in_the_journal() {
    let host = boot();
    let d = HostDeployment::new(&host, "apply");
    d.write(TWO_SERVICES);
    d.apply();
    for svc in ["db", "web"] {
        d.wait_active(svc);
        let unit = d.unit(svc);
        assert_eq!(
            host.unit_property(&unit, "UnitFileState"),
            "enabled",
            "{unit}"
        );
        let restart = crate::support::docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            &d.container(svc),
        ]);
        assert!(
            restart == "no" || restart.is_empty(),
            "{svc}: Docker restart policy {restart:?} behind systemd"
        );
        let said = format!("{svc}-says-hello");
        host.wait_for(
            &format!("{said} in journalctl -u {unit}"),
            Duration::from_secs(30),
            || host.unit_journal(&unit).contains(&said).then_some(()),
        );
        let status = host.sh(&format!("systemctl status --no-pager -n 20 {unit}"));
        assert!(
            String::from_utf8_lossy(&status.stdout).contains(&said),
            "systemctl status {unit}:\n{}",
            crate::support::show(&status)
        );
    }
    let units = host.sh_ok(&format!(
        "systemctl list-units --no-legend --plain --all 'berth-{}-*' | cut -d' ' -f1",
        d.name
    ));
    let mut units: Vec<&str> = units.lines().collect();
    units.sort();
    assert_eq!(units, [d.unit("db"), d.unit("web")]);
    // Units are world-readable: no environment values, no secrets.
    let unit_text = host.sh_ok(&format!("cat /etc/systemd/system/{}", d.unit("db")));
    assert!(!unit_text.contains("Environment"), "{unit_text}");
}

#[test]
fn killed_container_is_restarted_by_systemd_with_its_data() {
    let host = boot();
    let d = HostDeployment::new(&host, "kill");
    d.write(TWO_SERVICES);
    d.apply();
    let old = d.wait_active("db");
    let web = d.wait_active("web");
    let first = d.exec("db", "cat /data/first");
    let restarts = host.unit_property(&d.unit("db"), "NRestarts");
    crate::support::docker_ok(&["kill", &d.container("db")]);
    let new = host.wait_for("a fresh db container", Duration::from_secs(60), || {
        d.running_id("db").filter(|id| *id != old)
    });
    assert_ne!(new, old);
    assert_eq!(
        d.exec("db", "cat /data/first"),
        first,
        "the volume's data changed"
    );
    assert_ne!(host.unit_property(&d.unit("db"), "NRestarts"), restarts);
    // Both containers' output is in the unit's journal.
    host.wait_for(
        "the new container's output in the journal",
        Duration::from_secs(30),
        || {
            let j = host.unit_journal(&d.unit("db"));
            (j.matches("db-says-hello").count() >= 2).then_some(())
        },
    );
    // The linked service was left alone.
    assert_eq!(d.running_id("web").as_deref(), Some(web.as_str()));
}

#[test]
fn systemctl_stop_keeps_it_stopped_and_start_brings_it_back() {
    let host = boot();
    let d = HostDeployment::new(&host, "stop");
    d.write(TWO_SERVICES);
    d.apply();
    let old = d.wait_active("db");
    let web = d.wait_active("web");
    host.sh_ok(&format!("systemctl stop {}", d.unit("db")));
    assert_eq!(host.unit_property(&d.unit("db"), "ActiveState"), "inactive");
    assert!(
        d.running_id("db").is_none(),
        "db still runs after systemctl stop"
    );
    // Neither systemd nor Docker brings it back by itself: wait longer than
    // the restart delay and check again.
    std::thread::sleep(
        Duration::from_millis(berth::target::systemd::unit::RESTART_SEC_MS)
            + Duration::from_secs(3),
    );
    assert!(
        d.running_id("db").is_none(),
        "db came back after systemctl stop"
    );
    assert_eq!(host.unit_property(&d.unit("db"), "ActiveState"), "inactive");
    // Stopping db did not stop web (Wants=, not Requires=).
    assert_eq!(d.running_id("web").as_deref(), Some(web.as_str()));
    host.sh_ok(&format!("systemctl start {}", d.unit("db")));
    let new = d.wait_active("db");
    assert_ne!(new, old);
}

#[test]
fn reboot_brings_every_service_back_in_link_order_with_data_intact() {
    let host = boot();
    let d = HostDeployment::new(&host, "reboot");
    d.write(TWO_SERVICES);
    d.apply();
    let old_db = d.wait_active("db");
    let old_web = d.wait_active("web");
    let first = d.exec("db", "cat /data/first");
    host.shutdown();
    // A clean shutdown: the units stopped and removed their containers
    // (nothing is left for the next boot to clean up).
    assert_eq!(crate::support::containers_of(&d.name), Vec::<String>::new());
    host.start();
    let db = d.wait_active("db");
    let web = d.wait_active("web");
    assert_ne!(db, old_db, "db was not recreated by the reboot");
    assert_ne!(web, old_web, "web was not recreated by the reboot");
    assert_eq!(
        d.exec("db", "cat /data/first"),
        first,
        "the volume's data changed"
    );
    assert_eq!(
        stopped_containers(&d.name),
        Vec::<String>::new(),
        "leftovers"
    );
    let all = crate::support::containers_of(&d.name);
    assert_eq!(all, [d.container("db"), d.container("web")]);
    // Link order, from systemd's own account of this boot: web's start job
    // began only after db was up (ready = its container runs).
    let journal = host.sh_ok("journalctl -b --no-pager -o cat _PID=1");
    let pos = |needle: &str| {
        journal
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in the journal of PID 1:\n{journal}"))
    };
    let db_started = pos(&format!("Started {}", d.unit("db")));
    let web_starting = pos(&format!("Starting {}", d.unit("web")));
    assert!(
        db_started < web_starting,
        "web started before db was up:\n{journal}"
    );
}

#[test]
fn power_cycle_replaces_the_orphaned_containers() {
    let host = boot();
    let d = HostDeployment::new(&host, "power");
    d.write(TWO_SERVICES);
    d.apply();
    let old = d.wait_active("db");
    d.wait_active("web");
    let first = d.exec("db", "cat /data/first");
    // No shutdown: the supervisors die, their containers keep running.
    host.power_cycle();
    let new = d.wait_active("db");
    d.wait_active("web");
    assert_ne!(new, old);
    assert_eq!(d.exec("db", "cat /data/first"), first);
    assert_eq!(
        stopped_containers(&d.name),
        Vec::<String>::new(),
        "leftovers"
    );
    assert_eq!(crate::support::containers_of(&d.name).len(), 2);
}

#[test]
fn crash_looping_service_is_retried_with_a_delay_and_spares_the_others() {
    let host = boot();
    let d = HostDeployment::new(&host, "crash");
    d.write(
        r#"
name = "NAME"

[services.db]
image = "IMAGE"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 5

[services.broken]
image = "IMAGE"
links = ["db"]
command = ["sh", "-c", "echo broken-starting; exit 3"]
"#,
    );
    // The broken service may fail during apply itself; what matters is what
    // systemd makes of it afterwards.
    let _ = d.berth("apply --integration systemd");
    let db = d.wait_active("db");
    let unit = d.unit("broken");
    // Every attempt creates a fresh container, which says `broken-starting`
    // first thing: the journal's timestamps of those lines show the waits
    // between attempts.
    let creations = host.wait_for(
        "the crash-looping unit to start its container 6 times",
        Duration::from_secs(150),
        || {
            let times = journal_times(&host, &unit, "broken-starting");
            (times.len() >= 6).then_some(times)
        },
    );
    let gaps: Vec<i128> = creations.windows(2).map(|w| w[1] - w[0]).collect();
    let ms: Vec<i128> = gaps.iter().map(|g| g / 1_000_000).collect();
    // Behavioural bounds, not timing goals: the waits never shrink while it
    // keeps crashing, and they grow. Each gap is the supervisor's wait (1, 2,
    // 4, 8, 16 s) plus systemd's RestartSec and the engine work of an attempt,
    // which varies by a second or two on a busy engine; a gap may come out
    // that much shorter than the one before without the wait having shrunk.
    let jitter = 2_000_000_000;
    assert!(
        gaps.windows(2).all(|w| w[1] + jitter >= w[0]),
        "the delay between attempts shrank (ms between creations: {ms:?})"
    );
    assert!(
        gaps.last()
            .zip(gaps.first())
            .is_some_and(|(l, f)| *l > f + jitter),
        "the delay between attempts did not grow (ms between creations: {ms:?})"
    );
    // systemd saw the container's exit status and keeps retrying with the
    // configured delay rather than giving up.
    let j = host.unit_journal(&unit);
    assert!(
        j.contains("Main process exited, code=exited, status=3"),
        "the container's exit status is not in the journal:\n{j}"
    );
    assert_eq!(
        host.unit_property(&unit, "RestartUSec"),
        format!("{}ms", berth::target::systemd::unit::RESTART_SEC_MS)
    );
    assert_ne!(host.unit_property(&unit, "Result"), "start-limit-hit");
    assert!(j.matches("broken-starting").count() >= 3, "{j}");
    // The supervisor says why it waits.
    assert!(
        j.contains("quick failures in a row (last exit status 3); waiting"),
        "the supervisor's backoff is not in the journal:\n{j}"
    );
    // ... and tells systemd (`systemctl status` shows it) while it waits.
    host.wait_for(
        "the unit's status text to show the backoff",
        Duration::from_secs(60),
        || {
            host.unit_property(&unit, "StatusText")
                .contains("quick failures in a row")
                .then_some(())
        },
    );
    // berth ps sees the crash loop: between two attempts it shows the
    // instance as restarting (or failed) with the exit status and the unit's
    // state, and it counts the restarts. (Polled: during an attempt the
    // fresh container briefly runs.)
    let row = host.wait_for(
        "berth ps to show the broken instance restarting with its exit status",
        Duration::from_secs(60),
        || {
            let ps: serde_json::Value =
                serde_json::from_str(&d.berth_ok("ps --output json")).ok()?;
            let row = ps
                .as_array()?
                .iter()
                .find(|r| r["instance"] == d.container("broken").as_str())?
                .clone();
            (matches!(row["state"].as_str(), Some("restarting" | "failed"))
                && row["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("exit status 3")))
            .then_some(row)
        },
    );
    assert!(row["restarts"].as_u64().unwrap_or(0) >= 3, "{row}");
    assert_eq!(row["unit"]["active_state"], "activating", "{row}");
    assert!(
        row["consecutive_failures"].as_u64().unwrap_or(0) >= 3,
        "{row}"
    );
    // `berth restart` is the operator asking: the next attempt does not wait
    // out the backoff (the first thing the unit logs after it is the
    // container's own output, not a wait).
    let before = host.sh_ok("date +%s.%N");
    d.berth_ok("restart broken");
    let after = host.wait_for(
        "the restarted unit to start its container",
        Duration::from_secs(60),
        || {
            let out = host.exec(&[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-u",
                &unit,
                "--since",
                &format!("@{}", before.trim()),
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("broken-starting").then_some(text)
        },
    );
    let first = after
        .lines()
        .find(|l| l.contains("broken-starting") || l.contains("; waiting "))
        .unwrap_or_default();
    assert!(
        first.contains("broken-starting"),
        "berth restart still waited out the backoff:\n{after}"
    );
    // The linked service was never disturbed.
    assert_eq!(d.running_id("db").as_deref(), Some(db.as_str()));
    assert_eq!(host.unit_property(&d.unit("db"), "NRestarts"), "0");
}

/// When the unit's journal (this boot) logged lines ending with `marker`,
/// in nanoseconds since the epoch, oldest first.
fn journal_times(host: &SystemdHost, unit: &str, marker: &str) -> Vec<i128> {
    let out = host.exec(&[
        "journalctl",
        "-b",
        "--no-pager",
        "-o",
        "short-unix",
        "-u",
        unit,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_end().ends_with(marker))
        .filter_map(|l| {
            // `1795579461.913055 host ident[pid]: message`
            let (secs, micros) = l.split_whitespace().next()?.split_once('.')?;
            let secs: i128 = secs.parse().ok()?;
            let micros: i128 = micros.parse().ok()?;
            Some(secs * 1_000_000_000 + micros * 1_000)
        })
        .collect()
}

#[test]
fn new_image_version_restarts_only_that_unit_and_keeps_its_data() {
    let host = boot();
    let v1 = crate::support::busybox_image("sdv", "LABEL berth.test-version=1");
    let v2 = crate::support::busybox_image("sdv", "LABEL berth.test-version=2");
    let d = HostDeployment::new(&host, "upgrade");
    let file = |db_image: &str| {
        TWO_SERVICES.replacen("image = \"IMAGE\"", &format!("image = \"{db_image}\""), 1)
    };
    d.write(&file(&v1));
    d.apply();
    let old_db = d.wait_active("db");
    let web = d.wait_active("web");
    let web_invocation = host.unit_property(&d.unit("web"), "InvocationID");
    let first = d.exec("db", "cat /data/first");
    d.write(&file(&v2));
    d.apply();
    let new_db = host.wait_for("db on the new image", Duration::from_secs(60), || {
        d.running_id("db").filter(|id| *id != old_db)
    });
    let image = crate::support::docker_ok(&["inspect", "-f", "{{.Image}}", &new_db]);
    let v2_id = crate::support::docker_ok(&["image", "inspect", "-f", "{{.Id}}", &v2]);
    assert_eq!(image, v2_id);
    d.wait_active("db");
    assert_eq!(
        d.exec("db", "cat /data/first"),
        first,
        "data did not carry over"
    );
    assert_eq!(
        d.running_id("web").as_deref(),
        Some(web.as_str()),
        "web was restarted"
    );
    assert_eq!(
        host.unit_property(&d.unit("web"), "InvocationID"),
        web_invocation
    );
}

#[test]
fn destroy_stops_disables_and_removes_units_and_keeps_volumes() {
    let host = boot();
    let d = HostDeployment::new(&host, "destroy");
    d.write(TWO_SERVICES);
    d.apply();
    d.wait_active("db");
    d.wait_active("web");
    let volumes = crate::support::volumes_of(&d.name);
    assert!(!volumes.is_empty());
    d.berth_ok("destroy");
    for svc in ["db", "web"] {
        let unit = d.unit(svc);
        assert!(
            !host
                .sh(&format!("test -e /etc/systemd/system/{unit}"))
                .status
                .success(),
            "{unit} file left behind"
        );
        assert!(
            !host
                .sh(&format!(
                    "test -e /etc/systemd/system/multi-user.target.wants/{unit}"
                ))
                .status
                .success(),
            "{unit} still enabled"
        );
        // systemd was reloaded: it no longer knows the unit.
        assert_eq!(
            host.unit_property(&unit, "LoadState"),
            "not-found",
            "{unit}"
        );
    }
    assert_eq!(crate::support::containers_of(&d.name), Vec::<String>::new());
    assert_eq!(
        crate::support::volumes_of(&d.name),
        volumes,
        "volumes were not kept"
    );
}

/// Removes an image this test built, when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = crate::support::docker(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn unit_whose_image_was_deleted_fails_clearly_and_recovers_when_it_is_back() {
    let host = boot();
    let d = HostDeployment::new(&host, "imggone");
    // An image of this test's own, so deleting it touches nobody else.
    let recipe = format!("LABEL berth.test-owner={}", d.name);
    let image = crate::support::busybox_image("gone", &recipe);
    let _guard = ImageGuard(image.clone());
    d.write(&TWO_SERVICES.replacen("IMAGE", &image, 1));
    d.apply();
    d.wait_active("db");
    let web = d.wait_active("web");
    let unit = d.unit("db");
    host.sh_ok(&format!("systemctl stop {unit}"));
    crate::support::docker_ok(&["rmi", &image]);
    // No registry is reachable: the start fails, and says why.
    let start = host.sh(&format!("systemctl start {unit}"));
    assert!(!start.status.success(), "db started without its image");
    host.wait_for(
        "the journal to name the missing image",
        Duration::from_secs(60),
        || host.unit_journal(&unit).contains(&image).then_some(()),
    );
    // Nothing else is disturbed, and systemd keeps retrying.
    assert_eq!(d.running_id("web").as_deref(), Some(web.as_str()));
    assert_ne!(host.unit_property(&unit, "Result"), "start-limit-hit");
    // The image comes back (loaded by the operator): the unit recovers by itself.
    let again = crate::support::busybox_image("gone", &recipe);
    assert_eq!(again, image);
    let id = d.wait_active("db");
    assert!(!id.is_empty());
}

#[test]
fn reboot_in_the_middle_of_an_apply_converges_on_the_next_apply() {
    let host = boot();
    let d = HostDeployment::new(&host, "midapply");
    d.write(TWO_SERVICES);
    d.apply();
    d.wait_active("db");
    d.wait_active("web");
    let first = d.exec("db", "cat /data/first");
    // The new revision adds two services and changes web.
    let v2 = format!(
        "{TWO_SERVICES}\n[services.cache]\nimage = \"IMAGE\"\ncount = 2\nlinks = [\"db\"]\ncommand = [\"sh\", \"-c\", \"echo cache-says-hello; trap 'exit 0' TERM; while :; do sleep 1; done\"]\nstop_timeout = 5\n\n[services.queue]\nimage = \"IMAGE\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\nstop_timeout = 5\n"
    )
    .replacen("echo web-says-hello", "echo web-v2-says-hello", 1);
    d.write(&v2);
    // Start the apply in the background and pull the plug as soon as it has
    // written the first new unit.
    host.sh_ok(&format!(
        "cd {} && (nohup {HOST_BERTH} apply --integration systemd > /root/apply.log 2>&1 &)",
        d.dir
    ));
    let first_new = format!("/etc/systemd/system/{}", d.unit("cache-1"));
    host.wait_for("apply to write a new unit", Duration::from_secs(60), || {
        host.sh(&format!("test -e {first_new}"))
            .status
            .success()
            .then_some(())
    });
    host.power_cycle();
    // Whatever the apply got done, the next one finishes the job.
    d.apply();
    for svc in ["db", "web", "cache-1", "cache-2", "queue"] {
        d.wait_active(svc);
    }
    let mut want: Vec<String> = ["cache-1", "cache-2", "db", "queue", "web"]
        .iter()
        .map(|s| d.container(s))
        .collect();
    want.sort();
    assert_eq!(crate::support::containers_of(&d.name), want);
    assert_eq!(
        d.exec("db", "cat /data/first"),
        first,
        "the volume's data changed"
    );
    host.wait_for("web's new revision", Duration::from_secs(30), || {
        host.unit_journal(&d.unit("web"))
            .contains("web-v2-says-hello")
            .then_some(())
    });
    // A further apply has nothing left to do.
    let out = d.berth_ok("apply --integration systemd");
    assert!(out.contains("0 created, 0 recreated"), "{out}");
    // And all of it survives a reboot.
    host.reboot();
    for svc in ["db", "web", "cache-1", "cache-2", "queue"] {
        d.wait_active(svc);
    }
    assert_eq!(
        stopped_containers(&d.name),
        Vec::<String>::new(),
        "leftovers"
    );
}

/// What berth renders for systemd >= 254 is checked by that systemd:
/// bookworm-backports' systemd verifies it silently, and the unit leaves the
/// crash-loop backoff to the supervisor (no `RestartSteps=` doubling it).
#[test]
fn units_for_newer_systemd_verify_silently_under_systemd_254_or_later() {
    let image = newer_systemd_image();
    let d = crate::units::scaled();
    let opts = UnitOptions::new("/usr/bin/true", "/var/lib/berth").with_systemd_version(Some(254));
    let units = render_units(&d, &opts);
    assert!(units.iter().all(|u| !u.text.contains("RestartSteps=")));
    let dir = tempfile::tempdir().expect("temporary directory");
    for u in &units {
        std::fs::write(dir.path().join(&u.name), &u.text).expect("write unit");
    }
    std::fs::write(
        dir.path().join("docker.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .expect("write stub");
    let mount = format!("{}:/units:ro", dir.path().display());
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    let script = format!(
        "systemctl --version | head -n 1; cd /units && SYSTEMD_UNIT_PATH=/units: systemd-analyze verify --man=no {} 2>&1",
        names.join(" ")
    );
    let out = crate::support::docker(&[
        "run",
        "--rm",
        "--label",
        "berth.test-systemd-host=verify",
        "-v",
        &mount,
        &image,
        "sh",
        "-c",
        &script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default();
    let major: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(major >= 254, "not a newer systemd: {version:?}");
    let rest: Vec<&str> = lines.collect();
    assert!(
        out.status.success() && rest.is_empty(),
        "systemd-analyze verify under {version}:\n{}",
        crate::support::show(&out)
    );
}

/// `db` turns healthy a few seconds after it starts (its check looks for a
/// file created late) and keeps data in a volume; `web` links to it and, as
/// it starts, asks db over HTTP for that very file.
const HEALTH_SERVICES: &str = r#"
name = "NAME"

[services.db]
image = "IMAGE"
command = ["sh", "-c", "echo boot >> /data/boots; mkdir -p /www; (sleep 3; echo ok > /www/ok) & exec httpd -f -p 80 -h /www"]
volumes = ["data:/data"]
stop_timeout = 2
health = { cmd = "test -f /www/ok", interval = "1s", timeout = "2s", retries = 2, start_period = "60s" }

[services.web]
image = "IMAGE"
links = ["db"]
command = ["sh", "-c", "if wget -q -O /dev/null http://db/ok; then echo dependency-was-healthy; else echo dependency-was-not-healthy; fi; trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
"#;

#[test]
fn unhealthy_instance_is_replaced_by_systemd_and_dependents_wait_for_healthy() {
    let host = boot();
    let d = HostDeployment::new(&host, "health");
    d.write(HEALTH_SERVICES);
    let out = d.berth("apply --integration systemd");
    assert!(
        out.status.success(),
        "{}\n--- db journal\n{}",
        crate::support::show(&out),
        host.unit_journal(&d.unit("db"))
    );
    let old = d.wait_active("db");
    d.wait_active("web");
    let web_unit = d.unit("web");
    let said = host.wait_for(
        "web's verdict in its journal",
        Duration::from_secs(60),
        || {
            let j = host.unit_journal(&web_unit);
            j.contains("dependency-was-").then_some(j)
        },
    );
    assert!(
        said.contains("dependency-was-healthy"),
        "web started before db was healthy (READY came too early):\n{said}"
    );
    let restarts = host.unit_property(&d.unit("db"), "NRestarts");

    // The check starts failing: the supervisor removes the container and
    // exits non-zero, systemd starts a fresh one.
    crate::support::docker_ok(&["exec", &d.container("db"), "rm", "/www/ok"]);
    let new = host.wait_for("a fresh db container", Duration::from_secs(90), || {
        d.running_id("db").filter(|id| *id != old)
    });
    assert_ne!(new, old);
    assert_ne!(host.unit_property(&d.unit("db"), "NRestarts"), restarts);
    let boots = d.exec("db", "cat /data/boots");
    assert_eq!(boots.lines().count(), 2, "same volume, two boots: {boots}");
    let j = host.unit_journal(&d.unit("db"));
    assert!(j.contains("is unhealthy (last check: exit 1"), "{j}");
    // Healthy again, and the unit is active.
    host.wait_for("db healthy again", Duration::from_secs(60), || {
        (crate::support::inspect("container", &d.container("db"))?["State"]["Health"]["Status"]
            == "healthy")
            .then_some(())
    });
    d.wait_active("db");
}

#[test]
fn berth_stop_keeps_it_stopped_across_reboots_and_applies_until_berth_start() {
    let host = boot();
    let d = HostDeployment::new(&host, "bstop");
    d.write(TWO_SERVICES);
    d.apply();
    let db = d.wait_active("db");
    let old_web = d.wait_active("web");
    d.berth_ok("stop web");
    let unit = d.unit("web");
    assert_eq!(host.unit_property(&unit, "ActiveState"), "inactive");
    assert_eq!(host.unit_property(&unit, "UnitFileState"), "disabled");
    assert!(d.running_id("web").is_none(), "web runs after berth stop");
    assert_eq!(d.running_id("db").as_deref(), Some(db.as_str()));
    host.reboot();
    d.wait_active("db");
    assert!(
        d.running_id("web").is_none(),
        "web came back with the reboot"
    );
    assert_eq!(host.unit_property(&unit, "ActiveState"), "inactive");
    // Applying the unchanged file does not undo the operator's stop.
    d.apply();
    assert!(
        d.running_id("web").is_none(),
        "apply started the stopped web"
    );
    d.berth_ok("start web");
    let new_web = d.wait_active("web");
    assert_ne!(new_web, old_web);
    assert_eq!(host.unit_property(&unit, "UnitFileState"), "enabled");
    // Started again, it is part of the next boot too.
    host.reboot();
    d.wait_active("web");
    d.wait_active("db");
}

#[test]
fn removing_a_service_or_an_instance_removes_its_units_and_keeps_its_volumes() {
    let host = boot();
    let d = HostDeployment::new(&host, "shrink");
    let with_cache = |count: u32| {
        format!(
            "{TWO_SERVICES}\n[services.cache]\nimage = \"IMAGE\"\ncount = {count}\nvolumes = [\"c:/c\"]\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\nstop_timeout = 5\n"
        )
    };
    d.write(&with_cache(3));
    d.apply();
    for svc in ["db", "web", "cache-1", "cache-2", "cache-3"] {
        d.wait_active(svc);
    }
    let db = d.wait_active("db");
    let volumes = crate::support::volumes_of(&d.name);
    // One instance fewer.
    d.write(&with_cache(2));
    d.apply();
    let gone = d.unit("cache-3");
    assert_eq!(
        host.unit_property(&gone, "LoadState"),
        "not-found",
        "{gone}"
    );
    assert!(d.running_id("cache-1").is_some() && d.running_id("cache-2").is_some());
    // The whole service removed.
    d.write(TWO_SERVICES);
    d.apply();
    for svc in ["cache-1", "cache-2", "cache-3"] {
        let unit = d.unit(svc);
        assert_eq!(
            host.unit_property(&unit, "LoadState"),
            "not-found",
            "{unit}"
        );
        assert!(
            !host
                .sh(&format!("test -e /etc/systemd/system/{unit}"))
                .status
                .success(),
            "{unit} file left behind"
        );
    }
    let mut want = vec![d.container("db"), d.container("web")];
    want.sort();
    assert_eq!(crate::support::containers_of(&d.name), want);
    assert_eq!(
        d.running_id("db").as_deref(),
        Some(db.as_str()),
        "db was disturbed"
    );
    assert_eq!(
        crate::support::volumes_of(&d.name),
        volumes,
        "volumes were not kept"
    );
    // Nothing of the removed service comes back with a reboot.
    host.reboot();
    d.wait_active("db");
    d.wait_active("web");
    assert_eq!(crate::support::containers_of(&d.name), want);
}

#[test]
fn backup_stops_through_the_unit_and_upgrade_snapshots_under_systemd() {
    let host = boot();
    let v1 = crate::support::busybox_image("sdv", "LABEL berth.test-version=1");
    let v2 = crate::support::busybox_image("sdv", "LABEL berth.test-version=2");
    let d = HostDeployment::new(&host, "sdbackup");
    let file = |db_image: &str| {
        TWO_SERVICES.replacen("image = \"IMAGE\"", &format!("image = \"{db_image}\""), 1)
    };
    d.write(&file(&v1));
    d.apply();
    d.wait_active("db");
    let first = d.exec("db", "cat /data/first");
    let unit = d.unit("db");
    let invocation = host.unit_property(&unit, "InvocationID");

    // Consistent backup: the unit is stopped (not just its container, which
    // systemd would replace during the copy) and started again, enabled.
    d.berth_ok("backup db -o /root/db.tar.zst");
    d.wait_active("db");
    assert_ne!(
        host.unit_property(&unit, "InvocationID"),
        invocation,
        "the unit was stopped and started for the copy"
    );
    assert_eq!(
        host.sh_ok(&format!("systemctl is-enabled {unit} || true"))
            .trim(),
        "enabled"
    );
    let marker = format!("/var/lib/berth/instances/{}.stopped", d.container("db"));
    assert!(
        host.sh(&format!("test ! -e {marker}")).status.success(),
        "no stop marker left behind"
    );
    assert_eq!(d.exec("db", "cat /data/first"), first);

    // Upgrade: the old db's data is snapshotted before its unit restarts.
    d.write(&file(&v2));
    d.apply();
    d.wait_active("db");
    let snaps = d.berth_ok("snapshots --output json");
    let snaps: serde_json::Value =
        serde_json::from_str(&snaps).unwrap_or_else(|e| panic!("{e}: {snaps}"));
    let list = snaps.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{snaps}");
    assert_eq!(list[0]["container"], d.container("db").as_str());
    assert_eq!(list[0]["revision"], 1);
    assert_eq!(d.exec("db", "cat /data/first"), first);
}

#[test]
fn units_reach_the_engine_apply_used_through_docker_host() {
    let host = boot();
    let d = HostDeployment::new(&host, "dockerhost");
    d.write(
        r#"
name = "NAME"

[services.db]
image = "IMAGE"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 5
"#,
    );
    // A second address for the same engine, which only DOCKER_HOST names.
    let alt = "unix:///run/berth-alt/docker.sock";
    let link = "mkdir -p /run/berth-alt && ln -sf /var/run/docker.sock /run/berth-alt/docker.sock";
    host.sh_ok(link);
    host.sh_ok(&format!(
        "cd {} && DOCKER_HOST={alt} NO_COLOR=1 {HOST_BERTH} apply --integration systemd",
        d.dir
    ));
    let first = d.wait_active("db");
    let unit = d.unit("db");
    let text = host.sh_ok(&format!("cat /etc/systemd/system/{unit}"));
    assert!(
        text.contains(&format!("Environment=DOCKER_HOST={alt}\n")),
        "{text}"
    );
    assert_eq!(
        host.unit_property(&unit, "Environment"),
        format!("DOCKER_HOST={alt}")
    );
    // The supervisor really talks to that address: with it gone, a fresh
    // start cannot reach the engine and says where it looked ...
    host.sh_ok("rm /run/berth-alt/docker.sock");
    host.sh_ok(&format!("systemctl restart --no-block {unit}"));
    host.wait_for(
        "the supervisor to report the missing engine address",
        Duration::from_secs(60),
        || {
            host.unit_journal(&unit)
                .contains(&format!("cannot reach the engine at {alt}"))
                .then_some(())
        },
    );
    // Those failures back off like a crashing container does.
    host.wait_for(
        "the supervisor to back off while the engine is unreachable",
        Duration::from_secs(60),
        || {
            host.unit_journal(&unit)
                .lines()
                .any(|l| {
                    l.contains("quick failures in a row (last: ")
                        && l.contains(&format!("cannot reach the engine at {alt}"))
                        && l.contains("; waiting ")
                })
                .then_some(())
        },
    );
    // ... and with it back, systemd's retries get through: a fresh container.
    // (The old one may have outlived its supervisor, which could not reach
    // the engine to stop it; the new supervisor replaces it.)
    host.sh_ok(link);
    let again = d.wait_active("db");
    assert_ne!(
        again, first,
        "no fresh container after the engine came back"
    );
}

/// `scripts/install-deps` on a systemd host that lacks the test packages
/// installs them without starting or enabling the services they ship (the
/// tests start their own): no sshd on port 22, no registry on 5000, not now
/// and not after a reboot; its temporary `policy-rc.d` is gone afterwards,
/// and a second run has nothing to do. Runs non-interactively, as CI does.
#[test]
fn install_deps_starts_and_enables_no_service_on_a_systemd_host() {
    let host = boot();
    let installed = |pkg: &str| {
        host.sh(&format!(
            "dpkg-query -W -f='${{Status}}' {pkg} 2>/dev/null | grep -q 'install ok installed'"
        ))
        .status
        .success()
    };
    assert!(!installed("openssh-server") && !installed("docker-registry"));
    host.sh_ok("test ! -e /usr/sbin/policy-rc.d");
    host.write_file(
        "/root/install-deps",
        include_str!("../../scripts/install-deps"),
    );
    // Debian's packages only: this is about what apt-get installs and starts.
    let out = host.sh_ok(
        "chmod 755 /root/install-deps && BERTH_DEPS_NO_PYPI=1 /root/install-deps </dev/null 2>&1",
    );
    assert!(
        installed("openssh-server") && installed("docker-registry"),
        "{out}"
    );
    host.sh_ok("test ! -e /usr/sbin/policy-rc.d");
    let listening = || {
        // Local ports in LISTEN state (0A), from the host's own network namespace.
        let table = host.sh_ok("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true");
        table
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(3) == Some(&"0A"))
                    .then(|| f.get(1)?.rsplit(':').next())
                    .flatten()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            })
            .collect::<Vec<u16>>()
    };
    let check = |when: &str| {
        for unit in ["ssh.service", "ssh.socket", "docker-registry.service"] {
            let enabled = host.sh_ok(&format!("systemctl is-enabled {unit} || true"));
            assert_eq!(enabled, "disabled", "{unit} {when}");
            let active = host.sh_ok(&format!("systemctl is-active {unit} || true"));
            assert_eq!(active, "inactive", "{unit} {when}");
        }
        let ports = listening();
        assert!(
            !ports.contains(&22) && !ports.contains(&5000),
            "listening {when}: {ports:?}"
        );
    };
    check("after install-deps");
    assert!(out.contains("disabling ssh.service"), "{out}");
    host.reboot();
    check("after a reboot");
    assert_eq!(
        host.sh_ok("BERTH_DEPS_NO_PYPI=1 /root/install-deps </dev/null 2>&1"),
        ""
    );
}

#[test]
fn supervise_delivers_configs_and_secrets_to_every_fresh_container() {
    let host = boot();
    let d = HostDeployment::new(&host, "sdfiles");
    host.write_file(&format!("{}/users.txt", d.dir), "alice:one\n");
    d.write(
        r#"
name = "NAME"

[configs.users]
file = "users.txt"

[secrets.token]
content = "s3cret-for-the-unit-test"

[services.app]
image = "IMAGE"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 2
configs = [{ source = "users", target = "/etc/app/users", uid = 33, mode = "0640" }]
secrets = ["token"]
"#,
    );
    d.apply();
    let first = d.wait_active("app");
    let seen = |d: &HostDeployment| {
        d.exec(
            "app",
            "stat -c '%u %a' /etc/app/users /run/secrets/token; cat /etc/app/users /run/secrets/token",
        )
    };
    let expected = "33 640\n0 400\nalice:one\ns3cret-for-the-unit-test";
    assert_eq!(seen(&d), expected);
    // A restart of the unit is a fresh container made by `berth supervise`
    // from the instance spec and the state directory's store.
    host.sh_ok(&format!("systemctl restart {}", d.unit("app")));
    let second = host.wait_for("a fresh container", Duration::from_secs(60), || {
        d.running_id("app").filter(|id| *id != first)
    });
    assert_ne!(second, first);
    assert_eq!(seen(&d), expected);
    // The unit file names no secret.
    let unit = host.sh_ok(&format!("cat /etc/systemd/system/{}", d.unit("app")));
    assert!(!unit.contains("s3cret"), "{unit}");
}
