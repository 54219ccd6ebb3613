//! What the formats share: how a scenario's cells are laid out as matrix tables, the
//! anchors that tie summary.md and report.html together, short outcome labels, and time
//! formatting. Keeping it here makes the Markdown and HTML matrices identical by
//! construction.

use crate::conformance::model::{CellId, CellResult, CheckResult, Outcome, RunReport, Verdict};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The value shown for an axis a cell does not have (a scenario whose cells disagree on
/// their axes is a runner bug, but the report must still show every cell).
pub(crate) const MISSING: &str = "—";

/// Axis values with a meaningful order (from open to restrictive NATs, then the Linux
/// kinds; profiles oldest last). Anything else sorts naturally after these. Using a fixed
/// order rather than the order cells arrive in keeps a sharded run's matrix identical to
/// the unsharded one.
const KNOWN_VALUES: &[&str] = &[
    "none",
    "no-nat",
    "open",
    "full-cone",
    "restricted-cone",
    "restricted",
    "port-restricted-cone",
    "port-restricted",
    "symmetric",
    "linux-masquerade",
    "linux-masquerade-random",
    "userspace",
    "current",
    "v01",
];

/// Orders axis values: known values first in [`KNOWN_VALUES`] order, then natural order
/// (`peer-2` before `peer-10`), the missing marker last.
pub(crate) fn value_cmp(a: &str, b: &str) -> Ordering {
    let rank = |v: &str| {
        if v == MISSING {
            KNOWN_VALUES.len() + 1
        } else {
            KNOWN_VALUES
                .iter()
                .position(|k| *k == v)
                .unwrap_or(KNOWN_VALUES.len())
        }
    };
    rank(a).cmp(&rank(b)).then_with(|| natural_cmp(a, b))
}

/// Compares strings with digit runs compared as numbers.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut s = String::new();
                    while let Some(c) = it.peek().copied().filter(char::is_ascii_digit) {
                        s.push(c);
                        it.next();
                    }
                    s
                };
                let (m, n) = (take(&mut x), take(&mut y));
                let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
                let o = m.len().cmp(&n.len()).then_with(|| m.cmp(n));
                if o != Ordering::Equal {
                    return o;
                }
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x.next();
                y.next();
            }
        }
    }
}

/// The canonical order of cells: scenario, then each parameter in axis-name order with
/// values in [`value_cmp`] order. A total order independent of the order cells ran or
/// shards arrived in, so a merged run and the unsharded run list cells identically.
pub(crate) fn cell_cmp(a: &CellId, b: &CellId) -> Ordering {
    value_cmp(&a.scenario, &b.scenario).then_with(|| {
        for ((ka, va), (kb, vb)) in a.params.iter().zip(&b.params) {
            let o = ka.cmp(kb).then_with(|| value_cmp(va, vb));
            if o.is_ne() {
                return o;
            }
        }
        a.params.len().cmp(&b.params.len())
    })
}

/// The value of `axis` for `cell`, or [`MISSING`].
pub(crate) fn param<'a>(cell: &'a CellResult, axis: &str) -> &'a str {
    cell.cell.params.get(axis).map(String::as_str).unwrap_or(MISSING)
}

/// One scenario's cells laid out for display.
pub(crate) struct ScenarioView<'a> {
    pub name: &'a str,
    /// Indices into `RunReport::cells`, in report order.
    pub cells: Vec<usize>,
    /// Axes with one value across the scenario: shown once as a caption, not as tables.
    pub fixed: Vec<(String, String)>,
    pub row_axis: Option<String>,
    pub col_axis: Option<String>,
    /// Row and column headers (one empty header when there is no such axis).
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// One table per combination of the remaining varying axes.
    pub tables: Vec<MatrixTable>,
}

/// One matrix table: `grid[row][col]` holds cell indices (normally zero or one).
pub(crate) struct MatrixTable {
    /// The other varying axes' values this table is for (empty when there are none).
    pub caption: Vec<(String, String)>,
    pub grid: Vec<Vec<Vec<usize>>>,
}

/// Groups the report's cells by scenario (in order of first appearance) and lays each out.
pub(crate) fn scenarios(report: &RunReport) -> Vec<ScenarioView<'_>> {
    let mut order: Vec<&str> = Vec::new();
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in report.cells.iter().enumerate() {
        let name = c.cell.scenario.as_str();
        if !members.contains_key(name) {
            order.push(name);
        }
        members.entry(name).or_default().push(i);
    }
    order
        .into_iter()
        .map(|name| {
            let cells = members.remove(name).unwrap_or_default();
            lay_out(report, name, cells)
        })
        .collect()
}

