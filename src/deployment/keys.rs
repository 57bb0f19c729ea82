//! OpenSSH public keys: checked, normalised, fingerprinted.

use sha2::{Digest, Sha256};

use super::model::SshKey;
use super::values::Problem;

const KEY_HELP: &str =
    "paste the whole line of the `.pub` file, e.g. \"ssh-ed25519 AAAAC3Nza... user@host\"";

/// Parse an `authorized_keys`-style public key line with the SSH library.
pub fn parse_key(name: &str, text: &str) -> Result<SshKey, Problem> {
    let line = text.trim();
    match russh::keys::PublicKey::from_openssh(line) {
        Ok(key) => {
            let openssh = key.to_openssh().unwrap_or_else(|_| line.to_string());
            Ok(SshKey {
                name: name.to_string(),
                openssh,
                fingerprint: key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
            })
        }
        Err(e) => Err(Problem {
            message: format!(
                "key `{name}` is not an OpenSSH public key ({})",
                describe(line, &e.to_string())
            ),
            help: KEY_HELP.to_string(),
        }),
    }
}

/// geard's `Keys` entries are taken as geard took them: the line must have
/// the `<type> <base64> [comment]` shape and the base64 must carry the same
/// type name, but the key material itself is not checked (geard's own
/// examples abbreviate it). The fingerprint is that of the encoded blob, as
/// `ssh-keygen -l` computes it.
pub fn parse_key_lenient(name: &str, text: &str) -> Result<SshKey, Problem> {
    if let Ok(k) = parse_key(name, text) {
        return Ok(k);
    }
    let line = text.trim();
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(Problem {
            message: format!(
                "key `{name}` is not an OpenSSH public key (expected `<type> <base64> [comment]`)"
            ),
            help: KEY_HELP.to_string(),
        });
    };
    let comment: Vec<&str> = parts.collect();
    let blob = base64_decode(b64).ok_or_else(|| Problem {
        message: format!("key `{name}` is not an OpenSSH public key (the key data is not base64)"),
        help: KEY_HELP.to_string(),
    })?;
    let embedded = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|len| blob.get(4..4 + len));
    if embedded != Some(kind.as_bytes()) {
        return Err(Problem {
            message: format!(
                "key `{name}` is not an OpenSSH public key (the key data does not match its type `{kind}`)"
            ),
            help: KEY_HELP.to_string(),
        });
    }
    let mut openssh = format!("{kind} {b64}");
    if !comment.is_empty() {
        openssh.push(' ');
        openssh.push_str(&comment.join(" "));
    }
    Ok(SshKey {
        name: name.to_string(),
        openssh,
        fingerprint: fingerprint_of_blob(&blob),
    })
}

fn describe(line: &str, err: &str) -> String {
    if line.is_empty() {
        return "it is empty".into();
    }
    if line.starts_with("-----BEGIN") {
        return "this is a private key or PEM block; use the public key".into();
    }
    if line.split_whitespace().count() < 2 {
        return "expected `<type> <base64> [comment]`".into();
    }
    let kind = line.split_whitespace().next().unwrap_or("");
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
        return format!(
            "it starts with `{}`, not a key type such as ssh-ed25519",
            short(kind)
        );
    }
    if err.contains("ase64") || err.contains("encoding") {
        return "the key data is not valid base64".into();
    }
    if err.contains("length") {
        return "the key data is truncated".into();
    }
    err.to_string()
}

/// `SHA256:<unpadded base64 of the SHA-256 of the key blob>`.
pub fn fingerprint_of_blob(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!("SHA256:{}", base64_encode(&digest).trim_end_matches('='))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn short(s: &str) -> String {
    if s.chars().count() > 16 {
        format!("{}...", s.chars().take(16).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII1R1yTY2hZIksre0u2J+ExGVznPcoG/tJXbZP9GqV/r admin@laptop";

    #[test]
    fn strict_and_lenient() {
        let k = parse_key("admin", ED).unwrap();
        assert_eq!(
            k.fingerprint,
            "SHA256:xQA+gSeh65quD5d+g2Fzx1yP1VAB4AX+9t9sApJmfKw"
        );
        assert_eq!(k.openssh, ED);
        // The lenient path computes the same fingerprint for a real key.
        let blob = base64_decode(ED.split(' ').nth(1).unwrap()).unwrap();
        assert_eq!(fingerprint_of_blob(&blob), k.fingerprint);
        assert!(
            parse_key(
                "x",
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@example"
            )
            .is_err()
        );
        let g = parse_key_lenient(
            "key-1",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@example",
        )
        .unwrap();
        assert_eq!(
            g.openssh,
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@example"
        );
        assert!(parse_key_lenient("x", "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7").is_err());
        assert!(parse_key_lenient("x", "hello").is_err());
        assert!(parse_key("x", "").is_err());
    }

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }
}
