//! berth as an installed system tool: `--version`, the Debian package and
//! the static build (`scripts/build-deb`, `scripts/build-static`), and an
//! upgrade of the package on a systemd host with running deployments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_test_support::systemd_host::{HOST_BERTH, HostDeployment, SystemdHost};

use crate::support::{bin, docker_ok, show};

/// `berth --version` names the version and the commit it was built from:
/// `BERTH_COMMIT` when the build had it, else this checkout's HEAD, else
/// "unknown" (a build outside a git checkout).
#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(bin())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want_start = format!("berth {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want_start), "{text}");
    let head = Command::new("git")
        .args(["log", "-1", "--format=%H %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want = match (std::env::var("BERTH_COMMIT"), head) {
        (Ok(c), _) if !c.trim().is_empty() => c.trim().to_string(),
        (_, Some(line)) if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() => {
            let (hash, date) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("git log said {line:?}"));
            format!("{} {date}", &hash[..12])
        }
        _ => "unknown".to_string(),
    };
    assert_eq!(text.trim(), format!("{want_start}{want})"));
}

/// `berth man-pages DIR` (hidden, for packaging) writes `berth.1` and one
/// page per command; neither help nor the completions offer it.
#[test]
fn man_pages_cover_every_command_and_stay_out_of_help_and_completions() {
    use clap::CommandFactory;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let out = Command::new(bin())
        .arg("man-pages")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(out.status.success(), "{}", show(&out));
    let mut want: Vec<String> = berth::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| format!("berth-{}.1", c.get_name()))
        .collect();
    want.push("berth.1".to_string());
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.path().display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    let apply = std::fs::read_to_string(dir.path().join("berth-apply.1"))
        .unwrap_or_else(|e| panic!("berth-apply.1: {e}"));
    assert!(apply.starts_with(".ie"), "not roff:\n{apply}");
    assert!(apply.contains("\\-\\-integration"), "{apply}");

    let help = Command::new(bin())
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(!String::from_utf8_lossy(&help.stdout).contains("man-pages"));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap_or_else(|e| panic!("run berth: {e}"));
        assert!(out.status.success(), "{}", show(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("apply"), "{shell}:\n{script}");
        assert!(!script.contains("man-pages"), "{shell} offers man-pages");
    }
}

// ---------------------------------------------------------------------------
// The Debian package on a systemd host.

/// Two packages of berth from this source: the tests' build, and a newer
/// build of it with another version string (`scripts/build-test-upgrade`,
/// which `scripts/test` runs first and names in `BERTH_TEST_NEWER_BERTH`).
struct Packages {
    old: PathBuf,
    old_version: String,
    new: PathBuf,
    new_version: String,
}

/// The newer berth: cargo would have to build it while the tests run, and
/// it puts every build at the path the other tests run berth from.
fn newer_berth() -> PathBuf {
    match std::env::var_os("BERTH_TEST_NEWER_BERTH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "BERTH_TEST_NEWER_BERTH is not set: run the tests with scripts/test, or\n  BERTH_TEST_NEWER_BERTH=$(scripts/build-test-upgrade) cargo test --test testsuite -- package::"
        ),
    }
}

/// Run a script of the repository; its last line of stdout (the path it
/// built), or a panic with its output.
fn script(name: &str, args: &[&str]) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default())
}

/// Built once per test process, into cargo's scratch directory for tests.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-upgrade");
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.to_string_lossy().into_owned();
        let version = env!("CARGO_PKG_VERSION");
        let old_version = version.to_string();
        // Sorts after the first for dpkg: an upgrade.
        let new_version = format!("{version}+newer");
        // Uncompressed: compressing them would be most of the time spent here.
        let build = |bin: &Path, v: &str, sub: &str| {
            let bin = bin.to_string_lossy();
            let out = format!("{out}/{sub}");
            let args = ["--binary", &*bin, "--version", v, "--out", &out];
            script(
                "build-deb",
                &[&args[..], &["--compression", "none"]].concat(),
            )
        };
        let newer = newer_berth();
        let (old, new) = std::thread::scope(|s| {
            let old = s.spawn(|| build(bin(), &old_version, "old"));
            let new = build(&newer, &new_version, "new");
            (
                old.join()
                    .unwrap_or_else(|_| panic!("building the old package")),
                new,
            )
        });
        Packages {
            old,
            new,
            old_version,
            new_version,
        }
    })
}

