//! `junit.xml`: the run as JUnit XML, the one format every CI system reads (GitHub test
//! reporter actions, GitLab's test report, Jenkins' junit step).
//!
//! One `<testsuite>` per scenario and one `<testcase>` per cell, named by the cell's
//! parameters with the scenario as `classname`, so CI groups cells the way the matrix does.
//! FAIL is a `<failure>` (the implementation broke a rule), ERROR an `<error>` (the lab
//! broke), N/A and XFAIL are `<skipped>`: CI stays green for an unclaimed feature but still
//! shows it. Elements and attributes follow the Ant/Jenkins schema order (properties,
//! then test cases; in a test case the result element, then `system-out`). Times are the
//! cells' durations in seconds; a suite's time is the sum of its cells'.

use super::escape::{plain_block, xml_attr, xml_text};
use super::layout::{cell_anchors, checks_with, iso8601, params_label, scenarios, seconds, verdict_counts};
use super::terminal::{checks_table, evidence_text, first_line};
use super::REPORT_HTML;
use crate::conformance::model::{CellResult, CheckResult, Outcome, RunReport, Verdict};
use std::fmt::Write as _;

/// Counts for a `<testsuite>` or `<testsuites>` element.
#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    time_ms: u64,
}

impl Counts {
    fn of<'a>(cells: impl IntoIterator<Item = &'a CellResult>) -> Counts {
        let mut c = Counts::default();
        for cell in cells {
            c.tests += 1;
            c.time_ms = c.time_ms.saturating_add(cell.duration_ms);
            match cell.outcome {
                Outcome::Fail => c.failures += 1,
                Outcome::Error => c.errors += 1,
                Outcome::Xfail | Outcome::NotApplicable => c.skipped += 1,
                Outcome::Pass | Outcome::Xpass => {}
            }
        }
        c
    }

    fn attrs(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\"",
            self.tests,
            self.failures,
            self.errors,
            self.skipped,
            seconds(self.time_ms)
        )
    }
}

/// The run as a JUnit XML document.
pub fn junit_xml(report: &RunReport) -> String {
    let anchors = cell_anchors(report);
    let timestamp = iso8601(report.started);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" {} timestamp=\"{timestamp}\">",
        xml_attr(&format!("bedlab run {}", report.run_id)),
        Counts::of(&report.cells).attrs()
    );
    for (id, view) in scenarios(report).iter().enumerate() {
        let counts = Counts::of(view.cells.iter().map(|&i| &report.cells[i]));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" {} timestamp=\"{timestamp}\" id=\"{id}\" package=\"bedlab\">",
            xml_attr(view.name),
            counts.attrs()
        );
        out.push_str("    <properties>\n");
        let mut props = vec![
            ("run_id", report.run_id.clone()),
            ("bedlab_version", report.bedlab_version.clone()),
        ];
        if let Some(shard) = &report.shard {
            props.push(("shard", shard.clone()));
        }
        for (name, value) in props {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                xml_attr(&value)
            );
        }
        out.push_str("    </properties>\n");
        for &i in &view.cells {
            testcase(&mut out, &report.cells[i], &anchors[i]);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// One `<testcase>` with its result element and `system-out`.
fn testcase(out: &mut String, cell: &CellResult, anchor: &str) {
    let _ = writeln!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
        xml_attr(&params_label(cell)),
        xml_attr(&cell.cell.scenario),
        seconds(cell.duration_ms)
    );
    let failing = checks_with(cell, Verdict::Fail);
    match cell.outcome {
        Outcome::Fail => {
            let body = if failing.is_empty() {
                "the cell failed without a failing check recorded\n".to_string()
            } else {
                checks_body(&failing)
            };
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"FAIL\">{}</failure>",
                xml_attr(&failing_summary(&failing, "failed")),
                xml_text(&body)
            );
        }
        Outcome::Error => {
            let text = cell.error.as_deref().unwrap_or("");
            let message = match first_line(text) {
                l if l.is_empty() => "environment error (no error text recorded)".to_string(),
                l => l,
            };
            let mut body = plain_block(text);
            if !body.ends_with('\n') && !body.is_empty() {
                body.push('\n');
            }
            let errored = checks_with(cell, Verdict::Error);
            if !errored.is_empty() {
                body.push_str("\nchecks that could not run:\n");
                body.push_str(&checks_body(&errored));
            }
            if !cell.artifacts.logs.is_empty() {
                body.push_str("\nlogs:\n");
                for (node, path) in &cell.artifacts.logs {
                    body.push_str(&format!("  {node}: {path}\n"));
                }
            }
            let _ = writeln!(
                out,
                "      <error message=\"{}\" type=\"ERROR\">{}</error>",
                xml_attr(&message),
                xml_text(&body)
            );
        }
        Outcome::Xfail => {
            let message = format!(
                "XFAIL: expected failure, the implementation does not claim this feature; {}",
                failing_summary(&failing, "failed as expected")
            );
            let _ = writeln!(
                out,
                "      <skipped message=\"{}\">{}</skipped>",
                xml_attr(&message),
                xml_text(&checks_body(&failing))
            );
        }
        Outcome::NotApplicable => {
            let _ = writeln!(
                out,
                "      <skipped message=\"N/A: this cell does not apply to the implementation under test\"/>"
            );
        }
        Outcome::Pass | Outcome::Xpass => {}
    }
    let _ = writeln!(
        out,
        "      <system-out>{}</system-out>",
        xml_text(&system_out(cell, anchor))
    );
    out.push_str("    </testcase>\n");
}

/// `ND-05: message (+2 more)` for a failure's `message` attribute.
fn failing_summary(failing: &[&CheckResult], verb: &str) -> String {
    match failing {
        [] => format!("no check {verb}"),
        [c] => format!("{}: {}", c.id, first_line(&c.message)),
        [c, rest @ ..] => {
            format!(
                "{}: {} (+{} more: {})",
                c.id,
                first_line(&c.message),
                rest.len(),
                ids(rest)
            )
        }
    }
}

fn ids(checks: &[&CheckResult]) -> String {
    checks
        .iter()
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks in full: id, title, source, the whole message and every evidence line.
fn checks_body(checks: &[&CheckResult]) -> String {
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(s, "{} {}: {} [{}]", c.id, c.verdict, c.title, c.source);
        for line in plain_block(&c.message).lines() {
            let _ = writeln!(s, "  {line}");
        }
        for e in &c.evidence {
            let _ = writeln!(s, "  evidence: {}", evidence_text(e));
        }
    }
    s
}

/// What a person needs next to the result: where the details, capture and logs are, and
/// the whole checks table.
fn system_out(cell: &CellResult, anchor: &str) -> String {
    let mut s = format!(
        "cell: {}\noutcome: {} in {} s\n",
        cell.cell,
        cell.outcome,
        seconds(cell.duration_ms)
    );
    if cell.outcome == Outcome::Xpass {
        s.push_str("note: passed although the implementation does not claim this feature (XPASS)\n");
    }
    let counts: Vec<String> = verdict_counts(cell)
        .iter()
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    if !counts.is_empty() {
        let _ = writeln!(s, "checks: {}", counts.join(", "));
    }
    let _ = writeln!(s, "details: {REPORT_HTML}#{anchor}");
    if let Some(capture) = &cell.artifacts.capture {
        let _ = writeln!(s, "capture: {capture}");
    }
    for (node, path) in &cell.artifacts.logs {
        let _ = writeln!(s, "log {node}: {path}");
    }
    for path in &cell.artifacts.other {
        let _ = writeln!(s, "file: {path}");
    }
    s.push('\n');
    s.push_str(&checks_table(cell));
    s
}
