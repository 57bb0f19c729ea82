//! A small JSON parser that keeps the byte range of every value and key,
//! reports duplicate keys, and bounds nesting depth and size.

use std::collections::HashMap;

use super::tree::{Diag, Entry, MAX_DEPTH, MAX_NODES, Node, Span, Value};

/// Most duplicate-key errors reported from one file.
pub const MAX_DUPLICATE_REPORTS: usize = 100;

/// Parse a JSON document. Syntax errors stop the parse (the first one is
/// returned); duplicate keys are reported and parsing goes on.
pub fn parse(text: &str) -> (Option<Node>, Vec<Diag>) {
    let mut p = Parser {
        src: text.as_bytes(),
        text,
        pos: 0,
        nodes: 0,
        diags: Vec::new(),
    };
    // A UTF-8 byte-order mark is tolerated.
    if text.starts_with('\u{feff}') {
        p.pos = 3;
    }
    let result = p.document();
    let mut diags = p.diags;
    match result {
        Ok(node) => (Some(node), diags),
        Err(d) => {
            diags.push(d);
            (None, diags)
        }
    }
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    nodes: usize,
    diags: Vec<Diag>,
}

type R<T> = Result<T, Diag>;

impl Parser<'_> {
    fn document(&mut self) -> R<Node> {
        self.ws();
        let node = self.value(0)?;
        self.ws();
        if self.pos < self.src.len() {
            return Err(self
                .err_here("unexpected text after the end of the JSON document")
                .help("a JSON deployment file holds exactly one object"));
        }
        Ok(node)
    }

    fn err_here(&self, msg: &str) -> Diag {
        Diag::new(Span::new(self.pos, self.pos + 1), msg)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn describe_here(&self) -> String {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "the end of the file".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn value(&mut self, depth: usize) -> R<Node> {
        if depth > MAX_DEPTH {
            return Err(self
                .err_here(&format!("nested more than {MAX_DEPTH} levels deep"))
                .help("a deployment file needs only a few levels of nesting"));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err_here(&format!("more than {MAX_NODES} values in one file")));
        }
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let s = self.string()?;
                Ok(Node::new(Value::Str(s), Span::new(start, self.pos)))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self
                .err_here(&format!("expected a JSON value, found {}", self.describe_here()))
                .help("values are strings in double quotes, numbers, true, false, null, lists [...] or objects {...}")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> R<Node> {
        let start = self.pos;
        if self.src[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(Node::new(v, Span::new(start, self.pos)))
        } else {
            Err(self
                .err_here(&format!(
                    "expected a JSON value, found {}",
                    self.describe_here()
                ))
                .help("strings need double quotes; the literals are true, false and null"))
        }
    }

    fn number(&mut self) -> R<Node> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == int_start {
            return Err(self
                .err_here("expected a digit")
                .help("write a number such as 42"));
        }
        if self.src[int_start] == b'0' && self.pos - int_start > 1 {
            return Err(Diag::new(
                Span::new(start, self.pos),
                "numbers cannot have leading zeros",
            )
            .help("write the number without leading zeros"));
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            let frac = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == frac {
                return Err(self.err_here("expected a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let exp = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == exp {
                return Err(self.err_here("expected a digit in the exponent"));
            }
        }
        let span = Span::new(start, self.pos);
        let text = self.text.get(start..self.pos).unwrap_or("");
        let value = if is_float {
            match text.parse::<f64>() {
                Ok(f) => Value::Float(f),
                Err(_) => Value::Other("a malformed number"),
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Other("an integer too large for 64 bits"),
            }
        };
        Ok(Node::new(value, span))
    }

    fn hex4(&mut self) -> R<u32> {
        let digits = self
            .src
            .get(self.pos..self.pos + 4)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| u32::from_str_radix(s, 16).ok());
        match digits {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self
                .err_here("expected four hexadecimal digits after \\u")
                .help("write \\u followed by exactly four hex digits, e.g. \\u00e9")),
        }
    }

    fn string(&mut self) -> R<String> {
        let open = self.pos;
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Runs between quotes/escapes/control bytes end on ASCII bytes, so
            // they are on char boundaries of the (valid UTF-8) text.
            out.push_str(self.text.get(run_start..self.pos).unwrap_or(""));
            match self.peek() {
                None => {
                    return Err(Diag::new(Span::new(open, open + 1), "unterminated string")
                        .help("close the string with a double quote"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = self.peek();
                    self.pos += 1;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let c =
                                if (0xD800..0xDC00).contains(&hi) {
                                    if self.src.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                        return Err(self
                                            .err_here("unpaired UTF-16 surrogate in \\u escape"));
                                    }
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self
                                            .err_here("unpaired UTF-16 surrogate in \\u escape"));
                                    }
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    char::from_u32(hi)
                                };
                            match c {
                                Some(c) => out.push(c),
                                None => {
                                    return Err(
                                        self.err_here("unpaired UTF-16 surrogate in \\u escape")
                                    );
                                }
                            }
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err_here("invalid escape in string").help(
                                "JSON escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX",
                            ));
                        }
                    }
                }
                Some(_) => {
                    return Err(self
                        .err_here("control character in string")
                        .help("write line breaks and tabs as \\n and \\t"));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> R<Node> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::new(Value::Seq(items), Span::new(start, self.pos)));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        return Err(self
                            .err_here("trailing comma in list")
                            .help("remove the comma before `]`"));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::new(Value::Seq(items), Span::new(start, self.pos)));
                }
                _ => {
                    return Err(self
                        .err_here(&format!(
                            "expected `,` or `]`, found {}",
                            self.describe_here()
                        ))
                        .help("separate list items with commas and close the list with `]`"));
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> R<Node> {
        let start = self.pos;
        self.pos += 1;
        let mut entries: Vec<Entry> = Vec::new();
        // Key -> where it was first written, to find duplicates in linear time.
        let mut index: HashMap<String, usize> = HashMap::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::new(Value::Map(entries), Span::new(start, self.pos)));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self
                    .err_here(&format!(
                        "expected a key in double quotes, found {}",
                        self.describe_here()
                    ))
                    .help("JSON keys are strings in double quotes, e.g. \"image\": \"nginx\""));
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = Span::new(key_start, self.pos);
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self
                    .err_here(&format!(
                        "expected `:` after the key, found {}",
                        self.describe_here()
                    ))
                    .help("write \"key\": value"));
            }
            self.pos += 1;
            self.ws();
            let value = self.value(depth + 1)?;
            if let Some(&first) = index.get(&key) {
                // Past a hundred, more of the same says nothing new.
                if self.diags.len() < MAX_DUPLICATE_REPORTS {
                    let (l, c) = line_col_of(self.text, first);
                    self.diags
                        .push(
                            Diag::new(key_span, format!("duplicate key `{key}`")).help(format!(
                                "`{key}` is already set at line {l}, column {c}; keep one of them"
                            )),
                        );
                } else if self.diags.len() == MAX_DUPLICATE_REPORTS {
                    self.diags
                        .push(Diag::new(key_span, "more duplicate keys (not listed)"));
                }
            } else {
                index.insert(key.clone(), key_span.start);
                entries.push(Entry {
                    key,
                    key_span,
                    value,
                });
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        return Err(self
                            .err_here("trailing comma in object")
                            .help("remove the comma before `}`"));
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::new(Value::Map(entries), Span::new(start, self.pos)));
                }
                _ => {
                    return Err(self
                        .err_here(&format!(
                            "expected `,` or `}}`, found {}",
                            self.describe_here()
                        ))
                        .help("separate entries with commas and close the object with `}`"));
                }
            }
        }
    }
}

