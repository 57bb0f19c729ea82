//! Names berth gives to things on the host, and the labels it puts on them.
//!
//! Names become file names, unit names and Docker object names, so they are
//! validated strictly before anything is created (see [`check_name`]).

/// Label: the deployment an object belongs to.
pub const LABEL_DEPLOYMENT: &str = "berth.deployment";
/// Label: the service an object belongs to.
pub const LABEL_SERVICE: &str = "berth.service";
/// Label: the 1-based instance number of a container or volume.
pub const LABEL_INSTANCE: &str = "berth.instance";
/// Label: hash of the resolved instance spec a container was created from.
pub const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Label on Swarm services: the resolved service spec berth made it from
/// (JSON), which a later plan diffs the file against.
pub const LABEL_SWARM_SPEC: &str = "berth.swarm-spec";
/// Label on Swarm tasks' containers: hash of the task spec they run.
pub const LABEL_TASK_HASH: &str = "berth.task-hash";
/// Label on Swarm configs and secrets: their name in the deployment file.
pub const LABEL_FILE: &str = "berth.file";
/// Label: the applied revision that created the object.
pub const LABEL_REVISION: &str = "berth.revision";
/// Label on Swarm configs berth publishes for itself (not from the
/// deployment file): what the config is for (`ssh-access`).
pub const LABEL_ROLE: &str = "berth.role";
/// Label on volumes: the container path the volume is mounted at.
pub const LABEL_VOLUME_PATH: &str = "berth.volume-path";
/// Label on volumes: which volume of its instance it is: the name the file
/// lists it by (`data`), or for an image-declared `VOLUME` its path
/// (`/var/lib/data`; names never contain `/`, so the two cannot be confused).
pub const LABEL_VOLUME: &str = "berth.volume";
/// Swarm's own label on a task's container: the service it is a task of.
pub const LABEL_SWARM_TASK_SERVICE: &str = "com.docker.swarm.service.name";

/// Longest deployment or service name accepted. Container names are
/// `<deployment>-<service>-<n>` and unit names add `berth-` and `.service`;
/// this keeps every derived name well under the 255-byte file-name limit.
pub const MAX_NAME_LEN: usize = 63;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong { len: usize },
    LeadingChar(char),
    BadChar(char),
    DotDot,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameProblem::Empty => write!(f, "is empty"),
            NameProblem::TooLong { len } => {
                write!(f, "is {len} characters long (at most {MAX_NAME_LEN})")
            }
            NameProblem::LeadingChar(c) => write!(f, "starts with {c:?}"),
            NameProblem::BadChar(c) if c.is_control() => {
                write!(f, "contains the control character {:?}", c)
            }
            NameProblem::BadChar(c) => write!(f, "contains {c:?}"),
            NameProblem::DotDot => write!(f, "contains \"..\""),
        }
    }
}

/// Check a deployment, service, volume or key name.
///
/// Accepted: ASCII letters, digits, `_`, `-` and `.`, starting with a letter or
/// digit, at most [`MAX_NAME_LEN`] characters, no `..`. That is the
/// intersection of what Docker accepts for container and volume names and what
/// is safe as a file and systemd unit name.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    let Some(first) = name.chars().next() else {
        return Err(NameProblem::Empty);
    };
    if !first.is_ascii_alphanumeric() {
        if first == '-' || first == '.' || first == '_' {
            return Err(NameProblem::LeadingChar(first));
        }
        return Err(NameProblem::BadChar(first));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameProblem::BadChar(c));
    }
    if name.contains("..") {
        return Err(NameProblem::DotDot);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong { len: name.len() });
    }
    Ok(())
}

/// Container name of instance `index` (1-based) of a service.
/// The suffix is used only when the service runs more than one instance.
pub fn container_name(deployment: &str, service: &str, index: u32, count: u32) -> String {
    if count > 1 {
        format!("{deployment}-{service}-{index}")
    } else {
        format!("{deployment}-{service}")
    }
}

/// The stem of the SSH gateway's unit (`berth-ssh-gateway.service`): the
/// unit an instance container named `ssh-gateway` (deployment `ssh`,
/// service `gateway`) would get, so no instance may have that name.
pub const GATEWAY_UNIT_STEM: &str = "ssh-gateway";

/// systemd unit name of a container.
pub fn unit_name(container: &str) -> String {
    format!("berth-{container}.service")
}

