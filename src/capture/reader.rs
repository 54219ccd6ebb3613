//! A streaming reader for classic pcap and pcapng.
//!
//! The reader pulls one record or block at a time from any [`Read`] and keeps only that
//! block in memory (plus the current section's interface table), so a capture of a long lab
//! run is checked in constant memory. It accepts what real tools write: classic pcap with
//! microsecond or nanosecond timestamps in either byte order, and pcapng with several
//! sections of either byte order, interfaces described anywhere, any `if_tsresol` (a power
//! of 10 or of 2) and `if_tsoffset`, Enhanced, Simple and obsolete Packet Blocks; blocks it
//! does not know are skipped.
//!
//! Errors say where and what: `block at offset 1234: total length 8 is smaller than the
//! minimum 12`. A capture whose writer was killed usually ends in a partial block; that is
//! [`ReadError::Truncated`] after every whole packet before it, so a caller can stop cleanly
//! with what it has. Lengths are checked before anything is allocated, and a block is read
//! incrementally, so a corrupt length can neither exhaust memory nor cause a panic
//! ([`fuzz_read`] is the fuzzing entry point that holds the reader to that).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::linktype;
use super::pcapng::{
    Direction, BT_EPB, BT_IDB, BT_PB, BT_SHB, BT_SPB, BYTE_ORDER_MAGIC, EPB_FLAGS, IF_DESCRIPTION, IF_NAME,
    IF_TSOFFSET, IF_TSRESOL, OPT_COMMENT, OPT_ENDOFOPT, SHB_HARDWARE, SHB_OS, SHB_USERAPPL,
};

/// The largest block (pcapng) or captured packet (pcap) the reader accepts: far above any
/// real packet, low enough that a corrupt length is caught before it costs memory.
pub const MAX_BLOCK_LEN: u32 = 256 * 1024 * 1024;

/// The most interfaces one pcapng section may describe; keeps the interface table (the only
/// state that grows with the file) bounded.
pub const MAX_INTERFACES: usize = 65_536;

/// Interface names and descriptions are kept up to this many bytes (cut at a character
/// boundary), which bounds the interface table's memory together with [`MAX_INTERFACES`].
pub const MAX_NAME_LEN: usize = 1024;

/// Classic pcap magic numbers, as read little-endian from the first four bytes.
const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;

/// Everything that can go wrong reading a capture. Each variant names the offset of the
/// block or record at fault (bytes from the start of the stream) and which kind it was.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened.
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The underlying reader failed.
    #[error("{what} at offset {offset}: read failed: {source}")]
    Io {
        offset: u64,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error(
        "offset 0: not a pcap or pcapng file (starts with {magic:02x?}, expected 0a0d0d0a, \
         a1b2c3d4 or a1b23c4d in either byte order)"
    )]
    BadMagic { magic: [u8; 4] },
    /// The stream ends inside a block or record: everything before it was whole.
    #[error(
        "{what} at offset {offset}: truncated: the file ends {available} bytes into it, \
         {needed} needed"
    )]
    Truncated {
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    /// A length beyond [`MAX_BLOCK_LEN`] (or [`MAX_INTERFACES`]); rejected before reading.
    #[error("{what} at offset {offset}: {field} {value} is larger than the limit {limit}")]
    TooLarge {
        offset: u64,
        what: &'static str,
        field: &'static str,
        value: u64,
        limit: u64,
    },
    /// Anything else that breaks the format.
    #[error("{what} at offset {offset}: {reason}")]
    Invalid {
        offset: u64,
        what: &'static str,
        reason: String,
    },
}

impl ReadError {
    /// True when the stream simply ended inside a block: a writer that was killed, or a copy
    /// of a capture still being written. Every packet before it was returned whole.
    pub fn is_truncated(&self) -> bool {
        matches!(self, ReadError::Truncated { .. })
    }

    /// The offset of the block or record at fault, if the error has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Io { offset, .. }
            | ReadError::Truncated { offset, .. }
            | ReadError::TooLarge { offset, .. }
            | ReadError::Invalid { offset, .. } => Some(*offset),
            ReadError::BadMagic { .. } => Some(0),
            ReadError::Open { .. } => None,
        }
    }
}

