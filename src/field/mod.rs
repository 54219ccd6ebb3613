//! Field tools: what a person needs to work with 6bed4 captures taken outside the lab.
//!
//! - [`anonymise`]: `bedlab anonymise`, prefix-preserving anonymisation ([`cryptopan`]) of
//!   every IPv4 address wherever 6bed4 copies it (outer headers, both address layouts,
//!   link-layer options, the RA's prefix, the default router prefix), with checksums
//!   mended ([`checksum`]), so that a capture can be shared and still gets the same
//!   verdicts from `bedlab check`.
//! - `bedlab wireshark-plugin` ([`cli::plugin_text`]): a Lua dissector (`sixbed4.lua`)
//!   that shows 6bed4 in Wireshark and tshark.
//! - [`report`]: `bedlab check` and `bedlab decode`, thin front ends over the conformance
//!   decoder and check registry that print for people.
//! - [`gen`]: synthetic 6bed4 traffic of any size, for benchmarks.

pub mod anonymise;
pub mod checksum;
pub mod cli;
pub mod cryptopan;
pub mod gen;
pub mod pcapng_out;
pub mod report;
pub mod rewrite;

/// Where each subcommand lives: [`cli`] holds the arguments and entry points.
pub use cli::{AnonymiseArgs, CheckArgs, DecodeArgs, GenTrafficArgs, WiresharkPluginArgs};
