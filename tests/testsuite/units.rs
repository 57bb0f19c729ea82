//! Unit rendering: golden files for every fixture, and `systemd-analyze verify`
//! on every rendered unit with any output at all counted as a failure.
//!
//! Golden files live in `tests/golden/units/<fixture>/<unit>`. After an
//! intended change, rewrite them with `BERTH_BLESS=1 cargo test units::` and
//! review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth::deployment::{
    Deployment, Link, PortMapping, Protocol, RestartPolicy, Service, VolumeMount, VolumeSource,
};
use berth::target::systemd::unit::{UnitOptions, render_units};

use crate::support::bin;

/// A service with nothing set but its name and image.
fn svc(name: &str, image: &str) -> Service {
    Service::new(name, image)
}

fn port(host: Option<u16>, container: u16) -> PortMapping {
    PortMapping {
        host_ip: None,
        host_port: host,
        container_port: container,
        protocol: Protocol::Tcp,
    }
}

fn link(target: &str) -> Link {
    Link {
        target: target.into(),
        alias: target.into(),
    }
}

fn deployment(name: &str, services: Vec<Service>) -> Deployment {
    Deployment {
        name: name.into(),
        source: None,
        keys: BTreeMap::new(),
        deployment_keys: vec![],
        snapshots_keep: None,
        configs: Default::default(),
        secrets: Default::default(),
        notify: None,
        notify_url: None,
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
    }
}

/// The example of DESIGN.md: a mail server and a webmail linking to it.
fn example() -> Deployment {
    let mut mail = svc("mail", "mildred/exim-dovecot-mail");
    mail.ports = [25, 993, 143, 465, 587, 4190]
        .into_iter()
        .map(|p| port(Some(p), p))
        .collect();
    mail.env = BTreeMap::from([("LOCAL_DOMAINS".into(), "example.org".into())]);
    mail.volumes = vec![VolumeMount {
        source: VolumeSource::Named("spool".into()),
        target: "/var/spool/exim4".into(),
        read_only: false,
    }];
    mail.ssh = vec!["admin".into()];
    let mut roundcube = svc("roundcube", "mildred/roundcube");
    roundcube.links = vec![link("mail")];
    roundcube.ports = vec![port(Some(4443), 443)];
    deployment("example", vec![mail, roundcube])
}

/// Several instances, every restart policy, stop timeouts, a chain of links,
/// and an environment full of secrets that must not reach the units.
pub(crate) fn scaled() -> Deployment {
    let mut db = svc("db", "postgres:16");
    db.stop_timeout = Some(120);
    db.env = BTreeMap::from([("POSTGRES_PASSWORD".into(), "s3cret-value".into())]);
    let mut app = svc("app", "registry.example.org:5000/team/app:1.2");
    app.count = 3;
    app.restart = RestartPolicy::OnFailure;
    app.links = vec![
        link("db"),
        Link {
            target: "db".into(),
            alias: "database".into(),
        },
    ];
    app.env = BTreeMap::from([("API_TOKEN".into(), "tok-123456".into())]);
    let mut web = svc("web", "nginx");
    web.count = 2;
    web.links = vec![link("app")];
    web.stop_timeout = Some(0);
    let mut job = svc("migrate", "registry.example.org:5000/team/app:1.2");
    job.restart = RestartPolicy::No;
    job.links = vec![link("db")];
    deployment("scaled", vec![db, app, web, job])
}

/// The deployment files under `tests/fixtures` that must render.
const FIXTURE_FILES: [&str; 4] = ["example.toml", "example.yaml", "example.json", "geard.json"];

