//! Router discovery: RS-01..04, RA-01..09.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::conformance::decode::{addr, Decoded, Endpoint, Kind, Pio, Profile};
use crate::conformance::model::Verdict;

use super::view::{ra_valid, rs_valid, Rebinding, View};
use super::{dur_ns, secs, Finding, Walk};

/// At most this many examples are spelled out in a message.
const EXAMPLES: usize = 3;

/// Collects offending frames and a few described examples, in bounded memory: how many
/// were added, the first [`EXAMPLES`] described, and only the smallest distinct frames
/// (evidence shows at most [`super::MAX_FRAMES`] of them, sorted), so that a check over a
/// capture of any size keeps the same few bytes however many packets offend.
#[derive(Default)]
pub(super) struct Offences {
    /// The smallest distinct frames added, sorted (frame 0, "no frame", kept apart).
    frames: Vec<u64>,
    pub examples: Vec<String>,
    /// Offences added (a frame added twice counts twice), frame 0 included.
    count: usize,
    /// Offences added with frame 0.
    zeros: usize,
}

impl Offences {
    pub fn add(&mut self, frame: u64, what: String) {
        self.count += 1;
        if frame == 0 {
            self.zeros += 1;
        } else if let Err(at) = self.frames.binary_search(&frame) {
            if at < super::MAX_FRAMES {
                self.frames.insert(at, frame);
                self.frames.truncate(super::MAX_FRAMES);
            }
        }
        if self.examples.len() < EXAMPLES {
            self.examples.push(format!("frame {frame}: {what}"));
        }
    }
    /// FAIL with these offences (their text and frames) when there are any, else what
    /// `pass` builds: the shape of most checks' verdict.
    pub fn or_pass(self, pass: impl FnOnce() -> Finding) -> Finding {
        if self.is_empty() {
            pass()
        } else {
            let text = self.text();
            Finding::new(Verdict::Fail, text, self.frames())
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The evidence frames: the smallest distinct ones, frame 0 first when one was added.
    pub fn frames(&self) -> Vec<u64> {
        let zero = (self.zeros > 0).then_some(0);
        zero.into_iter().chain(self.frames.iter().copied()).collect()
    }
    /// Forgets the offences that named no frame (frame 0) in the count of "more", as if
    /// they had not been added, keeping their examples (the checks that add them describe
    /// what is missing, not a packet).
    pub fn forget_frame_zero(&mut self) {
        self.count -= self.zeros;
        self.zeros = 0;
    }
    pub fn text(&self) -> String {
        let more = self.count.saturating_sub(self.examples.len());
        let mut s = self.examples.join("; ");
        if more > 0 {
            s.push_str(&format!(" (and {more} more)"));
        }
        s
    }
}

/// RFC 4861 validity problems of an ND message, as words (empty when valid). `min_len` is
/// the message's minimum ICMPv6 length.
pub(super) fn nd_problems(r: &Decoded, min_len: usize) -> Vec<String> {
    let mut p = Vec::new();
    let (Some(ih), Some(icmp)) = (&r.inner, &r.icmp) else {
        p.push("not a complete ICMPv6 message".into());
        return p;
    };
    if ih.hop_limit != 255 {
        p.push(format!("hop limit {}", ih.hop_limit));
    }
    if icmp.code != 0 {
        p.push(format!("code {}", icmp.code));
    }
    if !icmp.checksum_ok {
        p.push("checksum invalid".into());
    }
    if icmp.len < min_len {
        p.push(format!("ICMPv6 length {} < {min_len}", icmp.len));
    }
    if icmp.zero_len_option {
        p.push("an option of length 0".into());
    }
    if icmp.option_overrun {
        p.push("an option runs past the message".into());
    }
    p
}

fn first_frames<'a>(it: impl Iterator<Item = &'a Decoded>) -> Vec<u64> {
    it.take(2).map(|r| r.frame).collect()
}

pub(super) fn rs01(v: &View<'_>) -> Finding {
    let rss: Vec<&Decoded> = v
        .control_packets()
        .map(|p| p.0)
        .filter(|r| View::is_rs(r))
        .collect();
    if rss.is_empty() {
        return Finding::na("no RS in this capture");
    }
    let mut off = Offences::default();
    for r in &rss {
        let p = nd_problems(r, 8);
        if !p.is_empty() {
            off.add(r.frame, p.join(", "));
        }
    }
    if off.is_empty() {
        Finding::new(
            Verdict::Pass,
            format!(
                "{} RS, all with hop limit 255, code 0, a valid checksum and well-formed options",
                rss.len()
            ),
            first_frames(rss.into_iter()),
        )
    } else {
        Finding::new(Verdict::Fail, format!("invalid RS: {}", off.text()), off.frames())
    }
}

pub(super) fn rs02(v: &View<'_>) -> Finding {
    let rss: Vec<&Decoded> = v
        .control_packets()
        .map(|p| p.0)
        .filter(|r| View::is_rs(r))
        .collect();
    if rss.is_empty() {
        return Finding::na("no RS in this capture");
    }
    let mut off = Offences::default();
    for r in &rss {
        let Some(ih) = &r.inner else { continue };
        let all_routers: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        let dst_ok = ih.dst == all_routers || (addr::is_link_local(&ih.dst) && !addr::is_multicast(&ih.dst));
        let src_ok = ih.src.is_unspecified() || addr::is_link_local(&ih.src);
        if !dst_ok {
            off.add(
                r.frame,
                format!(
                    "destination {} (must be ff02::2 or the router's link-local)",
                    ih.dst
                ),
            );
        }
        if !src_ok {
            off.add(r.frame, format!("source {} (must be :: or link-local)", ih.src));
        }
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "{} RS to ff02::2 (or link-local) from :: or link-local",
                rss.len()
            ),
            first_frames(rss.into_iter()),
        )
    })
}

