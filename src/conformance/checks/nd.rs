//! Bypass (direct paths): ND-01..08.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::conformance::decode::{addr, inner, Decoded, Endpoint, Kind, PathKind, Profile};
use crate::conformance::model::Verdict;

use super::rs_ra::{nd_problems, worst, Offences};
use super::view::{nd_valid, SourceCheck, View};
use super::{dur_ns, secs, Finding, Walk};

fn is_nd(r: &Decoded) -> bool {
    r.is_tunnel() && matches!(r.icmp_type(), Some(inner::NS | inner::NA)) && r.inner.is_some()
}

/// RFC 4861 §7.1 problems of an NS or NA, plus stray bytes after it.
fn nd_issues(r: &Decoded) -> Vec<String> {
    let mut p = nd_problems(r, 24);
    if r.trailing > 0 {
        p.push(format!("{} bytes after the IPv6 packet", r.trailing));
    }
    match (&r.kind, &r.inner) {
        (Kind::Na { flags, target, .. }, Some(ih)) => {
            if flags & 0x40 != 0 && addr::is_multicast(&ih.dst) {
                p.push(format!("Solicited flag set on an NA to {}", ih.dst));
            }
            if addr::is_multicast(target) {
                p.push(format!("multicast target {target}"));
            }
        }
        (Kind::Ns { target, slla }, Some(ih)) => {
            if addr::is_multicast(target) {
                p.push(format!("multicast target {target}"));
            }
            if ih.src.is_unspecified() && slla.is_some() {
                p.push("SLLA on an NS from ::".into());
            }
        }
        _ => {}
    }
    p
}

pub(super) fn nd01(v: &View<'_>) -> Finding {
    let nds: Vec<&Decoded> = v.control_packets().map(|p| p.0).filter(|r| is_nd(r)).collect();
    if nds.is_empty() {
        return Finding::na("no NS or NA in this capture");
    }
    let mut off = Offences::default();
    for r in &nds {
        let p = nd_issues(r);
        if !p.is_empty() {
            off.add(r.frame, format!("{} {}", r.kind.label(), p.join(", ")));
        }
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "{} NS/NA, all valid and exactly as long as their IPv6 payload length",
                nds.len()
            ),
            nds.iter().take(2).map(|r| r.frame).collect(),
        )
    })
}

/// NSs that are bypass probes: between peers, not to or from the router.
fn bypass_ns<'a>(v: &View<'a>) -> Vec<(&'a Decoded, &'a Decoded)> {
    v.control_packets()
        .filter(|(f, _)| {
            matches!(f.kind, Kind::Ns { .. }) && f.is_tunnel() && !f.towards_router && !f.from_router
        })
        .collect()
}

pub(super) fn nd02(v: &View<'_>) -> Finding {
    let nss = bypass_ns(v);
    if nss.is_empty() {
        return Finding::na("no bypass NS in this capture");
    }
    let mut off = Offences::default();
    for (f, _) in &nss {
        let (Kind::Ns { target, slla }, Some(ih), Some(dst)) = (&f.kind, &f.inner, f.dst()) else {
            continue;
        };
        let mut p = Vec::new();
        let want = f.profile.decode(target);
        // Any sighting will do: the sender's uplink shows the destination it chose (a
        // hairpinning NAT then rewrites it to the other peer's LAN address).
        if !want.is_some_and(|w| v.sent_to(f, w)) {
            let other = f.profile_other();
            let hint = if other.decode(target) == Some(dst)
                || (other == Profile::V01 && addr::decode_v_raw(target) == dst)
            {
                format!(": that is the target read with the {} layout", other.name())
            } else {
                String::new()
            };
            p.push(format!(
                "sent to {dst}, but the target {target} names {}{hint}",
                want.map_or("nothing".into(), |w| w.to_string())
            ));
        }
        if ih.dst != *target {
            p.push(format!("inner destination {} ≠ target {target}", ih.dst));
        }
        let own = f.profile.decode(&ih.src).map(addr::link_layer);
        match (slla, own) {
            (None, _) => p.push("no Source Link-Layer Address option".into()),
            (Some(ll), Some(own)) if *ll != own => p.push(format!(
                "SLLA {} is not the sender's link-layer address {} (from {})",
                addr::fmt_ll(ll),
                addr::fmt_ll(&own),
                ih.src
            )),
            _ => {}
        }
        if !p.is_empty() {
            off.add(f.frame, p.join("; "));
        }
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "{} bypass NS, each sent straight to the endpoint its target names, with the sender's SLLA",
                nss.len()
            ),
            nss.iter().take(2).map(|p| p.0.frame).collect(),
        )
    })
}

