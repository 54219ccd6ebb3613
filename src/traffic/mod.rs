//! Verifiable traffic for flow steps: the hidden `bedlab flow send|recv` agent.
//!
//! A flow step must know more than "some bytes arrived": how many, whether they are the
//! bytes that were sent, in which order, and what was lost. So the agent sends content
//! anyone can recompute — every byte is a function of the flow's random id and its position
//! ([`pattern`]) — and numbers UDP datagrams, and the receiver checks each byte and each
//! sequence number. The sender prints one JSON [`Report`] joining both sides' counts.
//!
//! This file is the sans-IO part (wire format, content, the receiver's bookkeeping), unit
//! tested; [`agent`] is the socket shell. No external tool (iperf3) is needed in the
//! namespaces, and the step fails on content errors iperf would not see.
//!
//! UDP datagram: `"BDLF"`, a kind byte, 3 reserved bytes, the flow id (u64), a sequence
//! number or count (u64), then the payload ([`UDP_HEADER_LEN`] bytes of header in all).
//! Kinds: hello (sender → receiver until acknowledged), hello-ack, data, end (carries the
//! number of data datagrams sent; repeated until the report comes), report (JSON after the
//! header). TCP: the same 24-byte header once (kind tcp, the id, the byte count or 0), then
//! the pattern stream; the sender half-closes, the receiver answers with its report as JSON
//! and closes.

pub mod agent;

use serde::{Deserialize, Serialize};

/// Bytes of the header in front of every UDP datagram (and once on a TCP stream).
pub const UDP_HEADER_LEN: usize = 24;
pub const MAGIC: [u8; 4] = *b"BDLF";

/// The transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgKind {
    Hello = 1,
    HelloAck = 2,
    Data = 3,
    End = 4,
    Report = 5,
    Tcp = 6,
}

impl MsgKind {
    fn from_u8(b: u8) -> Option<MsgKind> {
        Some(match b {
            1 => MsgKind::Hello,
            2 => MsgKind::HelloAck,
            3 => MsgKind::Data,
            4 => MsgKind::End,
            5 => MsgKind::Report,
            6 => MsgKind::Tcp,
            _ => return None,
        })
    }
}

/// A header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: MsgKind,
    pub id: u64,
    pub seq: u64,
}

/// Writes a header into the first [`UDP_HEADER_LEN`] bytes of `buf` (which must be that long).
pub fn write_header(buf: &mut [u8], kind: MsgKind, id: u64, seq: u64) {
    buf[..4].copy_from_slice(&MAGIC);
    buf[4] = kind as u8;
    buf[5..8].fill(0);
    buf[8..16].copy_from_slice(&id.to_be_bytes());
    buf[16..24].copy_from_slice(&seq.to_be_bytes());
}