pub(super) fn rs03(v: &View<'_>) -> Finding {
    let from_unspec: Vec<&Decoded> = v
        .control_packets()
        .map(|p| p.0)
        .filter(|r| View::is_rs(r) && r.inner.is_some_and(|h| h.src.is_unspecified()))
        .collect();
    if from_unspec.is_empty() {
        return Finding::na("no RS from :: in this capture");
    }
    let with: Vec<&Decoded> = from_unspec
        .iter()
        .copied()
        .filter(|r| {
            r.icmp
                .as_ref()
                .is_some_and(|i| i.options.iter().any(|o| o.kind == 1))
        })
        .collect();
    if with.is_empty() {
        return Finding::new(
            Verdict::Pass,
            format!(
                "{} RS from ::, none with a Source Link-Layer Address option",
                from_unspec.len()
            ),
            first_frames(from_unspec.into_iter()),
        );
    }
    let value = match with[0].kind {
        Kind::Rs { slla: Some(ll) } => format!(" (value {})", addr::fmt_ll(&ll)),
        _ => String::new(),
    };
    Finding::new(
        v.inputs.deviation(),
        format!(
            "{} of {} RS from :: carry a Source Link-Layer Address option{value}, which RFC 4861 §4.1 forbids \
             when the source is unspecified (a documented 6bed4 deviation)",
            with.len(),
            from_unspec.len()
        ),
        with.iter().map(|r| r.frame).collect(),
    )
}

