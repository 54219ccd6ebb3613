//! A cell's exchange as an inline SVG sequence diagram for report.html.
//!
//! One vertical lane per node, laid out as the network is: peer A and its NAT on the left,
//! the router in the middle, peer B's NAT and peer B on the right (more peers split between
//! the sides), so that an arrow's length says how far a datagram went. Direct paths are
//! solid teal, via-router paths dashed violet, anything else solid grey: the dash tells
//! them apart without colour. Runs of identical consecutive messages (keepalives) become
//! one arrow marked `×n`, and a long exchange shows its head and tail around a band that
//! says how many messages are left out, so a 30-minute soak still draws a readable page.
//! Arrowheads are drawn as polygons rather than SVG markers because marker ids would have
//! to be unique across every diagram in the page.

use super::escape::{html, truncate};
use super::layout::value_cmp;
use crate::conformance::model::SeqMessage;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Rows (arrows or the omitted band) drawn at most; past this the diagram keeps
/// [`HEAD_ROWS`] and [`TAIL_ROWS`].
pub const MAX_ROWS: usize = 60;
/// Rows kept from the start of a long exchange.
pub const HEAD_ROWS: usize = 45;
/// Rows kept from the end of a long exchange.
pub const TAIL_ROWS: usize = 12;
/// Identical consecutive messages collapse into one arrow from this many on.
pub const COLLAPSE_RUN: usize = 3;

const LEFT: i64 = 92;
const LANE_W: i64 = 156;
const RIGHT: i64 = 16;
const MIN_W: i64 = 600;
const LEGEND_Y: i64 = 16;
const HEAD_Y: i64 = 36;
const HEAD_H: i64 = 28;
const BOX_W: i64 = 128;
const FIRST_ROW: i64 = HEAD_Y + HEAD_H + 28;
const ROW: i64 = 30;
const ARROW: i64 = 9;

/// Colours also set as attributes, so the diagram reads right even where the page's CSS
/// (which adapts them to dark mode) is not applied.
/// A label's outline in the background colour, so that lifelines it crosses do not cut
/// through the text (the page's CSS recolours it in dark mode).
const HALO: &str = "paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"4\" stroke-linejoin=\"round\"";
const DIRECT: &str = "#0f766e";
const VIA: &str = "#7c3aed";
const OTHER: &str = "#64748b";

/// What a lane stands for, which decides its place and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Peer,
    Nat,
    Router,
    Other,
}

impl Role {
    fn of(name: &str) -> Role {
        let n = name.to_ascii_lowercase();
        if n.contains("router") || n.contains("relay") {
            Role::Router
        } else if n == "nat"
            || n.starts_with("nat-")
            || n.starts_with("nat_")
            || n.ends_with("-nat")
            || n.contains("-nat-")
            || n.starts_with("cgnat")
        {
            Role::Nat
        } else if ["peer", "host", "client"].iter().any(|p| n.starts_with(p)) {
            Role::Peer
        } else {
            Role::Other
        }
    }

    fn class(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::Nat => "nat",
            Role::Router => "router",
            Role::Other => "other",
        }
    }
}

/// The side a peer and its NAT belong to: the name without its role word (`peer-a`,
/// `nat-a` → `a`).
fn group_key(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    let mut k = n.as_str();
    for p in [
        "peer-", "peer_", "host-", "host_", "client-", "client_", "cgnat-", "nat-", "nat_",
    ] {
        if let Some(rest) = k.strip_prefix(p) {
            k = rest;
            break;
        }
    }
    k = k.strip_suffix("-nat").unwrap_or(k);
    k.to_string()
}

/// The lanes of an exchange in drawing order: the first half of the peer groups (peer,
/// then its NATs) on the left, routers and other nodes in the middle, the rest of the
/// groups mirrored (NATs, then peer) on the right.
pub(crate) fn lanes(messages: &[SeqMessage]) -> Vec<String> {
    let mut names: Vec<&str> = messages
        .iter()
        .flat_map(|m| [m.from.as_str(), m.to.as_str()])
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut groups: BTreeMap<String, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    let mut middle: Vec<&str> = Vec::new();
    for &n in &names {
        match Role::of(n) {
            Role::Peer => groups.entry(group_key(n)).or_default().0.push(n),
            Role::Nat => groups.entry(group_key(n)).or_default().1.push(n),
            Role::Router | Role::Other => middle.push(n),
        }
    }
    middle.sort_by(|a, b| Role::of(a).cmp(&Role::of(b)).then_with(|| value_cmp(a, b)));
    let mut keys: Vec<&String> = groups.keys().collect();
    keys.sort_by(|a, b| value_cmp(a, b));
    let left = keys.len().div_ceil(2);
    let mut out: Vec<String> = Vec::new();
    for k in &keys[..left] {
        if let Some((peers, nats)) = groups.get(*k) {
            out.extend(peers.iter().chain(nats).map(|s| s.to_string()));
        }
    }
    out.extend(middle.iter().map(|s| s.to_string()));
    for k in &keys[left..] {
        if let Some((peers, nats)) = groups.get(*k) {
            out.extend(nats.iter().rev().chain(peers.iter().rev()).map(|s| s.to_string()));
        }
    }
    out
}

