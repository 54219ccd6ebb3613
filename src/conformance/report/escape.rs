//! Escaping for every report format, in one place so each writer stays declarative.
//!
//! Report text comes from implementations under test and their logs: it can hold `<`, `&`,
//! quotes, newlines, terminal escape sequences and NUL bytes. None of that may change the
//! structure of a report (an unescaped `<` in a JUnit message makes CI reject the whole
//! file), so every piece of text goes through one of these functions on its way out.

use std::fmt::Write as _;

/// Characters no report keeps: control characters other than tab, LF and CR (XML 1.0
/// forbids C0 controls and discourages C1; in a terminal they are escape sequences) and the
/// noncharacters U+FFFE and U+FFFF, which XML forbids too.
fn dropped(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Text for XML element content: `&`, `<` and `>` escaped (`>` too, so that `]]>` can
/// never appear), forbidden characters removed.
pub(crate) fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| !dropped(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text for an XML attribute value in double quotes. Tab, LF and CR become character
/// references because a parser normalises literal ones in attributes to spaces.
pub(crate) fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| !dropped(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text for HTML (and inline SVG) content or a quoted attribute value.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| !dropped(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path: every byte other than unreserved characters and `/` is
/// percent-encoded. Encoding `:` means no artifact name can turn into a `javascript:` or
/// other scheme link; encoding `#`, `?` and `%` keeps odd file names pointing at the file.
pub(crate) fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One line of text for Markdown inline context (a table cell, a list item, a heading):
/// line breaks become spaces and the characters that Markdown (and GitHub's flavour:
/// tables, `$` maths, `@` mentions, `#123` links, `:emoji:` codes) would interpret are
/// backslash-escaped. Block markers (`+`, `-`, `1.`) are left alone: this text never
/// starts a line.
pub(crate) fn md_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '<'
                | '>'
                | '#'
                | '!'
                | '|'
                | '~'
                | '&'
                | '$'
                | '@'
                | ':'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An inline code span holding `s` verbatim: the fence is one backtick longer than the
/// longest run inside, padded with spaces when the content touches a backtick or a space
/// at both ends (CommonMark strips exactly one such space). Not for table cells (`|`).
pub(crate) fn md_code(s: &str) -> String {
    let s = one_line(s);
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    let pad = s.starts_with('`') || s.ends_with('`') || (s.starts_with(' ') && s.ends_with(' '));
    let pad = if pad { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A fenced code block holding `s` verbatim, with a fence longer than any backtick run in
/// it so that log text cannot close the block early.
pub(crate) fn md_fence(s: &str) -> String {
    let body: String = s
        .replace("\r\n", "\n")
        .chars()
        .filter(|&c| !dropped(c) && c != '\r')
        .collect();
    let fence = "`".repeat((longest_run(&body, '`') + 1).max(3));
    let body = body.trim_end_matches('\n');
    format!("{fence}text\n{body}\n{fence}\n")
}

/// `s` on one line for plain-text output (terminal, JUnit tables): controls removed (a log
/// line with ESC sequences must not recolour a CI log) and whitespace runs collapsed.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars().filter(|&c| !dropped(c)) {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Multi-line plain text with controls removed and line endings normalised.
pub(crate) fn plain_block(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|&c| !dropped(c) && c != '\r')
        .collect()
}

/// The length of the longest run of `c` in `s`.
fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for x in s.chars() {
        if x == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// `s` shortened to at most `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_controls() {
        assert_eq!(
            xml_text("a<b>&c]]>\u{0}\u{1b}[31m\u{7f}\u{85}\u{FFFF}é\n"),
            "a&lt;b&gt;&amp;c]]&gt;[31mé\n"
        );
        assert_eq!(xml_attr("\"x'\n\ty\r"), "&quot;x&apos;&#10;&#9;y&#13;");
    }

    #[test]
    fn html_escapes_quotes_both_kinds() {
        assert_eq!(
            html("<a href='x' title=\"y\">&</a>"),
            "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn url_paths_cannot_become_schemes_or_fragments() {
        assert_eq!(url_path("cells/a b#1/x?.pcapng"), "cells/a%20b%231/x%3F.pcapng");
        assert_eq!(url_path("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(url_path("ü"), "%C3%BC");
    }

    #[test]
    fn markdown_inline_and_code() {
        assert_eq!(
            md_inline("a|b *c*\n<d> :x: $1 @me"),
            "a\\|b \\*c\\* \\<d\\> \\:x\\: \\$1 \\@me"
        );
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x`"), "`` `x` ``");
        assert_eq!(md_fence("```\nx\n"), "````text\n```\nx\n````\n");
    }

    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(one_line("  a\n\n b\t\u{1b}c  "), "a b c");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