pub(super) fn rs04(v: &View<'_>) -> Finding {
    let tol = v.inputs.tolerance_ns();
    // RSs per sending socket.
    let mut by_socket: BTreeMap<Endpoint, Vec<&Decoded>> = BTreeMap::new();
    for (f, _) in v.control_packets() {
        if View::is_rs(f) {
            if let Some(s) = f.src() {
                by_socket.entry(s).or_default().push(f);
            }
        }
    }
    if by_socket.is_empty() {
        return Finding::na("no RS in this capture");
    }
    let schedule = v.inputs.expect.rs_schedule.as_ref();
    let mut verdict = Verdict::Pass;
    let mut notes = Vec::new();
    let mut frames = Vec::new();
    let mut any_ra = false;
    for (socket, rss) in &by_socket {
        let peer = v.peer_of_socket(*socket).and_then(|i| v.peers().get(i));
        let ras: Vec<u64> = peer
            .map(|p| p.ras.iter().map(|r| r.0).collect())
            .unwrap_or_default();
        let first_ra = ras.first().copied();
        any_ra |= first_ra.is_some();
        let before: Vec<&&Decoded> = rss
            .iter()
            .filter(|r| first_ra.is_none_or(|t| r.ts_ns <= t))
            .collect();
        let gaps: Vec<u64> = before
            .windows(2)
            .map(|w| w[1].ts_ns.saturating_sub(w[0].ts_ns))
            .collect();
        let shown: Vec<String> = gaps.iter().map(|g| format!("{:.1}", *g as f64 / 1e9)).collect();
        let name = peer.map_or_else(|| socket.to_string(), |p| p.name.clone());
        if !gaps.is_empty() {
            notes.push(format!("{name}: RS intervals {} s", shown.join(", ")));
        }
        // Backoff as configured.
        if let Some(s) = schedule.filter(|s| !s.is_empty()) {
            for (i, g) in gaps.iter().enumerate() {
                let want = dur_ns(s[i.min(s.len() - 1)]);
                let slack = tol.max(want / 10);
                if g.abs_diff(want) > slack {
                    verdict = worst(verdict, Verdict::Warn);
                    frames.push(before[i + 1].frame);
                    notes.push(format!(
                        "{name}: RS interval {} where the schedule says {}",
                        secs(*g),
                        secs(want)
                    ));
                    break;
                }
            }
        }
        // Stops after a valid RA: an RS while holding a fresh address continues the schedule.
        let window = schedule
            .and_then(|s| s.last())
            .map(|d| dur_ns(*d))
            .or_else(|| gaps.iter().copied().max())
            .unwrap_or(30_000_000_000)
            .max(1_000_000_000)
            .saturating_mul(4);
        let continuing: Vec<&&Decoded> =
            rss.iter()
                .filter(|r| {
                    ras.iter().rev().find(|&&t| t <= r.ts_ns).is_some_and(|&t| {
                        r.ts_ns > t.saturating_add(tol) && r.ts_ns < t.saturating_add(window)
                    })
                })
                .collect();
        match continuing.len() {
            0 => {}
            1 => {
                verdict = worst(verdict, Verdict::Warn);
                frames.push(continuing[0].frame);
                notes.push(format!(
                    "{name}: one RS after a valid RA (frame {})",
                    continuing[0].frame
                ));
            }
            n => {
                verdict = worst(verdict, Verdict::Fail);
                frames.extend(continuing.iter().take(3).map(|r| r.frame));
                notes.push(format!(
                    "{name}: {n} RS after a valid RA: solicitation did not stop (frames {})",
                    continuing
                        .iter()
                        .take(3)
                        .map(|r| r.frame.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let (Some(t), true) = (first_ra, continuing.is_empty()) {
            notes.push(format!(
                "{name}: no RS after the RA at {}",
                secs(t.saturating_sub(v.t0()))
            ));
        }
    }
    if !any_ra && verdict == Verdict::Pass {
        if schedule.is_none() {
            return Finding::new(
                Verdict::Info,
                format!(
                    "no valid RA reached a soliciting peer; no schedule expected. {}",
                    notes.join("; ")
                ),
                frames,
            );
        }
        notes.push("no valid RA: whether solicitation stops is not shown".into());
    }
    if schedule.is_none() {
        notes.push("backoff not judged (no schedule expected)".into());
    }
    if frames.is_empty() {
        frames = by_socket
            .values()
            .flat_map(|v| v.iter().take(2).map(|r| r.frame))
            .collect();
    }
    Finding::new(verdict, notes.join("; "), frames)
}

pub(super) fn worst(a: Verdict, b: Verdict) -> Verdict {
    if super::severity(b) > super::severity(a) {
        b
    } else {
        a
    }
}

pub(super) fn ra01(v: &View<'_>) -> Finding {
    let ras: Vec<&Decoded> = v
        .control_packets()
        .map(|p| p.0)
        .filter(|r| View::is_ra(r))
        .collect();
    if ras.is_empty() {
        return Finding::na("no RA in this capture");
    }
    let mut off = Offences::default();
    for r in &ras {
        let mut p = nd_problems(r, 16);
        if let Some(ih) = &r.inner {
            if !addr::is_link_local(&ih.src) {
                p.insert(0, format!("source {} is not link-local", ih.src));
            }
        }
        if !p.is_empty() {
            off.add(r.frame, p.join(", "));
        }
    }
    if off.is_empty() {
        Finding::new(
            Verdict::Pass,
            format!(
                "{} RA, all from a link-local source with hop limit 255, code 0 and a valid checksum",
                ras.len()
            ),
            first_frames(ras.into_iter()),
        )
    } else {
        Finding::new(Verdict::Fail, format!("invalid RA: {}", off.text()), off.frames())
    }
}

/// An RA the router sent in answer to an RS: (RS as the router saw it, RA as it sent it).
pub(super) struct Answer<'a> {
    pub rs: &'a Decoded,
    pub ra: &'a Decoded,
}

/// Pairs router RAs with the RSs they answer: an RA to endpoint E answers E's latest
/// pending RS. Returns the pairs, RAs that went to an endpoint with no pending RS while
/// another endpoint's RS was pending (misdirected), and unsolicited RAs.
pub(super) fn answers<'a>(
    v: &View<'a>,
) -> (Vec<Answer<'a>>, Vec<(&'a Decoded, &'a Decoded)>, Vec<&'a Decoded>) {
    let window = v.inputs.tolerance_ns().saturating_add(2_000_000_000);
    let mut pending: BTreeMap<Endpoint, &'a Decoded> = BTreeMap::new();
    let (mut pairs, mut wrong, mut unsolicited) = (Vec::new(), Vec::new(), Vec::new());
    for (f, _) in v.control_packets() {
        if View::is_rs(f) {
            // The RS as the router got it; one lost on the way asked for nothing.
            if let Some(l) = v.router_view(f).filter(|l| l.towards_router && rs_valid(l)) {
                if let Some(s) = l.src() {
                    pending.insert(s, l);
                }
            }
        } else if View::is_ra(f) && f.from_router {
            let Some(to) = f.dst() else { continue };
            if let Some(rs) = pending.remove(&to) {
                pairs.push(Answer { rs, ra: f });
            } else if let Some((&k, &rs)) = pending
                .iter()
                .filter(|(_, rs)| f.ts_ns.saturating_sub(rs.ts_ns) <= window)
                .max_by_key(|(_, rs)| rs.ts_ns)
            {
                pending.remove(&k);
                wrong.push((rs, f));
            } else {
                unsolicited.push(f);
            }
        }
    }
    (pairs, wrong, unsolicited)
}

pub(super) fn ra02(v: &View<'_>) -> Finding {
    let (pairs, wrong, _) = answers(v);
    if pairs.is_empty() && wrong.is_empty() {
        return Finding::na("no RA answering an RS in this capture");
    }
    let mut off = Offences::default();
    for (rs, ra) in &wrong {
        off.add(
            ra.frame,
            format!(
                "RA to {}, but the RS (frame {}) came from {}",
                ra.dst().map_or("?".into(), |d| d.to_string()),
                rs.frame,
                rs.src().map_or("?".into(), |d| d.to_string())
            ),
        );
    }
    for Answer { rs, ra } in &pairs {
        let (Some(rsh), Kind::Ra { dst, .. }) = (&rs.inner, &ra.kind) else {
            continue;
        };
        let requester = ra.dst();
        let ok = match ra.profile {
            Profile::Current => {
                let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                *dst == all_nodes || (!rsh.src.is_unspecified() && *dst == rsh.src)
            }
            Profile::V01 => addr::is_link_local(dst) && addr::decode_v(dst) == requester,
        };
        if !ok {
            let want = match ra.profile {
                Profile::Current => "ff02::1".to_string(),
                Profile::V01 => requester.map_or("fe80::<IID>".into(), |r| {
                    addr::encode_v(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), r).to_string()
                }),
            };
            off.add(
                ra.frame,
                format!(
                    "inner destination {dst}, the {} profile needs {want}",
                    ra.profile.name()
                ),
            );
        }
    }
    off.or_pass(|| {
        let p = &pairs[0];
        Finding::new(
            Verdict::Pass,
            format!(
                "{} RA went back to the outer IPv4:port of the RS they answer (e.g. {}) with the profile's inner destination",
                pairs.len(),
                p.rs.src().map_or("?".into(), |s| s.to_string())
            ),
            vec![p.rs.frame, p.ra.frame],
        )
    })
}

pub(super) fn ra03(v: &View<'_>) -> Finding {
    let (pairs, _, _) = answers(v);
    if pairs.is_empty() {
        return Finding::na("no RA answering an RS in this capture");
    }
    let limit = v.inputs.tolerance_ns().saturating_add(500_000_000);
    let mut off = Offences::default();
    let mut max = 0u64;
    for Answer { rs, ra } in &pairs {
        let d = ra.ts_ns.saturating_sub(rs.ts_ns);
        max = max.max(d);
        if d > limit {
            off.add(
                ra.frame,
                format!("RA {} after the RS (frame {})", secs(d), rs.frame),
            );
        }
    }
    if off.is_empty() {
        Finding::new(
            Verdict::Pass,
            format!("{} RA, the slowest {} after its RS", pairs.len(), secs(max)),
            vec![pairs[0].rs.frame, pairs[0].ra.frame],
        )
    } else {
        Finding::new(
            Verdict::Warn,
            format!("slower than 0.5 s: {}", off.text()),
            off.frames(),
        )
    }
}

/// The router's RAs (sender's side), without injected ones.
fn router_ras<'a>(v: &View<'a>) -> Vec<&'a Decoded> {
    v.control_packets()
        .map(|p| p.0)
        .filter(|r| View::is_ra(r) && r.from_router)
        .collect()
}

