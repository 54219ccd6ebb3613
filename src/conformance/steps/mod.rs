//! Step kinds beyond the basics of `scenario.rs`: waiting for a packet on a link
//! (`wait = "packet"`), packetdrill time windows (`at = "+450ms~550ms"`) and traffic flows
//! (`flow = { proto = "tcp", ... }`). Each kind has its model, its parsing from the raw step
//! and its execution here, so `scenario.rs` and `runner.rs` only dispatch to it.
//!
//! - [`classify`]: what a packet on a link is (the one place that calls the decoder);
//! - [`filter`]: the packet filter language;
//! - [`packet`]: the live watch of the fabric's links and the judgement of a packet wait;
//! - [`flow`]: flow steps, run with the hidden `bedlab flow` agent (`crate::traffic`).

pub mod classify;
pub mod filter;
pub mod flow;
pub mod packet;

use std::time::{Duration, Instant};

use crate::topology::{Diagnostic, ErrorKind};

/// Where a window's times count from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The end of the previous step (for a wait, the moment its event happened).
    Previous,
    /// The start of the cell.
    Cell,
    /// The end of the step with this `id`.
    Step(String),
}

/// A packetdrill time window: the awaited event must happen no earlier than `lo` and no
/// later than `hi` after the anchor. `at = "+25s~35s"` is relative to the previous step,
/// `at = "25s~35s"` to the start of the cell, and `anchor = "<id>"` picks another step
/// (`anchor = "cell"`: the start of the cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub anchor: Anchor,
    pub lo: Duration,
    pub hi: Duration,
}

impl Window {
    /// The absolute window for an anchor time.
    pub fn at(&self, anchor: Instant) -> (Instant, Instant) {
        (anchor + self.lo, anchor + self.hi)
    }

    /// `+450ms~550ms` as written.
    pub fn describe(&self) -> String {
        let f = crate::topology::format_duration;
        let (sign, what) = match &self.anchor {
            Anchor::Previous => ("+", "the previous step".to_string()),
            Anchor::Cell => ("", "the start of the cell".to_string()),
            Anchor::Step(id) => ("+", format!("step {id:?}")),
        };
        format!("{sign}{}~{} after {what}", f(self.lo), f(self.hi))
    }
}

/// Parses `at` when it is a window (`+a~b` or `a~b`); `Ok(None)` for a plain time.
pub fn parse_window(at: &str, anchor: Option<&str>) -> Result<Option<Window>, String> {
    if !at.contains('~') {
        return Ok(None);
    }
    let (relative, rest) = match at.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, at),
    };
    let (lo, hi) = super::scenario::parse_duration_range(rest.trim_start_matches('+'))?;
    let anchor = match (relative, anchor) {
        (true, None) => Anchor::Previous,
        (true, Some("cell")) => Anchor::Cell,
        (true, Some(id)) => Anchor::Step(id.to_string()),
        (false, None) => Anchor::Cell,
        (false, Some(_)) => {
            return Err("a window relative to another step is written with a +, e.g. \"+1s~2s\"".into())
        }
    };
    Ok(Some(Window { anchor, lo, hi }))
}

/// What a wait for a packet expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    /// `count` matching packets must be seen (in the window, if there is one).
    #[default]
    Seen,
    /// No matching packet may be seen until the timeout (or within the window).
    Absent,
}

/// `wait = "packet"`: packets matching `filter` at the link ends `on`.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketWait {
    /// Link names (`node/interface`).
    pub on: Vec<String>,
    pub filter: filter::Expr,
    /// The filter as written (for messages).
    pub filter_text: String,
    pub count: u32,
    pub expect: Presence,
    pub timeout: Duration,
    /// Where counting starts when there is no window: the end of this step (or the cell's
    /// start) instead of the previous step's end.
    pub since: Option<Anchor>,
}

/// The keys of a `wait = "packet"` step as written.
#[derive(Debug, Clone)]
pub struct PacketFields {
    pub on: Option<Vec<String>>,
    pub filter: Option<String>,
    pub count: Option<u32>,
    pub expect: Option<String>,
    pub timeout: Duration,
    /// `anchor` without a window: where counting starts.
    pub since: Option<Anchor>,
}

/// Reports an error about `needle` (text of the file), `offset` bytes into it.
pub type ErrorAt<'a> = &'a dyn Fn(&str, usize, ErrorKind, String, String) -> Box<Diagnostic>;

