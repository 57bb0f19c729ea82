//! `${VAR}` interpolation in string values.
//!
//! Syntax: `${NAME}`, `${NAME:-default}` (default when unset or empty),
//! `${NAME-default}` (default when unset), and `$$` for a literal `$`. A `$`
//! followed by anything else is kept as it is, so values such as password
//! hashes or geard files written without interpolation in mind pass
//! through unchanged. Defaults may themselves contain `${...}`.
//! `${NAME:?message}` and `${NAME?message}` refuse an unset (or, with `:`,
//! empty) variable with the file's own message.
//!
//! Compose files follow Compose's rules on top ([`interpolate_compose`]):
//! a bare `$NAME` is a variable too, and an undefined variable becomes the
//! empty string (reported back so that the loader can warn), not an error.

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
    interpolate_with(s, lookup, false).map(|(v, _)| v)
}

/// A variable a Compose file uses without defining it: Compose substitutes
/// the empty string, and so does berth, with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    /// Byte offset of the `$` in the string.
    pub offset: usize,
    pub variable: String,
}

/// [`interpolate`] by Compose's rules: bare `$NAME` too, and undefined
/// variables are empty (returned, for a warning).
pub fn interpolate_compose(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Unset>), Vec<InterpError>> {
    interpolate_with(s, lookup, true)
}

fn interpolate_with(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    compose: bool,
) -> Result<(String, Vec<Unset>), Vec<InterpError>> {
    let mut errors = Vec::new();
    let mut unset = compose.then(Vec::new);
    let out = expand(s, 0, lookup, &mut errors, &mut unset, 0);
    if errors.is_empty() {
        Ok((out, unset.unwrap_or_default()))
    } else {
        Err(errors)
    }
}

/// `unset` is `Some` under Compose's rules: undefined variables are
/// collected there instead of being errors.
fn expand(
    s: &str,
    base: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<InterpError>,
    unset: &mut Option<Vec<Unset>>,
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
        if let Some(found) = unset.as_mut()
            && after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            // Compose's bare `$NAME`.
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => found.push(Unset {
                    offset: here,
                    variable: name.to_string(),
                }),
            }
            pos += i + 1 + len;
            rest = &rest[i + 1 + len..];
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
        // NAME, then nothing, `:-`/`-` and a default, or `:?`/`?` and a message.
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, op) = body.split_at(name_len);
        let (op, arg) = ["-", ":-", "?", ":?"]
            .iter()
            .rev()
            .find_map(|o| op.strip_prefix(o).map(|a| (Some(*o), a)))
            .unwrap_or((None, op));
        let arg_off = base + pos + body_start + name_len + op.map_or(0, str::len);
        if !is_name(name) || (op.is_none() && !arg.is_empty()) {
            errors.push(InterpError {
                offset: here,
                variable: None,
                message: format!("invalid variable reference `${{{body}}}`"),
                help: "write ${NAME} or ${NAME:-default}, where NAME is letters, digits and _ (not starting with a digit); write `$$` for a literal `$`".into(),
            });
        } else {
            let value = lookup(name);
            // `:` makes an empty value count as unset.
            let missing = match &value {
                None => true,
                Some(v) => v.is_empty() && op.is_some_and(|o| o.starts_with(':')),
            };
            match op {
                Some(o) if missing && o.ends_with('-') => {
                    out.push_str(&expand_default(arg, arg_off, lookup, errors, unset, depth));
                }
                Some(o) if missing && o.ends_with('?') => {
                    let why = if arg.is_empty() {
                        "is required".to_string()
                    } else {
                        format!("is required: {arg}")
                    };
                    let empty = if value.is_some() { " (it is empty)" } else { "" };
                    errors.push(InterpError {
                        offset: here,
                        variable: None,
                        message: format!("variable `{name}` {why}{empty}"),
                        help: format!(
                            "define it with `--set {name}=...`, in the environment or in a `.env` file beside the deployment file"
                        ),
                    });
                }
                _ => match (value, unset.as_mut()) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(found)) => found.push(Unset {
                        offset: here,
                        variable: name.to_string(),
                    }),
                    (None, None) => errors.push(InterpError {
                        offset: here,
                        variable: Some(name.to_string()),
                        message: format!("variable `{name}` is not defined"),
                        help: format!(
                            "define it with `--set {name}=...`, in the environment, in a `.env` file beside the deployment file or under `vars`; or give a default: ${{{name}:-default}}"
                        ),
                    }),
                },
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
    unset: &mut Option<Vec<Unset>>,
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
    expand(d, base, lookup, errors, unset, depth + 1)
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
    fn required_variables_carry_the_files_message() {
        assert_eq!(run("${A:?need A}").unwrap(), "alpha");
        assert_eq!(run("${EMPTY?x}").unwrap(), "");
        let e = run("x${NOPE:?set NOPE to the domain}").unwrap_err();
        assert_eq!(
            e[0].message,
            "variable `NOPE` is required: set NOPE to the domain"
        );
        assert_eq!(e[0].offset, 1);
        let e = run("${EMPTY:?}").unwrap_err();
        assert_eq!(e[0].message, "variable `EMPTY` is required (it is empty)");
        assert!(run("${NOPE?}").is_err());
        assert!(run("${A:x}").unwrap_err()[0].message.contains("invalid"));
    }

    #[test]
    fn compose_rules_take_bare_names_and_empty_for_unset() {
        let (v, unset) = interpolate_compose("$A-${NOPE}-$B_2/$NOPE2.$$x $1", &vars).unwrap();
        assert_eq!(v, "alpha--b/.$x $1");
        let names: Vec<_> = unset
            .iter()
            .map(|u| (u.offset, u.variable.as_str()))
            .collect();
        assert_eq!(names, [(3, "NOPE"), (16, "NOPE2")]);
        assert_eq!(
            interpolate_compose("${NOPE:-$A}", &vars).unwrap().0,
            "alpha"
        );
        // Native files keep a bare `$` word as written.
        assert_eq!(run("$A").unwrap(), "$A");
    }

    #[test]
    fn deep_defaults_are_bounded() {
        let s = format!("{}x{}", "${N:-".repeat(50), "}".repeat(50));
        let e = run(&s).unwrap_err();
        assert!(e[0].message.contains("nested"));
    }
}