/// Copy a file from this machine into the host (not into /tmp, a tmpfs
/// `docker cp` cannot write into).
fn copy_in(host: &SystemdHost, file: &Path, to: &str) {
    docker_ok(&[
        "cp",
        &file.to_string_lossy(),
        &format!("{}:{to}", host.name),
    ]);
}

/// A service that keeps data in a volume and one beside it; both stop
/// promptly on SIGTERM.
const DEPLOYMENT: &str = r#"
name = "NAME"

[services.db]
image = "IMAGE"
command = ["sh", "-c", "echo kept > /data/marker; trap 'exit 0' TERM; while :; do sleep 1; done"]
volumes = ["data:/data"]
stop_timeout = 5

[services.web]
image = "IMAGE"
links = ["db"]
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
stop_timeout = 5
"#;

/// What must not change across an upgrade of the package: the container
/// and, from systemd, when the unit became active, which invocation of it
/// runs, its main process and how often it restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    container: String,
    active_enter: String,
    invocation: String,
    main_pid: String,
    restarts: String,
}

fn running(d: &HostDeployment, service: &str) -> Running {
    let unit = d.unit(service);
    let p = |name: &str| d.host.unit_property(&unit, name);
    assert_eq!(p("ActiveState"), "active", "{unit}");
    Running {
        container: d
            .running_id(service)
            .unwrap_or_else(|| panic!("{service}: no running container")),
        active_enter: p("ActiveEnterTimestamp"),
        invocation: p("InvocationID"),
        main_pid: p("MainPID"),
        restarts: p("NRestarts"),
    }
}

const INSTALLED: &str = "/usr/bin/berth";

