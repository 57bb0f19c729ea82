//! A file's text and path, and turning byte ranges into `file:line:col`
//! errors with a snippet.

use std::path::PathBuf;

use super::SpecError;
use super::tree::{Diag, Span};

/// A file that errors can point into.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the operator wrote it (that is how errors name it).
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line_idx + 1, col + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> Option<String> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        let s = self.text.get(start..end)?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    }

    /// The source text of a span (empty if the span is not on char boundaries).
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    /// An error at a span.
    pub fn error(&self, span: Span, message: impl Into<String>, help: Option<String>) -> SpecError {
        let (line, column) = self.line_col(span.start);
        let (snippet, snippet_column) = match self.line_text(line) {
            Some(text) => {
                let (t, c) = window(&text, column);
                (Some(t), c)
            }
            None => (None, column),
        };
        SpecError {
            file: Some(self.path.clone()),
            line,
            column,
            snippet,
            snippet_column,
            message: message.into(),
            help,
        }
    }

    pub fn diag(&self, d: Diag) -> SpecError {
        self.error(d.span, d.message, d.help)
    }
}

/// Longest snippet shown; longer lines are shown around the caret.
const MAX_SNIPPET: usize = 120;

/// The part of a line to show, and the caret's column in it.
fn window(line: &str, column: usize) -> (String, usize) {
    let len = line.chars().count();
    if len <= MAX_SNIPPET {
        return (line.to_string(), column);
    }
    let start = column
        .saturating_sub(1)
        .saturating_sub(MAX_SNIPPET / 2)
        .min(len - MAX_SNIPPET);
    let mut out: String = if start > 0 {
        "...".into()
    } else {
        String::new()
    };
    let prefix = out.len();
    out.extend(line.chars().skip(start).take(MAX_SNIPPET));
    if start + MAX_SNIPPET < len {
        out.push_str("...");
    }
    (out, column - start + prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let s = Source::new("f".into(), "ab\nçd\r\n\nx".into());
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(1), (1, 2));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(5), (2, 2));
        assert_eq!(s.line_col(s.text.len()), (4, 2));
        assert_eq!(s.line_text(2).as_deref(), Some("çd"));
        assert_eq!(s.line_text(3).as_deref(), Some(""));
        assert_eq!(s.line_text(9), None);
    }

    #[test]
    fn long_lines_are_shown_around_the_caret() {
        let line = format!("{}X{}", "a".repeat(300), "b".repeat(300));
        let (w, c) = window(&line, 301);
        assert!(w.starts_with("...") && w.ends_with("..."));
        assert_eq!(w.chars().nth(c - 1), Some('X'));
        let (w, c) = window("short", 3);
        assert_eq!((w.as_str(), c), ("short", 3));
        let (w, c) = window(&line, 2);
        assert_eq!((w.chars().count(), c), (123, 2));
    }
}
