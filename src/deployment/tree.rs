//! One spanned value tree that every input format is parsed into, so that
//! decoding, interpolation and validation are written once and every error
//! can point at a byte range of the original file.

/// Byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }
}

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A key of a mapping with its own location.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// A value that has no place in a deployment file (a TOML datetime, a YAML
    /// integer too large for 64 bits, ...), described for the error message.
    Other(&'static str),
    /// A string whose interpolation failed; already reported, so the
    /// decoder skips it instead of piling follow-on errors on it.
    Invalid,
}

impl Value {
    /// What the value is, as the error messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a table",
            Value::Other(k) => k,
            Value::Invalid => "an invalid value",
        }
    }
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// Most nested lists/tables any parser accepts; a deployment file needs 4.
pub const MAX_DEPTH: usize = 64;
/// Most values (scalars and collections) any parser builds, including the
/// copies YAML aliases make.
pub const MAX_NODES: usize = 200_000;

/// A problem found while reading, located by byte range; turned into a
/// [`super::SpecError`] with line, column and snippet by [`super::source::Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl Diag {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diag {
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}