/// Load a deployment file from `tests/fixtures` with an empty environment.
fn load_fixture(file: &str) -> Deployment {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    berth::deployment::load(&berth::deployment::LoadOptions {
        file: path.clone(),
        name: None,
        set: vec![],
        env: BTreeMap::new(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture, by name: the deployment files and the models built here.
/// Each renders into `tests/golden/units/<name>/`.
fn fixtures() -> Vec<(String, Deployment)> {
    let mut v: Vec<(String, Deployment)> = FIXTURE_FILES
        .iter()
        .map(|f| (f.to_string(), load_fixture(f)))
        .collect();
    v.push(("example".into(), example()));
    v.push(("scaled".into(), scaled()));
    v
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/units")
}

/// The options golden files are rendered with: a typical host.
fn golden_options() -> UnitOptions {
    UnitOptions::new("/usr/local/bin/berth", "/var/lib/berth")
}

/// Compare rendered units with the golden files of one case (or rewrite them
/// with `BERTH_BLESS=1`). Returns the mismatches.
fn check_golden(case: &str, d: &Deployment, opts: &UnitOptions) -> Vec<String> {
    let dir = golden_dir().join(case);
    let units = render_units(d, opts);
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let mut problems = Vec::new();
    if bless {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create golden directory");
    }
    for u in &units {
        let path = dir.join(&u.name);
        if bless {
            std::fs::write(&path, &u.text).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == u.text => {}
            Ok(want) => problems.push(format!(
                "{} differs from the rendered unit (BERTH_BLESS=1 rewrites it)\n--- golden\n{want}--- rendered\n{}",
                path.display(),
                u.text
            )),
            Err(e) => problems.push(format!("{}: {e} (BERTH_BLESS=1 writes it)", path.display())),
        }
    }
    // A golden file for a unit that is no longer rendered is stale.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !units.iter().any(|u| u.name == name) {
                problems.push(format!(
                    "{}: no such unit is rendered any more",
                    dir.join(name).display()
                ));
            }
        }
    }
    problems
}

#[test]
fn rendered_units_match_golden_files() {
    let mut problems = Vec::new();
    for (name, d) in fixtures() {
        problems.extend(check_golden(&name, &d, &golden_options()));
    }
    // Paths that need quoting and escaping, and a newer systemd (which gets
    // the same restart settings: the supervisor owns the backoff).
    let odd = UnitOptions::new("/opt/berth tools/100%/berth", "/srv/state \"$HOME\"\\x");
    problems.extend(check_golden("example-odd-paths", &example(), &odd));
    let new = golden_options().with_systemd_version(Some(256));
    problems.extend(check_golden("example-systemd256", &example(), &new));
    // Applied with DOCKER_HOST set: the supervisor gets the same address.
    let remote = golden_options().with_docker_host(Some("tcp://10.0.0.5:2375".into()));
    problems.extend(check_golden("example-docker-host", &example(), &remote));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Units are world-readable: environment values and keys must not reach
/// them. The units of every fixture are the same with and without them.
#[test]
fn units_hold_no_environment_values_or_keys() {
    for (name, d) in fixtures() {
        let mut bare = d.clone();
        bare.keys.clear();
        bare.deployment_keys.clear();
        for svc in bare.services.values_mut() {
            svc.env.clear();
            svc.ssh.clear();
        }
        assert_eq!(
            render_units(&d, &golden_options()),
            render_units(&bare, &golden_options()),
            "{name}: the environment or keys change the units"
        );
    }
    let d = scaled();
    for u in render_units(&d, &golden_options()) {
        for secret in [
            "s3cret-value",
            "POSTGRES_PASSWORD",
            "tok-123456",
            "API_TOKEN",
        ] {
            assert!(!u.text.contains(secret), "{}: holds {secret}", u.name);
        }
    }
}

/// Run `systemd-analyze verify` on unit files the way systemd would load them
/// from `unit_dir`: the units of the deployment are found there, `docker.service`
/// (not installed on every machine) comes from a stub, and everything else from
/// the system's own unit directories. Any output at all is a failure.
pub(crate) fn verify(unit_dir: &Path, files: &[PathBuf]) -> Result<(), String> {
    let stubs = tempfile::tempdir().expect("stub directory");
    std::fs::write(
        stubs.path().join("docker.service"),
        "[Unit]\nDescription=Docker engine (stub for verification)\n\n[Service]\nExecStart=/bin/true\n",
    )
    .expect("write stub");
    // A trailing ':' appends systemd's own search path.
    let search = format!("{}:{}:", unit_dir.display(), stubs.path().display());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(files)
        .env("SYSTEMD_UNIT_PATH", search)
        .env("SYSTEMD_LOG_COLOR", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install systemd (apt-get install systemd)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify {files:?}: status {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            out.status.code()
        ))
    }
}

/// Write units into `dir` and return their paths.
fn write_units(dir: &Path, units: &[berth::target::systemd::unit::RenderedUnit]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("create unit directory");
    units
        .iter()
        .map(|u| {
            let p = dir.join(&u.name);
            std::fs::write(&p, &u.text).expect("write unit");
            p
        })
        .collect()
}

#[test]
fn every_rendered_unit_passes_systemd_analyze_verify_silently() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    // ExecStart must name an executable that exists: the built berth, once
    // where it is and once behind a path that needs quoting and escaping.
    let odd_dir = tmp.path().join("bin dir %i $HOME");
    std::fs::create_dir_all(&odd_dir).expect("create odd directory");
    let odd_bin = odd_dir.join("berth");
    std::os::unix::fs::symlink(bin(), &odd_bin).expect("symlink berth");
    let variants = [
        UnitOptions::new(bin(), tmp.path().join("state")),
        UnitOptions::new(&odd_bin, odd_dir.join("state \"dir\" '%n' \\"))
            .with_docker_host(Some("unix:///run/my docker/100%/\"$x\".sock".into())),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, opts) in variants.iter().enumerate() {
        for (name, d) in fixtures() {
            let dir = tmp.path().join(format!("units-{i}-{name}"));
            let files = write_units(&dir, &render_units(&d, opts));
            checked += files.len();
            if let Err(e) = verify(&dir, &files) {
                failures.push(e);
            }
        }
    }
    assert!(checked >= 20, "only {checked} units were verified");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The check above must be able to fail: units with a mistake of each kind
/// that systemd only warns about (or ignores) must produce output.
#[test]
fn systemd_analyze_verify_check_catches_broken_units() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let d = example();
    let opts = UnitOptions::new(bin(), tmp.path().join("state"));
    let good = render_units(&d, &opts);
    let dir = tmp.path().join("good");
    let files = write_units(&dir, &good);
    verify(&dir, &files).expect("the unbroken units verify silently");

    let breakages: [(&str, &str, &str); 5] = [
        ("unknown key", "Type=notify", "Type=notify\nRestartSteps=5"),
        ("bad value", "Restart=always", "Restart=sometimes"),
        (
            "missing executable",
            "ExecStart=",
            "ExecStart=/nonexistent/berth ",
        ),
        (
            "unescaped specifier",
            "Description=berth",
            "Description=100%z berth",
        ),
        (
            "required unit missing",
            "[Unit]",
            "[Unit]\nRequires=berth-example-nonexistent.service",
        ),
    ];
    for (what, from, to) in breakages {
        let dir = tmp.path().join(what.replace(' ', "-"));
        let mut units = good.clone();
        let first = &mut units[0];
        assert!(first.text.contains(from), "{what}: {from:?} not in unit");
        first.text = first.text.replacen(from, to, 1);
        let files = write_units(&dir, &units);
        assert!(
            verify(&dir, &files).is_err(),
            "{what}: systemd-analyze verify stayed silent on\n{}",
            units[0].text
        );
    }
}
