//! Address formation (AF-01..03) and keepalives (KA-01..05).

use std::collections::{BTreeMap, BTreeSet};

use crate::capture::Direction;
use crate::conformance::decode::{addr, Decoded, Endpoint, Kind, Profile};
use crate::conformance::model::Verdict;

use super::rs_ra::{advertised_by, worst, Offences};
use super::view::{SourceCheck, View};
use super::{dur_ns, secs, Finding, Walk};

/// The peer that sent a record (by its sender-side socket).
fn sender(v: &View<'_>, r: &Decoded) -> Option<usize> {
    r.src().and_then(|s| v.peer_of_socket(s))
}

/// Whether an inner source is a 6bed4 address of this capture.
fn six_src(v: &View<'_>, r: &Decoded) -> Option<std::net::Ipv6Addr> {
    let h = r.inner?;
    (!h.src.is_unspecified() && v.cap.prefixes.contains(&addr::prefix64(&h.src))).then_some(h.src)
}

/// AF-01 reads every datagram's source address: a walk.
pub(super) fn af01<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct Af01 {
        off: Offences,
        ok: Vec<u64>,
    }
    impl<'a> Walk<'a> for Af01 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if f.from_router || v.is_injected(f) {
                return;
            }
            let (Some(p), Some(a)) = (sender(v, f), six_src(v, f)) else {
                return;
            };
            let peer = &v.peers()[p];
            let Some(&(_, ra_i)) = peer.ras.iter().rev().find(|(t, _)| *t <= f.ts_ns) else {
                return;
            };
            // The RA: a control record, kept for the whole analysis.
            let Some(ra) = v.records().get(ra_i) else { return };
            let Some((ra_sent, _)) = v.ends(ra) else { return };
            if !advertised_by(&a, ra_sent) {
                self.off.add(
                    f.frame,
                    format!(
                        "{} uses {a}, which is not the prefix + identifier of its RA (frame {})",
                        peer.name, ra.frame
                    ),
                );
                return;
            }
            let seen_as = ra_sent.dst();
            if f.profile.decode(&a) != seen_as {
                self.off.add(
                    f.frame,
                    format!(
                        "{} uses {a}, which names {}, not {} (its mapping as the router saw it)",
                        peer.name,
                        f.profile.decode(&a).map_or("nothing".into(), |e| e.to_string()),
                        seen_as.map_or("?".into(), |e| e.to_string())
                    ),
                );
                return;
            }
            if self.ok.len() < 2 {
                self.ok.push(f.frame);
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let Af01 { off, ok } = *self;
            if !off.is_empty() {
                return Finding::new(Verdict::Fail, off.text(), off.frames());
            }
            if ok.is_empty() {
                return Finding::na("no peer used an address after receiving an RA in this capture");
            }
            Finding::new(
                Verdict::Pass,
                "peers use the advertised prefix plus their identifier, naming their mapping as the router saw it",
                ok,
            )
        }
    }
    Box::<Af01>::default()
}

/// AF-02 reads every datagram's source address: a walk, keeping one entry per address.
pub(super) fn af02<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct Af02 {
        off: Offences,
        // Address (by its halves: ordered as the address) → the frame of its last use.
        // Asked for every packet: a fast hash map, sorted at the end for the evidence.
        seen: crate::conformance::decode::FastMap<(u64, u64), u64>,
    }
    impl<'a> Walk<'a> for Af02 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if f.from_router || v.is_injected(f) {
                return;
            }
            let Some(a) = six_src(v, f) else { return };
            let k = u128::from(a);
            if self.seen.insert(((k >> 64) as u64, k as u64), f.frame).is_some() {
                return;
            }
            let mut p = Vec::new();
            let port = match f.profile {
                Profile::Current => {
                    let (ep, lanip) = addr::decode_c(&a);
                    if lanip == 0 {
                        p.push("lanip 0 (reserved for the router)".to_string());
                    }
                    Some(ep.port())
                }
                Profile::V01 => addr::decode_v(&a).map(|e| e.port()),
            };
            match port {
                Some(port) if !f.profile.port_valid(port) => p.push(format!(
                    "port {port} is not valid in the {} profile",
                    f.profile.name()
                )),
                None => p.push("not in layout V".into()),
                _ => {}
            }
            if !p.is_empty() {
                self.off.add(f.frame, format!("{a}: {}", p.join(", ")));
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let Af02 { off, seen } = *self;
            if seen.is_empty() {
                return Finding::na("no peer address used as a source in this capture");
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!(
                        "{} peer address(es), all with lanip ≠ 0 and a valid port",
                        seen.len()
                    ),
                    {
                        let mut first: Vec<_> = seen.into_iter().collect();
                        first.sort_unstable_by_key(|&(k, _)| k);
                        first.into_iter().take(2).map(|(_, frame)| frame).collect()
                    },
                )
            })
        }
    }
    Box::<Af02>::default()
}

