//! Who may enter which container: login names resolved against what each
//! applied deployment grants (its [`AccessList`]), and the keys granted
//! there.
//!
//! The lists come from the applied revisions in the state directory and,
//! with [`Sources::swarm`], from the access lists a swarm apply publishes
//! on the swarm (a gateway on a node that does not share the manager's
//! state directory learns the grants there). Everything is read fresh on
//! each call, so an apply that grants or revokes a key takes effect for the
//! next login without restarting anything.

use std::collections::BTreeMap;

use crate::deployment::{Deployment, SshKey};
use crate::engine::Engine;
use crate::state::StateDir;
use russh::keys::PublicKey;

/// Longest login name looked at; anything longer is refused unread.
pub const MAX_LOGIN_LEN: usize = 200;

/// The container a login name leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub deployment: String,
    pub service: String,
    /// 1-based instance number.
    pub index: u32,
    pub container: String,
    /// The unambiguous login for this container: `deployment.service[-N]`.
    pub qualified: String,
    /// Shell for interactive sessions.
    pub shell: String,
    /// Keys granted to the service (its `ssh` list plus deployment-wide keys).
    pub keys: Vec<SshKey>,
    /// The deployment runs on a swarm: the instance is the task of slot
    /// `index` of the Swarm service, on whichever node runs it.
    pub swarm: bool,
}

/// What one applied deployment grants: its services, how many instances
/// each runs, their shells and the public keys granted to each; nothing
/// else of the deployment. The form a swarm apply publishes
/// ([`crate::target::swarm::access`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessList {
    pub deployment: String,
    /// Runs on a swarm (see [`Target::swarm`]).
    pub swarm: bool,
    pub services: BTreeMap<String, ServiceAccess>,
}

/// One service's part of an [`AccessList`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccess {
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_shell: Option<String>,
    /// Its `ssh` keys plus the deployment-wide ones.
    pub keys: Vec<SshKey>,
}

impl AccessList {
    /// What `deployment` grants; `swarm`: it was applied on a swarm.
    pub fn of(deployment: &Deployment, swarm: bool) -> Self {
        let services = deployment
            .services
            .values()
            .map(|svc| {
                let access = ServiceAccess {
                    count: svc.count,
                    ssh_shell: svc.ssh_shell.clone(),
                    keys: deployment
                        .keys_for(&svc.name)
                        .into_iter()
                        .cloned()
                        .collect(),
                };
                (svc.name.clone(), access)
            })
            .collect();
        Self {
            deployment: deployment.name.clone(),
            swarm,
            services,
        }
    }
}

impl AccessList {
    /// Why this list, read from somewhere berth does not control (a swarm's
    /// config), cannot be used: a deployment or service name berth would
    /// not give (they become container and service names in engine calls),
    /// or a count outside what a deployment file may set (each login walks
    /// every instance). `None`: it can.
    pub fn problem(&self) -> Option<String> {
        if let Err(e) = crate::names::check_name(&self.deployment) {
            return Some(format!("deployment name {:?}: {e}", self.deployment));
        }
        for (service, svc) in &self.services {
            if let Err(e) = crate::names::check_name(service) {
                return Some(format!("service name {service:?}: {e}"));
            }
            if !(1..=crate::deployment::MAX_COUNT).contains(&svc.count) {
                return Some(format!(
                    "service {service}: count {} is not between 1 and {}",
                    svc.count,
                    crate::deployment::MAX_COUNT
                ));
            }
        }
        None
    }
}

/// What a login name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Exactly one container.
    Found(Target),
    /// More than one container answers to the name (for example the same
    /// service name in two deployments).
    Ambiguous(Vec<Target>),
    /// No container answers to the name.
    Unknown,
}

/// Shell used when the service does not set `ssh_shell`.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// The names an instance answers to: `service` (instance 1), `service-N`,
/// `deployment.service` (instance 1) and `deployment.service-N`.
fn names_of(d: &str, s: &str, index: u32) -> Vec<String> {
    let mut v = vec![format!("{s}-{index}"), format!("{d}.{s}-{index}")];
    if index == 1 {
        v.push(s.to_string());
        v.push(format!("{d}.{s}"));
    }
    v
}

