//! A closed stdout ends berth quietly: no panic, no backtrace, and the exit
//! code the command itself ends with (berth drops the rest of its output).

use std::process::{Command, Stdio};

use crate::support::*;

/// Run berth with stdout a pipe whose reading end is already closed, so the
/// first write fails with EPIPE every time (no race with a reader).
fn run_into_closed_pipe(ws: &Workspace, args: &[&str]) -> (Option<i32>, String) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(bin())
        .args(args)
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run berth");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let name = unique_name("pipe");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    let file = |cmd: &str| {
        format!(
            r#"name = "{name}"

[services.web]
image = "{image}"
command = ["sh", "-c", "{cmd}"]
stop_timeout = 1
"#
        )
    };
    ws.write("berth.toml", &file("echo hello; exec sleep 3600"));
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // A change, so that plan has something to say (and exits 3).
    ws.write("berth.toml", &file("echo hello; exec sleep 3601"));

    for (args, want) in [
        (&["ps"][..], 0),
        (&["ps", "--output", "json"][..], 0),
        (&["plan", "--integration", "docker"][..], 3),
        (
            &["plan", "--integration", "docker", "--output", "json"][..],
            3,
        ),
        (&["render"][..], 0),
        (&["schema"][..], 0),
        (&["logs", "web"][..], 0),
        // Following ends once nobody reads (the line is written before the
        // container sleeps, so it always arrives).
        (&["logs", "web", "--follow"][..], 0),
    ] {
        let (code, stderr) = run_into_closed_pipe(&ws, args);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "berth {args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("stack backtrace"),
            "berth {args:?}: {stderr}"
        );
        assert_eq!(code, Some(want), "berth {args:?}: {stderr}");
    }

    // `berth apply 2>&1 | head -1`: with stdout and stderr both closed, the
    // apply still does all its work (nothing is left half done) and exits 0.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let err = write.try_clone().expect("dup");
    let out = Command::new(bin())
        .args(["apply", "--integration", "docker"])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(err))
        .status()
        .expect("run berth apply");
    assert_eq!(out.code(), Some(0), "apply into a closed pipe");
    let out = run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "converged: {}", show(&out));
}