/// The NS (as received) an NA (as sent) answers: the latest NS that arrived at the NA's
/// source endpoint within 2 s before it, preferring one with the same target.
/// Every NS's receiver's sighting, by its outer destination, sorted by time (ties in
/// packet order): `(ts, packet order, sighting)`.
type NsIndex<'a> = crate::conformance::decode::FastMap<Option<Endpoint>, Vec<(u64, usize, &'a Decoded)>>;

fn ns_index<'a>(v: &View<'a>) -> NsIndex<'a> {
    let mut idx: NsIndex<'a> = NsIndex::default();
    // An NS is a control packet: the control packets, in packet order, are enough (the
    // index `i` only orders them).
    for (i, (_, l)) in v.control_all_packets().enumerate() {
        if matches!(l.kind, Kind::Ns { .. }) {
            idx.entry(l.dst()).or_default().push((l.ts_ns, i, l));
        }
    }
    for list in idx.values_mut() {
        list.sort_by_key(|e| (e.0, e.1));
    }
    idx
}

/// The NS that `na` answers: among the NSs sent to the NA's source within the window before
/// it, the last (in packet order) from the NA's inner destination asking for its target,
/// else the last asking for its target, else the last. Several peers behind one NAT share
/// the outer address an NS reaches, so the inner source is what tells their NSs apart.
fn answered_ns<'a>(v: &View<'a>, idx: &NsIndex<'a>, na: &Decoded) -> Option<&'a Decoded> {
    let window = v.inputs.tolerance_ns().saturating_add(2_000_000_000);
    let Kind::Na { target, .. } = &na.kind else {
        return None;
    };
    let na_dst = na.inner.as_ref().map(|h| h.dst);
    let list = idx.get(&na.src())?;
    let lo = na.ts_ns.saturating_sub(window);
    let start = list.partition_point(|e| e.0 < lo);
    let mut any: Option<(usize, &'a Decoded)> = None;
    let mut same: Option<(usize, &'a Decoded)> = None;
    let mut asker: Option<(usize, &'a Decoded)> = None;
    for &(ts, i, l) in &list[start..] {
        if ts > na.ts_ns {
            break;
        }
        if any.is_none_or(|(j, _)| i > j) {
            any = Some((i, l));
        }
        if matches!(&l.kind, Kind::Ns { target: t, .. } if t == target) {
            if same.is_none_or(|(j, _)| i > j) {
                same = Some((i, l));
            }
            let from_dst = na_dst.is_some() && l.inner.as_ref().map(|h| h.src) == na_dst;
            if from_dst && asker.is_none_or(|(j, _)| i > j) {
                asker = Some((i, l));
            }
        }
    }
    asker.or(same).or(any).map(|(_, l)| l)
}

pub(super) fn nd03(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    let mut no_override = Offences::default();
    let mut matched = 0;
    let idx = ns_index(v);
    for (na, _) in v.control_packets() {
        let (Kind::Na { target, flags, .. }, Some(nah)) = (&na.kind, &na.inner) else {
            continue;
        };
        let Some(ns) = answered_ns(v, &idx, na) else {
            continue;
        };
        let (
            Kind::Ns {
                target: ns_target, ..
            },
            Some(nsh),
        ) = (&ns.kind, &ns.inner)
        else {
            continue;
        };
        if nsh.src.is_unspecified() {
            continue; // DAD: the answer goes to all-nodes without S.
        }
        matched += 1;
        let mut p = Vec::new();
        if target != ns_target {
            p.push(format!(
                "target {target}, the NS (frame {}) asked for {ns_target}",
                ns.frame
            ));
        }
        if flags & 0x40 == 0 {
            p.push("Solicited flag not set".into());
        }
        if nah.dst != nsh.src {
            p.push(format!("sent to {}, not the NS source {}", nah.dst, nsh.src));
        }
        if na.dst() != ns.src() {
            p.push(format!(
                "went to {}, the NS came from {}",
                na.dst().map_or("?".into(), |d| d.to_string()),
                ns.src().map_or("?".into(), |d| d.to_string())
            ));
        }
        if !p.is_empty() {
            off.add(
                na.frame,
                format!("NA answering frame {}: {}", ns.frame, p.join(", ")),
            );
        } else if flags & 0x20 == 0 {
            no_override.add(na.frame, format!("flags 0x{flags:02x}: no Override"));
        }
    }
    if matched == 0 {
        return Finding::na("no NA answering an NS in this capture");
    }
    if !off.is_empty() {
        return Finding::new(Verdict::Fail, off.text(), off.frames());
    }
    if !no_override.is_empty() {
        return Finding::new(
            Verdict::Warn,
            format!(
                "NAs answer correctly, but without the Override flag, which RFC 4861 §7.2.4 says SHOULD be set: {}",
                no_override.text()
            ),
            no_override.frames(),
        );
    }
    Finding::new(
        Verdict::Pass,
        format!("{matched} NA: target copied, S set, unicast to the NS source, sent straight back"),
        Vec::new(),
    )
}

/// Whether `na` (as received) answers a probe that its receiver sent to the NA's source
/// with the same target, before it.
fn matches_probe(v: &View<'_>, na: &Decoded) -> bool {
    let Kind::Na { target, .. } = &na.kind else {
        return false;
    };
    v.control_packets().map(|p| p.0).any(|ns| {
        matches!(&ns.kind, Kind::Ns { target: t, .. } if t == target)
            && ns.src() == na.dst()
            && ns.dst() == na.src()
            && ns.ts_ns <= na.ts_ns
    })
}

/// An NA's (destination, source, target) or a direct data packet's (source, destination,
/// inner destination) as plain integers: looked up for every direct data packet, never
/// walked.
type ConfirmKey = (u64, u64, u64, u64);

fn confirm_key(from: Endpoint, to: Endpoint, a: &Ipv6Addr) -> ConfirmKey {
    let ep = |e: Endpoint| (u64::from(u32::from(*e.ip())) << 16) | u64::from(e.port());
    let a = u128::from(*a);
    (ep(from), ep(to), (a >> 64) as u64, a as u64)
}

/// ND-04 reads every direct data packet: a walk. The valid NAs answering a probe (control
/// packets) are found before it.
pub(super) fn nd04<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    struct Nd04 {
        /// (NA's destination, NA's source, target) → time of the first valid answer.
        confirmed: crate::conformance::decode::FastMap<ConfirmKey, u64>,
        /// Direct data packets seen, and the first two frames.
        n: usize,
        firsts: Vec<u64>,
        /// (source, destination) endpoint pairs already reported.
        reported: BTreeMap<(Endpoint, Endpoint), u64>,
        off: Offences,
    }
    impl<'a> Walk<'a> for Nd04 {
        fn packet(&mut self, v: &View<'a>, d: &Decoded, _: &Decoded) {
            if v.is_injected(d) || !matches!(d.kind, Kind::Data { .. }) || d.path != Some(PathKind::Direct) {
                return;
            }
            self.n += 1;
            if self.firsts.len() < 2 {
                self.firsts.push(d.frame);
            }
            let (Some(from), Some(to), Some(ih)) = (d.src(), d.dst(), &d.inner) else {
                return;
            };
            let ok = self
                .confirmed
                .get(&confirm_key(from, to, &ih.dst))
                .is_some_and(|&t| t <= d.ts_ns);
            if !ok && self.reported.insert((from, to), d.frame).is_none() {
                self.off.add(
                    d.frame,
                    format!(
                        "direct data {from} → {to} for {} with no matching NA before it",
                        ih.dst
                    ),
                );
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let Nd04 { n, firsts, off, .. } = *self;
            if n == 0 {
                return Finding::na("no direct data in this capture");
            }
            off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{n} direct data packet(s), each after an NA answering the sender's own probe"),
                    firsts,
                )
            })
        }
    }
    let mut confirmed: crate::conformance::decode::FastMap<ConfirmKey, u64> = Default::default();
    for (_, l) in v.control_packets() {
        let (Kind::Na { target, .. }, Some(from), Some(to)) = (&l.kind, l.src(), l.dst()) else {
            continue;
        };
        if nd_valid(l) && matches_probe(v, l) {
            confirmed.entry(confirm_key(to, from, target)).or_insert(l.ts_ns);
        }
    }
    Box::new(Nd04 {
        confirmed,
        n: 0,
        firsts: Vec::new(),
        reported: BTreeMap::new(),
        off: Offences::default(),
    })
}

