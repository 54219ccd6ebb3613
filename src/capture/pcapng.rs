//! The pcapng writer and its thread-safe front.
//!
//! Every block is built in memory, handed to the underlying writer in one `write_all` and
//! flushed at once: a lab run that is killed (even by SIGKILL) leaves a file that ends on a
//! block boundary, or at worst with one partial block that readers report as truncated after
//! all the whole packets before it.
//!
//! The file is always written little-endian, whatever the host, so the same run produces the
//! same bytes everywhere (golden files can be compared byte for byte). Timestamps are written
//! with `if_tsresol = 9` (nanoseconds), the resolution the lab's clocks have.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Block type of the Section Header Block.
pub(crate) const BT_SHB: u32 = 0x0A0D_0D0A;
/// Block type of the Interface Description Block.
pub(crate) const BT_IDB: u32 = 0x0000_0001;
/// Block type of the obsolete Packet Block.
pub(crate) const BT_PB: u32 = 0x0000_0002;
/// Block type of the Simple Packet Block.
pub(crate) const BT_SPB: u32 = 0x0000_0003;
/// Block type of the Enhanced Packet Block.
pub(crate) const BT_EPB: u32 = 0x0000_0006;
/// The byte-order magic of a section header, as written in the section's byte order.
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Option codes (pcapng spec, section 3.5 and the per-block lists).
pub(crate) const OPT_ENDOFOPT: u16 = 0;
pub(crate) const OPT_COMMENT: u16 = 1;
pub(crate) const SHB_HARDWARE: u16 = 2;
pub(crate) const SHB_OS: u16 = 3;
pub(crate) const SHB_USERAPPL: u16 = 4;
pub(crate) const IF_NAME: u16 = 2;
pub(crate) const IF_DESCRIPTION: u16 = 3;
pub(crate) const IF_TSRESOL: u16 = 9;
pub(crate) const IF_TSOFFSET: u16 = 14;
pub(crate) const EPB_FLAGS: u16 = 2;

/// The snapshot length [`CaptureFile::interface_id`] registers interfaces with: libpcap's
/// `MAXIMUM_SNAPLEN`, larger than any packet a TUN can carry, and a value every tool accepts.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// The direction of a packet relative to the interface it was recorded on (pcapng
/// `epb_flags` bits 0-1).
///
/// On a host's interface, *outbound* means the host sent it out of that interface and
/// *inbound* that it arrived there; on a fabric capture point `peer-a/eth0` the same holds
/// from `peer-a`'s side of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// The two low bits of `epb_flags` for this direction.
    pub fn epb_flag_bits(self) -> u32 {
        match self {
            Direction::Inbound => 0b01,
            Direction::Outbound => 0b10,
        }
    }

    /// The direction encoded in `epb_flags`, if any (0 = not available, 3 is invalid).
    pub fn from_epb_flags(flags: u32) -> Option<Direction> {
        match flags & 0b11 {
            0b01 => Some(Direction::Inbound),
            0b10 => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// What the Section Header Block says about the capture.
///
/// The comments are the place for what a reader of the file needs to make sense of it: the
/// run id, the topology's name, which node plays which role. tshark shows them with
/// `capinfos` and in "Capture File Properties".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShbInfo {
    /// `shb_hardware`, e.g. the machine's architecture; omitted when empty.
    pub hardware: String,
    /// `shb_os`, e.g. `Linux 6.8.0`; omitted when empty.
    pub os: String,
    /// `shb_userappl`, e.g. `bedlab 0.1.0`; omitted when empty.
    pub application: String,
    /// One `opt_comment` each, in order.
    pub comments: Vec<String>,
}

impl ShbInfo {
    /// A header naming bedlab (with its version) as the application and the running
    /// kernel and architecture as OS and hardware, with the given comments.
    pub fn bedlab(comments: Vec<String>) -> ShbInfo {
        ShbInfo {
            hardware: std::env::consts::ARCH.to_string(),
            os: os_description(),
            application: format!("bedlab {}", env!("CARGO_PKG_VERSION")),
            comments,
        }
    }
}

/// `Linux <release>` (the kernel release from /proc), or just the OS family if that fails.
fn os_description() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => format!("Linux {}", release.trim()),
        Err(_) => std::env::consts::OS.to_string(),
    }
}

/// One interface the writer has described: kept so packets can be checked against it.
#[derive(Debug, Clone)]
struct WrittenInterface {
    snaplen: u32,
}

