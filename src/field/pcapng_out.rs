//! A buffered pcapng writer that copies what the input says about itself.
//!
//! [`crate::capture::PcapngWriter`] is built for live lab runs: it flushes every block (so
//! a killed run leaves a readable file) and always names interfaces. A file-to-file tool
//! wants the opposite on both counts: throughput (one `write` per 64 KiB, not per packet)
//! and fidelity, because the decoder treats an unnamed interface differently from one
//! named `""` (it groups sightings only on named capture points). So this writer leaves
//! `if_name` out when the input had none, starts a new section when the input does, and
//! keeps packet comments and directions.

use std::io::{self, BufWriter, Write};

use crate::capture::{Direction, Section};

const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 1;
const BT_EPB: u32 = 6;

/// The interface description this writer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceDesc {
    pub linktype: u16,
    pub snaplen: u32,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A little-endian pcapng writer over a buffered stream.
#[derive(Debug)]
pub struct Writer<W: Write> {
    w: BufWriter<W>,
    block: Vec<u8>,
    interfaces: u32,
}

impl<W: Write> Writer<W> {
    /// Starts the first section.
    pub fn new(w: W, section: &Section, application: &str) -> io::Result<Writer<W>> {
        let mut this = Writer {
            w: BufWriter::with_capacity(256 * 1024, w),
            block: Vec::with_capacity(4096),
            interfaces: 0,
        };
        this.section(section, application)?;
        Ok(this)
    }

    /// Starts a new section (interface ids start again at 0).
    pub fn section(&mut self, section: &Section, application: &str) -> io::Result<()> {
        let b = &mut self.block;
        start(b, BT_SHB);
        put32(b, 0x1A2B_3C4D);
        put16(b, 1);
        put16(b, 0);
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        for c in &section.comments {
            option(b, 1, c.as_bytes());
        }
        if let Some(h) = &section.hardware {
            option(b, 2, h.as_bytes());
        }
        if let Some(o) = &section.os {
            option(b, 3, o.as_bytes());
        }
        option(b, 4, application.as_bytes());
        end_options(b);
        finish(b);
        self.interfaces = 0;
        self.w.write_all(&self.block)
    }

    /// Describes an interface; returns its id in the current section.
    pub fn interface(&mut self, d: &IfaceDesc) -> io::Result<u32> {
        let b = &mut self.block;
        start(b, BT_IDB);
        put16(b, d.linktype);
        put16(b, 0);
        put32(b, d.snaplen);
        if let Some(n) = &d.name {
            option(b, 2, n.as_bytes());
        }
        if let Some(s) = &d.description {
            option(b, 3, s.as_bytes());
        }
        option(b, 9, &[9]);
        end_options(b);
        finish(b);
        self.w.write_all(&self.block)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one Enhanced Packet Block; `ts_ns` in nanoseconds since 1970.
    pub fn packet(
        &mut self,
        iface: u32,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let cap = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet larger than 4 GiB"))?;
        let b = &mut self.block;
        start(b, BT_EPB);
        put32(b, iface);
        put32(b, (ts_ns >> 32) as u32);
        put32(b, ts_ns as u32);
        put32(b, cap);
        put32(b, orig_len.max(cap));
        b.extend_from_slice(data);
        pad(b);
        if let Some(c) = comment {
            option(b, 1, c.as_bytes());
        }
        if let Some(d) = direction {
            option(b, 2, &d.epb_flag_bits().to_le_bytes());
        }
        if comment.is_some() || direction.is_some() {
            end_options(b);
        }
        finish(b);
        self.w.write_all(&self.block)
    }

    /// Flushes everything and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        self.w.into_inner().map_err(|e| e.into_error())
    }
}

fn start(b: &mut Vec<u8>, ty: u32) {
    b.clear();
    put32(b, ty);
    put32(b, 0);
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn pad(b: &mut Vec<u8>) {
    while b.len() & 3 != 0 {
        b.push(0);
    }
}

/// An option; values longer than 65535 bytes are cut (the length field is 16 bits), at a
/// character boundary when the value is text.
fn option(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    let mut n = value.len().min(usize::from(u16::MAX));
    if n < value.len() {
        if let Ok(s) = std::str::from_utf8(value) {
            while n > 0 && !s.is_char_boundary(n) {
                n -= 1;
            }
        }
    }
    put16(b, code);
    put16(b, n as u16);
    b.extend_from_slice(&value[..n]);
    pad(b);
}

fn end_options(b: &mut Vec<u8>) {
    put32(b, 0);
}

fn finish(b: &mut Vec<u8>) {
    let total = (b.len() + 4) as u32;
    put32(b, total);
    b[4..8].copy_from_slice(&total.to_le_bytes());
}
