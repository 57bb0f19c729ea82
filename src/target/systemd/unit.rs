//! systemd integration: one unit per instance, `berth-<container>.service`,
//! whose main process is `berth supervise <container>`.
//!
//! Units are world-readable, so they carry no environment values or secrets:
//! the supervisor reads those from the root-only state directory. What a unit
//! does contain is derived from validated names and from two paths (the
//! `berth` binary and the state directory); the paths are quoted and escaped
//! so that spaces, quotes, `%` (systemd specifiers) and `$` (environment
//! substitution) reach `berth` unchanged.
//!
//! The rendering uses only settings the systemd of Debian bookworm (252)
//! knows: an unknown setting makes systemd log a warning on every load, and
//! `systemd-analyze verify` must stay silent. The host's version is known
//! ([`UnitOptions::systemd_version`]) so that a setting of a newer release can
//! be used where it is worth it; none is today (the crash-loop backoff that
//! `RestartSteps=` would add lives in the supervisor on every version).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::deployment::{Deployment, InstanceRef, Service};
use crate::error::{Error, Result};

/// Delay before systemd restarts an instance's unit, in milliseconds:
/// systemd's own default, and the same on every systemd version. The unit adds
/// no growing delay of its own (no `RestartSteps=`): `berth supervise` keeps
/// the crash-loop backoff, counting quick failures in the state directory and
/// waiting 1, 2, 4, ... up to 30 seconds before it creates the next container
/// (see [`crate::supervise::backoff`]), so a crash loop costs the engine little,
/// while a stable service that crashes once is replaced within moments.
pub const RESTART_SEC_MS: u64 = 100;
/// Start-rate limit: at most this many starts within [`START_LIMIT_INTERVAL`].
/// With the restart delays above and the supervisor's own backoff, automatic
/// restarts alone never reach it (at most 7 starts in a minute), so a crash-looping service is retried for
/// as long as it keeps failing, as Docker's `restart: always` does, instead of
/// being given up on after a few seconds (systemd's default is 5 starts in
/// 10 s). What it still stops is a runaway loop of manual or scripted starts.
pub const START_LIMIT_BURST: u32 = 20;
/// See [`START_LIMIT_BURST`].
pub const START_LIMIT_INTERVAL: u64 = 60;
/// Time the supervisor gets to create and start the container and report it
/// ready. Covers pulling an image that is not on the host yet, and the
/// supervisor's crash-loop wait (at most 30 s; it also extends the timeout
/// with `EXTEND_TIMEOUT_USEC` while it waits).
pub const TIMEOUT_START_SEC: u64 = 300;
/// Time on top of the container's own stop timeout for the supervisor to
/// remove the stopped container and exit.
pub const STOP_MARGIN_SEC: u64 = 30;

/// What a rendered unit needs to know about this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOptions {
    /// Absolute path of the `berth` binary the unit runs.
    pub berth_path: PathBuf,
    /// The state directory the supervisor reads the instance spec from
    /// (absolute: units run with `/` as working directory).
    pub state_dir: PathBuf,
    /// Major version of the host's systemd, when known. `None` renders for the
    /// oldest supported systemd (252, Debian bookworm).
    pub systemd_version: Option<u32>,
    /// The engine address (`DOCKER_HOST`) `apply` used, passed on to the
    /// supervisor so that it talks to the same engine. `None`: the default
    /// socket. An address, not a secret, so it may sit in a world-readable unit.
    pub docker_host: Option<String>,
}