/// One row of the diagram.
enum Row<'a> {
    /// `count` identical consecutive messages, the first of which is `first`.
    Msg {
        first: &'a SeqMessage,
        count: usize,
        last: &'a SeqMessage,
    },
    /// Messages left out of a long exchange.
    Gap {
        messages: usize,
        from_ms: u64,
        to_ms: u64,
    },
}

impl Row<'_> {
    fn messages(&self) -> usize {
        match self {
            Row::Msg { count, .. } => *count,
            Row::Gap { messages, .. } => *messages,
        }
    }
}

/// Collapses runs of identical messages, then caps the rows.
fn rows(messages: &[SeqMessage]) -> Vec<Row<'_>> {
    let same = |a: &SeqMessage, b: &SeqMessage| {
        a.from == b.from && a.to == b.to && a.label == b.label && a.path == b.path
    };
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut i = 0;
    while i < messages.len() {
        let mut j = i + 1;
        while j < messages.len() && same(&messages[i], &messages[j]) {
            j += 1;
        }
        if j - i >= COLLAPSE_RUN {
            rows.push(Row::Msg {
                first: &messages[i],
                count: j - i,
                last: &messages[j - 1],
            });
        } else {
            rows.extend(messages[i..j].iter().map(|m| Row::Msg {
                first: m,
                count: 1,
                last: m,
            }));
        }
        i = j;
    }
    if rows.len() <= MAX_ROWS {
        return rows;
    }
    let tail = rows.split_off(rows.len() - TAIL_ROWS);
    let middle = rows.split_off(HEAD_ROWS);
    let time = |r: &Row<'_>, end: bool| match r {
        Row::Msg { first, last, .. } => {
            if end {
                last.t_ms
            } else {
                first.t_ms
            }
        }
        Row::Gap { from_ms, to_ms, .. } => {
            if end {
                *to_ms
            } else {
                *from_ms
            }
        }
    };
    let gap = Row::Gap {
        messages: middle.iter().map(Row::messages).sum(),
        from_ms: middle.first().map(|r| time(r, false)).unwrap_or(0),
        to_ms: middle.last().map(|r| time(r, true)).unwrap_or(0),
    };
    rows.push(gap);
    rows.extend(tail);
    rows
}