/// The targets of one deployment that answer to `login`.
pub fn matches_in(list: &AccessList, login: &str) -> Vec<Target> {
    let d = &list.deployment;
    let mut out = Vec::new();
    for (service, svc) in &list.services {
        for index in 1..=svc.count {
            if !names_of(d, service, index).iter().any(|n| n == login) {
                continue;
            }
            let qualified = if svc.count > 1 {
                format!("{d}.{service}-{index}")
            } else {
                format!("{d}.{service}")
            };
            out.push(Target {
                deployment: d.clone(),
                service: service.clone(),
                index,
                container: crate::names::container_name(d, service, index, svc.count),
                qualified,
                shell: svc
                    .ssh_shell
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SHELL.to_string()),
                keys: svc.keys.clone(),
                swarm: list.swarm,
            });
        }
    }
    out
}

/// Resolve a login against the access lists in `lists`.
pub fn resolve_in(lists: &[AccessList], login: &str) -> Lookup {
    if login.is_empty() || login.len() > MAX_LOGIN_LEN {
        return Lookup::Unknown;
    }
    let mut found: Vec<Target> = lists.iter().flat_map(|d| matches_in(d, login)).collect();
    found.sort_by(|a, b| a.container.cmp(&b.container));
    found.dedup_by(|a, b| a.container == b.container);
    match found.len() {
        0 => Lookup::Unknown,
        1 => Lookup::Found(found.remove(0)),
        _ => Lookup::Ambiguous(found),
    }
}

/// The deployments applied in `state`. A deployment whose state cannot be
/// read is skipped (and logged): one broken file must not lock everyone out
/// of every other deployment, and it grants nothing.
pub fn applied_deployments(state: &StateDir) -> Vec<Deployment> {
    applied_revisions(state)
        .into_iter()
        .map(|r| r.deployment)
        .collect()
}

/// The current revisions in `state` (see [`applied_deployments`]).
fn applied_revisions(state: &StateDir) -> Vec<crate::state::Revision> {
    let names = match state.list_deployments() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot list applied deployments: {e}");
            return Vec::new();
        }
    };
    names
        .iter()
        .filter_map(|name| match state.read_current(name) {
            Ok(Some(rev)) => Some(rev),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignoring deployment {name}: {e}");
                None
            }
        })
        .collect()
}

/// The access lists of what is applied in `state` now.
pub fn applied(state: &StateDir) -> Vec<AccessList> {
    applied_revisions(state)
        .iter()
        .map(|r| AccessList::of(&r.deployment, r.integration == SWARM))
        .collect()
}

/// The integration a swarm revision records.
const SWARM: &str = "swarm";

/// Resolve a login against what is applied in `state` now.
pub fn resolve(state: &StateDir, login: &str) -> Lookup {
    if login.is_empty() || login.len() > MAX_LOGIN_LEN {
        return Lookup::Unknown;
    }
    resolve_in(&applied(state), login)
}

/// Where the gateway and `berth exec` learn what is applied.
#[derive(Debug, Clone)]
pub struct Sources {
    pub state: StateDir,
    /// A swarm manager (`--target swarm`): the swarm's deployments are the
    /// access lists published there, and the state directory's swarm
    /// revisions are not read (on a node other than the manager it has
    /// none, or stale ones). Host deployments still come from the state
    /// directory.
    pub swarm: Option<Engine>,
}

impl Sources {
    /// Every access list there is now. When the manager cannot be asked,
    /// only the state directory's host deployments are served (and the
    /// failure logged): a manager down must not lock anyone out of this
    /// host, and it grants nothing.
    pub async fn lists(&self) -> Vec<AccessList> {
        let local = applied(&self.state);
        let Some(manager) = &self.swarm else {
            return local;
        };
        let mut lists: Vec<AccessList> = local.into_iter().filter(|l| !l.swarm).collect();
        match crate::target::swarm::access::published(manager).await {
            Ok(published) => lists.extend(published),
            Err(e) => tracing::warn!("cannot read the swarm's access lists: {e}"),
        }
        lists
    }

