//! Parsers for the small languages inside string values: Docker `-p` ports,
//! volumes, links, image references, memory sizes, durations, signals,
//! capabilities, shell words. Each returns a message and a help line on error.

use std::net::IpAddr;

use super::model::{Link, PortMapping, Protocol, VolumeMount, VolumeSource};
use crate::names::check_name;

/// What is wrong and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub help: String,
}

fn problem(message: impl Into<String>, help: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        help: help.into(),
    }
}

type R<T> = Result<T, Problem>;

/// Longest port range accepted in one entry.
const MAX_PORT_RANGE: u32 = 1000;

const PORT_HELP: &str = "write ports as \"HOST:CONTAINER\" (\"8080:80\"), \"IP:HOST:CONTAINER\" (\"127.0.0.1:8080:80\"), a container port alone (\"80\") to let the host pick, and an optional \"/udp\" or \"/sctp\"";

fn port_range(s: &str, what: &str, entry: &str) -> R<(u16, u16)> {
    let one = |p: &str| -> R<u16> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(problem(
                format!("port `{entry}`: {what} port `{p}` is not a number"),
                PORT_HELP,
            ));
        }
        match p.parse::<u32>() {
            Ok(0) => Err(problem(
                format!("port `{entry}`: {what} port 0 is not a valid port"),
                if what == "host" {
                    "leave the host port out (\"80\") to let the host pick one"
                } else {
                    "ports are 1 to 65535"
                },
            )),
            Ok(n) if n <= 65535 => Ok(n as u16),
            _ => Err(problem(
                format!("port `{entry}`: {what} port {p} is out of range"),
                "ports are 1 to 65535",
            )),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(problem(
                    format!("port `{entry}`: {what} port range {s} runs backwards"),
                    "write the lower port first, e.g. 8000-8010",
                ));
            }
            if u32::from(b - a) >= MAX_PORT_RANGE {
                return Err(problem(
                    format!("port `{entry}`: {what} port range {s} is too large"),
                    format!("publish at most {MAX_PORT_RANGE} ports per entry"),
                ));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Docker's `-p` syntax: `[ip:][host:]container[/proto]`, ranges allowed
/// (`8000-8001:80-81`), IPv6 addresses in brackets.
pub fn parse_port(entry: &str) -> R<Vec<PortMapping>> {
    let (spec, protocol) = match entry.rsplit_once('/') {
        Some((s, p)) => {
            let proto = match p {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    return Err(problem(
                        format!("port `{entry}`: unknown protocol `{other}`"),
                        "the protocol is tcp (the default), udp or sctp",
                    ));
                }
            };
            (s, proto)
        }
        None => (entry, Protocol::Tcp),
    };
    if spec.is_empty() {
        return Err(problem("empty port", PORT_HELP));
    }
    // Split off a host IP: `[v6]:...` or `a.b.c.d:host:container`.
    let (ip, rest): (Option<&str>, &str) = if let Some(r) = spec.strip_prefix('[') {
        match r.split_once("]:") {
            Some((ip, rest)) => (Some(ip), rest),
            None => {
                return Err(problem(
                    format!("port `{entry}`: malformed IPv6 address"),
                    "write IPv6 addresses in brackets: \"[::1]:8080:80\"",
                ));
            }
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => return Err(problem(format!("port `{entry}` is malformed"), PORT_HELP)),
        }
    };
    let host_ip = match ip {
        None => None,
        Some(ip) => match ip.parse::<IpAddr>() {
            Ok(addr) => Some(addr.to_string()),
            Err(_) => {
                return Err(problem(
                    format!("port `{entry}`: `{ip}` is not an IP address"),
                    PORT_HELP,
                ));
            }
        },
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (if h.is_empty() { None } else { Some(h) }, c),
        None => (None, rest),
    };
    if container.contains(':') {
        return Err(problem(format!("port `{entry}` is malformed"), PORT_HELP));
    }
    let (c_lo, c_hi) = port_range(container, "container", entry)?;
    let host = match host {
        Some(h) => Some(port_range(h, "host", entry)?),
        None => None,
    };
    let mut out = Vec::new();
    match host {
        None => {
            for c in c_lo..=c_hi {
                out.push(PortMapping {
                    host_ip: host_ip.clone(),
                    host_port: None,
                    container_port: c,
                    protocol,
                });
            }
        }
        Some((h_lo, h_hi)) => {
            if h_hi - h_lo != c_hi - c_lo {
                return Err(problem(
                    format!("port `{entry}`: the host and container ranges differ in length"),
                    "give both ranges the same number of ports, e.g. \"8000-8001:80-81\"",
                ));
            }
            for (h, c) in (h_lo..=h_hi).zip(c_lo..=c_hi) {
                out.push(PortMapping {
                    host_ip: host_ip.clone(),
                    host_port: Some(h),
                    container_port: c,
                    protocol,
                });
            }
        }
    }
    Ok(out)
}