/// ND-05 needs the last data packet (sender's side, not the router's relayed copies) each
/// way between the peers of every expected pair: a walk. A packet goes from `x` to `y` when
/// its inner destination is one of `y`'s addresses or names one of `y`'s mappings; the
/// mappings are only complete after the walk, so the walk keeps the last packet per
/// (sender, addressee) and per (sender, named endpoint), and `finish` picks.
pub(super) fn nd05<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// A data packet: (place in the walk, frame, path).
    type Last = (usize, u64, Option<PathKind>);
    struct Nd05 {
        /// The expected pairs' peers, by index (None: a name no peer has).
        pairs: Vec<Option<(usize, usize)>>,
        /// For each sending peer, the peers it is expected to reach.
        to: BTreeMap<usize, Vec<usize>>,
        i: usize,
        /// (sender, addressee) → the last packet to one of the addressee's addresses.
        by_address: BTreeMap<(usize, usize), Last>,
        /// (sender, endpoint) → the last packet whose destination names the endpoint.
        by_endpoint: crate::conformance::decode::FastMap<(usize, Endpoint), Last>,
    }
    impl<'a> Walk<'a> for Nd05 {
        fn packet(&mut self, v: &View<'a>, r: &Decoded, _: &Decoded) {
            if v.is_injected(r) {
                return;
            }
            let i = self.i;
            self.i += 1;
            if !matches!(r.kind, Kind::Data { .. }) || r.from_router {
                return;
            }
            let (Some(a), Some(h)) = (r.src().and_then(|s| v.peer_of_socket(s)), r.inner) else {
                return;
            };
            let Some(ys) = self.to.get(&a) else {
                return;
            };
            let last = (i, r.frame, r.path);
            for &y in ys {
                if v.peers().get(y).is_some_and(|pb| pb.addresses.contains(&h.dst)) {
                    self.by_address.insert((a, y), last);
                }
            }
            if let Some(e) = r.profile.decode(&h.dst) {
                self.by_endpoint.insert((a, e), last);
            }
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let exp = &v.inputs.expect.paths;
            if exp.is_empty() {
                return Finding::na("no expected path per peer pair given");
            }
            let mut off = Offences::default();
            let mut ok = Vec::new();
            let mut missing = Vec::new();
            for (e, pair) in exp.iter().zip(&self.pairs) {
                let Some((a, b)) = *pair else {
                    missing.push(format!("{}–{}", e.a, e.b));
                    continue;
                };
                for (x, y) in [(a, b), (b, a)] {
                    let (nx, ny) = (&v.peers()[x].name, &v.peers()[y].name);
                    let last = v.peers()[y]
                        .mappings
                        .iter()
                        .filter_map(|m| self.by_endpoint.get(&(x, m.1)))
                        .chain(self.by_address.get(&(x, y)))
                        .max_by_key(|l| l.0);
                    let Some(&(_, frame, path)) = last else {
                        off.add(0, format!("no data {nx} → {ny}"));
                        continue;
                    };
                    let got = path.unwrap_or(PathKind::ViaRouter);
                    if got != e.path {
                        off.add(
                            frame,
                            format!("{nx} → {ny} ends {}, expected {}", got.name(), e.path.name()),
                        );
                    } else {
                        ok.push(format!("{nx} → {ny} {}", got.name()));
                    }
                }
            }
            off.forget_frame_zero();
            if !off.examples.is_empty() {
                return Finding::new(Verdict::Fail, off.text(), off.frames());
            }
            if !missing.is_empty() {
                return Finding::new(
                    Verdict::Fail,
                    format!(
                        "peers of the expected pairs {} never sent in this capture",
                        missing.join(", ")
                    ),
                    Vec::new(),
                );
            }
            Finding::new(Verdict::Pass, ok.join("; "), Vec::new())
        }
    }
    let find = |n: &str| v.peers().iter().position(|p| p.name == n);
    let pairs: Vec<Option<(usize, usize)>> = v
        .inputs
        .expect
        .paths
        .iter()
        .map(|e| Some((find(&e.a)?, find(&e.b)?)))
        .collect();
    let mut to: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(a, b) in pairs.iter().flatten() {
        for (x, y) in [(a, b), (b, a)] {
            let ys = to.entry(x).or_default();
            if !ys.contains(&y) {
                ys.push(y);
            }
        }
    }
    Box::new(Nd05 {
        pairs,
        to,
        i: 0,
        by_address: BTreeMap::new(),
        by_endpoint: Default::default(),
    })
}

