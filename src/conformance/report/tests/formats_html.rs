//! report.html: well-formed (the page is written to parse as XML too, so a strict parser
//! checks every escape), self-contained, with working links, cell sections and SVG
//! sequence diagrams.

use super::{canonical_fixture, create_artifacts, fixture, percent_decode, ERROR_TEXT, NASTY_CLEAN};
use crate::conformance::report::{html_report, write_all, REPORT_HTML};
use roxmltree::{Document, Node, ParsingOptions};
use std::collections::HashSet;

fn parse(html: &str) -> Document<'_> {
    Document::parse_with_options(
        html,
        ParsingOptions {
            allow_dtd: true,
            ..ParsingOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("report.html is not well-formed: {e}"))
}

fn has_class(n: Node<'_, '_>, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn by_id<'a, 'i>(doc: &'a Document<'i>, id: &str) -> Node<'a, 'i> {
    doc.descendants()
        .find(|n| n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no element #{id}"))
}

fn text_of(n: Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

#[test]
fn html_is_well_formed_and_self_contained() {
    let html = html_report(&fixture());
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    let doc = parse(&html);
    assert!(
        doc.descendants().all(|n| n.attribute("src").is_none()),
        "nothing is loaded from elsewhere"
    );
    assert!(!html.contains("<link"));
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(
        urls,
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "only SVG namespaces"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one script, ours: the log's <script> is escaped"
    );
    assert!(
        html.contains("content=\"default-src 'none';"),
        "a CSP forbids every fetch"
    );
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("style")).count(), 1);
    assert!(!html.contains('\u{1b}') && !html.contains('\u{0}'));
}

#[test]
fn every_cell_has_a_section_and_the_matrix_links_to_it() {
    let report = fixture();
    let html = html_report(&report);
    let doc = parse(&html);
    let sections: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.has_tag_name("section") && has_class(*n, "cell"))
        .collect();
    assert_eq!(sections.len(), 9);
    let matrix_links: Vec<&str> = doc
        .descendants()
        .filter(|n| has_class(*n, "mcell"))
        .filter_map(|n| n.attribute("href"))
        .collect();
    assert_eq!(matrix_links.len(), 9);
    let ids: HashSet<&str> = sections.iter().filter_map(|s| s.attribute("id")).collect();
    for l in &matrix_links {
        assert!(ids.contains(l.trim_start_matches('#')), "{l}");
    }
    // Failing and surprising cells are open; the rest are collapsed.
    let open: Vec<String> = sections
        .iter()
        .filter(|s| {
            s.descendants()
                .any(|d| d.has_tag_name("details") && d.attribute("open").is_some())
        })
        .map(|s| s.attribute("id").unwrap().to_string())
        .collect();
    assert_eq!(
        open,
        [
            "cell-rebinding.nat=port-restricted-cone.profile=v01",
            "cell-bypass.nat-a=full-cone.nat-b=symmetric.peer=sixbed4",
            "cell-bypass.nat-a=symmetric.nat-b=full-cone.peer=sixbed4",
        ]
    );

    // The verdict table carries the message unmangled; the error text is shown as text.
    let failed = by_id(&doc, "cell-bypass.nat-a=full-cone.nat-b=symmetric.peer=sixbed4");
    let rows: Vec<Node<'_, '_>> = failed
        .descendants()
        .filter(|n| n.has_tag_name("tr") && has_class(*n, "r-fail"))
        .collect();
    assert_eq!(rows.len(), 2);
    let message = rows[0].descendants().find(|n| has_class(*n, "message")).unwrap();
    assert_eq!(text_of(message), NASTY_CLEAN);
    let headers: Vec<String> = failed
        .descendants()
        .filter(|n| n.has_tag_name("th"))
        .map(text_of)
        .collect();
    assert_eq!(
        headers,
        ["ID", "Title", "Verdict", "Message", "Source", "Evidence"]
    );
    assert!(text_of(rows[0]).contains("frames 12, 14frame.number in {12 14}the NS <here>; no NA after it"));
    assert!(text_of(rows[1]).contains("frames 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41 (+18 more)"));
    let errored = by_id(&doc, "cell-bypass.nat-a=symmetric.nat-b=full-cone.peer=sixbed4");
    let pre = errored.descendants().find(|n| n.has_tag_name("pre")).unwrap();
    assert_eq!(pre.text(), Some(ERROR_TEXT));
    assert!(text_of(errored).contains("No exchange recorded"));
    let xfail = by_id(&doc, "cell-bypass.nat-a=symmetric.nat-b=symmetric.peer=sixbed4");
    assert!(text_of(xfail).contains("Expected failure"));
}

