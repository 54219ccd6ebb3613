//! Shared helpers of the field tools' tests (`tests/field_*.rs` include this file with
//! `#[path]`): running the binary, the fixtures, hand-made captures, tshark.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The five captures of `tests/fixtures/`.
pub const FIXTURES: &[&str] = &[
    "annotated.pcapng",
    "invalid-nd.pcap",
    "refimpl-c-direct-solicit-keepalive.pcap",
    "refimpl-c-router-tun.pcap",
    "synthetic-6bed4.pcap",
];

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn bedlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bedlab"))
        .args(args)
        .output()
        .expect("running bedlab")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether tshark runs here; tests that need it say SKIP otherwise.
pub fn have_tshark() -> bool {
    let ok = Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: tshark is not installed");
    }
    ok
}

/// tshark's stderr without the line it prints when run as root.
pub fn tshark_stderr(o: &Output) -> String {
    text(&o.stderr)
        .lines()
        .filter(|l| !l.contains("Running as user \"root\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Anonymises `input` into `out` with extra arguments; panics with bedlab's stderr on failure.
pub fn anonymise(input: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["anonymise", input.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = bedlab(&args);
    assert!(
        o.status.success(),
        "anonymise {}: {}",
        input.display(),
        text(&o.stderr)
    );
}

/// `bedlab check --json`: verdict per check id, plus the exit code.
pub fn verdicts(path: &Path) -> (BTreeMap<String, String>, Option<i32>) {
    let o = bedlab(&["check", "--json", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json {}: {e}: {}", path.display(), text(&o.stderr)));
    let mut m = BTreeMap::new();
    for r in v["results"].as_array().expect("results") {
        m.insert(
            r["id"].as_str().unwrap_or("").to_string(),
            r["verdict"].as_str().unwrap_or("").to_string(),
        );
    }
    (m, o.status.code())
}

// ---- hand-made captures ----

pub fn sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

pub fn fold(mut s: u64) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// An IPv6 packet with an upper-layer message whose checksum (at `ck`) is computed.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, nh: u8, mut msg: Vec<u8>, ck: usize) -> Vec<u8> {
    let s = sum(&src.octets()) + sum(&dst.octets()) + u64::from(nh) + msg.len() as u64 + sum(&msg);
    let c = !fold(s);
    msg[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, hop]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&msg);
    p
}

/// Ethernet + IPv4 + UDP (checksums computed) around `payload`.
pub fn eth_udp(src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&[0x12, 0x34]);
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = !fold(sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(payload);
    let s = sum(&ip[12..20]) + 17 + u64::from(ulen) + sum(&udp);
    let mut c = !fold(s);
    if c == 0 {
        c = 0xFFFF;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// A classic pcap (µs) of Ethernet frames at the given times (seconds).
pub fn write_pcap(path: &Path, frames: &[(f64, Vec<u8>)]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (t, f) in frames {
        let us = (t * 1e6).round() as u64 + 1_700_000_000_000_000;
        b.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).expect("writing a pcap");
}

pub fn ep(s: &str) -> SocketAddrV4 {
    s.parse().expect("endpoint")
}

/// Layout V: `prefix` + IID `[(port&ff)^2, port>>8, V0, ff, fe, V1, V2, V3]`.
pub fn layout_v(prefix: &str, e: SocketAddrV4) -> Ipv6Addr {
    let mut b = prefix.parse::<Ipv6Addr>().expect("prefix").octets();
    let v = e.ip().octets();
    let [hi, lo] = e.port().to_be_bytes();
    b[8..].copy_from_slice(&[lo ^ 2, hi, v[0], 0xFF, 0xFE, v[1], v[2], v[3]]);
    Ipv6Addr::from(b)
}

pub fn ll(e: SocketAddrV4) -> [u8; 6] {
    let v = e.ip().octets();
    let [hi, lo] = e.port().to_be_bytes();
    [lo, hi, v[0], v[1], v[2], v[3]]
}

/// A `v01` exchange (router port 25788, layout V): RS, RA to `fe80::<IID>`, data via the
/// router both ways, a keepalive. Exercises every layout-V place the anonymiser rewrites.
pub fn v01_capture(path: &Path) {
    let router = ep("192.0.2.1:25788");
    let a = ep("203.0.113.7:40000");
    let b = ep("198.51.100.10:50000");
    let prefix = "2001:db8:6bed:4::";
    let (a6, b6) = (layout_v(prefix, a), layout_v(prefix, b));
    let fe80 = |e| layout_v("fe80::", e);
    let unspec = Ipv6Addr::UNSPECIFIED;
    let rs = ipv6(
        unspec,
        "ff02::2".parse().unwrap(),
        255,
        58,
        vec![133, 0, 0, 0, 0, 0, 0, 0],
        2,
    );
    let ra = |to: SocketAddrV4| {
        let mut m = vec![
            134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0x75, 0x30, 0, 0, 0x03, 0xE8,
        ];
        m.extend_from_slice(&[3, 4, 64, 0xC0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0]);
        m.extend_from_slice(&prefix.parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&ll(router));
        ipv6("fe80::".parse().unwrap(), fe80(to), 255, 58, m, 2)
    };
    let echo = |s: Ipv6Addr, d: Ipv6Addr, hop: u8, ty: u8| {
        ipv6(
            s,
            d,
            hop,
            58,
            vec![ty, 0, 0, 0, 0, 1, 0, 1, b'h', b'i', b'!', b'!'],
            2,
        )
    };
    write_pcap(
        path,
        &[
            (0.0, eth_udp(a, router, 64, &rs)),
            (0.01, eth_udp(router, a, 64, &ra(a))),
            (0.5, eth_udp(b, router, 64, &rs)),
            (0.51, eth_udp(router, b, 64, &ra(b))),
            (1.0, eth_udp(a, router, 64, &echo(a6, b6, 64, 128))),
            (1.001, eth_udp(router, b, 64, &echo(a6, b6, 63, 128))),
            (1.01, eth_udp(b, router, 64, &echo(b6, a6, 64, 129))),
            (1.011, eth_udp(router, a, 64, &echo(b6, a6, 63, 129))),
            (31.0, eth_udp(a, router, 3, &[])),
            (31.5, eth_udp(b, router, 3, &[])),
        ],
    );
}

/// The outer IPv4 addresses of a capture (and those of quoted headers), via bedlab's reader.
pub fn outer_ipv4(path: &Path) -> Vec<Ipv4Addr> {
    let mut r = bedlab::capture::Reader::open(path).expect("open");
    let mut out = Vec::new();
    while let Ok(Some(p)) = r.next_packet() {
        let Some(ip) = p.ip() else { continue };
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            continue;
        }
        for o in [12usize, 16] {
            out.push(Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]));
        }
        // A quoted header in an ICMP error.
        let ihl = usize::from(ip[0] & 0xF) * 4;
        if ip[9] == 1 && ip.len() >= ihl + 28 && matches!(ip[ihl], 3 | 11) {
            let q = &ip[ihl + 8..];
            for o in [12usize, 16] {
                out.push(Ipv4Addr::new(q[o], q[o + 1], q[o + 2], q[o + 3]));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