/// What decides the verdict on an inconsistent 6bed4 source in AF-03, besides the
/// rebindings and mappings of the whole capture (known only after the walk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Af03Case {
    /// The sending peer.
    me: Option<usize>,
    /// The endpoint the source address names.
    named: Option<Endpoint>,
    /// The endpoint the datagram came from.
    from: Endpoint,
    /// Whether any sighting went to the router.
    to_router: bool,
    /// The destination at the sender's sighting.
    dst: Option<Endpoint>,
}

/// The inconsistent sources of one [`Af03Case`], in bounded memory: what an [`Offences`]
/// keeps, with each example's place among all of them, so that the groups given one verdict
/// merge into the `Offences` the verdict would have collected packet by packet.
#[derive(Debug, Default)]
struct Af03Group {
    count: usize,
    /// The first examples: (place among all inconsistent sources, frame, text).
    examples: Vec<(usize, u64, String)>,
    /// The smallest distinct frames other than 0, sorted.
    frames: Vec<u64>,
    /// Whether frame 0 was among them.
    zero: bool,
}

/// Examples an [`Offences`] spells out (its first ones); a group keeps as many.
const AF03_EXAMPLES: usize = 3;

impl Af03Group {
    fn add(&mut self, seq: usize, frame: u64, text: impl FnOnce() -> String) {
        self.count += 1;
        if frame == 0 {
            self.zero = true;
        } else if let Err(at) = self.frames.binary_search(&frame) {
            if at < super::MAX_FRAMES {
                self.frames.insert(at, frame);
                self.frames.truncate(super::MAX_FRAMES);
            }
        }
        if self.examples.len() < AF03_EXAMPLES {
            self.examples.push((seq, frame, text()));
        }
    }
}

/// The [`Offences`] that adding every source of `groups` in capture order would have
/// collected, each example's text followed by `suffix` of its group: the first examples
/// overall (each group holds its own first ones), every group's smallest frames (the
/// smallest overall are among them), and the count.
fn af03_offences(groups: &[(&Af03Group, String)]) -> Offences {
    let mut examples: Vec<(usize, u64, String)> = groups
        .iter()
        .flat_map(|(g, suffix)| {
            g.examples
                .iter()
                .map(move |(seq, frame, text)| (*seq, *frame, format!("{text}{suffix}")))
        })
        .collect();
    examples.sort_unstable_by_key(|e| e.0);
    let mut off = Offences::default();
    let mut added = 0;
    let mut frames: BTreeSet<u64> = BTreeSet::new();
    for (_, frame, text) in examples {
        off.add(frame, text);
        frames.insert(frame);
        added += 1;
    }
    // A group holds a frame none of its examples has only when it was given more sources
    // than it keeps examples, so the examples are all spelled out before these adds,
    // which only count and bring the frames.
    for (g, _) in groups {
        let zero = g.zero.then_some(0);
        for &frame in zero.iter().chain(&g.frames) {
            if frames.insert(frame) {
                off.add(frame, String::new());
                added += 1;
            }
        }
    }
    // The sources left are counted, with a frame already given.
    let total: usize = groups.iter().map(|(g, _)| g.count).sum();
    if let Some(&again) = frames.first() {
        for _ in added..total {
            off.add(again, String::new());
        }
    }
    off
}

