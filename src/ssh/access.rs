//! Who may enter which container: login names resolved against the applied
//! revisions in the state directory, and the keys granted there.
//!
//! Everything is read fresh from the state directory on each call, so an
//! apply that grants or revokes a key takes effect for the next login
//! without restarting anything.

use crate::deployment::{Deployment, SshKey};
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
pub fn matches_in(deployment: &Deployment, login: &str) -> Vec<Target> {
    let mut out = Vec::new();
    for inst in deployment.instances() {
        if !names_of(&inst.deployment, &inst.service, inst.index)
            .iter()
            .any(|n| n == login)
        {
            continue;
        }
        let Some(svc) = deployment.services.get(&inst.service) else {
            continue;
        };
        let qualified = if svc.count > 1 {
            format!("{}.{}-{}", inst.deployment, inst.service, inst.index)
        } else {
            format!("{}.{}", inst.deployment, inst.service)
        };
        out.push(Target {
            deployment: inst.deployment.clone(),
            service: inst.service.clone(),
            index: inst.index,
            container: inst.container.clone(),
            qualified,
            shell: svc
                .ssh_shell
                .clone()
                .unwrap_or_else(|| DEFAULT_SHELL.to_string()),
            keys: deployment
                .keys_for(&inst.service)
                .into_iter()
                .cloned()
                .collect(),
        });
    }
    out
}

/// Resolve a login against the deployments in `deployments`.
pub fn resolve_in(deployments: &[Deployment], login: &str) -> Lookup {
    if login.is_empty() || login.len() > MAX_LOGIN_LEN {
        return Lookup::Unknown;
    }
    let mut found: Vec<Target> = deployments
        .iter()
        .flat_map(|d| matches_in(d, login))
        .collect();
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
            Ok(Some(rev)) => Some(rev.deployment),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignoring deployment {name}: {e}");
                None
            }
        })
        .collect()
}

/// Resolve a login against what is applied in `state` now.
pub fn resolve(state: &StateDir, login: &str) -> Lookup {
    if login.is_empty() || login.len() > MAX_LOGIN_LEN {
        return Lookup::Unknown;
    }
    resolve_in(&applied_deployments(state), login)
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

    #[test]
    fn login_names() {
        let a = deployment(
            "a",
            vec![service("mail", 1, &["alice"]), service("web", 3, &["bob"])],
        );
        let b = deployment("b", vec![service("mail", 1, &["bob"])]);
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
        let a = deployment(
            "a",
            vec![service("mail", 1, &["alice"]), service("web", 1, &["bob"])],
        );
        let b = deployment("b", vec![service("mail", 1, &["bob"])]);
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
        assert_eq!(grant_for(&resolve_in(&[c.clone()], "db"), &pk(K2)), None);
        c.deployment_keys.push(key("key-1", K2));
        assert!(matches!(
            grant_for(&resolve_in(&[c], "db"), &pk(K2)),
            Some(Grant::Enter(_))
        ));
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
