//! Broken files: clear errors that name the offset, never a panic, never a huge allocation.

use std::time::UNIX_EPOCH;

use proptest::prelude::*;

use super::handmade_pcapng::Ng;
use crate::capture::linktype;
use crate::capture::pcapng::{Direction, PcapngWriter, ShbInfo};
use crate::capture::reader::{fuzz_read, ReadError, Reader};

/// The first error reading `file`, as text (header errors included).
fn first_error(file: &[u8]) -> String {
    match Reader::new(file) {
        Err(e) => e.to_string(),
        Ok(r) => r
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .next()
            .unwrap_or_else(|| "no error".into()),
    }
}

/// A valid little-endian file of our own: SHB, IDB at 28.., then EPBs.
fn valid_file() -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new(), ShbInfo::bedlab(vec!["c".into()])).expect("shb");
    w.add_interface("peer-a/eth0", None, linktype::RAW, 0)
        .expect("idb");
    for i in 0..5u8 {
        let data = super::ipv4_udp([10, 0, 0, i], [10, 0, 0, 9], &[i; 7]);
        w.write_packet(
            0,
            UNIX_EPOCH,
            &data,
            data.len() as u32,
            Some(Direction::Inbound),
            Some("x"),
        )
        .expect("epb");
    }
    w.into_inner()
}

/// A little-endian SHB (28 bytes) and IDB (24), then whatever the test appends, at 52.
fn header() -> Vec<u8> {
    let mut ng = Ng::new(false);
    ng.shb(&[]);
    ng.idb(101, 0, None, None, None);
    assert_eq!(ng.out.len(), 52);
    ng.out
}

fn le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

#[test]
fn bad_magic() {
    let err = Reader::new(&b"GIF89a.........................."[..]).expect_err("bad magic");
    assert!(matches!(err, ReadError::BadMagic { .. }));
    assert_eq!(
        err.to_string(),
        "offset 0: not a pcap or pcapng file (starts with [47, 49, 46, 38], expected 0a0d0d0a, \
         a1b2c3d4 or a1b23c4d in either byte order)"
    );
    let err = Reader::new(&[][..]).expect_err("empty");
    assert!(err.is_truncated(), "{err}");
    assert_eq!(
        err.to_string(),
        "file header at offset 0: truncated: the file ends 0 bytes into it, 4 needed"
    );
}

#[test]
fn bad_byte_order_magic_and_version() {
    let mut f = header();
    f[8..12].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        first_error(&f),
        "section header block at offset 0: byte-order magic [01, 02, 03, 04] is neither 1a2b3c4d nor 4d3c2b1a"
    );
    let mut f = header();
    f[12..14].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        first_error(&f),
        "section header block at offset 0: unsupported pcapng version 2.0 (expected 1.x)"
    );
}

#[test]
fn block_length_not_a_multiple_of_4() {
    let mut f = header();
    f.extend_from_slice(&le(6));
    f.extend_from_slice(&le(33));
    f.extend_from_slice(&[0; 40]);
    assert_eq!(
        first_error(&f),
        "enhanced packet block at offset 52: total length 33 is not a multiple of 4"
    );
}

#[test]
fn block_length_smaller_than_minimum() {
    let mut f = header();
    f.extend_from_slice(&le(0x0000_0BAD));
    f.extend_from_slice(&le(8));
    f.extend_from_slice(&le(8));
    assert_eq!(
        first_error(&f),
        "block at offset 52: total length 8 is smaller than the minimum 12"
    );
    let mut f = header();
    f.extend_from_slice(&le(6));
    f.extend_from_slice(&le(28));
    f.extend_from_slice(&[0; 20]);
    assert_eq!(
        first_error(&f),
        "enhanced packet block at offset 52: total length 28 is smaller than the minimum 32"
    );
}

#[test]
fn block_length_past_end_of_file() {
    let mut f = header();
    f.extend_from_slice(&le(6));
    f.extend_from_slice(&le(100_000_000));
    f.extend_from_slice(&[0; 64]);
    let err = first_error(&f);
    assert_eq!(
        err,
        "enhanced packet block at offset 52: truncated: the file ends 72 bytes into it, 100000000 needed"
    );
    // An unknown block past the end is skipped without buffering, and reported the same way.
    let mut f = header();
    f.extend_from_slice(&le(0x0000_0BAD));
    f.extend_from_slice(&le(1000));
    f.extend_from_slice(&[0; 64]);
    assert_eq!(
        first_error(&f),
        "block at offset 52: truncated: the file ends 72 bytes into it, 1000 needed"
    );
}

