//! The reader on real captures from `shared/captures/` (made by tcpdump, editcap and the C
//! reference implementation), compared with what tshark reads from the same files.

use std::path::PathBuf;

use super::{have_tool, tshark_fields};
use crate::capture::linktype;
use crate::capture::reader::{Packet, Reader};

/// The captures, their link type, packet count and first timestamp (as tshark prints
/// `frame.time_epoch`), checked once against tshark 4.0 and kept here so the test means
/// something on machines without tshark too.
const CAPTURES: &[(&str, u16, usize, &str)] = &[
    ("annotated.pcapng", linktype::ETHERNET, 3, "1700000000.000000000"),
    ("invalid-nd.pcap", linktype::ETHERNET, 3, "1700000000.000000000"),
    (
        "refimpl-c-direct-solicit-keepalive.pcap",
        linktype::ETHERNET,
        28,
        "1795331213.814473000",
    ),
    (
        "refimpl-c-router-tun.pcap",
        linktype::RAW,
        4,
        "1795331248.278499000",
    ),
    (
        "synthetic-6bed4.pcap",
        linktype::ETHERNET,
        3,
        "1700000000.000000000",
    ),
];

fn captures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP real captures: {} does not exist", dir.display());
        None
    }
}

fn epoch(p: &Packet) -> String {
    format!("{}.{:09}", p.ts.0, p.ts.1)
}

fn read(path: &std::path::Path) -> Vec<Packet> {
    Reader::open(path)
        .expect("open")
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn real_captures_match_the_recorded_facts() {
    let Some(dir) = captures_dir() else { return };
    for &(name, lt, count, first) in CAPTURES {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIP {name}: not in {}", dir.display());
            continue;
        }
        let packets = read(&path);
        assert_eq!(packets.len(), count, "{name}");
        assert!(packets.iter().all(|p| p.linktype == lt), "{name}");
        assert_eq!(epoch(&packets[0]), first, "{name}");
        // Every packet in these captures is IP on its link layer.
        for (i, p) in packets.iter().enumerate() {
            assert!(p.ip().is_some(), "{name} packet {}: no IP inside", i + 1);
        }
    }
}

#[test]
fn annotated_capture_comments_are_read() {
    let Some(dir) = captures_dir() else { return };
    let path = dir.join("annotated.pcapng");
    if !path.exists() {
        eprintln!("SKIP annotated.pcapng: not in {}", dir.display());
        return;
    }
    let packets = read(&path);
    assert_eq!(
        packets[0].comment.as_deref(),
        Some("RS sent by peer behind NAT A")
    );
    assert_eq!(packets[1].comment, None);
    let r = Reader::open(&path).expect("open");
    assert!(r
        .section()
        .application
        .as_deref()
        .is_some_and(|a| a.contains("Editcap")));
}

#[test]
fn real_captures_agree_with_tshark_packet_by_packet() {
    let Some(dir) = captures_dir() else { return };
    if !have_tool("tshark", "real_captures_agree_with_tshark_packet_by_packet") {
        return;
    }
    for &(name, ..) in CAPTURES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let (run, rows) = tshark_fields(
            &path,
            &[
                "frame.number",
                "frame.time_epoch",
                "frame.len",
                "frame.cap_len",
                "ip.src",
                "ipv6.src",
                "frame.comment",
            ],
        );
        assert!(run.status.success(), "{name}: {}", run.stderr);
        let packets = read(&path);
        assert_eq!(rows.len(), packets.len(), "{name}: packet count");
        for (row, p) in rows.iter().zip(&packets) {
            let n = &row[0];
            assert_eq!(row[1], epoch(p), "{name} #{n}: time");
            assert_eq!(row[2], p.orig_len.to_string(), "{name} #{n}: length");
            assert_eq!(row[3], p.data.len().to_string(), "{name} #{n}: captured length");
            assert_eq!(
                row[6],
                p.comment.clone().unwrap_or_default(),
                "{name} #{n}: comment"
            );
            // The outermost source address tshark decodes is the one ip_payload reaches.
            let ip = p.ip().expect("ip");
            let src = match ip[0] >> 4 {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).expect("v4")).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("v6")).to_string(),
            };
            let tshark_src = if ip[0] >> 4 == 4 { &row[4] } else { &row[5] };
            assert_eq!(tshark_src, &src, "{name} #{n}: source address");
        }
    }
}
