//! Encapsulation and forwarding: EN-01..06.

use crate::conformance::decode::{addr, Decoded, Kind, Layer};
use crate::conformance::model::Verdict;

use super::rs_ra::Offences;
use super::view::{rs_valid, View};
use super::{secs, Finding, Walk};

/// How long after a datagram reaches the router its relayed copy may leave.
const RELAY_WINDOW_NS: u64 = 2_000_000_000;

/// EN-01 reads every datagram's lengths: a walk.
pub(super) fn en01<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct En01 {
        n: usize,
        off: Offences,
    }
    impl<'a> Walk<'a> for En01 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if v.is_injected(f) {
                return;
            }
            let Some(o) = &f.outer else { return };
            if matches!(f.kind, Kind::IcmpError { v6: false, .. }) {
                return;
            }
            self.n += 1;
            if !o.complete {
                return;
            }
            if let Kind::Malformed { why } = &f.kind {
                if f.icmp.is_none() || f.inner.is_none() || why.contains("truncated") {
                    self.off
                        .add(f.frame, format!("{}-byte UDP payload: {why}", o.udp_payload_len));
                    return;
                }
            }
            if f.trailing > 0 {
                self.off.add(
                    f.frame,
                    format!(
                        "{}-byte UDP payload holds a {}-byte IPv6 packet and {} more bytes",
                        o.udp_payload_len,
                        o.udp_payload_len.saturating_sub(f.trailing as usize),
                        f.trailing
                    ),
                );
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let n = self.n;
            if n == 0 {
                return Finding::na("no 6bed4 datagram in this capture");
            }
            self.off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{n} datagram(s), each empty or exactly one IPv6 packet"),
                    Vec::new(),
                )
            })
        }
    }
    Box::<En01>::default()
}

/// The router's relayed copy of a packet it received as `l`: a tunnel packet from the router
/// or a TUN packet at another node, with the same inner packet (hop limit aside), soon after.
fn relayed<'a>(v: &View<'a>, l: &Decoded) -> Option<super::view::Rec<'a>> {
    let sender_node = v.ends(l).and_then(|(f, _)| f.node());
    let mut same = v.with_own_key_between(l, l.ts_ns, l.ts_ns.saturating_add(RELAY_WINDOW_NS));
    same.find(|r| match r.layer {
        Layer::Tunnel => r.from_router && r.is_first() && r.packet != l.packet,
        Layer::Inner => r.node().is_some() && r.node() != sender_node,
    })
}

/// Whether `a` is the router's own address: link-local, or a 6bed4 address naming one of the
/// capture's router endpoints (layout C puts lanip 0 there).
fn router_address(v: &View<'_>, r: &Decoded, a: &std::net::Ipv6Addr) -> bool {
    (addr::is_link_local(a) && !addr::is_multicast(a))
        || (v.cap.prefixes.contains(&addr::prefix64(a))
            && r.profile.decode(a).is_some_and(|e| v.cap.routers.contains(&e)))
}

/// Why the router's originator check must reject this received packet, if it must.
fn originator_problem(v: &View<'_>, l: &Decoded) -> Option<String> {
    let ih = l.inner?;
    let from = l.src()?;
    if ih.src.is_unspecified() {
        return Some("source ::".into());
    }
    let inside = v.cap.prefixes.contains(&addr::prefix64(&ih.src)) || addr::is_link_local(&ih.src);
    if !inside {
        return Some(format!(
            "source {} is outside the 6bed4 prefix and fe80::/64",
            ih.src
        ));
    }
    let named = l.profile.decode(&ih.src);
    (named != Some(from)).then(|| {
        format!(
            "source {} names {}, the datagram came from {from}",
            ih.src,
            named.map_or("nothing".into(), |n| n.to_string())
        )
    })
}

pub(super) fn en02(v: &View<'_>) -> Finding {
    let mut n = 0;
    let mut off = Offences::default();
    let mut corrected = 0;
    for l in v.at_router() {
        if !matches!(l.kind, Kind::Data { .. }) {
            continue;
        }
        let Some(why) = originator_problem(v, l) else {
            continue;
        };
        n += 1;
        if let Some(r) = relayed(v, l) {
            off.add(
                r.frame,
                format!("relayed the packet of frame {} ({why})", l.frame),
            );
            continue;
        }
        let ra = v.packets().map(|p| p.0).any(|ra| {
            View::is_ra(ra)
                && ra.from_router
                && ra.dst() == l.src()
                && ra.ts_ns >= l.ts_ns
                && ra.ts_ns <= l.ts_ns.saturating_add(RELAY_WINDOW_NS)
        });
        corrected += usize::from(ra);
    }
    if n == 0 {
        return Finding::na("no data with an inconsistent source reached the router in this capture");
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!("{n} packet(s) with an inconsistent source were not relayed ({corrected} answered with an RA carrying the new mapping)"),
            Vec::new(),
        )
    })
}