/// Picks rows, columns and tables for one scenario. Rows and columns are a `X-a`/`X-b`
/// pair when there is one (NAT of peer A down, NAT of peer B across), else the two axes
/// with the most values; further varying axes get a table per combination.
fn lay_out<'a>(report: &'a RunReport, name: &'a str, cells: Vec<usize>) -> ScenarioView<'a> {
    let axes: BTreeSet<&str> = cells
        .iter()
        .flat_map(|&i| report.cells[i].cell.params.keys().map(String::as_str))
        .collect();
    let values = |axis: &str| -> Vec<String> {
        let mut v: Vec<String> = cells
            .iter()
            .map(|&i| param(&report.cells[i], axis).to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        v.sort_by(|a, b| value_cmp(a, b));
        v
    };
    let mut fixed = Vec::new();
    let mut varying: Vec<(&str, Vec<String>)> = Vec::new();
    for axis in axes {
        let v = values(axis);
        if v.len() == 1 {
            fixed.push((axis.to_string(), v[0].clone()));
        } else {
            varying.push((axis, v));
        }
    }
    let pair = varying.iter().find_map(|(a, _)| {
        let stem = a.strip_suffix("-a").or_else(|| a.strip_suffix("_a"))?;
        let sep = &a[stem.len()..stem.len() + 1];
        let b = format!("{stem}{sep}b");
        varying.iter().any(|(x, _)| *x == b).then(|| (a.to_string(), b))
    });
    let (row_axis, col_axis) = match pair {
        Some((a, b)) => (Some(a), Some(b)),
        None => {
            let mut by_size: Vec<&(&str, Vec<String>)> = varying.iter().collect();
            // Stable sort: equal sizes keep axis-name order.
            by_size.sort_by_key(|x| std::cmp::Reverse(x.1.len()));
            (
                by_size.first().map(|x| x.0.to_string()),
                by_size.get(1).map(|x| x.0.to_string()),
            )
        }
    };
    let headers = |axis: &Option<String>| match axis {
        Some(a) => varying
            .iter()
            .find(|(x, _)| x == a)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        None => vec![String::new()],
    };
    let (rows, cols) = (headers(&row_axis), headers(&col_axis));
    let others: Vec<&str> = varying
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| Some(*a) != row_axis.as_deref() && Some(*a) != col_axis.as_deref())
        .collect();

    let mut combos: Vec<Vec<String>> = cells
        .iter()
        .map(|&i| {
            others
                .iter()
                .map(|a| param(&report.cells[i], a).to_string())
                .collect::<Vec<_>>()
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    combos.sort_by(|x, y| {
        x.iter()
            .zip(y)
            .map(|(a, b)| value_cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let position = |axis: &Option<String>, headers: &[String], i: usize| match axis {
        Some(a) => headers
            .iter()
            .position(|h| h == param(&report.cells[i], a))
            .unwrap_or(0),
        None => 0,
    };
    let tables = combos
        .into_iter()
        .map(|combo| {
            let mut grid = vec![vec![Vec::new(); cols.len()]; rows.len()];
            for &i in &cells {
                let mine = others
                    .iter()
                    .zip(&combo)
                    .all(|(a, v)| param(&report.cells[i], a) == v);
                if mine {
                    grid[position(&row_axis, &rows, i)][position(&col_axis, &cols, i)].push(i);
                }
            }
            let caption = others.iter().map(|a| a.to_string()).zip(combo).collect();
            MatrixTable { caption, grid }
        })
        .collect();
    ScenarioView {
        name,
        cells,
        fixed,
        row_axis,
        col_axis,
        rows,
        cols,
        tables,
    }
}

/// The corner header of a matrix: which axis runs down and which across.
pub(crate) fn corner(view: &ScenarioView<'_>) -> String {
    match (&view.row_axis, &view.col_axis) {
        (Some(r), Some(c)) => format!("{r} ↓ / {c} →"),
        (Some(r), None) => r.clone(),
        _ => "cell".to_string(),
    }
}

/// Ids for each cell's section of report.html, by index into `RunReport::cells`: readable
/// (`cell-bypass.nat-a=full-cone.nat-b=symmetric`), restricted to characters that need no
/// escaping in a URL fragment, and made unique with a suffix when two cells' sanitised
/// names collide.
pub(crate) fn cell_anchors(report: &RunReport) -> Vec<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut seen = HashSet::new();
    report
        .cells
        .iter()
        .map(|c| {
            let mut a = format!("cell-{}", clean(&c.cell.scenario));
            for (k, v) in &c.cell.params {
                a.push_str(&format!(".{}={}", clean(k), clean(v)));
            }
            let mut unique = a.clone();
            let mut n = 2;
            while !seen.insert(unique.clone()) {
                unique = format!("{a}-{n}");
                n += 1;
            }
            unique
        })
        .collect()
}

/// The id of a scenario's section in report.html.
pub(crate) fn scenario_anchor(index: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("scenario-{index}-{clean}")
}

/// The cell's parameters as `k=v,k=v` (the JUnit test name), or the scenario name when the
/// cell has none.
pub(crate) fn params_label(cell: &CellResult) -> String {
    if cell.cell.params.is_empty() {
        return cell.cell.scenario.clone();
    }
    cell.cell
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The checks whose verdict is `v`.
pub(crate) fn checks_with(cell: &CellResult, v: Verdict) -> Vec<&CheckResult> {
    cell.checks.iter().filter(|c| c.verdict == v).collect()
}

/// A short outcome for a matrix cell: `PASS`, `FAIL (ND-05)`, `FAIL (ND-05 +2)`, `ERROR`.
pub(crate) fn short_outcome(cell: &CellResult) -> String {
    let failing = checks_with(cell, Verdict::Fail);
    match (cell.outcome, failing.split_first()) {
        (Outcome::Fail, Some((first, []))) => format!("FAIL ({})", first.id),
        (Outcome::Fail, Some((first, rest))) => format!("FAIL ({} +{})", first.id, rest.len()),
        (o, _) => o.to_string(),
    }
}

/// Count of each verdict among a cell's checks, in verdict order.
pub(crate) fn verdict_counts(cell: &CellResult) -> BTreeMap<Verdict, usize> {
    let mut m = BTreeMap::new();
    for c in &cell.checks {
        *m.entry(c.verdict).or_insert(0) += 1;
    }
    m
}

/// `9 cells: 3 PASS, 2 FAIL, 1 ERROR` (zero counts left out).
pub(crate) fn totals_text(report: &RunReport) -> String {
    let n = report.cells.len();
    let parts: Vec<String> = report.totals().iter().map(|(o, k)| format!("{k} {o}")).collect();
    let cells = if n == 1 { "cell" } else { "cells" };
    if parts.is_empty() {
        format!("{n} {cells}")
    } else {
        format!("{n} {cells}: {}", parts.join(", "))
    }
}

/// The run's overall word: `PASS` when `bedlab run` would exit 0.
pub(crate) fn overall(report: &RunReport) -> &'static str {
    if report.cells.is_empty() {
        "NO CELLS"
    } else if report.success() {
        "PASS"
    } else {
        "FAIL"
    }
}

/// CSS class suffix for an outcome.
pub(crate) fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Error => "error",
        Outcome::Xfail => "xfail",
        Outcome::Xpass => "xpass",
        Outcome::NotApplicable => "na",
    }
}

/// CSS class suffix for a verdict.
pub(crate) fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Warn => "warn",
        Verdict::NotApplicable => "na",
        Verdict::Info => "info",
        Verdict::Error => "error",
    }
}