/// `1.234 s`.
fn secs(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

/// How a message's path is drawn: (CSS class, stroke colour, dash pattern).
fn path_style(path: &str) -> (&'static str, &'static str, Option<&'static str>) {
    match path {
        "direct" => ("msg-direct", DIRECT, None),
        "via-router" => ("msg-via", VIA, Some("7 5")),
        _ => ("msg-other", OTHER, None),
    }
}

/// What the diagram drew, for the caption under it.
pub(crate) struct Drawn {
    pub svg: String,
    pub lanes: usize,
    pub arrows: usize,
    pub omitted: usize,
    pub collapsed: bool,
}

/// Draws `messages` as an SVG; `title` names the diagram for screen readers.
pub(crate) fn sequence_svg(messages: &[SeqMessage], title: &str) -> Drawn {
    let lanes = lanes(messages);
    let index: BTreeMap<&str, usize> = lanes.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let x = |name: &str| LEFT + LANE_W / 2 + LANE_W * index.get(name).copied().unwrap_or(0) as i64;
    let rows = rows(messages);
    let collapsed = rows
        .iter()
        .any(|r| matches!(r, Row::Msg { count, .. } if *count > 1));
    let width = (LEFT + LANE_W * lanes.len() as i64 + RIGHT)
        .max(MIN_W)
        .max(legend_end(collapsed) + RIGHT);
    let body_end = FIRST_ROW + ROW * rows.len() as i64 - ROW / 2;
    let foot = rows.len() > 12;
    let height = body_end + if foot { HEAD_H + 24 } else { 12 };

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"seq\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" \
         height=\"{height}\" role=\"img\" font-family=\"system-ui, sans-serif\" font-size=\"12\">\
         <title>{}</title>",
        html(title)
    );
    legend(&mut s, collapsed);

    // Lanes: a header box, a lifeline, and a footer box on long diagrams.
    for (i, name) in lanes.iter().enumerate() {
        let cx = LEFT + LANE_W / 2 + LANE_W * i as i64;
        let role = Role::of(name).class();
        let label = html(&truncate(name, 18));
        let _ = write!(
            s,
            "<g class=\"lane lane-{role}\" data-lane=\"{}\"><title>{}</title>",
            html(name),
            html(name)
        );
        let boxed = |s: &mut String, y: i64| {
            let _ = write!(
                s,
                "<rect class=\"lane-box\" x=\"{}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{HEAD_H}\" rx=\"6\"/>\
                 <text class=\"lane-name\" x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"600\">{label}</text>",
                cx - BOX_W / 2,
                y + HEAD_H / 2 + 4
            );
        };
        boxed(&mut s, HEAD_Y);
        let _ = write!(
            s,
            "<line class=\"lifeline\" x1=\"{cx}\" y1=\"{}\" x2=\"{cx}\" y2=\"{}\" stroke=\"#cbd5e1\" stroke-width=\"2\"/>",
            HEAD_Y + HEAD_H,
            if foot { body_end + 12 } else { height - 4 }
        );
        if foot {
            boxed(&mut s, body_end + 12);
        }
        s.push_str("</g>");
    }

    let mut arrows = 0;
    let mut omitted = 0;
    for (r, row) in rows.iter().enumerate() {
        let y = FIRST_ROW + ROW * r as i64;
        match row {
            Row::Gap {
                messages,
                from_ms,
                to_ms,
            } => {
                omitted += messages;
                let _ = write!(
                    s,
                    "<g class=\"seq-gap\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"22\" rx=\"4\" fill=\"#f1f5f9\" \
                     stroke=\"#94a3b8\" stroke-dasharray=\"3 3\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" \
                     font-style=\"italic\">{} messages not shown ({} to {}): they are all in the capture</text></g>",
                    LEFT - 4,
                    y - 11,
                    width - LEFT - RIGHT + 8,
                    (LEFT + width - RIGHT) / 2,
                    y + 4,
                    messages,
                    secs(*from_ms),
                    secs(*to_ms)
                );
            }
            Row::Msg { first, count, last } => {
                arrows += 1;
                arrow(&mut s, first, *count, last, x(&first.from), x(&first.to), y);
            }
        }
    }
    s.push_str("</svg>");
    Drawn {
        svg: s,
        lanes: lanes.len(),
        arrows,
        omitted,
        collapsed,
    }
}

/// The legend across the top: one sample per path style.
/// The legend's entries: (path, text).
const LEGEND: [(&str, &str); 3] = [
    ("direct", "direct path"),
    ("via-router", "via the router"),
    ("", "other"),
];
/// The legend's note on collapsed runs.
const COLLAPSED_NOTE: &str = "×n: n identical messages in a row";
/// Rough width of a character of 12px sans-serif text, for layout without a font.
const CHAR_W: i64 = 7;

/// Where the legend's text ends, so that the diagram is at least that wide.
fn legend_end(collapsed: bool) -> i64 {
    let entries: i64 = LEGEND
        .iter()
        .map(|(_, t)| 36 + CHAR_W * t.chars().count() as i64 + 20)
        .sum();
    LEFT + entries
        + if collapsed {
            CHAR_W * COLLAPSED_NOTE.chars().count() as i64
        } else {
            0
        }
}

fn legend(s: &mut String, collapsed: bool) {
    s.push_str("<g class=\"legend\">");
    let mut x = LEFT;
    for (path, text) in LEGEND {
        let (class, colour, dash) = path_style(path);
        let dash = dash
            .map(|d| format!(" stroke-dasharray=\"{d}\""))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<g class=\"{class}\"><line x1=\"{x}\" y1=\"{LEGEND_Y}\" x2=\"{}\" y2=\"{LEGEND_Y}\" stroke=\"{colour}\" \
             stroke-width=\"2\"{dash}/><text class=\"legend-text\" x=\"{}\" y=\"{}\">{text}</text></g>",
            x + 30,
            x + 36,
            LEGEND_Y + 4
        );
        x += 36 + CHAR_W * text.chars().count() as i64 + 20;
    }
    if collapsed {
        let _ = write!(
            s,
            "<text class=\"legend-text\" x=\"{x}\" y=\"{}\">{COLLAPSED_NOTE}</text>",
            LEGEND_Y + 4
        );
    }
    let _ = write!(
        s,
        "<text class=\"legend-text\" x=\"{}\" y=\"{}\" text-anchor=\"end\">time</text>",
        LEFT - 12,
        FIRST_ROW - 18
    );
    s.push_str("</g>");
}

