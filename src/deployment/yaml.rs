//! YAML into the spanned value tree, built from the event stream of
//! `granit-parser` (the parser `serde-saphyr` is built on), so that every
//! value keeps its location. Scalars are resolved with the YAML 1.2 core
//! schema (`yes`/`on` are strings, not booleans). Anchors and aliases work,
//! and so do `<<` merge keys; aliases count against the node budget so an
//! "alias bomb" cannot allocate without bound.

use std::collections::{HashMap, HashSet};

use granit_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use super::tree::{Diag, Entry, MAX_DEPTH, MAX_NODES, Node, Span, Value};

pub fn parse(text: &str) -> (Option<Node>, Vec<Diag>) {
    let mut b = Builder {
        text,
        char_starts: None,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        diags: Vec::new(),
        documents: 0,
    };
    match b.run() {
        Ok(()) => {}
        Err(d) => {
            b.diags.push(d);
            return (None, b.diags);
        }
    }
    let root = b.root.take();
    let root = match root {
        Some(r) => Some(r),
        // An empty file is an empty mapping; the decoder then says what is missing.
        None => Some(Node::new(Value::Map(vec![]), Span::default())),
    };
    (root, b.diags)
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<Entry>,
        /// A key waiting for its value.
        key: Option<Node>,
        /// Entries that came from `<<` merge keys; explicit keys win over them.
        merged: Vec<Entry>,
        /// Key -> where it was first written, to find duplicates in linear time.
        index: HashMap<String, usize>,
    },
}

struct Builder<'a> {
    text: &'a str,
    char_starts: Option<Vec<usize>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    diags: Vec<Diag>,
    documents: usize,
}

impl Builder<'_> {
    fn offset(&mut self, m: &granit_parser::Marker) -> usize {
        if let Some(b) = m.byte_offset() {
            return b.min(self.text.len());
        }
        let starts = self
            .char_starts
            .get_or_insert_with(|| self.text.char_indices().map(|(i, _)| i).collect());
        starts.get(m.index()).copied().unwrap_or(self.text.len())
    }

    fn span(&mut self, s: &YSpan) -> Span {
        let a = self.offset(&s.start);
        let b = self.offset(&s.end);
        Span::new(a, b)
    }

    fn count(&mut self, n: usize, at: Span) -> Result<(), Diag> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(
                Diag::new(at, format!("more than {MAX_NODES} values in one file"))
                    .help("a deployment file is far smaller; aliases count once for every place they are used"),
            );
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), Diag> {
        let mut parser = Parser::new_from_str(self.text);
        loop {
            let (event, yspan) = match parser.next_event() {
                None => return Ok(()),
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    let at = self.offset(e.marker());
                    let msg = e.info();
                    let msg = if msg.is_empty() {
                        "invalid YAML".to_string()
                    } else {
                        format!("invalid YAML: {msg}")
                    };
                    return Err(Diag::new(Span::new(at, at + 1), msg)
                        .help("check the indentation and quoting around this place"));
                }
            };
            let span = self.span(&yspan);
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
                Event::DocumentStart(..) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(Diag::new(span, "more than one YAML document in the file")
                            .help("a deployment file is one document; remove the extra `---`"));
                    }
                }
                Event::Alias(id) => match self.anchors.get(&id).cloned() {
                    Some(mut node) => {
                        self.count(size(&node), span)?;
                        node.span = span;
                        self.push(node)?;
                    }
                    None => {
                        return Err(Diag::new(span, "alias to an unknown anchor")
                            .help("define the anchor (&name) before the alias (*name)"));
                    }
                },
                Event::Scalar(v, style, anchor, tag) => {
                    self.count(1, span)?;
                    let forced_str = tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                    let value = resolve(&v, style, forced_str);
                    let node = Node::new(value, span);
                    if anchor != 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push(node)?;
                }
                Event::SequenceStart(_, anchor, _) => {
                    self.open(span)?;
                    self.stack.push(Frame::Seq {
                        start: span.start,
                        anchor,
                        items: Vec::new(),
                    });
                }
                Event::MappingStart(_, anchor, _) => {
                    self.open(span)?;
                    self.stack.push(Frame::Map {
                        start: span.start,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        merged: Vec::new(),
                        index: HashMap::new(),
                    });
                }
                Event::SequenceEnd => {
                    if let Some(Frame::Seq {
                        start,
                        anchor,
                        items,
                    }) = self.stack.pop()
                    {
                        let node = Node::new(Value::Seq(items), Span::new(start, span.end));
                        if anchor != 0 {
                            self.anchors.insert(anchor, node.clone());
                        }
                        self.push(node)?;
                    }
                }
                Event::MappingEnd => {
                    if let Some(Frame::Map {
                        start,
                        anchor,
                        mut entries,
                        merged,
                        index,
                        ..
                    }) = self.stack.pop()
                    {
                        for m in merged {
                            if !index.contains_key(&m.key) {
                                entries.push(m);
                            }
                        }
                        let node = Node::new(Value::Map(entries), Span::new(start, span.end));
                        if anchor != 0 {
                            self.anchors.insert(anchor, node.clone());
                        }
                        self.push(node)?;
                    }
                }
                // Comments, anchor metadata and anything newer carry no data.
                _ => {}
            }
        }
    }

    fn open(&mut self, span: Span) -> Result<(), Diag> {
        self.count(1, span)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(
                Diag::new(span, format!("nested more than {MAX_DEPTH} levels deep"))
                    .help("a deployment file needs only a few levels of nesting"),
            );
        }
        Ok(())
    }

    /// A finished value: becomes the root, a list item, a key, or a key's value.
    fn push(&mut self, node: Node) -> Result<(), Diag> {
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match top {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map {
                entries,
                key,
                merged,
                index,
                ..
            } => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let key_name = match &k.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        other => {
                            self.diags.push(
                                Diag::new(
                                    k.span,
                                    format!("a key must be a plain name, not {}", other.kind()),
                                )
                                .help("write keys as plain strings"),
                            );
                            return Ok(());
                        }
                    };
                    if key_name == "<<" && matches!(k.value, Value::Str(_)) {
                        merge_into(merged, node, &mut self.diags);
                        return Ok(());
                    }
                    if let Some(&first) = index.get(&key_name) {
                        if self.diags.len() >= super::json::MAX_DUPLICATE_REPORTS {
                            return Ok(());
                        }
                        let (l, c) = super::json::line_col_of(self.text, first);
                        self.diags.push(
                            Diag::new(k.span, format!("duplicate key `{key_name}`")).help(format!(
                                "`{key_name}` is already set at line {l}, column {c}; keep one of them"
                            )),
                        );
                    } else {
                        index.insert(key_name.clone(), k.span.start);
                        entries.push(Entry {
                            key: key_name,
                            key_span: k.span,
                            value: node,
                        });
                    }
                }
            },
        }
        Ok(())
    }
}