/// AF-03 judges every datagram's source against its outer tuple: a walk. Whether an
/// inconsistent source is a stale address, a mapping the NAT gave towards another peer,
/// or a fault depends on the rebindings and mappings of the whole capture, so the
/// inconsistent sources are grouped by what decides that ([`Af03Case`]) and judged in
/// `finish`.
pub(super) fn af03<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct Af03 {
        judged: usize,
        /// Inconsistent sources seen so far (their place in capture order).
        seq: usize,
        groups: BTreeMap<Af03Case, Af03Group>,
    }
    impl<'a> Walk<'a> for Af03 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, l: &Decoded) {
            if f.from_router || l.from_router || v.is_injected(f) {
                return;
            }
            let Some(a) = six_src(v, f) else { return };
            let (named, from) = match v.source_check(f) {
                SourceCheck::NotJudged | SourceCheck::Untranslated => return,
                SourceCheck::Consistent => {
                    self.judged += 1;
                    return;
                }
                SourceCheck::Inconsistent { named, from } => (named, from),
            };
            self.judged += 1;
            // The frame to show: the sighting that carries `from`.
            let frame = v
                .sightings(f)
                .filter(|s| s.src() == Some(from))
                .last()
                .map_or(l.frame, |s| s.frame);
            let case = Af03Case {
                me: sender(v, f),
                named,
                from,
                to_router: v.sightings(f).any(|s| s.towards_router) || f.towards_router,
                dst: f.dst(),
            };
            let seq = self.seq;
            self.seq += 1;
            self.groups.entry(case).or_default().add(seq, frame, || {
                format!(
                    "source {a} names {} in the {} layout, the datagram came from {from}{}",
                    named.map_or("nothing".into(), |n| n.to_string()),
                    f.profile.name(),
                    super::rs_ra::mismatch_hint(&a, from, f.profile)
                )
            });
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let Af03 { judged, groups, .. } = *self;
            if judged == 0 {
                return Finding::na("no 6bed4 source seen where its outer tuple can be judged");
            }
            let mut fail = Vec::new();
            let mut warn = Vec::new();
            for (c, g) in &groups {
                let stale = c.me.is_some_and(|p| {
                    v.rebindings()
                        .iter()
                        .any(|rb| rb.peer == p && Some(rb.old) == c.named && rb.new == c.from)
                });
                // Towards another peer, from a peer whose address names its mapping as the
                // router saw it: the NAT mapped this destination elsewhere (symmetric /
                // address-dependent mapping). The peer cannot know; the receiver rightly
                // drops it. Sent to the router, it is a fault: the router must have been
                // told the right mapping.
                let to_peer = c
                    .dst
                    .and_then(|d| v.peer_of_endpoint(d))
                    .is_some_and(|p| Some(p) != c.me);
                let own_mapping =
                    c.me.is_some_and(|p| v.peers()[p].mappings.iter().any(|m| Some(m.1) == c.named));
                if stale {
                    warn.push((g, " (a stale address after a NAT rebinding)".to_string()));
                } else if !c.to_router && to_peer && own_mapping {
                    let why = if addr::is_private_v4(*c.from.ip()) {
                        "it went to the other peer untranslated, from a private address: bypass to it cannot work"
                    } else {
                        "a NAT gave this peer a different mapping towards another peer (symmetric/address-dependent mapping): bypass to it cannot work"
                    };
                    warn.push((g, format!(" ({why})")));
                } else {
                    fail.push((g, String::new()));
                }
            }
            let (fail, warn) = (af03_offences(&fail), af03_offences(&warn));
            if !fail.is_empty() {
                return Finding::new(Verdict::Fail, fail.text(), fail.frames());
            }
            if !warn.is_empty() {
                return Finding::new(Verdict::Warn, warn.text(), warn.frames());
            }
            Finding::new(
                Verdict::Pass,
                format!("{judged} datagrams: every 6bed4 source names the outer IPv4:port it came from"),
                Vec::new(),
            )
        }
    }
    Box::<Af03>::default()
}

/// Keepalives (sender's side), grouped per socket.
fn keepalives<'a>(v: &View<'a>) -> BTreeMap<Endpoint, Vec<&'a Decoded>> {
    let mut m: BTreeMap<Endpoint, Vec<&Decoded>> = BTreeMap::new();
    for (f, _) in v.control_packets() {
        if matches!(f.kind, Kind::Keepalive) {
            if let Some(s) = f.src() {
                m.entry(s).or_default().push(f);
            }
        }
    }
    m
}

