//! The conformance decoder: from any capture the reader opens to small per-datagram
//! summaries of 6bed4 traffic, written independently of the `sixbed4` crate.
//!
//! It reads the spec, not the implementation: outer IPv4/UDP and the inner IPv6 header go
//! through `etherparse`, while the address layouts ([`addr`]) and the ND messages and options
//! ([`inner`]) are read here from the spec text. Checks built on it therefore cannot share a
//! misreading with the code they judge.
//!
//! The decoder is streaming: [`Decoder::push`] takes one packet at a time and keeps only a
//! [`Decoded`] summary (a few hundred bytes) per candidate datagram; [`Decoder::finish`]
//! decides which flows are 6bed4, learns the router, groups sightings of one packet at
//! several capture points and fills the derived fields.
//!
//! Finding 6bed4 needs no configuration: UDP on a profile port (25790, 25788) or on
//! [`DecodeOptions::port`], or any UDP flow carrying an IPv6 packet whose source or
//! destination names one of the flow's outer endpoints (in layout C or V, or loosely in
//! layout C's positions, so that mis-encoded traffic is found and then reported rather than
//! ignored). A version nibble alone is never enough.

pub mod addr;
pub mod inner;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use etherparse::{Ipv4HeaderSlice, UdpHeaderSlice};

use crate::capture::{linktype, Direction, Packet, ReadError, Reader};

pub use crate::conformance::checks::fuzz_decode;
pub use addr::Profile;

/// An outer IPv4:port.
pub type Endpoint = SocketAddrV4;

/// UDP datagrams on unknown ports whose payload looks like neither IPv6 nor a keepalive are
/// kept only up to this many (they matter only if their flow later proves to be 6bed4, e.g.
/// garbage injected at a peer's socket); the cap bounds memory on large foreign captures.
pub const MAX_UNKNOWN_KEPT: usize = 200_000;

/// Sightings of one packet at several capture points are at most this far apart.
const GROUP_WINDOW_NS: u64 = 3_000_000_000;

/// What the caller tells the decoder.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// The capture's name as evidence shows it (file name relative to the run directory).
    pub name: String,
    /// An extra router port (`--port`), besides 25790 and 25788.
    pub port: Option<u16>,
    /// Force a profile for every datagram; otherwise each datagram's profile comes from its
    /// port or address layout, defaulting to `current`.
    pub profile: Option<Profile>,
}

impl DecodeOptions {
    /// Whether `port` is a router's: a profile port (25790, 25788) or `--port`.
    pub fn is_router_port(&self, port: u16) -> bool {
        Profile::from_port(port).is_some() || self.port == Some(port)
    }
}

/// The outer IPv4/UDP of a tunnelled datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub ttl: u8,
    pub df: bool,
    pub ip_id: u16,
    /// The UDP payload length (from the UDP header; 0 for a keepalive).
    pub udp_payload_len: usize,
    /// False when the capture holds less than the datagram (snaplen, IPv4 fragment).
    pub complete: bool,
    /// A first IPv4 fragment (MF set).
    pub fragment: bool,
}

/// The fixed IPv6 header of an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerHeader {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub next_header: u8,
    pub payload_len: u16,
}

/// One ND option as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdOption {
    pub kind: u8,
    /// In units of 8 bytes, as on the wire.
    pub len: u8,
    /// Source/Target Link-Layer Address (types 1 and 2 of length 1).
    pub link_layer: Option<[u8; 6]>,
    /// Prefix Information (type 3 of length 4).
    pub pio: Option<Pio>,
}

/// A Prefix Information option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pio {
    pub len: u8,
    pub on_link: bool,
    pub autonomous: bool,
    pub valid: u32,
    pub preferred: u32,
    pub prefix: Ipv6Addr,
}

/// The three lifetimes of an RA's fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaLifetimes {
    /// Seconds.
    pub router: u16,
    pub reachable_ms: u32,
    pub retrans_ms: u32,
}

/// The ICMPv6 header and the validity facts ND checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpInfo {
    pub ty: u8,
    pub code: u8,
    pub checksum_ok: bool,
    /// The ICMPv6 message's length (IPv6 payload length).
    pub len: usize,
    pub options: Vec<NdOption>,
    pub zero_len_option: bool,
    pub option_overrun: bool,
}

/// What a datagram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Rs {
        slla: Option<[u8; 6]>,
    },
    Ra {
        /// Boxed, like `lifetimes`: inline they made every record (nearly all data) 16
        /// bytes bigger.
        prefixes: Box<Vec<Pio>>,
        lifetimes: Box<RaLifetimes>,
        /// The inner destination.
        dst: Ipv6Addr,
        cur_hop_limit: u8,
        flags: u8,
        slla: Option<[u8; 6]>,
    },
    Ns {
        target: Ipv6Addr,
        slla: Option<[u8; 6]>,
    },
    Na {
        target: Ipv6Addr,
        /// The flags byte: 0x80 Router, 0x40 Solicited, 0x20 Override.
        flags: u8,
        tlla: Option<[u8; 6]>,
    },
    /// An empty UDP payload.
    Keepalive,
    Data {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        next_header: u8,
        icmp_type: Option<u8>,
    },
    /// An ICMPv6 error inside the tunnel (`v6`), or an ICMPv4 error about a 6bed4 datagram
    /// (`about`: the quoted datagram's source and destination).
    IcmpError {
        v6: bool,
        icmp_type: u8,
        code: u8,
        about: Option<(Endpoint, Endpoint)>,
    },
    Malformed {
        why: String,
    },
}

impl Kind {
    /// A short label: `RS`, `RA`, `NS`, `NA`, `KA`, `data`, `ICMP`, `malformed`.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Rs { .. } => "RS",
            Kind::Ra { .. } => "RA",
            Kind::Ns { .. } => "NS",
            Kind::Na { .. } => "NA",
            Kind::Keepalive => "KA",
            Kind::Data { .. } => "data",
            Kind::IcmpError { .. } => "ICMP",
            Kind::Malformed { .. } => "malformed",
        }
    }
}

/// A record's issues: nearly every record has none, so they live behind one pointer
/// (8 bytes a record, not a 24-byte `Vec`), allocated on the first. Reads as a slice.
#[derive(Clone, Default, PartialEq, Eq)]
// A boxed `Vec` on purpose: one thin pointer in every record, where a `Vec` is three
// words and a boxed slice two.
#[allow(clippy::box_collection)]
pub struct Issues(Option<Box<Vec<String>>>);

