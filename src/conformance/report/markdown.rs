//! `summary.md`: the run for a CI job summary (GitHub's `$GITHUB_STEP_SUMMARY`, GitLab
//! and others render the same GitHub-flavoured Markdown).
//!
//! A headline with the totals, the matrix of each scenario as tables whose cells link to
//! the cell's section of report.html, then every failure with its checks and evidence.
//! Text only (no emoji, no colour): it must read the same in a raw log. GitHub caps a job
//! summary at 1 MiB, so the failure details stop after [`MAX_FAILURE_DETAILS`] cells.

use super::escape::{md_code, md_fence, md_inline};
use super::layout::{
    cell_anchors, checks_with, corner, duration, overall, run_wall_ms, scenarios, short_outcome, totals_text,
    utc, ScenarioView,
};
use super::terminal::first_line;
use super::{JUNIT_XML, REPORT_HTML, REPORT_JSON};
use crate::conformance::model::{CellResult, Evidence, Outcome, RunReport, Verdict};
use std::fmt::Write as _;

/// Frame numbers listed per evidence; the rest are counted (report.json has them all).
const MAX_FRAMES: usize = 12;

/// Failing cells described in full; the rest are counted and left to report.html.
pub const MAX_FAILURE_DETAILS: usize = 50;

/// The run as GitHub-flavoured Markdown.
pub fn summary_markdown(report: &RunReport) -> String {
    let anchors = cell_anchors(report);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bedlab run {}: {}\n",
        md_code(&report.run_id),
        overall(report)
    );
    let _ = writeln!(out, "**{}**\n", totals_text(report));
    let mut meta = vec![
        format!("bedlab {}", md_inline(&report.bedlab_version)),
        format!("started {}", utc(report.started)),
        format!("took {}", duration(run_wall_ms(report))),
    ];
    if let Some(shard) = &report.shard {
        meta.push(format!("shard {}", md_inline(shard)));
    }
    let _ = writeln!(out, "{}\n", meta.join(" · "));
    let _ = writeln!(
        out,
        "Files: [{REPORT_HTML}]({REPORT_HTML}) (details and sequence diagrams) · [{JUNIT_XML}]({JUNIT_XML}) · [{REPORT_JSON}]({REPORT_JSON})\n"
    );

    for view in scenarios(report) {
        scenario(&mut out, report, &view, &anchors);
    }

    let failed: Vec<usize> = (0..report.cells.len())
        .filter(|&i| report.cells[i].outcome.is_failure())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "## Failures\n");
        for &i in failed.iter().take(MAX_FAILURE_DETAILS) {
            failure(&mut out, &report.cells[i], &anchors[i]);
        }
        if failed.len() > MAX_FAILURE_DETAILS {
            let _ = writeln!(
                out,
                "… and {} more failing cells: see [{REPORT_HTML}]({REPORT_HTML}).\n",
                failed.len() - MAX_FAILURE_DETAILS
            );
        }
    }
    let xpass: Vec<usize> = (0..report.cells.len())
        .filter(|&i| report.cells[i].outcome == Outcome::Xpass)
        .collect();
    if !xpass.is_empty() {
        let _ = writeln!(out, "## Unexpected passes\n");
        let _ = writeln!(
            out,
            "These cells passed although the implementation does not claim their feature.\n"
        );
        for &i in &xpass {
            let _ = writeln!(
                out,
                "- [{}]({REPORT_HTML}#{})",
                md_inline(&report.cells[i].cell.to_string()),
                anchors[i]
            );
        }
        out.push('\n');
    }
    out
}