/// `name:/path[:ro|rw]` or `/abs/host:/path[:ro|rw]`.
pub fn parse_volume(entry: &str) -> R<VolumeMount> {
    const HELP: &str = "write a named volume as \"data:/var/lib/data\" or a bind mount as \"/srv/data:/data\", with an optional \":ro\"";
    let parts: Vec<&str> = entry.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => {
            let hint = t
                .trim_start_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("data");
            let hint = if hint.is_empty() { "data" } else { hint };
            return Err(problem(
                format!("volume `{entry}` has no name or host path"),
                format!(
                    "volumes the image declares are kept automatically; to list one here, name it: \"{hint}:{t}\""
                ),
            ));
        }
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => return Err(problem(format!("volume `{entry}` is malformed"), HELP)),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => {
            return Err(problem(
                format!("volume `{entry}`: unknown mode `{m}`"),
                "the mode is ro (read-only) or rw (the default)",
            ));
        }
    };
    if source.is_empty() || target.is_empty() {
        return Err(problem(format!("volume `{entry}` is malformed"), HELP));
    }
    if !target.starts_with('/') {
        return Err(problem(
            format!("volume `{entry}`: the container path `{target}` is not absolute"),
            format!("write the path inside the container from the root, e.g. \"/{target}\""),
        ));
    }
    if target.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(problem(
            format!("volume `{entry}`: a volume cannot be mounted at the container's root `/`"),
            "mount it at a directory inside the container, e.g. \"/data\"",
        ));
    }
    let source = if source.starts_with('/') {
        if source.split('/').any(|c| c == "..") {
            return Err(problem(
                format!("volume `{entry}`: the host path `{source}` contains `..`"),
                "write the host path without `..`",
            ));
        }
        VolumeSource::Bind(source.into())
    } else if source.starts_with('.') || source.starts_with('~') || source.contains('/') {
        return Err(problem(
            format!("volume `{entry}`: the bind-mount host path `{source}` is relative"),
            "bind mounts need an absolute host path, e.g. \"/srv/data:/data\"; a plain name is a volume berth manages",
        ));
    } else {
        if let Err(p) = check_name(source) {
            return Err(problem(
                format!("volume `{entry}`: the volume name `{source}` {p}"),
                "volume names are letters, digits, `_`, `-` and `.`, starting with a letter or digit",
            ));
        }
        VolumeSource::Named(source.to_string())
    };
    Ok(VolumeMount {
        source,
        target: target.to_string(),
        read_only,
    })
}

/// `target[:alias]`.
pub fn parse_link(entry: &str) -> R<Link> {
    let (target, alias) = match entry.split_once(':') {
        Some((t, a)) => (t, a),
        None => (entry, entry),
    };
    for (what, n) in [("service", target), ("alias", alias)] {
        if let Err(p) = check_name(n) {
            return Err(problem(
                format!("link `{entry}`: the {what} name `{n}` {p}"),
                "write links as \"service\" or \"service:alias\"",
            ));
        }
    }
    Ok(Link {
        target: target.to_string(),
        alias: alias.to_string(),
    })
}

/// Memory size: bytes as a number, or a number with b, k, m, g (or kb, mib,
/// ...), as Docker's `--memory` takes it.
pub fn parse_memory(s: &str) -> R<u64> {
    let bytes = parse_size("memory", s)?;
    // Docker refuses limits below 6 MiB.
    if bytes < 6 << 20 {
        return Err(problem(
            format!("memory `{s}` is below the 6m minimum Docker accepts"),
            SIZE_HELP,
        ));
    }
    Ok(bytes)
}

const SIZE_HELP: &str = "write a size such as \"512m\", \"1g\" or a number of bytes";

/// A size as [`parse_memory`] reads it, with no minimum; `what` names the
/// setting in messages.
pub fn parse_size(what: &str, s: &str) -> R<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let unit = unit.trim();
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(problem(
                format!("{what} `{s}`: unknown unit `{unit}`"),
                SIZE_HELP,
            ));
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| problem(format!("{what} `{s}` is not a size"), SIZE_HELP))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(problem(format!("{what} `{s}` is too large"), SIZE_HELP));
    }
    Ok(bytes as u64)
}

