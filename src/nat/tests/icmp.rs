//! ICMP: echo query mappings, and errors translated with their quoted header.

use super::*;
use crate::nat::{Config, DropReason};

const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

#[test]
fn echo_is_translated_by_identifier() {
    let mut lab = Lab::new(Config::default());
    let (v, p) = lab.out(echo(C1, S1, true, 0x1234, 1));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(src_of(&p), ep(EXT, 0x1234), "identifier preserved");
    // Another host with the same identifier gets another one.
    let (v, p2) = lab.out(echo(C2, S1, true, 0x1234, 1));
    assert_eq!(v, Verdict::Forward);
    let id2 = src_of(&p2).port();
    assert_ne!(id2, 0x1234);
    // Replies go back to the right host with the original identifier.
    let (v, r) = lab.inb(echo(S1, EXT, false, 0x1234, 1));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(dst_of(&r), ep(C1, 0x1234));
    let (v, r) = lab.inb(echo(S1, EXT, false, id2, 1));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(dst_of(&r), ep(C2, 0x1234));
    // A reply from a host not pinged is filtered (APDF: remote port is 0 for ICMP).
    let (v, _) = lab.inb(echo(S2, EXT, false, 0x1234, 1));
    assert_eq!(v, Verdict::Drop(DropReason::Filtered));
    // Inbound echo requests are not translated (nobody inside asked).
    let (v, _) = lab.inb(echo(S1, EXT, true, 0x1234, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NotTranslatable));
    // An unknown identifier has no mapping.
    let (v, _) = lab.inb(echo(S1, EXT, false, 999, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
}

/// Sends UDP out and returns the packet as it left the NAT (what a router would quote).
fn sent(lab: &mut Lab, from: SocketAddrV4, to: SocketAddrV4) -> Vec<u8> {
    let (v, p) = lab.out(udp(from, to));
    assert_eq!(v, Verdict::Forward);
    p
}

#[test]
fn inbound_error_for_udp_is_translated_with_the_quoted_header() {
    let c = ep(C1, 4000);
    for (ty, code, rest, from) in [
        (3u8, 3u8, 0u32, S1), // port unreachable, from the server
        (11, 0, 0, ROUTER),   // time exceeded, from a router on the path
        (3, 4, 1280, ROUTER), // fragmentation needed, next-hop MTU 1280
    ] {
        for quote_all in [true, false] {
            let mut lab = Lab::new(Config::default());
            let outside = sent(&mut lab, c, ep(S1, P1));
            let e = src_of(&outside);
            let quoted = if quote_all { &outside[..] } else { &outside[..28] };
            let (v, p) = lab.inb(icmp_error(from, EXT, ty, code, rest, quoted));
            assert_eq!(v, Verdict::Forward, "type {ty} code {code}");
            // Outer: source kept, destination is the inside host. `inb` verified checksums,
            // including the quoted IPv4 header and (when whole) the quoted UDP checksum.
            assert_eq!(Ipv4Addr::from([p[12], p[13], p[14], p[15]]), from);
            assert_eq!(Ipv4Addr::from([p[16], p[17], p[18], p[19]]), C1);
            assert_eq!(p[20], ty);
            assert_eq!(p[21], code);
            assert_eq!(u32::from_be_bytes([p[24], p[25], p[26], p[27]]), rest);
            // Quoted: the packet as the inside host sent it.
            let q = &p[28..];
            assert_eq!(src_of(q), c);
            assert_eq!(dst_of(q), ep(S1, P1));
            if quote_all {
                assert_eq!(q, &udp(c, ep(S1, P1))[..], "quote restored byte for byte");
            }
            assert_ne!(e, c);
            assert_eq!(lab.nat.stats().icmp_errors, 1);
        }
    }
}

#[test]
fn inbound_error_for_tcp_and_echo() {
    let mut lab = Lab::new(Config::default());
    let (v, seg) = lab.out(tcp(ep(C1, 5000), ep(S1, 80), SYN));
    assert_eq!(v, Verdict::Forward);
    let (v, p) = lab.inb(icmp_error(ROUTER, EXT, 3, 1, 0, &seg));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(src_of(&p[28..]), ep(C1, 5000));
    assert_eq!(&p[28..], &tcp(ep(C1, 5000), ep(S1, 80), SYN)[..]);

    let (v, req) = lab.out(echo(C2, S2, true, 77, 9));
    assert_eq!(v, Verdict::Forward);
    let (v, p) = lab.inb(icmp_error(ROUTER, EXT, 11, 0, 0, &req));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(&p[28..], &echo(C2, S2, true, 77, 9)[..]);
}

#[test]
fn errors_without_a_mapping_or_for_another_flow_are_dropped() {
    let mut lab = Lab::new(Config::default());
    let c = ep(C1, 4000);
    let outside = sent(&mut lab, c, ep(S1, P1));
    // Quote naming a port with no mapping.
    let mut other = outside.clone();
    other[20..22].copy_from_slice(&9999u16.to_be_bytes());
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &other));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
    // Quote of a packet to a remote the mapping never sent to (APDF): spoofed, filtered.
    let forged = udp(src_of(&outside), ep(S2, P2));
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &forged));
    assert_eq!(v, Verdict::Drop(DropReason::Filtered));
    // Quote with a source that is not this external address.
    let forged = udp(
        ep(Ipv4Addr::new(203, 0, 113, 99), src_of(&outside).port()),
        ep(S1, P1),
    );
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &forged));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
    // Quote too short for ports.
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &outside[..24]));
    assert_eq!(v, Verdict::Drop(DropReason::NotTranslatable));
    // Error about an ICMP error.
    let inner = icmp_error(EXT, S1, 3, 3, 0, &outside);
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &inner));
    assert_eq!(v, Verdict::Drop(DropReason::NotTranslatable));
    // After expiry: no mapping.
    lab.advance(std::time::Duration::from_secs(120));
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 3, 3, 0, &outside));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn outbound_error_from_inside_is_translated() {
    // An inside host answers an admitted inbound datagram with port unreachable.
    let mut lab = Lab::new(Config::default());
    let c = ep(C1, 4000);
    let e = lab.udp_out(c, ep(S1, P1));
    let (v, delivered) = lab.inb(udp(ep(S1, P1), e));
    assert_eq!(v, Verdict::Forward);
    let (v, p) = lab.out(icmp_error(C1, S1, 3, 3, 0, &delivered));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(Ipv4Addr::from([p[12], p[13], p[14], p[15]]), EXT);
    assert_eq!(Ipv4Addr::from([p[16], p[17], p[18], p[19]]), S1);
    assert_eq!(&p[28..], &udp(ep(S1, P1), e)[..], "quote is what the server sent");
    // Same from an inside router (source is the router, still translated to EXT).
    let (v, p) = lab.out(icmp_error(
        Ipv4Addr::new(192, 168, 1, 254),
        S1,
        11,
        0,
        0,
        &delivered,
    ));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(Ipv4Addr::from([p[12], p[13], p[14], p[15]]), EXT);
    // No mapping for the quoted flow.
    let stray = udp(ep(S2, 1), ep(C1, 4001));
    let (v, _) = lab.out(icmp_error(C1, S2, 3, 3, 0, &stray));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn error_translation_can_be_switched_off() {
    let mut lab = Lab::new(Config {
        icmp_errors: false,
        ..Config::default()
    });
    let c = ep(C1, 4000);
    let outside = sent(&mut lab, c, ep(S1, P1));
    let (v, _) = lab.inb(icmp_error(ROUTER, EXT, 11, 0, 0, &outside));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorsOff));
    let (v, delivered) = lab.inb(udp(ep(S1, P1), src_of(&outside)));
    assert_eq!(v, Verdict::Forward);
    let (v, _) = lab.out(icmp_error(C1, S1, 3, 3, 0, &delivered));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorsOff));
    assert_eq!(lab.nat.stats().drops.icmp_errors_off, 2);
    // Echo still works.
    let (v, _) = lab.out(echo(C1, S1, true, 7, 1));
    assert_eq!(v, Verdict::Forward);
}
