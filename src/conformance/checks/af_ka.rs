//! Address formation (AF-01..03) and keepalives (KA-01..05).

use std::collections::BTreeMap;

use crate::capture::Direction;
use crate::conformance::decode::{addr, Decoded, Endpoint, Kind, Profile};
use crate::conformance::model::Verdict;

use super::rs_ra::{advertised_by, worst, Offences};
use super::view::{SourceCheck, View};
use super::{dur_ns, secs, Finding};

/// The peer that sent a record (by its sender-side socket).
fn sender(v: &View<'_>, r: &Decoded) -> Option<usize> {
    r.src().and_then(|s| v.peer_of_socket(s))
}

/// Whether an inner source is a 6bed4 address of this capture.
fn six_src(v: &View<'_>, r: &Decoded) -> Option<std::net::Ipv6Addr> {
    let h = r.inner?;
    (!h.src.is_unspecified() && v.cap.prefixes.contains(&addr::prefix64(&h.src))).then_some(h.src)
}

pub(super) fn af01(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    let mut ok = Vec::new();
    for (f, _) in v.packets() {
        if f.from_router {
            continue;
        }
        let (Some(p), Some(a)) = (sender(v, f), six_src(v, f)) else {
            continue;
        };
        let peer = &v.peers()[p];
        let Some(&(_, ra_i)) = peer.ras.iter().rev().find(|(t, _)| *t <= f.ts_ns) else {
            continue;
        };
        let Some(ra) = v.records().get(ra_i) else { continue };
        let Some((ra_sent, _)) = v.ends(ra) else { continue };
        if !advertised_by(&a, ra_sent) {
            off.add(
                f.frame,
                format!(
                    "{} uses {a}, which is not the prefix + identifier of its RA (frame {})",
                    peer.name, ra.frame
                ),
            );
            continue;
        }
        let seen_as = ra_sent.dst();
        if f.profile.decode(&a) != seen_as {
            off.add(
                f.frame,
                format!(
                    "{} uses {a}, which names {}, not {} (its mapping as the router saw it)",
                    peer.name,
                    f.profile.decode(&a).map_or("nothing".into(), |e| e.to_string()),
                    seen_as.map_or("?".into(), |e| e.to_string())
                ),
            );
            continue;
        }
        if ok.len() < 2 {
            ok.push(f.frame);
        }
    }
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

pub(super) fn af02(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    // Address (by its halves: ordered as the address) → the frame of its last use. Asked
    // for every packet: a fast hash map, sorted at the end for the evidence.
    let mut seen: crate::conformance::decode::FastMap<(u64, u64), _> = Default::default();
    for (f, _) in v.packets() {
        if f.from_router {
            continue;
        }
        let Some(a) = six_src(v, f) else { continue };
        let k = u128::from(a);
        if seen.insert(((k >> 64) as u64, k as u64), f.frame).is_some() {
            continue;
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
            off.add(f.frame, format!("{a}: {}", p.join(", ")));
        }
    }
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

pub(super) fn af03(v: &View<'_>) -> Finding {
    let mut fail = Offences::default();
    let mut warn = Offences::default();
    let mut judged = 0;
    for (f, l) in v.packets() {
        if f.from_router || l.from_router {
            continue;
        }
        let Some(a) = six_src(v, f) else { continue };
        let (named, from) = match v.source_check(f) {
            SourceCheck::NotJudged | SourceCheck::Untranslated => continue,
            SourceCheck::Consistent => {
                judged += 1;
                continue;
            }
            SourceCheck::Inconsistent { named, from } => (named, from),
        };
        judged += 1;
        // The frame to show: the sighting that carries `from`.
        let frame = v
            .sightings(f)
            .filter(|s| s.src() == Some(from))
            .last()
            .map_or(l.frame, |s| s.frame);
        let text = format!(
            "source {a} names {} in the {} layout, the datagram came from {from}{}",
            named.map_or("nothing".into(), |n| n.to_string()),
            f.profile.name(),
            super::rs_ra::mismatch_hint(&a, from, f.profile)
        );
        let me = sender(v, f);
        let stale = me.is_some_and(|p| {
            v.rebindings()
                .iter()
                .any(|rb| rb.peer == p && Some(rb.old) == named && rb.new == from)
        });
        // Towards another peer, from a peer whose address names its mapping as the router
        // saw it: the NAT mapped this destination elsewhere (symmetric / address-dependent
        // mapping). The peer cannot know; the receiver rightly drops it. Sent to the router,
        // it is a fault: the router must have been told the right mapping.
        let to_router = v.sightings(f).any(|s| s.towards_router) || f.towards_router;
        let to_peer = f
            .dst()
            .and_then(|d| v.peer_of_endpoint(d))
            .is_some_and(|p| Some(p) != me);
        let own_mapping = me.is_some_and(|p| v.peers()[p].mappings.iter().any(|m| Some(m.1) == named));
        if stale {
            warn.add(frame, format!("{text} (a stale address after a NAT rebinding)"));
        } else if !to_router && to_peer && own_mapping {
            let why = if addr::is_private_v4(*from.ip()) {
                "it went to the other peer untranslated, from a private address: bypass to it cannot work"
            } else {
                "a NAT gave this peer a different mapping towards another peer (symmetric/address-dependent mapping): bypass to it cannot work"
            };
            warn.add(frame, format!("{text} ({why})"));
        } else {
            fail.add(frame, text);
        }
    }
    if judged == 0 {
        return Finding::na("no 6bed4 source seen where its outer tuple can be judged");
    }
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

pub(super) fn ka01(v: &View<'_>) -> Finding {
    let kas = keepalives(v);
    let mut off = Offences::default();
    // Short non-IPv6 datagrams from a tunnel socket to the router: keepalives that are not empty.
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
    let tunnel_sockets: Vec<Endpoint> = v
        .packets()
        .map(|p| p.0)
        .filter(|r| !matches!(r.kind, Kind::Keepalive | Kind::IcmpError { .. }) && !r.from_router)
        .filter_map(|r| r.src())
        .collect();
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
        let same_ip_other_port = tunnel_sockets
            .iter()
            .any(|s| s.ip() == socket.ip() && s.port() != socket.port());
        if same_ip_other_port && !tunnel_sockets.contains(socket) {
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
                let soliciting = v
                    .packets()
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

pub(super) fn ka05(v: &View<'_>) -> Finding {
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
        let last_seen = v
            .packets()
            .filter(|(f, _)| f.src().and_then(|s| v.peer_of_socket(s)) == Some(i))
            .map(|(f, _)| f.ts_ns)
            .max()
            .unwrap_or(a.0);
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
