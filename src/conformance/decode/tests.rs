//! The decoder's own reading of the spec: address layouts against spec §2.4, ND parsing,
//! flow discovery and sightings.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::addr::{self, Profile};
use super::inner::{icmpv6_checksum, parse_ipv6};
use super::Kind;

fn a(s: &str) -> Ipv6Addr {
    s.parse().expect("address literal")
}
fn ep(s: &str) -> SocketAddrV4 {
    s.parse().expect("endpoint literal")
}
fn ll(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    v.try_into().expect("six bytes")
}

/// One row of spec §2.4: (profile, prefix, IPv4:port, lanip, address, link-layer).
type Vector = (
    &'static str,
    &'static str,
    &'static str,
    Option<u16>,
    &'static str,
    &'static str,
);

/// Spec §2.4, copied verbatim.
const VECTORS: &[Vector] = &[
    (
        "current",
        "fc64:bed:9188:1::",
        "145.136.0.2:55796",
        Some(1),
        "fc64:bed:9188:1:9088:2:d9f4:4001",
        "f4:d9:91:88:00:02",
    ),
    (
        "current",
        "fc64:bed:9188:1::",
        "145.136.0.1:25790",
        Some(0),
        "fc64:bed:9188:1:9088:1:64be:4000",
        "be:64:91:88:00:01",
    ),
    (
        "current",
        "2001:db8:6bed:4::",
        "203.0.113.7:40000",
        Some(1),
        "2001:db8:6bed:4:c800:7107:9c40:c001",
        "40:9c:cb:00:71:07",
    ),
    (
        "current",
        "2001:db8:6bed:4::",
        "198.51.100.254:65535",
        Some(16383),
        "2001:db8:6bed:4:c433:64fe:ffff:bfff",
        "ff:ff:c6:33:64:fe",
    ),
    (
        "current",
        "2001:db8:6bed:4::",
        "192.0.2.1:1",
        Some(2),
        "2001:db8:6bed:4:c000:201:1:2",
        "01:00:c0:00:02:01",
    ),
    (
        "v01",
        "2001:67c:127c::",
        "145.136.0.1:25788",
        None,
        "2001:67c:127c:0:be64:91ff:fe88:1",
        "bc:64:91:88:00:01",
    ),
    (
        "v01",
        "2001:67c:127c::",
        "203.0.113.7:40000",
        None,
        "2001:67c:127c:0:429c:cbff:fe00:7107",
        "40:9c:cb:00:71:07",
    ),
    (
        "v01",
        "fe80::",
        "198.51.100.10:50000",
        None,
        "fe80::52c3:c6ff:fe33:640a",
        "50:c3:c6:33:64:0a",
    ),
];

#[test]
fn spec_vectors_encode_and_decode() {
    for &(profile, prefix, endpoint, lanip, address, link) in VECTORS {
        let (p, e, want) = (a(prefix), ep(endpoint), a(address));
        match lanip {
            Some(l) => {
                assert_eq!(profile, "current");
                assert_eq!(addr::encode_c(&p, e, l), want, "encode {endpoint} lanip {l}");
                assert_eq!(addr::decode_c(&want), (e, l), "decode {address}");
                assert_eq!(Profile::Current.decode(&want), Some(e));
            }
            None => {
                assert_eq!(profile, "v01");
                assert_eq!(addr::encode_v(&p, e), want, "encode {endpoint}");
                assert_eq!(addr::decode_v(&want), Some(e), "decode {address}");
                assert_eq!(Profile::V01.decode(&want), Some(e));
            }
        }
        assert_eq!(addr::link_layer(e), ll(link), "link-layer of {endpoint}");
        assert_eq!(addr::from_link_layer(ll(link)), e);
        assert_eq!(addr::layout_naming(&want, e).map(|p| p.name()), Some(profile));
    }
}

