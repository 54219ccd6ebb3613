//! Synthetic 6bed4 traffic of any size (`bedlab gen-traffic`, hidden): the input of the
//! field tools' benchmarks and a realistic multi-peer capture for tests.
//!
//! What a capture at a `current`-profile router's uplink (Ethernet) would show: every peer
//! solicits and gets its address (RS, RA carrying its mapping), keeps its mapping alive
//! every 30 s (empty datagram, TTL 3), and sends data to other peers; pairs of even-numbered
//! peers find direct paths (bypass NS/NA, then data straight between them, which a router
//! uplink capture sees when the router host is on the path, as in a lab segment), the
//! others go through the router (two datagrams per packet, hop limit decremented). Halfway
//! through, peer 1's NAT rebinds its port: its next packet reaches the router from a new
//! mapping, the router answers with an RA carrying it, and the peer moves to the new address.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking) for peers and 192.0.2.1 for
//! the router; the 6bed4 prefix is the default `fc64:bed:c000:201::/64`. Deterministic for
//! a seed. Every checksum is right.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checksum::{fold, sum};
use super::pcapng_out::{IfaceDesc, Writer};
use crate::capture::{linktype, Section};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Stop once this many bytes of packets were written.
    pub bytes: u64,
    pub peers: usize,
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub packets: u64,
    pub bytes: u64,
    pub keepalives: u64,
    pub rebindings: u64,
}

const ROUTER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 25790);
/// `fc64:0bed:<192.0.2.1>::/64`.
const PREFIX: [u8; 8] = [0xFC, 0x64, 0x0B, 0xED, 192, 0, 2, 1];
const KEEPALIVE_NS: u64 = 30_000_000_000;

struct Peer {
    ext: SocketAddrV4,
    addr: Ipv6Addr,
    next_ka: u64,
}

fn layout_c(ep: SocketAddrV4, lanip: u16) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&PREFIX);
    let v = ep.ip().octets();
    b[8] = v[0] & 0xFC;
    b[9..12].copy_from_slice(&v[1..]);
    b[12..14].copy_from_slice(&ep.port().to_be_bytes());
    b[14] = ((v[0] & 3) << 6) | ((lanip >> 8) as u8 & 0x3F);
    b[15] = lanip as u8;
    Ipv6Addr::from(b)
}

fn link_layer(ep: SocketAddrV4) -> [u8; 6] {
    let v = ep.ip().octets();
    let [hi, lo] = ep.port().to_be_bytes();
    [lo, hi, v[0], v[1], v[2], v[3]]
}

/// Builds frames into one reusable buffer.
struct Frames {
    buf: Vec<u8>,
    ip_id: u16,
    pattern: Vec<u8>,
}

impl Frames {
    /// Ethernet + IPv4 + UDP around `inner` (empty for a keepalive).
    fn datagram(&mut self, src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, inner: &[u8]) -> &[u8] {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
        let total = (20 + 8 + inner.len()) as u16;
        self.ip_id = self.ip_id.wrapping_add(1);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6] = 0x40; // DF, as the C reference sets on everything
        ip[8] = ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let c = !fold(sum(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&ip);
        let ulen = (8 + inner.len()) as u16;
        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        udp[4..6].copy_from_slice(&ulen.to_be_bytes());
        let s = sum(&ip[12..20]) + 17 + u64::from(ulen) + sum(&udp) + sum(inner);
        let mut c = !fold(s);
        if c == 0 {
            c = 0xFFFF;
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&udp);
        b.extend_from_slice(inner);
        &self.buf
    }
}

/// An IPv6 packet: header, then `upper` (whose checksum at `ck` is filled in).
fn ipv6(src: &Ipv6Addr, dst: &Ipv6Addr, hop: u8, nh: u8, mut upper: Vec<u8>, ck: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + upper.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(upper.len() as u16).to_be_bytes());
    p.push(nh);
    p.push(hop);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let s = sum(&src.octets()) + sum(&dst.octets()) + u64::from(nh) + upper.len() as u64 + sum(&upper);
    let mut c = !fold(s);
    if c == 0 && nh == 17 {
        c = 0xFFFF;
    }
    if let Some(f) = upper.get_mut(ck..ck + 2) {
        f.copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&upper);
    p
}

