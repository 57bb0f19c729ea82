//! Tests of `load` as a whole: the fixtures in every format, geard,
//! interpolation precedence, and robustness against garbled input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts(file: PathBuf) -> LoadOptions {
    LoadOptions {
        file,
        ..Default::default()
    }
}

fn load_ok(o: &LoadOptions) -> Deployment {
    match load(o) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_native_example_is_the_same_model_in_every_format() {
    let mut models: Vec<Deployment> = ["example.toml", "example.yaml", "example.json"]
        .iter()
        .map(|f| {
            let mut d = load_ok(&opts(fixture(f)));
            d.source = None;
            d
        })
        .collect();
    let toml = models.remove(0);
    assert_eq!(toml, models[0], "YAML differs from TOML");
    assert_eq!(toml, models[1], "JSON differs from TOML");

    assert_eq!(toml.name, "example");
    let mail = &toml.services["mail"];
    // env_file first, env on top.
    assert_eq!(mail.env["LOCAL_DOMAINS"], "example.org");
    assert_eq!(mail.env["RELAY_HOST"], "smtp.example.net");
    assert_eq!(mail.env["MAILNAME"], "mail.example.org");
    assert_eq!(mail.stop_timeout, Some(30));
    assert_eq!(mail.settings.memory, Some(512 << 20));
    assert_eq!(mail.ports[5].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(mail.ssh, vec!["admin", "ops"]);
    let rc = &toml.services["roundcube"];
    assert_eq!(rc.ports[0].host_port, Some(4443));
    assert_eq!(rc.ports[1].host_port, None);
    assert_eq!(
        rc.command.as_deref(),
        Some(&["apache2-foreground".to_string(), "-DFOREGROUND".to_string()][..])
    );
    assert_eq!(rc.links[1].alias, "database");
    assert_eq!(rc.restart, RestartPolicy::OnFailure);
    assert_eq!(
        toml.services["db"].env["POSTGRES_PASSWORD"],
        "${not-interpolated}"
    );
    assert_eq!(toml.services["worker"].count, 3);
    assert_eq!(toml.services["worker"].restart, RestartPolicy::No);
    assert_eq!(
        toml.keys["admin"].fingerprint,
        "SHA256:xQA+gSeh65quD5d+g2Fzx1yP1VAB4AX+9t9sApJmfKw"
    );
    assert_eq!(toml.instances().len(), 6);
}

#[test]
fn the_geard_example_loads_unchanged() {
    let d = load_ok(&opts(fixture("geard.json")));
    assert_eq!(d.name, "geard");
    assert_eq!(d.deployment_keys.len(), 1);
    assert_eq!(d.deployment_keys[0].name, "key-1");
    assert!(d.deployment_keys[0].fingerprint.starts_with("SHA256:"));
    let mail = &d.services["mail"];
    assert_eq!(mail.image, "mildred/exim-dovecot-mail");
    assert_eq!(mail.ports.len(), 6);
    assert_eq!(mail.env["LOCAL_DOMAINS"], "example.org");
    let rc = &d.services["roundcube"];
    assert_eq!(rc.links[0].target, "mail");
    assert_eq!(rc.ports[0].host_port, Some(4443));
    assert_eq!(rc.ports[0].container_port, 443);
    // Keys grant every container.
    assert_eq!(d.keys_for("roundcube").len(), 1);

    let mut o = opts(fixture("geard.json"));
    o.name = Some("mail-stack".into());
    assert_eq!(load_ok(&o).name, "mail-stack");
}

#[test]
fn geard_fields_ignore_case_and_external_zero_lets_the_host_pick() {
    let o = opts(PathBuf::from("/nonexistent/dep.json"));
    let text = r#"{"CONTAINERS":[{"Name":"web","Image":"nginx","PublicPorts":[{"Internal":80,"External":0},{"internal":81}]}]}"#;
    let d = load_str(&o, Format::Json, text.into()).unwrap();
    assert_eq!(d.name, "dep");
    let web = &d.services["web"];
    assert_eq!(web.ports[0].host_port, None);
    assert_eq!(web.ports[1].host_port, None);
    assert_eq!(web.count, 1);
}

#[test]
fn interpolation_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dep.toml");
    std::fs::write(
        &file,
        r#"name = "p"
[vars]
A = "vars"
B = "vars"
C = "vars"
D = "vars"
[services.s]
image = "busybox"
env = { A = "${A}", B = "${B}", C = "${C}", D = "${D}", E = "${E:-default}" }
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "A=dotenv\nB=dotenv\nC=dotenv\n").unwrap();
    let o = LoadOptions {
        file,
        name: None,
        set: vec![("A".into(), "set".into())],
        env: BTreeMap::from([
            ("A".to_string(), "env".to_string()),
            ("B".to_string(), "env".to_string()),
        ]),
        ..Default::default()
    };
    let d = load_ok(&o);
    let env = &d.services["s"].env;
    assert_eq!(env["A"], "set");
    assert_eq!(env["B"], "env");
    assert_eq!(env["C"], "dotenv");
    assert_eq!(env["D"], "vars");
    assert_eq!(env["E"], "default");
}

#[test]
fn undefined_variables_are_located() {
    let o = opts(PathBuf::from("dep.yaml"));
    let text = "name: x\nservices:\n  s:\n    image: busybox\n    hostname: \"h-${NOPE}\"\n";
    let e = load_str(&o, Format::Yaml, text.into()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!((e.0[0].line, e.0[0].column), (5, 18));
    assert_eq!(
        e.0[0].message,
        "variable `NOPE` (used in `services.s.hostname`) is not defined"
    );
}

#[test]
fn missing_and_unknown_files_name_the_file() {
    let e = load(&opts(PathBuf::from("/nonexistent/berth.toml"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/berth.toml: error: cannot read the deployment file: no such file\n  help: pass the deployment file with -f FILE (the default is berth.toml in the current directory)\n1 error found"
    );
    let e = load(&opts(PathBuf::from("deploy.ini"))).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("deploy.ini: error: cannot tell the file's format")
    );
}

/// Truncated and garbled versions of every fixture: errors, never a panic.
#[test]
fn garbled_fixtures_never_panic() {
    for (name, format) in [
        ("example.toml", Format::Toml),
        ("example.yaml", Format::Yaml),
        ("example.json", Format::Json),
        ("geard.json", Format::Json),
    ] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        let o = opts(fixture(name));
        let bytes = text.as_bytes();
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for cut in (0..bytes.len()).step_by(7) {
            cases.push(bytes[..cut].to_vec());
            cases.push(bytes[cut..].to_vec());
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut b = bytes.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % b.len().max(1);
                let junk = b"{}[]:,\"'=\n#-$ &*!|>\\\t0x";
                match seed % 3 {
                    0 => b[at] = junk[(seed >> 8) as usize % junk.len()],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, junk[(seed >> 8) as usize % junk.len()]),
                }
            }
            cases.push(b);
        }
        for case in cases {
            let Ok(s) = String::from_utf8(case) else {
                continue;
            };
            let r = std::panic::catch_unwind(|| {
                let _ = load_str(&o, format, s.clone());
            });
            assert!(r.is_ok(), "panic on a garbled {name}:\n{s}");
        }
    }
}