/// The PIO that carries the requester's mapping: the first with L and A set, else the first.
pub(super) fn mapping_pio(prefixes: &[Pio]) -> Option<&Pio> {
    prefixes
        .iter()
        .find(|p| p.on_link && p.autonomous)
        .or(prefixes.first())
}

pub(super) fn ra04(v: &View<'_>) -> Finding {
    let ras = router_ras(v);
    if ras.is_empty() {
        return Finding::na("no RA from the router in this capture");
    }
    let mut off = Offences::default();
    let mut checked = 0;
    for r in &ras {
        let Kind::Ra { prefixes, .. } = &r.kind else {
            continue;
        };
        checked += 1;
        let Some(first) = prefixes.first() else {
            off.add(r.frame, "no Prefix Information option".into());
            continue;
        };
        let mut p = Vec::new();
        if !(first.on_link && first.autonomous) {
            p.push(format!(
                "first PIO without L and A ({}{})",
                if first.on_link { "L" } else { "-" },
                if first.autonomous { "A" } else { "-" }
            ));
        }
        let want = r.profile.pio_len();
        if first.len != want {
            p.push(format!(
                "first PIO length {} (the {} profile uses {want})",
                first.len,
                r.profile.name()
            ));
        }
        for pio in prefixes.iter() {
            if pio.preferred > pio.valid {
                p.push(format!(
                    "preferred lifetime {} > valid {}",
                    pio.preferred, pio.valid
                ));
            }
            if pio.len > 128 {
                p.push(format!("prefix length {}", pio.len));
            } else if !bits_past_zero(&pio.prefix, pio.len) {
                p.push(format!("{}/{} has bits set past the length", pio.prefix, pio.len));
            }
        }
        if !p.is_empty() {
            off.add(r.frame, p.join(", "));
        }
    }
    if checked == 0 {
        return Finding::na("no well-formed RA from the router in this capture");
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "{checked} RA: PIO with L and A, preferred ≤ valid, clean prefix bits, length per profile"
            ),
            first_frames(ras.into_iter()),
        )
    })
}

/// Whether every bit of `a` from `len` on is zero.
pub(super) fn bits_past_zero(a: &Ipv6Addr, len: u8) -> bool {
    let v = u128::from_be_bytes(a.octets());
    let len = u32::from(len.min(128));
    len == 128 || v & (u128::MAX >> len) == 0
}

/// The endpoint an RA gives its requester: PIO in layout C (`current`), the destination's
/// IID in layout V (`v01`).
pub(super) fn ra_mapping(r: &Decoded) -> Option<Endpoint> {
    let Kind::Ra { prefixes, dst, .. } = &r.kind else {
        return None;
    };
    match r.profile {
        Profile::Current => mapping_pio(prefixes).map(|p| addr::decode_c(&p.prefix).0),
        Profile::V01 => addr::decode_v(dst),
    }
}

/// Why `named` is not `want`: a hint for the common misencodings.
pub(super) fn mismatch_hint(a: &Ipv6Addr, want: Endpoint, profile: Profile) -> String {
    let other = match profile {
        Profile::Current => Profile::V01,
        Profile::V01 => Profile::Current,
    };
    if other.decode(a) == Some(want) {
        format!(" (it does in the {} layout)", other.name())
    } else if addr::loosely_names(a, want) {
        " (the IPv4 octets stand verbatim in bytes 8..11; layout C moves the first octet's two low bits to byte 14)".into()
    } else {
        String::new()
    }
}

