//! Plain text for CI logs: one line per cell and a totals line, plus the checks table that
//! JUnit's `system-out` carries. Everything is one line per item with control characters
//! removed, so that log text from an implementation cannot recolour or rewrite a CI log.

use super::escape::{one_line, truncate};
use super::layout::{checks_with, duration, overall, run_wall_ms, totals_text};
use crate::conformance::model::{CellResult, Evidence, Outcome, RunReport, Verdict};

/// How much of a failure message or error a cell's line carries; the rest is in the
/// reports.
const DETAIL_CHARS: usize = 120;

/// One cell's line without alignment, e.g.
/// `FAIL  bypass[nat-a=full-cone,nat-b=symmetric]  2.3s  ND-05: no NA within 3 s`, for the
/// runner to print as each cell finishes.
pub fn cell_line(cell: &CellResult) -> String {
    line(cell, 0)
}

/// The run's summary for a CI log: one aligned line per cell, in report order, then a
/// totals line such as `TOTAL  9 cells: 3 PASS, 2 FAIL in 2m05s: FAIL`.
pub fn terminal_summary(report: &RunReport) -> Vec<String> {
    let width = report
        .cells
        .iter()
        .map(|c| one_line(&c.cell.to_string()).chars().count())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<String> = report.cells.iter().map(|c| line(c, width)).collect();
    lines.push(format!(
        "TOTAL  {} in {}: {} (run {})",
        totals_text(report),
        duration(run_wall_ms(report)),
        overall(report),
        one_line(&report.run_id)
    ));
    lines
}

/// A cell's line with its name padded to `width` characters.
fn line(cell: &CellResult, width: usize) -> String {
    let name = one_line(&cell.cell.to_string());
    let pad = width.saturating_sub(name.chars().count());
    let mut s = format!(
        "{:<5} {}{}  {}",
        cell.outcome.to_string(),
        name,
        " ".repeat(pad),
        duration(cell.duration_ms)
    );
    let detail = detail(cell);
    if !detail.is_empty() {
        s.push_str("  ");
        s.push_str(&truncate(&detail, DETAIL_CHARS));
    }
    s
}

/// Why a cell did not simply pass, in a few words.
fn detail(cell: &CellResult) -> String {
    let failing = checks_with(cell, Verdict::Fail);
    let first = |prefix: &str| match failing.as_slice() {
        [] => String::new(),
        [c] => format!("{prefix}{}: {}", c.id, one_line(&c.message)),
        [c, rest @ ..] => format!(
            "{prefix}{}: {} (+{} more)",
            c.id,
            one_line(&c.message),
            rest.len()
        ),
    };
    match cell.outcome {
        Outcome::Fail => first(""),
        Outcome::Xfail => first("expected failure: "),
        Outcome::Error => cell.error.as_deref().map(first_line).unwrap_or_default(),
        Outcome::Pass | Outcome::Xpass | Outcome::NotApplicable => String::new(),
    }
}

/// The first non-empty line of `s`, on one line.
pub(crate) fn first_line(s: &str) -> String {
    s.lines()
        .map(one_line)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

/// Evidence in one line: `cells/x/capture.pcapng frames 12, 14: the NA is missing`.
pub(crate) fn evidence_text(e: &Evidence) -> String {
    let mut s = one_line(&e.capture);
    if !e.frames.is_empty() {
        let frames: Vec<String> = e.frames.iter().map(u64::to_string).collect();
        let word = if e.frames.len() == 1 { "frame" } else { "frames" };
        s.push_str(&format!(" {word} {}", frames.join(", ")));
    }
    let note = one_line(&e.note);
    if !note.is_empty() {
        s.push_str(": ");
        s.push_str(&note);
    }
    s.trim().to_string()
}

/// A cell's checks as an aligned plain-text table (JUnit's `system-out`), with each
/// check's evidence on the lines under it.
pub(crate) fn checks_table(cell: &CellResult) -> String {
    if cell.checks.is_empty() {
        return "no checks recorded\n".to_string();
    }
    let rows: Vec<[String; 5]> = cell
        .checks
        .iter()
        .map(|c| {
            [
                one_line(&c.id),
                c.verdict.to_string(),
                one_line(&c.title),
                one_line(&c.source),
                one_line(&c.message),
            ]
        })
        .collect();
    let header = ["ID", "VERDICT", "TITLE", "SOURCE", "MESSAGE"].map(String::from);
    let mut widths = [0usize; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, col) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(col.chars().count());
        }
    }
    let fmt_row = |r: &[String; 5]| {
        let mut s = String::new();
        for (w, col) in widths.iter().zip(r.iter()) {
            s.push_str(col);
            s.push_str(&" ".repeat(w - col.chars().count() + 2));
        }
        s.push_str(&r[4]);
        s.trim_end().to_string() + "\n"
    };
    let mut out = fmt_row(&header);
    for (r, c) in rows.iter().zip(&cell.checks) {
        out.push_str(&fmt_row(r));
        for e in &c.evidence {
            out.push_str(&format!(
                "{}evidence: {}\n",
                " ".repeat(widths[0] + 2),
                evidence_text(e)
            ));
        }
    }
    out
}
