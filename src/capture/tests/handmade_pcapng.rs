//! pcapng as other writers make it, built by hand: both byte orders, several sections,
//! simple and obsolete packet blocks, odd timestamp resolutions, unknown blocks.

use super::{have_tool, ipv4_udp, tshark_fields};
use crate::capture::pcapng::Direction;
use crate::capture::reader::Reader;

/// Builds pcapng blocks in one byte order.
pub(super) struct Ng {
    pub(super) be: bool,
    pub(super) out: Vec<u8>,
}

impl Ng {
    pub(super) fn new(be: bool) -> Ng {
        Ng { be, out: Vec::new() }
    }
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u64(&self, v: u64) -> [u8; 8] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    /// An option (code, value), padded.
    pub(super) fn opt(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&self.u16(code));
        o.extend_from_slice(&self.u16(value.len() as u16));
        o.extend_from_slice(value);
        while o.len() & 3 != 0 {
            o.push(0);
        }
        o
    }
    /// A whole block of `block_type` with `body` (padded here).
    pub(super) fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while body.len() & 3 != 0 {
            body.push(0);
        }
        let total = 12 + body.len() as u32;
        let (t, l) = (self.u32(block_type), self.u32(total));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
    }
    pub(super) fn shb(&mut self, comments: &[&str]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(0x1A2B_3C4D));
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u64(u64::MAX));
        for c in comments {
            body.extend(self.opt(1, c.as_bytes()));
        }
        if !comments.is_empty() {
            body.extend(self.opt(0, &[]));
        }
        self.block(0x0A0D_0D0A, &body);
    }
    pub(super) fn idb(
        &mut self,
        linktype: u16,
        snaplen: u32,
        name: Option<&str>,
        tsresol: Option<u8>,
        tsoffset: Option<i64>,
    ) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16(linktype));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32(snaplen));
        if let Some(n) = name {
            body.extend(self.opt(2, n.as_bytes()));
        }
        if let Some(r) = tsresol {
            body.extend(self.opt(9, &[r]));
        }
        if let Some(o) = tsoffset {
            body.extend(self.opt(14, &self.u64(o as u64)));
        }
        body.extend(self.opt(0, &[]));
        self.block(1, &body);
    }
    pub(super) fn epb(&mut self, iface: u32, ts: u64, data: &[u8], orig: u32, opts: &[Vec<u8>]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(iface));
        body.extend_from_slice(&self.u32((ts >> 32) as u32));
        body.extend_from_slice(&self.u32(ts as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(orig));
        body.extend_from_slice(data);
        while body.len() & 3 != 0 {
            body.push(0);
        }
        for o in opts {
            body.extend_from_slice(o);
        }
        self.block(6, &body);
    }
    fn spb(&mut self, data: &[u8], orig: u32) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(orig));
        body.extend_from_slice(data);
        self.block(3, &body);
    }
    fn pb(&mut self, iface: u16, ts: u64, data: &[u8], opts: &[Vec<u8>]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16(iface));
        body.extend_from_slice(&self.u16(0)); // drops
        body.extend_from_slice(&self.u32((ts >> 32) as u32));
        body.extend_from_slice(&self.u32(ts as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        while body.len() & 3 != 0 {
            body.push(0);
        }
        for o in opts {
            body.extend_from_slice(o);
        }
        self.block(2, &body);
    }
}

