//! berth on a real systemd host: systemd as PID 1 in a container from a
//! Debian bookworm rootfs (see `berth_test_support::systemd_host`), the
//! engine's socket mounted in, the freshly built `berth` inside.
//!
//! The first build of the host image runs debootstrap (about a minute);
//! later runs reuse the image by tag. If Debian's packages cannot be reached
//! these tests fail with that reason.

use std::time::Duration;

use berth::integration::systemd::{UnitOptions, render_units};
use berth_test_support::systemd_host::{HOST_BERTH, SystemdHost};

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