/// A duration: seconds as a number or a humantime string ("30s", "1m 30s").
pub fn parse_duration_secs(s: &str) -> R<u64> {
    const HELP: &str = "write seconds as a number (30) or a duration such as \"30s\" or \"2m\"";
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| problem(format!("duration `{s}` is too large"), HELP));
    }
    match humantime::parse_duration(t) {
        Ok(d) => {
            if d.subsec_nanos() != 0 {
                return Err(problem(
                    format!("duration `{s}` is not a whole number of seconds"),
                    HELP,
                ));
            }
            Ok(d.as_secs())
        }
        Err(_) => Err(problem(format!("`{s}` is not a duration"), HELP)),
    }
}

/// A health-check duration in milliseconds: seconds as a number, or a
/// duration such as "5s", "500ms" or "1m". At least 1ms (Docker's minimum).
pub fn parse_duration_ms(s: &str) -> R<u64> {
    const HELP: &str =
        "write a duration such as \"5s\", \"500ms\" or \"1m\" (a bare number is seconds)";
    let t = s.trim();
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| problem(format!("duration `{s}` is too large"), HELP))?
    } else {
        humantime::parse_duration(t)
            .map_err(|_| problem(format!("`{s}` is not a duration"), HELP))?
    };
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(problem(
            format!("duration `{s}` is not a whole number of milliseconds"),
            HELP,
        ));
    }
    let ms = u64::try_from(d.as_millis())
        .map_err(|_| problem(format!("duration `{s}` is too large"), HELP))?;
    if ms == 0 {
        return Err(problem(
            format!("duration `{s}` must be longer than 0"),
            HELP,
        ));
    }
    if ms > 24 * 3600 * 1000 {
        return Err(problem(
            format!("duration `{s}` is longer than a day"),
            HELP,
        ));
    }
    Ok(ms)
}

const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
];

/// A signal name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or number; returned as Docker takes it.
pub fn parse_signal(s: &str) -> R<String> {
    const HELP: &str = "write a signal name such as \"SIGTERM\" or \"SIGQUIT\", or its number";
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(s.to_string()),
            _ => Err(problem(format!("signal `{s}` is out of range"), HELP)),
        };
    }
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let ok = SIGNALS.contains(&bare)
        || ["RTMIN", "RTMAX"].iter().any(|rt| {
            bare.strip_prefix(rt).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix(['+', '-'])
                        .is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n <= 30))
            })
        });
    if ok {
        Ok(format!("SIG{bare}"))
    } else {
        Err(problem(format!("`{s}` is not a signal"), HELP))
    }
}

/// Every Linux capability (capabilities(7), up to CAP_CHECKPOINT_RESTORE of
/// Linux 5.9), without the `CAP_` prefix. The engine refuses any other name
/// only when it creates the container, long after the host was touched.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// A Linux capability name as Docker takes it (`NET_ADMIN`, `CAP_NET_ADMIN`,
/// `ALL`): one of [`CAPABILITIES`], in any case, with or without `CAP_`.
pub fn parse_capability(s: &str) -> R<String> {
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let well_formed = !bare.is_empty()
        && bare
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
    if !well_formed {
        return Err(problem(
            format!("`{s}` is not a capability name"),
            "write capability names such as \"NET_ADMIN\" or \"SYS_TIME\" (see capabilities(7))",
        ));
    }
    if bare == "ALL" || CAPABILITIES.contains(&bare) {
        return Ok(bare.to_string());
    }
    let help = match super::decode::suggest(bare, CAPABILITIES.iter().copied()) {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => "capabilities are those of capabilities(7) without the CAP_ prefix, such as \"NET_ADMIN\" or \"SYS_TIME\", or \"ALL\"".to_string(),
    };
    Err(problem(format!("`{s}` is not a Linux capability"), help))
}

/// A hostname: dot-separated labels of letters, digits and `-`, 63 bytes per label.
pub fn check_hostname(s: &str) -> R<()> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(problem(
            format!("`{s}` is not a valid hostname"),
            "hostnames are letters, digits and `-`, in dot-separated parts of at most 63 characters",
        ))
    }
}

