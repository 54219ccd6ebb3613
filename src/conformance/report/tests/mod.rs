//! Tests of the report formats on one hand-built run that has every outcome and every
//! verdict, text that needs escaping in each format (`<`, `&`, both quotes, newlines,
//! non-ASCII, a terminal escape and a NUL), a five-lane exchange, a long exchange that
//! must be capped, and artifact paths with spaces and `#`.

mod chromium;
mod formats_html;
mod formats_json;
mod formats_junit;
mod formats_markdown;
mod merging;
mod terminal_lines;

use crate::conformance::model::{
    Artifacts, CellId, CellResult, CheckResult, Evidence, Outcome, RunReport, SeqMessage, Verdict,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Start of the fixture run: 2026-11-22 08:12:23 UTC.
pub(super) const STARTED: u64 = 1_795_335_143;

/// The message every format must carry intact (less the control characters).
pub(super) const NASTY: &str =
    "No NA answered the probe <NS> from peer-a & \"peer-b\" within 3 s;\nexpected 'direct' — Größe 漢字\u{1b}[31m\u{0}";
/// [`NASTY`] as it reads after control characters are removed.
pub(super) const NASTY_CLEAN: &str =
    "No NA answered the probe <NS> from peer-a & \"peer-b\" within 3 s;\nexpected 'direct' — Größe 漢字[31m";
/// An ERROR cell's text: a log tail that tries to close the surrounding markup.
pub(super) const ERROR_TEXT: &str = "peer-b did not start: exit status 1\n--- tail of logs/peer-b.log ---\n\
     Error: bind 0.0.0.0:25790: Address in use <&>\n</pre><script>alert(1)</script>\n```\nend";

pub(super) fn id(scenario: &str, params: &[(&str, &str)]) -> CellId {
    CellId {
        scenario: scenario.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub(super) fn check(id: &str, verdict: Verdict, message: &str, evidence: Vec<Evidence>) -> CheckResult {
    CheckResult {
        id: id.into(),
        title: format!("Rule {id} holds"),
        source: "RFC 4861 §7.2.4".into(),
        verdict,
        message: message.into(),
        evidence,
    }
}

pub(super) fn ev(capture: &str, frames: &[u64], note: &str) -> Evidence {
    Evidence {
        capture: capture.into(),
        frames: frames.to_vec(),
        note: note.into(),
    }
}

pub(super) fn msg(t_ms: u64, from: &str, to: &str, label: &str, path: &str, frame: u64) -> SeqMessage {
    SeqMessage {
        t_ms,
        from: from.into(),
        to: to.into(),
        label: label.into(),
        path: path.into(),
        frame,
    }
}

/// The cell directory of `id`, as a runner might name it.
fn dir_of(id: &CellId) -> String {
    format!("cells/{}", id.to_string().replace(['[', ']'], "_"))
}

fn artifacts(id: &CellId, nodes: &[&str]) -> Artifacts {
    let dir = dir_of(id);
    Artifacts {
        capture: Some(format!("{dir}/capture.pcapng")),
        logs: nodes
            .iter()
            .map(|n| (n.to_string(), format!("{dir}/{n}.log")))
            .collect::<BTreeMap<_, _>>(),
        other: vec![format!("{dir}/nat-decisions.jsonl")],
    }
}

fn cell(id: CellId, outcome: Outcome, duration_ms: u64, checks: Vec<CheckResult>) -> CellResult {
    let artifacts = artifacts(&id, &["peer-a", "peer-b", "router"]);
    CellResult {
        cell: id,
        outcome,
        duration_ms,
        checks,
        error: None,
        artifacts,
        sequence: Vec::new(),
    }
}

/// The five-lane exchange of the first bypass cell: 10 messages, 7 via the router, 2
/// direct, 1 other (a NAT's self-message).
pub(super) fn bypass_sequence() -> Vec<SeqMessage> {
    vec![
        msg(0, "peer-a", "router", "RS", "via-router", 1),
        msg(12, "router", "peer-a", "RA", "via-router", 2),
        msg(20, "peer-b", "router", "RS", "via-router", 3),
        msg(31, "router", "peer-b", "RA", "via-router", 4),
        msg(100, "peer-a", "router", "data <ping> & \"x\"", "via-router", 5),
        msg(101, "router", "peer-b", "data", "via-router", 6),
        msg(102, "peer-a", "peer-b", "NS (bypass probe)", "direct", 7),
        msg(110, "peer-b", "peer-a", "NA", "direct", 8),
        msg(120, "peer-a", "nat-a", "KA", "via-router", 9),
        msg(130, "nat-b", "nat-b", "mapping expired", "", 0),
    ]
}

/// 210 messages: a run of 10 identical keepalives (one arrow) then 200 alternating ones.
pub(super) fn long_sequence() -> Vec<SeqMessage> {
    let mut m: Vec<SeqMessage> = (0..10)
        .map(|i| msg(i * 1000, "peer-a", "router", "KA", "via-router", i + 1))
        .collect();
    for i in 0..200u64 {
        let t = 10_000 + i * 500;
        if i % 2 == 0 {
            m.push(msg(t, "peer-a", "nat-a", "data", "direct", 11 + i));
        } else {
            m.push(msg(t, "nat-a", "peer-a", "data", "direct", 11 + i));
        }
    }
    m
}

/// The run: 9 cells in three scenarios, in a deliberately non-canonical order.
pub(super) fn fixture() -> RunReport {
    let ff = id(
        "bypass",
        &[
            ("nat-a", "full-cone"),
            ("nat-b", "full-cone"),
            ("peer", "sixbed4"),
        ],
    );
    let fs = id(
        "bypass",
        &[
            ("nat-a", "full-cone"),
            ("nat-b", "symmetric"),
            ("peer", "sixbed4"),
        ],
    );
    let sf = id(
        "bypass",
        &[
            ("nat-a", "symmetric"),
            ("nat-b", "full-cone"),
            ("peer", "sixbed4"),
        ],
    );
    let ss = id(
        "bypass",
        &[
            ("nat-a", "symmetric"),
            ("nat-b", "symmetric"),
            ("peer", "sixbed4"),
        ],
    );
    let cap = |id: &CellId| format!("{}/capture.pcapng", dir_of(id));

    let mut c_ff = cell(
        ff.clone(),
        Outcome::Pass,
        2100,
        vec![
            check(
                "RS-01",
                Verdict::Pass,
                "RS sent with hop limit 255.",
                vec![ev(&cap(&ff), &[1], "")],
            ),
            check("KA-01", Verdict::Info, "Keepalive period 30 s.", vec![]),
            check(
                "ND-07",
                Verdict::Warn,
                "NS retransmitted after 900 ms (SHOULD be 1 s).",
                vec![],
            ),
            check(
                "V01-02",
                Verdict::NotApplicable,
                "Only for the v01 profile.",
                vec![],
            ),
        ],
    );
    c_ff.sequence = bypass_sequence();

    let mut c_fs = cell(
        fs.clone(),
        Outcome::Fail,
        3400,
        vec![
            check("RS-01", Verdict::Pass, "RS sent.", vec![]),
            check(
                "ND-05",
                Verdict::Fail,
                NASTY,
                vec![ev(&cap(&fs), &[12, 14], "the NS <here>; no NA after it")],
            ),
            check(
                "ND-06",
                Verdict::Fail,
                "Traffic stayed on the router path.",
                vec![
                    ev(&cap(&fs), &[20], "data via router"),
                    ev(&cap(&fs), &(30..60).collect::<Vec<_>>(), ""),
                ],
            ),
        ],
    );
    c_fs.sequence = vec![
        msg(0, "peer-a", "router", "RS", "via-router", 1),
        msg(9, "router", "peer-a", "RA", "via-router", 2),
        msg(50, "peer-a", "peer-b", "NS", "direct", 12),
        msg(3050, "peer-a", "router", "data", "via-router", 20),
    ];

    let mut c_sf = cell(
        sf,
        Outcome::Error,
        800,
        vec![check(
            "LAB-01",
            Verdict::Error,
            "Capture of nat-a/wan is missing.",
            vec![],
        )],
    );
    c_sf.error = Some(ERROR_TEXT.into());

    let c_ss = cell(
        ss.clone(),
        Outcome::Xfail,
        5000,
        vec![check(
            "ND-05",
            Verdict::Fail,
            "No direct path through two symmetric NATs.",
            vec![ev(&cap(&ss), &[7], "")],
        )],
    );

    let pc = id(
        "rebinding",
        &[("nat", "port-restricted-cone"), ("profile", "current")],
    );
    let mut c_pc = cell(
        pc,
        Outcome::Pass,
        65_000,
        vec![check("RB-01", Verdict::Pass, "Rebound.", vec![])],
    );
    c_pc.sequence = long_sequence();
    let c_pv = cell(
        id(
            "rebinding",
            &[("nat", "port-restricted-cone"), ("profile", "v01")],
        ),
        Outcome::Xpass,
        1200,
        vec![check("RB-01", Verdict::Pass, "Rebound.", vec![])],
    );
    let c_lc = cell(
        id(
            "rebinding",
            &[("nat", "linux-masquerade"), ("profile", "current")],
        ),
        Outcome::NotApplicable,
        0,
        vec![],
    );
    let lv = id("rebinding", &[("nat", "linux-masquerade"), ("profile", "v01")]);
    let mut c_lv = cell(
        lv,
        Outcome::Pass,
        1900,
        vec![check("RB-01", Verdict::Pass, "Rebound.", vec![])],
    );
    c_lv.artifacts = Artifacts {
        capture: Some("cells/rebinding #2/capture 1.pcapng".into()),
        logs: [("peer-a".to_string(), "cells/rebinding #2/peer-a?.log".to_string())]
            .into_iter()
            .collect(),
        other: vec!["cells/rebinding #2/100%.txt".into()],
    };

    let mut c_smoke = cell(
        id("smoke", &[]),
        Outcome::Pass,
        400,
        vec![check("RS-01", Verdict::Pass, "ok", vec![])],
    );
    c_smoke.sequence = vec![msg(0, "peer", "router", "RS", "via-router", 1)];

    RunReport {
        run_id: "20261122-081223-ab12".into(),
        bedlab_version: "0.1.0".into(),
        started: STARTED,
        finished: STARTED + 125,
        shard: None,
        cells: vec![c_smoke, c_lv, c_fs, c_ff, c_pc, c_sf, c_ss, c_pv, c_lc],
    }
}

/// Every file the fixture's reports link to, created empty under `dir`.
pub(super) fn create_artifacts(report: &RunReport, dir: &Path) {
    let mut paths: Vec<String> = Vec::new();
    for c in &report.cells {
        paths.extend(c.artifacts.capture.clone());
        paths.extend(c.artifacts.logs.values().cloned());
        paths.extend(c.artifacts.other.iter().cloned());
        for k in &c.checks {
            paths.extend(k.evidence.iter().map(|e| e.capture.clone()));
        }
    }
    for p in paths {
        let p = dir.join(p);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, b"").unwrap();
    }
}

/// The fixture in canonical order, as write_all and merge produce it.
pub(super) fn canonical_fixture() -> RunReport {
    let mut r = fixture();
    super::canonical_order(&mut r);
    r
}

/// Percent-decodes a URL path.
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
