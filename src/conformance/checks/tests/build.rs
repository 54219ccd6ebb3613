//! Hand-made 6bed4 exchanges for the check tests: IPv4/UDP/IPv6/ICMPv6 bytes written here
//! (with their own checksum code), packed into a pcapng in memory, then decoded.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, UNIX_EPOCH};

use crate::capture::{linktype, Direction, PcapngWriter, ShbInfo};
use crate::conformance::checks::{run_passive, Expectations, Inputs};
use crate::conformance::decode::{addr, decode_bytes, DecodeOptions, DecodedCapture, Endpoint, Profile};
use crate::conformance::model::{CheckResult, Verdict};

pub const T0_S: u64 = 1_700_000_000;

pub fn ep(ip: [u8; 4], port: u16) -> Endpoint {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

/// The router, two public peers, the prefix.
pub fn router() -> Endpoint {
    ep([192, 0, 2, 1], 25790)
}
pub fn pa() -> Endpoint {
    ep([198, 51, 100, 7], 40000)
}
pub fn pb() -> Endpoint {
    ep([203, 0, 113, 9], 40002)
}
pub fn prefix() -> Ipv6Addr {
    "2001:db8:6bed:4::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}
pub fn a6(e: Endpoint) -> Ipv6Addr {
    addr::encode_c(&prefix(), e, 1)
}
pub fn ll6() -> Ipv6Addr {
    "fe80::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}
pub fn all_nodes() -> Ipv6Addr {
    "ff02::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}
pub fn all_routers() -> Ipv6Addr {
    "ff02::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    acc
}
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A whole IPv6 packet.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(hop);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message in an IPv6 packet, checksum filled in.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc += m.len() as u32 + 58;
    acc = sum16(&m, acc);
    let c = fold(acc);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, hop, 58, &m)
}

pub fn opt_ll(kind: u8, ll: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&ll);
    o
}

pub fn rs(slla: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = vec![0; 4];
    if let Some(ll) = slla {
        b.extend(opt_ll(1, ll));
    }
    icmp6(Ipv6Addr::UNSPECIFIED, all_routers(), 255, 133, 0, &b)
}

pub fn pio(prefix: Ipv6Addr, len: u8, flags: u8, valid: u32, preferred: u32) -> Vec<u8> {
    let mut o = vec![3, 4, len, flags];
    o.extend_from_slice(&valid.to_be_bytes());
    o.extend_from_slice(&preferred.to_be_bytes());
    o.extend_from_slice(&[0; 4]);
    o.extend_from_slice(&prefix.octets());
    o
}

/// An RA as a well-behaved `current` router sends it to `to`.
pub fn ra_for(to: Endpoint) -> Vec<u8> {
    ra_with(to, 1800, 30_000, all_nodes())
}

pub fn ra_with(to: Endpoint, router_life: u16, reachable: u32, dst: Ipv6Addr) -> Vec<u8> {
    let mut b = vec![64, 0];
    b.extend_from_slice(&router_life.to_be_bytes());
    b.extend_from_slice(&reachable.to_be_bytes());
    b.extend_from_slice(&1000u32.to_be_bytes());
    b.extend(pio(addr::encode_c(&prefix(), to, 0), 114, 0xC0, 86_400, 14_400));
    icmp6(ll6(), dst, 255, 134, 0, &b)
}

pub fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, slla: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&target.octets());
    if let Some(ll) = slla {
        b.extend(opt_ll(1, ll));
    }
    icmp6(src, dst, 255, 135, 0, &b)
}

pub fn na(src: Ipv6Addr, dst: Ipv6Addr, flags: u8, target: Ipv6Addr, tlla: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = vec![flags, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    if let Some(ll) = tlla {
        b.extend(opt_ll(2, ll));
    }
    icmp6(src, dst, 255, 136, 0, &b)
}

/// An echo request of `extra` payload bytes with sequence `seq`.
pub fn ping(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, seq: u16, extra: usize) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend(std::iter::repeat_n(0xAB, extra));
    icmp6(src, dst, hop, 128, 0, &b)
}

/// Sets the hop limit of an IPv6 packet (the ICMPv6 checksum does not cover it).
pub fn with_hop(mut p: Vec<u8>, hop: u8) -> Vec<u8> {
    p[7] = hop;
    p
}

/// A UDP/IPv4 datagram with `payload`.
pub fn udp(src: Endpoint, dst: Endpoint, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp_id(src, dst, ttl, payload, 1)
}