/// A pcapng writer: one section, interfaces added at any time, enhanced packet blocks.
///
/// Each call writes whole blocks and flushes the underlying writer, so wrap a `File`
/// directly (a `BufWriter` would only add a copy). After a write error the writer refuses
/// further writes: the file may end in a partial block, and anything appended after it would
/// be unreadable.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
    interfaces: Vec<WrittenInterface>,
    broken: bool,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block and returns the writer.
    pub fn new(w: W, shb: ShbInfo) -> io::Result<PcapngWriter<W>> {
        let mut this = PcapngWriter {
            w,
            buf: Vec::with_capacity(2048),
            interfaces: Vec::new(),
            broken: false,
        };
        let mut b = BlockBuilder::start(&mut this.buf, BT_SHB);
        b.u32(BYTE_ORDER_MAGIC);
        b.u16(1); // major version
        b.u16(0); // minor version
        b.u64(u64::MAX); // section length: not specified (-1)
        for comment in &shb.comments {
            b.option_str(OPT_COMMENT, comment);
        }
        if !shb.hardware.is_empty() {
            b.option_str(SHB_HARDWARE, &shb.hardware);
        }
        if !shb.os.is_empty() {
            b.option_str(SHB_OS, &shb.os);
        }
        if !shb.application.is_empty() {
            b.option_str(SHB_USERAPPL, &shb.application);
        }
        b.end_options();
        b.finish();
        this.emit()?;
        Ok(this)
    }

    /// Describes a new interface and returns its id (0, 1, 2, ... in order of addition).
    ///
    /// Interfaces may be added at any point, also after packets: pcapng only requires that
    /// an interface is described before the first packet that refers to it. A `snaplen` of 0
    /// means "no limit".
    pub fn add_interface(
        &mut self,
        name: &str,
        description: Option<&str>,
        linktype: u16,
        snaplen: u32,
    ) -> io::Result<u32> {
        let id = u32::try_from(self.interfaces.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many interfaces"))?;
        let mut b = BlockBuilder::start(&mut self.buf, BT_IDB);
        b.u16(linktype);
        b.u16(0); // reserved
        b.u32(snaplen);
        b.option_str(IF_NAME, name);
        if let Some(d) = description {
            b.option_str(IF_DESCRIPTION, d);
        }
        b.option(IF_TSRESOL, &[9]);
        b.end_options();
        b.finish();
        self.emit()?;
        self.interfaces.push(WrittenInterface { snaplen });
        Ok(id)
    }

    /// Writes one Enhanced Packet Block.
    ///
    /// `orig_len` is the packet's length on the wire; it must be at least `data.len()`
    /// (`data` is what was captured of it) and `data` may not exceed the interface's
    /// snaplen, or readers would reject the file. `ts` must not be before 1970. A comment
    /// longer than 65535 bytes is cut at a character boundary (the option length is 16 bits).
    pub fn write_packet(
        &mut self,
        iface: u32,
        ts: SystemTime,
        data: &[u8],
        orig_len: u32,
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let interface = self
            .interfaces
            .get(iface as usize)
            .ok_or_else(|| invalid(format!("write_packet: interface {iface} was never added")))?;
        let cap_len = u32::try_from(data.len())
            .map_err(|_| invalid(format!("write_packet: packet of {} bytes", data.len())))?;
        if cap_len > orig_len {
            return Err(invalid(format!(
                "write_packet: captured length {cap_len} exceeds original length {orig_len}"
            )));
        }
        if interface.snaplen != 0 && cap_len > interface.snaplen {
            return Err(invalid(format!(
                "write_packet: {cap_len} bytes exceed the snaplen {} of interface {iface}",
                interface.snaplen
            )));
        }
        let since_epoch = ts
            .duration_since(UNIX_EPOCH)
            .map_err(|_| invalid("write_packet: timestamp before 1970".to_string()))?;
        let nanos = u64::try_from(since_epoch.as_nanos())
            .map_err(|_| invalid("write_packet: timestamp after 2554".to_string()))?;

        let mut b = BlockBuilder::start(&mut self.buf, BT_EPB);
        b.u32(iface);
        b.u32((nanos >> 32) as u32);
        b.u32(nanos as u32);
        b.u32(cap_len);
        b.u32(orig_len);
        b.bytes_padded(data);
        if let Some(c) = comment {
            b.option_str(OPT_COMMENT, c);
        }
        if let Some(d) = direction {
            b.option(EPB_FLAGS, &d.epb_flag_bits().to_le_bytes());
        }
        if comment.is_some() || direction.is_some() {
            b.end_options();
        }
        b.finish();
        self.emit()
    }

    /// How many interfaces have been described so far.
    pub fn interface_count(&self) -> u32 {
        self.interfaces.len() as u32
    }

    /// The underlying writer (for example to `sync_all` a file at the end of a run).
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// Gives the underlying writer back.
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Writes and flushes the block in `buf`, or refuses if an earlier write failed.
    fn emit(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "pcapng writer: an earlier write failed, the file may end in a partial block",
            ));
        }
        let result = self.w.write_all(&self.buf).and_then(|()| self.w.flush());
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