#[test]
fn coloured_errors_are_the_plain_text_plus_ansi_codes() {
    let o = opts(PathBuf::from("dep.toml"));
    let e = load_str(
        &o,
        Format::Toml,
        "name = \"x\"\n[services.web]\nimage = \"Bad\"\ncount = 0\n".into(),
    )
    .unwrap_err();
    let plain = e.render(false);
    assert_eq!(plain, e.to_string());
    let colored = e.render(true);
    assert!(colored.contains("\x1b[1;31merror\x1b[0m"));
    let mut stripped = String::new();
    let mut in_escape = false;
    for c in colored.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => stripped.push(c),
        }
    }
    assert_eq!(stripped, plain);
}

#[test]
fn geard_accepts_what_geard_recorded_and_ignores_it() {
    let o = opts(PathBuf::from("stack.json"));
    let text = r#"{
      "IdPrefix": "ex-", "RandomizeIds": false, "Instances": [{"Id": "ex-web-1"}],
      "Containers": [
        {"Name": "db", "Image": "postgres:16", "Affinity": "x"},
        {"NAME": "web", "IMAGE": "nginx", "Count": 2,
         "Links": [{"To": "db", "NonLocal": true, "Ports": [5432], "AliasPorts": [15432]}],
         "PublicPorts": [{"Internal": 80}],
         "Environment": [{"Name": "A", "Value": "1"}, {"name": "B"}]}
      ]}"#;
    let d = match load_str(&o, Format::Json, text.into()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(d.name, "stack");
    let web = &d.services["web"];
    assert_eq!(web.count, 2);
    assert_eq!(web.links[0].target, "db");
    assert_eq!(web.env["A"], "1");
    assert_eq!(web.env["B"], "");
    assert_eq!(d.start_order()[0].name, "db");
}

