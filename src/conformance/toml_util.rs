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

/// Every `*.toml` file in `dir`, sorted by name, parsed with `load`; all errors, not just
/// the first.
pub fn load_dir<T>(
    dir: &std::path::Path,
    mut load: impl FnMut(&std::path::Path) -> Result<T, Box<Diagnostic>>,
) -> Result<Vec<T>, Vec<Box<Diagnostic>>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load(&f) {
            Ok(v) => ok.push(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}