    /// Resolve a login against [`Sources::lists`].
    pub async fn resolve(&self, login: &str) -> Lookup {
        if login.is_empty() || login.len() > MAX_LOGIN_LEN {
            return Lookup::Unknown;
        }
        resolve_in(&self.lists().await, login)
    }
}

/// Does `granted` (a key from the deployment) equal `offered`? Keys are
/// compared by their key material; comments do not matter. A granted key
/// that does not parse grants nothing.
pub fn same_key(granted: &SshKey, offered: &PublicKey) -> bool {
    match PublicKey::from_openssh(granted.openssh.trim()) {
        Ok(k) => k.key_data() == offered.key_data(),
        Err(e) => {
            tracing::warn!(key = %granted.name, "ignoring a granted key that does not parse: {e}");
            false
        }
    }
}

impl Target {
    /// The granted key matching `offered`, if any.
    pub fn grant(&self, offered: &PublicKey) -> Option<&SshKey> {
        self.keys.iter().find(|k| same_key(k, offered))
    }
}

/// What a key may do under a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Enter this container.
    Enter(Target),
    /// The login is ambiguous; the key is granted to these of the candidates
    /// (it may learn their qualified names, nothing else).
    Ambiguous(Vec<String>),
}

/// What `offered` may do when logging in as `login`, or `None`: refused.
pub fn grant_for(lookup: &Lookup, offered: &PublicKey) -> Option<Grant> {
    match lookup {
        Lookup::Found(t) => t.grant(offered).map(|_| Grant::Enter(t.clone())),
        Lookup::Ambiguous(ts) => {
            let names: Vec<String> = ts
                .iter()
                .filter(|t| t.grant(offered).is_some())
                .map(|t| t.qualified.clone())
                .collect();
            (!names.is_empty()).then_some(Grant::Ambiguous(names))
        }
        Lookup::Unknown => None,
    }
}