#[test]
fn sequence_diagram_has_lanes_arrows_and_legend() {
    let html = html_report(&fixture());
    let doc = parse(&html);
    let cell = by_id(&doc, "cell-bypass.nat-a=full-cone.nat-b=full-cone.peer=sixbed4");
    let svg = cell
        .descendants()
        .find(|n| n.has_tag_name("svg"))
        .expect("an inline SVG");
    assert_eq!(svg.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    let lanes: Vec<&str> = svg
        .descendants()
        .filter(|n| has_class(*n, "lane"))
        .filter_map(|n| n.attribute("data-lane"))
        .collect();
    assert_eq!(lanes, ["peer-a", "nat-a", "router", "nat-b", "peer-b"]);
    let arrows: Vec<Node<'_, '_>> = svg.descendants().filter(|n| has_class(*n, "msg")).collect();
    assert_eq!(arrows.len(), 10);
    let count = |class: &str| arrows.iter().filter(|a| has_class(**a, class)).count();
    assert_eq!(
        (count("msg-via"), count("msg-direct"), count("msg-other")),
        (7, 2, 1)
    );
    // Via-router arrows are dashed, direct ones solid, and the colours differ.
    let line = |class: &str| {
        arrows
            .iter()
            .find(|a| has_class(**a, class))
            .unwrap()
            .descendants()
            .find(|n| n.has_tag_name("line"))
            .unwrap()
    };
    assert!(line("msg-via").attribute("stroke-dasharray").is_some());
    assert!(line("msg-direct").attribute("stroke-dasharray").is_none());
    assert_ne!(
        line("msg-via").attribute("stroke"),
        line("msg-direct").attribute("stroke")
    );
    // Labels are escaped text, with the frame number and the time.
    let labels: Vec<String> = arrows.iter().map(|a| text_of(*a)).collect();
    assert!(
        labels
            .iter()
            .any(|l| l.contains("data <ping> & \"x\" #5") && l.contains("0.100 s")),
        "{labels:?}"
    );
    let legend = svg
        .descendants()
        .find(|n| has_class(*n, "legend"))
        .expect("a legend");
    let legend = text_of(legend);
    assert!(legend.contains("direct path") && legend.contains("via the router") && legend.contains("other"));
    let caption = cell.descendants().find(|n| has_class(*n, "seq-caption")).unwrap();
    assert_eq!(
        text_of(caption),
        "10 messages between 5 nodes, drawn as 10 arrows."
    );
}

#[test]
fn long_exchanges_are_collapsed_and_capped() {
    let html = html_report(&fixture());
    let doc = parse(&html);
    let cell = by_id(&doc, "cell-rebinding.nat=port-restricted-cone.profile=current");
    let svg = cell.descendants().find(|n| n.has_tag_name("svg")).unwrap();
    let arrows: Vec<Node<'_, '_>> = svg.descendants().filter(|n| has_class(*n, "msg")).collect();
    // 10 identical keepalives become one arrow; 1 + 44 head rows and 12 tail rows are drawn.
    assert_eq!(arrows.len(), 57);
    assert!(text_of(arrows[0]).contains("KA ×10"), "{}", text_of(arrows[0]));
    let gap = svg
        .descendants()
        .find(|n| has_class(*n, "seq-gap"))
        .expect("a band for what is left out");
    assert!(
        text_of(gap).starts_with("144 messages not shown (32.000 s to 103.500 s)"),
        "{}",
        text_of(gap)
    );
    let caption = text_of(cell.descendants().find(|n| has_class(*n, "seq-caption")).unwrap());
    assert!(
        caption.starts_with("210 messages between 3 nodes, drawn as 57 arrows;"),
        "{caption}"
    );
}

#[test]
fn every_link_resolves_in_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let report = canonical_fixture();
    create_artifacts(&report, dir.path());
    write_all(&report, dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join(REPORT_HTML)).unwrap();
    let doc = parse(&html);
    let ids: HashSet<&str> = doc.descendants().filter_map(|n| n.attribute("id")).collect();
    let hrefs: Vec<&str> = doc.descendants().filter_map(|n| n.attribute("href")).collect();
    assert!(hrefs.len() > 60, "{} links", hrefs.len());
    let mut files = HashSet::new();
    for href in hrefs {
        if let Some(frag) = href.strip_prefix('#') {
            assert!(ids.contains(frag), "dangling fragment {href}");
        } else {
            assert!(
                !href.contains(':') && !href.starts_with('/'),
                "{href} is not relative"
            );
            let path = dir.path().join(percent_decode(href));
            assert!(path.is_file(), "{href} -> {} does not exist", path.display());
            files.insert(href);
        }
    }
    // The odd names are encoded, not broken: space, '#', '?' and '%'.
    for odd in [
        "cells/rebinding%20%232/capture%201.pcapng",
        "cells/rebinding%20%232/peer-a%3F.log",
        "cells/rebinding%20%232/100%25.txt",
    ] {
        assert!(files.contains(odd), "{odd} not linked: {files:?}");
    }
    for name in ["report.json", "junit.xml", "summary.md"] {
        assert!(files.contains(name));
    }
}

/// `BEDLAB_REPORT_DEMO_DIR=/tmp/demo cargo test -p bedlab --lib report_demo` writes the
/// fixture's run directory (reports and empty artifacts) there, to look at by hand.
#[test]
fn report_demo() {
    if let Ok(dir) = std::env::var("BEDLAB_REPORT_DEMO_DIR") {
        let dir = std::path::Path::new(&dir);
        let report = canonical_fixture();
        create_artifacts(&report, dir);
        write_all(&report, dir).unwrap();
        eprintln!("wrote the demo run to {}", dir.display());
    }
}