pub(super) fn en03(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    let mut relays = 0;
    let mut low = 0;
    for l in v.at_router() {
        if !matches!(l.kind, Kind::Data { .. } | Kind::Ns { .. } | Kind::Na { .. }) {
            continue;
        }
        let Some(ih) = l.inner else { continue };
        // Addressed to the router itself (its 6bed4 address or fe80::/64): delivered, not
        // forwarded, so nothing is decremented (its TUN copy is no relay).
        if router_address(v, l, &ih.dst) {
            continue;
        }
        let out = relayed(v, l);
        let is_nd = matches!(l.kind, Kind::Ns { .. } | Kind::Na { .. });
        if ih.hop_limit <= 1 && !is_nd {
            low += 1;
        }
        let Some(out) = out else { continue };
        let Some(oh) = out.inner else { continue };
        relays += 1;
        if is_nd {
            if oh.hop_limit != ih.hop_limit {
                off.add(
                    out.frame,
                    format!("ND relayed with hop limit {} → {}", ih.hop_limit, oh.hop_limit),
                );
            }
        } else if ih.hop_limit <= 1 {
            off.add(
                out.frame,
                format!("forwarded a packet that arrived with hop limit {}", ih.hop_limit),
            );
        } else if oh.hop_limit != ih.hop_limit - 1 {
            off.add(
                out.frame,
                format!(
                    "hop limit {} in, {} out (frame {} → {})",
                    ih.hop_limit, oh.hop_limit, l.frame, out.frame
                ),
            );
        }
    }
    if relays == 0 && low == 0 {
        return Finding::na("no packet relayed by the router in this capture");
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!("{relays} relay(s), each decrementing the hop limit by one; {low} packet(s) at hop limit ≤ 1 not forwarded"),
            Vec::new(),
        )
    })
}

pub(super) fn en04(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    let mut data = 0;
    let mut largest = 0usize;
    for (f, _) in v.packets() {
        let (Some(o), Some(ih)) = (&f.outer, &f.inner) else {
            continue;
        };
        data += 1;
        let claimed = 40 + usize::from(ih.payload_len);
        if o.complete && matches!(f.kind, Kind::Malformed { .. }) && claimed > o.udp_payload_len {
            off.add(
                f.frame,
                format!(
                    "{}-byte UDP payload carries an IPv6 packet of {claimed} bytes: truncated without notice",
                    o.udp_payload_len
                ),
            );
        } else if !matches!(f.kind, Kind::Malformed { .. }) {
            largest = largest.max(claimed);
        }
    }
    // What entered a TUN must leave it intact at the far end.
    let mut intact = 0;
    for r in v.records().iter().filter(|r| r.layer == Layer::Inner && !r.noise) {
        let (Some(ih), Some(key)) = (&r.inner, r.inner_key) else {
            continue;
        };
        let len = 40 + usize::from(ih.payload_len);
        if len <= 1280 && v.with_key(Some(key)).any(|t| t.is_tunnel()) {
            intact += 1;
        }
    }
    if data == 0 {
        return Finding::na("no IPv6 packet in the tunnel in this capture");
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!(
                "no truncated packet; the largest tunnelled packet is {largest} bytes{}",
                if intact > 0 {
                    format!("; {intact} TUN packet(s) found intact in the tunnel")
                } else {
                    String::new()
                }
            ),
            Vec::new(),
        )
    })
}

