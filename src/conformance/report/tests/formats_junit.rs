//! junit.xml: parsed back by a strict XML parser, with counts and times that add up and
//! every text intact.

use super::{fixture, ERROR_TEXT, NASTY_CLEAN};
use crate::conformance::report::junit_xml;
use roxmltree::{Document, Node};

fn attr<'a>(n: Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", n.tag_name().name()))
}

fn num(n: Node<'_, '_>, name: &str) -> usize {
    attr(n, name).parse().unwrap()
}

fn secs(n: Node<'_, '_>) -> f64 {
    attr(n, "time").parse().unwrap()
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

#[test]
fn junit_parses_back_with_consistent_counts_and_times() {
    let xml = junit_xml(&fixture());
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    let doc = Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(attr(root, "name"), "bedlab run 20261122-081223-ab12");
    assert_eq!(
        (
            num(root, "tests"),
            num(root, "failures"),
            num(root, "errors"),
            num(root, "skipped")
        ),
        (9, 1, 1, 2)
    );
    assert_eq!(attr(root, "time"), "79.800");

    let suites: Vec<Node<'_, '_>> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    let names: Vec<&str> = suites.iter().map(|s| attr(*s, "name")).collect();
    assert_eq!(
        names,
        ["smoke", "rebinding", "bypass"],
        "suites in order of first appearance"
    );
    let mut total = 0;
    for s in &suites {
        assert_eq!(attr(*s, "timestamp"), "2026-11-22T08:12:23");
        let cases: Vec<Node<'_, '_>> = s.children().filter(|n| n.has_tag_name("testcase")).collect();
        let count = |tag: &str| cases.iter().filter(|c| child(**c, tag).is_some()).count();
        assert_eq!(num(*s, "tests"), cases.len());
        assert_eq!(num(*s, "failures"), count("failure"));
        assert_eq!(num(*s, "errors"), count("error"));
        assert_eq!(num(*s, "skipped"), count("skipped"));
        let sum: f64 = cases.iter().map(|c| secs(*c)).sum();
        assert!(
            (secs(*s) - sum).abs() < 1e-6,
            "suite time is the sum of its cases"
        );
        // Properties come first, as the Ant/Jenkins schema orders them.
        assert!(s.first_element_child().unwrap().has_tag_name("properties"));
        for c in &cases {
            assert_eq!(attr(*c, "classname"), attr(*s, "name"));
            assert!(child(*c, "system-out").is_some());
        }
        total += cases.len();
    }
    assert_eq!(total, 9);
}

#[test]
fn junit_results_carry_messages_evidence_and_errors() {
    let xml = junit_xml(&fixture());
    let doc = Document::parse(&xml).unwrap();
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no test case {name}"))
    };
    assert_eq!(attr(case("smoke"), "classname"), "smoke");
    assert_eq!(attr(case("smoke"), "time"), "0.400");

    let failed = case("nat-a=full-cone,nat-b=symmetric,peer=sixbed4");
    assert_eq!(attr(failed, "classname"), "bypass");
    let failure = child(failed, "failure").unwrap();
    assert_eq!(attr(failure, "type"), "FAIL");
    // The message attribute is the first line; the body has everything, unmangled.
    let first_line = NASTY_CLEAN.lines().next().unwrap();
    assert_eq!(
        attr(failure, "message"),
        format!("ND-05: {first_line} (+1 more: ND-06)")
    );
    let body = failure.text().unwrap();
    for line in NASTY_CLEAN.lines() {
        assert!(body.contains(line), "{body}");
    }
    assert!(body.contains("evidence: cells/bypass_nat-a=full-cone,nat-b=symmetric,peer=sixbed4_/capture.pcapng frames 12, 14: the NS <here>; no NA after it"), "{body}");
    assert!(
        body.contains("ND-06 FAIL: Rule ND-06 holds [RFC 4861 §7.2.4]"),
        "{body}"
    );
    assert!(
        !xml.contains('\u{1b}') && !xml.contains('\u{0}'),
        "control characters removed"
    );

    let errored = case("nat-a=symmetric,nat-b=full-cone,peer=sixbed4");
    let error = child(errored, "error").unwrap();
    assert_eq!(attr(error, "message"), "peer-b did not start: exit status 1");
    let text = error.text().unwrap();
    assert!(text.starts_with(ERROR_TEXT), "{text}");
    assert!(
        text.contains("LAB-01 ERROR") && text.contains("peer-b: cells/"),
        "{text}"
    );

    let xfail = child(case("nat-a=symmetric,nat-b=symmetric,peer=sixbed4"), "skipped").unwrap();
    assert!(
        attr(xfail, "message").starts_with("XFAIL: expected failure"),
        "{}",
        attr(xfail, "message")
    );
    let na = child(case("nat=linux-masquerade,profile=current"), "skipped").unwrap();
    assert!(attr(na, "message").starts_with("N/A"));
    let xpass = case("nat=port-restricted-cone,profile=v01");
    assert!(child(xpass, "failure").is_none() && child(xpass, "skipped").is_none());
    assert!(child(xpass, "system-out")
        .unwrap()
        .text()
        .unwrap()
        .contains("XPASS"));

    // system-out: the checks table and where the details are.
    let out = child(failed, "system-out").unwrap().text().unwrap();
    assert!(
        out.contains("details: report.html#cell-bypass.nat-a=full-cone.nat-b=symmetric.peer=sixbed4"),
        "{out}"
    );
    assert!(out.contains("ID     VERDICT  TITLE"), "{out}");
    assert!(out.contains("ND-05  FAIL     Rule ND-05 holds"), "{out}");
}
