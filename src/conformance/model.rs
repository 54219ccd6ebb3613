//! The results model shared by the check registry, the runner and every report format.
//!
//! One run is a matrix of **cells** (a scenario with one value per matrix axis). A cell has
//! an **outcome** and the **check results** behind it, each with **evidence** (capture file
//! and frame numbers) and the rule's source, as TAHI/IPv6 Ready reports do. ERROR (the
//! environment failed) is kept apart from FAIL (the implementation broke a rule).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A check's verdict (`checks.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    /// A MUST was broken.
    Fail,
    /// A SHOULD, or a documented 6bed4 deviation from a generic RFC rule.
    Warn,
    /// Does not apply to this role, profile or scenario.
    #[serde(rename = "N/A")]
    NotApplicable,
    /// A recorded parameter (keepalive period, jitter, ...).
    Info,
    /// The environment failed; says nothing about the implementation.
    Error,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Warn => "WARN",
            Verdict::NotApplicable => "N/A",
            Verdict::Info => "INFO",
            Verdict::Error => "ERROR",
        })
    }
}

/// Where a verdict comes from in a capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Evidence {
    /// Capture file, relative to the run directory.
    pub capture: String,
    /// 1-based frame numbers, as Wireshark shows them.
    pub frames: Vec<u64>,
    /// What these frames show.
    pub note: String,
}

/// One check applied to one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Registry id, e.g. `RS-01`.
    pub id: String,
    pub title: String,
    /// The rule's source, e.g. `RFC 4861 §6.1.1`.
    pub source: String,
    pub verdict: Verdict,
    /// One or two sentences a person reads.
    pub message: String,
    pub evidence: Vec<Evidence>,
}

/// The outcome of a whole cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Every check passed (WARN and INFO allowed).
    Pass,
    /// At least one check failed.
    Fail,
    /// The environment failed (lab, process, adapter): see `error`.
    Error,
    /// The implementation does not claim the feature this cell needs, and it failed.
    Xfail,
    /// The implementation does not claim the feature, and it passed anyway.
    Xpass,
    /// The cell does not apply to this implementation (skipped).
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
            Outcome::Xfail => "XFAIL",
            Outcome::Xpass => "XPASS",
            Outcome::NotApplicable => "N/A",
        })
    }
}

impl Outcome {
    /// Whether this outcome makes `bedlab run` exit non-zero.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Error)
    }
}

/// A cell of the matrix: a scenario and one value per axis.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellId {
    pub scenario: String,
    /// Axis name → value, e.g. `nat-a` → `symmetric`, `peer` → `sixbed4`.
    pub params: BTreeMap<String, String>,
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scenario)?;
        if !self.params.is_empty() {
            let p: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "[{}]", p.join(","))?;
        }
        Ok(())
    }
}

/// One message of a cell's exchange, for the sequence diagram and the golden trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqMessage {
    /// Milliseconds since the cell started.
    pub t_ms: u64,
    /// Lane names (node names: `peer-a`, `nat-a`, `router`).
    pub from: String,
    pub to: String,
    /// What it is: `RS`, `RA`, `KA`, `NS`, `NA`, `data`, ...
    pub label: String,
    /// `direct`, `via-router` or empty: how the diagram draws it.
    pub path: String,
    /// Frame number in the cell's capture.
    pub frame: u64,
}

/// Files a cell left, relative to the run directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Artifacts {
    pub capture: Option<String>,
    /// Node → log file.
    pub logs: BTreeMap<String, String>,
    /// Other files (NAT decision logs, events).
    pub other: Vec<String>,
}

/// Everything known about one cell after it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellResult {
    pub cell: CellId,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub checks: Vec<CheckResult>,
    /// For ERROR: what failed, with the tail of the relevant log.
    pub error: Option<String>,
    pub artifacts: Artifacts,
    /// The exchange, for the sequence diagram.
    pub sequence: Vec<SeqMessage>,
}

/// A whole run (or one shard of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub bedlab_version: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub finished: u64,
    /// `K/N` when this is one shard of a run.
    pub shard: Option<String>,
    pub cells: Vec<CellResult>,
}

impl RunReport {
    /// Counts of each outcome.
    pub fn totals(&self) -> BTreeMap<Outcome, usize> {
        let mut t = BTreeMap::new();
        for c in &self.cells {
            *t.entry(c.outcome).or_insert(0) += 1;
        }
        t
    }

    /// Whether the run should exit 0.
    pub fn success(&self) -> bool {
        !self.cells.iter().any(|c| c.outcome.is_failure())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_report_vocabulary() {
        assert_eq!(serde_json::to_string(&Verdict::NotApplicable).unwrap(), "\"N/A\"");
        assert_eq!(serde_json::to_string(&Outcome::Xfail).unwrap(), "\"XFAIL\"");
        let id = CellId {
            scenario: "bypass".into(),
            params: [("nat-a".to_string(), "symmetric".to_string())]
                .into_iter()
                .collect(),
        };
        assert_eq!(id.to_string(), "bypass[nat-a=symmetric]");
        assert!(Outcome::Error.is_failure() && !Outcome::Xfail.is_failure());
    }
}