#[test]
fn yaml_anchors_merges_and_extension_keys() {
    let o = opts(PathBuf::from("dep.yaml"));
    let text = "name: x\nx-common: &common\n  image: busybox\n  restart: on-failure\nservices:\n  a:\n    <<: *common\n  b:\n    <<: *common\n    restart: \"no\"\n    x-note: ignored\n";
    let d = match load_str(&o, Format::Yaml, text.into()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(d.services["a"].restart, RestartPolicy::OnFailure);
    assert_eq!(d.services["b"].restart, RestartPolicy::No);
    assert_eq!(d.services["b"].image, "busybox");
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let o = opts(PathBuf::from("dep.toml"));
    let text = "name = \"x\"\n[services.b]\nimage = \"Bad\"\n[services.a]\nimage = \"nginx\"\ncount = 0\nports = [\"0\"]\n";
    let e = load_str(&o, Format::Toml, text.into()).unwrap_err();
    let lines: Vec<usize> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 6, 7]);
    assert!(e.to_string().ends_with("3 errors found"));
}

#[test]
fn health_decodes_the_same_in_every_format() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = [
        (
            "h.toml",
            "name = \"h\"\n[services.a]\nimage = \"img\"\nhealth = { cmd = \"test -f /tmp/ok\", interval = \"2s\", timeout = \"500ms\", start_period = 3, retries = 2 }\n[services.b]\nimage = \"img\"\nhealth = false\n[services.c]\nimage = \"img\"\n[services.c.health]\ncmd = [\"test\", \"-f\", \"/x\"]\non_unhealthy = \"ignore\"\n",
        ),
        (
            "h.yaml",
            "name: h\nservices:\n  a:\n    image: img\n    health:\n      cmd: test -f /tmp/ok\n      interval: 2s\n      timeout: 500ms\n      start_period: 3\n      retries: 2\n  b:\n    image: img\n    health: false\n  c:\n    image: img\n    health:\n      cmd: [test, -f, /x]\n      on_unhealthy: ignore\n",
        ),
        (
            "h.json",
            r#"{"name": "h", "services": {"a": {"image": "img", "health": {"cmd": "test -f /tmp/ok", "interval": "2s", "timeout": "500ms", "start_period": 3, "retries": 2}}, "b": {"image": "img", "health": false}, "c": {"image": "img", "health": {"cmd": ["test", "-f", "/x"], "on_unhealthy": "ignore"}}}}"#,
        ),
    ];
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let d = load_ok(&opts(path));
        let a = d.services["a"]
            .health
            .clone()
            .unwrap_or_else(|| panic!("{name}: a has no health"));
        assert_eq!(
            a,
            Health {
                disabled: false,
                test: Some(vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()]),
                interval_ms: Some(2000),
                timeout_ms: Some(500),
                start_period_ms: Some(3000),
                retries: Some(2),
                on_unhealthy: OnUnhealthy::Restart,
            },
            "{name}"
        );
        assert_eq!(d.services["b"].health, Some(Health::disabled()), "{name}");
        let c = d.services["c"]
            .health
            .clone()
            .unwrap_or_else(|| panic!("{name}: c has no health"));
        assert_eq!(
            c.test,
            Some(vec!["CMD".into(), "test".into(), "-f".into(), "/x".into()])
        );
        assert_eq!(c.on_unhealthy, OnUnhealthy::Ignore);
    }
}

