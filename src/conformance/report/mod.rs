//! Every report `bedlab run` writes into `out/<run-id>/`, all from one [`RunReport`]:
//!
//! - `report.json` ([`to_json`], [`load_report`]): the report itself, the source of truth
//!   the other formats and `bedlab report merge` are rebuilt from.
//! - `junit.xml` ([`junit_xml`]): for CI test reporters (one suite per scenario, one test
//!   case per cell; FAIL is a failure, ERROR an error, N/A and XFAIL skipped).
//! - `summary.md` ([`summary_markdown`]): for a CI job summary: totals, each scenario's
//!   matrix, the failures with their evidence.
//! - `report.html` ([`html_report`]): one self-contained page with the matrices, every
//!   cell's checks and evidence, and its exchange as an SVG sequence diagram.
//!
//! Plus [`terminal_summary`] and [`cell_line`] for CI logs, and [`merge()`] for shards.
//! Each renderer is a pure function from the report to a string; only [`write_all`] and
//! [`load_report`] touch the file system. Text from implementations and logs is escaped
//! for each format in one module (`escape`), so nothing a daemon prints can break a
//! report's structure.

mod escape;
mod html;
mod junit;
mod layout;
mod markdown;
mod merge;
mod seqdiag;
mod terminal;

#[cfg(test)]
mod tests;

pub use html::html_report;
pub use junit::junit_xml;
pub use markdown::{summary_markdown, MAX_FAILURE_DETAILS};
pub use merge::{canonical_order, merge, MergeError};
pub use seqdiag::{COLLAPSE_RUN, HEAD_ROWS, MAX_ROWS as MAX_SEQUENCE_ROWS, TAIL_ROWS};
pub use terminal::{cell_line, terminal_summary};

use crate::conformance::model::RunReport;
use std::fs;
use std::path::{Path, PathBuf};

/// File names inside the run directory.
pub const REPORT_JSON: &str = "report.json";
pub const JUNIT_XML: &str = "junit.xml";
pub const SUMMARY_MD: &str = "summary.md";
pub const REPORT_HTML: &str = "report.html";

/// Why a report could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a bedlab report: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot serialise the report: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// The report as pretty-printed JSON with a final newline (diffable, and what
/// [`load_report`] reads back).
pub fn to_json(report: &RunReport) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// Reads a `report.json` (of a run or a shard).
pub fn load_report(path: &Path) -> Result<RunReport, ReportError> {
    let text = fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes all four reports into `dir` (created if missing), cells in the canonical order
/// so that a merged sharded run writes the same files as the unsharded one. Each file is
/// written under a temporary name and renamed, so a reader (or a run killed mid-write)
/// never sees half a report. Returns the paths written, report.json first.
pub fn write_all(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sorted = report.clone();
    canonical_order(&mut sorted);
    let files = [
        (REPORT_JSON, to_json(&sorted)?),
        (JUNIT_XML, junit_xml(&sorted)),
        (SUMMARY_MD, summary_markdown(&sorted)),
        (REPORT_HTML, html_report(&sorted)),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text).map_err(|source| ReportError::Io {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
