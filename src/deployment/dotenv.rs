//! `.env` syntax, for the `.env` file beside the deployment file and for
//! `env_file` entries: `KEY=value` lines, `#` comments, an optional leading
//! `export `, and single- (literal) or double-quoted (with `\n`, `\t`, `\"`,
//! `\\` escapes) values. Unquoted values are trimmed and end at ` #`.
//!
//! An env file can be any file on the host (`env_file = "/etc/shadow"`), so
//! its errors name the line and the problem and at most a valid variable
//! name: never a value, nor text that failed to parse.

use super::interpolate::is_name;
use super::tree::{Diag, Span};

/// One `KEY=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// Where the key is.
    pub span: Span,
}

/// Bad lines reported before the parser gives up on a file.
pub const MAX_BAD_LINES: usize = 20;

pub fn parse(text: &str) -> (Vec<EnvEntry>, Vec<Diag>) {
    let mut entries = Vec::new();
    let mut diags: Vec<Diag> = Vec::new();
    let mut offset = 0usize;
    for raw in text.split_inclusive('\n') {
        if diags.len() == MAX_BAD_LINES {
            diags.push(
                Diag::new(
                    Span::new(offset, offset),
                    format!("stopped reading after {MAX_BAD_LINES} bad lines"),
                )
                .help("is this an env file? each line is KEY=value; comments start with #"),
            );
            break;
        }
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, body_off) = match trimmed.strip_prefix("export ") {
            Some(b) => {
                let b2 = b.trim_start();
                (b2, indent + 7 + (b.len() - b2.len()))
            }
            None => (trimmed, indent),
        };
        let at = line_start + body_off;
        let Some((key, value)) = body.split_once('=') else {
            diags.push(
                Diag::new(Span::new(at, at + body.len()), "expected `KEY=value`")
                    .help("each line is KEY=value; comments start with #"),
            );
            continue;
        };
        let key = key.trim_end();
        let key_span = Span::new(at, at + key.len());
        if !is_name(key) {
            diags.push(
                Diag::new(key_span, "invalid variable name before `=`")
                    .help("names are letters, digits and _, not starting with a digit"),
            );
            continue;
        }
        let value_off = at + body.len() - value.len();
        let v = value.trim_start();
        let v_at = value_off + (value.len() - v.len());
        let parsed = match v.chars().next() {
            Some('\'') => match v[1..].find('\'') {
                Some(end) => Ok(v[1..1 + end].to_string()),
                None => Err(
                    Diag::new(Span::new(v_at, v_at + 1), "unclosed single quote")
                        .help("close the value with '"),
                ),
            },
            Some('"') => double_quoted(&v[1..]).ok_or_else(|| {
                Diag::new(Span::new(v_at, v_at + 1), "unclosed double quote")
                    .help("close the value with \"")
            }),
            _ => {
                let end = v.find(" #").unwrap_or(v.len());
                Ok(v[..end].trim_end().to_string())
            }
        };
        let parsed = parsed.and_then(|v| {
            if v.contains('\0') {
                Err(Diag::new(
                    key_span,
                    format!("the value of `{key}` contains a NUL character"),
                )
                .help("remove the NUL byte from the value"))
            } else {
                Ok(v)
            }
        });
        match parsed {
            Ok(value) => entries.push(EnvEntry {
                key: key.to_string(),
                value,
                span: key_span,
            }),
            Err(d) => diags.push(d),
        }
    }
    (entries, diags)
}

fn double_quoted(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let text = "# comment\nA=1\nexport B = two words # note\nC='lit $x'\nD=\"a\\nb\"\n\nE=\n";
        let (e, d) = parse(text);
        assert!(d.is_empty(), "{d:?}");
        let kv: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit $x"),
                ("D", "a\nb"),
                ("E", "")
            ]
        );
        assert_eq!(e[1].span.start, text.find('B').unwrap());
    }

    #[test]
    fn reports_bad_lines() {
        let (e, d) = parse("GOOD=1\nno equals\n1BAD=2\nQ=\"open\n");
        assert_eq!(e.len(), 1);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].span.start, 7);
    }
}