/// Split a command string into words the way a POSIX shell would, without
/// expanding anything: whitespace separates, quotes group, `\` escapes.
/// This is what Compose does with a string `command`.
pub fn shell_split(s: &str) -> R<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => {
                            return Err(problem(
                                format!("command `{s}` has an unclosed single quote"),
                                "close the quote, or write the command as a list of words",
                            ));
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => break,
                        },
                        Some(c) => cur.push(c),
                        None => {
                            return Err(problem(
                                format!("command `{s}` has an unclosed double quote"),
                                "close the quote, or write the command as a list of words",
                            ));
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => cur.push('\\'),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Check an image reference against Docker's reference grammar:
/// `[host[:port]/]path[:tag][@algo:hex]`.
pub fn check_image(r: &str) -> R<()> {
    let bad = |why: &str, help: &str| {
        Err(problem(
            format!("image `{r}` is not a valid reference: {why}"),
            help.to_string(),
        ))
    };
    const FORM: &str = "write an image as [registry[:port]/]repository[:tag][@sha256:digest], e.g. \"nginx:1.25\" or \"registry.example.org:5000/team/app:v2\"";
    if r.is_empty() {
        return bad("it is empty", FORM);
    }
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad(
                "the digest has no algorithm",
                "write the digest as sha256:<64 hex digits>",
            );
        };
        let algo_ok = !algo.is_empty()
            && algo.split(['+', '.', '_', '-']).all(|c| {
                c.chars().next().is_some_and(|f| f.is_ascii_alphabetic())
                    && c.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(
                "malformed digest",
                "write the digest as sha256:<64 hex digits>",
            );
        }
        if algo == "sha256" && hex.len() != 64 {
            return bad("a sha256 digest has 64 hex digits", "copy the full digest");
        }
    }
    // The tag is after the last `:` that follows the last `/`.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if tag == Some("") {
        return bad(
            "the tag after `:` is empty",
            "write a tag such as \"nginx:1.25\", or leave out the `:` for `latest`",
        );
    }
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return bad(
                &format!("malformed tag `{tag}`"),
                "tags are letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`",
            );
        }
    }
    if name.is_empty() {
        return bad("the repository name is empty", FORM);
    }
    if name.len() > 255 {
        return bad("the name is longer than 255 characters", FORM);
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        let is_domain = first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase());
        if is_domain {
            check_domain(first).or_else(|why| bad(&why, FORM))?;
            components.remove(0);
        }
    }
    for c in components {
        if c.chars().any(|ch| ch.is_ascii_uppercase()) {
            return bad(
                "repository names must be lowercase",
                &format!("write \"{}\"", r.to_ascii_lowercase()),
            );
        }
        if !path_component_ok(c) {
            return bad(
                &format!("malformed path component `{c}`"),
                "repository path components are lowercase letters and digits, separated by `.`, `_`, `__` or dashes",
            );
        }
    }
    Ok(())
}

fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) => {
                if addr.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("malformed registry address `{d}`"));
                }
                (None, rest.strip_prefix(':'))
            }
            None => return Err(format!("malformed registry address `{d}`")),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|c| {
                !c.is_empty()
                    && !c.starts_with('-')
                    && !c.ends_with('-')
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("malformed registry host `{h}`"));
        }
    }
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(format!("malformed registry port `{p}`"));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator.
        let sep_start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep_start || i == b.len() {
            return false;
        }
    }
}

/// An `extra_hosts` entry: a host name and an IP address (or Docker's
/// `host-gateway`); returns the address as Docker's `host:ip` form wants it.
pub fn check_extra_host(host: &str, ip: &str) -> R<String> {
    const HELP: &str = "write \"host:ip\", e.g. \"db.local:10.0.0.5\" (or \"host-gateway\" for the host's address)";
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(problem(
            format!("extra host name {host:?} is not valid"),
            HELP,
        ));
    }
    let bare = ip.trim().trim_start_matches('[').trim_end_matches(']');
    if bare == "host-gateway" || bare.parse::<IpAddr>().is_ok() {
        Ok(bare.to_string())
    } else {
        Err(problem(
            format!("extra host `{host}`: `{ip}` is not an IP address"),
            HELP,
        ))
    }
}