impl UnitOptions {
    /// Options for the oldest supported systemd.
    pub fn new(berth_path: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            berth_path: berth_path.into(),
            state_dir: state_dir.into(),
            systemd_version: None,
            docker_host: None,
        }
    }

    /// The same options, with units talking to the engine at `docker_host`.
    pub fn with_docker_host(mut self, docker_host: Option<String>) -> Self {
        self.docker_host = docker_host.filter(|h| !h.is_empty());
        self
    }

    /// The same options, rendering for a given systemd version.
    pub fn with_systemd_version(mut self, version: Option<u32>) -> Self {
        self.systemd_version = version;
        self
    }

    /// Options for units run by this very `berth` binary on this host:
    /// its own absolute path, `state_dir` made absolute, the host's systemd
    /// version; checked with [`UnitOptions::check`].
    pub fn for_host(state_dir: &Path) -> Result<Self> {
        let berth_path = std::env::current_exe()
            .map_err(|e| Error::Runtime(format!("cannot tell where the berth binary is: {e}")))?;
        let state_dir = std::path::absolute(state_dir).map_err(|source| Error::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let opts = Self::new(berth_path, state_dir)
            .with_systemd_version(host_systemd_version())
            .with_docker_host(std::env::var("DOCKER_HOST").ok());
        opts.check()?;
        Ok(opts)
    }

    /// Refuse paths a unit cannot express. systemd wants an absolute
    /// executable path without quotes, backslashes or control characters (it
    /// refuses to start the unit otherwise), and the unit runs with `/` as its
    /// working directory, so a relative state directory would point elsewhere.
    pub fn check(&self) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let exe = self.berth_path.as_os_str().as_bytes();
        if !self.berth_path.is_absolute() {
            return Err(Error::Runtime(format!(
                "the berth binary's path {} is not absolute; a systemd unit needs an absolute path",
                self.berth_path.display()
            )));
        }
        if std::str::from_utf8(exe).is_err()
            || exe
                .iter()
                .any(|b| b.is_ascii_control() || matches!(b, b'"' | b'\'' | b'\\'))
        {
            return Err(Error::Runtime(format!(
                "systemd cannot run the berth binary at {:?}: its path contains quotes, backslashes, control characters or is not UTF-8; install berth elsewhere (for example /usr/local/bin/berth)",
                self.berth_path
            )));
        }
        if !self.state_dir.is_absolute() {
            return Err(Error::Runtime(format!(
                "the state directory {} is not absolute",
                self.state_dir.display()
            )));
        }
        Ok(())
    }
}

/// The major version of the systemd on this host (`systemctl --version`), or
/// `None` when systemctl is missing or says something unexpected.
pub fn host_systemd_version() -> Option<u32> {
    let out = std::process::Command::new("systemctl")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_systemd_version(&String::from_utf8_lossy(&out.stdout))
}

/// Parse the first line of `systemctl --version`: `systemd 252 (252.38-1~deb12u1)`.
pub fn parse_systemd_version(text: &str) -> Option<u32> {
    let mut words = text.lines().next()?.split_whitespace();
    if words.next()? != "systemd" {
        return None;
    }
    words.next()?.parse().ok()
}

/// One rendered unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedUnit {
    /// File name: `berth-<container>.service`.
    pub name: String,
    /// File contents.
    pub text: String,
}

/// Seconds systemd waits for READY when the service has a health check:
/// long enough for the start period and a full round of checks (Docker's
/// defaults for what the file leaves unset), never below the usual timeout.
fn health_start_timeout(h: &crate::deployment::Health) -> u64 {
    const DOCKER_DEFAULT_MS: u64 = 30_000;
    let interval = h.interval_ms.unwrap_or(DOCKER_DEFAULT_MS);
    let timeout = h.timeout_ms.unwrap_or(DOCKER_DEFAULT_MS);
    let retries = u64::from(h.retries.unwrap_or(3));
    let ms = h
        .start_period_ms
        .unwrap_or(0)
        .saturating_add((interval.saturating_add(timeout)).saturating_mul(retries + 1));
    TIMEOUT_START_SEC.max(ms / 1000 + 60)
}

/// Render the unit of every instance of a deployment, in instance order.
pub fn render_units(deployment: &Deployment, opts: &UnitOptions) -> Vec<RenderedUnit> {
    deployment
        .instances()
        .iter()
        .map(|inst| RenderedUnit {
            name: inst.unit(),
            text: render_unit(deployment, inst, opts),
        })
        .collect()
}

