//! Encapsulation and forwarding: EN-01..06.

use crate::conformance::decode::{addr, Decoded, Endpoint, Kind, Layer};
use crate::conformance::model::Verdict;

use super::rs_ra::Offences;
use super::view::{rs_valid, View};
use super::{secs, Finding, Walk, WALK_WINDOW_NS};

/// How long after a datagram reaches the router its relayed copy may leave.
const RELAY_WINDOW_NS: u64 = 2_000_000_000;

// A walk looks that far ahead of a packet for its relayed copy: within what a walk may read.
const _: () = assert!(RELAY_WINDOW_NS <= WALK_WINDOW_NS);

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

/// The router's view of a tunnel packet that reached it, unless injected: what
/// [`View::at_router`] yields, asked of one packet of the shared walk.
fn arrived<'a: 'r, 'r>(v: &View<'a>, f: &'r Decoded) -> Option<&'r Decoded> {
    if v.is_injected(f) {
        return None;
    }
    v.router_view(f).filter(|r| r.towards_router)
}

/// The RAs the router sent (sender's sighting, not injected), by time: control packets,
/// gathered before the walk so that a data packet's question "did an RA follow?" needs no
/// walk of its own.
struct RouterRas<'a> {
    /// (time, place in packet order, the RA), sorted.
    ras: Vec<(u64, usize, &'a Decoded)>,
}

impl<'a> RouterRas<'a> {
    fn new(v: &View<'a>) -> RouterRas<'a> {
        let mut ras: Vec<(u64, usize, &'a Decoded)> = v
            .control_packets()
            .map(|p| p.0)
            .filter(|ra| View::is_ra(ra) && ra.from_router)
            .enumerate()
            .map(|(k, ra)| (ra.ts_ns, k, ra))
            .collect();
        ras.sort_unstable_by_key(|e| (e.0, e.1));
        RouterRas { ras }
    }

    /// The first RA in packet order sent to `to` with a time in `lo..=hi`.
    fn first_to(&self, to: Option<Endpoint>, lo: u64, hi: u64) -> Option<&'a Decoded> {
        let start = self.ras.partition_point(|e| e.0 < lo);
        self.ras[start..]
            .iter()
            .take_while(|e| e.0 <= hi)
            .filter(|e| e.2.dst() == to)
            .min_by_key(|e| e.1)
            .map(|e| e.2)
    }
}

/// EN-02 reads every data packet that reached the router: a walk.
pub(super) fn en02<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    struct En02<'a> {
        ras: RouterRas<'a>,
        n: usize,
        off: Offences,
        corrected: usize,
    }
    impl<'a> Walk<'a> for En02<'a> {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            let Some(l) = arrived(v, f) else { return };
            if !matches!(l.kind, Kind::Data { .. }) {
                return;
            }
            let Some(why) = originator_problem(v, l) else {
                return;
            };
            self.n += 1;
            if let Some(r) = relayed(v, l) {
                self.off.add(
                    r.frame,
                    format!("relayed the packet of frame {} ({why})", l.frame),
                );
                return;
            }
            let ra = self
                .ras
                .first_to(l.src(), l.ts_ns, l.ts_ns.saturating_add(RELAY_WINDOW_NS));
            self.corrected += usize::from(ra.is_some());
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let (n, corrected) = (self.n, self.corrected);
            if n == 0 {
                return Finding::na("no data with an inconsistent source reached the router in this capture");
            }
            self.off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{n} packet(s) with an inconsistent source were not relayed ({corrected} answered with an RA carrying the new mapping)"),
                    Vec::new(),
                )
            })
        }
    }
    Box::new(En02 {
        ras: RouterRas::new(v),
        n: 0,
        off: Offences::default(),
        corrected: 0,
    })
}

