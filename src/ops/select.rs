//! Which deployment (and which of its instances) an operation command means.
//!
//! The deployment comes from, in order: the deployment file (`-f`, default
//! `berth.toml`) when it exists; a name (`--name`, or `ps DEPLOYMENT`) looked
//! up in the state directory; the only deployment applied in the state
//! directory. The integration in use comes from the applied revision.

use std::path::Path;

use crate::deployment::{Deployment, InstanceRef};
use crate::error::{Error, Result};
use crate::instance::Integration;
use crate::state::StateDir;

/// A deployment as the operation commands see it.
#[derive(Debug, Clone)]
pub struct Selected {
    pub deployment: Deployment,
    /// What keeps it running, from the applied revision; `None` when it was
    /// never applied here.
    pub integration: Option<Integration>,
}

/// Resolve the deployment an operation command means. `load_file` reads the
/// deployment file; it is called only when `file` exists.
pub fn resolve(
    state: &StateDir,
    file: &Path,
    name: Option<&str>,
    load_file: impl FnOnce() -> Result<Deployment>,
) -> Result<Selected> {
    let name = match locate(state, file, name, load_file)? {
        Located::File(deployment) => {
            let integration = state
                .read_current(&deployment.name)?
                .and_then(|r| Integration::parse(&r.integration));
            return Ok(Selected {
                deployment: *deployment,
                integration,
            });
        }
        Located::Name(n) => n,
    };
    match state.read_current(&name)? {
        Some(rev) => Ok(Selected {
            deployment: rev.deployment,
            integration: Integration::parse(&rev.integration),
        }),
        None => Err(Error::Usage(format!(
            "deployment {name:?} is not applied in {} (and there is no deployment file {})",
            state.root().display(),
            file.display()
        ))),
    }
}

/// The name of the deployment a command means, by the rules of [`resolve`],
/// for the commands that work on what a deployment has on this host
/// (volumes, snapshots, revisions) whether or not it is applied now: a
/// name without a deployment file need not be applied.
pub fn resolve_name(
    state: &StateDir,
    file: &Path,
    name: Option<&str>,
    load_file: impl FnOnce() -> Result<Deployment>,
) -> Result<String> {
    Ok(match locate(state, file, name, load_file)? {
        Located::File(d) => d.name,
        Located::Name(n) => n,
    })
}

enum Located {
    /// Read from the deployment file.
    File(Box<Deployment>),
    /// Named (checked), or the only one applied.
    Name(String),
}

fn locate(
    state: &StateDir,
    file: &Path,
    name: Option<&str>,
    load_file: impl FnOnce() -> Result<Deployment>,
) -> Result<Located> {
    if crate::input::present(file) {
        return Ok(Located::File(Box::new(load_file()?)));
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let applied = state.list_deployments()?;
            match applied.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(Error::Usage(format!(
                        "no deployment file {} and no deployment applied in {}; pass -f FILE or --name NAME",
                        file.display(),
                        state.root().display()
                    )));
                }
                many => {
                    return Err(Error::Usage(format!(
                        "no deployment file {} and several deployments are applied in {} ({}); choose one with -f FILE or --name NAME",
                        file.display(),
                        state.root().display(),
                        many.join(", ")
                    )));
                }
            }
        }
    };
    if let Err(p) = crate::names::check_name(&name) {
        return Err(Error::Usage(format!("deployment name {name:?} {p}")));
    }
    Ok(Located::Name(name))
}

/// The instances named by `names`: a service name means all its instances;
/// an instance may be named by its container name (`example-mail-2`) or
/// without the deployment prefix (`mail-2`). Order follows the deployment,
/// duplicates are dropped.
pub fn select_instances(deployment: &Deployment, names: &[String]) -> Result<Vec<InstanceRef>> {
    let all = deployment.instances();
    let mut chosen: Vec<InstanceRef> = Vec::new();
    for n in names {
        let matched: Vec<&InstanceRef> = all
            .iter()
            .filter(|i| {
                i.service == *n
                    || i.container == *n
                    || i.container
                        .strip_prefix(&format!("{}-", deployment.name))
                        .is_some_and(|short| short == n)
            })
            .collect();
        if matched.is_empty() {
            let services: Vec<&str> = deployment.services.keys().map(String::as_str).collect();
            let suggestion = services
                .iter()
                .map(|s| (strsim::jaro_winkler(s, n), *s))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, s)| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "deployment {:?} has no service or instance {n:?}{suggestion}; services: {}",
                deployment.name,
                services.join(", ")
            )));
        }
        for m in matched {
            if !chosen.iter().any(|c| c.container == m.container) {
                chosen.push(m.clone());
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deployment::Service;

    pub(crate) fn service(name: &str, count: u32) -> Service {
        Service {
            count,
            ..Service::new(name, "img")
        }
    }

    pub(crate) fn deployment(services: &[(&str, u32)]) -> Deployment {
        Deployment {
            name: "ex".into(),
            source: None,
            keys: Default::default(),
            deployment_keys: vec![],
            notify: None,
            notify_url: None,
            snapshots_keep: None,
            configs: Default::default(),
            secrets: Default::default(),
            services: services
                .iter()
                .map(|(n, c)| (n.to_string(), service(n, *c)))
                .collect(),
        }
    }

    /// `resolve_name` follows `resolve`'s rules (the file first, a checked
    /// name, else the only applied deployment) but does not need the name
    /// applied: backup and snapshots work on what a deployment left behind.
    #[test]
    fn resolve_name_follows_resolve_without_needing_the_name_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        let missing = dir.path().join("berth.toml");
        let no_file = || -> Result<Deployment> { panic!("no file to load") };
        assert_eq!(
            resolve_name(&state, &missing, Some("gone"), no_file).expect("a name"),
            "gone"
        );
        let err = resolve(&state, &missing, Some("gone"), no_file).expect_err("not applied");
        assert_eq!(err.exit_code(), 2);
        let bad = resolve_name(&state, &missing, Some("Bad Name"), no_file).expect_err("bad");
        assert_eq!(bad.exit_code(), 2);
        let none = resolve_name(&state, &missing, None, no_file).expect_err("nothing applied");
        assert!(none.to_string().contains("--name NAME"), "{none}");
        let present = dir.path().join("present.toml");
        std::fs::write(&present, "").expect("write");
        let from_file = resolve_name(&state, &present, Some("other"), || Ok(deployment(&[])));
        assert_eq!(from_file.expect("the file's"), "ex");
    }

    #[test]
    fn selects_services_and_instances() {
        let d = deployment(&[("mail", 1), ("web", 3)]);
        let pick = |names: &[&str]| -> Vec<String> {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            select_instances(&d, &names)
                .expect("known names")
                .into_iter()
                .map(|i| i.container)
                .collect()
        };
        assert_eq!(pick(&["mail"]), ["ex-mail"]);
        assert_eq!(pick(&["web"]), ["ex-web-1", "ex-web-2", "ex-web-3"]);
        assert_eq!(
            pick(&["web-2", "ex-mail", "web"]),
            ["ex-web-2", "ex-mail", "ex-web-1", "ex-web-3"]
        );
        let err = select_instances(&d, &["mial".to_string()]).expect_err("unknown");
        assert!(err.to_string().contains("did you mean \"mail\""), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