/// Checks a packet wait: links that exist, a filter that parses (errors at the column of the
/// offending word), a count of at least 1, `expect` seen or absent.
pub fn parse_packet_wait(
    f: &PacketFields,
    links: &[String],
    is_node: &dyn Fn(&str) -> bool,
    error: ErrorAt<'_>,
) -> Result<PacketWait, Box<Diagnostic>> {
    let on = f.on.clone().unwrap_or_default();
    if on.is_empty() {
        return Err(error(
            "packet",
            0,
            ErrorKind::MissingKey,
            "on = \"node/interface\" (the link to watch) with wait = \"packet\"".into(),
            "none".into(),
        ));
    }
    for l in &on {
        if !links.contains(l) {
            return Err(error(
                l,
                0,
                ErrorKind::DanglingReference,
                format!("a link of the topology ({})", links.join(", ")),
                format!("{l:?}"),
            ));
        }
    }
    let Some(text) = f.filter.clone() else {
        return Err(error(
            "packet",
            0,
            ErrorKind::MissingKey,
            "filter = \"...\" with wait = \"packet\" (e.g. \"ka from peer-a\")".into(),
            "none".into(),
        ));
    };
    let filter = filter::Expr::parse(&text, is_node).map_err(|e| {
        error(
            &text,
            e.offset,
            ErrorKind::BadValue,
            format!("in the filter, {}", e.expected),
            e.found,
        )
    })?;
    let count = f.count.unwrap_or(1);
    if count == 0 {
        return Err(error(
            "count",
            0,
            ErrorKind::BadValue,
            "a count of at least 1 (for \"no such packet\" write expect = \"absent\")".into(),
            "0".into(),
        ));
    }
    let expect = match f.expect.as_deref() {
        None | Some("seen") => Presence::Seen,
        Some("absent") => Presence::Absent,
        Some(other) => {
            return Err(error(
                other,
                0,
                ErrorKind::BadValue,
                "expect = \"seen\" or \"absent\"".into(),
                format!("{other:?}"),
            ))
        }
    };
    Ok(PacketWait {
        on,
        filter,
        filter_text: text,
        count,
        expect,
        timeout: f.timeout,
        since: f.since.clone(),
    })
}

/// The verdict of a packet wait, from the times of the matching packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Pass(String),
    Fail(String),
}

/// Judges a wait from the times of the packets that matched after the baseline, in order.
/// `window` is absolute; `deadline` is when waiting stopped (the window's end or the
/// timeout). Pure, so every rule is unit-tested.
pub fn judge(
    wait: &PacketWait,
    baseline: Instant,
    matches: &[Instant],
    window: Option<(Instant, Instant)>,
    deadline: Instant,
) -> Judgement {
    let ms = |t: Instant| format!("{} ms", t.saturating_duration_since(baseline).as_millis());
    let what = format!("{:?} on {}", wait.filter_text, wait.on.join(", "));
    let n = wait.count.max(1) as usize;
    match (wait.expect, window) {
        (Presence::Seen, None) => match matches.get(n - 1) {
            Some(&t) if t <= deadline => {
                Judgement::Pass(format!("{what}: {n} seen, the last {} after the anchor", ms(t)))
            }
            _ => Judgement::Fail(format!(
                "{what}: {} of {n} seen in the {} ms after the anchor",
                matches.iter().filter(|&&t| t <= deadline).count(),
                deadline.saturating_duration_since(baseline).as_millis()
            )),
        },
        (Presence::Seen, Some((lo, hi))) => match matches.get(n - 1) {
            Some(&t) if t < lo => Judgement::Fail(format!(
                "{what}: too early: the {} came {} after the anchor, before the window {}~{}",
                ordinal(n),
                ms(t),
                ms(lo),
                ms(hi)
            )),
            Some(&t) if t <= hi => Judgement::Pass(format!(
                "{what}: the {} came {} after the anchor, inside {}~{}",
                ordinal(n),
                ms(t),
                ms(lo),
                ms(hi)
            )),
            Some(&t) => Judgement::Fail(format!(
                "{what}: too late: the {} came {} after the anchor, after the window {}~{}",
                ordinal(n),
                ms(t),
                ms(lo),
                ms(hi)
            )),
            None => Judgement::Fail(format!(
                "{what}: too late: {} of {n} seen by the end of the window {}~{}",
                matches.len(),
                ms(lo),
                ms(hi)
            )),
        },
        (Presence::Absent, w) => {
            let (lo, hi) = w.unwrap_or((baseline, deadline));
            match matches.iter().find(|&&t| t >= lo && t <= hi) {
                Some(&t) => Judgement::Fail(format!(
                    "{what}: one was seen {} after the anchor where none may be",
                    ms(t)
                )),
                None => Judgement::Pass(format!("{what}: none seen from {} to {}", ms(lo), ms(hi))),
            }
        }
    }
}

