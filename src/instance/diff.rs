//! A readable diff of two serialised values, field path by field path.

pub(crate) fn diff_values(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = Value::Null;
                diff_values(
                    &p,
                    ma.get(k).unwrap_or(&null),
                    mb.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ => out.push(format!("{path}: {} → {}", short(a), short(b))),
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::Null => "(none)".to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}
