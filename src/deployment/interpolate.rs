//! `${VAR}` interpolation in string values.
//!
//! Syntax: `${NAME}`, `${NAME:-default}` (default when unset or empty),
//! `${NAME-default}` (default when unset), and `$$` for a literal `$`. A `$`
//! followed by anything else is kept as it is, so values such as password
//! hashes or geard files written without interpolation in mind pass
//! through unchanged. Defaults may themselves contain `${...}`.

/// A problem with one `${...}` in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpError {
    /// Byte offset of the `$` in the string.
    pub offset: usize,
    /// The variable concerned, if the problem is an undefined variable.
    pub variable: Option<String>,
    pub message: String,
    pub help: String,
}

/// How deeply defaults may nest `${...}`.
const MAX_NESTING: usize = 8;

/// Interpolate `s`, looking variables up with `lookup`. Every problem in the
/// string is reported.
pub fn interpolate(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpError>> {
    let mut errors = Vec::new();
    let out = expand(s, 0, lookup, &mut errors, 0);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn expand(
    s: &str,
    base: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<InterpError>,
    depth: usize,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut pos = 0usize;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let here = base + pos + i;
        if after.starts_with('$') {
            out.push('$');
            pos += i + 2;
            rest = &rest[i + 2..];
            continue;
        }
        if !after.starts_with('{') {
            out.push('$');
            pos += i + 1;
            rest = &rest[i + 1..];
            continue;
        }
        // Find the matching `}`, allowing nested `${...}` in defaults.
        let body_start = i + 2;
        let mut level = 1usize;
        let mut end = None;
        let bytes = rest.as_bytes();
        let mut j = body_start;
        while j < bytes.len() {
            match bytes[j] {
                b'$' if bytes.get(j + 1) == Some(&b'{') => {
                    level += 1;
                    j += 2;
                    continue;
                }
                b'}' => {
                    level -= 1;
                    if level == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let Some(end) = end else {
            errors.push(InterpError {
                offset: here,
                variable: None,
                message: "unclosed `${` in string".into(),
                help: "close it with `}`, or write `$$` for a literal `$`".into(),
            });
            return out;
        };
        let body = &rest[body_start..end];
        let (name, default) = if let Some(k) = body.find(":-") {
            let name_part = &body[..k];
            if is_name(name_part) {
                (name_part, Some((&body[k + 2..], true, body_start + k + 2)))
            } else {
                (body, None)
            }
        } else if let Some(k) = body.find('-') {
            let name_part = &body[..k];
            if is_name(name_part) {
                (name_part, Some((&body[k + 1..], false, body_start + k + 1)))
            } else {
                (body, None)
            }
        } else {
            (body, None)
        };
        if !is_name(name) {
            errors.push(InterpError {
                offset: here,
                variable: None,
                message: format!("invalid variable reference `${{{body}}}`"),
                help: "write ${NAME} or ${NAME:-default}, where NAME is letters, digits and _ (not starting with a digit); write `$$` for a literal `$`".into(),
            });
        } else {
            let value = lookup(name);
            match (value, default) {
                (Some(v), Some((d, true, off))) if v.is_empty() => {
                    // `:-` also replaces an empty value.
                    out.push_str(&expand_default(d, base + pos + off, lookup, errors, depth));
                }
                (Some(v), _) => out.push_str(&v),
                (None, Some((d, _, off))) => {
                    out.push_str(&expand_default(d, base + pos + off, lookup, errors, depth));
                }
                (None, None) => errors.push(InterpError {
                    offset: here,
                    variable: Some(name.to_string()),
                    message: format!("variable `{name}` is not defined"),
                    help: format!(
                        "define it with `--set {name}=...`, in the environment, in a `.env` file beside the deployment file or under `vars`; or give a default: ${{{name}:-default}}"
                    ),
                }),
            }
        }
        pos += end + 1;
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn expand_default(
    d: &str,
    base: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<InterpError>,
    depth: usize,
) -> String {
    if depth >= MAX_NESTING {
        errors.push(InterpError {
            offset: base,
            variable: None,
            message: format!("defaults nested more than {MAX_NESTING} levels deep"),
            help: "simplify the default value".into(),
        });
        return String::new();
    }
    expand(d, base, lookup, errors, depth + 1)
}

/// An interpolation (and environment) variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "B_2" => Some("b".into()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<String, Vec<InterpError>> {
        interpolate(s, &vars)
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(run("x${A}y").unwrap(), "xalphay");
        assert_eq!(run("${A}${B_2}").unwrap(), "alphab");
        assert_eq!(run("${NOPE:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${EMPTY-dflt}").unwrap(), "");
        assert_eq!(run("${NOPE-d}").unwrap(), "d");
        assert_eq!(run("${A:-dflt}").unwrap(), "alpha");
        assert_eq!(run("${NOPE:-${A}.org}").unwrap(), "alpha.org");
        assert_eq!(run("${NOPE:-}").unwrap(), "");
    }

    #[test]
    fn dollars_escape_and_pass_through() {
        assert_eq!(run("$${A}").unwrap(), "${A}");
        assert_eq!(run("a$$b").unwrap(), "a$b");
        assert_eq!(run("$1$abc$").unwrap(), "$1$abc$");
        assert_eq!(run("price: 5$").unwrap(), "price: 5$");
    }

    #[test]
    fn errors_name_the_variable_and_place() {
        let e = run("ab${MISSING}cd${ALSO}").unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].variable.as_deref(), Some("MISSING"));
        assert_eq!(e[0].offset, 2);
        assert_eq!(e[1].offset, 14);
        let e = run("x${A").unwrap_err();
        assert!(e[0].message.contains("unclosed"));
        let e = run("${1A}").unwrap_err();
        assert!(e[0].message.contains("invalid variable reference"));
        let e = run("${NOPE:-${MISSING}}").unwrap_err();
        assert_eq!(e[0].variable.as_deref(), Some("MISSING"));
        assert_eq!(e[0].offset, 8);
    }

    #[test]
    fn deep_defaults_are_bounded() {
        let s = format!("{}x{}", "${N:-".repeat(50), "}".repeat(50));
        let e = run(&s).unwrap_err();
        assert!(e[0].message.contains("nested"));
    }
}
