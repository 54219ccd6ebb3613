//! Topology errors, all in one shape: `origin:line:col: expected X, found Y`.
//!
//! TOML syntax errors and serde's schema errors (unknown key, wrong type, missing key) arrive
//! as the `toml` crate's messages with byte spans; they are rewritten here into the same
//! "expected, found" form the semantic checks use, so a user reads one kind of message, and
//! byte offsets become 1-based line and column (columns count characters, not bytes).

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

/// Origin named in errors about a model that did not come from a file.
pub(crate) const MODEL_ORIGIN: &str = "<topology>";

/// What kind of mistake a diagnostic reports, for callers (and tests) that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not TOML.
    Syntax,
    /// A key given twice.
    DuplicateKey,
    /// A key the schema does not know.
    UnknownKey,
    /// A required key left out.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type that does not parse or is out of range.
    BadValue,
    /// A name that breaks the naming rules.
    BadName,
    /// A node, segment or interface name used twice.
    DuplicateName,
    /// A reference to a segment or interface that does not exist.
    DanglingReference,
    /// An address outside its segment's subnet.
    AddressOutsideSubnet,
    /// A network, broadcast or otherwise unusable address or subnet.
    ReservedAddress,
    /// Two interfaces with one address on a segment.
    DuplicateAddress,
    /// Two segments whose subnets overlap.
    OverlappingSubnets,
    /// A gateway that is not a router interface on the segment.
    BadGateway,
    /// A host interface that needs an explicit gateway.
    MissingGateway,
    /// A route whose next hop is not reachable.
    BadRoute,
    /// An inconsistent NAT description.
    BadNat,
    /// An impossible impairment.
    BadImpairment,
    /// An MTU out of range.
    BadMtu,
    /// A node without the interfaces it needs.
    BadNode,
}

/// A place in a text: 1-based line and column (in characters), and the byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// Byte offset into the text.
    pub offset: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text; a position inside a
    /// multi-byte character counts as that character).
    pub fn in_text(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
            offset,
        }
    }
}

/// One error: where, what kind, what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or `<topology>` for a model built in Rust).
    pub origin: String,
    /// Where in the file; `None` for a model built in Rust.
    pub position: Option<Position>,
    /// The model path of the offending value (`host[1].interface[0].address`), for semantic
    /// errors.
    pub path: Option<String>,
    /// What kind of mistake.
    pub kind: ErrorKind,
    /// What a valid input has there (without the word "expected").
    pub expected: String,
    /// What the input has instead.
    pub found: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.position, &self.path) {
            (Some(p), _) => write!(f, "{}:{}:{}: ", self.origin, p.line, p.col)?,
            (None, Some(path)) => write!(f, "{}: {}: ", self.origin, path)?,
            (None, None) => write!(f, "{}: ", self.origin)?,
        }
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

/// Why a topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("{}: expected a readable topology file, found {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// Not TOML (the parser stops at the first such error).
    #[error("{0}")]
    Syntax(Box<Diagnostic>),
    /// TOML that does not fit the schema: unknown key, wrong type, missing key, a value that
    /// does not parse (the parser stops at the first such error).
    #[error("{0}")]
    Schema(Box<Diagnostic>),
    /// Every semantic error, sorted by position, one per line.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl TopologyError {
    /// The diagnostics (none for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            TopologyError::Read { .. } => &[],
            TopologyError::Syntax(d) | TopologyError::Schema(d) => std::slice::from_ref(&**d),
            TopologyError::Invalid(all) => all,
        }
    }
}

/// A semantic error before it is located: the checks work on the model, which has no spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: String,
    pub kind: ErrorKind,
    pub expected: String,
    pub found: String,
    /// The path of an earlier value this one clashes with (the first of two duplicates),
    /// rendered after `found` as "(first at ...)".
    pub related: Option<String>,
}

impl Issue {
    /// The diagnostic for a model without a file: located by path.
    pub(crate) fn unlocated(self, origin: &str) -> Diagnostic {
        let found = match &self.related {
            Some(related) => format!("{} (first at {related})", self.found),
            None => self.found,
        };
        Diagnostic {
            origin: origin.to_string(),
            position: None,
            path: Some(self.path),
            kind: self.kind,
            expected: self.expected,
            found,
        }
    }