impl Issues {
    pub fn push(&mut self, issue: String) {
        self.0.get_or_insert_with(Box::default).push(issue);
    }
}

impl std::ops::Deref for Issues {
    type Target = [String];
    fn deref(&self) -> &[String] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl Extend<String> for Issues {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        for i in iter {
            self.push(i);
        }
    }
}

impl From<Vec<String>> for Issues {
    fn from(v: Vec<String>) -> Issues {
        Issues((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl std::fmt::Debug for Issues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where a record was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// A UDP/IPv4 datagram of the tunnel (or an ICMPv4 error about one).
    Tunnel,
    /// A raw IPv6 packet on a 6bed4 TUN: what went into or came out of the tunnel.
    Inner,
}

/// How data travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    ViaRouter,
    Direct,
}

impl PathKind {
    /// `via-router` / `direct`, as scenarios and diagrams spell them.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::ViaRouter => "via-router",
            PathKind::Direct => "direct",
        }
    }
}

/// One sighting of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// 1-based, as Wireshark numbers frames.
    pub frame: u64,
    /// The capture point (`peer-a/eth0`), when the file names it: shared with the reader's
    /// interface table, not a copy per record.
    pub interface: Option<Arc<str>>,
    pub direction: Option<Direction>,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub layer: Layer,
    /// None for [`Layer::Inner`].
    pub outer: Option<Outer>,
    pub inner: Option<InnerHeader>,
    /// Boxed: only ND and ICMPv6 messages have one, and inline it would make every record
    /// of a large capture 32 bytes bigger.
    pub icmp: Option<Box<IcmpInfo>>,
    pub kind: Kind,
    /// Bytes past the inner packet's own length (a datagram is under 64 KiB).
    pub trailing: u32,
    pub towards_router: bool,
    pub from_router: bool,
    /// For data, NS and NA: through the router or straight between peers.
    pub path: Option<PathKind>,
    pub profile: Profile,
    /// Everything wrong with this datagram, in words.
    pub issues: Issues,
    /// Index of the packet this is a sighting of (same value at every capture point).
    pub packet: usize,
    /// 0 for the sender's side; `sightings - 1` for the receiver's.
    pub sighting: u16,
    pub sightings: u16,
    /// Hash of the UDP payload, IP id and length: equal at every capture point.
    pub fingerprint: u64,
    /// Hash of the inner packet with the hop limit zeroed.
    pub inner_key: Option<u64>,
    /// Kernel chatter on a TUN (MLD, the kernel's own RS, DAD) that traces leave out.
    pub noise: bool,
}

impl Decoded {
    /// The node part of the interface name (`peer-a` of `peer-a/eth0`).
    pub fn node(&self) -> Option<&str> {
        let i = self.interface.as_deref()?;
        i.split_once('/').map(|(n, _)| n)
    }
    pub fn src(&self) -> Option<Endpoint> {
        self.outer.as_ref().map(|o| o.src)
    }
    pub fn dst(&self) -> Option<Endpoint> {
        self.outer.as_ref().map(|o| o.dst)
    }
    /// The sender's side of the packet (its first sighting).
    pub fn is_first(&self) -> bool {
        self.sighting == 0
    }
    /// The receiver's side of the packet (its last sighting).
    pub fn is_last(&self) -> bool {
        self.sighting.saturating_add(1) >= self.sightings
    }
    /// Whether this ND or data message is one of the tunnel's (not a TUN copy).
    pub fn is_tunnel(&self) -> bool {
        self.layer == Layer::Tunnel
    }
    /// The ICMPv6 type, if any.
    pub fn icmp_type(&self) -> Option<u8> {
        self.icmp.as_ref().map(|i| i.ty)
    }
}

/// Counts that explain what the decoder kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub frames: u64,
    pub non_ip: u64,
    pub udp: u64,
    pub tunnel: u64,
    pub inner: u64,
    /// Native IPv6 on a non-TUN link (e.g. a veth's own link-local chatter).
    pub native_ipv6: u64,
    pub fragments_skipped: u64,
    pub unknown_dropped: u64,
}

/// A decoded capture.
#[derive(Debug, Clone, Default)]
pub struct DecodedCapture {
    /// The capture's name for evidence.
    pub name: String,
    /// Tunnel datagrams and TUN packets, in time order (ties in frame order).
    pub records: Vec<Decoded>,
    /// Router endpoints: UDP profile ports, the override port, else RS destinations.
    pub routers: BTreeSet<Endpoint>,
    /// The /64s that are 6bed4 (advertised, or named by consistent addresses).
    pub prefixes: BTreeSet<Ipv6Addr>,
    /// Number of distinct packets (groups of sightings).
    pub packets: usize,
    pub stats: DecodeStats,
    /// The reader's error, if the capture did not end cleanly (packets before it are kept).
    pub read_error: Option<String>,
    /// Set when the capture was streamed: `records` then holds only the control packets
    /// and the few data records the peers were found from; these are the facts of all.
    pub streamed: Option<Box<Streamed>>,
}

/// What a streamed capture's kept records cannot say about all of its records.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    /// The first and last retained record's time.
    pub span: (u64, u64),
    /// Every retained tunnel record's outer destination (where the view looks for the
    /// sockets RAs were delivered to).
    pub(crate) destinations: FastSet<Endpoint>,
}

impl DecodedCapture {
    /// Tunnel records that are the sender's side of their packet: one per packet.
    pub fn sent(&self) -> impl Iterator<Item = &Decoded> {
        self.records.iter().filter(|r| r.is_tunnel() && r.is_first())
    }
    /// Tunnel records that are the receiver's side of their packet: one per packet.
    pub fn received(&self) -> impl Iterator<Item = &Decoded> {
        self.records.iter().filter(|r| r.is_tunnel() && r.is_last())
    }
    /// Interfaces that appear, in first-seen order.
    pub fn interfaces(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for r in &self.records {
            if let Some(i) = &r.interface {
                if !seen.iter().any(|s: &String| **s == **i) {
                    seen.push(i.to_string());
                }
            }
        }
        seen
    }
}