/// `<<: *base` or `<<: [*a, *b]`: earlier maps win over later ones.
fn merge_into(merged: &mut Vec<Entry>, node: Node, diags: &mut Vec<Diag>) {
    let maps = match node.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => {
            let mut maps = Vec::new();
            for item in items {
                match item.value {
                    Value::Map(m) => maps.push(m),
                    other => diags.push(
                        Diag::new(
                            item.span,
                            format!("`<<` merges mappings, not {}", other.kind()),
                        )
                        .help("write `<<: *anchor` where the anchor names a mapping"),
                    ),
                }
            }
            maps
        }
        other => {
            diags.push(
                Diag::new(
                    node.span,
                    format!("`<<` merges mappings, not {}", other.kind()),
                )
                .help("write `<<: *anchor` where the anchor names a mapping"),
            );
            return;
        }
    };
    let mut seen: HashSet<String> = merged.iter().map(|e| e.key.clone()).collect();
    for m in maps {
        for e in m {
            if seen.insert(e.key.clone()) {
                merged.push(e);
            }
        }
    }
}

fn size(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(m) => 1 + m.iter().map(|e| size(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a scalar.
fn resolve(v: &str, style: ScalarStyle, forced_str: bool) -> Value {
    if style != ScalarStyle::Plain || forced_str {
        return Value::Str(v.to_string());
    }
    let s = v;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return i64::from_str_radix(hex, 16)
            .map(Value::Int)
            .unwrap_or(Value::Other("an integer too large for 64 bits"));
    }
    if let Some(oct) = s.strip_prefix("0o")
        && !oct.is_empty()
        && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return i64::from_str_radix(oct, 8)
            .map(Value::Int)
            .unwrap_or(Value::Other("an integer too large for 64 bits"));
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or(Value::Other("an integer too large for 64 bits"));
    }
    if is_float(digits)
        && let Ok(f) = s.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(s.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_float(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mant.is_empty() && mant.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
        }
    };
    mant_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Node {
        let (n, d) = parse(s);
        assert!(d.is_empty(), "{d:?}");
        n.unwrap()
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let n = ok("a: 1\nb: yes\nc: true\nd: '1'\ne: 1.5\nf: ~\ng: 80:80\nh: 0x10\n");
        let m = n.as_map().unwrap();
        let vals: Vec<&Value> = m.iter().map(|e| &e.value.value).collect();
        assert_eq!(vals[0], &Value::Int(1));
        assert_eq!(vals[1], &Value::Str("yes".into()));
        assert_eq!(vals[2], &Value::Bool(true));
        assert_eq!(vals[3], &Value::Str("1".into()));
        assert_eq!(vals[4], &Value::Float(1.5));
        assert_eq!(vals[5], &Value::Null);
        assert_eq!(vals[6], &Value::Str("80:80".into()));
        assert_eq!(vals[7], &Value::Int(16));
    }

    #[test]
    fn spans_point_at_values() {
        let text = "services:\n  web:\n    image: nginx\n";
        let n = ok(text);
        let svcs = n.as_map().unwrap()[0].value.as_map().unwrap();
        let web = svcs[0].value.as_map().unwrap();
        assert_eq!(&text[web[0].key_span.start..web[0].key_span.end], "image");
        assert_eq!(
            &text[web[0].value.span.start..web[0].value.span.end],
            "nginx"
        );
    }

    #[test]
    fn duplicate_keys_and_merges() {
        let (_, d) = parse("a: 1\na: 2\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "duplicate key `a`");
        let n = ok("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n");
        let c = n.as_map().unwrap()[1].value.as_map().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.iter().find(|e| e.key == "y").unwrap().value.value,
            Value::Int(3)
        );
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let (n, d) = parse(&s);
        assert!(n.is_none());
        assert!(d[0].message.contains("values in one file"));
    }

    #[test]
    fn syntax_error_has_location() {
        let (n, d) = parse("a: [1, 2\nb: 3\n");
        assert!(n.is_none());
        assert!(d[0].message.starts_with("invalid YAML"));
    }
}
