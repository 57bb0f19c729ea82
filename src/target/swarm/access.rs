//! What a swarm deployment grants over SSH, published on the swarm.
//!
//! Each node runs its own `berth ssh-gateway`, and on a real cluster the
//! nodes do not share the manager's state directory. So a swarm apply
//! publishes the deployment's [`AccessList`] (services, counts, shells and
//! granted public keys; nothing else of the deployment) as a Swarm config
//! named after its content, labelled `berth.deployment` and
//! `berth.role=ssh-access`; a gateway run with `--target swarm` reads the
//! lists from a manager at every login ([`published`]). A changed list is
//! a new config, and the old one is removed once the apply converged (as
//! the deployment's unused configs are), so a revoked key stops working at
//! the next login; destroy removes it with the deployment's other configs.
//! A deployment that grants no key publishes nothing.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::deployment::Deployment;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::names;
use crate::ssh::access::AccessList;
use crate::target::Reporter;

/// The [`names::LABEL_ROLE`] of a published access list.
pub const ROLE: &str = "ssh-access";

/// The config `deployment` publishes: its name and content; `None` when
/// it grants no key.
pub fn object(deployment: &Deployment) -> Result<Option<(String, String)>> {
    let list = AccessList::of(deployment, true);
    if list.services.values().all(|s| s.keys.is_empty()) {
        return Ok(None);
    }
    let content = serde_json::to_string(&list)
        .map_err(|e| Error::Runtime(format!("cannot serialise the ssh access list: {e}")))?;
    let digest = format!("{:x}", Sha256::digest(content.as_bytes()));
    let name = crate::instance::swarm::object_name(&deployment.name, ROLE, &digest);
    Ok(Some((name, content)))
}

/// Make sure `deployment`'s access list is on the swarm (see [`object`]);
/// its name. Older lists are left to the apply's pruning of unused configs.
pub async fn publish(
    engine: &Engine,
    deployment: &Deployment,
    revision: u64,
    report: &Reporter,
) -> Result<Option<String>> {
    let Some((name, content)) = object(deployment)? else {
        return Ok(None);
    };
    let labels = HashMap::from([
        (names::LABEL_DEPLOYMENT.to_string(), deployment.name.clone()),
        (names::LABEL_ROLE.to_string(), ROLE.to_string()),
        (names::LABEL_REVISION.to_string(), revision.to_string()),
    ]);
    let (_, created) = engine.ensure_role_config(&name, &content, labels).await?;
    if created {
        report(format!("published the ssh access list as config {name}"));
    }
    Ok(Some(name))
}

/// The access lists published on the swarm `manager` manages, one per
/// deployment (the highest revision's, should an apply have been
/// interrupted before removing the older one). A list that does not read,
/// or claims another deployment than its label, is skipped with a warning:
/// it grants nothing.
pub async fn published(manager: &Engine) -> Result<Vec<AccessList>> {
    let mut best: BTreeMap<String, (u64, AccessList)> = BTreeMap::new();
    for (o, text) in manager.role_configs(ROLE).await? {
        let label = o
            .labels
            .get(names::LABEL_DEPLOYMENT)
            .cloned()
            .unwrap_or_default();
        let list: AccessList = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("config {}: not an ssh access list ({e}); ignored", o.name);
                continue;
            }
        };
        if let Some(why) = list.problem() {
            tracing::warn!("config {}: {why}; ignored", o.name);
            continue;
        }
        if list.deployment != label || !list.swarm {
            tracing::warn!(
                "config {}: its access list does not match its labels; ignored",
                o.name
            );
            continue;
        }
        let revision = o
            .labels
            .get(names::LABEL_REVISION)
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0);
        match best.get(&label) {
            Some((r, _)) if *r >= revision => {}
            _ => {
                best.insert(label, (revision, list));
            }
        }
    }
    Ok(best.into_values().map(|(_, l)| l).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(ssh: &[&str]) -> Deployment {
        let key = serde_json::json!({"name": "a", "openssh":
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILV+JdUrlKrvmd1OAw9sG1mSMh+pqnjL9d1NU8rq4icz",
            "fingerprint": ""});
        serde_json::from_value(serde_json::json!({
            "name": "d",
            "keys": {"a": key},
            "services": {"s": {"name": "s", "image": "i", "count": 1, "ssh": ssh,
                               "env": {"PASSWORD": "hunter2"}}},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_published_object_is_named_after_its_content_and_holds_only_grants() {
        assert_eq!(object(&deployment(&[])).ok(), Some(None));
        let (name, content) = object(&deployment(&["a"]))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("a granted key publishes a list"));
        assert!(name.starts_with("d_ssh-access_"), "{name}");
        assert!(name.len() <= crate::instance::swarm::MAX_OBJECT_NAME);
        assert!(
            !content.contains("hunter2") && !content.contains("\"i\""),
            "{content}"
        );
        let again = object(&deployment(&["a"])).ok().flatten();
        assert_eq!(again.map(|o| o.0), Some(name));
    }

    #[test]
    fn a_list_with_names_berth_would_not_give_or_a_count_out_of_range_is_refused() {
        let good = AccessList::of(&deployment(&["a"]), true);
        assert_eq!(good.problem(), None);
        let with = |f: &dyn Fn(&mut AccessList)| {
            let mut l = good.clone();
            f(&mut l);
            l.problem().unwrap_or_else(|| panic!("accepted: {l:?}"))
        };
        assert!(with(&|l| l.deployment = "../etc".into()).contains("deployment name"));
        assert!(with(&|l| l.deployment = String::new()).contains("deployment name"));
        let svc = good.services["s"].clone();
        let e = with(&|l| {
            l.services.insert("a/b".into(), svc.clone());
        });
        assert!(e.contains("service name"), "{e}");
        for count in [0, u32::MAX] {
            let e = with(&|l| {
                if let Some(s) = l.services.get_mut("s") {
                    s.count = count;
                }
            });
            assert!(e.contains("count"), "{e}");
        }
    }
}
