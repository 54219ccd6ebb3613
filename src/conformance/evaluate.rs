//! Joins a cell's capture to the check registry: the runner gathers what the scenario and
//! the cell's axes promise ([`CellFacts`]), this module decodes the capture, runs every
//! passive check and derives the sequence diagram.

use super::checks::{run_passive, Expectations, Inputs};
use super::decode::{decode_file, DecodeOptions, Profile};
use super::model::{CheckResult, SeqMessage, Verdict};
use super::trace::{trace, Roles};
use std::path::Path;

/// What the runner knows about a cell that the capture cannot tell.
#[derive(Debug, Clone, Default)]
pub struct CellFacts {
    pub expectations: Expectations,
    pub roles: Roles,
    pub profile: Profile,
}

/// Passive checks of one cell's capture. `capture_rel` is the capture's path relative to
/// the run directory, for evidence.
pub fn passive_checks(
    facts: CellFacts,
    capture: &Path,
    capture_rel: &str,
    strict: bool,
    sequence: &mut Vec<SeqMessage>,
) -> Vec<CheckResult> {
    let opts = DecodeOptions {
        name: capture_rel.to_string(),
        port: None,
        profile: Some(facts.profile),
    };
    let decoded = match decode_file(capture, opts) {
        Ok(d) => d,
        Err(e) => {
            return vec![CheckResult {
                id: "CAPTURE".into(),
                title: "the cell's capture is readable".into(),
                source: "bedlab".into(),
                verdict: Verdict::Error,
                message: e.to_string(),
                evidence: Vec::new(),
            }]
        }
    };
    *sequence = trace(&decoded, &facts.roles);
    let inputs = Inputs::with_roles(
        vec![decoded],
        facts.profile,
        strict,
        facts.expectations,
        facts.roles,
    );
    run_passive(&inputs)
}

/// The cell's exchange as a golden trace: every distinct message between nodes (what, from
/// where to where, direct or via the router), sorted. TUN lanes, the kernel's multicast
/// chatter and keepalives are left out (keepalives have checks of their own, and how many
/// fit in a cell depends on timing); so are counts and times. What remains is the same in
/// every run of a correct cell, and changes when the behaviour does: a direct path that
/// appears or disappears, a new kind of message, a different RA.
///
/// A message that also went direct has its via-router copies left out: whether a peer's
/// first replies still crossed the router before the path went direct depends on timing
/// (a hairpinned probe can finish before the kernel's first echo reply), not on behaviour.
/// A message that never went direct keeps them.
pub fn golden_trace(msgs: &[SeqMessage]) -> String {
    let shown: Vec<&SeqMessage> = msgs
        .iter()
        .filter(|m| !m.from.contains('/') && !m.to.contains('/'))
        .filter(|m| !m.label.contains("ff02:") && !m.label.starts_with("KA"))
        .collect();
    let went_direct: std::collections::HashSet<&str> = shown
        .iter()
        .filter(|m| m.path == "direct")
        .map(|m| m.label.as_str())
        .collect();
    let mut lines: Vec<String> = shown
        .into_iter()
        .filter(|m| !(m.path == "via-router" && went_direct.contains(m.label.as_str())))
        .map(|m| {
            let path = if m.path.is_empty() {
                String::new()
            } else {
                format!(" [{}]", m.path)
            };
            format!("{} -> {}: {}{}", m.from, m.to, m.label, path)
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: u64, from: &str, to: &str, label: &str, path: &str) -> SeqMessage {
        SeqMessage {
            t_ms: t,
            from: from.into(),
            to: to.into(),
            label: label.into(),
            path: path.into(),
            frame: t,
        }
    }

    #[test]
    fn golden_trace_ignores_order_counts_noise_and_keepalives() {
        let a = vec![
            m(0, "peer-a", "router", "RS", ""),
            m(5, "router", "peer-a", "RA peer-a@nat-a:P1/114", ""),
            m(6, "router/6bed4", "router", "data fe80::1 → ff02::16", ""),
            m(7, "peer-a", "router", "KA", ""),
            m(9, "peer-a", "peer-b", "echo-request", "direct"),
            m(10, "peer-a", "peer-b", "echo-request", "direct"),
        ];
        let mut b = a.clone();
        b.swap(0, 1);
        b.truncate(5);
        b.push(m(20, "peer-a", "peer-b", "echo-request", "direct"));
        assert_eq!(golden_trace(&a), golden_trace(&b));
        assert_eq!(
            golden_trace(&a),
            "peer-a -> peer-b: echo-request [direct]\npeer-a -> router: RS\nrouter -> peer-a: RA peer-a@nat-a:P1/114"
        );
        let mut c = a.clone();
        c[4].path = "via-router".into();
        c[5].path = "via-router".into();
        assert_ne!(golden_trace(&a), golden_trace(&c), "a lost direct path shows");
        // The first echo crossing the router before the path went direct, or not: timing.
        let mut d = a.clone();
        d[4].path = "via-router".into();
        d.push(m(8, "peer-a", "router", "echo-request", "via-router"));
        d.push(m(8, "router", "peer-b", "echo-request", "via-router"));
        assert_eq!(golden_trace(&a), golden_trace(&d));
    }
}
