//! The plain-text summary for CI logs.

use super::{fixture, id};
use crate::conformance::model::Outcome;
use crate::conformance::report::{cell_line, terminal_summary};

#[test]
fn one_line_per_cell_then_totals() {
    let report = fixture();
    let lines = terminal_summary(&report);
    assert_eq!(lines.len(), report.cells.len() + 1);
    // Names are padded to the longest one, so durations line up.
    let width = "bypass[nat-a=full-cone,nat-b=full-cone,peer=sixbed4]".len();
    let pass = lines
        .iter()
        .find(|l| l.contains("nat-b=full-cone,peer") && l.contains("nat-a=full-cone"))
        .unwrap();
    assert_eq!(
        pass,
        &format!(
            "PASS  {:<width$}  2.1s",
            "bypass[nat-a=full-cone,nat-b=full-cone,peer=sixbed4]"
        )
    );
    let fail = lines.iter().find(|l| l.starts_with("FAIL ")).unwrap();
    assert!(fail.ends_with("3.4s  ND-05: No NA answered the probe <NS> from peer-a & \"peer-b\" within 3 s; expected 'direct' — Größe 漢字[31m (+1 more)"), "{fail}");
    let error = lines.iter().find(|l| l.starts_with("ERROR ")).unwrap();
    assert!(
        error.ends_with("0.8s  peer-b did not start: exit status 1"),
        "{error}"
    );
    let xfail = lines.iter().find(|l| l.starts_with("XFAIL ")).unwrap();
    assert!(xfail.contains("expected failure: ND-05"), "{xfail}");
    assert!(lines.iter().any(|l| l.starts_with("XPASS ")) && lines.iter().any(|l| l.starts_with("N/A   ")));
    assert_eq!(
        lines.last().unwrap(),
        "TOTAL  9 cells: 4 PASS, 1 FAIL, 1 ERROR, 1 XFAIL, 1 XPASS, 1 N/A in 2m05s: FAIL (run 20261122-081223-ab12)"
    );
    assert!(
        lines.iter().all(|l| !l.chars().any(char::is_control)),
        "no control characters in CI logs"
    );
}

#[test]
fn a_single_cell_line_is_unpadded() {
    let mut c = fixture()
        .cells
        .into_iter()
        .find(|c| c.cell == id("smoke", &[]))
        .unwrap();
    assert_eq!(cell_line(&c), "PASS  smoke  0.4s");
    c.outcome = Outcome::NotApplicable;
    c.duration_ms = 0;
    assert_eq!(cell_line(&c), "N/A   smoke  0.0s");
}
