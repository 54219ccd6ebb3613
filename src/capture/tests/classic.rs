//! Classic pcap in both byte orders and both timestamp resolutions, written by hand.

use super::{have_tool, ipv4_udp, tshark_fields};
use crate::capture::linktype;
use crate::capture::reader::Reader;

/// A classic pcap file: header, then `(secs, frac, data, orig_len)` records.
fn pcap(big_endian: bool, nanos: bool, linktype: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&u32b(0)); // thiszone
    f.extend_from_slice(&u32b(0)); // sigfigs
    f.extend_from_slice(&u32b(65535));
    f.extend_from_slice(&u32b(linktype));
    for &(secs, frac, data, orig) in records {
        f.extend_from_slice(&u32b(secs));
        f.extend_from_slice(&u32b(frac));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(&u32b(orig));
        f.extend_from_slice(data);
    }
    f
}

#[test]
fn classic_pcap_all_byte_orders_and_resolutions() {
    let a = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], b"one");
    let b = ipv4_udp([10, 0, 0, 3], [10, 0, 0, 4], b"two!");
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let frac = if nanos { 123_456_789 } else { 123_456 };
            let file = pcap(
                big_endian,
                nanos,
                101,
                &[
                    (1_700_000_000, frac, &a, a.len() as u32),
                    (1_700_000_001, 0, &b, 1500),
                ],
            );
            let mut r = Reader::new(&file[..]).expect("header");
            assert!(r.is_classic_pcap());
            assert_eq!(r.section().big_endian, big_endian);
            assert_eq!(r.section().version, (2, 4));
            assert_eq!(r.interfaces()[0].snaplen, 65535);
            let p1 = r.next_packet().expect("p1").expect("p1");
            let p2 = r.next_packet().expect("p2").expect("p2");
            assert!(r.next_packet().expect("end").is_none());
            let want_nanos = if nanos { 123_456_789 } else { 123_456_000 };
            assert_eq!(p1.ts, (1_700_000_000, want_nanos), "be={big_endian} ns={nanos}");
            assert_eq!(p1.data, a);
            assert_eq!(p1.linktype, linktype::RAW);
            assert_eq!((p1.interface, p1.interface_name.as_deref()), (0, None));
            assert_eq!(p2.ts, (1_700_000_001, 0));
            assert_eq!(p2.orig_len, 1500);
            assert_eq!(p2.data, b);

            if have_tool("tshark", "classic pcap cross-check") {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("f.pcap");
                std::fs::write(&path, &file).expect("write");
                let (run, rows) = tshark_fields(&path, &["frame.time_epoch", "ip.src"]);
                assert_eq!(run.stderr, "");
                assert_eq!(
                    rows[0],
                    [format!("1700000000.{want_nanos:09}"), "10.0.0.1".into()]
                );
                assert_eq!(rows[1], ["1700000001.000000000", "10.0.0.3"]);
            }
        }
    }
}

#[test]
fn classic_pcap_fraction_overflow_carries_into_seconds() {
    let file = pcap(false, false, 1, &[(10, 2_500_000, &[0; 14], 14)]);
    let p = Reader::new(&file[..])
        .expect("header")
        .next_packet()
        .expect("ok")
        .expect("p");
    assert_eq!(p.ts, (12, 500_000_000));
}

#[test]
fn classic_pcap_linktype_field_upper_bits_are_ignored() {
    // Bits 28-31 carry the FCS length; the link type is the low 16 bits.
    let file = pcap(true, false, 0x1000_0001, &[]);
    let r = Reader::new(&file[..]).expect("header");
    assert_eq!(r.interfaces()[0].linktype, linktype::ETHERNET);
}

#[test]
fn classic_pcap_truncated_record() {
    let a = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], b"one");
    let mut file = pcap(
        false,
        true,
        101,
        &[(1, 0, &a, a.len() as u32), (2, 0, &a, a.len() as u32)],
    );
    file.truncate(file.len() - 3);
    let mut r = Reader::new(&file[..]).expect("header");
    assert!(r.next_packet().expect("first").is_some());
    let err = r.next_packet().expect_err("truncated");
    let first_record_end = 24 + 16 + a.len();
    assert_eq!(
        err.to_string(),
        format!(
            "record at offset {first_record_end}: truncated: the file ends {} bytes into it, {} needed",
            16 + a.len() - 3,
            16 + a.len()
        )
    );
}
