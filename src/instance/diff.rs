//! The one recursive diff of two serialised values (instance specs, services
//! of a revision), field path by field path; callers word the lines.

use serde_json::Value;

/// How a table (JSON object) present on one side only is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsentTable {
    /// As one change of the whole table (`health: (none) → {...}`).
    Whole,
    /// Field by field, as if the missing side were an empty table
    /// (`health.retries: (unset) → 3`).
    ByField,
}

/// One value that differs between two serialised values.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Dotted path of the field (`env.FOO`, `health.retries`).
    pub path: String,
    /// The value before (`Null`: absent).
    pub before: Value,
    /// The value after (`Null`: absent).
    pub after: Value,
}

/// Every field that differs between `a` and `b`, in path order; tables
/// (objects) are compared key by key, anything else as a whole.
pub fn json_diff(a: &Value, b: &Value, absent: AbsentTable) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(String::new(), a, b, absent, &mut out);
    out
}

fn walk(path: String, a: &Value, b: &Value, absent: AbsentTable, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    let empty = Value::Object(Default::default());
    let (a, b) = match (absent, a, b) {
        (AbsentTable::ByField, Value::Null, Value::Object(_)) => (&empty, b),
        (AbsentTable::ByField, Value::Object(_), Value::Null) => (a, &empty),
        _ => (a, b),
    };
    if let (Value::Object(ma), Value::Object(mb)) = (a, b) {
        let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
        keys.sort();
        keys.dedup();
        let null = Value::Null;
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            walk(
                p,
                ma.get(k).unwrap_or(&null),
                mb.get(k).unwrap_or(&null),
                absent,
                out,
            );
        }
        return;
    }
    out.push(FieldChange {
        path,
        before: a.clone(),
        after: b.clone(),
    });
}

/// A value for a diff line: compact JSON, `(none)` when absent, cut to 80
/// characters.
pub(crate) fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_dotted_and_absent_tables_are_whole_or_by_field() {
        let a = json!({"env": {"A": "1", "B": "2"}, "n": 1});
        let b = json!({"env": {"A": "1", "C": "3"}, "n": 1, "health": {"retries": 3}});
        let whole = json_diff(&a, &b, AbsentTable::Whole);
        let paths: Vec<&str> = whole.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["env.B", "env.C", "health"]);
        assert_eq!(whole[0].after, Value::Null);
        assert_eq!(whole[2].after, json!({"retries": 3}));
        let by_field = json_diff(&a, &b, AbsentTable::ByField);
        let paths: Vec<&str> = by_field.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["env.B", "env.C", "health.retries"]);
        assert!(json_diff(&a, &a, AbsentTable::Whole).is_empty());
    }
}
