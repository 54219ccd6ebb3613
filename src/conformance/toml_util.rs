//! TOML parsing for scenario and adapter files with the same error shape as topologies:
//! `file:line:col: expected X, found Y`.

use crate::topology::{from_toml_error, Diagnostic, ErrorKind, Position};
use serde::de::DeserializeOwned;
use std::ops::Range;

/// Parses `text` into `T` (serde with `deny_unknown_fields`), located errors.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, Box<Diagnostic>> {
    if let Err(e) = toml::from_str::<serde::de::IgnoredAny>(text) {
        return Err(Box::new(from_toml_error(&e, text, origin, true)));
    }
    toml::from_str(text).map_err(|e| Box::new(from_toml_error(&e, text, origin, false)))
}

/// A semantic error at `span` of `text`.
pub fn error_at(
    text: &str,
    origin: &str,
    span: Range<usize>,
    kind: ErrorKind,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Box<Diagnostic> {
    Box::new(Diagnostic {
        origin: origin.to_string(),
        position: Some(Position::in_text(text, span.start)),
        path: None,
        kind,
        expected: expected.into(),
        found: found.into(),
    })
}

/// Renders several diagnostics, one per line.
pub fn render(diags: &[Box<Diagnostic>]) -> String {
    diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}