#[test]
fn absurd_lengths_are_rejected_before_reading() {
    let mut f = header();
    f.extend_from_slice(&le(6));
    f.extend_from_slice(&le(0xFFFF_FFF0));
    assert_eq!(
        first_error(&f),
        "enhanced packet block at offset 52: total length 4294967280 is larger than the limit 268435456"
    );
    // Classic pcap: a record claiming a 4 GiB packet, and an absurd snaplen in the header,
    // which (as in libpcap) is only a ceiling and no error by itself.
    let mut f = Vec::new();
    f.extend_from_slice(&le(0xA1B2_C3D4));
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&le(0xFFFF_FFFF)); // snaplen
    f.extend_from_slice(&le(1));
    let r = Reader::new(&f[..]).expect("absurd snaplen alone is accepted");
    assert_eq!(r.interfaces()[0].snaplen, u32::MAX);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&le(0xFFFF_0000)); // incl_len
    f.extend_from_slice(&le(0xFFFF_0000));
    assert_eq!(
        first_error(&f),
        "record at offset 24: captured length 4294901760 is larger than the limit 268435456"
    );
}

#[test]
fn captured_length_past_the_block_and_unknown_interface() {
    let mut ng = Ng::new(false);
    ng.shb(&[]);
    ng.idb(101, 0, None, None, None);
    ng.epb(0, 0, &[0x45; 8], 8, &[]);
    let mut f = ng.out.clone();
    // Claim 200 captured bytes in a block with room for 8.
    f[52 + 20..52 + 24].copy_from_slice(&le(200));
    assert_eq!(
        first_error(&f),
        "enhanced packet block at offset 52: captured length 200 runs past the end of the block (8 bytes of data room)"
    );
    let mut f = ng.out;
    f[52 + 8..52 + 12].copy_from_slice(&le(3));
    assert_eq!(
        first_error(&f),
        "enhanced packet block at offset 52: refers to interface 3, but the section has described 1"
    );
}

#[test]
fn trailing_length_mismatch_and_bad_option() {
    let mut f = valid_file();
    let end = f.len();
    f[end - 4..].copy_from_slice(&le(12));
    assert!(
        first_error(&f).ends_with("differs from the leading 88"),
        "{}",
        first_error(&f)
    );

    let mut ng = Ng::new(false);
    ng.shb(&[]);
    let mut body = vec![101, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&9u16.to_le_bytes());
    body.extend_from_slice(&200u16.to_le_bytes());
    body.extend_from_slice(&[6, 0, 0, 0]);
    ng.block(1, &body);
    assert_eq!(
        first_error(&ng.out),
        "interface description block at offset 28: option 9 of length 200 runs past the end of the block (4 bytes left)"
    );
    let mut ng = Ng::new(false);
    ng.shb(&[]);
    ng.idb(101, 0, None, Some(40), None);
    assert_eq!(
        first_error(&ng.out),
        "interface description block at offset 28: if_tsresol 0x28 is too fine to represent"
    );
}

#[test]
fn simple_packet_block_without_interface() {
    let mut ng = Ng::new(false);
    ng.shb(&[]);
    ng.block(3, &[4, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(
        first_error(&ng.out),
        "simple packet block at offset 28: no interface 0 described before it"
    );
}

#[test]
fn every_prefix_of_a_valid_file_is_whole_packets_then_truncated_or_clean() {
    let f = valid_file();
    let all: Vec<_> = Reader::new(&f[..]).expect("h").map(|p| p.expect("p")).collect();
    for cut in 0..f.len() {
        let prefix = &f[..cut];
        let Ok(r) = Reader::new(prefix) else {
            continue;
        };
        let mut n = 0;
        for p in r {
            match p {
                Ok(p) => {
                    assert_eq!(p, all[n]);
                    n += 1;
                }
                Err(e) => assert!(e.is_truncated(), "cut at {cut}: {e}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_read(&data);
    }

    #[test]
    fn fuzz_random_bytes_after_a_magic_never_panic(
        magic in prop::sample::select(vec![
            [0x0A, 0x0D, 0x0D, 0x0A], [0xD4, 0xC3, 0xB2, 0xA1], [0xA1, 0xB2, 0xC3, 0xD4],
            [0x4D, 0x3C, 0xB2, 0xA1], [0xA1, 0xB2, 0x3C, 0x4D],
        ]),
        data in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut f = magic.to_vec();
        f.extend(data);
        fuzz_read(&f);
    }

    #[test]
    fn fuzz_mutations_of_a_valid_file_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut f = valid_file();
        for (at, byte) in edits {
            let i = at.index(f.len());
            f[i] = byte;
        }
        fuzz_read(&f);
        fuzz_read(&f[..cut.index(f.len())]);
        // Errors are always explained at a plausible offset.
        if let Ok(r) = Reader::new(&f[..]) {
            for p in r {
                if let Err(e) = p {
                    prop_assert!(e.offset().is_some_and(|o| o < f.len() as u64), "{}", e);
                }
            }
        }
    }
}
