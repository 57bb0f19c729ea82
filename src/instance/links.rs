//! The legacy `docker run --link` environment variables a link gives.

use std::collections::BTreeMap;

use crate::deployment::Protocol;

/// Turn a link alias into the prefix of its variables: `db` → `DB`,
/// `my-db` → `MY_DB`.
pub fn link_prefix(alias: &str) -> String {
    alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The legacy `docker run --link` variables for one link.
///
/// `ports` are the target's exposed and published ports; `address` is the
/// name the target is reached by on the deployment network.
pub fn link_variables(
    this_container: &str,
    alias: &str,
    address: &str,
    ports: &[(u16, Protocol)],
) -> BTreeMap<String, String> {
    let prefix = link_prefix(alias);
    let mut env = BTreeMap::new();
    env.insert(
        format!("{prefix}_NAME"),
        format!("/{this_container}/{alias}"),
    );
    let mut ports: Vec<(u16, Protocol)> = ports
        .iter()
        .copied()
        .filter(|(_, p)| matches!(p, Protocol::Tcp | Protocol::Udp))
        .collect();
    ports.sort_by_key(|(p, proto)| (*p, proto.as_str()));
    ports.dedup();
    if let Some((p, proto)) = ports.first() {
        env.insert(
            format!("{prefix}_PORT"),
            format!("{}://{address}:{p}", proto.as_str()),
        );
    }
    for (p, proto) in &ports {
        let up = proto.as_str().to_ascii_uppercase();
        let base = format!("{prefix}_PORT_{p}_{up}");
        env.insert(base.clone(), format!("{}://{address}:{p}", proto.as_str()));
        env.insert(format!("{base}_ADDR"), address.to_string());
        env.insert(format!("{base}_PORT"), p.to_string());
        env.insert(format!("{base}_PROTO"), proto.as_str().to_string());
    }
    env
}