/// A `devices` entry, `/dev/host[:/dev/container[:perms]]`, written out in
/// full (container path defaults to the host's, permissions to `rwm`).
pub fn parse_device(s: &str) -> R<String> {
    const HELP: &str = "write \"/dev/host\", \"/dev/host:/dev/container\" or \"/dev/host:/dev/container:rw\" (permissions from r, w, m)";
    let parts: Vec<&str> = s.split(':').collect();
    let perms_ok = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms_ok(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(problem(format!("device `{s}` has too many `:`"), HELP)),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(problem(
            format!("device `{s}`: paths must be absolute"),
            HELP,
        ));
    }
    if !perms_ok(perms) {
        return Err(problem(
            format!("device `{s}`: permissions `{perms}` are not made of r, w and m"),
            HELP,
        ));
    }
    Ok(format!("{host}:{container}:{perms}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(ip: Option<&str>, h: Option<u16>, c: u16, p: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.map(str::to_string),
            host_port: h,
            container_port: c,
            protocol: p,
        }
    }

    #[test]
    fn ports() {
        use Protocol::*;
        assert_eq!(parse_port("80").unwrap(), vec![pm(None, None, 80, Tcp)]);
        assert_eq!(
            parse_port("8080:80").unwrap(),
            vec![pm(None, Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse_port("127.0.0.1:53:53/udp").unwrap(),
            vec![pm(Some("127.0.0.1"), Some(53), 53, Udp)]
        );
        assert_eq!(
            parse_port("127.0.0.1::80").unwrap(),
            vec![pm(Some("127.0.0.1"), None, 80, Tcp)]
        );
        assert_eq!(
            parse_port("[::1]:80:80").unwrap(),
            vec![pm(Some("::1"), Some(80), 80, Tcp)]
        );
        assert_eq!(parse_port("8000-8001:80-81").unwrap().len(), 2);
        for bad in [
            "0",
            "65536",
            "80:0",
            "0:80",
            "a:80",
            "80/tcpx",
            "1:2:3:4",
            "x.y:80:80",
            "80-70",
            "8000-8002:80-81",
            "",
            "80:",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes() {
        let v = parse_volume("data:/var/lib/x:ro").unwrap();
        assert_eq!(v.source, VolumeSource::Named("data".into()));
        assert!(v.read_only);
        let v = parse_volume("/srv/x:/x").unwrap();
        assert_eq!(v.source, VolumeSource::Bind("/srv/x".into()));
        for bad in [
            "./x:/x",
            "x/y:/x",
            "~/x:/x",
            "data:rel",
            "data:/x:rx",
            "/data",
            "a:b:c:d",
            ".x:/x",
            "/a/../b:/x",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images() {
        for ok in [
            "nginx",
            "nginx:1.25",
            "library/nginx",
            "mildred/exim-dovecot-mail",
            "registry.example.org:5000/team/app:v2",
            "localhost/app",
            "a__b/c--d.e_f",
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/app",
            "Registry.Example/app",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "a//b",
            "-a",
            "a-",
            "nginx@sha256:abc",
            "a:b:c",
            "nginx latest",
            "app/Web",
            "a___b",
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_durations_signals() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
        assert!(parse_memory("12q").is_err());
        assert!(parse_memory("1k").is_err());
        assert_eq!(parse_duration_secs("30").unwrap(), 30);
        assert_eq!(parse_duration_secs("1m 30s").unwrap(), 90);
        assert!(parse_duration_secs("soon").is_err());
        assert_eq!(parse_signal("TERM").unwrap(), "SIGTERM");
        assert_eq!(parse_signal("sigquit").unwrap(), "SIGQUIT");
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), "SIGRTMIN+3");
        assert!(parse_signal("SIGFOO").is_err());
        assert_eq!(parse_capability("cap_net_admin").unwrap(), "NET_ADMIN");
        assert!(parse_capability("net admin").is_err());
        assert_eq!(parse_capability("all").unwrap(), "ALL");
        assert_eq!(parse_capability("CAP_SYS_ADMIN").unwrap(), "SYS_ADMIN");
        assert!(parse_capability("bogus").is_err());
        assert!(parse_capability("SYS_ADMINN").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split("sh -c 'echo hi there'").unwrap(),
            vec!["sh", "-c", "echo hi there"]
        );
        assert_eq!(
            shell_split(r#"a "b \"c\"" d\ e ''"#).unwrap(),
            vec!["a", "b \"c\"", "d e", ""]
        );
        assert!(shell_split("a 'b").is_err());
        assert!(shell_split("a \"b").is_err());
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn links_and_hostnames() {
        assert_eq!(parse_link("db:database").unwrap().alias, "database");
        assert_eq!(parse_link("db").unwrap().alias, "db");
        assert!(parse_link("db:").is_err());
        assert!(parse_link("../x").is_err());
        assert!(check_hostname("mail.example.org").is_ok());
        assert!(check_hostname("-bad").is_err());
    }
}