pub fn udp_id(src: Endpoint, dst: Endpoint, ttl: u8, payload: &[u8], id: u16) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, ttl, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let c = fold(sum16(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// One frame of a capture to build.
#[derive(Debug, Clone)]
pub struct Frame {
    pub t_ms: u64,
    pub iface: String,
    pub dir: Option<Direction>,
    pub bytes: Vec<u8>,
}

/// A capture under construction.
#[derive(Debug, Clone, Default)]
pub struct Cap {
    pub frames: Vec<Frame>,
}

impl Cap {
    pub fn new() -> Cap {
        Cap::default()
    }
    /// A datagram on the single capture point `wan`.
    pub fn at(&mut self, t_ms: u64, bytes: Vec<u8>) -> &mut Cap {
        self.at_if(t_ms, "wan", None, bytes)
    }
    /// `src → dst` UDP with `payload` (TTL 64) on `wan`.
    pub fn dg(&mut self, t_ms: u64, src: Endpoint, dst: Endpoint, payload: Vec<u8>) -> &mut Cap {
        self.at(t_ms, udp(src, dst, 64, &payload))
    }
    pub fn at_if(&mut self, t_ms: u64, iface: &str, dir: Option<Direction>, bytes: Vec<u8>) -> &mut Cap {
        self.frames.push(Frame {
            t_ms,
            iface: iface.to_string(),
            dir,
            bytes,
        });
        self
    }

    /// The pcapng bytes: one interface per name, frames in the order given.
    pub fn pcapng(&self) -> Vec<u8> {
        let mut w = PcapngWriter::new(Vec::new(), ShbInfo::default()).expect("writer");
        let mut ids: Vec<String> = Vec::new();
        for f in &self.frames {
            let id = match ids.iter().position(|n| *n == f.iface) {
                Some(i) => i as u32,
                None => {
                    ids.push(f.iface.clone());
                    w.add_interface(&f.iface, None, linktype::RAW, 0).expect("idb")
                }
            };
            let ts = UNIX_EPOCH + Duration::from_secs(T0_S) + Duration::from_millis(f.t_ms);
            w.write_packet(id, ts, &f.bytes, f.bytes.len() as u32, f.dir, None)
                .expect("epb");
        }
        w.into_inner()
    }

    pub fn decode(&self) -> DecodedCapture {
        decode_bytes(
            &self.pcapng(),
            DecodeOptions {
                name: "test.pcapng".into(),
                ..DecodeOptions::default()
            },
        )
        .expect("decode")
    }

    /// Every check, in memory; and when the capture can be streamed (one capture point),
    /// streamed too, which must give the same results.
    pub fn run(&self, strict: bool, expect: Expectations) -> Vec<CheckResult> {
        let memory = run_passive(&Inputs::new(
            vec![self.decode()],
            Profile::Current,
            strict,
            expect.clone(),
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.pcapng");
        std::fs::write(&path, self.pcapng()).expect("write");
        let opts = DecodeOptions {
            name: "test.pcapng".into(),
            ..DecodeOptions::default()
        };
        let inputs_of = |c| Inputs::new(vec![c], Profile::Current, strict, expect.clone());
        if let Ok(Ok(s)) = crate::conformance::stream::check_file(&path, &opts, inputs_of, &mut |_, _| {}) {
            for (m, s) in memory.iter().zip(&s.results) {
                assert_eq!(
                    (m.verdict, &m.message, &m.evidence),
                    (s.verdict, &s.message, &s.evidence),
                    "{}: streamed differs from in memory",
                    m.id
                );
            }
        }
        memory
    }
}

/// The verdict of check `id` in `results`.
pub fn verdict(results: &[CheckResult], id: &str) -> Verdict {
    get(results, id).verdict
}

pub fn get<'a>(results: &'a [CheckResult], id: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no result for {id}"))
}

/// Asserts verdicts, printing the result on mismatch.
#[track_caller]
pub fn expect(results: &[CheckResult], want: &[(&str, Verdict)]) {
    for (id, v) in want {
        let r = get(results, id);
        assert_eq!(r.verdict, *v, "{id}: {} — {:?}", r.message, r.evidence);
    }
}

/// A complete, well-behaved exchange on one capture point with no NAT: both peers solicit,
/// get RAs, A pings B via the router, both probe each other, then data goes direct both
/// ways, and keepalives every second with TTL 3.
pub fn good_exchange() -> Cap {
    good_exchange_with(pa(), pb(), 0)
}

/// [`good_exchange`] between other endpoints, keepalives jittered by up to `jitter_ms`.
pub fn good_exchange_with(a: Endpoint, b: Endpoint, jitter_ms: u64) -> Cap {
    let r = router();
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, ra_for(a));
    c.dg(100, b, r, rs(None));
    c.dg(110, r, b, ra_for(b));
    c.dg(1000, a, r, ping(a6(a), a6(b), 64, 1, 16));
    c.dg(1001, r, b, ping(a6(a), a6(b), 63, 1, 16));
    c.dg(1002, a, b, ns(a6(a), a6(b), a6(b), Some(addr::link_layer(a))));
    c.dg(
        1003,
        b,
        a,
        na(a6(b), a6(a), 0x60, a6(b), Some(addr::link_layer(b))),
    );
    c.dg(1004, b, a, ns(a6(b), a6(a), a6(a), Some(addr::link_layer(b))));
    c.dg(
        1005,
        a,
        b,
        na(a6(a), a6(b), 0x60, a6(a), Some(addr::link_layer(a))),
    );
    c.dg(1100, a, b, ping(a6(a), a6(b), 64, 2, 16));
    c.dg(1101, b, a, ping(a6(b), a6(a), 64, 2, 16));
    for i in 0..4u16 {
        let t = 2000 + u64::from(i) * 1000 + if i % 2 == 1 { jitter_ms } else { 0 };
        c.at(t, udp_id(a, r, 3, &[], 100 + i));
        c.at(t + 50, udp_id(b, r, 3, &[], 200 + i));
    }
    c
}

/// One link end a datagram is seen at: (capture point, direction, outer source, outer
/// destination, IPv4 TTL).
pub type Hop = (String, Direction, Endpoint, Endpoint, u8);

/// A peer behind a NAT in a multi-point lab capture: its node, its NAT's node, its LAN
/// socket and its external mapping towards the router.
#[derive(Debug, Clone)]
pub struct Natted {
    pub node: &'static str,
    pub nat: &'static str,
    pub lan: Endpoint,
    pub wan: Endpoint,
}

impl Natted {
    /// From this peer to a public `dst`, leaving the NAT as `wan`, until capture point `at`
    /// (`router/eth0`, or the far NAT's `nat-b/wan` that filters it): seen at the peer's
    /// uplink, the NAT's LAN side, its WAN side (translated, TTL lowered), then `at`.
    pub fn out_as(&self, dst: Endpoint, at: &str, wan: Endpoint) -> Vec<Hop> {
        vec![
            (
                format!("{}/eth0", self.node),
                Direction::Outbound,
                self.lan,
                dst,
                64,
            ),
            (format!("{}/lan", self.nat), Direction::Inbound, self.lan, dst, 64),
            (format!("{}/wan", self.nat), Direction::Outbound, wan, dst, 63),
            (at.to_string(), Direction::Inbound, wan, dst, 63),
        ]
    }

    /// [`Natted::out_as`] through its usual mapping.
    pub fn out(&self, dst: Endpoint, at: &str) -> Vec<Hop> {
        self.out_as(dst, at, self.wan)
    }

    /// From a public `src` leaving by capture point `from` to this peer's mapping, in
    /// through the NAT.
    pub fn inn(&self, src: Endpoint, from: &str) -> Vec<Hop> {
        vec![
            (from.to_string(), Direction::Outbound, src, self.wan, 64),
            (format!("{}/wan", self.nat), Direction::Inbound, src, self.wan, 64),
            (
                format!("{}/lan", self.nat),
                Direction::Outbound,
                src,
                self.lan,
                63,
            ),
            (
                format!("{}/eth0", self.node),
                Direction::Inbound,
                src,
                self.lan,
                63,
            ),
        ]
    }

    /// To another peer behind the same hairpinning NAT, sent to its mapping: the NAT turns
    /// it around on its LAN side, rewriting the source to this peer's mapping and the
    /// destination to the other's LAN socket.
    pub fn hairpin(&self, to: &Natted) -> Vec<Hop> {
        vec![
            (
                format!("{}/eth0", self.node),
                Direction::Outbound,
                self.lan,
                to.wan,
                64,
            ),
            (
                format!("{}/lan", self.nat),
                Direction::Inbound,
                self.lan,
                to.wan,
                64,
            ),
            (
                format!("{}/lan", self.nat),
                Direction::Outbound,
                self.wan,
                to.lan,
                63,
            ),
            (
                format!("{}/eth0", to.node),
                Direction::Inbound,
                self.wan,
                to.lan,
                63,
            ),
        ]
    }
}

impl Cap {
    /// One datagram seen at each of `hops` in turn (1 ms apart), all with IP id `id`. Pass a
    /// prefix of a path for a datagram lost on the way.
    pub fn hops(&mut self, t_ms: u64, id: u16, payload: &[u8], hops: &[Hop]) -> &mut Cap {
        for (i, (iface, dir, src, dst, ttl)) in hops.iter().enumerate() {
            self.at_if(
                t_ms + i as u64,
                iface,
                Some(*dir),
                udp_id(*src, *dst, *ttl, payload, id),
            );
        }
        self
    }
}