/// The §8 fact: a `current` address decoded with layout V gives garbage (when it decodes at
/// all), and a layout-C mistake (IPv4 verbatim) is told apart from a correct encoding.
#[test]
fn layouts_do_not_confuse_each_other() {
    let c = a("fc64:bed:9188:1:9088:2:d9f4:4001");
    assert_eq!(addr::decode_v(&c), None, "no ff:fe marker");
    let naive = a("2001:db8:6bed:4:c633:6407:9c40:1");
    let real = ep("198.51.100.7:40000");
    assert_ne!(addr::decode_c(&naive).0, real);
    assert_eq!(addr::decode_c(&naive).0, ep("196.51.100.7:40000"));
    assert!(addr::loosely_names(&naive, real));
    assert!(!addr::loosely_names(&naive, ep("198.51.100.7:40001")));
}

#[test]
fn round_trips_at_the_edges() {
    let p = a("2001:db8::");
    for v0 in [0u8, 1, 2, 3, 0x90, 0x91, 0xFE, 0xFF] {
        for port in [0u16, 1, 2, 25790, 65534, 65535] {
            for lanip in [0u16, 1, 0x2A5A, 16383] {
                let e = SocketAddrV4::new(Ipv4Addr::new(v0, 7, 8, 9), port);
                let c = addr::encode_c(&p, e, lanip);
                assert_eq!(addr::decode_c(&c), (e, lanip));
                assert_eq!(&c.octets()[..8], &p.octets()[..8]);
            }
            let e = SocketAddrV4::new(Ipv4Addr::new(v0, 7, 8, 9), port);
            assert_eq!(addr::decode_v(&addr::encode_v(&p, e)), Some(e));
            assert_eq!(addr::from_link_layer(addr::link_layer(e)), e);
        }
    }
    assert!(!Profile::Current.port_valid(0) && Profile::Current.port_valid(1));
    assert!(!Profile::V01.port_valid(40001) && Profile::V01.port_valid(40000));
}

/// Spec §9: the C reference's RS and RA, byte for byte.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(crate) fn spec_rs() -> Vec<u8> {
    let mut p = hex("6000 0000 0010 3aff");
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&a("ff02::2").octets());
    p.extend(hex("8500 7aae 0000 0000 0101 0000 0000 0001"));
    p
}

pub(crate) fn spec_ra() -> Vec<u8> {
    let mut p = hex("6000 0000 0030 3aff");
    p.extend_from_slice(&a("fe80::").octets());
    p.extend_from_slice(&a("ff02::1").octets());
    p.extend(hex(
        "8600 c1d8 0018 ffff ffff ffff ffff ffff 0304 72c0 ffff ffff ffff ffff 0000 0000 \
         fc64 0bed 9188 0001 9088 0002 d9f4 4000",
    ));
    p
}

#[test]
fn spec_section_9_bytes_parse() {
    let rs = parse_ipv6(&spec_rs(), true);
    assert_eq!(
        rs.kind,
        Kind::Rs {
            slla: Some([0, 0, 0, 0, 0, 1])
        }
    );
    let icmp = rs.icmp.expect("icmp");
    assert!(icmp.checksum_ok, "spec RS checksum 7aae");
    assert_eq!((icmp.len, rs.trailing), (16, 0));

    let ra = parse_ipv6(&spec_ra(), true);
    let Kind::Ra {
        prefixes,
        lifetimes,
        dst,
        ..
    } = &ra.kind
    else {
        panic!("{:?}", ra.kind)
    };
    assert!(
        ra.icmp.as_ref().is_some_and(|i| i.checksum_ok),
        "spec RA checksum c1d8"
    );
    assert_eq!(*dst, a("ff02::1"));
    assert_eq!(
        (lifetimes.router, lifetimes.reachable_ms, lifetimes.retrans_ms),
        (0xffff, u32::MAX, u32::MAX)
    );
    assert_eq!(prefixes.len(), 1);
    assert_eq!(
        (prefixes[0].len, prefixes[0].on_link, prefixes[0].autonomous),
        (114, true, true)
    );
    assert_eq!(addr::decode_c(&prefixes[0].prefix), (ep("145.136.0.2:55796"), 0));

    // One flipped byte breaks the checksum.
    let mut bad = spec_rs();
    bad[50] ^= 1;
    assert!(!parse_ipv6(&bad, true).icmp.expect("icmp").checksum_ok);
    let src = Ipv6Addr::UNSPECIFIED;
    assert_eq!(icmpv6_checksum(&src, &a("ff02::2"), &spec_rs()[40..]), 0);
}