/// KA-01 asks which sockets the tunnel's traffic comes from: a walk, noting that only for
/// the addresses that send keepalives.
pub(super) fn ka01<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// Per keepalive socket, by its address: (port, whether the tunnel's traffic came
    /// from that address with another port, whether it came from this socket).
    type Traffic = BTreeMap<std::net::Ipv4Addr, Vec<(u16, bool, bool)>>;
    struct Ka01<'a> {
        kas: BTreeMap<Endpoint, Vec<&'a Decoded>>,
        traffic: Traffic,
    }
    impl<'a> Walk<'a> for Ka01<'a> {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if f.from_router || matches!(f.kind, Kind::Keepalive | Kind::IcmpError { .. }) || v.is_injected(f)
            {
                return;
            }
            let Some(s) = f.src() else { return };
            for (port, other_port, own) in self.traffic.get_mut(s.ip()).into_iter().flatten() {
                if *port == s.port() {
                    *own = true;
                } else {
                    *other_port = true;
                }
            }
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let Ka01 { kas, traffic } = *self;
            let mut off = Offences::default();
            // Short non-IPv6 datagrams from a tunnel socket to the router: keepalives that
            // are not empty.
            for (f, _) in v.control_packets() {
                if let (Kind::Malformed { why }, Some(o)) = (&f.kind, &f.outer) {
                    if f.towards_router
                        && o.udp_payload_len < 40
                        && o.src.port() != 0
                        && v.peer_of_socket(o.src).is_some()
                    {
                        off.add(
                            f.frame,
                            format!(
                                "{}-byte datagram to the router ({why}); a keepalive is empty",
                                o.udp_payload_len
                            ),
                        );
                    }
                }
            }
            if kas.is_empty() && off.is_empty() {
                return Finding::na("no keepalive in this capture");
            }
            let mut n = 0;
            for (socket, list) in &kas {
                n += list.len();
                for k in list {
                    if !k.towards_router {
                        off.add(
                            k.frame,
                            format!(
                                "keepalive to {}, not the router ({})",
                                k.dst().map_or("?".into(), |d| d.to_string()),
                                fmt_routers(v)
                            ),
                        );
                        break;
                    }
                }
                let (same_ip_other_port, own) = traffic
                    .get(socket.ip())
                    .into_iter()
                    .flatten()
                    .find(|t| t.0 == socket.port())
                    .map_or((false, false), |t| (t.1, t.2));
                if same_ip_other_port && !own {
                    off.add(
                        list[0].frame,
                        format!("keepalives from {socket}, but the tunnel's traffic comes from another port"),
                    );
                }
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{n} keepalive(s): empty UDP payloads to the router from the tunnel's socket"),
                    kas.values()
                        .flat_map(|l| l.iter().take(2).map(|k| k.frame))
                        .collect(),
                )
            })
        }
    }
    let kas = keepalives(v);
    let mut traffic = Traffic::new();
    for s in kas.keys() {
        traffic.entry(*s.ip()).or_default().push((s.port(), false, false));
    }
    Box::new(Ka01 { kas, traffic })
}