/// A key's `authorized_keys` form, `<type> <base64> [comment]`, rebuilt from
/// the parsed key so nothing but a key can reach an `authorized_keys` line.
/// `None` when the key does not parse.
pub fn authorized_key_text(key: &SshKey) -> Option<String> {
    let parsed = PublicKey::from_openssh(key.openssh.trim()).ok()?;
    let mut bare = parsed.clone();
    bare.set_comment("");
    let text = bare.to_openssh().ok()?;
    let comment: String = parsed
        .comment()
        .to_string()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let text = text.trim().to_string();
    if comment.trim().is_empty() {
        Some(text)
    } else {
        Some(format!("{text} {}", comment.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Service;
    use std::collections::BTreeMap;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOVTE/8JfchVzr5SgM/MvvUJC13sEvP7XYelUkdmoGKb alice@x";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILV+JdUrlKrvmd1OAw9sG1mSMh+pqnjL9d1NU8rq4icz";

    fn key(name: &str, text: &str) -> SshKey {
        SshKey {
            name: name.into(),
            openssh: text.into(),
            fingerprint: String::new(),
        }
    }

    fn service(name: &str, count: u32, ssh: &[&str]) -> Service {
        serde_json::from_value(serde_json::json!({
            "name": name, "image": "img", "count": count,
            "ssh": ssh,
        }))
        .expect("service json")
    }

    fn deployment(name: &str, services: Vec<Service>) -> Deployment {
        let mut keys = BTreeMap::new();
        keys.insert("alice".to_string(), key("alice", K1));
        keys.insert("bob".to_string(), key("bob", K2));
        Deployment {
            name: name.into(),
            source: None,
            keys,
            deployment_keys: vec![],
            notify: None,
            auto_update: None,
            notify_url: None,
            snapshots_keep: None,
            configs: Default::default(),
            secrets: Default::default(),
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    fn pk(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key")
    }

    fn host(d: Deployment) -> AccessList {
        AccessList::of(&d, false)
    }

    #[test]
    fn login_names() {
        let a = host(deployment(
            "a",
            vec![service("mail", 1, &["alice"]), service("web", 3, &["bob"])],
        ));
        let b = host(deployment("b", vec![service("mail", 1, &["bob"])]));
        let ds = vec![a.clone(), b];
        let Lookup::Found(t) = resolve_in(std::slice::from_ref(&a), "mail") else {
            panic!("mail")
        };
        assert_eq!(t.container, "a-mail");
        let Lookup::Found(t) = resolve_in(&ds, "web-2") else {
            panic!("web-2")
        };
        assert_eq!((t.container.as_str(), t.index), ("a-web-2", 2));
        let Lookup::Found(t) = resolve_in(&ds, "web") else {
            panic!("web")
        };
        assert_eq!(t.container, "a-web-1");
        let Lookup::Found(t) = resolve_in(&ds, "b.mail") else {
            panic!("b.mail")
        };
        assert_eq!(t.container, "b-mail");
        let Lookup::Ambiguous(ts) = resolve_in(&ds, "mail") else {
            panic!("mail is ambiguous")
        };
        let q: Vec<_> = ts.iter().map(|t| t.qualified.as_str()).collect();
        assert_eq!(q, ["a.mail", "b.mail"]);
        assert_eq!(resolve_in(&ds, "web-4"), Lookup::Unknown);
        assert_eq!(resolve_in(&ds, "a-mail"), Lookup::Unknown);
        assert_eq!(resolve_in(&ds, ""), Lookup::Unknown);
        assert_eq!(resolve_in(&ds, "root"), Lookup::Unknown);
    }

    #[test]
    fn grants_follow_the_service() {
        let a = host(deployment(
            "a",
            vec![service("mail", 1, &["alice"]), service("web", 1, &["bob"])],
        ));
        let b = host(deployment("b", vec![service("mail", 1, &["bob"])]));
        let ds = vec![a.clone(), b];
        let mail = resolve_in(std::slice::from_ref(&a), "mail");
        assert!(matches!(grant_for(&mail, &pk(K1)), Some(Grant::Enter(_))));
        assert_eq!(grant_for(&mail, &pk(K2)), None);
        // Ambiguous: each key learns only the names it is granted.
        let amb = resolve_in(&ds, "mail");
        assert_eq!(
            grant_for(&amb, &pk(K1)),
            Some(Grant::Ambiguous(vec!["a.mail".into()]))
        );
        assert_eq!(
            grant_for(&amb, &pk(K2)),
            Some(Grant::Ambiguous(vec!["b.mail".into()]))
        );
        // Deployment-wide keys grant every service.
        let mut c = deployment("c", vec![service("db", 1, &[])]);
        assert_eq!(
            grant_for(&resolve_in(&[host(c.clone())], "db"), &pk(K2)),
            None
        );
        c.deployment_keys.push(key("key-1", K2));
        assert!(matches!(
            grant_for(&resolve_in(&[host(c)], "db"), &pk(K2)),
            Some(Grant::Enter(_))
        ));
    }

    #[test]
    fn an_access_list_holds_only_what_logins_need_and_reads_back() {
        let mut d = deployment(
            "a",
            vec![service("mail", 1, &["alice"]), service("web", 2, &[])],
        );
        d.deployment_keys.push(key("key-1", K2));
        let list = AccessList::of(&d, true);
        let text = serde_json::to_string(&list).expect("serialises");
        let back: AccessList = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, list);
        let keys: Vec<_> = list.services["mail"]
            .keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(keys, ["key-1", "alice"]);
        // The image, environment and everything else stay out of it.
        assert!(!text.contains("img"), "{text}");
        let Lookup::Found(t) = resolve_in(&[list], "web-2") else {
            panic!("web-2")
        };
        assert!(t.swarm);
        assert_eq!((t.index, t.qualified.as_str()), (2, "a.web-2"));
        assert!(
            serde_json::from_str::<AccessList>(
                r#"{"deployment":"a","swarm":true,"services":{},"env":{}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn authorized_key_text_is_only_a_key() {
        assert_eq!(authorized_key_text(&key("a", K1)).as_deref(), Some(K1));
        assert_eq!(authorized_key_text(&key("b", K2)).as_deref(), Some(K2));
        assert_eq!(authorized_key_text(&key("c", "ssh-ed25519 nonsense")), None);
        assert_eq!(
            authorized_key_text(&key("d", "command=\"sh\" ssh-ed25519 AAAA")),
            None
        );
    }
}