/// Render the unit file of one instance.
pub fn render_unit(deployment: &Deployment, instance: &InstanceRef, opts: &UnitOptions) -> String {
    let svc = deployment.services.get(&instance.service);

    // Linked services: `Wants=` + `After=`, deliberately not `Requires=`.
    // - After= orders the start jobs: at boot (or when both start together)
    //   this instance starts only once every instance it links to is ready,
    //   and with Type=notify "ready" means its container runs.
    // - Wants= pulls the linked units in when this one is started alone.
    // - Requires= would also stop this instance whenever a linked one is
    //   stopped by hand or fails to start, and restart it with every restart
    //   of the linked unit: one crash-looping database would take every
    //   service that links to it down with it. Containers reach each other by
    //   name on the deployment's network, so a linked service coming back
    //   with a new container needs no restart here; Docker's own links behave
    //   the same way.
    let mut deps: Vec<String> = vec!["docker.service".into(), "network-online.target".into()];
    if let Some(svc) = svc {
        for link in &svc.links {
            if let Some(target) = deployment.services.get(&link.target) {
                for t in deployment.service_instances(target) {
                    let unit = t.unit();
                    if !deps.contains(&unit) {
                        deps.push(unit);
                    }
                }
            }
        }
    }
    let deps = deps.join(" ");

    let description = match svc {
        Some(s) if s.count > 1 => format!(
            "berth {}/{} instance {} of {}",
            instance.deployment, instance.service, instance.index, s.count
        ),
        _ => format!("berth {}/{}", instance.deployment, instance.service),
    };
    let restart = svc.map(|s| s.restart.systemd()).unwrap_or("always");
    let stop_timeout = svc
        .map(Service::stop_timeout_secs)
        .unwrap_or(crate::deployment::DEFAULT_STOP_TIMEOUT)
        + STOP_MARGIN_SEC;
    let exec_start = [
        exec_word(opts.berth_path.as_path(), true),
        "--state-dir".to_string(),
        exec_word(opts.state_dir.as_path(), false),
        "supervise".to_string(),
        exec_word(Path::new(&instance.container), false),
    ]
    .join(" ");

    let mut u = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        u,
        "# Generated by berth; changes are overwritten by `berth apply`."
    );
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(u, "Description={}", escape_specifiers(&description));
    let _ = writeln!(u, "Wants={deps}");
    let _ = writeln!(u, "After={deps}");
    let _ = writeln!(u, "StartLimitIntervalSec={START_LIMIT_INTERVAL}");
    let _ = writeln!(u, "StartLimitBurst={START_LIMIT_BURST}");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    // The supervisor reports READY=1 once the container runs and, when it
    // has a health check, is healthy.
    let _ = writeln!(u, "Type=notify");
    let _ = writeln!(u, "NotifyAccess=main");
    if let Some(host) = &opts.docker_host {
        // The supervisor must reach the engine `apply` used. Environment=
        // takes the same quoting as an executable path (no `$` expansion).
        let assignment = format!("DOCKER_HOST={host}");
        let _ = writeln!(u, "Environment={}", exec_word(Path::new(&assignment), true));
    }
    let _ = writeln!(u, "ExecStart={exec_start}");
    let _ = writeln!(u, "Restart={restart}");
    let _ = writeln!(u, "RestartSec={RESTART_SEC_MS}ms");
    let timeout_start = svc
        .and_then(|s| s.health.as_ref())
        .map(health_start_timeout)
        .unwrap_or(TIMEOUT_START_SEC);
    let _ = writeln!(u, "TimeoutStartSec={timeout_start}");
    // The supervisor stops the container with the container's own timeout
    // when it gets SIGTERM; systemd waits for that plus the removal.
    let _ = writeln!(u, "TimeoutStopSec={stop_timeout}");
    // SIGTERM to the supervisor only (it stops the container itself); SIGKILL
    // to whatever is left when the stop timeout runs out.
    let _ = writeln!(u, "KillMode=mixed");
    // Journal lines carry the container's name rather than "berth".
    let _ = writeln!(u, "SyslogIdentifier={}", instance.container);
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let _ = writeln!(u, "WantedBy=multi-user.target");
    u
}