fn fmt_routers(v: &View<'_>) -> String {
    if v.cap.routers.is_empty() {
        "no router known".into()
    } else {
        v.cap
            .routers
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn ka02(v: &View<'_>) -> Finding {
    let kas = keepalives(v);
    if kas.is_empty() {
        return Finding::na("no keepalive in this capture");
    }
    let want = v.inputs.expect.keepalive_ttl.unwrap_or(3);
    let mut off = Offences::default();
    let mut lowered = 0;
    let mut n = 0;
    for k in kas.values().flatten() {
        let Some(o) = &k.outer else { continue };
        n += 1;
        let only_received = k.sightings == 1 && k.direction == Some(Direction::Inbound);
        if o.ttl == want || (only_received && o.ttl < want && o.ttl > 0) {
            lowered += usize::from(o.ttl != want);
            continue;
        }
        off.add(k.frame, format!("TTL {} (configured {want})", o.ttl));
    }
    off.or_pass(|| {
        let note = if lowered > 0 {
            format!(" ({lowered} seen only on arrival, with TTL lowered by routers)")
        } else {
            String::new()
        };
        Finding::new(
            Verdict::Pass,
            format!("{n} keepalive(s) with IPv4 TTL {want}{note}"),
            kas.values()
                .flat_map(|l| l.iter().take(1).map(|k| k.frame))
                .collect(),
        )
    })
}

pub(super) fn ka03(v: &View<'_>) -> Finding {
    let kas = keepalives(v);
    let period = v.inputs.expect.keepalive_period.map(dur_ns);
    let mut off = Offences::default();
    let mut stats = Vec::new();
    let mut frames = Vec::new();
    for (socket, list) in &kas {
        let gaps: Vec<u64> = list
            .windows(2)
            .map(|w| w[1].ts_ns.saturating_sub(w[0].ts_ns))
            .collect();
        if gaps.is_empty() {
            continue;
        }
        let lo = gaps.iter().copied().min().unwrap_or(0);
        let hi = gaps.iter().copied().max().unwrap_or(0);
        let name = v
            .peer_of_socket(*socket)
            .and_then(|p| v.peers().get(p))
            .map_or_else(|| socket.to_string(), |p| p.name.clone());
        stats.push(format!(
            "{name}: {} intervals {}–{}",
            gaps.len(),
            secs(lo),
            secs(hi)
        ));
        frames.push(list[0].frame);
        if let Some(p) = period {
            let slack = v.inputs.tolerance_ns().max(p / 20);
            if let Some(i) = gaps.iter().position(|&g| g.saturating_add(slack) < p) {
                off.add(
                    list[i + 1].frame,
                    format!(
                        "{name}: keepalive {} after the previous one (period {})",
                        secs(gaps[i]),
                        secs(p)
                    ),
                );
            }
        }
    }
    if stats.is_empty() {
        return Finding::na("fewer than two keepalives from any socket");
    }
    if !off.is_empty() {
        return Finding::new(
            Verdict::Fail,
            format!("{}; {}", off.text(), stats.join("; ")),
            off.frames(),
        );
    }
    match period {
        Some(p) => Finding::new(
            Verdict::Pass,
            format!(
                "no keepalive sooner than the period {} allows; {}",
                secs(p),
                stats.join("; ")
            ),
            frames,
        ),
        None => Finding::new(
            Verdict::Info,
            format!("no configured period given; observed {}", stats.join("; ")),
            frames,
        ),
    }
}

pub(super) fn ka04(v: &View<'_>) -> Finding {
    let kas = keepalives(v);
    if kas.is_empty() {
        return Finding::na("no keepalive in this capture");
    }
    let mut off = Offences::default();
    let mut judged = 0;
    for (socket, list) in &kas {
        let Some(p) = v.peer_of_socket(*socket) else {
            continue;
        };
        let peer = &v.peers()[p];
        let first_ka = list[0];
        match peer.address_since() {
            Some(t) => {
                judged += 1;
                if let Some(k) = list.iter().find(|k| k.ts_ns < t) {
                    off.add(
                        k.frame,
                        format!("{} sent a keepalive before its first RA arrived", peer.name),
                    );
                }
            }
            None => {
                // RSs are control packets.
                let soliciting = v
                    .control_packets()
                    .map(|x| x.0)
                    .any(|r| View::is_rs(r) && r.src() == Some(*socket) && r.ts_ns < first_ka.ts_ns);
                if soliciting {
                    judged += 1;
                    off.add(
                        first_ka.frame,
                        format!("{} sends keepalives while still soliciting (no RA)", peer.name),
                    );
                }
            }
        }
    }
    if judged == 0 {
        return Finding::na("the capture does not show when the keepalive senders got their address");
    }
    if off.is_empty() {
        Finding::new(
            Verdict::Pass,
            "keepalives start only after the peer holds an address",
            kas.values().map(|l| l[0].frame).collect(),
        )
    } else {
        Finding::new(Verdict::Warn, off.text(), off.frames())
    }
}

/// KA-05 needs when each peer was last seen: a walk, keeping one time per peer.
pub(super) fn ka05<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    struct Ka05 {
        /// Per peer, the time of the last packet it sent (None: none yet, or not needed).
        last_seen: Vec<Option<u64>>,
    }
    impl<'a> Walk<'a> for Ka05 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if self.last_seen.is_empty() || v.is_injected(f) {
                return;
            }
            let Some(p) = f.src().and_then(|s| v.peer_of_socket(s)) else {
                return;
            };
            if let Some(t) = self.last_seen.get_mut(p) {
                *t = Some(t.map_or(f.ts_ns, |t| t.max(f.ts_ns)));
            }
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            ka05_finish(v, &self.last_seen)
        }
    }
    let e = &v.inputs.expect;
    let judged = matches!((e.keepalive_period, e.nat_udp_timeout), (Some(p), Some(t)) if p < t);
    let last_seen = if judged {
        vec![None; v.peers().len()]
    } else {
        Vec::new()
    };
    Box::new(Ka05 { last_seen })
}

