//! What `apply` would record beyond containers: the applied revision.
//!
//! `apply` writes a new revision whenever the resolved deployment or the
//! integration differs from the current one, and the SSH gateway, the
//! supervisor and snapshots act on what that revision says (keys and grants,
//! `ssh_shell`, snapshot settings...). [`changes`] compares exactly what
//! `apply` would write with what is recorded, so `plan` shows every such
//! change and `apply` decides whether to write a revision from the same
//! plan: the two cannot drift. Lines name what changed, never a secret
//! value (environment values are not shown; keys by name only).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::deployment::Deployment;
use crate::instance::{AbsentTable, FieldChange, json_diff};
use crate::state::Revision;

/// Lines describing how the revision `apply` would write differs from
/// `current` (empty: apply writes no new revision). `recreated` are the
/// services whose instances the plan creates, recreates or removes: their
/// container fields are explained there and not repeated here.
pub fn changes(
    current: Option<&Revision>,
    deployment: &Deployment,
    integration: &str,
    recreated: &BTreeSet<String>,
) -> Vec<String> {
    let Some(current) = current else {
        return vec!["first revision of this deployment on this host".into()];
    };
    let mut out = Vec::new();
    let mut explained_elsewhere = false;
    if current.integration != integration {
        out.push(format!(
            "integration: {} → {integration}",
            current.integration
        ));
    }
    if &current.deployment == deployment {
        return out;
    }
    let before = current.deployment.clone();
    if before.source != deployment.source {
        out.push(format!(
            "deployment file: {} → {}",
            path_text(before.source.as_deref()),
            path_text(deployment.source.as_deref())
        ));
    }
    // Keys by name (their fingerprints are not secret, but long).
    let names = |d: &Deployment| -> BTreeSet<String> { d.keys.keys().cloned().collect() };
    let (kb, ka) = (names(&before), names(deployment));
    for k in ka.difference(&kb) {
        out.push(format!("key {k} added"));
    }
    for k in kb.difference(&ka) {
        out.push(format!("key {k} removed"));
    }
    for k in ka.intersection(&kb) {
        if before.keys.get(k) != deployment.keys.get(k) {
            out.push(format!("key {k} replaced"));
        }
    }
    if before.deployment_keys != deployment.deployment_keys {
        let fps = |d: &Deployment| -> BTreeSet<String> {
            d.deployment_keys
                .iter()
                .map(|k| k.fingerprint.clone())
                .collect()
        };
        out.push(format!(
            "deployment-wide keys changed{}",
            set_delta(&fps(&before), &fps(deployment))
        ));
    }
    if before.snapshots_keep != deployment.snapshots_keep {
        out.push(format!(
            "snapshots_keep: {} → {}",
            opt_text(before.snapshots_keep),
            opt_text(deployment.snapshots_keep)
        ));
    }
    if before.notify != deployment.notify {
        let text = |n: &Option<Vec<String>>| {
            n.as_ref()
                .map(|argv| format!("{argv:?}"))
                .unwrap_or_else(|| "(none)".into())
        };
        out.push(format!(
            "notify: {} → {}",
            text(&before.notify),
            text(&deployment.notify)
        ));
    }
    if before.auto_update != deployment.auto_update {
        let text = |a: &Option<crate::deployment::AutoUpdate>| {
            a.as_ref()
                .map(|a| a.summary())
                .unwrap_or_else(|| "(none)".into())
        };
        out.push(format!(
            "auto_update: {} → {}",
            text(&before.auto_update),
            text(&deployment.auto_update)
        ));
    }
    if before.notify_url != deployment.notify_url {
        let text = |d: &Deployment| d.notify_url_shown().unwrap_or_else(|| "(none)".into());
        // Two URLs on one host differ only where the token may be.
        let (b, a) = (text(&before), text(deployment));
        out.push(if b == a {
            format!("notify_url: {a} (changed)")
        } else {
            format!("notify_url: {b} → {a}")
        });
    }
    // Configs and secrets by name; never their content.
    for (kind, b, a) in [
        (
            crate::deployment::FileKind::Config,
            &before.configs,
            &deployment.configs,
        ),
        (
            crate::deployment::FileKind::Secret,
            &before.secrets,
            &deployment.secrets,
        ),
    ] {
        let k = kind.as_str();
        for (name, src) in a {
            match b.get(name) {
                None => out.push(format!("{k} {name} added")),
                Some(old) if old != src => out.push(format!("{k} {name}: content changed")),
                Some(_) => {}
            }
        }
        for name in b.keys().filter(|n| !a.contains_key(*n)) {
            out.push(format!("{k} {name} removed"));
        }
    }
    // Services present before and after (added and removed services show
    // as instances to create and remove).
    let (sb, sa): (BTreeSet<&String>, BTreeSet<&String>) = (
        before.services.keys().collect(),
        deployment.services.keys().collect(),
    );
    let mut came_or_went = sb.symmetric_difference(&sa).peekable();
    if came_or_went.peek().is_some() && came_or_went.all(|s| recreated.contains(*s)) {
        explained_elsewhere = true;
    }
    for (name, svc) in &deployment.services {
        let Some(old) = before.services.get(name) else {
            continue;
        };
        if old == svc {
            continue;
        }
        if old.ssh != svc.ssh {
            let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
            out.push(format!(
                "{name}: ssh grants changed{}",
                set_delta(&set(&old.ssh), &set(&svc.ssh))
            ));
        }
        let mut a = serde_json::to_value(old).unwrap_or_default();
        let mut b = serde_json::to_value(svc).unwrap_or_default();
        for v in [&mut a, &mut b] {
            if let Some(m) = v.as_object_mut() {
                m.remove("ssh");
            }
        }
        for (field, line) in json_diff(&a, &b, AbsentTable::ByField)
            .iter()
            .map(setting_line)
        {
            if recreated.contains(name) && crate::deployment::is_container_key(&field) {
                explained_elsewhere = true;
                continue;
            }
            out.push(format!("{name}: {line}"));
        }
    }
    // Anything else that differs (a field added to the model later) still
    // shows, so that plan never says "no changes" when apply would write.
    if out.is_empty() && !explained_elsewhere {
        out.push("the resolved deployment differs from the applied revision".into());
    }
    out
}

