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
/// Label: the applied revision that created the object.
pub const LABEL_REVISION: &str = "berth.revision";
/// Label on volumes: the container path the volume is mounted at.
pub const LABEL_VOLUME_PATH: &str = "berth.volume-path";

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

/// systemd unit name of a container.
pub fn unit_name(container: &str) -> String {
    format!("berth-{container}.service")
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
    }
}
