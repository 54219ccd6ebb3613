//! Golden traces: every cell of the default suite, run for real, must pass, and is reduced
//! to its exchange signature (`evaluate::golden_trace`) and compared with the snapshot in `golden/`.
//! `make golden-review` reviews changes; CI (CI=true) never writes snapshots, so a changed
//! or missing one fails. A second test runs one cell 20 times and requires the same trace.
//!
//! Cells with a random impairment (loss, jitter) have no golden trace: which packets a 10 %
//! loss hits depends on timing, so whether a bypass probe survives varies from run to run.
//! Nor do scenarios that say `golden = false` (the 50-peer mesh: which of 2,450 pairs
//! already go direct by their second echo depends on the load). Their checks judge them.

use bedlab::conformance::adapter::Adapter;
use bedlab::conformance::evaluate::golden_trace;
use bedlab::conformance::model::Outcome;
use bedlab::conformance::runner::{run_cell, RunContext, Suite};
use bedlab::conformance::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn suite() -> Suite {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let adapters = Adapter::load_dir(&repo.join("harness/impls"), repo).expect("adapters");
    let scenarios = Scenario::load_dir(&repo.join("scenarios"), &repo.join("topologies")).expect("scenarios");
    Suite {
        scenarios: scenarios.into_iter().map(Arc::new).collect(),
        adapters,
    }
}

fn ctx(dir: &Path) -> RunContext {
    RunContext {
        run_dir: dir.to_path_buf(),
        state_root: dir.join("state"),
        bedlab: std::path::PathBuf::from(env!("CARGO_BIN_EXE_bedlab")),
        strict: false,
    }
}

/// The sixbed4 binary must exist for the adapter to find it.
fn sixbed4_built() -> bool {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    repo.join("target/release/sixbed4").exists() || repo.join("target/debug/sixbed4").exists()
}

#[test]
fn every_cell_matches_its_golden_trace() {
    if !root() || !sixbed4_built() {
        eprintln!("skipped: needs root and a built sixbed4 (cargo build -p sixbed4)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = suite();
    let cells = suite.cells(&[], None);
    assert!(
        cells.len() >= 30,
        "the default suite shrank to {} cells",
        cells.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("golden"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for (i, cell) in cells.iter().enumerate() {
            let r = run_cell(i + 1, cell, &suite, &ctx(dir.path()));
            assert!(
                matches!(r.outcome, Outcome::Pass | Outcome::Xfail | Outcome::NotApplicable),
                "{} is {}: {:?}",
                r.cell,
                r.outcome,
                r.checks
                    .iter()
                    .filter(|c| c.verdict.to_string() == "FAIL")
                    .collect::<Vec<_>>()
            );
            // Every cell must pass; only those whose exchange does not depend on timing
            // have a golden trace.
            if cell.params.get("impairment").is_some_and(|v| v != "none") || !cell.scenario.golden {
                continue;
            }
            let name = cell
                .id()
                .to_string()
                .replace(['[', ']', ',', '='], "_")
                .replace("__", "_");
            insta::assert_snapshot!(name.trim_end_matches('_').to_string(), golden_trace(&r.sequence));
        }
    });
}

#[test]
fn the_same_trace_comes_out_of_20_runs() {
    if !root() || !sixbed4_built() {
        eprintln!("skipped: needs root and a built sixbed4");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = suite();
    let cells = suite.cells(
        &[
            "bypass".into(),
            "nat-a=port-restricted-cone,nat-b=port-restricted-cone".into(),
        ],
        None,
    );
    assert_eq!(cells.len(), 1);
    let first = golden_trace(&run_cell(1, &cells[0], &suite, &ctx(dir.path())).sequence);
    assert!(
        first.contains("[direct]"),
        "the port-restricted pair goes direct:\n{first}"
    );
    for n in 2..=20 {
        let again = golden_trace(&run_cell(n, &cells[0], &suite, &ctx(dir.path())).sequence);
        assert_eq!(first, again, "run {n} gave another trace");
    }
}