    /// The diagnostic for a file: located at `span`, an earlier clashing value at
    /// `related_span`.
    pub(crate) fn located(
        self,
        origin: &str,
        text: &str,
        span: Option<Range<usize>>,
        related_span: Option<Range<usize>>,
    ) -> Diagnostic {
        let found = match related_span {
            Some(r) => {
                let at = Position::in_text(text, r.start);
                format!("{} (first at {}:{})", self.found, at.line, at.col)
            }
            None => self.found,
        };
        Diagnostic {
            origin: origin.to_string(),
            position: Some(Position::in_text(text, span.map_or(0, |s| s.start))),
            path: Some(self.path),
            kind: self.kind,
            expected: self.expected,
            found,
        }
    }
}

/// Rewrites an error of the `toml` crate into a diagnostic. `syntax` says the error came
/// from the syntax-only pass (the text is not TOML) rather than from the schema.
pub(crate) fn from_toml_error(error: &toml::de::Error, text: &str, origin: &str, syntax: bool) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    let message = error.message();
    let (kind, expected, found) = if syntax {
        syntax_message(message, text, span.clone())
    } else {
        schema_message(message, text, span.clone())
    };
    Diagnostic {
        origin: origin.to_string(),
        position: Some(Position::in_text(text, span.start)),
        path: None,
        kind,
        expected,
        found,
    }
}

/// The text between the first pair of backticks after `prefix`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, &'m str)> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Every backticked name in `text`, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// serde's and the value parsers' messages, as (kind, expected, found); messages that name
/// nothing found are completed from the text at the error's span.
fn schema_message(message: &str, text: &str, span: Range<usize>) -> (ErrorKind, String, String) {
    if message == "wanted string or table" {
        // The `toml` crate's own message for an enum given something else than a name.
        return (ErrorKind::WrongType, "a string".to_string(), found_at(text, span));
    }
    if let Some((field, rest)) = quoted_after(message, "unknown field `") {
        let known = backticked(rest);
        let expected = match known.as_slice() {
            [] => "no keys in this table".to_string(),
            [one] => format!("the only known key `{one}`"),
            many => format!("one of the known keys {}", list(many)),
        };
        return (ErrorKind::UnknownKey, expected, with_suggestion(field, &known));
    }
    if let Some((variant, rest)) = quoted_after(message, "unknown variant `") {
        let known = backticked(rest);
        return (
            ErrorKind::BadValue,
            format!("one of {}", list(&known)),
            with_suggestion(variant, &known),
        );
    }
    if let Some((field, _)) = quoted_after(message, "missing field `") {
        return (
            ErrorKind::MissingKey,
            format!("the key `{field}`"),
            "a table without it".to_string(),
        );
    }
    if let Some((field, _)) = quoted_after(message, "duplicate field `") {
        return (
            ErrorKind::DuplicateKey,
            format!("`{field}` at most once"),
            format!("`{field}` again"),
        );
    }
    for (prefix, kind) in [
        ("invalid type: ", ErrorKind::WrongType),
        ("invalid value: ", ErrorKind::BadValue),
    ] {
        if let Some((unexpected, expected)) = message
            .strip_prefix(prefix)
            .and_then(|m| m.rsplit_once(", expected "))
        {
            return (kind, humanize_expected(expected), humanize_found(unexpected));
        }
    }
    if let Some((length, expected)) = message
        .strip_prefix("invalid length ")
        .and_then(|m| m.split_once(", expected "))
    {
        return (
            ErrorKind::BadValue,
            humanize_expected(expected),
            format!("{length} elements"),
        );
    }
    if let Some((expected, found)) = message
        .strip_prefix("expected ")
        .and_then(|m| m.split_once(", found "))
    {
        return (ErrorKind::BadValue, expected.to_string(), found.to_string());
    }
    (
        ErrorKind::BadValue,
        "a valid value".to_string(),
        message.replace('\n', "; "),
    )
}

