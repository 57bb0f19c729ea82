//! Registry credentials from the Docker client configuration
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`): the
//! `auths` section, whose `auth` values are base64 `user:password`.
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::path::PathBuf;

use bollard::auth::DockerCredentials;

/// The key Docker Hub credentials are stored under.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The registry host of an image reference: the first path component when it
/// looks like a host (has `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Where the client configuration lives.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Credentials for the registry of `reference`, if the configuration has any.
/// An unreadable or malformed configuration is logged and treated as empty:
/// the pull then fails with the registry's own message if it needs auth.
pub fn credentials_for(reference: &str) -> Option<DockerCredentials> {
    let path = config_path()?;
    let text = read_config(&path)?;
    let registry = registry_of(reference);
    match credentials_from_config(&text, &registry) {
        Ok(c) => c,
        Err(msg) => {
            tracing::warn!("{}: {msg}; pulling without credentials", path.display());
            None
        }
    }
}

/// The text of the client configuration at `path`; `None` when there is
/// none, or it is no regular file (a FIFO would block every pull), too
/// large or not text: those are logged.
fn read_config(path: &std::path::Path) -> Option<String> {
    match crate::input::read_capped(path, crate::input::MAX_DOCKER_CONFIG) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(_) => {
                tracing::warn!(
                    "{}: not UTF-8 text; pulling without credentials",
                    path.display()
                );
                None
            }
        },
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            tracing::warn!("{e}; pulling without credentials");
            None
        }
    }
}

/// Look `registry` up in the text of a `config.json`.
pub fn credentials_from_config(
    text: &str,
    registry: &str,
) -> Result<Option<DockerCredentials>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let wanted: Vec<String> = if registry == "docker.io" {
        vec![
            DOCKER_HUB.to_string(),
            "docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    };
    for (key, entry) in auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        if !wanted.iter().any(|w| w == key || w == host) {
            continue;
        }
        let server = if registry == "docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry.to_string()
        };
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let decoded = decode_base64(auth)
                .ok_or_else(|| format!("auths.{key}.auth is not valid base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
            return Ok(Some(DockerCredentials {
                username: Some(user.to_string()),
                password: Some(pass.to_string()),
                serveraddress: Some(server),
                ..Default::default()
            }));
        }
        if let Some(token) = entry.get("identitytoken").and_then(|a| a.as_str()) {
            return Ok(Some(DockerCredentials {
                identitytoken: Some(token.to_string()),
                serveraddress: Some(server),
                ..Default::default()
            }));
        }
    }
    Ok(None)
}

/// Standard base64 with padding (RFC 4648), as the engine takes config and
/// secret data.
pub fn encode_base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Standard base64 (padding optional, whitespace ignored).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_is_no_regular_file_is_skipped_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_config(&fifo), None);
        assert_eq!(read_config(std::path::Path::new("/dev/zero")), None);
        assert_eq!(read_config(&dir.path().join("none.json")), None);
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, "{}").unwrap();
        assert_eq!(read_config(&ok).as_deref(), Some("{}"));
    }

    #[test]
    fn base64_encodes_what_it_decodes() {
        for s in ["", "a", "ab", "abc", "user:pass", "line\nwith\0nul"] {
            let e = encode_base64(s.as_bytes());
            assert_eq!(e.len() % 4, 0, "{e}");
            assert_eq!(decode_base64(&e).as_deref(), Some(s.as_bytes()), "{e}");
        }
        assert_eq!(encode_base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(
            decode_base64("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("YWI=").as_deref(), Some(&b"ab"[..]));
        assert!(decode_base64("!!!!").is_none());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/x"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn config_lookup() {
        let cfg = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#;
        let c = credentials_from_config(cfg, "127.0.0.1:5000")
            .ok()
            .flatten()
            .map(|c| (c.username, c.password));
        assert_eq!(c, Some((Some("user".into()), Some("pass".into()))));
        let hub = credentials_from_config(cfg, "docker.io").ok().flatten();
        assert_eq!(hub.and_then(|c| c.username), Some("hub".into()));
        assert!(
            credentials_from_config(cfg, "other:1")
                .ok()
                .flatten()
                .is_none()
        );
        assert!(credentials_from_config("{", "x").is_err());
    }
}