/// A duration for people: `0.4s`, `1.9s`, `59.9s`, `2m05s`, `1h02m`.
pub(crate) fn duration(ms: u64) -> String {
    if ms < 59_950 {
        tenths(ms)
    } else if ms < 3_599_500 {
        let s = (ms + 500) / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (ms + 30_000) / 60_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// `ms` as seconds rounded to tenths, `1.9s`.
fn tenths(ms: u64) -> String {
    let t = (ms + 50) / 100;
    format!("{}.{}s", t / 10, t % 10)
}

/// Seconds with millisecond precision, as JUnit's `time` attributes want: `1.900`.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (Howard Hinnant's
/// `civil_from_days`), so that timestamps need no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Epoch seconds as ISO 8601 without a zone (`2026-11-22T08:12:23`), as the JUnit schema's
/// `timestamp` wants; the time is UTC.
pub(crate) fn iso8601(epoch: u64) -> String {
    let secs = i64::try_from(epoch).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Epoch seconds for people: `2026-11-22 08:12:23 UTC`.
pub(crate) fn utc(epoch: u64) -> String {
    format!("{} UTC", iso8601(epoch).replace('T', " "))
}

/// The run's wall-clock length, from its start and finish.
pub(crate) fn run_wall_ms(report: &RunReport) -> u64 {
    report
        .finished
        .saturating_sub(report.started)
        .saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0), "0.0s");
        assert_eq!(duration(1949), "1.9s");
        assert_eq!(duration(1950), "2.0s");
        assert_eq!(duration(59_949), "59.9s");
        assert_eq!(duration(59_950), "1m00s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(seconds(1900), "1.900");
    }

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc(1_795_335_143), "2026-11-22 08:12:23 UTC");
    }

    #[test]
    fn values_sort_known_then_naturally() {
        let mut v = vec!["symmetric", "peer-10", "full-cone", MISSING, "peer-2", "none"];
        v.sort_by(|a, b| value_cmp(a, b));
        assert_eq!(
            v,
            ["none", "full-cone", "symmetric", "peer-2", "peer-10", MISSING]
        );
    }
}