/// One packet, whatever the file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The interface id within its pcapng section (0 for classic pcap).
    pub interface: u32,
    /// The interface's `if_name`, if the file gave one: shared by every packet of the
    /// interface (a reference count, no copy per packet).
    pub interface_name: Option<Arc<str>>,
    /// The interface's link type (`LINKTYPE_*`, see [`super::linktype`]).
    pub linktype: u16,
    /// Seconds and nanoseconds since 1970, after `if_tsresol` and `if_tsoffset`.
    /// Resolutions finer than a nanosecond are truncated. `(0, 0)` for a Simple Packet
    /// Block, which carries no timestamp.
    pub ts: (u64, u32),
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The packet's length on the wire (at least `data.len()` in a sane file).
    pub orig_len: u32,
    /// From `epb_flags` / `pack_flags`, when recorded.
    pub direction: Option<Direction>,
    /// The packet's `opt_comment`s, joined by newlines when there are several.
    pub comment: Option<String>,
}

impl Packet {
    /// The timestamp as a `SystemTime` (None only if it does not fit one).
    pub fn time(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::new(self.ts.0, self.ts.1))
    }

    /// The IP packet inside, if the link layer is one [`ip_payload`] knows.
    pub fn ip(&self) -> Option<&[u8]> {
        ip_payload(self.linktype, &self.data)
    }
}

/// What the current section says about itself. Classic pcap files are one section without
/// comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// 0 for the first section, counting up.
    pub index: u32,
    /// Whether the section (or pcap file) is big-endian.
    pub big_endian: bool,
    /// The format version (`major.minor`): 1.0 for pcapng, 2.4 for pcap.
    pub version: (u16, u16),
    /// The section's `opt_comment`s, in order.
    pub comments: Vec<String>,
    /// `shb_hardware`.
    pub hardware: Option<String>,
    /// `shb_os`.
    pub os: Option<String>,
    /// `shb_userappl`.
    pub application: Option<String>,
}

/// An interface of the current section (classic pcap: the one implicit interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u16,
    /// 0 means no limit.
    pub snaplen: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Timestamp units per second.
    pub units_per_second: u128,
    /// `if_tsoffset`: seconds added to every timestamp.
    pub ts_offset: i64,
}

/// The format-specific state.
#[derive(Debug)]
enum Format {
    Pcap { nanos: bool },
    Pcapng,
}

/// A streaming pcap / pcapng reader; see the module documentation.
///
/// Use [`Reader::next_packet`] or iterate (the iterator ends after the first error, which
/// it yields).
#[derive(Debug)]
pub struct Reader<R: Read> {
    r: R,
    /// Bytes consumed from `r` so far: the offset of the next block.
    offset: u64,
    format: Format,
    section: Section,
    interfaces: Vec<Interface>,
    /// `interfaces[i].name`, shared with the packets of interface `i`.
    names: Vec<Option<Arc<str>>>,
    buf: Vec<u8>,
    /// Section Header Blocks read so far.
    sections_seen: u32,
    /// Set after an error or the end: the iterator yields nothing more.
    done: bool,
}

impl Reader<BufReader<File>> {
    /// Opens a capture file and reads its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Reader::new(BufReader::with_capacity(64 * 1024, file))
    }
}

impl<R: Read> Reader<R> {
    /// Reads the file header (pcap) or first Section Header Block (pcapng).
    pub fn new(r: R) -> Result<Self, ReadError> {
        let mut this = Reader {
            r,
            offset: 0,
            format: Format::Pcapng,
            section: Section::default(),
            interfaces: Vec::new(),
            names: Vec::new(),
            buf: Vec::new(),
            sections_seen: 0,
            done: false,
        };
        let mut magic = [0u8; 4];
        let got = this.read_up_to(&mut magic, 0, "file header")?;
        if got < 4 {
            return Err(ReadError::Truncated {
                offset: 0,
                what: "file header",
                needed: 4,
                available: got as u64,
            });
        }
        if u32::from_le_bytes(magic) == BT_SHB {
            this.read_first_shb()?;
            return Ok(this);
        }
        let (big_endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (false, true),
            (_, PCAP_MAGIC_US) => (true, false),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => return Err(ReadError::BadMagic { magic }),
        };
        this.read_pcap_header(big_endian, nanos)?;
        Ok(this)
    }

    /// The current section: for pcapng, the one the last packet returned belongs to.
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// The current section's comments (a shortcut for `section().comments`).
    pub fn comments(&self) -> &[String] {
        &self.section.comments
    }