pub(super) fn ra05(v: &View<'_>) -> Finding {
    let ras = router_ras(v);
    if ras.is_empty() {
        return Finding::na("no RA from the router in this capture");
    }
    let mut off = Offences::default();
    let mut ok = Vec::new();
    let mut behind_nat = 0;
    for r in &ras {
        let (Some(to), Some(named)) = (r.dst(), ra_mapping(r)) else {
            if let Kind::Ra { .. } = r.kind {
                off.add(
                    r.frame,
                    "no mapping in the RA (no PIO / no layout V destination)".into(),
                );
            }
            continue;
        };
        if named == to {
            ok.push(r.frame);
            continue;
        }
        // Seen only on the LAN side of a NAT: the router's destination is not in the capture.
        let private = |e: Endpoint| addr::is_private_v4(*e.ip());
        if !private(named) && v.sightings(r).filter_map(|s| s.dst()).chain([to]).all(private) {
            behind_nat += 1;
            continue;
        }
        let carrier = match (&r.kind, r.profile) {
            (Kind::Ra { prefixes, .. }, Profile::Current) => mapping_pio(prefixes).map(|p| p.prefix),
            (Kind::Ra { dst, .. }, Profile::V01) => Some(*dst),
            _ => None,
        };
        let hint = carrier
            .map(|a| mismatch_hint(&a, to, r.profile))
            .unwrap_or_default();
        off.add(
            r.frame,
            format!(
                "{} names {named} in layout {}, the RA went to {to}{hint}",
                carrier.map_or("the RA".into(), |a| a.to_string()),
                if r.profile == Profile::Current { "C" } else { "V" },
            ),
        );
    }
    if !off.is_empty() {
        return Finding::new(Verdict::Fail, off.text(), off.frames());
    }
    if ok.is_empty() {
        return Finding::na(format!(
            "{behind_nat} RA seen only behind a NAT: the router's view of the mapping is not in this capture"
        ));
    }
    Finding::new(
        Verdict::Pass,
        format!(
            "{} RA embed exactly the outer IPv4:port they were sent to",
            ok.len()
        ),
        ok.into_iter().take(2).collect(),
    )
}

pub(super) fn ra06(v: &View<'_>) -> Finding {
    let ras = router_ras(v);
    let mut off = Offences::default();
    let mut n = 0;
    let mut facts = Vec::new();
    for r in &ras {
        let Kind::Ra {
            lifetimes, prefixes, ..
        } = &r.kind
        else {
            continue;
        };
        n += 1;
        let mut p = Vec::new();
        if lifetimes.router > 9000 {
            p.push(format!("router lifetime {} s > 9000", lifetimes.router));
        }
        if lifetimes.reachable_ms > 3_600_000 {
            p.push(format!(
                "reachable time {} ms > 3,600,000",
                lifetimes.reachable_ms
            ));
        }
        if !p.is_empty() {
            off.add(r.frame, p.join(", "));
        }
        if facts.is_empty() {
            facts.push(format!("retrans timer {} ms", lifetimes.retrans_ms));
            if prefixes.iter().any(|p| p.valid == u32::MAX) {
                facts.push("infinite PIO lifetimes".into());
            }
        }
    }
    if n == 0 {
        return Finding::na("no RA from the router in this capture");
    }
    if off.is_empty() {
        Finding::new(
            Verdict::Pass,
            format!("{n} RA within RFC 4861 §6.2.1 limits ({})", facts.join(", ")),
            first_frames(ras.into_iter()),
        )
    } else {
        Finding::new(
            v.inputs.deviation(),
            format!(
                "outside RFC 4861 §6.2.1 limits: {} (also {})",
                off.text(),
                facts.join(", ")
            ),
            off.frames(),
        )
    }
}

/// Whether address `a` is one the RA `r` advertises (same /64 and, in `current`, the same
/// embedded mapping).
pub(super) fn advertised_by(a: &Ipv6Addr, r: &Decoded) -> bool {
    let Kind::Ra { prefixes, dst, .. } = &r.kind else {
        return false;
    };
    prefixes.iter().any(|p| {
        if addr::prefix64(a) != addr::prefix64(&p.prefix) {
            return false;
        }
        match r.profile {
            Profile::Current => addr::decode_c(a).0 == addr::decode_c(&p.prefix).0,
            Profile::V01 => a.octets()[8..] == dst.octets()[8..],
        }
    })
}

