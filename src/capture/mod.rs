//! Capture files: writing pcapng, reading pcap and pcapng, and capturing inside namespaces.
//!
//! A lab run produces one pcapng file in which every capture point is its own interface:
//! the fabric records each link end (`peer-a/eth0`, `nat-a/wan`) as `LINKTYPE_RAW`, and a
//! [`host::HostCapture`] per namespace adds the interfaces the hosts make themselves (above
//! all the `6bed4` TUN of the implementation under test). The conformance checks then read
//! the same file back with [`reader::Reader`].
//!
//! - [`pcapng`]: [`PcapngWriter`], a block-at-a-time writer that flushes every block, so a run
//!   that is killed still leaves a file that tshark opens, and [`CaptureFile`], its
//!   thread-safe front that hands out interface ids by name.
//! - [`reader`]: [`Reader`], a streaming reader for classic pcap and pcapng (constant memory,
//!   one packet at a time) with errors that name the file offset, plus [`ip_payload`] to get
//!   from any common link layer to the IP packet.
//! - [`host`]: [`HostCapture`], an `AF_PACKET` capture inside a network namespace that sees
//!   interfaces created after it started.

pub mod host;
pub mod pcapng;
pub mod reader;

pub use host::{HostCapture, HostCaptureOptions, HostCaptureStats, HostPacket};
pub use pcapng::{CaptureFile, Direction, PcapngWriter, ShbInfo};
pub use reader::{fuzz_read, ip_payload, Packet, ReadError, Reader, Section};

/// Link-layer header types (the `LINKTYPE_*` values of the tcpdump.org registry) that bedlab
/// writes or understands. Captures name the type per interface; the reader passes any value
/// through, and [`ip_payload`] knows how to strip the ones listed here.
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the writer's byte order.
    pub const NULL: u16 = 0;
    /// Ethernet II, optionally with 802.1Q / 802.1ad VLAN tags.
    pub const ETHERNET: u16 = 1;
    /// Raw IPv4 or IPv6, told apart by the version nibble: what a TUN device carries, so
    /// what the fabric's uplinks record.
    pub const RAW: u16 = 101;
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: u16 = 108;
    /// Linux "cooked" capture, version 1 (16-byte header).
    pub const LINUX_SLL: u16 = 113;
    /// Raw IPv4 only.
    pub const IPV4: u16 = 228;
    /// Raw IPv6 only.
    pub const IPV6: u16 = 229;
    /// Linux "cooked" capture, version 2 (20-byte header carrying the interface index).
    pub const LINUX_SLL2: u16 = 276;
}

#[cfg(test)]
mod tests;
