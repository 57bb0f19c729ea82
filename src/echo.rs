//! Text from input, made safe to echo in messages. Every message berth prints
//! about bad input goes through here (spec diagnostics in
//! [`crate::deployment::SpecError`]'s `Display`, everything else in
//! [`crate::error::Error`]'s), so that a file cannot drive the operator's
//! terminal with escape sequences, reorder what they read with bidi
//! overrides, or flood them with a 1 MB value.

use std::borrow::Cow;

/// Longest text quoted between backticks in a message, in characters
/// (the ellipsis included).
pub const MAX_QUOTED: usize = 80;
/// Longest line of a message, in characters: the backstop for input quoted
/// without backticks.
pub const MAX_LINE: usize = 500;
/// Longest source line shown under a message, in characters; longer lines
/// are shown as a window around the caret.
pub const MAX_SNIPPET: usize = 120;
/// Most errors listed at once; the rest are counted.
pub const MAX_ERRORS_SHOWN: usize = 100;
/// Marks where text was cut.
pub const ELLIPSIS: &str = "...";

/// Characters that must not reach a terminal as they are: C0 and C1 controls
/// and DEL (`char::is_control`), bidi embeddings, overrides, isolates and
/// marks, line and paragraph separators, and the zero-width no-break space.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
    }
}

/// `s` with every unsafe character written as an escape (`\x1b`, `\r`,
/// `\u{202e}`), except those `keep` allows. Backslashes are left alone, so
/// escaping twice changes nothing.
fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with every control character (newlines too) and bidi control escaped.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// Output that must be shown whole (`render`, `plan`): every unsafe
/// character escaped except line breaks and tabs, nothing cut.
pub fn text(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n' || c == '\t')
}

/// `s` cut to at most `max` characters, ending in [`ELLIPSIS`] when cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let keep = max.saturating_sub(ELLIPSIS.len());
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}{ELLIPSIS}", &s[..end]))
        }
    }
}

/// One line of a message, safe to print: controls escaped, every run quoted
/// between backticks cut to [`MAX_QUOTED`], the whole cut to [`MAX_LINE`].
pub fn line(s: &str) -> String {
    let s = escape(s);
    let mut out = String::with_capacity(s.len().min(MAX_LINE * 4));
    for (i, part) in s.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backticks (an unclosed quote runs to the end).
        if i % 2 == 1 {
            out.push_str(&clip(part, MAX_QUOTED));
        } else {
            out.push_str(part);
        }
        if out.len() > MAX_LINE * 4 {
            break; // already longer than the final cut can keep
        }
    }
    clip(&out, MAX_LINE).into_owned()
}

/// A message of several lines, each made safe by [`line`]; the line breaks
/// berth put there stay.
pub fn lines(s: &str) -> String {
    s.split('\n').map(line).collect::<Vec<_>>().join("\n")
}

/// A path, as [`line`] shows text (paths come from files and arguments).
pub fn path(p: &std::path::Path) -> String {
    line(&p.display().to_string())
}