/// RA-07: a peer that got an invalid RA uses no address from it and, holding none, does
/// not act on it (keepalives or data) before a valid RA.
///
/// The invalid RAs are control packets, known from the start; which peer one reached
/// depends on the peers' mappings, complete only in `finish`. So the walk notes, for each
/// invalid RA and each peer, the first packet from that peer that would offend, and
/// `finish` keeps the notes of the peer the RA went to (invalid RAs × peers: no growth
/// with the data).
pub(super) fn ra07<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// One invalid RA and one peer: what that peer's first offending packets were.
    #[derive(Clone, Copy, Default)]
    struct Pair {
        /// Whether the peer held no address (no valid RA) when the invalid one arrived.
        no_address: bool,
        /// When its next valid RA arrived (`u64::MAX`: none).
        next_valid: u64,
        /// The first packet using an address only the invalid RA advertises.
        used: Option<(u64, Ipv6Addr)>,
        /// Without an address: the first keepalive or data before a valid RA (frame, kind).
        acted: Option<(u64, &'static str)>,
    }
    struct Ra07<'a> {
        tol: u64,
        /// Invalid RAs (sender's and receiver's sightings), injected ones too.
        invalid: Vec<(&'a Decoded, &'a Decoded)>,
        /// Per peer, the valid RAs that reached it.
        legit: Vec<Vec<&'a Decoded>>,
        /// Per invalid RA, per peer (`i * peers + q`).
        pairs: Vec<Pair>,
    }
    impl<'a> Walk<'a> for Ra07<'a> {
        fn packet(&mut self, v: &View<'a>, s: &Decoded, _: &Decoded) {
            if self.invalid.is_empty() || v.is_injected(s) {
                return;
            }
            let Some(q) = s.src().and_then(|e| v.peer_of_socket(e)) else {
                return;
            };
            let peers = self.legit.len();
            for (i, (f, l)) in self.invalid.iter().enumerate() {
                if s.ts_ns <= l.ts_ns.saturating_add(self.tol) {
                    continue;
                }
                let Some(pair) = self.pairs.get_mut(i * peers + q) else {
                    continue;
                };
                if pair.used.is_none() {
                    if let Some(ih) = &s.inner {
                        let legit = self
                            .legit
                            .get(q)
                            .is_some_and(|ras| ras.iter().any(|ra| advertised_by(&ih.src, ra)));
                        if advertised_by(&ih.src, f) && !legit {
                            pair.used = Some((s.frame, ih.src));
                        }
                    }
                }
                if pair.acted.is_none()
                    && pair.no_address
                    && s.ts_ns < pair.next_valid
                    && matches!(s.kind, Kind::Keepalive | Kind::Data { .. })
                {
                    pair.acted = Some((s.frame, s.kind.label()));
                }
            }
        }

        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let peers = self.legit.len();
            let reached: Vec<(usize, &Decoded, usize)> = self
                .invalid
                .iter()
                .enumerate()
                .filter_map(|(i, (f, l))| Some((i, *f, l.dst().and_then(|d| v.peer_of_endpoint(d))?)))
                .collect();
            if reached.is_empty() {
                let why = if v.inputs.expect.injection.is_some() {
                    "no invalid RA reached a peer in this capture (the injection does not show)"
                } else {
                    "no invalid RA in this capture (no injection)"
                };
                return Finding::na(why);
            }
            let mut off = Offences::default();
            for &(i, f, p) in &reached {
                let Some(peer) = v.peers().get(p) else { continue };
                let pair = self.pairs.get(i * peers + p).copied().unwrap_or_default();
                // (a) No address from the invalid RA, unless a valid RA advertises it too.
                if let Some((frame, a)) = pair.used {
                    off.add(
                        frame,
                        format!("{} uses {a} from the invalid RA of frame {}", peer.name, f.frame),
                    );
                }
                // (b) Without an address, it must keep soliciting rather than act on it.
                if let (true, Some((frame, kind))) = (pair.no_address, pair.acted) {
                    off.add(
                        frame,
                        format!(
                            "{} had no address, got the invalid RA of frame {} and then sent {kind} without a valid RA",
                            peer.name, f.frame
                        ),
                    );
                }
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!(
                        "{} invalid RA reached peers; none changed their address",
                        reached.len()
                    ),
                    reached.iter().take(3).map(|r| r.1.frame).collect(),
                )
            })
        }
    }
    let invalid: Vec<(&'a Decoded, &'a Decoded)> = v
        .control_all_packets()
        .filter(|(f, _)| View::is_ra(f) && !ra_valid(f))
        .collect();
    let legit: Vec<Vec<&'a Decoded>> = v
        .peers()
        .iter()
        .map(|p| p.ras.iter().filter_map(|(_, i)| v.records().get(*i)).collect())
        .collect();
    let mut pairs = Vec::with_capacity(invalid.len() * legit.len());
    for (_, l) in &invalid {
        for p in v.peers() {
            let valid_before = p
                .ras
                .iter()
                .filter(|(t, _)| *t <= l.ts_ns)
                .filter_map(|(_, i)| v.records().get(*i))
                .count();
            pairs.push(Pair {
                no_address: valid_before == 0,
                next_valid: p
                    .ras
                    .iter()
                    .map(|r| r.0)
                    .find(|&t| t > l.ts_ns)
                    .unwrap_or(u64::MAX),
                used: None,
                acted: None,
            });
        }
    }
    Box::new(Ra07 {
        tol: v.inputs.tolerance_ns(),
        invalid,
        legit,
        pairs,
    })
}

/// An RS as the router got it, as RA-08 needs it.
struct RouterRs {
    frame: u64,
    ts_ns: u64,
    src: Option<Endpoint>,
    /// Its RFC 4861 problems, as words (empty for a valid one).
    problems: String,
}

