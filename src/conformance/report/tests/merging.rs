//! `bedlab report merge`: shards give back the unsharded run; anything that would make
//! the merged report lie is an error.

use super::{canonical_fixture, fixture, STARTED};
use crate::conformance::model::RunReport;
use crate::conformance::report::{merge, write_all, MergeError};

/// The fixture cut into `n` shards round-robin (as `--shard K/N` might), each with its own
/// start and finish inside the run's.
fn shards(n: usize) -> Vec<RunReport> {
    let whole = fixture();
    (0..n)
        .map(|k| RunReport {
            shard: Some(format!("{}/{n}", k + 1)),
            started: STARTED + k as u64,
            finished: whole.finished - (n - 1 - k) as u64 * 3,
            cells: whole.cells.iter().skip(k).step_by(n).cloned().collect(),
            ..whole.clone()
        })
        .collect()
}

#[test]
fn shards_merge_into_the_unsharded_report_in_any_order() {
    let expected = canonical_fixture();
    let mut two = shards(2);
    assert_eq!(merge(two.clone()).unwrap(), expected);
    two.reverse();
    assert_eq!(
        merge(two).unwrap(),
        expected,
        "the order shards are given in does not matter"
    );
    let mut three = shards(3);
    three.rotate_left(1);
    assert_eq!(merge(three).unwrap(), expected);
}

#[test]
fn merged_files_are_byte_identical_to_the_unsharded_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_all(&fixture(), a.path()).unwrap();
    write_all(&merge(shards(2)).unwrap(), b.path()).unwrap();
    for name in ["report.json", "junit.xml", "summary.md", "report.html"] {
        let (x, y) = (
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
        );
        assert!(x == y, "{name} differs");
    }
}

#[test]
fn shards_of_separate_jobs_merge_under_shard_1s_run_id() {
    // Each CI job's `bedlab run --shard K/N` mints its own run id.
    let mut s = shards(3);
    for (i, r) in s.iter_mut().enumerate() {
        r.run_id = format!("job-{}", i + 1);
    }
    s.reverse();
    let m = merge(s).unwrap();
    assert_eq!(m.run_id, "job-1");
    assert_eq!(m.cells, canonical_fixture().cells);
}

#[test]
fn start_is_the_earliest_and_finish_the_latest() {
    let mut s = shards(2);
    s[0].started = STARTED + 40;
    s[1].started = STARTED + 2;
    s[0].finished = STARTED + 300;
    s[1].finished = STARTED + 200;
    let m = merge(s).unwrap();
    assert_eq!(
        (m.started, m.finished, m.shard),
        (STARTED + 2, STARTED + 300, None)
    );
}

#[test]
fn a_duplicate_cell_is_an_error_naming_it_and_both_shards() {
    let mut s = shards(2);
    let dup = s[0].cells[1].clone();
    s[1].cells.push(dup.clone());
    let err = merge(s).unwrap_err();
    assert_eq!(
        err,
        MergeError::DuplicateCell {
            cell: dup.cell.to_string(),
            first: "shard 1/2".into(),
            second: "shard 2/2".into()
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "cell {} is reported twice, by shard 1/2 and by shard 2/2",
            dup.cell
        )
    );
    // Within one whole-run report too.
    let mut r = fixture();
    r.cells.push(r.cells[0].clone());
    assert!(matches!(merge(vec![r]), Err(MergeError::DuplicateCell { .. })));
}

#[test]
fn shards_that_do_not_belong_together_are_refused() {
    assert_eq!(merge(vec![]), Err(MergeError::Empty));

    let (mut a, mut b) = (fixture(), fixture());
    a.cells.truncate(4);
    b.cells.drain(..4);
    b.run_id = "other".into();
    assert!(matches!(
        merge(vec![a.clone(), b]),
        Err(MergeError::RunMismatch { .. })
    ));
    let mut b = fixture();
    b.cells.drain(..4);
    assert_eq!(
        merge(vec![b, a]).unwrap(),
        canonical_fixture(),
        "whole runs of one id and disjoint cells merge"
    );

    let mut s = shards(2);
    s[1].bedlab_version = "0.2.0".into();
    assert!(matches!(merge(s), Err(MergeError::VersionMismatch { .. })));

    let mut s = shards(3);
    s.remove(1);
    let err = merge(s).unwrap_err();
    assert_eq!(
        err,
        MergeError::MissingShards {
            missing: "2".into(),
            count: 3
        }
    );
    assert!(err.to_string().starts_with("shards 2 of 3 are missing"));

    let mut s = shards(2);
    s[1].shard = Some("1/2".into());
    assert_eq!(merge(s), Err(MergeError::DuplicateShard { shard: "1/2".into() }));

    let mut s = shards(2);
    s[1].shard = Some("2/3".into());
    assert!(matches!(merge(s), Err(MergeError::ShardCountMismatch { .. })));

    for bad in ["0/2", "3/2", "x", "1-2"] {
        let mut s = shards(2);
        s[1].shard = Some(bad.into());
        assert!(matches!(merge(s), Err(MergeError::BadShard { .. })), "{bad}");
    }

    let mut s = shards(2);
    s[1].shard = None;
    assert!(matches!(merge(s), Err(MergeError::MixedShards { .. })));
}