/// A hasher for keys that are already well mixed (fingerprints, inner keys) or small
/// (endpoints): a multiply and a rotate per word instead of SipHash, which cost a few
/// percent of a large capture's check. Only for maps whose iteration order no output
/// depends on.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Eight bytes a round (an IPv6 address is two): byte by byte, the addresses in
        // the streaming pass's per-record keys cost a round each.
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(a));
        }
        for &b in words.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
/// `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;

/// The streaming decoder.
#[derive(Debug)]
pub struct Decoder {
    opts: DecodeOptions,
    /// One growing `Vec`: its doubling capacity is address space, not memory (the pages
    /// past its length are never touched), and a large block grows by `mremap` without a
    /// copy. Collecting chunks and moving them into one `Vec` at the end (as before) cost
    /// ~0.2 s per GB of capture for the move alone.
    records: Vec<Decoded>,
    unknown_kept: usize,
    stats: DecodeStats,
    /// Set in a worker of [`decode_reader`]'s parallel path: records go to `deferred`,
    /// each with whether [`MAX_UNKNOWN_KEPT`] applies to it, which only the merge (in frame
    /// order) can decide.
    defer: bool,
    deferred: Vec<(Decoded, bool)>,
    /// How the streaming passes lighten the work; default: none.
    mode: StreamMode,
    /// In a streaming pass, the records made (each with whether [`MAX_UNKNOWN_KEPT`]
    /// applies to it), already shared: moved once, on the thread that made them.
    shared: Vec<(Arc<Decoded>, bool)>,
}

/// Fills in a record's derived fields on a decoding thread.
pub type RecordFinish = Arc<dyn Fn(&mut Decoded) + Send + Sync>;

/// What a streaming pass over a file needs of the decoder (see [`stream_records`]).
#[derive(Clone, Default)]
pub struct StreamMode {
    /// Skip the inner key of plain data (no ICMPv6): a hash over the packet, ~0.25 s per
    /// GB. Only relay look-ups (the second pass) read data's inner keys. (No streaming
    /// pass computes fingerprints: only grouping sightings of several capture points,
    /// never streamed, reads them.)
    pub light: bool,
    /// Applied to every record on the decoding threads (the second pass's `derive`).
    pub finish: Option<RecordFinish>,
    /// Set by [`stream_records`]: records go out shared, not kept.
    pub(crate) shared: bool,
}

impl std::fmt::Debug for StreamMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMode")
            .field("light", &self.light)
            .field("finish", &self.finish.is_some())
            .finish()
    }
}

/// Packets per batch handed to a decoding thread.
const BATCH: usize = 1024;