/// Escape systemd specifiers: `%` introduces one, `%%` is a literal `%`.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word of an `ExecStart=` command line, quoted when it needs to be.
///
/// systemd first resolves specifiers in the whole line (`%%` is a literal
/// `%`), then splits it into words honouring double quotes and C escapes,
/// and at exec time substitutes `$VAR`/`${VAR}` in the arguments (`$$` is a
/// literal `$`) but not in the executable's path. Bytes that are not
/// printable ASCII are written as `\xNN` so the unit file stays plain text.
pub(crate) fn exec_word(path: &Path, executable: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.,:+=@-".contains(b));
    if plain {
        // Only these characters: nothing to quote or escape.
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut w = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => w.push_str("\\\""),
            b'\\' => w.push_str("\\\\"),
            b'%' => w.push_str("%%"),
            b'$' if !executable => w.push_str("$$"),
            0x20..=0x7e => w.push(char::from(b)),
            _ => {
                let _ = write!(w, "\\x{b:02x}");
            }
        }
    }
    w.push('"');
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::deployment::{Link, RestartPolicy};

    fn service(name: &str) -> Service {
        Service {
            env: BTreeMap::from([("SECRET_PASSWORD".into(), "hunter2".into())]),
            ..Service::new(name, "busybox")
        }
    }

    fn deployment(services: Vec<Service>) -> Deployment {
        Deployment {
            name: "ex".into(),
            source: None,
            keys: BTreeMap::new(),
            deployment_keys: vec![],
            notify: None,
            notify_url: None,
            snapshots_keep: None,
            configs: Default::default(),
            secrets: Default::default(),
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    fn line<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .collect()
    }

    #[test]
    fn exec_words_are_quoted_and_escaped() {
        assert_eq!(
            exec_word(Path::new("/usr/bin/berth"), true),
            "/usr/bin/berth"
        );
        assert_eq!(
            exec_word(Path::new("/opt/my tools/100%/berth"), true),
            "\"/opt/my tools/100%%/berth\""
        );
        assert_eq!(exec_word(Path::new("/a\"b\\c"), false), "\"/a\\\"b\\\\c\"");
        assert_eq!(exec_word(Path::new("/s/$HOME"), false), "\"/s/$$HOME\"");
        assert_eq!(exec_word(Path::new("/s/$HOME"), true), "\"/s/$HOME\"");
        assert_eq!(exec_word(Path::new("/a\nb"), false), "\"/a\\x0ab\"");
        assert_eq!(exec_word(Path::new("/é"), false), "\"/\\xc3\\xa9\"");
        assert_eq!(exec_word(Path::new(""), false), "\"\"");
    }

    #[test]
    fn start_timeout_covers_a_long_health_start_period() {
        let d = deployment(vec![service("web")]);
        let u = render_unit(&d, &d.instances()[0], &UnitOptions::new("/b", "/s"));
        assert_eq!(line(&u, "TimeoutStartSec"), ["300"]);
        let mut s = service("web");
        s.health = Some(crate::deployment::Health {
            start_period_ms: Some(600_000),
            interval_ms: Some(5_000),
            timeout_ms: Some(5_000),
            retries: Some(3),
            ..Default::default()
        });
        let d = deployment(vec![s]);
        let u = render_unit(&d, &d.instances()[0], &UnitOptions::new("/b", "/s"));
        // 600s start period + 4 rounds of (5s + 5s) + 60s margin.
        assert_eq!(line(&u, "TimeoutStartSec"), ["700"]);
    }

    #[test]
    fn restart_policy_and_stop_timeout_come_from_the_service() {
        let mut s = service("web");
        s.restart = RestartPolicy::OnFailure;
        s.stop_timeout = Some(45);
        let d = deployment(vec![s]);
        let inst = &d.instances()[0];
        let u = render_unit(&d, inst, &UnitOptions::new("/b", "/s"));
        assert_eq!(line(&u, "Restart"), ["on-failure"]);
        assert_eq!(line(&u, "TimeoutStopSec"), ["75"]);
        let mut s = service("web");
        s.restart = RestartPolicy::No;
        let d = deployment(vec![s]);
        let u = render_unit(&d, &d.instances()[0], &UnitOptions::new("/b", "/s"));
        assert_eq!(line(&u, "Restart"), ["no"]);
        assert_eq!(line(&u, "TimeoutStopSec"), ["40"]);
    }

    #[test]
    fn links_order_and_want_every_instance_of_the_target_once() {
        let mut db = service("db");
        db.count = 2;
        let mut web = service("web");
        web.links = vec![
            Link {
                target: "db".into(),
                alias: "db".into(),
            },
            Link {
                target: "db".into(),
                alias: "database".into(),
            },
        ];
        let d = deployment(vec![db, web]);
        let web_inst = d.instances().into_iter().find(|i| i.service == "web");
        let Some(web_inst) = web_inst else {
            panic!("no web instance")
        };
        let u = render_unit(&d, &web_inst, &UnitOptions::new("/b", "/s"));
        let want =
            "docker.service network-online.target berth-ex-db-1.service berth-ex-db-2.service";
        assert_eq!(line(&u, "After"), [want]);
        assert_eq!(line(&u, "Wants"), [want]);
        assert!(line(&u, "Requires").is_empty());
    }

    #[test]
    fn no_environment_values_in_units() {
        let d = deployment(vec![service("web")]);
        let u = render_unit(&d, &d.instances()[0], &UnitOptions::new("/b", "/s"));
        assert!(!u.contains("hunter2"));
        assert!(!u.contains("SECRET_PASSWORD"));
        assert!(line(&u, "Environment").is_empty());
    }

    #[test]
    fn docker_host_reaches_the_supervisor_quoted() {
        let d = deployment(vec![service("web")]);
        let inst = &d.instances()[0];
        let opts = UnitOptions::new("/usr/bin/berth", "/var/lib/berth");
        let plain = render_unit(&d, inst, &opts);
        assert!(line(&plain, "Environment").is_empty(), "{plain}");
        let unit = render_unit(
            &d,
            inst,
            &opts
                .clone()
                .with_docker_host(Some("tcp://10.0.0.5:2375".into())),
        );
        assert_eq!(
            line(&unit, "Environment"),
            ["DOCKER_HOST=tcp://10.0.0.5:2375"]
        );
        let odd = render_unit(
            &d,
            inst,
            &opts
                .clone()
                .with_docker_host(Some("unix:///run/a b/100%.sock".into())),
        );
        assert_eq!(
            line(&odd, "Environment"),
            ["\"DOCKER_HOST=unix:///run/a b/100%%.sock\""]
        );
        let empty = render_unit(&d, inst, &opts.with_docker_host(Some(String::new())));
        assert_eq!(
            empty, plain,
            "an empty DOCKER_HOST means the default socket"
        );
    }

    #[test]
    fn restart_delay_is_short_and_the_same_on_every_systemd() {
        let d = deployment(vec![service("web")]);
        let inst = &d.instances()[0];
        // The supervisor owns the backoff: systemd restarts after a short
        // fixed delay, whatever its version, and never adds its own growing
        // delay (RestartSteps=) on top.
        let old = render_unit(&d, inst, &UnitOptions::new("/b", "/s"));
        assert_eq!(line(&old, "RestartSec"), ["100ms"]);
        assert!(!old.contains("RestartSteps"));
        assert!(!old.contains("RestartMaxDelaySec"));
        for v in [252, 254, 256] {
            let opts = UnitOptions::new("/b", "/s").with_systemd_version(Some(v));
            assert_eq!(render_unit(&d, inst, &opts), old, "systemd {v}");
        }
    }

    #[test]
    fn options_check_refuses_what_systemd_cannot_run() {
        assert!(
            UnitOptions::new("/usr/bin/berth", "/var/lib/berth")
                .check()
                .is_ok()
        );
        assert!(
            UnitOptions::new("/opt/a b/100%/$x/berth", "/s 'q' \\")
                .check()
                .is_ok()
        );
        assert!(UnitOptions::new("berth", "/s").check().is_err());
        assert!(UnitOptions::new("/usr/bin/berth", "state").check().is_err());
        for bad in ["/a'b/berth", "/a\"b/berth", "/a\\b/berth", "/a\nb/berth"] {
            assert!(UnitOptions::new(bad, "/s").check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn systemd_version_parsing() {
        assert_eq!(
            parse_systemd_version("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT"),
            Some(252)
        );
        assert_eq!(parse_systemd_version("systemd 256 (256.5)"), Some(256));
        assert_eq!(parse_systemd_version("something else"), None);
        assert_eq!(parse_systemd_version(""), None);
    }
}