/// TOML parser messages (`"invalid table header\nexpected `.`, `]]`"`), as (kind, expected,
/// found); what was found is read from the text at the error's span.
fn syntax_message(message: &str, text: &str, span: Range<usize>) -> (ErrorKind, String, String) {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some((key, _)) = lines.iter().find_map(|l| quoted_after(l, "duplicate key `")) {
        return (
            ErrorKind::DuplicateKey,
            format!("`{key}` at most once in its table"),
            format!("`{key}` again"),
        );
    }
    let found = found_at(text, span);
    if lines.iter().any(|l| l.starts_with("number too large")) {
        return (
            ErrorKind::BadValue,
            "an integer in the signed 64-bit range of TOML".to_string(),
            found,
        );
    }
    let expected_line = lines.iter().find_map(|l| l.strip_prefix("expected "));
    let context: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("expected "))
        .collect();
    let expected = match (expected_line, context.is_empty()) {
        (Some(e), true) => e.to_string(),
        (Some(e), false) => format!("{e} ({})", context.join("; ")),
        (None, false) => format!("valid TOML ({})", context.join("; ")),
        (None, true) => "valid TOML".to_string(),
    };
    (ErrorKind::Syntax, expected, found)
}

/// A short description of the text at `span`: the token there, "end of line" or "end of
/// file".
fn found_at(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    if !text.is_char_boundary(start) {
        return "a character that is not valid here".to_string();
    }
    let rest = &text[start..];
    let mut chars = rest.chars();
    match chars.next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(c) if c.is_alphanumeric() || c == '_' || c == '-' || c == '+' => {
            // A whole word or number reads better than its first character.
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.' | ':'))
                .take(40)
                .collect();
            format!("`{word}`")
        }
        Some(c) if c.is_control() => format!("the control character {:?}", c),
        Some(c) => format!("`{c}`"),
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `` `dealy` `` plus "(did you mean `delay`?)" when a known name is within two edits.
pub(crate) fn with_suggestion(found: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(found, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!("`{found}` (did you mean `{k}`?)"),
        None => format!("`{found}`"),
    }
}

/// Levenshtein distance (with adjacent transpositions costing 1, so `dealy` is one edit from
/// `delay`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// serde's names for what it wanted, in the words of a TOML user.
fn humanize_expected(expected: &str) -> String {
    match expected {
        "a sequence" => "an array (`[[...]]` tables or `[...]`)".to_string(),
        "a map" => "a table".to_string(),
        "u8" => "an integer in 0..=255".to_string(),
        "u16" => "an integer in 0..=65535".to_string(),
        "u32" => "an integer in 0..=4294967295".to_string(),
        "u64" => "an integer in 0..=18446744073709551615".to_string(),
        "i64" => "an integer".to_string(),
        "f64" | "f32" => "a number".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    }
}

/// serde's names for what it found, in the words of a TOML user.
fn humanize_found(found: &str) -> String {
    match found {
        "map" => "a table".to_string(),
        "sequence" => "an array".to_string(),
        f => f.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "ab\nçd\n\nx";
        assert_eq!(
            Position::in_text(text, 0),
            Position {
                line: 1,
                col: 1,
                offset: 0
            }
        );
        assert_eq!(
            Position::in_text(text, 3),
            Position {
                line: 2,
                col: 1,
                offset: 3
            }
        );
        // 'ç' is two bytes; 'd' is the second character.
        assert_eq!(
            Position::in_text(text, 5),
            Position {
                line: 2,
                col: 2,
                offset: 5
            }
        );
        assert_eq!(Position::in_text(text, 4).col, 1);
        assert_eq!(
            Position::in_text(text, 8),
            Position {
                line: 4,
                col: 1,
                offset: 8
            }
        );
        assert_eq!(Position::in_text(text, 999).line, 4);
    }

    #[test]
    fn serde_messages_become_expected_found() {
        assert_eq!(
            schema_message("unknown field `dealy`, expected `delay` or `loss`", "", 0..0),
            (
                ErrorKind::UnknownKey,
                "one of the known keys `delay`, `loss`".to_string(),
                "`dealy` (did you mean `delay`?)".to_string()
            )
        );
        assert_eq!(
            schema_message("invalid type: integer `5`, expected a string", "", 0..0),
            (
                ErrorKind::WrongType,
                "a string".to_string(),
                "integer `5`".to_string()
            )
        );
        assert_eq!(
            schema_message("invalid type: map, expected a sequence", "", 0..0),
            (
                ErrorKind::WrongType,
                "an array (`[[...]]` tables or `[...]`)".to_string(),
                "a table".to_string()
            )
        );
        assert_eq!(
            schema_message("missing field `name`", "", 0..0).0,
            ErrorKind::MissingKey
        );
        assert_eq!(schema_message("something else", "x", 0..1).0, ErrorKind::BadValue);
        assert_eq!(edit_distance("dealy", "delay"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
