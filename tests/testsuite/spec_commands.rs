//! `berth render`, `berth schema` and interpolation from the command line,
//! run as the built binary on the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Workspace, bin, show};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn berth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("BERTH_STATE_DIR", "/tmp/berth-render-test-state")
        .output()
        .expect("run berth")
}

#[test]
fn render_shows_instances_links_and_units_for_the_geard_example() {
    // The units are what systemd hosts get; ask for them on any host.
    let out = berth_in(
        &fixtures(),
        &["render", "-f", "geard.json", "--integration", "systemd"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "deployment: geard",
        "network:    geard",
        "instance 1: container geard-mail, unit berth-geard-mail.service",
        "port 4443:443/tcp",
        "MAIL_PORT_25_TCP=tcp://mail:25",
        "ssh keys: key-1 (SHA256:",
        "# berth-geard-roundcube.service",
        "ExecStart=",
        "supervise geard-roundcube",
        "--state-dir /tmp/berth-render-test-state",
        "volumes the image declares: kept as <container>-<path>-<hash>, known at apply time",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn render_json_has_every_instance_with_volumes_and_unit_text() {
    let out = berth_in(
        &fixtures(),
        &[
            "render",
            "-f",
            "example.toml",
            "--output",
            "json",
            "--integration",
            "systemd",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("render --output json is JSON");
    assert_eq!(v["deployment"], "example");
    assert_eq!(v["integration"], "systemd");
    assert_eq!(v["network"], "example");
    let instances = v["instances"].as_array().expect("instances");
    let containers: Vec<&str> = instances
        .iter()
        .map(|i| i["container"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        containers,
        [
            "example-db",
            "example-mail",
            "example-roundcube",
            "example-worker-1",
            "example-worker-2",
            "example-worker-3"
        ]
    );
    let mail = &instances[1];
    assert_eq!(mail["unit"], "berth-example-mail.service");
    assert_eq!(mail["volumes"][0]["source"], "example-mail-spool");
    assert_eq!(mail["volumes"][0]["origin"], "file");
    assert_eq!(mail["volumes"][2]["kind"], "bind");
    assert_eq!(mail["volumes"][2]["read_only"], true);
    assert!(
        mail["unit_text"]
            .as_str()
            .unwrap_or("")
            .contains("Type=notify")
    );
    let rc = &instances[2];
    assert_eq!(
        rc["link_env"]["DATABASE_NAME"],
        "/example-roundcube/database"
    );
    assert_eq!(rc["link_env"]["MAIL_PORT_993_TCP_PORT"], "993");
    assert!(
        v["image_volumes"]
            .as_str()
            .unwrap_or("")
            .contains("apply time")
    );
    // The name image-declared volumes really get, hash suffix included.
    assert!(
        v["image_volumes"]
            .as_str()
            .unwrap_or("")
            .contains("named volume <container>-<path>-<hash>;"),
        "{}",
        v["image_volumes"]
    );
    assert_eq!(v["model"]["services"]["worker"]["count"], 3);
}

#[test]
fn set_wins_over_vars_on_the_command_line() {
    let out = berth_in(
        &fixtures(),
        &[
            "render",
            "-f",
            "example.yaml",
            "--output",
            "json",
            "--set",
            "WEB_PORT=9443",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v["model"]["services"]["roundcube"]["ports"][0]["host_port"],
        9443
    );
    let out = berth_in(
        &fixtures(),
        &["validate", "-f", "example.yaml", "--set", "NOEQUALS"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn render_refuses_an_invalid_file_with_exit_code_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let out = berth_in(&dir, &["render", "-f", "toml-link-cycle.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("link cycle: a -> b -> c -> a"));
}

#[test]
fn schema_is_json_schema_of_the_native_format() {
    let out = berth_in(&fixtures(), &["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert!(
        v["$schema"]
            .as_str()
            .unwrap_or("")
            .contains("json-schema.org")
    );
    assert_eq!(v["required"], serde_json::json!(["services"]));
    let svc = &v["$defs"]["ServiceFile"];
    assert_eq!(svc["required"], serde_json::json!(["image"]));
    assert_eq!(svc["additionalProperties"], false);
    assert!(
        svc["properties"]["privileged"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("true")
    );
}

/// Longest any refusal of a special file may take. Far above what a refusal
/// needs; a berth that blocks on a FIFO or reads `/dev/zero` is killed when
/// it passes, so the regression fails the test instead of hanging it.
const REFUSAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run berth in `dir` with a clean environment plus `env`, killed (by the id
/// of the process this test started) if it runs past [`REFUSAL_LIMIT`].
fn berth_bounded(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BERTH_STATE_DIR", dir.join("state"))
        .env("BERTH_UNIT_DIR", dir.join("units"))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start berth");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(REFUSAL_LIMIT) {
        Ok(out) => out.expect("wait for berth"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("berth {args:?} still running after {REFUSAL_LIMIT:?}");
        }
    }
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Exit 2 with exactly `expected` on stderr, nothing on stdout, and no
/// state written.
fn assert_refused(dir: &Path, out: &Output, expected: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    assert!(out.stdout.is_empty(), "{}", show(out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    assert!(!dir.join("state").exists(), "state was written");
    assert!(!dir.join("units").exists(), "units were written");
}

#[test]
fn a_deployment_file_that_is_no_regular_file_is_refused() {
    let ws = Workspace::new();
    let dir = ws.path();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml")).expect("symlink");
    mkfifo(&dir.join("fifo.yaml"));
    std::fs::create_dir(dir.join("dir.json")).expect("mkdir");
    let help = "  help: pass the deployment file with -f FILE\n1 error found\n";
    for (file, kind) in [
        ("/dev/zero", "a character device"),
        ("zero.toml", "a character device"),
        ("fifo.yaml", "a FIFO"),
        ("dir.json", "a directory"),
    ] {
        for command in ["validate", "plan", "apply"] {
            let out = berth_bounded(dir, &[command, "-f", file], &[]);
            assert_refused(
                dir,
                &out,
                &format!(
                    "{file}: error: the deployment file is {kind}, not a regular file\n{help}"
                ),
            );
        }
    }
}

#[test]
fn env_files_that_are_no_regular_files_are_refused() {
    let ws = Workspace::new();
    let dir = ws.path();
    ws.write(
        "deploy.toml",
        "name = \"demo\"\n\n[services.web]\nimage = \"nginx\"\nenv_file = [\"/dev/zero\", \"pipe.env\"]\n",
    );
    mkfifo(&dir.join("pipe.env"));
    mkfifo(&dir.join(".env"));
    let help = "  help: an env_file is a regular file of KEY=value lines";
    for command in ["validate", "apply"] {
        let out = berth_bounded(dir, &[command, "-f", "deploy.toml"], &[]);
        assert_refused(
            dir,
            &out,
            &format!(
                ".env: error: the .env file is a FIFO, not a regular file\n  \
                 help: make the .env file beside the deployment file a readable file of KEY=value lines, or remove it\n\n\
                 deploy.toml:5:13: error: env_file `/dev/zero` is a character device, not a regular file\n  |\n\
                 5 | env_file = [\"/dev/zero\", \"pipe.env\"]\n  |             ^\n{help}\n\n\
                 deploy.toml:5:26: error: env_file `pipe.env` is a FIFO, not a regular file\n  |\n\
                 5 | env_file = [\"/dev/zero\", \"pipe.env\"]\n  |                          ^\n{help}\n\
                 3 errors found\n"
            ),
        );
    }
}

#[test]
fn oversized_input_files_are_refused() {
    let ws = Workspace::new();
    let dir = ws.path();
    // Sparse: the size is what counts, not the disk it takes.
    let big = std::fs::File::create(dir.join("big.toml")).expect("create big.toml");
    big.set_len(8 * 1024 * 1024 + 1).expect("grow big.toml");
    let out = berth_bounded(dir, &["validate", "-f", "big.toml"], &[]);
    assert_refused(
        dir,
        &out,
        "big.toml: error: the deployment file is larger than 8 MiB\n  \
         help: this does not look like a deployment file\n1 error found\n",
    );

    ws.write(
        "deploy.toml",
        "name = \"demo\"\n\n[services.web]\nimage = \"nginx\"\nenv_file = \"big.env\"\n",
    );
    ws.write("big.env", &format!("A={}\n", "x".repeat(1024 * 1024)));
    let out = berth_bounded(dir, &["validate", "-f", "deploy.toml"], &[]);
    assert_refused(
        dir,
        &out,
        "deploy.toml:5:12: error: env_file `big.env` is larger than 1 MiB\n  |\n\
         5 | env_file = \"big.env\"\n  |            ^\n  \
         help: an env_file is a regular file of KEY=value lines\n1 error found\n",
    );
    // Just under the cap is read.
    ws.write("big.env", &format!("A={}\n", "x".repeat(1024 * 1024 - 4)));
    let out = berth_bounded(dir, &["validate", "-f", "deploy.toml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// `env_file` can name any file on the host. When it is no env file, the
/// errors give its lines' numbers and problems, never their text: a file
/// shaped like /etc/shadow leaks no hash, /proc/self/environ no value.
#[test]
fn an_env_file_that_is_no_env_file_is_never_quoted() {
    let ws = Workspace::new();
    let dir = ws.path();
    let shadow = ws.write(
        "host/shadow",
        "root:$6$Zq3xVtKp$N8hJw2TfYQ1rM4sB7cLd9eGa0uXk5Pi:19700:0:99999:7:::\n\
         daemon:*:19700:0:99999:7:::\n\
         svc:$y$j9T$Rk2mQ8vX1tLs9bZ4pN7wC0$aB3dE5fG7hJ9kL1=:19700:0:99999:7:::\n",
    );
    ws.write(
        "deploy.toml",
        &format!(
            "name = \"demo\"\n\n[services.web]\nimage = \"nginx\"\nenv_file = [{:?}, \"/proc/self/environ\"]\n",
            shadow.display()
        ),
    );
    let secret = "hunter2-0f9e8d7c";
    let out = berth_bounded(
        dir,
        &["validate", "-f", "deploy.toml"],
        &[("SECRET_TOKEN", secret)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for leak in [
        "Zq3xVtKp", "N8hJw2Tf", "Rk2mQ8vX", "aB3dE5fG", "19700", "99999", secret,
    ] {
        assert!(!stderr.contains(leak), "{leak:?} leaked:\n{stderr}");
    }
    let shadow = shadow.display();
    assert!(
        stderr.contains(&format!(
            "{shadow}:1:1: error: expected `KEY=value`\n  help:"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{shadow}:3:1: error: invalid variable name before `=`\n  help:"
        )),
        "{stderr}"
    );
    // The process environment is NUL-separated: one line, named by its first
    // variable, its value not shown.
    let environ = stderr
        .lines()
        .find(|l| l.starts_with("/proc/self/environ:1:1: error: "))
        .unwrap_or_else(|| panic!("no error for /proc/self/environ:\n{stderr}"));
    assert!(
        environ.starts_with("/proc/self/environ:1:1: error: the value of `")
            && environ.ends_with("` contains a NUL character"),
        "{environ}"
    );
}

/// A backup archive is input too: a device or FIFO is refused before
/// anything is read, for `restore` and `restore --apply` alike.
#[test]
fn restore_refuses_an_archive_that_is_no_regular_file() {
    let ws = Workspace::new();
    let dir = ws.path();
    mkfifo(&dir.join("backup.fifo"));
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let env: Vec<(&str, &str)> = if docker_host.is_empty() {
        vec![]
    } else {
        vec![("DOCKER_HOST", docker_host.as_str())]
    };
    for (file, kind) in [
        ("/dev/zero", "a character device"),
        ("backup.fifo", "a FIFO"),
    ] {
        for extra in [&[][..], &["--apply"][..]] {
            let mut args = vec!["restore", file];
            args.extend_from_slice(extra);
            let out = berth_bounded(dir, &args, &env);
            assert_refused(
                dir,
                &out,
                &format!("error: `{file}` is {kind}, not a regular file\n"),
            );
        }
    }
}

/// Commands that fall back to the applied deployment when there is no
/// deployment file refuse a `-f` that names a FIFO or device instead of
/// passing over it to some other deployment.
#[test]
fn operation_commands_refuse_a_special_deployment_file() {
    let ws = Workspace::new();
    let dir = ws.path();
    mkfifo(&dir.join("fifo.toml"));
    let expected = "fifo.toml: error: the deployment file is a FIFO, not a regular file\n  \
                    help: pass the deployment file with -f FILE\n1 error found\n";
    for args in [
        &["ps", "-f", "fifo.toml"][..],
        &["stop", "-f", "fifo.toml", "web"][..],
        &["restart", "-f", "fifo.toml", "web"][..],
        &["backup", "-f", "fifo.toml", "--all", "-o", "out.berth"][..],
        &["destroy", "-f", "fifo.toml"][..],
    ] {
        let out = berth_bounded(dir, args, &[]);
        assert_refused(dir, &out, expected);
        assert!(!dir.join("out.berth").exists());
    }
}

/// `render` and `plan` print values from the file whole, but a control
/// character in them reaches the terminal only as an escape.
#[test]
fn render_and_plan_escape_control_characters_from_the_file() {
    let ws = Workspace::new();
    let dir = ws.path();
    let name = crate::support::unique_name("esc");
    ws.write(
        "deploy.toml",
        &format!(
            "name = \"{name}\"\n\n[services.web]\nimage = \"nginx\"\n\
             env = {{ X = \"\\u001b]0;owned\\u0007\\u001b[2J\" }}\n\
             volumes = [\"data:/da\\u001bta\"]\n"
        ),
    );
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let env: Vec<(&str, &str)> = if docker_host.is_empty() {
        vec![]
    } else {
        vec![("DOCKER_HOST", docker_host.as_str())]
    };
    for (command, code, needles) in [
        (
            "render",
            0,
            &[
                "X=\\x1b]0;owned\\x07\\x1b[2J",
                "-> /da\\x1bta (named volume",
            ][..],
        ),
        ("plan", 3, &["at /da\\x1bta)"][..]),
    ] {
        let out = berth_bounded(dir, &[command, "-f", "deploy.toml"], &env);
        assert_eq!(out.status.code(), Some(code), "{}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout
                .chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'),
            "{command} printed a control character:\n{}",
            show(&out)
        );
        for needle in needles {
            assert!(
                stdout.contains(needle),
                "{command}: no {needle:?} in\n{stdout}"
            );
        }
    }
}

/// A valid file whose settings hand the container the host.
const DANGEROUS: &str = r#"name = "NAME"

[services.tool]
image = "busybox"
volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
privileged = true
cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
"#;

/// What `validate`, `render`, `plan` and `apply` print for [`DANGEROUS`].
const DANGEROUS_WARNINGS: &str = r#"berth.toml:5:12: warning: service `tool`: bind mount of the host's `/`: the container sees the host's whole file system
  |
5 | volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
  |            ^
  help: bind only the files or directories the service needs, read-only where it can ("/srv/app/config:/config:ro")

berth.toml:5:26: warning: service `tool`: bind mount of the engine's socket `/var/run/docker.sock`: the container controls the engine, which makes it root on the host (read-only does not change that)
  |
5 | volumes = ["/:/host:ro", "/var/run/docker.sock:/var/run/docker.sock", "/etc/ssl/certs:/etc/ssl/certs:ro"]
  |                          ^
  help: bind only the files or directories the service needs, read-only where it can ("/srv/app/config:/config:ro")

berth.toml:6:14: warning: service `tool` runs privileged: every capability and every host device, so root in the container is root on the host
  |
6 | privileged = true
  |              ^
  help: add only the capabilities the service needs with cap_add, and remove privileged = true

berth.toml:7:25: warning: service `tool` adds the capability SYS_ADMIN: mounting file systems, namespaces and many kernel interfaces: the usual way out of a container
  |
7 | cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
  |                         ^
  help: add it only if the service cannot work without it

berth.toml:7:38: warning: service `tool` adds the capability ALL: every capability: nearly the same as privileged = true
  |
7 | cap_add = ["NET_ADMIN", "SYS_ADMIN", "all"]
  |                                      ^
  help: add it only if the service cannot work without it
"#;

#[test]
fn dangerous_settings_are_located_warnings_and_do_not_change_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        DANGEROUS.replace("NAME", "demo"),
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: berth.toml: deployment demo, 1 service, 1 instance\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
    let out = berth_in(dir.path(), &["render"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment: demo"));
    // validate --output json carries the same warnings, structured.
    let out = berth_in(dir.path(), &["validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["valid"], true);
    let warnings = v["warnings"]
        .as_array()
        .expect("warnings in validate's JSON");
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert_eq!(warnings[2]["severity"], "warning");
    assert_eq!(warnings[2]["line"], 6);
    assert_eq!(warnings[2]["column"], 14);
    let out = berth_in(dir.path(), &["render", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let warnings = v["warnings"].as_array().expect("warnings in render's JSON");
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert_eq!(warnings[2]["line"], 6);
    assert_eq!(warnings[2]["column"], 14);
    assert!(
        warnings[2]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("service `tool` runs privileged")
    );
}

#[test]
fn plan_shows_the_warnings_too() {
    let name = crate::support::unique_name("warnplan");
    let _cleanup = crate::support::Cleanup::new(&name);
    let ws = crate::support::Workspace::new();
    ws.write("berth.toml", &DANGEROUS.replace("NAME", &name));
    let out = crate::support::run(&ws, &["plan", "--integration", "docker"]);
    // 3: there is something to apply; the warnings do not change that.
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), DANGEROUS_WARNINGS);
}

#[test]
fn apply_shows_the_warnings_and_succeeds() {
    let name = crate::support::unique_name("warnapply");
    let _cleanup = crate::support::Cleanup::new(&name);
    let ws = crate::support::Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.app]\nimage = \"{}\"\ncommand = [\"sleep\", \"3600\"]\nstop_timeout = 1\ncap_add = [\"SYS_PTRACE\"]\n",
            crate::support::base_image()
        ),
    );
    let out = crate::support::run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("berth.toml:6:12: warning: service `app` adds the capability SYS_PTRACE: tracing and reading the memory of every process the container sees\n"),
        "{err}"
    );
    assert_eq!(
        crate::support::containers_of(&name),
        vec![format!("{name}-app")]
    );
}

#[test]
fn render_names_the_volumes_apply_uses() {
    // Instance 1 keeps `<deployment>-<service>-<volume>` whatever the count,
    // so that scaling up does not hand it a new, empty volume.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"demo\"\n[services.web]\nimage = \"busybox\"\ncount = 2\nvolumes = [\"data:/data\"]\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["render", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["instances"][0]["container"], "demo-web-1");
    assert_eq!(v["instances"][0]["volumes"][0]["source"], "demo-web-data");
    assert_eq!(v["instances"][1]["volumes"][0]["source"], "demo-web-2-data");
}

#[test]
fn validate_output_json_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"vj\"\n[services.web]\nimage = \"img\"\nports = [\"70000:80\"]\nlinks = [\"nosuch\"]\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], false);
    assert_eq!(v["warnings"], serde_json::json!([]));
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{v}");
    let port = errors
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.contains("70000")))
        .expect("the port error");
    assert_eq!(port["severity"], "error");
    assert_eq!(port["line"], 4);
    assert!(port["column"].as_u64().is_some_and(|c| c > 1), "{port}");
    assert!(
        port["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("berth.toml"))
    );
    assert!(port["help"].is_string(), "{port}");

    std::fs::write(
        dir.path().join("berth.toml"),
        "name = \"vj\"\n[services.web]\nimage = \"img\"\ncount = 2\n",
    )
    .expect("write");
    let out = berth_in(dir.path(), &["validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["instances"], 2);
    assert_eq!(v["errors"], serde_json::json!([]));
}

/// A command's help lists its own options first; the global ones come
/// after, under their own heading.
#[test]
fn subcommand_help_keeps_global_options_under_their_own_heading() {
    for cmd in ["ps", "plan", "logs", "destroy"] {
        let out = berth_in(&fixtures(), &[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let (own, global) = text
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("no Global options heading in {cmd} --help:\n{text}"));
        for g in ["--state-dir", "--unit-dir", "--set", "--name"] {
            assert!(
                !own.contains(g),
                "{cmd}: {g} among its own options:\n{text}"
            );
            assert!(global.contains(g), "{cmd}: {g} missing:\n{text}");
        }
    }
}

#[test]
fn swarm_only_settings_are_a_warning_on_the_host_and_host_ports_are_per_node_on_a_swarm() {
    let name = crate::support::unique_name("swonly");
    let _cleanup = crate::support::Cleanup::new(&name);
    let ws = crate::support::Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.web]\nimage = \"{}\"\nendpoint_mode = \"dnsrr\"\nupdate_config = {{ order = \"start-first\" }}\n",
            crate::support::base_image()
        ),
    );
    let out = crate::support::run(&ws, &["plan", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let warning = "warning: service web sets update_config and endpoint_mode, which only a swarm acts on (--target swarm): on this host they have no effect\n";
    assert_eq!(String::from_utf8_lossy(&out.stderr), warning);
    // Three tasks publishing one host port: one host cannot, a swarm's
    // nodes may (its plan counts them).
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{name}\"\n[services.web]\nimage = \"{}\"\ncount = 3\nports = [\"8080:80\"]\n",
            crate::support::base_image()
        ),
    );
    let out = crate::support::run(&ws, &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("can be published by only one of them"),
        "{}",
        show(&out)
    );
    let out = crate::support::run(&ws, &["validate", "--target", "swarm"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