/// RA-08: the router answers no invalid RS, and still answers a valid RS after them.
///
/// The RSs are taken as the router got them (its view of every packet), so the walk
/// collects them (RSs only: no growth with the data); the router's RAs are control
/// packets, known from the start.
pub(super) fn ra08<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    struct Ra08<'a> {
        /// Invalid RSs that reached the router, injected ones too.
        invalid: Vec<RouterRs>,
        /// Valid RSs that reached the router (not injected).
        valid: Vec<RouterRs>,
        /// The router's RAs that could answer a solicitation.
        routers_ras: Vec<&'a Decoded>,
    }
    impl<'a> Walk<'a> for Ra08<'a> {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            let Some(l) = v.router_view(f) else { return };
            if !View::is_rs(l) || !l.towards_router {
                return;
            }
            let valid = rs_valid(l);
            if valid && v.is_injected(f) {
                return;
            }
            let rs = RouterRs {
                frame: l.frame,
                ts_ns: l.ts_ns,
                src: l.src(),
                problems: if valid {
                    String::new()
                } else {
                    nd_problems(l, 8).join(", ")
                },
            };
            if valid {
                self.valid.push(rs);
            } else {
                self.invalid.push(rs);
            }
        }

        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let Ra08 {
                invalid,
                valid: valid_rs,
                routers_ras,
            } = *self;
            let tol = v.inputs.tolerance_ns();
            if invalid.is_empty() {
                return Finding::na(if v.inputs.expect.injection.is_some() {
                    "no invalid RS reached the router in this capture (the injection does not show)"
                } else {
                    "no invalid RS in this capture (no injection)"
                });
            }
            let mut off = Offences::default();
            for rs in &invalid {
                let Some(from) = rs.src else { continue };
                let ambiguous = valid_rs
                    .iter()
                    .any(|x| x.src == Some(from) && x.ts_ns.abs_diff(rs.ts_ns) <= 2_000_000_000);
                if ambiguous {
                    continue;
                }
                if let Some(ra) = routers_ras.iter().find(|ra| {
                    ra.dst() == Some(from)
                        && ra.ts_ns >= rs.ts_ns
                        && ra.ts_ns <= rs.ts_ns.saturating_add(1_000_000_000).saturating_add(tol)
                }) {
                    off.add(
                        ra.frame,
                        format!(
                            "RA answering the invalid RS of frame {} ({})",
                            rs.frame, rs.problems
                        ),
                    );
                }
            }
            let last_invalid = invalid.iter().map(|r| r.ts_ns).max().unwrap_or(0);
            let after = valid_rs.iter().find(|x| x.ts_ns > last_invalid);
            let mut note = String::new();
            match after {
                Some(x) => {
                    let answered = routers_ras.iter().any(|ra| {
                        ra.dst() == x.src
                            && ra.ts_ns >= x.ts_ns
                            && ra.ts_ns <= x.ts_ns.saturating_add(2_000_000_000).saturating_add(tol)
                    });
                    if !answered {
                        off.add(x.frame, "the valid RS after the invalid ones got no RA".into());
                    } else {
                        note = format!("; the valid RS of frame {} after them was answered", x.frame);
                    }
                }
                None => note = "; no valid RS after them, so the second half is not shown".into(),
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{} invalid RS got no RA{note}", invalid.len()),
                    invalid.iter().take(3).map(|r| r.frame).collect(),
                )
            })
        }
    }
    // Only an RA that could answer a solicitation counts: one to all-nodes or a link-local
    // address. An RA to a global unicast address is the "your mapping changed" RA of spec
    // §3, which a spoofed data packet from the same socket rightly earns.
    let routers_ras: Vec<&'a Decoded> = v
        .control_all_packets()
        .map(|p| p.0)
        .filter(|r| View::is_ra(r) && r.from_router)
        .filter(|r| match &r.kind {
            Kind::Ra { dst, .. } => dst.is_multicast() || (dst.segments()[0] & 0xffc0) == 0xfe80,
            _ => true,
        })
        .collect();
    Box::new(Ra08 {
        invalid: Vec::new(),
        valid: Vec::new(),
        routers_ras,
    })
}