/// A scenario's heading and matrix tables.
fn scenario(out: &mut String, report: &RunReport, view: &ScenarioView<'_>, anchors: &[String]) {
    let cells = view.cells.iter().map(|&i| &report.cells[i]);
    let failed = cells.filter(|c| c.outcome.is_failure()).count();
    let _ = writeln!(
        out,
        "## {}\n\n{} {}{}\n",
        md_inline(view.name),
        view.cells.len(),
        if view.cells.len() == 1 { "cell" } else { "cells" },
        if failed > 0 {
            format!(", {failed} failing")
        } else {
            String::new()
        }
    );
    if !view.fixed.is_empty() {
        let fixed: Vec<String> = view
            .fixed
            .iter()
            .map(|(k, v)| format!("{}={}", md_inline(k), md_inline(v)))
            .collect();
        let _ = writeln!(out, "All cells: {}\n", fixed.join(", "));
    }
    for table in &view.tables {
        if !table.caption.is_empty() {
            let caption: Vec<String> = table
                .caption
                .iter()
                .map(|(k, v)| format!("{}={}", md_inline(k), md_inline(v)))
                .collect();
            let _ = writeln!(out, "**{}**\n", caption.join(", "));
        }
        let _ = write!(out, "| {} |", md_inline(&corner(view)));
        for col in &view.cols {
            let head = if view.col_axis.is_some() {
                md_inline(col)
            } else {
                "outcome".to_string()
            };
            let _ = write!(out, " {head} |");
        }
        let _ = writeln!(out, "\n|{}", " --- |".repeat(view.cols.len() + 1));
        for (row, line) in view.rows.iter().zip(&table.grid) {
            let head = format!(
                "**{}**",
                md_inline(if view.row_axis.is_some() { row } else { view.name })
            );
            let _ = write!(out, "| {head} |");
            for slot in line {
                let links: Vec<String> = slot
                    .iter()
                    .map(|&i| {
                        format!(
                            "[{}]({REPORT_HTML}#{})",
                            md_inline(&short_outcome(&report.cells[i])),
                            anchors[i]
                        )
                    })
                    .collect();
                let text = if links.is_empty() {
                    "·".to_string()
                } else {
                    links.join(" ")
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
}

/// One failing cell: heading with a link, then its failing checks or its error.
fn failure(out: &mut String, cell: &CellResult, anchor: &str) {
    let _ = writeln!(
        out,
        "### {}: {}\n\n[details]({REPORT_HTML}#{anchor}) · {}\n",
        md_inline(&cell.cell.to_string()),
        cell.outcome,
        duration(cell.duration_ms)
    );
    match cell.outcome {
        Outcome::Error => {
            let text = cell.error.as_deref().unwrap_or("(no error text recorded)");
            let _ = writeln!(out, "{}", md_fence(text));
            for c in checks_with(cell, Verdict::Error) {
                let _ = writeln!(
                    out,
                    "- {} {}: {}",
                    md_code(&c.id),
                    md_inline(&c.title),
                    md_inline(&first_line(&c.message))
                );
            }
            for (node, path) in &cell.artifacts.logs {
                let _ = writeln!(out, "- log of {}: {}", md_inline(node), md_code(path));
            }
        }
        _ => {
            let failing = checks_with(cell, Verdict::Fail);
            if failing.is_empty() {
                let _ = writeln!(out, "- the cell failed without a failing check recorded");
            }
            for c in failing {
                let _ = writeln!(
                    out,
                    "- {} {} ({}): {}",
                    md_code(&c.id),
                    md_inline(&c.title),
                    md_inline(&c.source),
                    md_inline(&c.message)
                );
                for e in &c.evidence {
                    let _ = writeln!(out, "  - evidence: {}", evidence(e));
                }
            }
        }
    }
    out.push('\n');
}

/// `` `capture.pcapng` frames 12, 14: note ``.
fn evidence(e: &Evidence) -> String {
    let mut s = if e.capture.is_empty() {
        "(no capture named)".to_string()
    } else {
        md_code(&e.capture)
    };
    if !e.frames.is_empty() {
        let frames: Vec<String> = e.frames.iter().take(MAX_FRAMES).map(u64::to_string).collect();
        let word = if e.frames.len() == 1 { "frame" } else { "frames" };
        let _ = write!(s, " {word} {}", frames.join(", "));
        if e.frames.len() > MAX_FRAMES {
            let _ = write!(s, " (+{} more)", e.frames.len() - MAX_FRAMES);
        }
    }
    if !e.note.trim().is_empty() {
        let _ = write!(s, ": {}", md_inline(&e.note));
    }
    s
}