    /// The interfaces described so far in the current section.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Whether the stream is classic pcap (else pcapng).
    pub fn is_classic_pcap(&self) -> bool {
        matches!(self.format, Format::Pcap { .. })
    }

    /// The byte offset of the next block or record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next packet; `Ok(None)` at a clean end of the stream (on a block boundary).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let result = match self.format {
            Format::Pcap { nanos } => self.next_pcap_record(nanos),
            Format::Pcapng => self.next_pcapng_packet(),
        };
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    /// Hands a packet's buffer back for the next packet, so that a caller that is done
    /// with each packet before asking for the next reads without allocating per packet.
    pub fn recycle(&mut self, data: Vec<u8>) {
        if self.buf.capacity() < data.capacity() {
            self.buf = data;
        }
    }

    // ---- classic pcap ----

    fn read_pcap_header(&mut self, big_endian: bool, nanos: bool) -> Result<(), ReadError> {
        let mut rest = [0u8; 20];
        let got = self.read_up_to(&mut rest, 0, "file header")?;
        if got < rest.len() {
            return Err(ReadError::Truncated {
                offset: 0,
                what: "file header",
                needed: 24,
                available: 4 + got as u64,
            });
        }
        let e = Endian(big_endian);
        let (major, minor) = (e.u16(&rest[0..2]), e.u16(&rest[2..4]));
        if major != 2 {
            return Err(ReadError::Invalid {
                offset: 0,
                what: "file header",
                reason: format!("unsupported pcap version {major}.{minor} (expected 2.x)"),
            });
        }
        let snaplen = e.u32(&rest[12..16]);
        // The low 16 bits are the link type; the upper ones carry FCS information.
        let linktype = (e.u32(&rest[16..20]) & 0xFFFF) as u16;
        self.format = Format::Pcap { nanos };
        self.section = Section {
            index: 0,
            big_endian,
            version: (major, minor),
            ..Section::default()
        };
        self.interfaces = vec![Interface {
            linktype,
            snaplen,
            name: None,
            description: None,
            units_per_second: if nanos { 1_000_000_000 } else { 1_000_000 },
            ts_offset: 0,
        }];
        Ok(())
    }

    fn next_pcap_record(&mut self, nanos: bool) -> Result<Option<Packet>, ReadError> {
        const WHAT: &str = "record";
        let start = self.offset;
        let mut hdr = [0u8; 16];
        let got = self.read_up_to(&mut hdr, start, WHAT)?;
        if got == 0 {
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(ReadError::Truncated {
                offset: start,
                what: WHAT,
                needed: 16,
                available: got as u64,
            });
        }
        let e = Endian(self.section.big_endian);
        let secs = e.u32(&hdr[0..4]);
        let frac = e.u32(&hdr[4..8]);
        let incl_len = e.u32(&hdr[8..12]);
        let orig_len = e.u32(&hdr[12..16]);
        if incl_len > MAX_BLOCK_LEN {
            return Err(ReadError::TooLarge {
                offset: start,
                what: WHAT,
                field: "captured length",
                value: incl_len.into(),
                limit: MAX_BLOCK_LEN.into(),
            });
        }
        self.fill(u64::from(incl_len), start, 16 + u64::from(incl_len), WHAT)?;
        // A fraction of a second or more in the fraction field is carried into the seconds,
        // as libpcap-based tools display it.
        let per_sec: u32 = if nanos { 1_000_000_000 } else { 1_000 };
        let (carry, frac) = if nanos {
            (frac / per_sec, frac % per_sec)
        } else {
            (frac / 1_000_000, (frac % 1_000_000) * 1_000)
        };
        let linktype = self.interfaces.first().map_or(0, |i| i.linktype);
        Ok(Some(Packet {
            interface: 0,
            interface_name: None,
            linktype,
            ts: (u64::from(secs) + u64::from(carry), frac),
            data: std::mem::take(&mut self.buf),
            orig_len,
            direction: None,
            comment: None,
        }))
    }

    // ---- pcapng ----

    /// Reads blocks until one yields a packet, or the stream ends cleanly.
    fn next_pcapng_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            let start = self.offset;
            let mut hdr = [0u8; 8];
            let got = self.read_up_to(&mut hdr, start, "block")?;
            if got == 0 {
                return Ok(None);
            }
            if got < hdr.len() {
                return Err(ReadError::Truncated {
                    offset: start,
                    what: "block",
                    needed: 8,
                    available: got as u64,
                });
            }
            let e = Endian(self.section.big_endian);
            let block_type = e.u32(&hdr[0..4]);
            if block_type == BT_SHB {
                self.read_shb_after_type(start, &hdr[4..8])?;
                continue;
            }
            let total = e.u32(&hdr[4..8]);
            let (what, min) = match block_type {
                BT_IDB => ("interface description block", 20),
                BT_EPB => ("enhanced packet block", 32),
                BT_SPB => ("simple packet block", 16),
                BT_PB => ("packet block", 32),
                _ => ("block", 12),
            };
            check_total_length(start, what, total, min)?;
            let known = matches!(block_type, BT_IDB | BT_EPB | BT_SPB | BT_PB);
            if !known {
                self.skip_block(start, total)?;
                continue;
            }
            // Packet blocks: the 20-byte fixed part apart, so that the packet data starts
            // the buffer and is handed out without moving it.
            if matches!(block_type, BT_EPB | BT_PB) {
                let mut head = [0u8; 20];
                let got = self.read_up_to(&mut head, start, what)?;
                if got < head.len() {
                    return Err(ReadError::Truncated {
                        offset: start,
                        what,
                        needed: total.into(),
                        available: self.offset - start,
                    });
                }
                self.fill(u64::from(total) - 28, start, u64::from(total), what)?;
                let rest_len = self.buf.len() - 4;
                let trailer = e.u32(&self.buf[rest_len..]);
                if trailer != total {
                    return Err(invalid(
                        start,
                        what,
                        format!("trailing total length {trailer} differs from the leading {total}"),
                    ));
                }
                self.buf.truncate(rest_len);
                return self.parse_packet_block(start, what, block_type, &head).map(Some);
            }
            // Body and trailing length.
            self.fill(u64::from(total) - 8, start, u64::from(total), what)?;
            let body_len = self.buf.len() - 4;
            let trailer = e.u32(&self.buf[body_len..]);
            if trailer != total {
                return Err(invalid(
                    start,
                    what,
                    format!("trailing total length {trailer} differs from the leading {total}"),
                ));
            }
            self.buf.truncate(body_len);
            match block_type {
                BT_IDB => self.parse_idb(start)?,
                _ => return self.parse_spb(start).map(Some),
            }
        }
    }

    /// Reads the rest of the first Section Header Block, whose type field has been read.
    fn read_first_shb(&mut self) -> Result<(), ReadError> {
        let mut len = [0u8; 4];
        let got = self.read_up_to(&mut len, 0, "section header block")?;
        if got < 4 {
            return Err(ReadError::Truncated {
                offset: 0,
                what: "section header block",
                needed: 12,
                available: 4 + got as u64,
            });
        }
        self.read_shb_after_type(0, &len)
    }

    /// Reads a Section Header Block whose type and (raw) length have been read: the byte
    /// order comes from the magic that follows, then the rest of the block.
    fn read_shb_after_type(&mut self, start: u64, raw_len: &[u8]) -> Result<(), ReadError> {
        const WHAT: &str = "section header block";
        let mut bom = [0u8; 4];
        let got = self.read_up_to(&mut bom, start, WHAT)?;
        if got < 4 {
            return Err(ReadError::Truncated {
                offset: start,
                what: WHAT,
                needed: 12,
                available: 8 + got as u64,
            });
        }
        let big_endian = if u32::from_le_bytes(bom) == BYTE_ORDER_MAGIC {
            false
        } else if u32::from_be_bytes(bom) == BYTE_ORDER_MAGIC {
            true
        } else {
            return Err(invalid(
                start,
                WHAT,
                format!("byte-order magic {bom:02x?} is neither 1a2b3c4d nor 4d3c2b1a"),
            ));
        };
        let e = Endian(big_endian);
        let total = e.u32(raw_len);
        check_total_length(start, WHAT, total, 28)?;
        // Everything after the byte-order magic, trailing length included.
        self.fill(u64::from(total) - 12, start, u64::from(total), WHAT)?;
        let body_len = self.buf.len() - 4;
        let trailer = e.u32(&self.buf[body_len..]);
        if trailer != total {
            return Err(invalid(
                start,
                WHAT,
                format!("trailing total length {trailer} differs from the leading {total}"),
            ));
        }
        let body = &self.buf[..body_len];
        let major = e.u16(&body[0..2]);
        let minor = e.u16(&body[2..4]);
        if major != 1 {
            return Err(invalid(
                start,
                WHAT,
                format!("unsupported pcapng version {major}.{minor} (expected 1.x)"),
            ));
        }
        let index = self.sections_seen;
        self.sections_seen = self.sections_seen.saturating_add(1);
        let mut section = Section {
            index,
            big_endian,
            version: (major, minor),
            ..Section::default()
        };
        // Skip the 8-byte section length.
        for_each_option(&body[12..], e, start, WHAT, |code, value| {
            match code {
                OPT_COMMENT => section.comments.push(lossy(value)),
                SHB_HARDWARE => section.hardware = Some(lossy(value)),
                SHB_OS => section.os = Some(lossy(value)),
                SHB_USERAPPL => section.application = Some(lossy(value)),
                _ => {}
            }
            Ok(())
        })?;
        self.section = section;
        self.interfaces.clear();
        self.names.clear();
        self.format = Format::Pcapng;
        Ok(())
    }

    fn parse_idb(&mut self, start: u64) -> Result<(), ReadError> {
        const WHAT: &str = "interface description block";
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(ReadError::TooLarge {
                offset: start,
                what: WHAT,
                field: "number of interfaces in the section",
                value: self.interfaces.len() as u64 + 1,
                limit: MAX_INTERFACES as u64,
            });
        }
        let e = Endian(self.section.big_endian);
        let body = &self.buf[..];
        let mut iface = Interface {
            linktype: e.u16(&body[0..2]),
            snaplen: e.u32(&body[4..8]),
            name: None,
            description: None,
            units_per_second: 1_000_000,
            ts_offset: 0,
        };
        for_each_option(&body[8..], e, start, WHAT, |code, value| {
            match code {
                IF_NAME => iface.name = Some(lossy_capped(value)),
                IF_DESCRIPTION => iface.description = Some(lossy_capped(value)),
                IF_TSRESOL => {
                    let &[resol] = value else {
                        return Err(format!("if_tsresol has length {}, not 1", value.len()));
                    };
                    iface.units_per_second = units_per_second(resol)
                        .ok_or_else(|| format!("if_tsresol 0x{resol:02x} is too fine to represent"))?;
                }
                IF_TSOFFSET => {
                    if value.len() != 8 {
                        return Err(format!("if_tsoffset has length {}, not 8", value.len()));
                    }
                    iface.ts_offset = e.u64(value) as i64;
                }
                _ => {}
            }
            Ok(())
        })?;
        self.names.push(iface.name.as_deref().map(Arc::from));
        self.interfaces.push(iface);
        Ok(())
    }

    /// An Enhanced Packet Block or (obsolete) Packet Block: `head` is its 20-byte fixed
    /// part, `self.buf` the rest of the body (packet data, padding, options).
    fn parse_packet_block(
        &mut self,
        start: u64,
        what: &'static str,
        block_type: u32,
        head: &[u8; 20],
    ) -> Result<Packet, ReadError> {
        let e = Endian(self.section.big_endian);
        let iface_id = if block_type == BT_EPB {
            e.u32(&head[0..4])
        } else {
            u32::from(e.u16(&head[0..2]))
        };
        let ts = (u64::from(e.u32(&head[4..8])) << 32) | u64::from(e.u32(&head[8..12]));
        let cap_len = e.u32(&head[12..16]);
        let orig_len = e.u32(&head[16..20]);
        // Offsets in the body (fixed part included), as the format counts them.
        let body_len = 20 + self.buf.len();
        let data_end = data_end(start, what, 20, cap_len, body_len)?;
        let options = padded(data_end).min(body_len) - 20..body_len - 20;
        self.finish_packet(start, what, iface_id, ts, 0..data_end - 20, orig_len, options)
    }

    fn parse_spb(&mut self, start: u64) -> Result<Packet, ReadError> {
        const WHAT: &str = "simple packet block";
        let e = Endian(self.section.big_endian);
        let Some(iface) = self.interfaces.first() else {
            return Err(invalid(start, WHAT, "no interface 0 described before it".into()));
        };
        let orig_len = e.u32(&self.buf[0..4]);
        // The captured length is implied: the packet, cut to the snaplen and to the block.
        let mut cap_len = (orig_len as usize).min(self.buf.len() - 4);
        if iface.snaplen != 0 {
            cap_len = cap_len.min(iface.snaplen as usize);
        }
        let (linktype, name) = (iface.linktype, self.names.first().cloned().flatten());
        self.buf.truncate(4 + cap_len);
        self.buf.drain(..4);
        Ok(Packet {
            interface: 0,
            interface_name: name,
            linktype,
            ts: (0, 0),
            data: std::mem::take(&mut self.buf),
            orig_len,
            direction: None,
            comment: None,
        })
    }

    /// Common end of EPB and PB: interface lookup, timestamp, options, data.
    #[allow(clippy::too_many_arguments)]
    fn finish_packet(
        &mut self,
        start: u64,
        what: &'static str,
        iface_id: u32,
        ts: u64,
        data: std::ops::Range<usize>,
        orig_len: u32,
        options: std::ops::Range<usize>,
    ) -> Result<Packet, ReadError> {
        let e = Endian(self.section.big_endian);
        let Some(iface) = self.interfaces.get(iface_id as usize) else {
            return Err(invalid(
                start,
                what,
                format!(
                    "refers to interface {iface_id}, but the section has described {}",
                    self.interfaces.len()
                ),
            ));
        };
        let mut direction = None;
        let mut comment: Option<String> = None;
        // epb_flags and pack_flags share code 2 and the direction bits.
        for_each_option(&self.buf[options], e, start, what, |code, value| {
            match code {
                OPT_COMMENT => {
                    let text = lossy(value);
                    comment = Some(match comment.take() {
                        Some(prev) => format!("{prev}\n{text}"),
                        None => text,
                    });
                }
                EPB_FLAGS if value.len() == 4 => direction = Direction::from_epb_flags(e.u32(value)),
                _ => {}
            }
            Ok(())
        })?;
        let ts = convert_ts(ts, iface.units_per_second, iface.ts_offset);
        let (linktype, name) = (
            iface.linktype,
            self.names.get(iface_id as usize).cloned().flatten(),
        );
        self.buf.truncate(data.end);
        self.buf.drain(..data.start);
        Ok(Packet {
            interface: iface_id,
            interface_name: name,
            linktype,
            ts,
            data: std::mem::take(&mut self.buf),
            orig_len,
            direction,
            comment,
        })
    }

    /// Skips the rest of a block of a type we do not interpret, without buffering it.
    fn skip_block(&mut self, start: u64, total: u32) -> Result<(), ReadError> {
        const WHAT: &str = "block";
        let body = u64::from(total) - 12;
        let skipped =
            io::copy(&mut (&mut self.r).take(body), &mut io::sink()).map_err(|source| ReadError::Io {
                offset: start,
                what: WHAT,
                source,
            })?;
        self.offset += skipped;
        if skipped < body {
            return Err(ReadError::Truncated {
                offset: start,
                what: WHAT,
                needed: total.into(),
                available: self.offset - start,
            });
        }
        let mut trailer = [0u8; 4];
        let got = self.read_up_to(&mut trailer, start, WHAT)?;
        if got < 4 {
            return Err(ReadError::Truncated {
                offset: start,
                what: WHAT,
                needed: total.into(),
                available: self.offset - start,
            });
        }
        let trailer = Endian(self.section.big_endian).u32(&trailer);
        if trailer != total {
            return Err(invalid(
                start,
                WHAT,
                format!("trailing total length {trailer} differs from the leading {total}"),
            ));
        }
        Ok(())
    }

    // ---- I/O helpers ----

    /// Reads until `buf` is full or the stream ends; returns how much was read.
    fn read_up_to(&mut self, buf: &mut [u8], start: u64, what: &'static str) -> Result<usize, ReadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: start,
                        what,
                        source,
                    })
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    /// Reads exactly `n` bytes into `self.buf` (growing it only as data arrives, so a
    /// length past the end of the stream costs no memory), or reports the block at `start`
    /// of `needed` bytes as truncated.
    fn fill(&mut self, n: u64, start: u64, needed: u64, what: &'static str) -> Result<(), ReadError> {
        self.buf.clear();
        self.buf.reserve(n.min(64 * 1024) as usize);
        let got = (&mut self.r)
            .take(n)
            .read_to_end(&mut self.buf)
            .map_err(|source| ReadError::Io {
                offset: start,
                what,
                source,
            })?;
        self.offset += got as u64;
        if (got as u64) < n {
            return Err(ReadError::Truncated {
                offset: start,
                what,
                needed,
                available: self.offset - start,
            });
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Packet, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_packet().transpose()
    }
}

