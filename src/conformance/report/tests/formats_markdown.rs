//! summary.md: the headline, the matrices as tables linking into report.html, and the
//! failures with their evidence.

use super::fixture;
use crate::conformance::report::summary_markdown;

const A: &str = "report.html#cell-";

#[test]
fn summary_has_headline_and_matrix_rows() {
    let md = summary_markdown(&fixture());
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines[0], "# bedlab run `20261122-081223-ab12`: FAIL");
    assert!(
        md.contains("**9 cells: 4 PASS, 1 FAIL, 1 ERROR, 1 XFAIL, 1 XPASS, 1 N/A**"),
        "{md}"
    );
    assert!(
        md.contains("started 2026-11-22 08:12:23 UTC · took 2m05s"),
        "{md}"
    );
    for row in [
        "## bypass",
        "All cells: peer=sixbed4",
        "| nat-a ↓ / nat-b → | full-cone | symmetric |",
        "| --- | --- | --- |",
        &format!(
            "| **full-cone** | [PASS]({A}bypass.nat-a=full-cone.nat-b=full-cone.peer=sixbed4) | \
             [FAIL (ND-05 +1)]({A}bypass.nat-a=full-cone.nat-b=symmetric.peer=sixbed4) |"
        ),
        &format!(
            "| **symmetric** | [ERROR]({A}bypass.nat-a=symmetric.nat-b=full-cone.peer=sixbed4) | \
             [XFAIL]({A}bypass.nat-a=symmetric.nat-b=symmetric.peer=sixbed4) |"
        ),
        "| nat ↓ / profile → | current | v01 |",
        &format!(
            "| **port-restricted-cone** | [PASS]({A}rebinding.nat=port-restricted-cone.profile=current) | \
             [XPASS]({A}rebinding.nat=port-restricted-cone.profile=v01) |"
        ),
        &format!(
            "| **linux-masquerade** | [N/A]({A}rebinding.nat=linux-masquerade.profile=current) | \
             [PASS]({A}rebinding.nat=linux-masquerade.profile=v01) |"
        ),
        "| cell | outcome |",
        &format!("| **smoke** | [PASS]({A}smoke) |"),
    ] {
        assert!(lines.contains(&row), "missing line {row:?} in\n{md}");
    }
    // Scenarios in order of first appearance; no emoji anywhere.
    let pos = |s: &str| md.find(s).unwrap();
    assert!(pos("## smoke") < pos("## rebinding") && pos("## rebinding") < pos("## bypass"));
    assert!(md.chars().all(|c| (c as u32) < 0x1F000), "no emoji");
}

#[test]
fn summary_lists_failures_with_evidence_escaped() {
    let md = summary_markdown(&fixture());
    let failures = &md[md.find("## Failures").unwrap()..];
    assert!(
        failures.contains("### bypass\\[nat-a=full-cone,nat-b=symmetric,peer=sixbed4\\]: FAIL"),
        "{failures}"
    );
    assert!(failures.contains(
        "- `ND-05` Rule ND-05 holds (RFC 4861 §7.2.4): No NA answered the probe \\<NS\\> from peer-a \\& \
         \"peer-b\" within 3 s; expected 'direct' — Größe 漢字\\[31m\n"
    ), "{failures}");
    assert!(failures.contains(
        "  - evidence: `cells/bypass_nat-a=full-cone,nat-b=symmetric,peer=sixbed4_/capture.pcapng` frames 12, 14: \
         the NS \\<here\\>; no NA after it\n"
    ), "{failures}");
    assert!(
        failures.contains("frames 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41 (+18 more)\n"),
        "{failures}"
    );
    // The error's log tail holds a ``` line: the fence is longer, so it cannot close early.
    assert!(
        failures.contains("````text\npeer-b did not start: exit status 1\n"),
        "{failures}"
    );
    assert!(failures.contains("\n```\nend\n````\n"), "{failures}");
    assert!(
        failures.contains("- `LAB-01` Rule LAB-01 holds: Capture of nat-a/wan is missing."),
        "{failures}"
    );
    assert!(!md.contains('\u{1b}') && !md.contains('\u{0}'));
    // XFAIL is not a failure; XPASS is listed on its own.
    assert!(!failures.contains("nat-b=symmetric,peer=sixbed4\\]: XFAIL"));
    assert!(md.contains("## Unexpected passes"));
    assert!(md.contains(&format!("- [rebinding\\[nat=port-restricted-cone,profile=v01\\]]({A}rebinding.nat=port-restricted-cone.profile=v01)")), "{md}");
}
