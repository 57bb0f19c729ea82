//! Swarm placement constraints (`placement`, Compose's
//! `deploy.placement.constraints`): checked when the file is read, and
//! evaluated by the swarm target where berth itself must choose a node (the
//! node a service's volumes are pinned to) or count the nodes a service can
//! use (the placement check of `plan`).

/// One constraint: `ATTRIBUTE==VALUE` or `ATTRIBUTE!=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint<'a> {
    pub attribute: &'a str,
    /// `==` (true) or `!=` (false).
    pub equal: bool,
    pub value: &'a str,
}

/// What berth knows of a node to evaluate a constraint against.
pub struct NodeFacts<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    /// `manager` or `worker`.
    pub role: &'a str,
    pub labels: &'a std::collections::BTreeMap<String, String>,
}

impl<'a> Constraint<'a> {
    /// Parse one constraint; the error says what is wrong with it.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let (at, equal, len) = match (text.find("=="), text.find("!=")) {
            (Some(i), None) => (i, true, 2),
            (None, Some(i)) => (i, false, 2),
            (Some(_), Some(_)) => return Err("has both == and !=".into()),
            (None, None) => return Err("has neither == nor !=".into()),
        };
        let attribute = text[..at].trim();
        let value = text[at + len..].trim();
        if attribute.is_empty() {
            return Err("names no attribute".into());
        }
        if value.is_empty() {
            return Err("gives no value".into());
        }
        let known = [
            "node.id",
            "node.hostname",
            "node.role",
            "node.platform.os",
            "node.platform.arch",
        ];
        let labelled = ["node.labels.", "engine.labels."]
            .iter()
            .any(|p| attribute.strip_prefix(p).is_some_and(|k| !k.is_empty()));
        if !known.contains(&attribute) && !labelled {
            return Err(format!(
                "names the unknown attribute `{attribute}` (Swarm knows {}, node.labels.KEY, engine.labels.KEY)",
                known.join(", ")
            ));
        }
        if attribute == "node.role" && !matches!(value, "manager" | "worker") {
            return Err(format!(
                "compares node.role with `{value}` (manager or worker)"
            ));
        }
        Ok(Constraint {
            attribute,
            equal,
            value,
        })
    }

    /// Does `node` meet it? `None` when berth cannot tell (platform and
    /// engine labels are not among the facts): Swarm decides then.
    pub fn matches(&self, node: &NodeFacts<'_>) -> Option<bool> {
        let actual = match self.attribute {
            "node.id" => Some(node.id),
            "node.hostname" => Some(node.hostname),
            "node.role" => Some(node.role),
            a => match a.strip_prefix("node.labels.") {
                Some(key) => node.labels.get(key).map(String::as_str),
                None => return None,
            },
        };
        // A missing label equals nothing and differs from everything.
        let same = actual == Some(self.value);
        Some(same == self.equal)
    }
}

/// Does `node` meet every constraint of `placement` (the ones berth can
/// evaluate; constraints that did not parse count as met: the file was
/// checked when it was read)?
pub fn meets_all(placement: &[String], node: &NodeFacts<'_>) -> bool {
    placement.iter().all(|c| {
        Constraint::parse(c)
            .ok()
            .and_then(|c| c.matches(node))
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_parse_and_match_like_swarm() {
        let labels: std::collections::BTreeMap<String, String> =
            [("disk".to_string(), "ssd".to_string())].into();
        let node = NodeFacts {
            id: "abc",
            hostname: "node1",
            role: "worker",
            labels: &labels,
        };
        for (c, met) in [
            ("node.labels.disk==ssd", Some(true)),
            ("node.labels.disk != ssd", Some(false)),
            ("node.labels.zone==a", Some(false)),
            ("node.labels.zone!=a", Some(true)),
            ("node.hostname==node1", Some(true)),
            ("node.role==manager", Some(false)),
            ("node.id!=abc", Some(false)),
            ("engine.labels.x==y", None),
            ("node.platform.os==linux", None),
        ] {
            let parsed = Constraint::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(parsed.matches(&node), met, "{c}");
        }
        assert!(meets_all(
            &["node.labels.disk==ssd".into(), "engine.labels.x==y".into()],
            &node
        ));
        assert!(!meets_all(&["node.role==manager".into()], &node));
        for (bad, says) in [
            ("node.labels.disk", "neither"),
            ("==ssd", "no attribute"),
            ("node.hostname==", "no value"),
            ("node.name==x", "unknown attribute"),
            ("node.labels.==x", "unknown attribute"),
            ("node.role==boss", "manager or worker"),
            ("a==b!=c", "both"),
        ] {
            let e = Constraint::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