fn ordinal(n: usize) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        n => format!("{n}th"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(count: u32, expect: Presence) -> PacketWait {
        PacketWait {
            on: vec!["nat-a/wan".into()],
            filter: filter::Expr::parse("ka", &|_| true).unwrap(),
            filter_text: "ka".into(),
            count,
            expect,
            timeout: Duration::from_secs(5),
            since: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A peer sending keepalives every `period`, judged against a 500 ms ± 100 ms window
    /// anchored at the previous keepalive: only the right period passes.
    fn keepalive_cell(period: Duration) -> Judgement {
        let t0 = Instant::now();
        let kas: Vec<Instant> = (1..6).map(|i| t0 + period * i).collect();
        let w = parse_window("+400ms~600ms", None).unwrap().unwrap();
        let (lo, hi) = w.at(t0);
        let after: Vec<Instant> = kas.into_iter().filter(|&t| t > t0).collect();
        judge(&wait(1, Presence::Seen), t0, &after, Some((lo, hi)), hi)
    }

    #[test]
    fn a_wrong_keepalive_period_fails_the_window() {
        assert!(matches!(keepalive_cell(ms(500)), Judgement::Pass(_)));
        assert!(matches!(keepalive_cell(ms(590)), Judgement::Pass(_)));
        match keepalive_cell(ms(1000)) {
            Judgement::Fail(m) => assert!(m.contains("too late"), "{m}"),
            p => panic!("a 1 s period passed a 400~600 ms window: {p:?}"),
        }
        match keepalive_cell(ms(250)) {
            Judgement::Fail(m) => assert!(m.contains("too early") && m.contains("250 ms"), "{m}"),
            p => panic!("a 250 ms period passed a 400~600 ms window: {p:?}"),
        }
    }

    #[test]
    fn counts_timeouts_and_absence() {
        let t0 = Instant::now();
        let three = [t0 + ms(10), t0 + ms(20), t0 + ms(30)];
        let end = t0 + ms(100);
        assert!(matches!(
            judge(&wait(3, Presence::Seen), t0, &three, None, end),
            Judgement::Pass(_)
        ));
        assert!(matches!(
            judge(&wait(4, Presence::Seen), t0, &three, None, end),
            Judgement::Fail(_)
        ));
        // Seen, but only after the deadline.
        assert!(matches!(
            judge(&wait(1, Presence::Seen), t0, &three, None, t0 + ms(5)),
            Judgement::Fail(_)
        ));
        assert!(matches!(
            judge(&wait(1, Presence::Absent), t0, &[], None, end),
            Judgement::Pass(_)
        ));
        assert!(matches!(
            judge(&wait(1, Presence::Absent), t0, &three, None, end),
            Judgement::Fail(_)
        ));
        // Absent within a window: packets outside it do not count.
        let w = Some((t0 + ms(40), t0 + ms(90)));
        assert!(matches!(
            judge(&wait(1, Presence::Absent), t0, &three, w, end),
            Judgement::Pass(_)
        ));
        // The count-th packet decides a window.
        let w = Some((t0 + ms(25), t0 + ms(35)));
        assert!(matches!(
            judge(&wait(3, Presence::Seen), t0, &three, w, end),
            Judgement::Pass(_)
        ));
        assert!(matches!(
            judge(&wait(2, Presence::Seen), t0, &three, w, end),
            Judgement::Fail(_)
        ));
    }

    #[test]
    fn windows_parse_with_their_anchor() {
        assert_eq!(parse_window("+2s", None), Ok(None));
        let w = parse_window("+450ms~550ms", None).unwrap().unwrap();
        assert_eq!((w.anchor, w.lo, w.hi), (Anchor::Previous, ms(450), ms(550)));
        let w = parse_window("25s~35s", None).unwrap().unwrap();
        assert_eq!(w.anchor, Anchor::Cell);
        let w = parse_window("+1s~2s", Some("first-ka")).unwrap().unwrap();
        assert_eq!(w.anchor, Anchor::Step("first-ka".into()));
        assert!(w.describe().contains("first-ka"));
        assert_eq!(
            parse_window("+1s~2s", Some("cell")).unwrap().unwrap().anchor,
            Anchor::Cell
        );
        assert!(parse_window("+2s~1s", None).is_err());
        assert!(parse_window("1s~2s", Some("x")).is_err());
        assert!(parse_window("+1s~two", None).is_err());
    }
}
