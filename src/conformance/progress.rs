//! Running many cells: parallel workers, a progress bar in a terminal (plain lines in CI),
//! and the report files at the end.

use super::model::{CellResult, RunReport};
use super::runner::{run_cell, RunContext, Suite};
use super::scenario::Cell;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `cells` on `jobs` workers; results keep the cells' order.
pub fn run_all(
    cells: &[Cell],
    suite: &Suite,
    ctx: &RunContext,
    jobs: usize,
    shard: Option<(usize, usize)>,
) -> RunReport {
    let total = cells.len();
    let bar = if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Some(b)
    } else {
        None
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CellResult>>> = Mutex::new(vec![None; total]);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(total).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(cell) = cells.get(i) else { break };
                if let Some(b) = &bar {
                    b.set_message(cell.id().to_string());
                }
                let r = run_cell(i + 1, cell, suite, ctx);
                let line = format!(
                    "{:<6} {}  {:.1}s",
                    r.outcome.to_string(),
                    r.cell,
                    r.duration_ms as f64 / 1000.0
                );
                match &bar {
                    Some(b) => {
                        b.println(line);
                        b.inc(1);
                    }
                    None => eprintln!("{line}"),
                }
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let cells: Vec<CellResult> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let finished = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let report = RunReport {
        run_id: String::new(),
        bedlab_version: env!("CARGO_PKG_VERSION").to_string(),
        started: 0,
        finished,
        shard: shard.map(|(k, n)| format!("{k}/{n}")),
        cells,
    };
    let totals: Vec<String> = report.totals().iter().map(|(o, n)| format!("{n} {o}")).collect();
    eprintln!("{} cells: {}", report.cells.len(), totals.join(", "));
    report
}

/// Writes every report format into `dir`.
pub fn write_reports(report: &RunReport, dir: &Path) -> std::io::Result<()> {
    super::report::write_all(report, dir)
        .map(|_| ())
        .map_err(std::io::Error::other)
}