/// Reads a header; `None` for anything that is not one of ours.
pub fn read_header(buf: &[u8]) -> Option<Header> {
    let h = buf.get(..UDP_HEADER_LEN)?;
    if h[..4] != MAGIC {
        return None;
    }
    Some(Header {
        kind: MsgKind::from_u8(h[4])?,
        id: u64::from_be_bytes(h[8..16].try_into().ok()?),
        seq: u64::from_be_bytes(h[16..24].try_into().ok()?),
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The content of a stream (or of datagram `stream`) from byte `offset` on: a keyed
/// pseudo-random sequence, so a byte out of place, duplicated or altered does not match.
pub fn pattern(id: u64, stream: u64, offset: u64, out: &mut [u8]) {
    let key = id ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93);
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let word = splitmix(key ^ (pos / 8)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// How many bytes of `got` differ from the pattern at `offset`.
pub fn mismatches(id: u64, stream: u64, offset: u64, got: &[u8], scratch: &mut Vec<u8>) -> u64 {
    scratch.resize(got.len(), 0);
    pattern(id, stream, offset, scratch);
    got.iter().zip(scratch.iter()).filter(|(a, b)| a != b).count() as u64
}

/// The receiver's bookkeeping for a UDP flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvStats {
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    /// Datagrams that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Datagrams whose content or length was wrong.
    pub corrupt: u64,
    #[serde(skip)]
    highest: Option<u64>,
    #[serde(skip)]
    seen: Vec<u64>,
}

/// Sequence numbers a receiver tracks (bitmap of 16 MiB at most); later ones count as
/// corrupt rather than growing memory without bound.
const MAX_SEQ: u64 = 1 << 27;

impl RecvStats {
    /// One data datagram: `seq` and its payload (after the header).
    pub fn data(
        &mut self,
        id: u64,
        seq: u64,
        payload: &[u8],
        expected_len: Option<usize>,
        scratch: &mut Vec<u8>,
    ) {
        if seq >= MAX_SEQ {
            self.corrupt += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        let bad_len = expected_len.is_some_and(|l| l != payload.len());
        if bad_len || mismatches(id, seq, 0, payload, scratch) > 0 {
            self.corrupt += 1;
            return;
        }
        self.packets += 1;
        self.bytes += payload.len() as u64;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }
}

/// What a flow achieved: the sender's counts joined with the receiver's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub proto: Option<Proto>,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// Intact, distinct datagrams (UDP) or bytes of the stream (TCP) received.
    pub received_packets: u64,
    pub received_bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
    /// TCP: the stream ended cleanly with every byte; UDP: the end was acknowledged.
    pub complete: bool,
    pub duration_ms: u64,
    /// Why the flow could not run (no answer, connection refused, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// Lost datagrams as a fraction of those sent (0 when none were sent).
    pub fn loss_fraction(&self) -> f64 {
        if self.sent_packets == 0 {
            0.0
        } else {
            self.lost as f64 / self.sent_packets as f64
        }
    }

    /// One line for step messages.
    pub fn summary(&self) -> String {
        let rate = if self.duration_ms > 0 {
            format!(
                ", {:.2} Mbit/s",
                self.received_bytes as f64 * 8.0 / self.duration_ms as f64 / 1000.0
            )
        } else {
            String::new()
        };
        let mut s = match self.proto {
            Some(Proto::Udp) => format!(
                "{}/{} datagrams ({} bytes) arrived intact, {} lost ({:.1} %), {} reordered, {} duplicated, {} corrupt in {} ms{rate}",
                self.received_packets,
                self.sent_packets,
                self.received_bytes,
                self.lost,
                self.loss_fraction() * 100.0,
                self.reordered,
                self.duplicates,
                self.corrupt,
                self.duration_ms
            ),
            _ => format!(
                "{}/{} bytes arrived{}, {} corrupt in {} ms{rate}",
                self.received_bytes,
                self.sent_bytes,
                if self.complete { " complete" } else { ", stream incomplete" },
                self.corrupt,
                self.duration_ms
            ),
        };
        if let Some(e) = &self.error {
            s.push_str(&format!(" ({e})"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reject_foreign_bytes() {
        let mut b = [0u8; UDP_HEADER_LEN];
        write_header(&mut b, MsgKind::Data, 7, 42);
        assert_eq!(
            read_header(&b),
            Some(Header {
                kind: MsgKind::Data,
                id: 7,
                seq: 42
            })
        );
        assert_eq!(read_header(&b[..10]), None);
        b[0] = b'X';
        assert_eq!(read_header(&b), None);
        write_header(&mut b, MsgKind::Data, 7, 42);
        b[4] = 99;
        assert_eq!(read_header(&b), None);
    }

    #[test]
    fn the_pattern_is_positional() {
        let mut whole = vec![0u8; 100];
        pattern(1, 0, 0, &mut whole);
        let mut tail = vec![0u8; 37];
        pattern(1, 0, 63, &mut tail);
        assert_eq!(&whole[63..], &tail[..]);
        let mut other = vec![0u8; 100];
        pattern(2, 0, 0, &mut other);
        assert_ne!(whole, other);
        pattern(1, 1, 0, &mut other);
        assert_ne!(whole, other, "each datagram has its own content");
        let mut scratch = Vec::new();
        assert_eq!(mismatches(1, 0, 0, &whole, &mut scratch), 0);
        whole[5] ^= 1;
        assert_eq!(mismatches(1, 0, 0, &whole, &mut scratch), 1);
    }

    #[test]
    fn receiver_counts_loss_reordering_duplicates_and_corruption() {
        let mut s = RecvStats::default();
        let mut scratch = Vec::new();
        let payload = |seq: u64| {
            let mut p = vec![0u8; 50];
            pattern(9, seq, 0, &mut p);
            p
        };
        for seq in [0, 1, 3, 2, 2, 5] {
            s.data(9, seq, &payload(seq), Some(50), &mut scratch);
        }
        let mut bad = payload(6);
        bad[10] ^= 0xff;
        s.data(9, 6, &bad, Some(50), &mut scratch);
        s.data(9, 7, &payload(7)[..40], Some(50), &mut scratch);
        // Datagram 4 never came; 2 came late and twice; 6 was altered, 7 cut.
        assert_eq!((s.packets, s.bytes), (5, 250));
        assert_eq!((s.reordered, s.duplicates, s.corrupt), (1, 1, 2));
        // A payload from another flow is corrupt, not counted.
        s.data(
            9,
            8,
            &payload(8).iter().map(|b| !b).collect::<Vec<_>>(),
            Some(50),
            &mut scratch,
        );
        assert_eq!(s.corrupt, 3);
        s.data(9, MAX_SEQ, &payload(0), Some(50), &mut scratch);
        assert_eq!(s.corrupt, 4);
    }

    #[test]
    fn reports_serialise_and_summarise() {
        let r = Report {
            proto: Some(Proto::Udp),
            sent_packets: 100,
            received_packets: 97,
            lost: 3,
            ..Default::default()
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!((r.loss_fraction() - 0.03).abs() < 1e-9);
        assert!(r.summary().contains("3 lost (3.0 %)"), "{}", r.summary());
    }
}