/// 1-based line and column of a byte offset (for messages that mention a
/// second place in the file).
pub fn line_col_of(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
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
    fn values_and_spans() {
        let n = ok(r#" {"a": [1, -2.5, "x\u00e9\ud83d\ude00", true, null], "b": {}} "#);
        let m = n.as_map().unwrap();
        assert_eq!(m[0].key, "a");
        assert_eq!(m[0].key_span, Span::new(2, 5));
        let Value::Seq(items) = &m[0].value.value else {
            panic!()
        };
        assert_eq!(items[0].value, Value::Int(1));
        assert_eq!(items[1].value, Value::Float(-2.5));
        assert_eq!(items[2].value, Value::Str("xé😀".into()));
        assert_eq!(items[3].value, Value::Bool(true));
        assert_eq!(items[4].value, Value::Null);
        assert_eq!(items[0].span, Span::new(8, 9));
    }

    #[test]
    fn duplicate_keys_reported() {
        let (n, d) = parse(r#"{"a": 1, "a": 2}"#);
        assert!(n.is_some());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "duplicate key `a`");
        assert_eq!(d[0].span.start, 9);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "[1,]",
            "[1 2]",
            "\"abc",
            "01",
            "{} x",
            "nul",
            "\"\\x\"",
            "\"\\ud800\"",
            "-",
            "1.",
            "1e",
        ] {
            let (n, d) = parse(bad);
            assert!(n.is_none(), "{bad:?}");
            assert_eq!(d.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(100_000);
        let (n, d) = parse(&deep);
        assert!(n.is_none());
        assert!(d[0].message.contains("nested"));
    }
}