/// A source line to show under a message with a caret at 1-based character
/// `column`: controls escaped (tabs kept, so the caret line can mirror them),
/// and a window of at most [`MAX_SNIPPET`] characters around the caret for
/// long lines. Returns the text and the caret's column in it. Applying it to
/// its own output changes nothing.
pub fn snippet(text: &str, column: usize) -> (String, usize) {
    let caret = column.max(1) - 1;
    // Escaping only lengthens, so MAX_SNIPPET characters either side of the
    // caret is all the window can use: never walk the rest of a long line.
    let skip = caret.saturating_sub(MAX_SNIPPET);
    let mut chars = text.chars().skip(skip);
    let cut_before = skip > 0;
    let mut out = String::new();
    let mut caret_at = None;
    let mut width = 0usize;
    for (taken, c) in chars.by_ref().take(2 * MAX_SNIPPET + 1).enumerate() {
        if skip + taken == caret {
            caret_at = Some(width);
        }
        let before = out.len();
        if is_unsafe(c) && c != '\t' {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
        width += out[before..].chars().count();
    }
    let cut_after = chars.next().is_some();
    // The caret may sit just past the end of the line.
    let caret_at = caret_at.unwrap_or(width);
    window(&out, caret_at, cut_before, cut_after)
}

/// At most [`MAX_SNIPPET`] characters of `s` (markers included) around the
/// 0-based character `caret`; `cut_before`/`cut_after` say that `s` is
/// already part of a longer line. Returns the text and the 1-based caret column.
fn window(s: &str, caret: usize, cut_before: bool, cut_after: bool) -> (String, usize) {
    let len = s.chars().count();
    if len <= MAX_SNIPPET && !cut_before && !cut_after {
        return (s.to_string(), caret + 1);
    }
    let marker = ELLIPSIS.len();
    let room = MAX_SNIPPET - 2 * marker;
    let mut start = caret.saturating_sub(room / 2).min(len.saturating_sub(room));
    let mut end = (start + room).min(len);
    // A window at either end of the line needs one marker only.
    if start == 0 && !cut_before {
        end = (end + marker).min(len);
    } else if end == len && !cut_after {
        start = start.saturating_sub(marker);
    }
    let mut out = String::new();
    if start > 0 || cut_before {
        out.push_str(ELLIPSIS);
    }
    let prefix = out.chars().count();
    out.extend(s.chars().skip(start).take(end - start));
    if end < len || cut_after {
        out.push_str(ELLIPSIS);
    }
    (out, caret - start + prefix + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(
            escape("a\x1b[31mred\x1b[0m\r\n\t\x7f\u{85}\u{202e}b\u{2066}"),
            "a\\x1b[31mred\\x1b[0m\\r\\n\\t\\x7f\\u{0085}\\u{202e}b\\u{2066}"
        );
        assert!(matches!(escape("plain ç ✓ \\x"), Cow::Borrowed(_)));
        // Escaping is idempotent: backslashes are not doubled.
        let once = escape("\x1b]0;title\x07");
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn clip_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 80), "short");
        assert_eq!(clip(&"a".repeat(80), 80).len(), 80);
        let long = "é".repeat(1000);
        let c = clip(&long, 80);
        assert_eq!(c.chars().count(), 80);
        assert!(c.ends_with(ELLIPSIS));
    }

    #[test]
    fn quoted_values_and_lines_are_capped() {
        let huge = "x".repeat(1_000_000);
        let msg = line(&format!("invalid image `{huge}`: bad"));
        assert_eq!(
            msg,
            format!(
                "invalid image `{}{ELLIPSIS}`: bad",
                "x".repeat(MAX_QUOTED - 3)
            )
        );
        // Unquoted input is caught by the line cap.
        let msg = line(&format!("corrupt ({huge})"));
        assert_eq!(msg.chars().count(), MAX_LINE);
        assert!(msg.ends_with(ELLIPSIS));
        // An unclosed quote is cut too; short messages are unchanged.
        assert!(line(&format!("x `{huge}")).chars().count() < MAX_QUOTED + 5);
        assert_eq!(line("unknown key `imgae`"), "unknown key `imgae`");
        assert_eq!(line("`a\x1b[2Jb`"), "`a\\x1b[2Jb`");
        assert_eq!(lines("one\ntwo\x1b"), "one\ntwo\\x1b");
        // Whole output keeps its layout and length.
        let long = format!("a\tb\n{huge}\x1b\u{202e}\n");
        assert_eq!(text(&long), format!("a\tb\n{huge}\\x1b\\u{{202e}}\n"));
    }

    #[test]
    fn snippets_escape_and_keep_the_caret_on_its_character() {
        let (s, c) = snippet("a = \"\x1b[2Jb\"", 10);
        assert_eq!(s, "a = \"\\x1b[2Jb\"");
        assert_eq!(s.chars().nth(c - 1), Some('b'));
        // Tabs stay, so the caret line can mirror them.
        assert_eq!(snippet("\tx", 2), ("\tx".to_string(), 2));
        // Past the end of the line.
        assert_eq!(snippet("ab", 3), ("ab".to_string(), 3));
    }

    #[test]
    fn long_lines_are_shown_around_the_caret() {
        let line = format!("{}X{}", "a".repeat(300_000), "b".repeat(300_000));
        let (w, c) = snippet(&line, 300_001);
        assert!(w.starts_with(ELLIPSIS) && w.ends_with(ELLIPSIS), "{w}");
        assert_eq!(w.chars().count(), MAX_SNIPPET);
        assert_eq!(w.chars().nth(c - 1), Some('X'));
        // Near the start: no leading marker.
        let (w, c) = snippet(&line, 2);
        assert_eq!((w.chars().count(), c), (MAX_SNIPPET, 2));
        assert!(w.starts_with("aa") && w.ends_with(ELLIPSIS));
        // At the end.
        let (w, c) = snippet(&line, 600_001);
        assert!(w.starts_with(ELLIPSIS) && w.ends_with('b'));
        assert_eq!(w.chars().nth(c - 1), Some('b'));
        // Escapes widen a line past the window; the caret follows.
        let esc = format!("{}X", "\x1b".repeat(100));
        let (w, c) = snippet(&esc, 101);
        assert!(w.chars().count() <= MAX_SNIPPET);
        assert_eq!(w.chars().nth(c - 1), Some('X'));
        // Idempotent: what it shows, shown again, is the same.
        for (text, col) in [(&line, 300_001), (&line, 2), (&esc, 101)] {
            let (w, c) = snippet(text, col);
            assert_eq!(snippet(&w, c), (w.clone(), c));
        }
    }
}