/// ND-06 follows every data packet's path per inner address pair: a walk.
pub(super) fn nd06<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// An inner (source, destination) address pair as the addresses' halves.
    type PairKey = (u64, u64, u64, u64);
    fn key(a: &Ipv6Addr, b: &Ipv6Addr) -> PairKey {
        let (a, b) = (u128::from(*a), u128::from(*b));
        ((a >> 64) as u64, a as u64, (b >> 64) as u64, b as u64)
    }
    struct Nd06 {
        grace: u64,
        /// (src, dst) inner address pair → time of the first direct packet. Only looked up
        /// (never walked), for nearly every data packet: a fast hash map.
        direct_since: crate::conformance::decode::FastMap<PairKey, u64>,
        pairs: usize,
        off: Offences,
    }
    impl<'a> Walk<'a> for Nd06 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if v.is_injected(f) {
                return;
            }
            let (Kind::Data { src, dst, .. }, Some(path)) = (&f.kind, f.path) else {
                return;
            };
            if f.from_router {
                return;
            }
            if path == PathKind::Direct {
                if self.direct_since.insert(key(src, dst), f.ts_ns).is_none() {
                    self.pairs += 1;
                }
                return;
            }
            let since = [
                self.direct_since.get(&key(dst, src)),
                self.direct_since.get(&key(src, dst)),
            ]
            .into_iter()
            .flatten()
            .min()
            .copied();
            if let Some(t) = since.filter(|&t| f.ts_ns > t.saturating_add(self.grace)) {
                if self.direct_since.get(&key(src, dst)).is_none_or(|&t| t < f.ts_ns) {
                    self.off.add(
                        f.frame,
                        format!(
                            "{src} → {dst} via the router {} after the path went direct",
                            secs(f.ts_ns.saturating_sub(t))
                        ),
                    );
                }
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let Nd06 { pairs, off, .. } = *self;
            if pairs == 0 {
                return Finding::na("no direct data in this capture");
            }
            if off.is_empty() {
                Finding::new(
                    Verdict::Pass,
                    format!("{pairs} direct direction(s); no return via the router after"),
                    Vec::new(),
                )
            } else {
                Finding::new(Verdict::Warn, off.text(), off.frames())
            }
        }
    }
    Box::new(Nd06 {
        grace: v.inputs.tolerance_ns().saturating_add(2_000_000_000),
        direct_since: Default::default(),
        pairs: 0,
        off: Offences::default(),
    })
}