fn rs() -> Vec<u8> {
    let m = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1];
    ipv6(
        &Ipv6Addr::UNSPECIFIED,
        &"ff02::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        255,
        58,
        m,
        2,
    )
}

/// An RA carrying `to`'s mapping in a /114 PIO, sent to `dst` (ff02::1, or the stale address
/// of a rebinding).
fn ra(to: SocketAddrV4, dst: &Ipv6Addr) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0];
    m.extend_from_slice(&1800u16.to_be_bytes());
    m.extend_from_slice(&30_000u32.to_be_bytes());
    m.extend_from_slice(&1000u32.to_be_bytes());
    m.extend_from_slice(&[3, 4, 114, 0xC0]);
    m.extend_from_slice(&86_400u32.to_be_bytes());
    m.extend_from_slice(&14_400u32.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&layout_c(to, 0).octets());
    ipv6(
        &"fe80::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        dst,
        255,
        58,
        m,
        2,
    )
}

fn ns(from: &Peer, target: &Ipv6Addr) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&link_layer(from.ext));
    ipv6(&from.addr, target, 255, 58, m, 2)
}

fn na(from: &Peer, to: &Ipv6Addr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    m.extend_from_slice(&from.addr.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&link_layer(from.ext));
    ipv6(&from.addr, to, 255, 58, m, 2)
}

/// A UDP datagram inside IPv6; `seq` goes into the first payload bytes, so that no two
/// packets are alike (as in real traffic, where sequence numbers and content differ).
fn data(src: &Ipv6Addr, dst: &Ipv6Addr, hop: u8, len: usize, pattern: &[u8], seq: u64) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + len);
    u.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    let start = u.len();
    u.extend_from_slice(&pattern[..len.min(pattern.len())]);
    let n = (u.len() - start).min(8);
    u[start..start + n].copy_from_slice(&seq.to_be_bytes()[..n]);
    ipv6(src, dst, hop, 17, u, 6)
}

