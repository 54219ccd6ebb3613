//! Files the writer makes open cleanly in tshark and capinfos, and a file cut short in the
//! middle of a block is read up to its last whole packet, as tshark reads it.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::{have_tool, ipv4_udp, ipv6_packet, run_tool, tshark_fields};
use crate::capture::linktype;
use crate::capture::pcapng::{CaptureFile, Direction, ShbInfo};
use crate::capture::reader::{ReadError, Reader};

/// Writes a small lab-like capture: fabric link ends and a host's `6bed4`, interfaces
/// added between packets, comments on some packets.
fn write_lab_capture(path: &Path) {
    let file = CaptureFile::create(
        path,
        ShbInfo::bedlab(vec![
            "run-id: 20240101-abcdef".into(),
            "topology: two-nats".into(),
            "roles: peer-a=impl-under-test, router=sixbed4".into(),
        ]),
    )
    .expect("create");
    let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let eth0 = file.interface_id("peer-a/eth0", linktype::RAW).expect("id");
    let v4 = ipv4_udp([192, 168, 1, 10], [198, 51, 100, 1], b"hello");
    file.write_packet(
        eth0,
        t0,
        &v4,
        v4.len() as u32,
        Some(Direction::Outbound),
        Some("first"),
    )
    .expect("write");
    let wan = file.interface_id("nat-a/wan", linktype::RAW).expect("id");
    let v4b = ipv4_udp([203, 0, 113, 7], [198, 51, 100, 1], b"hello");
    file.write_packet(
        wan,
        t0 + Duration::from_nanos(1),
        &v4b,
        v4b.len() as u32,
        Some(Direction::Inbound),
        None,
    )
    .expect("write");
    let tun = file.interface_id("peer-a/6bed4", linktype::RAW).expect("id");
    let mut src = [0u8; 16];
    src[0] = 0xfc;
    src[15] = 1;
    let v6 = ipv6_packet(src, src, b"x");
    file.write_packet(
        tun,
        t0 + Duration::from_millis(5),
        &v6,
        v6.len() as u32,
        None,
        Some("keepalive, über"),
    )
    .expect("write");
    file.write_packet(
        eth0,
        t0 + Duration::from_secs(1),
        &v4,
        2000,
        Some(Direction::Outbound),
        None,
    )
    .expect("write");
}

#[test]
fn tshark_reads_our_file_without_complaint() {
    if !have_tool("tshark", "tshark_reads_our_file_without_complaint") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lab.pcapng");
    write_lab_capture(&path);

    let (run, rows) = tshark_fields(
        &path,
        &[
            "frame.number",
            "frame.interface_name",
            "frame.comment",
            "ip.src",
            "frame.packet_flags_direction",
            "frame.time_epoch",
            "frame.len",
        ],
    );
    assert!(run.status.success(), "tshark failed: {}", run.stderr);
    assert_eq!(run.stderr, "", "tshark complained");
    let expect = [
        [
            "1",
            "peer-a/eth0",
            "first",
            "192.168.1.10",
            "0x00000002",
            "1700000000.123456789",
            "33",
        ],
        [
            "2",
            "nat-a/wan",
            "",
            "203.0.113.7",
            "0x00000001",
            "1700000000.123456790",
            "33",
        ],
        [
            "3",
            "peer-a/6bed4",
            "keepalive, über",
            "",
            "",
            "1700000000.128456789",
            "41",
        ],
        [
            "4",
            "peer-a/eth0",
            "",
            "192.168.1.10",
            "0x00000002",
            "1700000001.123456789",
            "2000",
        ],
    ];
    assert_eq!(rows.len(), expect.len(), "{}", run.stdout);
    for (row, want) in rows.iter().zip(expect) {
        assert_eq!(row, &want.map(str::to_string), "{}", run.stdout);
    }

    if have_tool(
        "capinfos",
        "tshark_reads_our_file_without_complaint (capinfos part)",
    ) {
        let run = run_tool("capinfos", &["-c", "-F", "-k"], &path);
        assert!(run.status.success(), "capinfos failed: {}", run.stderr);
        assert_eq!(run.stderr, "", "capinfos complained");
        assert!(run.stdout.contains("Number of packets:   4"), "{}", run.stdout);
        assert!(run.stdout.contains("run-id: 20240101-abcdef"), "{}", run.stdout);
        assert!(run.stdout.contains("topology: two-nats"), "{}", run.stdout);
    }
}

#[test]
fn truncated_file_yields_whole_packets_then_a_truncation_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lab.pcapng");
    write_lab_capture(&path);
    let full = std::fs::read(&path).expect("read");
    // The last block is an EPB of 20 + 36 (33 padded) + 12 bytes of framing + options... cut
    // 10 bytes from the end: inside the last packet's block.
    let cut = &full[..full.len() - 10];
    let cut_path = dir.path().join("cut.pcapng");
    std::fs::write(&cut_path, cut).expect("write");

    let mut r = Reader::open(&cut_path).expect("open");
    let mut whole = 0;
    let err = loop {
        match r.next_packet() {
            Ok(Some(_)) => whole += 1,
            Ok(None) => panic!("a truncated file must not end cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(whole, 3);
    assert!(err.is_truncated(), "{err}");
    let ReadError::Truncated {
        offset,
        needed,
        available,
        ..
    } = err
    else {
        unreachable!()
    };
    assert_eq!(available + 10, needed);
    assert_eq!(offset + needed, full.len() as u64);
    let msg = err_message(&cut_path);
    assert!(
        msg.starts_with(&format!("enhanced packet block at offset {offset}: truncated")),
        "{msg}"
    );
    // The iterator stops after the error.
    assert!(r.next_packet().expect("done").is_none());

    // Cut inside a block header too.
    let header_cut = &full[..full.len() - needed as usize + 5];
    let mut r = Reader::new(header_cut).expect("open");
    let n = r.by_ref().take_while(|p| p.is_ok()).count();
    assert_eq!(n, 3);

    if have_tool("tshark", "truncated_file_... (tshark part)") {
        let (run, rows) = tshark_fields(&cut_path, &["frame.number"]);
        assert_eq!(
            rows.len(),
            whole,
            "tshark counts {} whole packets: {}",
            rows.len(),
            run.stdout
        );
        assert!(
            run.stderr.contains("cut short in the middle of a packet"),
            "tshark said: {}",
            run.stderr
        );
    }
}

fn err_message(path: &Path) -> String {
    let r = Reader::open(path).expect("open");
    for p in r {
        if let Err(e) = p {
            return e.to_string();
        }
    }
    String::new()
}