/// Install the package, apply a deployment with the installed berth,
/// upgrade the package to a newer build: nothing is recreated or restarted,
/// `plan` has nothing to do, and a unit that restarts afterwards runs the
/// new binary. Man pages and bash completion work from where the package put
/// them. Removing and purging the package leave the deployment be.
#[test]
fn package_upgrade_restarts_nothing_and_units_run_the_new_binary_next_time() {
    let pkgs = packages();
    let host = SystemdHost::boot(bin());
    // Only the package's berth from here on.
    host.sh_ok(&format!("rm {HOST_BERTH}"));
    assert!(
        !host.sh("test -e /var/lib/berth").status.success(),
        "the host has a state directory before berth is installed"
    );

    copy_in(&host, &pkgs.old, "/var/tmp/berth-old.deb");
    host.sh_ok("dpkg -i /var/tmp/berth-old.deb");
    host.sh_ok("dpkg-deb -x /var/tmp/berth-old.deb /var/tmp/berth-old");
    assert_eq!(host.sh_ok("command -v berth"), INSTALLED);
    assert_eq!(
        host.sh_ok("stat -c '%a %U %G' /var/lib/berth"),
        "700 root root"
    );
    assert!(
        host.sh_ok("berth --version").starts_with("berth "),
        "the installed berth does not run"
    );

    let d = HostDeployment::new(&host, "pkg").using(INSTALLED);
    d.write(DEPLOYMENT);
    d.apply();
    let services = ["db", "web"];
    for svc in services {
        d.wait_active(svc);
        let exec_start = host.unit_property(&d.unit(svc), "ExecStart");
        assert!(
            exec_start.contains(&format!("path={INSTALLED} ")),
            "{svc}: {exec_start}"
        );
    }
    let before: Vec<Running> = services.iter().map(|s| running(&d, s)).collect();

    // The upgrade, with the instances running.
    copy_in(&host, &pkgs.new, "/var/tmp/berth-new.deb");
    host.sh_ok("dpkg-deb -x /var/tmp/berth-new.deb /var/tmp/berth-new");
    let new_sha = host.sh_ok("sha256sum < /var/tmp/berth-new/usr/bin/berth");
    host.sh_ok("dpkg -i /var/tmp/berth-new.deb");
    assert_eq!(
        host.sh_ok("dpkg-query -W -f '${Version}' berth"),
        pkgs.new_version,
        "upgraded from {}",
        pkgs.old_version
    );
    assert_eq!(host.sh_ok(&format!("sha256sum < {INSTALLED}")), new_sha);
    let newer = Command::new(newer_berth())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run the newer berth: {e}"));
    let newer_version = String::from_utf8_lossy(&newer.stdout).trim().to_string();
    assert_eq!(host.sh_ok("berth --version"), newer_version);
    assert_ne!(
        newer_version,
        host.sh_ok("/var/tmp/berth-old/usr/bin/berth --version"),
        "the newer build says the same version as the old one"
    );
    let after: Vec<Running> = services.iter().map(|s| running(&d, s)).collect();
    assert_eq!(
        after, before,
        "the upgrade recreated or restarted something"
    );
    for r in &after {
        // Each instance still runs the binary it started with, now replaced.
        assert_eq!(
            host.sh_ok(&format!("readlink /proc/{}/exe", r.main_pid)),
            format!("{INSTALLED} (deleted)")
        );
    }
    let plan = d.berth("plan");
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after the upgrade has something to do:\n{}",
        show(&plan)
    );

    // The next start of a unit runs the new binary's `berth supervise`.
    host.sh_ok(&format!("systemctl restart {}", d.unit("web")));
    d.wait_active("web");
    let web = running(&d, "web");
    assert_ne!(web.invocation, after[1].invocation);
    let pid = &web.main_pid;
    assert_eq!(host.sh_ok(&format!("sha256sum < /proc/{pid}/exe")), new_sha);
    let cmdline = host.sh_ok(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
    assert!(
        cmdline.starts_with(&format!(
            "{INSTALLED} --state-dir /var/lib/berth supervise "
        )),
        "{cmdline}"
    );
    assert_eq!(running(&d, "db"), after[0], "restarting web touched db");

    // Man pages and completions, from where the package put them.
    let page = host.sh_ok("MANPAGER=cat MANWIDTH=80 man berth-apply");
    assert!(page.contains("berth-apply - Make the host match"), "{page}");
    assert!(page.contains("--integration"), "{page}");
    assert_eq!(host.sh_ok("man -w berth"), "/usr/share/man/man1/berth.1.gz");
    let completed = host.sh_ok(
        r#"bash -c '
            source /usr/share/bash-completion/bash_completion
            __load_completion berth || exit 1
            spec=$(complete -p berth) && fn=${spec##*-F } && fn=${fn%% *}
            COMP_LINE="berth ap" COMP_POINT=8 COMP_WORDS=(berth ap) COMP_CWORD=1
            "$fn" berth ap berth
            printf "%s\n" "${COMPREPLY[@]}"'"#,
    );
    assert_eq!(completed, "apply", "berth ap<TAB> in bash");
    assert_eq!(
        host.sh_ok("head -1 /usr/share/zsh/vendor-completions/_berth"),
        "#compdef berth"
    );
    host.sh_ok("grep -q 'complete -c berth' /usr/share/fish/vendor_completions.d/berth.fish");

    // Removing the package stops nothing and says what stays.
    let removed = host.sh_ok("dpkg -r berth");
    assert!(
        removed.contains("removing the package stops nothing"),
        "{removed}"
    );
    assert!(!host.sh("test -e /usr/bin/berth").status.success());
    let still: Vec<Running> = services.iter().map(|s| running(&d, s)).collect();
    assert_eq!(
        still,
        vec![after[0].clone(), web],
        "removing the package touched the deployment"
    );
    let purged = host.sh_ok("dpkg -P berth");
    assert!(purged.contains("/var/lib/berth"), "{purged}");
    assert!(
        purged.contains("every container, volume and network"),
        "{purged}"
    );
    host.sh_ok("test -d /var/lib/berth");
    assert_eq!(d.exec("db", "cat /data/marker"), "kept");
    assert_eq!(
        services.iter().map(|s| running(&d, s)).collect::<Vec<_>>(),
        still,
        "purging the package touched the deployment"
    );
}