/// Writes synthetic traffic to `w` until `opts.bytes` bytes of packets are out.
pub fn generate<W: Write>(w: W, opts: &GenOptions) -> io::Result<GenSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let section = Section {
        comments: vec![format!(
            "bedlab gen-traffic: {} peers, seed {}, router {ROUTER}",
            opts.peers, opts.seed
        )],
        ..Section::default()
    };
    let mut out = Writer::new(
        w,
        &section,
        concat!("bedlab ", env!("CARGO_PKG_VERSION"), " gen-traffic"),
    )?;
    let iface = out.interface(&IfaceDesc {
        linktype: linktype::ETHERNET,
        snaplen: 262_144,
        name: Some("router/eth0".into()),
        description: Some("synthetic 6bed4 router uplink".into()),
    })?;
    let mut f = Frames {
        buf: Vec::with_capacity(2048),
        ip_id: 0,
        pattern: (0..1300u32).map(|i| (i * 7 + 3) as u8).collect(),
    };
    let mut sum_out = GenSummary::default();
    let mut t: u64 = 1_700_000_000_000_000_000;
    let emit = |out: &mut Writer<W>, t: u64, frame: &[u8], s: &mut GenSummary| -> io::Result<()> {
        out.packet(iface, t, frame, frame.len() as u32, None, None)?;
        s.packets += 1;
        s.bytes += frame.len() as u64;
        Ok(())
    };
    let peers_n = opts.peers.max(2);
    let mut peers: Vec<Peer> = (0..peers_n)
        .map(|i| {
            let ext = SocketAddrV4::new(
                Ipv4Addr::new(
                    198,
                    18 + (i / 65_000 % 2) as u8,
                    ((i / 250) % 256) as u8,
                    (i % 250 + 2) as u8,
                ),
                20_000 + (i % 40_000) as u16,
            );
            Peer {
                ext,
                addr: layout_c(ext, 1),
                next_ka: 0,
            }
        })
        .collect();
    // Address acquisition.
    for p in peers.iter_mut() {
        t += 2_000_000;
        let frame = f.datagram(p.ext, ROUTER, 64, &rs()).to_vec();
        emit(&mut out, t, &frame, &mut sum_out)?;
        t += 300_000;
        let frame = f
            .datagram(
                ROUTER,
                p.ext,
                64,
                &ra(p.ext, &"ff02::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)),
            )
            .to_vec();
        emit(&mut out, t, &frame, &mut sum_out)?;
        p.next_ka = t + KEEPALIVE_NS;
    }
    let mut direct_ready = vec![false; peers_n * peers_n];
    let mut rebound = false;
    let sizes = [40usize, 80, 200, 576, 1232, 1232, 1232];
    while sum_out.bytes < opts.bytes {
        t += rng.gen_range(100_000..900_000);
        // Keepalives that are due.
        for p in peers.iter_mut() {
            if t >= p.next_ka {
                let frame = f.datagram(p.ext, ROUTER, 3, &[]).to_vec();
                emit(&mut out, t, &frame, &mut sum_out)?;
                sum_out.keepalives += 1;
                p.next_ka = t + KEEPALIVE_NS;
                t += 1_000;
            }
        }
        // The rebinding, halfway.
        if !rebound && sum_out.bytes >= opts.bytes / 2 {
            rebound = true;
            let old = peers[1].addr;
            let new_ext = SocketAddrV4::new(*peers[1].ext.ip(), peers[1].ext.port().wrapping_add(1000));
            // A packet from the new mapping with the old address, the router's RA, then the
            // peer uses its new address.
            let pkt = data(&old, &peers[0].addr, 64, 80, &f.pattern, sum_out.packets);
            let frame = f.datagram(new_ext, ROUTER, 64, &pkt).to_vec();
            emit(&mut out, t, &frame, &mut sum_out)?;
            t += 200_000;
            let frame = f.datagram(ROUTER, new_ext, 64, &ra(new_ext, &old)).to_vec();
            emit(&mut out, t, &frame, &mut sum_out)?;
            peers[1].ext = new_ext;
            peers[1].addr = layout_c(new_ext, 1);
            sum_out.rebindings += 1;
            continue;
        }
        let a = rng.gen_range(0..peers_n);
        let mut b = rng.gen_range(0..peers_n - 1);
        if b >= a {
            b += 1;
        }
        let len = sizes[rng.gen_range(0..sizes.len())];
        let direct = a % 2 == 0 && b % 2 == 0;
        if direct {
            let k = a * peers_n + b;
            if !direct_ready[k] {
                let n = ns(&peers[a], &peers[b].addr);
                let frame = f.datagram(peers[a].ext, peers[b].ext, 64, &n).to_vec();
                emit(&mut out, t, &frame, &mut sum_out)?;
                t += 150_000;
                let r = na(&peers[b], &peers[a].addr);
                let frame = f.datagram(peers[b].ext, peers[a].ext, 64, &r).to_vec();
                emit(&mut out, t, &frame, &mut sum_out)?;
                // Each direction is confirmed by its own probe (ND-04).
                direct_ready[k] = true;
                continue;
            }
            let pkt = data(
                &peers[a].addr,
                &peers[b].addr,
                64,
                len,
                &f.pattern,
                sum_out.packets,
            );
            let frame = f.datagram(peers[a].ext, peers[b].ext, 64, &pkt).to_vec();
            emit(&mut out, t, &frame, &mut sum_out)?;
        } else {
            let seq = sum_out.packets;
            let pkt = data(&peers[a].addr, &peers[b].addr, 64, len, &f.pattern, seq);
            let frame = f.datagram(peers[a].ext, ROUTER, 64, &pkt).to_vec();
            emit(&mut out, t, &frame, &mut sum_out)?;
            let relayed = data(&peers[a].addr, &peers[b].addr, 63, len, &f.pattern, seq);
            let frame = f.datagram(ROUTER, peers[b].ext, 64, &relayed).to_vec();
            emit(&mut out, t + 40_000, &frame, &mut sum_out)?;
        }
    }
    out.finish()?.flush()?;
    Ok(sum_out)
}

/// Parses sizes such as `1G`, `200M`, `64k` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (K, M or G)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}
