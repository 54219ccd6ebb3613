//! `bedlab report merge`: the shards of one run (CI jobs running `--shard K/N`) joined into
//! the report the unsharded run would have written.
//!
//! Cells are concatenated and put in the canonical order (see [`canonical_order`]), so the
//! result does not depend on the order the shard files were found in (nor on how the
//! runner deals cells to shards). Anything that would make the merged report lie is an
//! error rather than a warning: a cell reported twice, a shard of another build, a shard
//! given twice or missing (a green merged report with a shard's cells silently absent is
//! the failure this guards against).
//!
//! Shards may carry different run ids: each CI job's `bedlab run --shard K/N` mints its
//! own. The merged report takes shard 1's id. Whole-run reports (no shard) must agree on
//! the run id.

use super::layout::cell_cmp;
use crate::conformance::model::RunReport;
use std::collections::BTreeMap;

/// Why shards could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: no reports given")]
    Empty,
    #[error(
        "{which} is from run {found:?}, the first report from run {expected:?}: whole-run reports merge only \
         with reports of the same run"
    )]
    RunMismatch {
        which: String,
        expected: String,
        found: String,
    },
    #[error(
        "{which} was written by bedlab {found:?}, the first report by {expected:?}: shards of one run come from one build"
    )]
    VersionMismatch {
        which: String,
        expected: String,
        found: String,
    },
    #[error("{which} has shard {shard:?}, which is not of the form K/N with 1 <= K <= N")]
    BadShard { which: String, shard: String },
    #[error("some reports are shards and {which} is a whole run: merge either shards or whole runs")]
    MixedShards { which: String },
    #[error("the shards disagree on how many shards there are: {first} and {second}")]
    ShardCountMismatch { first: String, second: String },
    #[error("shard {shard} is given twice")]
    DuplicateShard { shard: String },
    #[error("shards {missing} of {count} are missing: their cells would be absent from the merged report")]
    MissingShards { missing: String, count: u32 },
    #[error("cell {cell} is reported twice, by {first} and by {second}")]
    DuplicateCell {
        cell: String,
        first: String,
        second: String,
    },
}

/// Puts a report's cells in the canonical order (scenario, then parameters with values in
/// matrix order). [`write_all`](super::write_all) writes every file in this order.
pub fn canonical_order(report: &mut RunReport) {
    report.cells.sort_by(|a, b| cell_cmp(&a.cell, &b.cell));
}

/// `K/N` parsed and checked.
fn parse_shard(s: &str) -> Option<(u32, u32)> {
    let (k, n) = s.split_once('/')?;
    let (k, n) = (k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?);
    (k >= 1 && k <= n).then_some((k, n))
}

/// Merges shards (or whole-run reports of disjoint cells) into one report: cells
/// concatenated in canonical order, `started` the earliest start, `finished` the latest
/// finish, no shard, the run id of shard 1 (or the whole runs' common id).
pub fn merge(reports: Vec<RunReport>) -> Result<RunReport, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    let which = |i: usize, r: &RunReport| match &r.shard {
        Some(s) => format!("shard {s}"),
        None => format!("report #{}", i + 1),
    };
    let (mut run_id, version) = (first.run_id.clone(), first.bedlab_version.clone());
    let sharded = first.shard.is_some();
    let mut shards: BTreeMap<u32, String> = BTreeMap::new();
    let mut count: Option<(u32, String)> = None;
    for (i, r) in reports.iter().enumerate() {
        if !sharded && r.run_id != run_id {
            return Err(MergeError::RunMismatch {
                which: which(i, r),
                expected: run_id,
                found: r.run_id.clone(),
            });
        }
        if r.bedlab_version != version {
            return Err(MergeError::VersionMismatch {
                which: which(i, r),
                expected: version,
                found: r.bedlab_version.clone(),
            });
        }
        match (&r.shard, sharded) {
            (None, false) => {}
            (None, true) | (Some(_), false) => return Err(MergeError::MixedShards { which: which(i, r) }),
            (Some(s), true) => {
                let (k, n) = parse_shard(s).ok_or_else(|| MergeError::BadShard {
                    which: which(i, r),
                    shard: s.clone(),
                })?;
                match &count {
                    Some((n0, s0)) if *n0 != n => {
                        return Err(MergeError::ShardCountMismatch {
                            first: s0.clone(),
                            second: s.clone(),
                        })
                    }
                    Some(_) => {}
                    None => count = Some((n, s.clone())),
                }
                if shards.insert(k, s.clone()).is_some() {
                    return Err(MergeError::DuplicateShard { shard: s.clone() });
                }
                if k == 1 {
                    run_id = r.run_id.clone();
                }
            }
        }
    }
    if let Some((n, _)) = count {
        let missing: Vec<String> = (1..=n)
            .filter(|k| !shards.contains_key(k))
            .map(|k| k.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(MergeError::MissingShards {
                missing: missing.join(", "),
                count: n,
            });
        }
    }

    let started = reports.iter().map(|r| r.started).min().unwrap_or(0);
    let finished = reports.iter().map(|r| r.finished).max().unwrap_or(0);
    let mut cells = Vec::with_capacity(reports.iter().map(|r| r.cells.len()).sum());
    for (i, r) in reports.into_iter().enumerate() {
        let source = which(i, &r);
        cells.extend(r.cells.into_iter().map(|c| (c, source.clone())));
    }
    cells.sort_by(|(a, _), (b, _)| cell_cmp(&a.cell, &b.cell));
    for pair in cells.windows(2) {
        if pair[0].0.cell == pair[1].0.cell {
            return Err(MergeError::DuplicateCell {
                cell: pair[0].0.cell.to_string(),
                first: pair[0].1.clone(),
                second: pair[1].1.clone(),
            });
        }
    }
    Ok(RunReport {
        run_id,
        bedlab_version: version,
        started,
        finished,
        shard: None,
        cells: cells.into_iter().map(|(c, _)| c).collect(),
    })
}