pub(super) fn en05(v: &View<'_>) -> Finding {
    let mut off = Offences::default();
    let mut n = 0;
    for (f, _) in v.packets() {
        if !f.from_router || !matches!(f.kind, Kind::Data { .. }) {
            continue;
        }
        let (Some(ih), Some(to)) = (&f.inner, f.dst()) else {
            continue;
        };
        n += 1;
        if addr::is_multicast(&ih.dst) {
            off.add(
                f.frame,
                format!("relayed to the multicast destination {}", ih.dst),
            );
        }
        if to.ip().is_multicast() || to.ip().is_broadcast() {
            off.add(f.frame, format!("sent to {to}"));
        }
        let lo = f.ts_ns.saturating_sub(RELAY_WINDOW_NS);
        let reflected = v.with_own_key_between(f, lo, f.ts_ns).find(|l| {
            l.is_tunnel()
                && v.is_router_view(l)
                && !v.is_injected(l)
                && l.towards_router
                && l.src() == Some(to)
                && l.ts_ns <= f.ts_ns
                && f.ts_ns.saturating_sub(l.ts_ns) <= RELAY_WINDOW_NS
        });
        if let Some(l) = reflected {
            off.add(
                f.frame,
                format!(
                    "reflected the packet of frame {} back to its sender {to}",
                    l.frame
                ),
            );
        }
    }
    if n == 0 {
        return Finding::na("the router relayed no data in this capture");
    }
    off.or_pass(|| {
        Finding::new(
            Verdict::Pass,
            format!("{n} relayed packet(s): none to multicast, none back to its sender"),
            Vec::new(),
        )
    })
}

pub(super) fn en06(v: &View<'_>) -> Finding {
    let Some(inj) = &v.inputs.expect.injection else {
        return Finding::na("no negative corpus was injected in this scenario");
    };
    let tol = v.inputs.tolerance_ns();
    let last_injected = v.injected_packets().map(|p| p.1.ts_ns).max();
    let after = inj.until_ns.or(last_injected).unwrap_or(inj.at_ns);
    let mut off = Offences::default();
    let mut served = Vec::new();
    for l in v.at_router() {
        if l.ts_ns <= after {
            continue;
        }
        if View::is_rs(l) && rs_valid(l) {
            let answered = v.packets().map(|p| p.0).find(|ra| {
                View::is_ra(ra)
                    && ra.from_router
                    && ra.dst() == l.src()
                    && ra.ts_ns >= l.ts_ns
                    && ra.ts_ns <= l.ts_ns.saturating_add(RELAY_WINDOW_NS).saturating_add(tol)
            });
            match answered {
                Some(ra) => served.push(format!("RS of frame {} answered by frame {}", l.frame, ra.frame)),
                None if l.ts_ns.saturating_add(RELAY_WINDOW_NS) < v.t_end() => {
                    off.add(l.frame, "valid RS after the injection got no RA".into())
                }
                None => {}
            }
        } else if l.towards_router
            && matches!(l.kind, Kind::Data { .. })
            && originator_problem(v, l).is_none()
        {
            let dst_is_peer = l.inner.is_some_and(|h| {
                v.cap.prefixes.contains(&addr::prefix64(&h.dst)) && !addr::is_multicast(&h.dst)
            });
            if !dst_is_peer {
                continue;
            }
            match relayed(v, l) {
                Some(r) => served.push(format!("data of frame {} relayed as frame {}", l.frame, r.frame)),
                None if l.ts_ns.saturating_add(RELAY_WINDOW_NS) < v.t_end() => {
                    off.add(l.frame, "valid data after the injection was not relayed".into())
                }
                None => {}
            }
        }
    }
    // Peers active before the injection keep sending after it.
    for (i, p) in v.peers().iter().enumerate() {
        let mine = |r: &Decoded| r.src().and_then(|s| v.peer_of_socket(s)) == Some(i);
        let before = v.packets().map(|x| x.0).any(|r| mine(r) && r.ts_ns < inj.at_ns);
        let after_any = v.packets().map(|x| x.0).find(|r| mine(r) && r.ts_ns > after);
        if before && v.t_end() > after.saturating_add(3_000_000_000) {
            match after_any {
                Some(r) => served.push(format!("{} still sending (frame {})", p.name, r.frame)),
                None => off.add(
                    0,
                    format!(
                        "{} sent nothing in the {} after the injection",
                        p.name,
                        secs(v.t_end().saturating_sub(after))
                    ),
                ),
            }
        }
    }
    off.forget_frame_zero();
    if !off.examples.is_empty() {
        return Finding::new(Verdict::Fail, off.text(), off.frames());
    }
    if served.is_empty() {
        return Finding::na("no valid traffic after the injection to show that it is still served");
    }
    served.truncate(4);
    Finding::new(Verdict::Pass, served.join("; "), Vec::new())
}