pub(super) fn nd07(v: &View<'_>) -> Finding {
    let Some(max) = v.inputs.expect.max_probes else {
        return Finding::na("needs the configured number of probes per attempt");
    };
    let nss = bypass_ns(v);
    if nss.is_empty() {
        return Finding::na("no bypass NS in this capture");
    }
    let tol = v.inputs.tolerance_ns();
    let holddown = v.inputs.expect.probe_holddown.map(dur_ns);
    // An attempt: probes from one socket for one target with gaps under half the hold-down
    // (or 2 s).
    let gap = holddown.map_or(2_000_000_000, |h| (h / 2).max(tol));
    let mut by_key: BTreeMap<(Endpoint, Ipv6Addr), Vec<&Decoded>> = BTreeMap::new();
    for (f, _) in &nss {
        if let (Some(s), Kind::Ns { target, .. }) = (f.src(), &f.kind) {
            by_key.entry((s, *target)).or_default().push(f);
        }
    }
    let mut off = Offences::default();
    let mut attempts_n = 0;
    for ((socket, target), probes) in &by_key {
        let mut attempts: Vec<Vec<&Decoded>> = Vec::new();
        for p in probes {
            match attempts.last_mut() {
                Some(a) if a.last().is_some_and(|l| p.ts_ns.saturating_sub(l.ts_ns) < gap) => a.push(p),
                _ => attempts.push(vec![p]),
            }
        }
        attempts_n += attempts.len();
        for (i, a) in attempts.iter().enumerate() {
            if a.len() > max as usize {
                off.add(
                    a[max as usize].frame,
                    format!(
                        "{} probes from {socket} for {target} in one attempt (at most {max})",
                        a.len()
                    ),
                );
            }
            let (Some(first), Some(last)) = (a.first(), a.last()) else {
                continue;
            };
            let answered = v.control_packets().map(|p| p.1).any(|na| {
                matches!(&na.kind, Kind::Na { target: t, .. } if t == target)
                    && na.dst() == Some(*socket)
                    && na.ts_ns >= first.ts_ns
                    && nd_valid(na)
            });
            if let (false, Some(h), Some(next)) = (answered, holddown, attempts.get(i + 1)) {
                if next[0].ts_ns.saturating_add(tol) < last.ts_ns.saturating_add(h) {
                    off.add(
                        next[0].frame,
                        format!(
                            "failed path {socket} → {target} re-probed after {} (hold-down {})",
                            secs(next[0].ts_ns.saturating_sub(last.ts_ns)),
                            secs(h)
                        ),
                    );
                }
            }
        }
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "{attempts_n} probe attempt(s), none over {max} probes{}",
                if holddown.is_some() {
                    " or inside the hold-down"
                } else {
                    ""
                }
            ),
            nss.iter().take(2).map(|p| p.0.frame).collect(),
        )
    })
}