/// Two sections, the first big-endian and the second little-endian, with every packet block
/// kind and several timestamp resolutions.
fn two_sections() -> Vec<u8> {
    let p = |n: u8| ipv4_udp([10, 0, 0, n], [10, 0, 1, n], &[n; 3]);
    let mut ng = Ng::new(true);
    ng.shb(&["first section", "big-endian"]);
    // Interface 0: microseconds (the default), for the SPB.
    ng.idb(101, 0, Some("tun0"), None, None);
    ng.spb(&p(1), p(1).len() as u32);
    // A block of a type nobody defined, to skip. (Not 0x00000BAD: that is the Custom Block,
    // which tshark shows as a frame of its own.)
    ng.block(0x0000_7777, &[1, 2, 3, 4, 5, 6, 7, 8]);
    // Interface 1, described after packets: milliseconds, offset +100 s.
    ng.idb(101, 65535, Some("eth1"), Some(3), Some(100));
    let c = ng.opt(1, b"one");
    let c2 = ng.opt(1, b"two");
    let flags = ng.opt(2, &ng.u32(0b10));
    ng.epb(1, 1_700_000_000_123, &p(2), 99, &[c, c2, flags, ng.opt(0, &[])]);
    // Interface 2: 2^-10 seconds; and an obsolete packet block on it, inbound.
    ng.idb(101, 0, None, Some(0x80 | 10), None);
    let flags = ng.opt(2, &ng.u32(0b01));
    ng.pb(2, 1024 * 5 + 512, &p(3), &[flags]);
    let mut out = ng.out;

    let mut ng = Ng::new(false);
    ng.shb(&["second section"]);
    // Picoseconds, negative offset.
    ng.idb(101, 0, Some("lo"), Some(12), Some(-10));
    ng.epb(0, 20_000_000_000_001_500, &p(4), p(4).len() as u32, &[]);
    out.extend(ng.out);
    out
}

#[test]
fn multi_section_mixed_byte_order_pcapng() {
    let file = two_sections();
    let mut r = Reader::new(&file[..]).expect("header");
    assert!(!r.is_classic_pcap());
    assert_eq!(r.comments(), ["first section", "big-endian"]);
    assert!(r.section().big_endian);

    let spb = r.next_packet().expect("spb").expect("spb");
    assert_eq!((spb.interface, spb.interface_name.as_deref()), (0, Some("tun0")));
    assert_eq!(spb.ts, (0, 0), "an SPB has no timestamp");
    assert_eq!(spb.data[15], 1);

    let epb = r.next_packet().expect("epb").expect("epb");
    assert_eq!(epb.interface_name.as_deref(), Some("eth1"));
    assert_eq!(epb.ts, (1_700_000_100, 123_000_000));
    assert_eq!(epb.orig_len, 99);
    assert_eq!(epb.direction, Some(Direction::Outbound));
    assert_eq!(epb.comment.as_deref(), Some("one\ntwo"));

    let pb = r.next_packet().expect("pb").expect("pb");
    assert_eq!((pb.interface, pb.interface_name), (2, None));
    assert_eq!(pb.ts, (5, 500_000_000));
    assert_eq!(pb.direction, Some(Direction::Inbound));
    assert_eq!(r.section().index, 0);

    let last = r.next_packet().expect("2nd section").expect("packet");
    assert_eq!(r.section().index, 1);
    assert!(!r.section().big_endian);
    assert_eq!(r.comments(), ["second section"]);
    assert_eq!(
        r.interfaces().len(),
        1,
        "a new section starts a new interface table"
    );
    assert_eq!((last.interface, last.interface_name.as_deref()), (0, Some("lo")));
    // 20 000 000 000 001 500 ps = 20 000 s + 1 500 ps, then -10 s.
    assert_eq!(last.ts, (19_990, 1));
    assert!(r.next_packet().expect("end").is_none());
}

#[test]
fn handmade_pcapng_agrees_with_tshark() {
    if !have_tool("tshark", "handmade_pcapng_agrees_with_tshark") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("two.pcapng");
    std::fs::write(&path, two_sections()).expect("write");
    let (run, rows) = tshark_fields(
        &path,
        &["frame.interface_name", "ip.src", "frame.len", "frame.time_epoch"],
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    let file = two_sections();
    let mut r = Reader::new(&file[..]).expect("header");
    let mut n = 0;
    while let Some(p) = r.next_packet().expect("packet") {
        let row = &rows[n];
        n += 1;
        // tshark 4.0 looks interface names up by id alone, ignoring the section, so it
        // names the second section's interface 0 after the first section's: compare names
        // in the first section only.
        if r.section().index == 0 {
            let name = p.interface_name.as_deref().unwrap_or("unknown").to_string();
            assert_eq!(row[0], name, "#{n}");
        }
        assert_eq!(row[1], format!("10.0.0.{}", p.data[15]), "#{n}");
        assert_eq!(row[2], p.orig_len.to_string(), "#{n}");
        // The first packet is an SPB, which has no timestamp.
        if n > 1 {
            assert_eq!(row[3], format!("{}.{:09}", p.ts.0, p.ts.1), "#{n}");
        }
    }
    assert_eq!(rows.len(), n, "{}", run.stdout);
}
