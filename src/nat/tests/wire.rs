//! Checksums after translation, IP options, fragments, malformed input.

use super::*;
use crate::nat::{Config, DropReason};

/// Adds `n` bytes of IP options (NOPs then EOL) to a packet built by the helpers and fixes
/// its header.
fn with_options(p: &[u8], n: usize) -> Vec<u8> {
    assert_eq!(n % 4, 0);
    let mut q = p[..20].to_vec();
    q.extend(std::iter::repeat_n(1u8, n - 1));
    q.push(0);
    q.extend_from_slice(&p[20..]);
    q[0] = 0x40 | ((20 + n) / 4) as u8;
    let total = q.len() as u16;
    q[2..4].copy_from_slice(&total.to_be_bytes());
    q[10..12].copy_from_slice(&[0, 0]);
    let c = finish(ones(&q[..20 + n], 0));
    q[10..12].copy_from_slice(&c.to_be_bytes());
    q
}

fn set_frag(p: &mut [u8], offset8: u16, more: bool) {
    let v = offset8 | if more { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&v.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let ihl = usize::from(p[0] & 15) * 4;
    let c = finish(ones(&p[..ihl], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn every_checksum_verifies_after_translation() {
    let mut lab = Lab::new(Config::full_cone());
    // Payloads of odd and even length, many ports and addresses, UDP and TCP.
    for i in 0..300u16 {
        let inside = ep(Ipv4Addr::new(192, 168, 1, (i % 250) as u8 + 2), 1 + i * 211);
        let remote = ep(
            Ipv4Addr::new(198, 51, (i % 7) as u8, (i % 13) as u8 + 1),
            1 + i * 97,
        );
        let payload = vec![0xa5u8; usize::from(i % 9)];
        let (v, p) = lab.out(udp_with(inside, remote, &payload, false));
        assert_eq!(v, Verdict::Forward);
        let (v, back) = lab.inb(udp_with(remote, src_of(&p), &payload, false));
        assert_eq!(v, Verdict::Forward);
        assert_eq!(
            back,
            udp_with(remote, inside, &payload, false),
            "inbound result is exact"
        );
        let (v, _) = lab.out(tcp(inside, remote, ACK));
        assert_eq!(v, Verdict::Forward);
    }
}

#[test]
fn zero_udp_checksum_stays_zero() {
    let mut lab = Lab::new(Config::full_cone());
    let (v, p) = lab.out(udp_with(ep(C1, 4000), ep(S1, P1), b"x", true));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(&p[26..28], &[0, 0]);
    let (v, p) = lab.inb(udp_with(ep(S1, P1), src_of(&p), b"x", true));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(&p[26..28], &[0, 0]);
}

#[test]
fn ip_options_are_translated() {
    let mut lab = Lab::new(Config::full_cone());
    let (v, p) = lab.out(with_options(&udp(ep(C1, 4000), ep(S1, P1)), 8));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(src_of(&p), ep(EXT, 4000));
    let (v, p) = lab.inb(with_options(&udp(ep(S1, P1), ep(EXT, 4000)), 4));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(dst_of(&p), ep(C1, 4000));
}

#[test]
fn only_first_fragments_are_translated() {
    let mut lab = Lab::new(Config::full_cone());
    let mut first = udp(ep(C1, 4000), ep(S1, P1));
    set_frag(&mut first, 0, true);
    let (v, p) = lab.out(first);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(src_of(&p), ep(EXT, 4000));
    let mut later = udp(ep(C1, 4000), ep(S1, P1));
    set_frag(&mut later, 185, false);
    let (v, _) = lab.out(later.clone());
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    let (v, _) = lab.inb(later);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    // A first fragment too short for the TCP header.
    let mut short = tcp(ep(C1, 4000), ep(S1, 80), SYN);
    short.truncate(20 + 8);
    short[2..4].copy_from_slice(&28u16.to_be_bytes());
    set_frag(&mut short, 0, true);
    let (v, _) = lab.out(short);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    assert_eq!(lab.nat.stats().drops.fragment, 3);
}

#[test]
fn malformed_and_foreign_input_is_dropped_with_a_reason() {
    let mut lab = Lab::new(Config::full_cone());
    let good = udp(ep(C1, 4000), ep(S1, P1));
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::Malformed),
        (good[..19].to_vec(), DropReason::Malformed),
        (good[..30].to_vec(), DropReason::Malformed), // total length beyond the buffer
        (
            {
                let mut p = good.clone();
                p[10] ^= 1;
                p
            },
            DropReason::Malformed,
        ),
        (
            {
                let mut p = good.clone();
                p[0] = 0x65;
                p
            },
            DropReason::Malformed,
        ),
        (
            {
                let mut p = udp(ep(C1, 4000), ep(S1, P1));
                p[9] = 47; // GRE
                p[10..12].copy_from_slice(&[0, 0]);
                let c = finish(ones(&p[..20], 0));
                p[10..12].copy_from_slice(&c.to_be_bytes());
                p
            },
            DropReason::NotTranslatable,
        ),
        (
            udp(ep(Ipv4Addr::new(10, 9, 9, 9), 1), ep(S1, P1)),
            DropReason::SourceNotInside,
        ),
        (echo(C1, S1, false, 1, 1), DropReason::NotTranslatable),
    ];
    for (p, reason) in cases {
        let (v, _) = lab.out(p.clone());
        assert_eq!(v, Verdict::Drop(reason), "{p:02x?}");
    }
    let (v, _) = lab.inb(udp(ep(S1, P1), ep(Ipv4Addr::new(203, 0, 113, 2), 4000)));
    assert_eq!(v, Verdict::Drop(DropReason::NotExternalAddress));
    assert!(lab.nat.is_empty());
    // Trailing bytes after the IPv4 total length (link padding) are ignored and kept.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xee; 6]);
    let (v, p) = lab.out(padded);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(&p[p.len() - 6..], &[0xee; 6]);
}