fn path_text(p: Option<&std::path::Path>) -> String {
    p.map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none)".into())
}

fn opt_text(v: Option<usize>) -> String {
    v.map(|n| n.to_string())
        .unwrap_or_else(|| "(default)".into())
}

/// ` (+a, -b)`, or nothing when only the order changed.
fn set_delta(before: &BTreeSet<String>, after: &BTreeSet<String>) -> String {
    let mut parts: Vec<String> = after.difference(before).map(|k| format!("+{k}")).collect();
    parts.extend(before.difference(after).map(|k| format!("-{k}")));
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// A differing field as `(top-level field, line)`, with values where they
/// are short scalars and not environment (which may hold secrets).
fn setting_line(c: &FieldChange) -> (String, String) {
    let path = &c.path;
    let top = path.split('.').next().unwrap_or_default().to_string();
    let secret = top == "env";
    let line = match (scalar(&c.before), scalar(&c.after)) {
        (Some(x), Some(y)) if !secret => format!("{path}: {x} → {y}"),
        _ => format!("{path} changed"),
    };
    (top, line)
}

fn scalar(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => "(unset)".to_string(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => v.to_string(),
        _ => return None,
    };
    (s.chars().count() <= 60).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(extra: Value) -> Deployment {
        let mut base = serde_json::json!({
            "name": "ex",
            "keys": {
                "admin": {"name": "admin", "openssh": "ssh-ed25519 AAAA admin", "fingerprint": "SHA256:a"},
                "ops": {"name": "ops", "openssh": "ssh-ed25519 BBBB ops", "fingerprint": "SHA256:b"}
            },
            "services": {
                "mail": {"name": "mail", "image": "img", "count": 1, "ssh": ["admin"],
                         "env": {"PASSWORD": "old-secret"}}
            }
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap_or_else(|e| panic!("{e}"))
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                for (k, v) in mb {
                    merge(ma.entry(k).or_insert(Value::Null), v);
                }
            }
            (_, Value::Null) => {}
            (a, b) => *a = b,
        }
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn rev(d: Deployment) -> Revision {
        Revision {
            revision: 1,
            applied_at: "2026-01-01T00:00:00Z".into(),
            integration: "docker".into(),
            deployment: d,
            image_ids: Default::default(),
            cause: None,
            image_digests: Default::default(),
        }
    }

    #[test]
    fn nothing_changed_is_no_line() {
        let d = dep(Value::Null);
        assert!(changes(Some(&rev(d.clone())), &d, "docker", &none()).is_empty());
        assert_eq!(changes(None, &d, "docker", &none()).len(), 1);
    }

    #[test]
    fn every_setting_apply_records_is_named_without_secret_values() {
        let current = rev(dep(Value::Null));
        let cases = [
            (
                serde_json::json!({"services": {"mail": {"ssh": ["admin", "ops"]}}}),
                "mail: ssh grants changed (+ops)",
            ),
            (
                serde_json::json!({"services": {"mail": {"ssh_shell": "/bin/bash"}}}),
                "mail: ssh_shell: (unset) → \"/bin/bash\"",
            ),
            (
                serde_json::json!({"services": {"mail": {"snapshot_on_upgrade": false}}}),
                "mail: snapshot_on_upgrade: (unset) → false",
            ),
            (
                serde_json::json!({"services": {"mail": {"snapshots_keep": 2}}}),
                "mail: snapshots_keep: (unset) → 2",
            ),
            (
                serde_json::json!({"services": {"mail": {"health": {"on_unhealthy": "ignore"}}}}),
                "mail: health.on_unhealthy: (unset) → \"ignore\"",
            ),
            (
                serde_json::json!({"snapshots_keep": 5}),
                "snapshots_keep: (default) → 5",
            ),
            (
                serde_json::json!({"keys": {"dev": {"name": "dev", "openssh": "ssh-ed25519 CCCC", "fingerprint": "SHA256:c"}}}),
                "key dev added",
            ),
            (
                serde_json::json!({"keys": {"ops": {"openssh": "ssh-ed25519 DDDD ops", "fingerprint": "SHA256:d"}}}),
                "key ops replaced",
            ),
            (
                serde_json::json!({"services": {"mail": {"env": {"PASSWORD": "new-secret"}}}}),
                "mail: env.PASSWORD changed",
            ),
        ];
        for (extra, want) in cases {
            let got = changes(Some(&current), &dep(extra.clone()), "docker", &none());
            assert_eq!(got, [want.to_string()], "{extra}");
            assert!(!got.iter().any(|l| l.contains("secret")), "{got:?}");
        }
        let got = changes(Some(&current), &dep(Value::Null), "systemd", &none());
        assert_eq!(got, ["integration: docker → systemd"]);
        // A recreated service's container fields are explained by the
        // recreate; its other settings still show.
        let mail: BTreeSet<String> = ["mail".to_string()].into();
        let both = serde_json::json!({"services": {"mail": {
            "env": {"PASSWORD": "new-secret"}, "ssh_shell": "/bin/sh"}}});
        assert_eq!(
            changes(Some(&current), &dep(both), "docker", &mail),
            ["mail: ssh_shell: (unset) → \"/bin/sh\""]
        );
        let env_only = serde_json::json!({"services": {"mail": {"env": {"PASSWORD": "x"}}}});
        assert!(changes(Some(&current), &dep(env_only), "docker", &mail).is_empty());
    }

    #[test]
    fn keys_grants_and_the_file_are_named_by_what_changed() {
        let current = rev(dep(Value::Null));
        let mut d = dep(Value::Null);
        d.keys.remove("ops");
        assert_eq!(
            changes(Some(&current), &d, "docker", &none()),
            ["key ops removed"]
        );

        let mut d = dep(Value::Null);
        d.deployment_keys.push(d.keys["ops"].clone());
        assert_eq!(
            changes(Some(&current), &d, "docker", &none()),
            ["deployment-wide keys changed (+SHA256:b)"]
        );

        let mut d = dep(Value::Null);
        d.source = Some("/srv/mail.toml".into());
        assert_eq!(
            changes(Some(&current), &d, "docker", &none()),
            ["deployment file: (none) → /srv/mail.toml"]
        );

        // Grants only reordered: a change (apply writes it), with no delta.
        let mut before = dep(serde_json::json!({"services": {"mail": {"ssh": ["admin", "ops"]}}}));
        let after = dep(serde_json::json!({"services": {"mail": {"ssh": ["ops", "admin"]}}}));
        assert_eq!(
            changes(Some(&rev(before.clone())), &after, "docker", &none()),
            ["mail: ssh grants changed"]
        );

        // A service gone shows as removals in the plan, and needs no line
        // of its own here.
        before
            .services
            .insert("extra".into(), before.services["mail"].clone());
        let after = dep(serde_json::json!({"services": {"mail": {"ssh": ["admin", "ops"]}}}));
        let extra: BTreeSet<String> = ["extra".to_string()].into();
        assert_eq!(
            changes(Some(&rev(before.clone())), &after, "docker", &extra),
            Vec::<String>::new()
        );
        // One gone without instances to remove (its containers were removed
        // by hand): the revision still changes, and plan says so.
        assert_eq!(
            changes(Some(&rev(before)), &after, "docker", &BTreeSet::new()),
            ["the resolved deployment differs from the applied revision"]
        );
    }
}