/// RA-09: after a NAT rebinding the router sends an RA with the new mapping, the peer
/// stops using its old address and its traffic resumes from the new one.
///
/// A rebinding is found at the packet the router first saw from the new mapping; from
/// there the walk looks for the packet that should trigger the RA (the first the router
/// got from the new mapping still naming another endpoint), then, past the RA (a control
/// packet, known from the start), for the first packet still naming the old mapping and
/// the first data from the new address. Packets the router got from a stale source are
/// kept only while in flight (received no earlier than the packet being walked left), so
/// a trigger that left before the rebinding's packet but reached the router after it is
/// still found.
pub(super) fn ra09<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// A packet the router got from `src` whose inner 6bed4 source names another endpoint.
    struct Stale {
        ts_ns: u64,
        frame: u64,
        src: Endpoint,
    }
    /// What the walk found for one rebinding.
    #[derive(Default)]
    struct Follow<'a> {
        /// The first stale packet from the new mapping, as the router got it (ns, frame).
        trigger: Option<(u64, u64)>,
        /// The router's RA to the new mapping after the trigger.
        ra: Option<(&'a Decoded, &'a Decoded)>,
        /// When the RA carries the new mapping: its arrival, and the end of the grace
        /// period after which the old address must not be used.
        watch: Option<(u64, u64)>,
        /// The first packet after the grace period still naming the old mapping.
        stale: Option<u64>,
        /// The first data from the new address after the RA.
        resumed: Option<u64>,
    }
    struct Ra09<'a> {
        tol: u64,
        rebinds: &'a [Rebinding],
        /// One per rebinding found so far, in the order of `rebinds`.
        follows: Vec<Follow<'a>>,
        /// The router's RAs (sender's and receiver's sightings), not injected.
        ras: Vec<(&'a Decoded, &'a Decoded)>,
        in_flight: Vec<Stale>,
    }
    impl<'a> Ra09<'a> {
        /// Notes the trigger and looks up the RA it should have earned.
        fn triggered(
            ras: &[(&'a Decoded, &'a Decoded)],
            tol: u64,
            rb: &Rebinding,
            fo: &mut Follow<'a>,
            (ts_ns, frame): (u64, u64),
        ) {
            fo.trigger = Some((ts_ns, frame));
            fo.ra = ras
                .iter()
                .find(|(f, _)| {
                    f.dst() == Some(rb.new)
                        && f.ts_ns >= ts_ns
                        && f.ts_ns <= ts_ns.saturating_add(1_000_000_000).saturating_add(tol)
                })
                .copied();
            if let Some((f, l)) = fo.ra {
                if ra_mapping(f) == Some(rb.new) {
                    let grace = l.ts_ns.saturating_add(1_000_000_000).saturating_add(tol);
                    fo.watch = Some((l.ts_ns, grace));
                }
            }
        }
    }
    impl<'a> Walk<'a> for Ra09<'a> {
        fn packet(&mut self, v: &View<'a>, s: &Decoded, _: &Decoded) {
            if self.rebinds.is_empty() {
                return;
            }
            // A stale packet that reached the router before this one left can trigger no
            // rebinding found from here on.
            self.in_flight.retain(|c| c.ts_ns >= s.ts_ns);
            let injected = v.is_injected(s);
            let at = v.router_view(s);
            let candidate = at.filter(|r| !injected && r.towards_router).and_then(|r| {
                let src = r.src()?;
                let h = r.inner?;
                (v.cap.prefixes.contains(&addr::prefix64(&h.src)) && r.profile.decode(&h.src) != Some(src))
                    .then_some(Stale {
                        ts_ns: r.ts_ns,
                        frame: r.frame,
                        src,
                    })
            });
            // Rebindings found at this packet (its router view is the first from the new
            // mapping), with a trigger already in flight.
            if let Some(r) = at {
                while let Some(rb) = self
                    .rebinds
                    .get(self.follows.len())
                    .filter(|rb| rb.frame <= r.frame)
                {
                    let mut fo = Follow::default();
                    if let Some(c) = self
                        .in_flight
                        .iter()
                        .find(|c| c.src == rb.new && c.ts_ns >= rb.at_ns)
                    {
                        Self::triggered(&self.ras, self.tol, rb, &mut fo, (c.ts_ns, c.frame));
                    }
                    self.follows.push(fo);
                }
            }
            for (rb, fo) in self.rebinds.iter().zip(self.follows.iter_mut()) {
                if fo.trigger.is_none() {
                    if let Some(c) = candidate
                        .as_ref()
                        .filter(|c| c.src == rb.new && c.ts_ns >= rb.at_ns)
                    {
                        Self::triggered(&self.ras, self.tol, rb, fo, (c.ts_ns, c.frame));
                    }
                }
                let Some((ra_ts, grace)) = fo.watch else { continue };
                if injected || fo.stale.is_some() {
                    continue;
                }
                if s.src().and_then(|e| v.peer_of_socket(e)) != Some(rb.peer) {
                    continue;
                }
                if s.ts_ns > grace
                    && s.inner.is_some_and(|h| {
                        v.cap.prefixes.contains(&addr::prefix64(&h.src))
                            && s.profile.decode(&h.src) == Some(rb.old)
                    })
                {
                    fo.stale = Some(s.frame);
                }
                if fo.resumed.is_none()
                    && s.ts_ns > ra_ts
                    && matches!(s.kind, Kind::Data { .. })
                    && s.inner.is_some_and(|h| s.profile.decode(&h.src) == Some(rb.new))
                {
                    fo.resumed = Some(s.frame);
                }
            }
            if let Some(c) = candidate {
                self.in_flight.push(c);
            }
        }

        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let rebinds = v.rebindings();
            if rebinds.is_empty() {
                return Finding::na(match v.inputs.expect.rebinding_at_ns {
                    Some(t) => format!(
                        "a rebinding was expected at {}, but no peer's mapping changed in this capture",
                        secs(t.saturating_sub(v.t0()))
                    ),
                    None => "no NAT rebinding in this capture".into(),
                });
            }
            let mut off = Offences::default();
            let mut good = Vec::new();
            let none = Follow::default();
            for (k, rb) in rebinds.iter().enumerate() {
                let Some(peer) = v.peers().get(rb.peer) else {
                    continue;
                };
                let fo = self.follows.get(k).unwrap_or(&none);
                let Some((_, trigger)) = fo.trigger else {
                    off.add(
                        rb.frame,
                        format!(
                            "{} moved from {} to {}, but no packet with its old address reached the router afterwards, so no RA could move it (and no traffic resumed)",
                            peer.name, rb.old, rb.new
                        ),
                    );
                    continue;
                };
                let Some((ra_f, _)) = fo.ra else {
                    off.add(
                        trigger,
                        format!("no RA to the new mapping {} after the stale packet", rb.new),
                    );
                    continue;
                };
                if fo.watch.is_none() {
                    off.add(
                        ra_f.frame,
                        format!("the RA to {} does not carry the new mapping", rb.new),
                    );
                    continue;
                }
                if let Some(s) = fo.stale {
                    off.add(
                        s,
                        format!(
                            "{} still uses its old address (naming {}) after the RA of frame {} moved it to {}",
                            peer.name, rb.old, ra_f.frame, rb.new
                        ),
                    );
                    continue;
                }
                match fo.resumed {
                    Some(s) => good.push(format!(
                        "{}: {} → {}, RA frame {}, traffic from the new address at frame {s}",
                        peer.name, rb.old, rb.new, ra_f.frame
                    )),
                    None => off.add(
                        ra_f.frame,
                        format!("{} sent no data from its new address after the RA", peer.name),
                    ),
                }
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    good.join("; "),
                    rebinds.iter().map(|r| r.frame).collect(),
                )
            })
        }
    }
    let ras = v
        .control_packets()
        .filter(|(f, _)| View::is_ra(f) && f.from_router)
        .collect();
    Box::new(Ra09 {
        tol: v.inputs.tolerance_ns(),
        rebinds: v.rebindings(),
        follows: Vec::new(),
        ras,
        in_flight: Vec::new(),
    })
}