/// Reads a capture file and decodes it. Only a file that cannot be opened or has no valid
/// header is an error; a read error later ends the packets and is kept in `read_error`.
pub fn decode_file(path: &Path, mut opts: DecodeOptions) -> Result<DecodedCapture, ReadError> {
    if opts.name.is_empty() {
        opts.name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    Ok(decode_reader(Reader::open(path)?, opts))
}

/// Decodes a capture held in memory.
pub fn decode_bytes(data: &[u8], opts: DecodeOptions) -> Result<DecodedCapture, ReadError> {
    Ok(decode_reader(Reader::new(data)?, opts))
}

/// Decodes everything a reader yields.
///
/// With two cores, decoding runs on two threads while this one reads: batches of packets
/// go to the threads in turn and come back in order, so frames, records and the
/// [`MAX_UNKNOWN_KEPT`] cap come out exactly as one thread would make them.
pub fn decode_reader<R: Read>(reader: Reader<R>, opts: DecodeOptions) -> DecodedCapture {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(2);
    decode_reader_threads(reader, opts, threads)
}

/// [`decode_reader`] on `threads` decoding threads (1: all on this one).
pub(crate) fn decode_reader_threads<R: Read>(
    reader: Reader<R>,
    opts: DecodeOptions,
    threads: usize,
) -> DecodedCapture {
    let mut d = Decoder::new(opts.clone());
    let error = run_decoder(reader, &mut d, &opts, threads, None);
    let mut c = d.finish();
    c.read_error = error;
    c
}

/// Decodes everything a reader yields and hands each record to `sink`, in frame order,
/// as soon as it is made, keeping none: the streaming analysis's passes over a file.
/// Reading, decoding and merging run on threads of their own, so that `sink` (on this
/// thread) has a core's worth of time for what it does with the records. Returns the
/// decoder's counts and the read error, if any. Records are raw unless `mode.finish`
/// fills in the fields [`Decoder::finish`] derives from the whole capture.
pub(crate) fn stream_records<R: Read + Send>(
    reader: Reader<R>,
    opts: &DecodeOptions,
    mut mode: StreamMode,
    sink: &mut dyn FnMut(Arc<Decoded>),
) -> (DecodeStats, Option<String>) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(2);
    mode.shared = true;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Arc<Decoded>>>(8);
        let decoding = s.spawn(move || {
            let mut d = Decoder::new(opts.clone());
            d.mode = mode;
            let mut batch = Vec::with_capacity(BATCH);
            let mut out = |r: Arc<Decoded>| {
                batch.push(r);
                if batch.len() >= BATCH {
                    let _ = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            };
            let error = run_decoder(reader, &mut d, opts, threads, Some(&mut out));
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            (d.stats, error)
        });
        for b in rx {
            for r in b {
                sink(r);
            }
        }
        decoding.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Feeds every packet of `reader` to `d` (on `threads` threads); with a sink (a streaming
/// pass), the records made go to it after each batch instead of staying in `d`.
fn run_decoder<R: Read>(
    mut reader: Reader<R>,
    d: &mut Decoder,
    opts: &DecodeOptions,
    threads: usize,
    mut sink: Option<&mut dyn FnMut(Arc<Decoded>)>,
) -> Option<String> {
    let mut error = None;
    if threads < 2 {
        loop {
            match reader.next_packet() {
                Ok(Some(p)) => {
                    d.push(&p);
                    reader.recycle(p.data);
                    if let Some(sink) = sink.as_deref_mut() {
                        d.drain_shared(sink);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
    } else {
        error = decode_parallel(&mut reader, d, opts, threads, sink);
    }
    error
}

/// The parallel path of [`decode_reader`]: returns the read error, if any.
fn decode_parallel<R: Read>(
    reader: &mut Reader<R>,
    d: &mut Decoder,
    opts: &DecodeOptions,
    threads: usize,
    mut sink: Option<&mut dyn FnMut(Arc<Decoded>)>,
) -> Option<String> {
    use std::sync::mpsc;
    type Done = (Vec<(Decoded, bool)>, Vec<(Arc<Decoded>, bool)>, Vec<Packet>);
    std::thread::scope(|s| {
        let mut to: Vec<mpsc::SyncSender<(u64, Vec<Packet>)>> = Vec::new();
        let mut from: Vec<mpsc::Receiver<Done>> = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<(u64, Vec<Packet>)>(2);
            let (dtx, drx) = mpsc::sync_channel::<Done>(2);
            let mut w = Decoder::new(opts.clone());
            w.mode = d.mode.clone();
            w.defer = true;
            workers.push(s.spawn(move || {
                for (first, batch) in rx {
                    w.stats.frames = first;
                    for p in &batch {
                        w.push(p);
                    }
                    let done = (
                        std::mem::take(&mut w.deferred),
                        std::mem::take(&mut w.shared),
                        batch,
                    );
                    if dtx.send(done).is_err() {
                        break;
                    }
                }
                w.stats
            }));
            to.push(tx);
            from.push(drx);
        }
        let mut error = None;
        let mut frames = 0u64;
        let mut sent = 0usize;
        let mut merged = 0usize;
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut merge_one = |d: &mut Decoder, merged: &mut usize, spare: &mut Vec<Vec<u8>>| -> bool {
            let Ok((recs, shared, batch)) = from[*merged % threads].recv() else {
                return false;
            };
            *merged += 1;
            for (rec, unknown) in recs {
                d.accept(rec, unknown);
            }
            if let Some(sink) = sink.as_deref_mut() {
                for (rec, unknown) in shared {
                    if d.admit(unknown) {
                        sink(rec);
                    }
                }
            }
            spare.extend(batch.into_iter().map(|p| p.data));
            true
        };
        let mut done = false;
        while !done {
            let mut batch = Vec::with_capacity(BATCH);
            let first = frames;
            while batch.len() < BATCH {
                if let Some(buf) = spare.pop() {
                    reader.recycle(buf);
                }
                match reader.next_packet() {
                    Ok(Some(p)) => {
                        frames += 1;
                        batch.push(p);
                    }
                    Ok(None) => {
                        done = true;
                        break;
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        done = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            if to[sent % threads].send((first, batch)).is_err() {
                break;
            }
            sent += 1;
            while sent - merged > 2 * threads {
                if !merge_one(d, &mut merged, &mut spare) {
                    break;
                }
            }
        }
        while merged < sent {
            if !merge_one(d, &mut merged, &mut spare) {
                break;
            }
        }
        drop(to);
        for w in workers {
            if let Ok(st) = w.join() {
                d.stats.non_ip += st.non_ip;
                d.stats.udp += st.udp;
                d.stats.inner += st.inner;
                d.stats.native_ipv6 += st.native_ipv6;
                d.stats.fragments_skipped += st.fragments_skipped;
            }
        }
        d.stats.frames = frames;
        error
    })
}

impl Decoder {
    pub fn new(opts: DecodeOptions) -> Decoder {
        Decoder {
            opts,
            records: Vec::new(),
            unknown_kept: 0,
            stats: DecodeStats::default(),
            defer: false,
            deferred: Vec::new(),
            mode: StreamMode::default(),
            shared: Vec::new(),
        }
    }

    /// A worker's record, merged in frame order: the [`MAX_UNKNOWN_KEPT`] cap applies here.
    fn accept(&mut self, rec: Decoded, unknown: bool) {
        if self.admit(unknown) {
            self.keep(rec);
        }
    }

    /// Whether a worker's record may be kept: the [`MAX_UNKNOWN_KEPT`] cap, counted in
    /// frame order.
    fn admit(&mut self, unknown: bool) -> bool {
        if unknown {
            if self.unknown_kept >= MAX_UNKNOWN_KEPT {
                self.stats.unknown_dropped += 1;
                return false;
            }
            self.unknown_kept += 1;
        }
        true
    }

    /// The shared records made so far, to `sink` (the cap applied to a worker's).
    fn drain_shared(&mut self, sink: &mut dyn FnMut(Arc<Decoded>)) {
        let shared = std::mem::take(&mut self.shared);
        for (rec, unknown) in shared {
            if self.admit(unknown) {
                sink(rec);
            }
        }
    }

    fn keep(&mut self, rec: Decoded) {
        self.keep_flagged(rec, false);
    }

    /// Keeps a record; `unknown`: a datagram the [`MAX_UNKNOWN_KEPT`] cap counts (only
    /// passed on by a worker, which cannot apply it).
    fn keep_flagged(&mut self, mut rec: Decoded, unknown: bool) {
        if let Some(f) = &self.mode.finish {
            f(&mut rec);
        }
        if self.mode.shared {
            self.shared.push((Arc::new(rec), unknown));
            return;
        }
        if self.defer {
            self.deferred.push((rec, unknown));
            return;
        }
        self.records.push(rec);
    }

    /// Takes one packet of the capture (frames are numbered in push order).
    pub fn push(&mut self, p: &Packet) {
        self.stats.frames += 1;
        let frame = self.stats.frames;
        let Some(ip) = p.ip() else {
            self.stats.non_ip += 1;
            return;
        };
        let ts_ns =
            p.ts.0
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(p.ts.1));
        let complete = p.orig_len as usize <= p.data.len();
        let base = Decoded {
            frame,
            interface: p.interface_name.clone(),
            direction: p.direction,
            ts_ns,
            layer: Layer::Tunnel,
            outer: None,
            inner: None,
            icmp: None,
            kind: Kind::Keepalive,
            trailing: 0,
            towards_router: false,
            from_router: false,
            path: None,
            profile: self.opts.profile.unwrap_or_default(),
            issues: Issues::default(),
            packet: 0,
            sighting: 0,
            sightings: 1,
            fingerprint: 0,
            inner_key: None,
            noise: false,
        };
        match ip.first().map(|b| b >> 4) {
            Some(4) => self.push_v4(ip, complete, base),
            Some(6) => self.push_v6(ip, complete, p, base),
            _ => self.stats.non_ip += 1,
        }
    }

    fn push_v4(&mut self, ip: &[u8], complete: bool, mut rec: Decoded) {
        let Ok(h) = Ipv4HeaderSlice::from_slice(ip) else {
            self.stats.non_ip += 1;
            return;
        };
        let hl = usize::from(h.ihl()) * 4;
        let end = usize::from(h.total_len()).clamp(hl, ip.len().max(hl));
        let body = ip.get(hl..end.min(ip.len())).unwrap_or(&[]);
        if h.fragments_offset().value() != 0 {
            self.stats.fragments_skipped += 1;
            return;
        }
        match h.protocol().0 {
            17 => {}
            1 => {
                self.push_icmp4(&h, body, rec);
                return;
            }
            _ => return,
        }
        self.stats.udp += 1;
        let Ok(udp) = UdpHeaderSlice::from_slice(body) else {
            return;
        };
        let declared = usize::from(udp.length()).saturating_sub(8);
        let avail = &body[8..];
        let payload = &avail[..declared.min(avail.len())];
        let fragment = h.more_fragments();
        let complete = complete && !fragment && declared <= avail.len();
        let src = SocketAddrV4::new(h.source_addr(), udp.source_port());
        let dst = SocketAddrV4::new(h.destination_addr(), udp.destination_port());
        let looks = payload.is_empty() || payload[0] >> 4 == 6;
        let unknown =
            !looks && !self.opts.is_router_port(src.port()) && !self.opts.is_router_port(dst.port());
        if unknown && !self.defer {
            if self.unknown_kept >= MAX_UNKNOWN_KEPT {
                self.stats.unknown_dropped += 1;
                return;
            }
            self.unknown_kept += 1;
        }
        rec.outer = Some(Outer {
            src,
            dst,
            ttl: h.ttl(),
            df: h.dont_fragment(),
            ip_id: h.identification(),
            udp_payload_len: declared,
            complete,
            fragment,
        });
        // A streaming pass (one capture point: nothing to group) needs no fingerprint.
        if !self.mode.shared {
            let mut fp = fnv1a(0xcbf2_9ce4_8422_2325, &h.identification().to_be_bytes());
            fp = fnv1a(fp, &(declared as u32).to_be_bytes());
            rec.fingerprint = fnv1a(fp, payload);
        }
        if declared > avail.len() && complete {
            rec.issues.push(format!(
                "UDP length says {declared} payload bytes, the IPv4 packet holds {}",
                avail.len()
            ));
        }
        if payload.is_empty() && declared == 0 {
            rec.kind = Kind::Keepalive;
        } else {
            let parsed = inner::parse_ipv6_keyed(payload, complete, !self.mode.light);
            rec.inner = parsed.inner;
            rec.icmp = parsed.icmp.map(Box::new);
            rec.kind = parsed.kind;
            rec.trailing = u32::try_from(parsed.trailing).unwrap_or(u32::MAX);
            rec.issues.extend(parsed.issues);
            rec.inner_key = parsed.inner_key;
        }
        self.keep_flagged(rec, unknown && self.defer);
    }

    /// ICMPv4 errors quoting a UDP datagram: kept in case the quoted flow is 6bed4.
    fn push_icmp4(&mut self, h: &Ipv4HeaderSlice<'_>, body: &[u8], mut rec: Decoded) {
        let (Some(&ty), Some(&code)) = (body.first(), body.get(1)) else {
            return;
        };
        if !matches!(ty, 3 | 11 | 12) {
            return;
        }
        let Some(quoted) = body.get(8..) else { return };
        let Ok(q) = Ipv4HeaderSlice::from_slice(quoted) else {
            return;
        };
        if q.protocol().0 != 17 {
            return;
        }
        let qhl = usize::from(q.ihl()) * 4;
        let Some(ports) = quoted.get(qhl..qhl + 4) else {
            return;
        };
        let qsrc = SocketAddrV4::new(q.source_addr(), u16::from_be_bytes([ports[0], ports[1]]));
        let qdst = SocketAddrV4::new(q.destination_addr(), u16::from_be_bytes([ports[2], ports[3]]));
        rec.outer = Some(Outer {
            src: SocketAddrV4::new(h.source_addr(), 0),
            dst: SocketAddrV4::new(h.destination_addr(), 0),
            ttl: h.ttl(),
            df: h.dont_fragment(),
            ip_id: h.identification(),
            udp_payload_len: 0,
            complete: true,
            fragment: false,
        });
        rec.fingerprint = fnv1a(fnv1a(0x1c3d, &h.identification().to_be_bytes()), body);
        rec.kind = Kind::IcmpError {
            v6: false,
            icmp_type: ty,
            code,
            about: Some((qsrc, qdst)),
        };
        self.keep(rec);
    }

    fn push_v6(&mut self, ip: &[u8], complete: bool, p: &Packet, mut rec: Decoded) {
        let name = p.interface_name.as_deref().unwrap_or("");
        let leaf = name.rsplit('/').next().unwrap_or(name);
        let tun = leaf.contains("6bed4")
            || (name.is_empty() && matches!(p.linktype, linktype::RAW | linktype::IPV6 | 12 | 14));
        if !tun {
            self.stats.native_ipv6 += 1;
            return;
        }
        self.stats.inner += 1;
        let parsed = inner::parse_ipv6(ip, complete);
        rec.layer = Layer::Inner;
        rec.inner = parsed.inner;
        rec.icmp = parsed.icmp.map(Box::new);
        rec.kind = parsed.kind;
        rec.trailing = u32::try_from(parsed.trailing).unwrap_or(u32::MAX);
        rec.issues = parsed.issues.into();
        rec.inner_key = parsed.inner_key;
        rec.fingerprint = parsed.inner_key.unwrap_or(0);
        rec.noise = is_kernel_noise(&rec);
        self.keep(rec);
    }

    /// Decides the 6bed4 flows, learns routers and prefixes, groups sightings and fills
    /// the derived fields.
    pub fn finish(self) -> DecodedCapture {
        let Decoder {
            opts, records, stats, ..
        } = self;
        let router_port = |port: u16| opts.is_router_port(port);

        // 1. Flows that are 6bed4: a router port, or an inner address naming an endpoint.
        // Two threads take half the records each (the sets are unions: order-free).
        let (mut six_flows, mut prefixes) = (FastSet::default(), BTreeSet::new());
        let halves = if records.len() >= 100_000 { 2 } else { 1 };
        let part = records.len().div_ceil(halves).max(1);
        std::thread::scope(|s| {
            let found: Vec<_> = records
                .chunks(part)
                .map(|c| s.spawn(|| six_flows_in(c, &router_port)))
                .collect();
            for h in found {
                let (f, p) = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                six_flows.extend(f);
                prefixes.extend(p);
            }
        });
        finish_records(opts, records, stats, &six_flows, prefixes)
    }
}

/// Which records of a capture stay: those of a 6bed4 flow's endpoints (and ICMP errors
/// about them) and every TUN packet.
pub(crate) fn retained(endpoints: &FastSet<Endpoint>, r: &Decoded) -> bool {
    match (&r.layer, &r.kind, &r.outer) {
        (Layer::Inner, ..) => true,
        (
            _,
            Kind::IcmpError {
                about: Some((a, b)), ..
            },
            _,
        ) => endpoints.contains(a) || endpoints.contains(b),
        (_, _, Some(o)) => endpoints.contains(&o.src) || endpoints.contains(&o.dst),
        _ => false,
    }
}

/// The endpoints of the 6bed4 flows.
pub(crate) fn flow_endpoints(six_flows: &FastSet<(Endpoint, Endpoint)>) -> FastSet<Endpoint> {
    six_flows.iter().flat_map(|&(a, b)| [a, b]).collect()
}

/// The rest of [`Decoder::finish`] once the 6bed4 flows (and the /64s named by their
/// addresses) are known: keeps their records, learns routers and prefixes, groups
/// sightings and fills the derived fields.
pub(crate) fn finish_records(
    opts: DecodeOptions,
    mut records: Vec<Decoded>,
    mut stats: DecodeStats,
    six_flows: &FastSet<(Endpoint, Endpoint)>,
    mut prefixes: BTreeSet<Ipv6Addr>,
) -> DecodedCapture {
    {
        let router_port = |port: u16| opts.is_router_port(port);
        let endpoints = flow_endpoints(six_flows);
        let keep = |r: &Decoded| retained(&endpoints, r);
        // In place, in order; nothing moves before the first record dropped.
        records.retain(keep);
        records.shrink_to_fit();
        // Frames are unique, so an unstable sort gives the same order without a buffer of
        // half the records; a capture from one interface is already in order.
        if !records.is_sorted_by_key(|r| (r.ts_ns, r.frame)) {
            records.sort_unstable_by_key(|r| (r.ts_ns, r.frame));
        }
        stats.tunnel = records.iter().filter(|r| r.is_tunnel()).count() as u64;

        // 2. Routers: the profile and override ports; else where RSs go.
        let mut routers: BTreeSet<Endpoint> = endpoints
            .iter()
            .copied()
            .filter(|e| router_port(e.port()))
            .collect();
        if routers.is_empty() {
            routers = records
                .iter()
                .filter(|r| r.is_tunnel() && r.icmp_type() == Some(inner::RS))
                .filter_map(|r| r.dst())
                .collect();
        }
        for r in &records {
            if let Kind::Ra { prefixes: pios, .. } = &r.kind {
                if r.is_tunnel() && r.src().is_some_and(|s| routers.contains(&s)) {
                    // A PIO with neither L nor A only says what is reachable through the
                    // router (native IPv6 behind it): not a 6bed4 prefix.
                    prefixes.extend(
                        pios.iter()
                            .filter(|p| p.on_link || p.autonomous)
                            .map(|p| addr::prefix64(&p.prefix)),
                    );
                }
            }
        }

        // 3. Sightings of one packet at several capture points. From one capture point
        // (a field capture) no record can join another's packet: each is its own, and the
        // grouping and the per-packet arrays below are skipped (same result, less memory).
        let single = one_capture_point(&records);
        let packets = if single {
            for (i, r) in records.iter_mut().enumerate() {
                r.packet = i;
                r.sighting = 0;
            }
            records.len()
        } else {
            group_sightings(&mut records)
        };

        // 4. Derived fields.
        if single {
            for r in records.iter_mut() {
                derive_alone(r, &routers, &prefixes, &opts);
            }
        } else {
            let counts = sighting_counts(&records, packets);
            let (starts, sources) = packet_sources(&records, packets);
            for r in records.iter_mut() {
                r.sightings = counts.get(r.packet).copied().unwrap_or(1);
                let srcs = match (starts.get(r.packet), starts.get(r.packet + 1)) {
                    (Some(&a), Some(&b)) => sources.get(a..b).unwrap_or(&[]),
                    _ => &[],
                };
                derive(r, &routers, &prefixes, &opts, srcs);
            }
        }
        DecodedCapture {
            name: opts.name,
            records,
            routers,
            prefixes,
            packets,
            stats,
            read_error: None,
            streamed: None,
        }
    }
}

/// Whether every tunnel record that could join another's packet (one with an interface)
/// was seen at one capture point (interface and direction): [`group_sightings`] joins a
/// record only to a packet not yet seen at its point, so then each record is its own packet.
fn one_capture_point(records: &[Decoded]) -> bool {
    let mut point: Option<(&Arc<str>, Option<Direction>)> = None;
    for r in records.iter().filter(|r| r.is_tunnel()) {
        let Some(i) = &r.interface else { continue };
        match point {
            None => point = Some((i, r.direction)),
            Some((pi, pd)) if (Arc::ptr_eq(pi, i) || **pi == **i) && pd == r.direction => {}
            Some(_) => return false,
        }
    }
    true
}

/// The flows of `records` that are 6bed4 (a router port, or an inner address naming an
/// endpoint) and the /64s of the addresses that named one.
fn six_flows_in(
    records: &[Decoded],
    router_port: &(impl Fn(u16) -> bool + Sync),
) -> (FastSet<(Endpoint, Endpoint)>, BTreeSet<Ipv6Addr>) {
    let mut six_flows: FastSet<(Endpoint, Endpoint)> = FastSet::default();
    let mut prefixes = BTreeSet::new();
    for r in records {
        note_flow(r, router_port, &mut six_flows, &mut prefixes);
    }
    (six_flows, prefixes)
}

/// What one record says about which flows are 6bed4 (see [`six_flows_in`]).
pub(crate) fn note_flow(
    r: &Decoded,
    router_port: &impl Fn(u16) -> bool,
    six_flows: &mut FastSet<(Endpoint, Endpoint)>,
    prefixes: &mut BTreeSet<Ipv6Addr>,
) {
    let flow = |a: Endpoint, b: Endpoint| if a <= b { (a, b) } else { (b, a) };
    let (Some(o), Layer::Tunnel) = (&r.outer, r.layer) else {
        return;
    };
    if matches!(r.kind, Kind::IcmpError { v6: false, .. }) {
        return;
    }
    if router_port(o.src.port()) || router_port(o.dst.port()) {
        six_flows.insert(flow(o.src, o.dst));
    }
    if let Some(ih) = &r.inner {
        for a in [ih.src, ih.dst] {
            if a.is_unspecified() || addr::is_multicast(&a) {
                continue;
            }
            if [o.src, o.dst]
                .iter()
                .any(|&ep| addr::layout_naming(&a, ep).is_some() || addr::loosely_names(&a, ep))
            {
                six_flows.insert(flow(o.src, o.dst));
                if !addr::is_link_local(&a) {
                    prefixes.insert(addr::prefix64(&a));
                }
            }
        }
    }
}

fn sighting_counts(records: &[Decoded], packets: usize) -> Vec<u16> {
    let mut counts = vec![0u16; packets];
    for r in records {
        if let Some(c) = counts.get_mut(r.packet) {
            *c = c.saturating_add(1);
        }
    }
    counts
}

/// Per packet `p`, the outer source of each of its tunnel sightings, in capture order:
/// `flat[starts[p]..starts[p + 1]]` (one list, no allocation per packet).
fn packet_sources(records: &[Decoded], packets: usize) -> (Vec<usize>, Vec<Endpoint>) {
    let has = |r: &Decoded| r.is_tunnel() && r.packet < packets && r.src().is_some();
    let mut starts = vec![0usize; packets + 1];
    for r in records.iter().filter(|r| has(r)) {
        starts[r.packet + 1] += 1;
    }
    for p in 0..packets {
        starts[p + 1] += starts[p];
    }
    let mut next = starts.clone();
    let mut flat = vec![Endpoint::new(std::net::Ipv4Addr::UNSPECIFIED, 0); starts[packets]];
    for r in records.iter().filter(|r| has(r)) {
        if let Some(s) = r.src() {
            flat[next[r.packet]] = s;
            next[r.packet] += 1;
        }
    }
    (starts, flat)
}

/// Whether an inner source naming `named` fits a packet seen with outer sources `srcs`:
/// a NAT rewrites the outer source, so one sighting naming it is enough (the public side
/// after translation; the LAN sides carry private addresses).
pub fn source_fits(named: Option<Endpoint>, srcs: &[Endpoint]) -> bool {
    named.is_some_and(|n| srcs.contains(&n))
}

/// Whether a packet never left its sender's private side, so its outer sources cannot show
/// the public mapping its inner source names: every sighting's source is private and the
/// name public. A lone sighting must not be an arrival (a receiver on a LAN judges what it
/// got).
pub fn never_translated(named: Option<Endpoint>, srcs: &[Endpoint], lone_inbound: bool) -> bool {
    let sender_side = match srcs.len() {
        0 => false,
        1 => !lone_inbound,
        _ => true,
    };
    sender_side
        && srcs.iter().all(|s| addr::is_private_v4(*s.ip()))
        && named.is_some_and(|n| !addr::is_private_v4(*n.ip()))
}

/// Assigns `packet` and `sighting`: a record joins an earlier packet with the same
/// fingerprint when it is a plausible next hop of that packet's last sighting (a link keeps
/// both endpoints and the TTL; a node forwarding it may rewrite one side and lower the TTL).
/// Returns the number of packets.
fn group_sightings(records: &mut [Decoded]) -> usize {
    /// The capture points and directions of a group's sightings, as record indices: a
    /// hairpinning NAT shows one packet twice on its LAN interface, arriving and leaving.
    struct Open {
        packet: usize,
        last: usize,
        count: u16,
        points: Vec<usize>,
    }
    let same_point = |a: &Decoded, b: &Decoded| a.interface == b.interface && a.direction == b.direction;
    let mut open: FastMap<u64, Vec<Open>> = FastMap::default();
    let mut next_packet = 0usize;
    for i in 0..records.len() {
        // Records are in time order: a group idle for longer than the window can join no
        // later record, so dropping them all now and then changes nothing and keeps `open`
        // as small as the window.
        if i % 4096 == 0 {
            let now = records[i].ts_ns;
            open.retain(|_, list| {
                list.retain(|g| now.saturating_sub(records[g.last].ts_ns) <= GROUP_WINDOW_NS);
                !list.is_empty()
            });
        }
        let r = &records[i];
        let mut joined: Option<(usize, u16)> = None;
        if r.is_tunnel() && r.interface.is_some() {
            if let Some(list) = open.get_mut(&r.fingerprint) {
                list.retain(|g| r.ts_ns.saturating_sub(records[g.last].ts_ns) <= GROUP_WINDOW_NS);
                let pos = list.iter().rposition(|g| {
                    !g.points.iter().any(|&j| same_point(&records[j], r)) && next_hop(&records[g.last], r)
                });
                if let Some(g) = pos.and_then(|p| list.get_mut(p)) {
                    g.last = i;
                    g.count = g.count.saturating_add(1);
                    g.points.push(i);
                    joined = Some((g.packet, g.count - 1));
                }
            }
        }
        let (packet, sighting) = match joined {
            Some(v) => v,
            None => {
                let p = next_packet;
                next_packet += 1;
                if r.is_tunnel() && r.interface.is_some() {
                    open.entry(r.fingerprint).or_default().push(Open {
                        packet: p,
                        last: i,
                        count: 1,
                        points: vec![i],
                    });
                }
                (p, 0)
            }
        };
        records[i].packet = packet;
        records[i].sighting = sighting;
    }
    next_packet
}

/// Whether `b` can be the next sighting of the packet last seen as `a`.
fn next_hop(a: &Decoded, b: &Decoded) -> bool {
    let (Some(oa), Some(ob)) = (&a.outer, &b.outer) else {
        return false;
    };
    if ob.ttl > oa.ttl {
        return false;
    }
    match (a.direction, b.direction, a.node(), b.node()) {
        (Some(Direction::Outbound), Some(Direction::Inbound), Some(na), Some(nb)) => {
            na != nb && oa.src == ob.src && oa.dst == ob.dst && oa.ttl == ob.ttl
        }
        // Forwarded by one node: a NAT rewrites one side; a hairpinning NAT rewrites both
        // (the source to its external mapping, the destination to the internal host), and
        // then, forwarding, it lowers the TTL.
        (Some(Direction::Inbound), Some(Direction::Outbound), Some(na), Some(nb)) => {
            na == nb && (oa.src == ob.src || oa.dst == ob.dst || ob.ttl < oa.ttl)
        }
        (Some(_), Some(_), Some(_), Some(_)) => false,
        _ => oa.src == ob.src || oa.dst == ob.dst,
    }
}

/// Router direction, path, profile, and the issues that need the whole capture.
pub(crate) fn derive(
    r: &mut Decoded,
    routers: &BTreeSet<Endpoint>,
    prefixes: &BTreeSet<Ipv6Addr>,
    opts: &DecodeOptions,
    srcs: &[Endpoint],
) {
    let Some(o) = r.outer.clone() else {
        r.profile = opts.profile.unwrap_or_else(|| layout_profile(r, None));
        return;
    };
    r.towards_router = routers.contains(&o.dst);
    r.from_router = routers.contains(&o.src);
    if matches!(r.kind, Kind::Data { .. } | Kind::Ns { .. } | Kind::Na { .. }) {
        r.path = Some(if r.towards_router || r.from_router {
            PathKind::ViaRouter
        } else {
            PathKind::Direct
        });
    }
    r.profile = tunnel_profile(r, &o, opts);
    if matches!(r.kind, Kind::Keepalive) && !r.towards_router {
        r.issues.push(format!(
            "empty UDP datagram to {}, which is not the router",
            o.dst
        ));
    }
    // The inner source must name the outer source of one of the packet's sightings (the
    // public side of every NAT it crossed): noted at the last sighting, unless the packet
    // never left its sender's private side.
    if let (Some(ih), false) = (&r.inner, r.from_router) {
        let judged = prefixes.contains(&addr::prefix64(&ih.src)) && !ih.src.is_unspecified();
        if judged && r.is_last() {
            let named = r.profile.decode(&ih.src);
            let srcs = if srcs.is_empty() {
                std::slice::from_ref(&o.src)
            } else {
                srcs
            };
            let lone_inbound = r.direction == Some(Direction::Inbound);
            if !source_fits(named, srcs) && !never_translated(named, srcs, lone_inbound) {
                let other = r.profile_other().decode(&ih.src);
                let hint = if other == Some(o.src) {
                    format!(" (it does in the {} layout)", r.profile_other().name())
                } else if addr::loosely_names(&ih.src, o.src) {
                    " (the IPv4 octets stand verbatim in bytes 8..11: the first octet's two low bits belong in byte 14)".to_string()
                } else {
                    String::new()
                };
                r.issues.push(format!(
                    "inner source {} names {} in the {} layout, but the datagram came from {}{hint}",
                    ih.src,
                    named.map_or_else(|| "nothing".to_string(), |n| n.to_string()),
                    r.profile.name(),
                    o.src
                ));
            }
        }
    }
}

/// A tunnel datagram's profile: forced, else its port's, else its address layout's.
pub(crate) fn tunnel_profile(r: &Decoded, o: &Outer, opts: &DecodeOptions) -> Profile {
    opts.profile.unwrap_or_else(|| {
        [o.src.port(), o.dst.port()]
            .into_iter()
            .find_map(Profile::from_port)
            .unwrap_or_else(|| layout_profile(r, Some(o)))
    })
}

/// [`derive`] for a record that is its own packet (one capture point).
pub(crate) fn derive_alone(
    r: &mut Decoded,
    routers: &BTreeSet<Endpoint>,
    prefixes: &BTreeSet<Ipv6Addr>,
    opts: &DecodeOptions,
) {
    r.sighting = 0;
    r.sightings = 1;
    let own = r.src().filter(|_| r.is_tunnel());
    derive(r, routers, prefixes, opts, own.as_slice());
}

impl Decoded {
    /// The other profile (for "it would decode in the other layout" hints).
    pub fn profile_other(&self) -> Profile {
        match self.profile {
            Profile::Current => Profile::V01,
            Profile::V01 => Profile::Current,
        }
    }
}

/// The profile an address layout suggests: V when an address names an endpoint in layout
/// V, else `current`.
fn layout_profile(r: &Decoded, o: Option<&Outer>) -> Profile {
    let Some(ih) = &r.inner else {
        return Profile::Current;
    };
    for a in [ih.src, ih.dst] {
        let v = addr::decode_v(&a);
        match o {
            Some(o) if v == Some(o.src) || v == Some(o.dst) => return Profile::V01,
            None if v.is_some() && !addr::is_link_local(&a) => return Profile::V01,
            _ => {}
        }
    }
    Profile::Current
}

/// The kernel's own traffic on a TUN: MLD reports, its router solicitations from a
/// link-local or unspecified source, DAD probes.
fn is_kernel_noise(r: &Decoded) -> bool {
    let Some(ih) = &r.inner else { return false };
    // MLDv2 reports come behind a Hop-by-Hop header (Router Alert), so no ICMPv6 type shows.
    if ih.next_header == 0
        && addr::is_multicast(&ih.dst)
        && (ih.src.is_unspecified() || addr::is_link_local(&ih.src))
    {
        return true;
    }
    match r.icmp_type() {
        Some(130..=132 | 143) => true,
        Some(inner::RS) => ih.src.is_unspecified() || addr::is_link_local(&ih.src),
        Some(inner::NS) => ih.src.is_unspecified(),
        _ => false,
    }
}

/// A stable 64-bit hash (the same in every run, unlike `DefaultHasher`'s seeds across
/// versions) for fingerprints that traces and tests may compare: eight bytes at a time
/// (xor, multiply by an odd constant, rotate), FNV-1a for the tail. Byte-at-a-time FNV-1a
/// over every payload cost ~1.5 s per GB of capture; this is several times faster.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(31);
    }
    for &b in words.remainder() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Counts per kind over the sender's side of each tunnel packet (one per packet).
pub fn kind_counts(c: &DecodedCapture) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in c.sent() {
        *m.entry(r.kind.label()).or_insert(0) += 1;
    }
    m
}

/// A peer's address in a friendlier form for messages: `addr (ip:port)`.
pub fn describe_addr(a: &Ipv6Addr, profile: Profile) -> String {
    match profile.decode(a) {
        Some(ep) => format!("{a} ({ep})"),
        None => a.to_string(),
    }
}

/// `Ipv4Addr` for tests and callers that name routers.
pub fn endpoint(ip: [u8; 4], port: u16) -> Endpoint {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}