#[test]
fn nd_options_and_lengths() {
    // Trailing bytes after the packet.
    let mut p = spec_rs();
    p.extend_from_slice(&[0; 10]);
    let r = parse_ipv6(&p, true);
    assert_eq!(r.trailing, 10);
    assert!(matches!(r.kind, Kind::Rs { .. }));
    // Truncated: payload length says more than is there.
    let r = parse_ipv6(&spec_rs()[..50], true);
    assert!(
        matches!(r.kind, Kind::Malformed { ref why } if why.contains("truncated")),
        "{:?}",
        r.kind
    );
    // Cut by the capture instead: not the sender's fault.
    let r = parse_ipv6(&spec_rs()[..50], false);
    assert!(!matches!(r.kind, Kind::Malformed { .. }));
    // Not IPv6.
    assert!(matches!(
        parse_ipv6(&[0x45, 0, 0, 20], true).kind,
        Kind::Malformed { .. }
    ));
    assert!(matches!(
        parse_ipv6(&[0x60; 12], true).kind,
        Kind::Malformed { .. }
    ));
}

/// The parallel decode hands batches to two threads and merges them: the records (frame
/// numbers, order, groups, derived fields) and the counts must be exactly one thread's.
#[test]
fn two_decoding_threads_give_exactly_what_one_gives() {
    let mut file = Vec::new();
    let opts = crate::field::gen::GenOptions {
        bytes: 3_000_000,
        peers: 6,
        seed: 7,
    };
    crate::field::gen::generate(&mut file, &opts).expect("generate");
    let decode = |threads| {
        let reader = crate::capture::Reader::new(&file[..]).expect("reader");
        super::decode_reader_threads(reader, super::DecodeOptions::default(), threads)
    };
    let (one, two) = (decode(1), decode(2));
    assert!(
        one.records.len() > 3 * super::BATCH,
        "{} records",
        one.records.len()
    );
    assert_eq!(one.stats, two.stats);
    assert_eq!(one.packets, two.packets);
    assert_eq!(one.routers, two.routers);
    assert_eq!(one.prefixes, two.prefixes);
    assert!(one.records == two.records, "records differ");
}

/// A large capture holds one record per datagram: a field that makes every record bigger
/// costs ~1.4 MB per byte on a 1 GB capture (see BENCHMARKS.md "Field tools").
#[test]
fn records_stay_small() {
    assert!(
        std::mem::size_of::<super::Decoded>() <= 216,
        "Decoded is {} bytes",
        std::mem::size_of::<super::Decoded>()
    );
}

/// From one capture point, `finish` skips the grouping: every record must then be the
/// packet the grouping would have made of it.
#[test]
fn one_capture_point_groups_as_the_grouping_would() {
    let mut file = Vec::new();
    let opts = crate::field::gen::GenOptions {
        bytes: 400_000,
        peers: 6,
        seed: 3,
    };
    crate::field::gen::generate(&mut file, &opts).expect("generate");
    let c = super::decode_bytes(&file, super::DecodeOptions::default()).expect("decode");
    assert!(super::one_capture_point(&c.records));
    assert!(c.records.len() > 100, "{} records", c.records.len());
    let mut regrouped = c.records.clone();
    for r in regrouped.iter_mut() {
        r.packet = usize::MAX;
        r.sighting = u16::MAX;
    }
    assert_eq!(super::group_sightings(&mut regrouped), c.packets);
    for (a, b) in c.records.iter().zip(&regrouped) {
        assert_eq!(
            (a.packet, a.sighting),
            (b.packet, b.sighting),
            "frame {}",
            a.frame
        );
    }
    // A second capture point is no longer one.
    let mut two = c.records.clone();
    for (k, r) in two.iter_mut().filter(|r| r.is_tunnel()).take(2).enumerate() {
        r.interface = Some(std::sync::Arc::from(format!("node-{k}/eth0")));
    }
    assert!(!super::one_capture_point(&two));
}