/// Byte order of the current section.
#[derive(Debug, Clone, Copy)]
struct Endian(bool);

impl Endian {
    /// Callers pass slices of exactly the right length, sliced from buffers whose length
    /// was checked against the block's minimum; a short slice reads as zero-padded rather
    /// than panicking.
    fn u16(self, b: &[u8]) -> u16 {
        let a = zero_padded::<2>(b);
        if self.0 {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = zero_padded::<4>(b);
        if self.0 {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let a = zero_padded::<8>(b);
        if self.0 {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}

/// The first `N` bytes of `b`, zero-padded when `b` is shorter.
fn zero_padded<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = b.len().min(N);
    a[..n].copy_from_slice(&b[..n]);
    a
}

fn invalid(offset: u64, what: &'static str, reason: String) -> ReadError {
    ReadError::Invalid { offset, what, reason }
}

/// The checks every block's total length must pass before anything is read.
fn check_total_length(start: u64, what: &'static str, total: u32, min: u32) -> Result<(), ReadError> {
    if total < min {
        return Err(invalid(
            start,
            what,
            format!("total length {total} is smaller than the minimum {min}"),
        ));
    }
    if total & 3 != 0 {
        return Err(invalid(
            start,
            what,
            format!("total length {total} is not a multiple of 4"),
        ));
    }
    if total > MAX_BLOCK_LEN {
        return Err(ReadError::TooLarge {
            offset: start,
            what,
            field: "total length",
            value: total.into(),
            limit: MAX_BLOCK_LEN.into(),
        });
    }
    Ok(())
}

/// The end of a packet's data that starts at `data_start` in a body of `body_len` bytes.
fn data_end(
    start: u64,
    what: &'static str,
    data_start: usize,
    cap_len: u32,
    body_len: usize,
) -> Result<usize, ReadError> {
    let end = data_start.saturating_add(cap_len as usize);
    if end > body_len {
        return Err(invalid(
            start,
            what,
            format!(
                "captured length {cap_len} runs past the end of the block ({} bytes of data room)",
                body_len - data_start
            ),
        ));
    }
    Ok(end)
}

fn padded(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Walks an options area, calling `f(code, value)` for each option up to `opt_endofopt`.
/// A missing end-of-options is accepted, an option that runs past the block is not; an
/// error from `f` is reported as invalid for the block at `start`.
fn for_each_option(
    mut area: &[u8],
    e: Endian,
    start: u64,
    what: &'static str,
    mut f: impl FnMut(u16, &[u8]) -> Result<(), String>,
) -> Result<(), ReadError> {
    while area.len() >= 4 {
        let code = e.u16(&area[0..2]);
        let len = usize::from(e.u16(&area[2..4]));
        if code == OPT_ENDOFOPT {
            break;
        }
        let Some(value) = area.get(4..4 + len) else {
            return Err(invalid(
                start,
                what,
                format!(
                    "option {code} of length {len} runs past the end of the block ({} bytes left)",
                    area.len() - 4
                ),
            ));
        };
        f(code, value).map_err(|reason| invalid(start, what, reason))?;
        // Tolerate a last option without its padding.
        area = area.get(4 + padded(len)..).unwrap_or(&[]);
    }
    Ok(())
}

fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// Like [`lossy`], at most [`MAX_NAME_LEN`] bytes.
fn lossy_capped(value: &[u8]) -> String {
    let mut s = lossy(value);
    if s.len() > MAX_NAME_LEN {
        let mut end = MAX_NAME_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Timestamp units per second for an `if_tsresol` byte: 10^n, or 2^n when the top bit is
/// set. None when it does not fit 128 bits (10^39 and finer).
fn units_per_second(resol: u8) -> Option<u128> {
    let n = u32::from(resol & 0x7F);
    if resol & 0x80 != 0 {
        1u128.checked_shl(n)
    } else {
        10u128.checked_pow(n)
    }
}

/// Seconds and nanoseconds for a raw timestamp in `units` per second, plus `offset` seconds
/// (saturating at 0 and `u64::MAX`). Sub-nanosecond digits are truncated.
fn convert_ts(ts: u64, units: u128, offset: i64) -> (u64, u32) {
    let units = units.max(1);
    let ts = u128::from(ts);
    let secs = ts / units;
    let mut frac = ts % units;
    let mut scale = units;
    // frac * 1e9 must not overflow: shift both down (losing only sub-nanosecond precision)
    // for resolutions above 2^98 units per second.
    while scale > u128::MAX / 1_000_000_000 {
        scale >>= 1;
        frac >>= 1;
    }
    let nanos = (frac * 1_000_000_000 / scale) as u32;
    let secs = u64::try_from(secs).unwrap_or(u64::MAX);
    let secs = if offset >= 0 {
        secs.saturating_add(offset as u64)
    } else {
        secs.saturating_sub(offset.unsigned_abs())
    };
    (secs, nanos.min(999_999_999))
}

/// Reads everything in `data` as a capture and touches every packet, ignoring the outcome:
/// the entry point of the fuzz target. It must never panic, loop forever or allocate more
/// than the input justifies, whatever the bytes.
pub fn fuzz_read(data: &[u8]) {
    let Ok(mut reader) = Reader::new(data) else {
        return;
    };
    let _ = reader.comments().len();
    while let Ok(Some(packet)) = reader.next_packet() {
        let _ = packet.time();
        let _ = ip_payload(packet.linktype, &packet.data);
    }
}

/// EtherTypes that matter for reaching the IP packet.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const ETH_P_QINQ: u16 = 0x9100;

/// The IP packet (IPv4 or IPv6) inside a frame of the given link type, or None if the frame
/// carries something else or the link type is not one of: raw IP (101, 228, 229, and DLT 12
/// / 14 as some writers use them), Ethernet with any number of 802.1Q / 802.1ad tags (1),
/// Linux cooked SLL (113) and SLL2 (276), BSD / OpenBSD loopback (0, 108).
///
/// Trailing bytes beyond the IP header's own length (Ethernet padding of short frames) are
/// cut off; a packet shorter than its header says (a truncated capture) is returned as is.
pub fn ip_payload(linktype: u16, data: &[u8]) -> Option<&[u8]> {
    let ip = match linktype {
        linktype::RAW | 12 | 14 => data,
        linktype::IPV4 => data.first().filter(|&&b| b >> 4 == 4).map(|_| data)?,
        linktype::IPV6 => data.first().filter(|&&b| b >> 4 == 6).map(|_| data)?,
        linktype::ETHERNET => {
            let ethertype = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
            return strip_vlan(ethertype, data.get(14..)?);
        }
        linktype::LINUX_SLL => {
            let proto = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            return strip_vlan(proto, data.get(16..)?);
        }
        linktype::LINUX_SLL2 => {
            let proto = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            return strip_vlan(proto, data.get(20..)?);
        }
        linktype::NULL | linktype::LOOP => {
            let fam: [u8; 4] = data.get(..4)?.try_into().ok()?;
            let families = if linktype == linktype::LOOP {
                [u32::from_be_bytes(fam), u32::from_be_bytes(fam)]
            } else {
                // DLT_NULL is in the writer's byte order, which the file does not record.
                [u32::from_le_bytes(fam), u32::from_be_bytes(fam)]
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD),
            // 28 (FreeBSD), 30 (macOS).
            if !families.iter().any(|f| matches!(f, 2 | 10 | 24 | 28 | 30)) {
                return None;
            }
            data.get(4..)?
        }
        _ => return None,
    };
    trim_ip(ip)
}

/// Skips VLAN tags, then accepts IPv4 and IPv6.
fn strip_vlan(mut ethertype: u16, mut rest: &[u8]) -> Option<&[u8]> {
    while matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ) {
        ethertype = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]);
        rest = rest.get(4..)?;
    }
    match ethertype {
        ETH_P_IP | ETH_P_IPV6 => trim_ip(rest),
        _ => None,
    }
}

/// Checks the version nibble and cuts trailing padding using the header's length field.
fn trim_ip(ip: &[u8]) -> Option<&[u8]> {
    let len = match ip.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
        6 => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            // A payload length of 0 is a jumbogram (or nothing): keep everything.
            if payload == 0 {
                ip.len()
            } else {
                40 + payload
            }
        }
        _ => return None,
    };
    Some(if len >= 20 && len < ip.len() {
        &ip[..len]
    } else {
        ip
    })
}