/// Builds one block in a reusable buffer: header with a placeholder length, body, options,
/// then both total-length fields patched in by [`BlockBuilder::finish`].
struct BlockBuilder<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> BlockBuilder<'a> {
    fn start(buf: &'a mut Vec<u8>, block_type: u32) -> BlockBuilder<'a> {
        buf.clear();
        buf.extend_from_slice(&block_type.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        BlockBuilder { buf }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    fn bytes_padded(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// An option whose value is at most 65535 bytes (longer values are cut).
    fn option(&mut self, code: u16, value: &[u8]) {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.u16(code);
        self.u16(value.len() as u16);
        self.bytes_padded(value);
    }

    /// A UTF-8 option, cut at a character boundary if it is longer than 65535 bytes.
    fn option_str(&mut self, code: u16, value: &str) {
        let mut end = value.len().min(usize::from(u16::MAX));
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        self.option(code, &value.as_bytes()[..end]);
    }

    fn end_options(&mut self) {
        self.u16(OPT_ENDOFOPT);
        self.u16(0);
    }

    /// Appends the trailing length and patches the leading one.
    fn finish(self) {
        let total = (self.buf.len() + 4) as u32;
        self.buf.extend_from_slice(&total.to_le_bytes());
        self.buf[4..8].copy_from_slice(&total.to_le_bytes());
    }
}

/// A pcapng file shared by the threads of a lab run: the fabric's loop, the host captures.
///
/// Interfaces are registered by name on first use ([`CaptureFile::interface_id`]), so each
/// capture point (`peer-a/eth0`, `nat-a/wan`, `peer-a/6bed4`) becomes one interface of the
/// file no matter which thread sees it first. Cloning is cheap and shares the file.
///
/// A mutex rather than a writer thread: a packet is one small `write(2)` into the page
/// cache, errors come back to the caller that caused them, and nothing is buffered that a
/// killed run could lose.
#[derive(Debug, Clone)]
pub struct CaptureFile {
    inner: Arc<Mutex<CaptureInner>>,
}

#[derive(Debug)]
struct CaptureInner {
    writer: PcapngWriter<Box<dyn WriteDebug>>,
    ids: HashMap<(String, u16), u32>,
}

/// `Write + Send` with `Debug`, so the boxed writer keeps `CaptureFile` debuggable.
pub trait WriteDebug: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> WriteDebug for T {}

impl CaptureFile {
    /// Creates (or truncates) the file at `path` and writes the section header.
    pub fn create(path: &Path, shb: ShbInfo) -> io::Result<CaptureFile> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", path.display())))?;
        CaptureFile::new(Box::new(file), shb)
    }

    /// Wraps any writer (a file, or a `Vec<u8>` in tests) and writes the section header.
    pub fn new(w: Box<dyn WriteDebug>, shb: ShbInfo) -> io::Result<CaptureFile> {
        let writer = PcapngWriter::new(w, shb)?;
        Ok(CaptureFile {
            inner: Arc::new(Mutex::new(CaptureInner {
                writer,
                ids: HashMap::new(),
            })),
        })
    }

    /// The id of the interface `name` with link type `linktype`, describing it in the file
    /// the first time it is asked for (with [`DEFAULT_SNAPLEN`] and no description).
    ///
    /// The key is the pair: the same name with another link type is another interface.
    pub fn interface_id(&self, name: &str, linktype: u16) -> io::Result<u32> {
        self.register(name, None, linktype, DEFAULT_SNAPLEN)
    }

    /// Like [`CaptureFile::interface_id`], with a description and snaplen used if the
    /// interface is new (an existing interface is returned unchanged).
    pub fn register(
        &self,
        name: &str,
        description: Option<&str>,
        linktype: u16,
        snaplen: u32,
    ) -> io::Result<u32> {
        let mut inner = self.lock();
        if let Some(&id) = inner.ids.get(&(name.to_string(), linktype)) {
            return Ok(id);
        }
        let id = inner.writer.add_interface(name, description, linktype, snaplen)?;
        inner.ids.insert((name.to_string(), linktype), id);
        Ok(id)
    }

    /// Writes one packet on an interface id from [`CaptureFile::interface_id`]; see
    /// [`PcapngWriter::write_packet`].
    pub fn write_packet(
        &self,
        iface: u32,
        ts: SystemTime,
        data: &[u8],
        orig_len: u32,
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        self.lock()
            .writer
            .write_packet(iface, ts, data, orig_len, direction, comment)
    }

    /// Registers `name` if needed and writes a whole packet (`orig_len` = its length) on it,
    /// under one lock.
    pub fn record(
        &self,
        name: &str,
        linktype: u16,
        ts: SystemTime,
        data: &[u8],
        direction: Option<Direction>,
    ) -> io::Result<()> {
        let orig_len = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let mut inner = self.lock();
        let id = match inner.ids.get(&(name.to_string(), linktype)) {
            Some(&id) => id,
            None => {
                let id = inner
                    .writer
                    .add_interface(name, None, linktype, DEFAULT_SNAPLEN)?;
                inner.ids.insert((name.to_string(), linktype), id);
                id
            }
        };
        inner.writer.write_packet(id, ts, data, orig_len, direction, None)
    }

    /// Locks the writer. A panic in another thread while it held the lock cannot have left
    /// a half-built block behind in a way that matters (blocks are built, then written in
    /// one call, and a failed write disables the writer), so a poisoned lock is taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, CaptureInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