/// One arrow with its label, frame number and time.
fn arrow(s: &mut String, m: &SeqMessage, count: usize, last: &SeqMessage, x1: i64, x2: i64, y: i64) {
    let (class, colour, dash) = path_style(&m.path);
    let dash = dash
        .map(|d| format!(" stroke-dasharray=\"{d}\""))
        .unwrap_or_default();
    let path_word = if m.path.is_empty() {
        String::new()
    } else {
        format!(" ({})", m.path)
    };
    let tip = if count > 1 {
        format!(
            "{count} × {} → {}: {}{path_word}, from {} (frame {}) to {} (frame {})",
            m.from,
            m.to,
            m.label,
            secs(m.t_ms),
            m.frame,
            secs(last.t_ms),
            last.frame
        )
    } else {
        format!(
            "{}, frame {}: {} → {}: {}{path_word}",
            secs(m.t_ms),
            m.frame,
            m.from,
            m.to,
            m.label
        )
    };
    let label = if count > 1 {
        format!("{} ×{count}", m.label)
    } else {
        m.label.clone()
    };
    let frame = if count > 1 {
        format!("#{}–{}", m.frame, last.frame)
    } else if m.frame > 0 {
        format!("#{}", m.frame)
    } else {
        String::new()
    };
    let _ = write!(
        s,
        "<g class=\"msg {class}\"><title>{}</title><text class=\"t\" x=\"{}\" y=\"{}\" text-anchor=\"end\" \
         fill=\"#6b7280\">{}</text>",
        html(&tip),
        LEFT - 12,
        y + 4,
        secs(m.t_ms)
    );
    if x1 == x2 {
        // A message a node sends itself: a small loop to the right of its lifeline.
        let _ = write!(
            s,
            "<path d=\"M{x1} {} h30 v14 h-{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\
             <path class=\"head\" d=\"M{x1} {} l{ARROW} -4.5 v9 z\" fill=\"{colour}\"/>",
            y - 7,
            30 - ARROW,
            y + 7
        );
        let _ = write!(
            s,
            "<text class=\"label\" {HALO} x=\"{}\" y=\"{}\">{}{}</text>",
            x1 + 36,
            y + 4,
            html(&truncate(&label, 22)),
            frame_span(&frame)
        );
    } else {
        let dir = if x2 > x1 { 1 } else { -1 };
        let end = x2 - dir * ARROW;
        let _ = write!(
            s,
            "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{end}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\
             <path class=\"head\" d=\"M{x2} {y} L{end} {} L{end} {} z\" fill=\"{colour}\"/>",
            half_off(y, -1),
            half_off(y, 1)
        );
        let span = (x2 - x1).abs();
        let max_chars = usize::try_from(span / CHAR_W).unwrap_or(12).max(10);
        let _ = write!(
            s,
            "<text class=\"label\" {HALO} x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>",
            (x1 + x2) / 2,
            y - 6,
            html(&truncate(
                &label,
                max_chars.saturating_sub(frame.chars().count() + 1)
            )),
            frame_span(&frame)
        );
    }
    s.push_str("</g>");
}

/// `y ± 4.5` for an arrowhead's corners, written without floats.
fn half_off(y: i64, sign: i64) -> String {
    if sign < 0 {
        format!("{}.5", y - 5)
    } else {
        format!("{}.5", y + 4)
    }
}

/// The frame number after a label, muted.
fn frame_span(frame: &str) -> String {
    if frame.is_empty() {
        String::new()
    } else {
        format!(
            " <tspan class=\"frame\" fill=\"#6b7280\" font-size=\"11\">{}</tspan>",
            html(frame)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, to: &str) -> SeqMessage {
        SeqMessage {
            t_ms: 0,
            from: from.into(),
            to: to.into(),
            label: "x".into(),
            path: String::new(),
            frame: 1,
        }
    }

    #[test]
    fn lanes_follow_the_network() {
        let m = [
            msg("router", "nat-b"),
            msg("peer-b", "nat-b"),
            msg("peer-a", "nat-a"),
            msg("nat-a", "router"),
        ];
        assert_eq!(lanes(&m), ["peer-a", "nat-a", "router", "nat-b", "peer-b"]);
        let m = [
            msg("peer-a", "router"),
            msg("peer-c", "router"),
            msg("peer-b", "peer-a"),
            msg("internet", "router"),
        ];
        assert_eq!(lanes(&m), ["peer-a", "peer-b", "router", "internet", "peer-c"]);
    }

    #[test]
    fn runs_collapse_and_long_exchanges_are_capped() {
        let mut m: Vec<SeqMessage> = (0..5).map(|_| msg("peer-a", "router")).collect();
        m.push(msg("router", "peer-a"));
        let r = rows(&m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].messages(), 5);

        let m: Vec<SeqMessage> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    msg("peer-a", "router")
                } else {
                    msg("router", "peer-a")
                }
            })
            .collect();
        let r = rows(&m);
        assert_eq!(r.len(), HEAD_ROWS + 1 + TAIL_ROWS);
        assert_eq!(r.iter().map(Row::messages).sum::<usize>(), 200);
        assert!(matches!(r[HEAD_ROWS], Row::Gap { messages: 143, .. }));
    }
}