/// EN-03 compares every packet the router relayed with what it received: a walk.
pub(super) fn en03<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct En03 {
        off: Offences,
        relays: usize,
        low: usize,
    }
    impl<'a> Walk<'a> for En03 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            let Some(l) = arrived(v, f) else { return };
            if !matches!(l.kind, Kind::Data { .. } | Kind::Ns { .. } | Kind::Na { .. }) {
                return;
            }
            let Some(ih) = l.inner else { return };
            // Addressed to the router itself (its 6bed4 address or fe80::/64): delivered, not
            // forwarded, so nothing is decremented (its TUN copy is no relay).
            if router_address(v, l, &ih.dst) {
                return;
            }
            let out = relayed(v, l);
            let is_nd = matches!(l.kind, Kind::Ns { .. } | Kind::Na { .. });
            if ih.hop_limit <= 1 && !is_nd {
                self.low += 1;
            }
            let Some(out) = out else { return };
            let Some(oh) = out.inner else { return };
            self.relays += 1;
            if is_nd {
                if oh.hop_limit != ih.hop_limit {
                    self.off.add(
                        out.frame,
                        format!("ND relayed with hop limit {} → {}", ih.hop_limit, oh.hop_limit),
                    );
                }
            } else if ih.hop_limit <= 1 {
                self.off.add(
                    out.frame,
                    format!("forwarded a packet that arrived with hop limit {}", ih.hop_limit),
                );
            } else if oh.hop_limit != ih.hop_limit - 1 {
                self.off.add(
                    out.frame,
                    format!(
                        "hop limit {} in, {} out (frame {} → {})",
                        ih.hop_limit, oh.hop_limit, l.frame, out.frame
                    ),
                );
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let (relays, low) = (self.relays, self.low);
            if relays == 0 && low == 0 {
                return Finding::na("no packet relayed by the router in this capture");
            }
            self.off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{relays} relay(s), each decrementing the hop limit by one; {low} packet(s) at hop limit ≤ 1 not forwarded"),
                    Vec::new(),
                )
            })
        }
    }
    Box::<En03>::default()
}

/// EN-04 reads every tunnelled packet's length: a walk; the TUN packets (kept in memory
/// whenever a capture has them) are matched with the tunnel in `finish`.
pub(super) fn en04<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct En04 {
        off: Offences,
        data: usize,
        largest: usize,
    }
    impl<'a> Walk<'a> for En04 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if v.is_injected(f) {
                return;
            }
            let (Some(o), Some(ih)) = (&f.outer, &f.inner) else {
                return;
            };
            self.data += 1;
            let claimed = 40 + usize::from(ih.payload_len);
            if o.complete && matches!(f.kind, Kind::Malformed { .. }) && claimed > o.udp_payload_len {
                self.off.add(
                    f.frame,
                    format!(
                        "{}-byte UDP payload carries an IPv6 packet of {claimed} bytes: truncated without notice",
                        o.udp_payload_len
                    ),
                );
            } else if !matches!(f.kind, Kind::Malformed { .. }) {
                self.largest = self.largest.max(claimed);
            }
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            // What entered a TUN must leave it intact at the far end. The tunnel copy is
            // looked up by key over the whole capture, not only near the TUN packet: a
            // capture with TUN packets is analysed in memory.
            let mut intact = 0;
            for r in v.tun_records().filter(|r| !r.noise) {
                let (Some(ih), Some(key)) = (&r.inner, r.inner_key) else {
                    continue;
                };
                let len = 40 + usize::from(ih.payload_len);
                if len <= 1280 && v.with_key(Some(key)).any(|t| t.is_tunnel()) {
                    intact += 1;
                }
            }
            if self.data == 0 {
                return Finding::na("no IPv6 packet in the tunnel in this capture");
            }
            let largest = self.largest;
            self.off.or_pass(|| {
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
    }
    Box::<En04>::default()
}

/// EN-05 reads every packet the router sent: a walk.
pub(super) fn en05<'a>(_: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    #[derive(Default)]
    struct En05 {
        off: Offences,
        n: usize,
    }
    impl<'a> Walk<'a> for En05 {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            if v.is_injected(f) || !f.from_router || !matches!(f.kind, Kind::Data { .. }) {
                return;
            }
            let (Some(ih), Some(to)) = (&f.inner, f.dst()) else {
                return;
            };
            self.n += 1;
            if addr::is_multicast(&ih.dst) {
                self.off.add(
                    f.frame,
                    format!("relayed to the multicast destination {}", ih.dst),
                );
            }
            if to.ip().is_multicast() || to.ip().is_broadcast() {
                self.off.add(f.frame, format!("sent to {to}"));
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
                self.off.add(
                    f.frame,
                    format!(
                        "reflected the packet of frame {} back to its sender {to}",
                        l.frame
                    ),
                );
            }
        }
        fn finish(self: Box<Self>, _: &View<'a>) -> Finding {
            let n = self.n;
            if n == 0 {
                return Finding::na("the router relayed no data in this capture");
            }
            self.off.or_pass(|| {
                Finding::new(
                    Verdict::Pass,
                    format!("{n} relayed packet(s): none to multicast, none back to its sender"),
                    Vec::new(),
                )
            })
        }
    }
    Box::<En05>::default()
}