/// The prefix of an instance's volume names. It does not depend on `count`,
/// so scaling never hands an instance someone else's (or an empty) volume:
/// instance 1 owns `<deployment>-<service>-<volume>` (the container's own
/// name while `count = 1`), instance n > 1 owns
/// `<deployment>-<service>-<n>-<volume>` (its container's name).
pub fn volume_prefix(deployment: &str, service: &str, index: u32) -> String {
    if index <= 1 {
        format!("{deployment}-{service}")
    } else {
        format!("{deployment}-{service}-{index}")
    }
}

/// Name of a volume listed in the file (`name:/path`) for one container.
pub fn volume_name(container: &str, volume: &str) -> String {
    format!("{container}-{volume}")
}

/// How [`image_volume_name`] spells a name, for messages about volumes that
/// are known only once the image is inspected.
pub const IMAGE_VOLUME_PATTERN: &str = "<container>-<path>-<hash>";

/// Name of the volume that persists an image-declared `VOLUME` path.
///
/// `/var/spool/exim4` becomes `<container>-var-spool-exim4`. Characters that
/// Docker does not accept in volume names become `_`, and a short hash of the
/// exact path keeps two paths that flatten alike (`/a-b` and `/a/b`) apart.
pub fn image_volume_name(container: &str, path: &str) -> String {
    use sha2::{Digest, Sha256};
    let flat: String = path
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' => c,
            _ => '_',
        })
        .collect();
    let digest = Sha256::digest(path.as_bytes());
    let short: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
    let flat = if flat.is_empty() {
        "root".to_string()
    } else {
        flat
    };
    format!("{container}-{flat}-{short}")
}

/// Who an object on the host is meant to belong to: one instance of a
/// service of a deployment, and for a volume which of the instance's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub deployment: String,
    pub service: String,
    pub instance: u32,
    /// For volumes: the [`LABEL_VOLUME`] value it should carry.
    pub volume: Option<String>,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment {}, service {}, instance {}",
            self.deployment, self.service, self.instance
        )?;
        if let Some(v) = &self.volume {
            write!(f, ", volume {v}")?;
        }
        Ok(())
    }
}

/// What an existing object's labels say about whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Every ownership label it carries names the expected owner.
    Same,
    /// It carries none of berth's ownership labels: berth did not make it.
    Unlabelled,
    /// Its labels name someone else (described: `deployment a, service x`).
    Other(String),
}

impl Owner {
    /// The labels every object of this owner carries (a volume also
    /// [`LABEL_VOLUME`]).
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        let mut l = std::collections::BTreeMap::new();
        l.insert(LABEL_DEPLOYMENT.into(), self.deployment.clone());
        l.insert(LABEL_SERVICE.into(), self.service.clone());
        l.insert(LABEL_INSTANCE.into(), self.instance.to_string());
        if let Some(v) = &self.volume {
            l.insert(LABEL_VOLUME.into(), v.clone());
        }
        l
    }

    /// Compare an existing object's labels with this owner.
    ///
    /// A label that is missing is not held against the object, as long as
    /// at least one ownership label is there and all those present match:
    /// volumes made by older berth versions carry no [`LABEL_VOLUME`] (and
    /// possibly fewer labels still), and they must stay usable by the
    /// instance they were made for, since no data moves on upgrade. A
    /// label that is present and names someone else always wins.
    pub fn claim(&self, labels: &std::collections::BTreeMap<String, String>) -> Claim {
        let instance = self.instance.to_string();
        let wanted: [(&str, Option<&str>); 4] = [
            (LABEL_DEPLOYMENT, Some(&self.deployment)),
            (LABEL_SERVICE, Some(&self.service)),
            (LABEL_INSTANCE, Some(&instance)),
            (LABEL_VOLUME, self.volume.as_deref()),
        ];
        let mut any = false;
        let mut differs = false;
        for (key, want) in wanted {
            let Some(have) = labels.get(key) else {
                continue;
            };
            any = true;
            // An object with a volume label where none is expected (a
            // container label on a volume, say) is someone else's too.
            if want != Some(have.as_str()) {
                differs = true;
            }
        }
        if differs {
            Claim::Other(describe(labels))
        } else if any {
            Claim::Same
        } else {
            Claim::Unlabelled
        }
    }
}

/// The operator's message for an object (`kind` `name`) that `wanted` would
/// use but whose labels name someone else (`theirs`, from [`describe`]).
pub fn conflict_message(kind: &str, name: &str, theirs: &str, wanted: &Owner) -> String {
    format!(
        "{kind} {name} belongs to {theirs} (by its labels), but {wanted} would use it; \
         names are joined with `-`, so these two give the same name. Nothing was changed: \
         rename the volume, the service or the deployment (--name) so the names differ"
    )
}