#[test]
fn snapshot_settings_default_on_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dep.toml");
    let load_text = |text: &str| {
        std::fs::write(&file, text).unwrap();
        load(&opts(file.clone()))
    };
    let d = load_text(
        "name = \"s\"\nsnapshots_keep = 5\n[services.a]\nimage = \"x\"\n[services.b]\nimage = \"x\"\nsnapshot_on_upgrade = false\nsnapshots_keep = 2\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.services["a"].snapshot_on_upgrade);
    assert!(!d.services["b"].snapshot_on_upgrade);
    assert_eq!(d.snapshots_keep("a"), 5);
    assert_eq!(d.snapshots_keep("b"), 2);
    let d = load_text("name = \"s\"\n[services.a]\nimage = \"x\"\n").unwrap();
    assert_eq!(d.snapshots_keep("a"), crate::data::snapshot::DEFAULT_KEEP);
    for (bad, says) in [
        ("snapshots_keep = 0", "between 1 and 1000"),
        ("snapshot_on_upgrade = \"no\"", "snapshot_on_upgrade"),
        ("snapshot_on_upgrad = false", "snapshot_on_upgrade"),
    ] {
        let e = load_text(&format!(
            "name = \"s\"\n[services.a]\nimage = \"x\"\n{bad}\n"
        ))
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}

#[test]
fn notify_is_a_shell_command_or_an_argv_in_every_format_and_survives_storing() {
    let dir = tempfile::tempdir().unwrap();
    let load_as = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        load(&opts(file))
    };
    let d = load_as(
        "a.toml",
        "name = \"s\"\nnotify = \"logger -t berth $$BERTH_EVENT\"\n[services.a]\nimage = \"x\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sh = ["/bin/sh", "-c", "logger -t berth $BERTH_EVENT"].map(String::from);
    assert_eq!(d.notify.as_deref(), Some(&sh[..]));
    let argv = ["/usr/local/bin/hook", "--quiet"].map(String::from);
    let y = load_as(
        "a.yaml",
        "name: s\nnotify: [/usr/local/bin/hook, --quiet]\nservices:\n  a:\n    image: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(y.notify.as_deref(), Some(&argv[..]));
    let c = load_as(
        "compose.yaml",
        "x-berth:\n  notify: [/usr/local/bin/hook, --quiet]\nservices:\n  a:\n    image: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.notify.as_deref(), Some(&argv[..]));
    // A stored deployment is written back as a file and read again.
    let stored = serde_json::to_string(&stored::file_form(&d)).unwrap();
    let again = load_as("again.json", &stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.notify, d.notify);
    for (bad, says) in [
        ("notify = \"  \"", "`notify` is empty"),
        ("notify = []", "names no program"),
        ("notify = 3", "notify"),
    ] {
        let e = load_as(
            "bad.toml",
            &format!("name = \"s\"\n{bad}\n[services.a]\nimage = \"x\"\n"),
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
        assert_eq!(crate::error::Error::from(e).exit_code(), 2, "{bad}");
    }
}

#[test]
fn notify_url_is_an_http_or_https_url_shown_without_its_path_and_survives_storing() {
    let dir = tempfile::tempdir().unwrap();
    let load_as = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        load(&opts(file))
    };
    let url = "https://bot:pw@hooks.example.org:8443/t/SECRET?k=SECRET";
    let d = load_as(
        "a.toml",
        &format!("name = \"s\"\nnotify_url = \"{url}\"\n[services.a]\nimage = \"x\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.notify_url.as_deref(), Some(url));
    let shown = d.notify_url_shown().unwrap_or_default();
    assert_eq!(shown, "https://hooks.example.org:8443/…");
    let c = load_as(
        "compose.yaml",
        &format!("x-berth:\n  notify_url: {url}\nservices:\n  a:\n    image: x\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.notify_url.as_deref(), Some(url));
    let stored = serde_json::to_string(&stored::file_form(&d)).unwrap();
    let again = load_as("again.json", &stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.notify_url, d.notify_url);
    for (bad, says) in [
        ("notify_url = \"ftp://h/x\"", "http:// or https://"),
        (
            "notify_url = \"hooks.example.org/x\"",
            "http:// or https://",
        ),
        ("notify_url = \"https:// x\"", "not a URL"),
        ("notify_url = 3", "notify_url"),
    ] {
        let e = load_as(
            "bad.toml",
            &format!("name = \"s\"\n{bad}\n[services.a]\nimage = \"x\"\n"),
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
        assert_eq!(crate::error::Error::from(e).exit_code(), 2, "{bad}");
    }
}

#[test]
fn auto_update_is_per_service_and_for_the_deployment_in_every_format_and_survives_storing() {
    use crate::deployment::schedule::Schedule;
    let dir = tempfile::tempdir().unwrap();
    let load_as = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        load(&opts(file))
    };
    let d = load_as(
        "a.toml",
        "name = \"s\"\n[auto_update]\nschedule = \"every 15m\"\nrandomized_delay = \"1h\"\nhealth_timeout = \"2m\"\nsettle = 5\n[services.a]\nimage = \"x\"\n[services.b]\nimage = \"x\"\nauto_update = false\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = d
        .auto_update
        .clone()
        .unwrap_or_else(|| panic!("no auto_update"));
    assert_eq!(a.schedule, Schedule::Every(900));
    assert_eq!(a.randomized_delay_secs, 3600);
    assert_eq!(a.health_timeout_secs, Some(120));
    assert_eq!(a.settle_secs, Some(5));
    assert_eq!(d.auto_update_services(), ["a"]);
    assert_eq!(d.update_schedule(), Some(a));
    // Service-level true alone: that service, on the default schedule.
    let y = load_as(
        "a.yaml",
        "name: s\nservices:\n  a:\n    image: x\n    auto_update: true\n  b:\n    image: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(y.auto_update, None);
    assert_eq!(y.auto_update_services(), ["a"]);
    assert_eq!(
        y.update_schedule().map(|a| a.schedule),
        Some(Schedule::Daily)
    );
    let none = load_as(
        "n.toml",
        "name = \"s\"\nauto_update = false\n[services.a]\nimage = \"x\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none.update_schedule(), None);
    let c = load_as(
        "compose.yaml",
        "x-berth:\n  auto_update: {schedule: hourly}\nservices:\n  a:\n    image: x\n    x-berth:\n      auto_update: false\n  b:\n    image: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.auto_update.as_ref().map(|a| a.schedule),
        Some(Schedule::Hourly)
    );
    assert_eq!(c.auto_update_services(), ["b"]);
    for dep in [&d, &y, &c] {
        let stored = serde_json::to_string(&stored::file_form(dep)).unwrap();
        let again = load_as("again.json", &stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.auto_update, dep.auto_update);
        assert_eq!(again.auto_update_services(), dep.auto_update_services());
    }
    for (bad, says) in [
        (
            "auto_update = { schedule = \"every 7m\" }",
            "does not divide an hour",
        ),
        (
            "auto_update = { schedule = \"monthly\" }",
            "auto_update.schedule",
        ),
        ("auto_update = { shedule = \"daily\" }", "schedule"),
        (
            "auto_update = { randomized_delay = \"soon\" }",
            "not a duration",
        ),
        ("auto_update = { health_timeout = 0 }", "longer than 0s"),
        ("auto_update = { settle = \"30d\" }", "longer than a week"),
        ("auto_update = \"yes\"", "auto_update"),
    ] {
        let e = load_as(
            "bad.toml",
            &format!("name = \"s\"\n{bad}\n[services.a]\nimage = \"x\"\n"),
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
        assert!(
            e.to_string().contains("bad.toml:2"),
            "{bad}: not located: {e}"
        );
        assert_eq!(crate::error::Error::from(e).exit_code(), 2, "{bad}");
    }
    let e = load_as(
        "bad.toml",
        "name = \"s\"\n[services.a]\nimage = \"x\"\nauto_update = { schedule = \"daily\" }\n",
    )
    .err()
    .unwrap_or_else(|| panic!("service-level table accepted"));
    assert!(e.to_string().contains("takes true or false"), "{e}");
}

/// Display is where input is made safe to print, whoever built the error.
#[test]
fn diagnostics_escape_and_cap_whatever_they_hold() {
    let e = SpecErrors(vec![SpecError {
        file: Some(PathBuf::from("a\x1b[2J.toml")),
        line: 3,
        column: 5,
        snippet: Some(format!("x = \"\x1b]0;t\x07{}\"", "v".repeat(5000))),
        snippet_column: 5,
        message: format!("bad `\u{202e}{}`", "m".repeat(5000)),
        help: Some("try\r\nthis".into()),
    }]);
    let text = e.to_string();
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
    assert!(
        text.starts_with("a\\x1b[2J.toml:3:5: error: bad `\\u{202e}mmm"),
        "{text}"
    );
    assert!(text.contains("\n3 | x = \"\\x1b]0;t\\x07vvv"), "{text}");
    assert!(text.contains("\n  |     ^\n"), "{text}");
    assert!(text.contains("  help: try\\r\\nthis\n"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.chars().count() <= crate::echo::MAX_LINE)
    );
}

#[test]
fn env_file_errors_show_no_line_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.env"), "s3cr3t-line\n").unwrap();
    let file = dir.path().join("d.toml");
    let text = "name = \"x\"\n[services.web]\nimage = \"nginx\"\nenv_file = \"secret.env\"\n";
    let e = load_str(&opts(file), Format::Toml, text.into()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!((e.0[0].line, e.0[0].snippet.as_deref()), (1, None));
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

/// Past the cap the rest of the errors are counted, not listed.
#[test]
fn many_errors_are_listed_up_to_a_cap() {
    let one = SpecError::whole_file(None, "bad", "fix");
    let e = SpecErrors(vec![one; crate::echo::MAX_ERRORS_SHOWN + 5]);
    let text = e.to_string();
    assert_eq!(
        text.matches("error: bad").count(),
        crate::echo::MAX_ERRORS_SHOWN
    );
    assert!(
        text.ends_with("\n... and 5 more\n105 errors found"),
        "{text}"
    );
}

#[test]
fn container_limits_and_runtime_settings_decode_the_same_in_every_format() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = [
        (
            "s.toml",
            "name = \"s\"\n[services.a]\nimage = \"img\"\nulimits = { nofile = 1024, nproc = { soft = 100, hard = 200 } }\nshm_size = \"64m\"\nsysctls = { \"net.core.somaxconn\" = 1024 }\nextra_hosts = [\"db.local:10.0.0.5\", \"v6:::1\"]\ndns = \"1.1.1.1\"\ninit = true\nlogging = { driver = \"json-file\", options = { max-size = \"10m\" } }\n",
        ),
        (
            "s.yaml",
            "name: s\nservices:\n  a:\n    image: img\n    ulimits:\n      nofile: 1024\n      nproc: {soft: 100, hard: 200}\n    shm_size: 64m\n    sysctls: [net.core.somaxconn=1024]\n    extra_hosts: {db.local: 10.0.0.5, v6: \"::1\"}\n    dns: [1.1.1.1]\n    init: true\n    logging:\n      driver: json-file\n      options: {max-size: 10m}\n",
        ),
        (
            "s.json",
            r#"{"name": "s", "services": {"a": {"image": "img", "ulimits": {"nofile": 1024, "nproc": {"soft": 100, "hard": 200}}, "shm_size": 67108864, "sysctls": {"net.core.somaxconn": "1024"}, "extra_hosts": ["db.local:10.0.0.5", "v6:[::1]"], "dns": ["1.1.1.1"], "init": true, "logging": {"driver": "json-file", "options": {"max-size": "10m"}}}}}"#,
        ),
        (
            "compose.yaml",
            "name: s\nservices:\n  a:\n    image: img\n    ulimits:\n      nofile: 1024\n      nproc:\n        soft: 100\n        hard: 200\n    shm_size: 64m\n    sysctls:\n      - net.core.somaxconn=1024\n    extra_hosts:\n      - db.local=10.0.0.5\n      - \"v6:::1\"\n    dns: 1.1.1.1\n    init: true\n    logging:\n      driver: json-file\n      options:\n        max-size: 10m\n",
        ),
    ];
    let mut first: Option<model::ContainerSettings> = None;
    for (name, text) in files {
        let sub = dir.path().join(name.replace('.', "-"));
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        let path = sub.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let d = load_ok(&opts(path));
        let cs = d.services["a"].settings.clone();
        assert_eq!(
            cs.ulimits["nofile"],
            model::Ulimit {
                soft: 1024,
                hard: 1024
            },
            "{name}"
        );
        assert_eq!(
            cs.ulimits["nproc"],
            model::Ulimit {
                soft: 100,
                hard: 200
            },
            "{name}"
        );
        assert_eq!(cs.shm_size, Some(64 << 20), "{name}");
        assert_eq!(cs.sysctls["net.core.somaxconn"], "1024", "{name}");
        assert_eq!(cs.extra_hosts, ["db.local:10.0.0.5", "v6:::1"], "{name}");
        assert_eq!(cs.dns, ["1.1.1.1"], "{name}");
        assert_eq!(cs.init, Some(true), "{name}");
        let l = cs
            .logging
            .clone()
            .unwrap_or_else(|| panic!("{name}: no logging"));
        assert_eq!(l.driver, "json-file");
        assert_eq!(l.options["max-size"], "10m");
        match &first {
            None => first = Some(cs),
            Some(f) => assert_eq!(f, &cs, "{name}"),
        }
    }
}

#[test]
fn bad_container_limits_are_located_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("dep.toml");
    for (bad, says) in [
        ("ulimits = { nofle = 10 }", "did you mean `nofile`"),
        ("ulimits = { nofile = -5 }", "at least -1"),
        ("ulimits = { nofile = \"many\" }", "at least -1"),
        (
            "ulimits = { nofile = { soft = 10, hard = 5 } }",
            "above the hard limit",
        ),
        (
            "ulimits = { nofile = { soft = -1, hard = 5 } }",
            "above the hard limit",
        ),
        ("ulimits = { nofile = { soft = 10 } }", "needs both"),
        ("shm_size = \"lots\"", "shm_size"),
        ("shm_size = 0", "greater than 0"),
        ("sysctls = { \"\" = 1 }", "sysctl name"),
        ("sysctls = [\"=1\"]", "sysctl name"),
        ("sysctls = [\"net.ipv4.ip_forward\"]", "has no `=`"),
        ("extra_hosts = [\"db:10.0.0.300\"]", "not an IP address"),
        ("extra_hosts = { db = \"nowhere\" }", "not an IP address"),
        ("dns = [\"8.8.8\"]", "not an IP address"),
        ("init = \"yes\"", "init"),
        ("logging = { options = { a = \"b\" } }", "has no `driver`"),
        ("logging = { driver = \"local\", option = {} }", "logging"),
        ("devices = [\"dev/null\"]", "absolute"),
        ("devices = [\"/dev/null:/dev/x:rwx\"]", "permissions"),
        ("devices = [\"/dev/a:/dev/b:rw:x\"]", "too many"),
    ] {
        std::fs::write(
            &file,
            format!("name = \"s\"\n[services.a]\nimage = \"x\"\n{bad}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = load(&opts(file.clone()))
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        let text = e.to_string();
        assert!(text.contains(says), "{bad}: {text}");
        // Located: the file and line 4, where the key is.
        assert!(text.contains("dep.toml:4"), "{bad}: {text}");
        assert_eq!(crate::error::Error::Spec(e).exit_code(), 2, "{bad}");
    }
}

#[test]
fn devices_are_written_out_in_full() {
    for (entry, full) in [
        ("/dev/fuse", "/dev/fuse:/dev/fuse:rwm"),
        ("/dev/fuse:r", "/dev/fuse:/dev/fuse:r"),
        ("/dev/sda:/dev/xvda", "/dev/sda:/dev/xvda:rwm"),
        ("/dev/sda:/dev/xvda:rw", "/dev/sda:/dev/xvda:rw"),
    ] {
        assert_eq!(values::parse_device(entry), Ok(full.to_string()), "{entry}");
    }
}

#[test]
fn update_config_and_endpoint_mode_are_read_from_berth_and_compose_files_and_survive_storing() {
    let dir = tempfile::tempdir().unwrap();
    let load_as = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        load(&opts(file))
    };
    let d = load_as(
        "a.toml",
        r#"name = "s"
[services.a]
image = "x"
endpoint_mode = "dnsrr"
update_config = { parallelism = 2, delay = "10s", order = "start-first", failure_action = "pause", monitor = "500ms", max_failure_ratio = 0.25 }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let want = UpdateConfig {
        parallelism: Some(2),
        delay_ms: Some(10_000),
        order: Some(UpdateOrder::StartFirst),
        failure_action: Some(FailureAction::Pause),
        monitor_ms: Some(500),
        max_failure_ratio: Some(0.25),
    };
    let a = &d.services["a"];
    assert_eq!(a.update_config.as_ref(), Some(&want));
    assert_eq!(a.endpoint_mode, Some(EndpointMode::Dnsrr));
    let c = load_as(
        "compose.yaml",
        "services:\n  a:\n    image: x\n    deploy:\n      endpoint_mode: dnsrr\n      update_config:\n        parallelism: 2\n        delay: 10s\n        order: start-first\n        failure_action: pause\n        monitor: 500ms\n        max_failure_ratio: 0.25\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.services["a"].update_config.as_ref(), Some(&want));
    assert_eq!(c.services["a"].endpoint_mode, Some(EndpointMode::Dnsrr));
    // Only some keys: the others stay unset (berth's defaults apply later).
    let some = load_as(
        "b.toml",
        "name = \"s\"\n[services.a]\nimage = \"x\"\nupdate_config = { order = \"stop-first\", delay = 0 }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        some.services["a"].update_config,
        Some(UpdateConfig {
            order: Some(UpdateOrder::StopFirst),
            delay_ms: Some(0),
            ..Default::default()
        })
    );
    // A stored deployment is written back as a file and read again.
    for dep in [&d, &some] {
        let stored = serde_json::to_string(&stored::file_form(dep)).unwrap();
        let again = load_as("again.json", &stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.services["a"], dep.services["a"]);
    }
    for (bad, says) in [
        (
            "endpoint_mode = \"ingress\"",
            "unknown endpoint mode `ingress`",
        ),
        (
            "update_config = { order = \"first\" }",
            "unknown update order `first`",
        ),
        (
            "update_config = { failure_action = \"retry\" }",
            "unknown failure action",
        ),
        ("update_config = { parallelism = -1 }", "between 0 and 100"),
        ("update_config = { max_failure_ratio = 2 }", "from 0 to 1"),
        ("update_config = { delay = \"soon\" }", "not a duration"),
        (
            "update_config = { paralelism = 1 }",
            "did you mean `parallelism`",
        ),
        ("update_config = 3", "update_config"),
    ] {
        let e = load_as(
            "bad.toml",
            &format!("name = \"s\"\n[services.a]\nimage = \"x\"\n{bad}\n"),
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
        assert_eq!(crate::error::Error::from(e).exit_code(), 2, "{bad}");
    }
}

#[test]
fn placement_is_read_from_the_file_and_from_compose_and_survives_storing() {
    let dir = tempfile::tempdir().unwrap();
    let load_as = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        load(&opts(file)).unwrap_or_else(|e| panic!("{e}"))
    };
    let want = vec![
        "node.labels.disk==ssd".to_string(),
        "node.role!=manager".to_string(),
    ];
    let d = load_as(
        "a.toml",
        "name = \"s\"\n[services.a]\nimage = \"x\"\nplacement = [\"node.labels.disk==ssd\", \"node.role!=manager\"]\n",
    );
    assert_eq!(d.services["a"].placement, want);
    let c = load_as(
        "compose.yaml",
        "services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints: [node.labels.disk==ssd, node.role!=manager]\n",
    );
    assert_eq!(c.services["a"].placement, want);
    let stored = serde_json::to_string(&stored::file_form(&d)).unwrap();
    let again = load_as("again.json", &stored);
    assert_eq!(again.services["a"].placement, want);
}