/// EN-06 follows the RSs and data that reached the router after the injection, and each
/// peer's packets: a walk.
pub(super) fn en06<'a>(v: &View<'a>) -> Box<dyn Walk<'a> + 'a> {
    /// What the walk needs to know before it starts.
    struct Window {
        at_ns: u64,
        /// The end of the injection: packets that reached the router later are judged.
        after: u64,
        tol: u64,
    }
    struct En06<'a> {
        window: Option<Window>,
        ras: RouterRas<'a>,
        off: Offences,
        served: Vec<String>,
        /// Per peer: whether it sent before the injection, and the first frame it sent
        /// after it.
        before: Vec<bool>,
        after_first: Vec<Option<u64>>,
    }
    impl<'a> Walk<'a> for En06<'a> {
        fn packet(&mut self, v: &View<'a>, f: &Decoded, _: &Decoded) {
            let Some(w) = &self.window else { return };
            if v.is_injected(f) {
                return;
            }
            if let Some(i) = f.src().and_then(|s| v.peer_of_socket(s)) {
                if f.ts_ns < w.at_ns {
                    if let Some(b) = self.before.get_mut(i) {
                        *b = true;
                    }
                }
                if f.ts_ns > w.after {
                    if let Some(a) = self.after_first.get_mut(i) {
                        a.get_or_insert(f.frame);
                    }
                }
            }
            let Some(l) = arrived(v, f) else { return };
            if l.ts_ns <= w.after {
                return;
            }
            if View::is_rs(l) && rs_valid(l) {
                let hi = l.ts_ns.saturating_add(RELAY_WINDOW_NS).saturating_add(w.tol);
                match self.ras.first_to(l.src(), l.ts_ns, hi) {
                    Some(ra) => self
                        .served
                        .push(format!("RS of frame {} answered by frame {}", l.frame, ra.frame)),
                    None if l.ts_ns.saturating_add(RELAY_WINDOW_NS) < v.t_end() => self
                        .off
                        .add(l.frame, "valid RS after the injection got no RA".into()),
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
                    return;
                }
                match relayed(v, l) {
                    Some(r) => self
                        .served
                        .push(format!("data of frame {} relayed as frame {}", l.frame, r.frame)),
                    None if l.ts_ns.saturating_add(RELAY_WINDOW_NS) < v.t_end() => self
                        .off
                        .add(l.frame, "valid data after the injection was not relayed".into()),
                    None => {}
                }
            }
            // Only the first few are shown: the rest need not be kept.
            self.served.truncate(SERVED_SHOWN);
        }
        fn finish(self: Box<Self>, v: &View<'a>) -> Finding {
            let Some(w) = &self.window else {
                return Finding::na("no negative corpus was injected in this scenario");
            };
            let (mut off, mut served) = (self.off, self.served);
            // Peers active before the injection keep sending after it.
            for (i, p) in v.peers().iter().enumerate() {
                let before = self.before.get(i).copied().unwrap_or(false);
                if before && v.t_end() > w.after.saturating_add(3_000_000_000) {
                    match self.after_first.get(i).copied().flatten() {
                        Some(frame) => served.push(format!("{} still sending (frame {frame})", p.name)),
                        None => off.add(
                            0,
                            format!(
                                "{} sent nothing in the {} after the injection",
                                p.name,
                                secs(v.t_end().saturating_sub(w.after))
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
            served.truncate(SERVED_SHOWN);
            Finding::new(Verdict::Pass, served.join("; "), Vec::new())
        }
    }
    let window = v.inputs.expect.injection.as_ref().map(|inj| {
        // Without a known end, the last injected packet's arrival ends the injection.
        let after = inj
            .until_ns
            .unwrap_or_else(|| v.injected_packets().map(|p| p.1.ts_ns).max().unwrap_or(inj.at_ns));
        Window {
            at_ns: inj.at_ns,
            after,
            tol: v.inputs.tolerance_ns(),
        }
    });
    let peers = v.peers().len();
    Box::new(En06 {
        ras: RouterRas::new(v),
        window,
        off: Offences::default(),
        served: Vec::new(),
        before: vec![false; peers],
        after_first: vec![None; peers],
    })
}

/// How many pieces of evidence of service EN-06 shows.
const SERVED_SHOWN: usize = 4;
