//! `plan` shows everything `apply` would change, including what apply
//! records beyond containers (keys and SSH grants, snapshot settings...).

use crate::support::*;

const ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII1R1yTY2hZIksre0u2J+ExGVznPcoG/tJXbZP9GqV/r admin@laptop";
const OPS: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4HWB8iRuQWXv4JfGCRkY8s9PE7IOkmUSW/boy5TsQK ops@desk";

/// One step's edit of (service lines, top-level lines, `[keys]` lines).
type Change<'a> = dyn Fn(&mut Vec<String>, &mut String, &mut String) + 'a;

#[test]
fn plan_names_every_setting_apply_would_record() {
    let name = unique_name("plansettings");
    let _cleanup = Cleanup::new(&name);
    let ws = Workspace::new();
    let image = base_image();
    // (top-level lines, [keys] lines, lines of [services.web])
    let file = |top: &str, keys: &str, svc: &str| {
        format!(
            r#"name = "{name}"
{top}

[keys]
admin = "{ADMIN}"
{keys}

[services.web]
image = "{image}"
command = ["sleep", "3600"]
stop_timeout = 1
{svc}
"#
        )
    };
    let health_restart = r#"health = { cmd = "true", interval = "30s", on_unhealthy = "restart" }"#;
    let health_ignore = r#"health = { cmd = "true", interval = "30s", on_unhealthy = "ignore" }"#;
    let ops_key = format!("ops = \"{OPS}\"");
    let mut svc = vec![r#"ssh = ["admin"]"#.to_string(), health_restart.to_string()];
    let mut top = String::new();
    let mut keys = String::new();
    ws.write("berth.toml", &file(&top, &keys, &svc.join("\n")));
    let out = run(&ws, &["apply", "--integration", "docker"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Each step changes one setting; plan must name it and exit 3.
    let steps: Vec<(&str, Box<Change>)> = vec![
        ("key ops added", Box::new(|_, _, k| *k = ops_key.clone())),
        (
            "web: ssh grants changed (+ops)",
            Box::new(|s, _, _| s[0] = r#"ssh = ["admin", "ops"]"#.into()),
        ),
        (
            "web: ssh_shell",
            Box::new(|s, _, _| s.push(r#"ssh_shell = "/bin/sh""#.into())),
        ),
        (
            "web: snapshot_on_upgrade",
            Box::new(|s, _, _| s.push("snapshot_on_upgrade = false".into())),
        ),
        (
            "web: snapshots_keep",
            Box::new(|s, _, _| s.push("snapshots_keep = 2".into())),
        ),
        (
            "snapshots_keep: (default) → 4",
            Box::new(|_, t, _| *t = "snapshots_keep = 4".into()),
        ),
        (
            "health.on_unhealthy",
            Box::new(|s, _, _| s[1] = health_ignore.into()),
        ),
    ];
    for (want, change) in steps {
        change(&mut svc, &mut top, &mut keys);
        ws.write("berth.toml", &file(&top, &keys, &svc.join("\n")));
        let out = run(&ws, &["plan", "--integration", "docker"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{want}: {}", show(&out));
        assert!(text.contains(want), "{want}: {text}");
        assert!(!text.contains("AAAAC3Nza"), "no key material: {text}");

        let json = run(
            &ws,
            &["plan", "--integration", "docker", "--output", "json"],
        );
        assert_eq!(json.status.code(), Some(3), "{}", show(&json));
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
        assert_eq!(v["changes"], true, "{v}");
        let listed = v["plan"]["settings_changes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .any(|l| l.as_str().is_some_and(|l| l.contains(want)))
            })
            .unwrap_or(false);
        let recreated = v["plan"]["instances"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["action"] == "recreate"));
        assert!(listed || recreated, "{want}: {v}");

        let out = run(&ws, &["apply", "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(0), "{want}: {}", show(&out));
        let out = run(&ws, &["plan", "--integration", "docker"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "after applying {want}: {}",
            show(&out)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("no changes"));
    }

    // The applied revision carries the grants plan announced.
    let current = ws
        .state_dir()
        .join("deployments")
        .join(&name)
        .join("current.json");
    let text = std::fs::read_to_string(&current).expect("current revision");
    let rev: serde_json::Value = serde_json::from_str(&text).expect("revision JSON");
    assert_eq!(
        rev["deployment"]["services"]["web"]["ssh"],
        serde_json::json!(["admin", "ops"]),
        "{rev}"
    );
}

#[test]
fn integration_is_refused_with_the_swarm_target() {
    let ws = Workspace::new();
    ws.write(
        "berth.toml",
        &format!(
            "name = \"{}\"\n[services.web]\nimage = \"{}\"\n",
            unique_name("plantarget"),
            base_image()
        ),
    );
    for cmd in ["plan", "apply"] {
        let out = run(&ws, &[cmd, "--target", "swarm", "--integration", "docker"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
        assert!(show(&out).contains("--target swarm"), "{}", show(&out));
    }
}
