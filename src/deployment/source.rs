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
    /// Whether errors may show the file's lines. Not for env files: an
    /// `env_file` can name any file on the host (`/etc/shadow`), and its
    /// lines hold values, so their errors give only the line and the problem.
    show_lines: bool,
}

impl Source {
    /// A deployment file: errors show the line under the message.
    pub fn new(path: PathBuf, text: String) -> Self {
        Self::with(path, text, true)
    }

    /// An env file (`.env`, `env_file`): errors never show its lines.
    pub fn env_file(path: PathBuf, text: String) -> Self {
        Self::with(path, text, false)
    }

    fn with(path: PathBuf, text: String, show_lines: bool) -> Self {
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
            show_lines,
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
    pub fn line_text(&self, line: usize) -> Option<&str> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        let s = self.text.get(start..end)?;
        Some(s.trim_end_matches(['\n', '\r']))
    }

    /// The source text of a span (empty if the span is not on char boundaries).
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    /// An error at a span.
    pub fn error(&self, span: Span, message: impl Into<String>, help: Option<String>) -> SpecError {
        let (line, column) = self.line_col(span.start);
        let (snippet, snippet_column) = match self.line_text(line).filter(|_| self.show_lines) {
            Some(text) => {
                let (t, c) = crate::echo::snippet(text, column);
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
        assert_eq!(s.line_text(2), Some("çd"));
        assert_eq!(s.line_text(3), Some(""));
        assert_eq!(s.line_text(9), None);
    }
}