/// KA-05's verdict, given when each peer was last seen.
fn ka05_finish(v: &View<'_>, last_seen: &[Option<u64>]) -> Finding {
    let e = &v.inputs.expect;
    let (Some(period), Some(timeout)) = (e.keepalive_period, e.nat_udp_timeout) else {
        return Finding::na("needs the configured keepalive period and the NAT's UDP timeout");
    };
    if period >= timeout {
        return Finding::na(format!(
            "keepalive period {} is not shorter than the NAT timeout {}",
            secs(dur_ns(period)),
            secs(dur_ns(timeout))
        ));
    }
    let need = dur_ns(timeout).saturating_mul(3);
    let kas = keepalives(v);
    let mut verdict = Verdict::NotApplicable;
    let mut off = Offences::default();
    let mut notes = Vec::new();
    for (i, peer) in v.peers().iter().enumerate() {
        if !peer.sockets.iter().any(|s| kas.contains_key(s)) {
            continue;
        }
        let (Some(a), Some(b)) = (peer.mappings.first(), peer.mappings.last()) else {
            continue;
        };
        let last_seen = last_seen.get(i).copied().flatten().unwrap_or(a.0);
        let span = last_seen.max(b.0).saturating_sub(a.0);
        if span < need {
            notes.push(format!(
                "{}: seen for {} only, < 3 timeouts",
                peer.name,
                secs(span)
            ));
            continue;
        }
        verdict = worst(verdict, Verdict::Pass);
        if let Some(rb) = v.rebindings().iter().find(|r| r.peer == i) {
            verdict = Verdict::Fail;
            off.add(
                rb.frame,
                format!("{}'s mapping changed from {} to {}", peer.name, rb.old, rb.new),
            );
        } else {
            notes.push(format!(
                "{}: mapping {} stable for {}",
                peer.name,
                a.1,
                secs(span)
            ));
        }
    }
    match verdict {
        Verdict::Fail => Finding::new(Verdict::Fail, off.text(), off.frames()),
        Verdict::Pass => Finding::new(Verdict::Pass, notes.join("; "), Vec::new()),
        _ => Finding::na(if notes.is_empty() {
            "no peer sending keepalives whose mapping the router saw".to_string()
        } else {
            notes.join("; ")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sources spread over groups, interleaved, some on frame 0 and on repeated frames:
    /// the groups of one verdict merge into exactly what adding their sources in order
    /// collects (the examples overall first, the count, the smallest frames).
    #[test]
    fn af03_groups_merge_as_added_in_order() {
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let groups_n = 1 + next(5) as usize;
            let sources = next(40) as usize;
            // Which groups count for the verdict being merged.
            let chosen: Vec<bool> = (0..groups_n).map(|_| next(3) > 0).collect();
            let mut groups: Vec<Af03Group> = (0..groups_n).map(|_| Af03Group::default()).collect();
            let mut want = Offences::default();
            for seq in 0..sources {
                let g = next(groups_n as u64) as usize;
                let frame = if next(10) == 0 { 0 } else { 1 + next(30) };
                let text = format!("source {seq} of group {g}");
                groups[g].add(seq, frame, || text.clone());
                if chosen[g] {
                    want.add(frame, format!("{text} (suffix {g})"));
                }
            }
            let picked: Vec<(&Af03Group, String)> = groups
                .iter()
                .enumerate()
                .filter(|(g, _)| chosen[*g])
                .map(|(g, x)| (x, format!(" (suffix {g})")))
                .collect();
            let got = af03_offences(&picked);
            assert_eq!(got.text(), want.text(), "round {round}");
            assert_eq!(got.frames(), want.frames(), "round {round}");
            assert_eq!(got.is_empty(), want.is_empty(), "round {round}");
        }
    }
}