/// An object's owner as its labels state it: `deployment a, service x, instance 1`.
pub fn describe(labels: &std::collections::BTreeMap<String, String>) -> String {
    let parts: Vec<String> = [
        (LABEL_DEPLOYMENT, "deployment"),
        (LABEL_SERVICE, "service"),
        (LABEL_INSTANCE, "instance"),
        (LABEL_VOLUME, "volume"),
    ]
    .iter()
    .filter_map(|(k, word)| {
        labels
            .get(*k)
            .map(|v| format!("{word} {}", v.escape_debug()))
    })
    .collect();
    if parts.is_empty() {
        "nobody berth knows (no berth labels)".into()
    } else {
        parts.join(", ")
    }
}

/// The user-defined bridge network of a deployment.
pub fn network_name(deployment: &str) -> String {
    deployment.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_ordinary_and_refuse_dangerous() {
        assert!(check_name("mail").is_ok());
        assert!(check_name("web_1.v2-a").is_ok());
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(check_name("-x"), Err(NameProblem::LeadingChar('-')));
        assert_eq!(check_name(".x"), Err(NameProblem::LeadingChar('.')));
        assert_eq!(check_name("a/b"), Err(NameProblem::BadChar('/')));
        assert_eq!(check_name("a..b"), Err(NameProblem::DotDot));
        assert_eq!(check_name("a\nb"), Err(NameProblem::BadChar('\n')));
        assert!(matches!(
            check_name(&"a".repeat(64)),
            Err(NameProblem::TooLong { len: 64 })
        ));
    }

    #[test]
    fn derived_names() {
        assert_eq!(container_name("ex", "mail", 1, 1), "ex-mail");
        assert_eq!(container_name("ex", "mail", 2, 3), "ex-mail-2");
        assert_eq!(unit_name("ex-mail"), "berth-ex-mail.service");
        assert_eq!(volume_name("ex-mail", "spool"), "ex-mail-spool");
        let a = image_volume_name("ex-mail", "/a-b");
        let b = image_volume_name("ex-mail", "/a/b");
        assert_ne!(a, b);
        assert!(a.starts_with("ex-mail-a-b-"));
        // What messages say about the name is what it is.
        let real = image_volume_name("ex-mail", "/var/mail");
        let hash = &real[real.len() - 6..];
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{real}");
        assert_eq!(
            IMAGE_VOLUME_PATTERN
                .replace("<container>", "ex-mail")
                .replace("<path>", "var-mail")
                .replace("<hash>", hash),
            real
        );
        assert_eq!(volume_prefix("ex", "mail", 1), "ex-mail");
        assert_eq!(volume_prefix("ex", "mail", 2), "ex-mail-2");
    }

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn claims_compare_every_label_present() {
        let me = Owner {
            deployment: "a-x".into(),
            service: "y".into(),
            instance: 1,
            volume: Some("data".into()),
        };
        assert_eq!(me.claim(&me.labels()), Claim::Same);
        assert_eq!(me.claim(&labels(&[])), Claim::Unlabelled);
        assert_eq!(me.claim(&labels(&[("other", "x")])), Claim::Unlabelled);
        // The volume `a-x-y-data` of deployment `a`, service `x`, volume `y-data`.
        let theirs = labels(&[
            (LABEL_DEPLOYMENT, "a"),
            (LABEL_SERVICE, "x"),
            (LABEL_INSTANCE, "1"),
            (LABEL_VOLUME, "y-data"),
        ]);
        assert_eq!(
            me.claim(&theirs),
            Claim::Other("deployment a, service x, instance 1, volume y-data".into())
        );
        // An older berth's volume without `berth.volume`: judged by the rest.
        let old = labels(&[
            (LABEL_DEPLOYMENT, "a-x"),
            (LABEL_SERVICE, "y"),
            (LABEL_INSTANCE, "1"),
        ]);
        assert_eq!(me.claim(&old), Claim::Same);
        let old_other = labels(&[(LABEL_DEPLOYMENT, "a"), (LABEL_SERVICE, "x-y")]);
        assert!(matches!(me.claim(&old_other), Claim::Other(_)));
        // Another instance of the same service.
        let two = labels(&[
            (LABEL_DEPLOYMENT, "a-x"),
            (LABEL_SERVICE, "y"),
            (LABEL_INSTANCE, "2"),
        ]);
        assert!(matches!(me.claim(&two), Claim::Other(_)));
        // A container's claim (no volume expected) against a volume label.
        let container = Owner {
            volume: None,
            ..me.clone()
        };
        assert!(matches!(container.claim(&me.labels()), Claim::Other(_)));
        assert_eq!(container.claim(&old), Claim::Same);
    }
}
