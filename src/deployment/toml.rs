//! TOML into the spanned value tree, using the `toml` crate's spanned
//! document API (which also rejects duplicate keys and bounds recursion).

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::tree::{Diag, Entry, MAX_NODES, Node, Span, Value};

pub fn parse(text: &str) -> (Option<Node>, Vec<Diag>) {
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return (None, diagnose(text, &errors));
    }
    let mut budget = MAX_NODES;
    let span = table.span();
    let map = convert_table(table.get_ref(), &mut budget);
    match map {
        Some(m) => (
            Some(Node::new(Value::Map(m), Span::new(span.start, span.end))),
            vec![],
        ),
        None => (
            None,
            vec![Diag::new(
                Span::default(),
                format!("more than {MAX_NODES} values in one file"),
            )],
        ),
    }
}

/// The toml parser's errors as located messages. A table header given
/// twice also makes every key under it a duplicate; those follow-on errors
/// are dropped, and duplicate keys are named.
fn diagnose(text: &str, errors: &[toml::de::Error]) -> Vec<Diag> {
    let mut located: Vec<(Span, &str)> = errors
        .iter()
        .map(|e| {
            let span = e
                .span()
                .map(|r| Span::new(r.start, r.end))
                .unwrap_or_default();
            (span, e.message())
        })
        .collect();
    located.sort_by_key(|(s, _)| s.start);
    let line_of = |at: usize| -> &str {
        let start = text
            .get(..at)
            .and_then(|t| t.rfind('\n'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let end = text
            .get(at..)
            .and_then(|t| t.find('\n'))
            .map(|i| at + i)
            .unwrap_or(text.len());
        text.get(start..end).unwrap_or("")
    };
    let mut diags: Vec<Diag> = Vec::new();
    // The end of the last duplicated table header, while still under it.
    let mut dup_table_at: Option<usize> = None;
    for (span, msg) in located {
        let is_dup = msg.contains("duplicate key");
        if let Some(at) = dup_table_at {
            let between = text.get(at..span.start).unwrap_or("");
            let new_header = between
                .lines()
                .skip(1)
                .any(|l| l.trim_start().starts_with('['));
            if new_header {
                dup_table_at = None;
            } else if is_dup {
                continue;
            }
        }
        if is_dup {
            let key = text
                .get(span.start..span.end)
                .unwrap_or("")
                .trim_matches(['"', '\'']);
            let header = line_of(span.start).trim_start().starts_with('[');
            if header {
                dup_table_at = Some(span.end);
            }
            let diag = if header {
                let this = line_of(span.start).trim();
                let first = text
                    .get(..span.start)
                    .unwrap_or("")
                    .lines()
                    .position(|l| l.trim() == this);
                let help = match first {
                    Some(i) => format!(
                        "{this} is already defined at line {}; merge the two into one",
                        i + 1
                    ),
                    None => "a table may be defined only once; merge the two into one".to_string(),
                };
                Diag::new(span, format!("duplicate table `{key}`")).help(help)
            } else {
                Diag::new(span, format!("duplicate key `{key}`"))
                    .help("each key may appear only once in a table; keep one of them")
            };
            diags.push(diag);
            continue;
        }
        // A bare word where a value belongs is almost always a string
        // without quotes (`image = nginx`); the parser's own message (it
        // tried to read a number or a date) does not say so.
        let word: String = text
            .get(span.start..)
            .unwrap_or("")
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
            .collect();
        let is_value = line_of(span.start).contains('=');
        if is_value
            && (word.contains(':')
                || word
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '/' || c == '$'))
            && !matches!(word.as_str(), "true" | "false" | "inf" | "nan")
        {
            diags.push(
                Diag::new(span, format!("the value `{word}` needs quotes")).help(format!(
                    "TOML strings are written in double quotes: \"{word}\""
                )),
            );
            continue;
        }
        let (message, help) = describe(msg);
        diags.push(Diag {
            span,
            message,
            help,
        });
    }
    diags
}

/// The toml parser's messages, with a hint for the common ones.
fn describe(msg: &str) -> (String, Option<String>) {
    let msg = msg.trim().to_string();
    let help = if msg.contains("invalid string") || msg.contains("string values must be quoted") {
        Some("put strings in double quotes, e.g. image = \"nginx:1.25\"".to_string())
    } else {
        Some("see https://toml.io for the TOML syntax".to_string())
    };
    (msg, help)
}

fn convert_table(t: &DeTable<'_>, budget: &mut usize) -> Option<Vec<Entry>> {
    let mut entries = Vec::with_capacity(t.len());
    for (k, v) in t.iter() {
        let ks = k.span();
        entries.push(Entry {
            key: k.get_ref().to_string(),
            key_span: Span::new(ks.start, ks.end),
            value: convert(v, budget)?,
        });
    }
    // The map is ordered by key; the file's order reads better in errors.
    entries.sort_by_key(|e| e.key_span.start);
    Some(entries)
}

fn convert(v: &Spanned<DeValue<'_>>, budget: &mut usize) -> Option<Node> {
    *budget = budget.checked_sub(1)?;
    let r = v.span();
    let span = Span::new(r.start, r.end);
    let value = match v.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str();
            match i64::from_str_radix(digits, i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => Value::Other("an integer too large for 64 bits"),
            }
        }
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) => Value::Float(x),
            Err(_) => Value::Other("a malformed number"),
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(_) => Value::Other("a date/time"),
        DeValue::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            for item in a.iter() {
                items.push(convert(item, budget)?);
            }
            Value::Seq(items)
        }
        DeValue::Table(t) => Value::Map(convert_table(t, budget)?),
    };
    Some(Node::new(value, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_spans() {
        let text =
            "name = \"x\"\n[services.web]\nimage = \"nginx\"\ncount = 2\nports = [\"80:80\"]\n";
        let (n, d) = parse(text);
        assert!(d.is_empty(), "{d:?}");
        let n = n.unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[0].key, "name");
        assert_eq!(&text[m[0].value.span.start..m[0].value.span.end], "\"x\"");
        let svcs = m[1].value.as_map().unwrap();
        let web = svcs[0].value.as_map().unwrap();
        assert_eq!(web[0].key, "image");
        assert_eq!(web[1].value.value, Value::Int(2));
        assert_eq!(&text[web[0].key_span.start..web[0].key_span.end], "image");
    }

    #[test]
    fn duplicate_key_is_an_error_with_a_location() {
        let (n, d) = parse("a = 1\na = 2\n");
        assert!(n.is_none());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "duplicate key `a`", "{d:?}");
        assert_eq!(d[0].span.start, 6);
    }
}
