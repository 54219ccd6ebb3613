//! Field tools: what a person needs to work with 6bed4 captures taken outside the lab.
//!
//! - [`anonymise`]: `bedlab anonymise`, prefix-preserving anonymisation ([`cryptopan`]) of
//!   every IPv4 address wherever 6bed4 copies it (outer headers, both address layouts,
//!   link-layer options, the RA's prefix, the default router prefix), with checksums
//!   mended ([`checksum`]), so that a capture can be shared and still gets the same
//!   verdicts from `bedlab check`.
//! - [`wireshark`]: `bedlab wireshark-plugin`, a Lua dissector that shows 6bed4 in
//!   Wireshark and tshark.
//! - [`report`]: `bedlab check` and `bedlab decode`, thin front ends over the conformance
//!   decoder and check registry that print for people.
//! - [`gen`]: synthetic 6bed4 traffic of any size, for benchmarks.

pub mod anonymise;
pub mod checksum;
pub mod cryptopan;
pub mod pcapng_out;
pub mod rewrite;
