//! Writer -> reader: whatever is written comes back exactly.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use crate::capture::linktype;
use crate::capture::pcapng::{CaptureFile, Direction, PcapngWriter, ShbInfo};
use crate::capture::reader::{Packet, Reader};

#[derive(Debug, Clone)]
enum Op {
    Interface {
        name: String,
        description: Option<String>,
        linktype: u16,
        snaplen: u32,
    },
    Packet {
        /// Picks among the interfaces added so far (modulo their count).
        iface: usize,
        ts_nanos: u64,
        data: Vec<u8>,
        extra_len: u32,
        direction: Option<Direction>,
        comment: Option<String>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let linktypes = prop::sample::select(vec![
        linktype::RAW,
        linktype::IPV4,
        linktype::IPV6,
        linktype::LINUX_SLL,
        linktype::LINUX_SLL2,
        linktype::ETHERNET,
    ]);
    let direction = prop::option::of(prop::sample::select(vec![
        Direction::Inbound,
        Direction::Outbound,
    ]));
    prop_oneof![
        1 => (
            "[a-z][a-z0-9-]{0,10}/[a-z0-9]{1,8}",
            prop::option::of("\\PC{0,30}"),
            linktypes,
            prop::sample::select(vec![0u32, 65535, 262_144]),
        )
            .prop_map(|(name, description, linktype, snaplen)| Op::Interface {
                name,
                description,
                linktype,
                snaplen,
            }),
        4 => (
            any::<usize>(),
            // Up to the year 2500, to the nanosecond.
            0u64..16_725_225_600_000_000_000,
            prop::collection::vec(any::<u8>(), 0..300),
            prop_oneof![Just(0u32), 0u32..100_000],
            direction,
            prop::option::of("\\PC{0,60}"),
        )
            .prop_map(|(iface, ts_nanos, data, extra_len, direction, comment)| Op::Packet {
                iface,
                ts_nanos,
                data,
                extra_len,
                direction,
                comment,
            }),
    ]
}

/// Runs `ops` through a writer; returns the file and the packets a reader should yield.
fn write(ops: &[Op], shb: &ShbInfo) -> (Vec<u8>, Vec<Packet>) {
    let mut w = PcapngWriter::new(Vec::new(), shb.clone()).expect("shb");
    let mut ifaces: Vec<(String, u16)> = Vec::new();
    let mut expected = Vec::new();
    for op in ops {
        match op {
            Op::Interface {
                name,
                description,
                linktype,
                snaplen,
            } => {
                let id = w
                    .add_interface(name, description.as_deref(), *linktype, *snaplen)
                    .expect("idb");
                assert_eq!(id as usize, ifaces.len());
                ifaces.push((name.clone(), *linktype));
            }
            Op::Packet {
                iface,
                ts_nanos,
                data,
                extra_len,
                direction,
                comment,
            } => {
                if ifaces.is_empty() {
                    continue;
                }
                let id = iface % ifaces.len();
                let orig_len = data.len() as u32 + extra_len;
                let ts = UNIX_EPOCH + Duration::from_nanos(*ts_nanos);
                w.write_packet(id as u32, ts, data, orig_len, *direction, comment.as_deref())
                    .expect("epb");
                expected.push(Packet {
                    interface: id as u32,
                    interface_name: Some(ifaces[id].0.as_str().into()),
                    linktype: ifaces[id].1,
                    ts: (ts_nanos / 1_000_000_000, (ts_nanos % 1_000_000_000) as u32),
                    data: data.clone(),
                    orig_len,
                    direction: *direction,
                    comment: comment.clone(),
                });
            }
        }
    }
    (w.into_inner(), expected)
}

fn read_all(file: &[u8]) -> (Reader<&[u8]>, Vec<Packet>) {
    let mut r = Reader::new(file).expect("header");
    let mut got = Vec::new();
    while let Some(p) = r.next_packet().expect("packet") {
        got.push(p);
    }
    (r, got)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn written_packets_read_back_exactly(
        ops in prop::collection::vec(op(), 0..40),
        comments in prop::collection::vec("\\PC{0,40}", 0..4),
    ) {
        let shb = ShbInfo {
            hardware: "x86_64".into(),
            os: "Linux".into(),
            application: "bedlab test".into(),
            comments,
        };
        let (file, expected) = write(&ops, &shb);
        prop_assert_eq!(file.len() % 4, 0);
        let (r, got) = read_all(&file);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(&r.section().comments, &shb.comments);
        prop_assert_eq!(r.section().hardware.as_deref(), Some("x86_64"));
        prop_assert_eq!(r.section().os.as_deref(), Some("Linux"));
        prop_assert_eq!(r.section().application.as_deref(), Some("bedlab test"));
        prop_assert_eq!(r.section().version, (1, 0));
        prop_assert!(!r.section().big_endian);
    }
}

#[test]
fn interface_descriptions_and_snaplens_are_kept() {
    let mut w = PcapngWriter::new(Vec::new(), ShbInfo::default()).expect("shb");
    w.add_interface("peer-a/eth0", Some("uplink of peer-a"), linktype::RAW, 1500)
        .expect("idb");
    w.write_packet(0, UNIX_EPOCH, &[0x60], 1, None, None)
        .expect("epb");
    let file = w.into_inner();
    let (r, got) = read_all(&file);
    assert_eq!(got.len(), 1);
    let iface = &r.interfaces()[0];
    assert_eq!(iface.name.as_deref(), Some("peer-a/eth0"));
    assert_eq!(iface.description.as_deref(), Some("uplink of peer-a"));
    assert_eq!(iface.snaplen, 1500);
    assert_eq!(iface.units_per_second, 1_000_000_000);
}

#[test]
fn writer_rejects_what_would_make_a_bad_file() {
    let mut w = PcapngWriter::new(Vec::new(), ShbInfo::default()).expect("shb");
    let err = w
        .write_packet(0, UNIX_EPOCH, &[1], 1, None, None)
        .expect_err("no interface yet");
    assert!(err.to_string().contains("interface 0 was never added"), "{err}");
    w.add_interface("a", None, linktype::RAW, 4).expect("idb");
    let err = w
        .write_packet(0, UNIX_EPOCH, &[1, 2], 1, None, None)
        .expect_err("cap > orig");
    assert!(err.to_string().contains("exceeds original length"), "{err}");
    let err = w
        .write_packet(0, UNIX_EPOCH, &[0; 5], 5, None, None)
        .expect_err("over snaplen");
    assert!(err.to_string().contains("snaplen 4"), "{err}");
    let err = w
        .write_packet(0, UNIX_EPOCH - Duration::from_secs(1), &[1], 1, None, None)
        .expect_err("before 1970");
    assert!(err.to_string().contains("before 1970"), "{err}");
    // None of the refused packets reached the file.
    let file = w.into_inner();
    assert_eq!(read_all(&file).1.len(), 0);
}

#[test]
fn overlong_comment_is_cut_at_a_character_boundary() {
    let mut w = PcapngWriter::new(Vec::new(), ShbInfo::default()).expect("shb");
    w.add_interface("a", None, linktype::RAW, 0).expect("idb");
    let long = "é".repeat(40_000); // 80 000 bytes
    w.write_packet(0, UNIX_EPOCH, &[0x45], 1, None, Some(&long))
        .expect("epb");
    let file = w.into_inner();
    let got = read_all(&file).1;
    let comment = got[0].comment.as_deref().expect("comment");
    assert_eq!(comment.len(), 65534);
    assert!(long.starts_with(comment));
}

/// A writer whose every write after the first `ok` fails, to check the writer stops.
#[derive(Debug)]
struct FailingWriter {
    ok: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        self.ok -= 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn writer_refuses_to_continue_after_a_failed_write() {
    let mut w = PcapngWriter::new(FailingWriter { ok: 1 }, ShbInfo::default()).expect("shb");
    assert!(w.add_interface("a", None, linktype::RAW, 0).is_err());
    let err = w.add_interface("b", None, linktype::RAW, 0).expect_err("broken");
    assert!(err.to_string().contains("earlier write failed"), "{err}");
}

#[test]
fn capture_file_registers_each_name_once_across_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lab.pcapng");
    let file = CaptureFile::create(&path, ShbInfo::bedlab(vec!["run 1".into()])).expect("create");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let file = file.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let name = ["peer-a/eth0", "nat-a/wan", "peer-b/eth0"][(i % 3) as usize];
                    let id = file.interface_id(name, linktype::RAW).expect("id");
                    let pkt = super::ipv4_udp([10, 0, 0, t], [10, 0, 0, 9], &i.to_be_bytes());
                    let ts = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(i));
                    file.write_packet(id, ts, &pkt, pkt.len() as u32, Some(Direction::Outbound), None)
                        .expect("write");
                }
                file.record(
                    "peer-a/6bed4",
                    linktype::RAW,
                    UNIX_EPOCH,
                    &[0x60, 0, 0, 0],
                    Some(Direction::Inbound),
                )
                .expect("record");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    drop(file);
    let mut r = Reader::open(&path).expect("open");
    let mut n = 0;
    while let Some(p) = r.next_packet().expect("packet") {
        n += 1;
        assert!(p.interface_name.is_some());
    }
    assert_eq!(n, 4 * 51);
    let mut names: Vec<_> = r.interfaces().iter().filter_map(|i| i.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["nat-a/wan", "peer-a/6bed4", "peer-a/eth0", "peer-b/eth0"]);
    assert_eq!(r.comments(), ["run 1"]);
    assert!(r
        .section()
        .application
        .as_deref()
        .is_some_and(|a| a.starts_with("bedlab ")));
    // The same name with another link type is a separate interface.
    let file = CaptureFile::create(&path, ShbInfo::default()).expect("create");
    let a = file.interface_id("x", linktype::RAW).expect("id");
    let b = file.interface_id("x", linktype::LINUX_SLL2).expect("id");
    assert_ne!(a, b);
    assert_eq!(file.interface_id("x", linktype::RAW).expect("id"), a);
}