/// Why an NS or NA (as received) is spoofed or invalid, if it is.
fn spoofed(v: &View<'_>, l: &Decoded) -> Option<String> {
    if !nd_valid(l) {
        return Some(nd_problems(l, 24).join(", "))
            .filter(|s| !s.is_empty())
            .or(Some("invalid".into()));
    }
    let ih = l.inner?;
    if l.from_router || !v.cap.prefixes.contains(&addr::prefix64(&ih.src)) {
        return None;
    }
    // Consistent when any sighting (the public side of a NAT) carries the named endpoint.
    match v.source_check(l) {
        SourceCheck::Inconsistent { from, .. } => Some(format!("source {} does not name {from}", ih.src)),
        _ => None,
    }
}

/// (data source, data destination) → spoofed NAs waiting for their first data packet:
/// (index in the list of spoofed NS/NA, time, target).
type Pending = crate::conformance::decode::FastMap<(Endpoint, Endpoint), Vec<(usize, u64, Ipv6Addr)>>;

/// ND-08 asks whether direct data followed a spoofed NA: a walk. The spoofed or invalid
/// NS/NA (control packets) are found before it; each NA's question "the first data packet
/// from its destination to its source for its target, after it" is pending until a packet
/// of the walk answers it.
pub(super) fn nd08<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    struct Nd08<'a> {
        /// Every spoofed or invalid NS/NA as received, and why, in packet order.
        bad: Vec<(&'a Decoded, String)>,
        /// (data source, data destination) → the spoofed NAs (index in `bad`, time, target)
        /// whose first matching data packet is not found yet.
        pending: Pending,
        /// The first data packet's frame, per spoofed NA (index in `bad`).
        used: BTreeMap<usize, u64>,
    }
    impl<'a> Walk<'a> for Nd08<'a> {
        fn packet(&mut self, v: &View<'a>, d: &Decoded, _: &Decoded) {
            if self.pending.is_empty() || v.is_injected(d) || !matches!(d.kind, Kind::Data { .. }) {
                return;
            }
            let (Some(src), Some(dst), Some(h)) = (d.src(), d.dst(), d.inner) else {
                return;
            };
            let Some(waiting) = self.pending.get_mut(&(src, dst)) else {
                return;
            };
            let used = &mut self.used;
            waiting.retain(|&(k, ts, target)| {
                let hit = d.ts_ns > ts && h.dst == target;
                if hit {
                    used.insert(k, d.frame);
                }
                !hit
            });
            if waiting.is_empty() {
                self.pending.remove(&(src, dst));
            }
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let Nd08 { bad, used, .. } = *self;
            if bad.is_empty() {
                return Finding::na(if v.inputs.expect.injection.is_some() {
                    "no spoofed or invalid NS/NA reached a node in this capture (the injection does not show)"
                } else {
                    "no spoofed or invalid NS/NA in this capture"
                });
            }
            let tol = v.inputs.tolerance_ns();
            let mut off = Offences::default();
            let mut verdict = Verdict::Pass;
            for (k, (l, why)) in bad.iter().enumerate() {
                match &l.kind {
                    Kind::Ns { target, .. } => {
                        let answer = v.control_packets().map(|p| p.0).find(|na| {
                            matches!(&na.kind, Kind::Na { target: t, .. } if t == target)
                                && na.src() == l.dst()
                                && na.dst() == l.src()
                                && na.ts_ns >= l.ts_ns
                                && na.ts_ns <= l.ts_ns.saturating_add(2_000_000_000).saturating_add(tol)
                        });
                        if let Some(na) = answer {
                            verdict = worst(verdict, Verdict::Fail);
                            off.add(
                                na.frame,
                                format!("NA answering the NS of frame {} ({why})", l.frame),
                            );
                        }
                    }
                    Kind::Na { .. } => {
                        let (Some(from), Some(to)) = (l.src(), l.dst()) else {
                            continue;
                        };
                        let Some(&d) = used.get(&k) else {
                            continue;
                        };
                        let valid_confirm = v.control_packets().map(|p| p.1).any(|x| {
                            x.src() == Some(from)
                                && x.dst() == Some(to)
                                && nd_valid(x)
                                && matches_probe(v, x)
                                && spoofed(v, x).is_none()
                        });
                        if !valid_confirm {
                            verdict = worst(verdict, Verdict::Fail);
                            off.add(
                                d,
                                format!("direct data after the NA of frame {} ({why})", l.frame),
                            );
                        }
                    }
                    _ => {}
                }
            }
            if off.is_empty() {
                Finding::new(
                    Verdict::Pass,
                    format!(
                        "{} spoofed or invalid NS/NA arrived; none was answered or acted on",
                        bad.len()
                    ),
                    bad.iter().take(3).map(|(l, _)| l.frame).collect(),
                )
            } else {
                let firsts: Vec<u64> = bad.iter().take(2).map(|(l, _)| l.frame).collect();
                let mut frames = off.frames();
                frames.extend(firsts);
                Finding::new(verdict, off.text(), frames)
            }
        }
    }
    // NS and NA are control packets: the control packets (injected ones too) hold them all.
    let mut bad = Vec::new();
    for (_, l) in v.control_all_packets() {
        if matches!(l.kind, Kind::Ns { .. } | Kind::Na { .. })
            || (is_nd(l) && matches!(l.kind, Kind::Malformed { .. }))
        {
            if let Some(why) = spoofed(v, l) {
                bad.push((l, why));
            }
        }
    }
    let mut pending: Pending = Default::default();
    for (k, (l, _)) in bad.iter().enumerate() {
        if let (Kind::Na { target, .. }, Some(from), Some(to)) = (&l.kind, l.src(), l.dst()) {
            pending.entry((to, from)).or_default().push((k, l.ts_ns, *target));
        }
    }
    Box::new(Nd08 {
        bad,
        pending,
        used: BTreeMap::new(),
    })
}
