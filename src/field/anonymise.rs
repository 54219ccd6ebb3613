//! `bedlab anonymise`: a capture in, the same capture with every IPv4 address (and
//! optionally every port) replaced by its Crypto-PAn image out, consistently in every place
//! 6bed4 copies it, with checksums mended.
//!
//! Two streaming passes over the input, in constant memory apart from two capped sets:
//! the first learns which IPv4 addresses the capture carries in outer headers and which
//! /64s are 6bed4 prefixes ([`Learned`]); the second rewrites each frame
//! ([`Rewriter`]) and writes it out. Two passes because a capture often shows a 6bed4
//! address before the packet that proves it is one (data before the RA that a mid-session
//! capture missed, a TUN copy before the tunnel copy).
//!
//! The output is always pcapng (a classic pcap input becomes one section with one unnamed
//! interface): it keeps packet comments and directions, and it is what the lab writes.
//! Timestamps are written in nanoseconds; sections, interface names, descriptions and
//! link types are copied, with dotted-quad IPv4 addresses in comments, names and
//! descriptions rewritten like the packets.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cryptopan::KeyedMap;
use super::pcapng_out::{IfaceDesc, Writer};
use super::rewrite::{Flags, Learned, Rewriter, Stats};
use crate::capture::{ReadError, Reader, Section};

/// What to do, beyond the addresses.
#[derive(Debug, Clone)]
pub struct Options {
    /// The secret the Crypto-PAn key is derived from (SHA-256).
    pub key: Vec<u8>,
    /// Anonymise ports too (all but 0, the router ports 25790/25788 and `keep_ports`).
    pub ports: bool,
    /// Ports that mark a 6bed4 router besides 25790 and 25788: kept with `ports`, and
    /// used to learn which addresses are 6bed4.
    pub keep_ports: Vec<u16>,
    /// Zero payloads beyond the headers (and bytes trailing an inner packet).
    pub zero_payloads: bool,
    /// Map private, loopback, link-local, shared, multicast and reserved IPv4 ranges onto
    /// themselves (see [`super::cryptopan::CLASS_RANGES`]).
    pub preserve_classes: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub packets: u64,
    pub stats: Stats,
    pub known_v4: usize,
    pub prefixes: usize,
    /// A learned set reached its cap.
    pub saturated: bool,
    /// The input ended inside a block: every whole packet before it was written.
    pub truncated: Option<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} packets: {} IPv4 headers, {} IPv6 packets; embedded addresses rewritten: {} layout C, \
             {} layout V, {} mis-encoded (kept mis-encoded), {} link-layer options, {} router prefixes, \
             {} other; {} bad checksums kept bad; {} payloads zeroed; learned {} IPv4 addresses and \
             {} 6bed4 prefixes",
            self.packets,
            s.ipv4_headers,
            s.ipv6_packets,
            s.iid_layout_c,
            s.iid_layout_v,
            s.iid_loose,
            s.link_layer_options,
            s.router_prefixes,
            s.other_embedded + s.arp,
            s.bad_checksums_kept,
            s.payloads_zeroed,
            self.known_v4,
            self.prefixes
        )?;
        if self.saturated {
            write!(
                f,
                " (a learned set was full: later addresses used default layouts)"
            )?;
        }
        Ok(())
    }
}

/// Why anonymising failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the output {} is the input: choose another file", .0.display())]
    SameFile(PathBuf),
}

/// Anonymises `input` into `output` (written to `<output>.partial` and renamed when
/// complete, so a failed run never leaves a half-written file under the real name).
pub fn anonymise_file(input: &Path, output: &Path, opts: &Options) -> Result<Summary, Error> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(Error::SameFile(output.to_path_buf()));
        }
    }
    let read_err = |source| Error::Read {
        path: input.to_path_buf(),
        source,
    };
    // Pass 1: learn.
    let mut learned = Learned::new(&opts.keep_ports);
    let mut reader = Reader::open(input).map_err(read_err)?;
    let mut truncated = None;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => learned.learn_frame(p.linktype, &p.data),
            Ok(None) => break,
            Err(e) if e.is_truncated() => {
                truncated = Some(e.to_string());
                break;
            }
            Err(e) => return Err(read_err(e)),
        }
    }
    let keep: Vec<u16> = [25790u16, 25788]
        .into_iter()
        .chain(opts.keep_ports.iter().copied())
        .collect();
    let map = KeyedMap::new(
        &opts.key,
        opts.preserve_classes,
        opts.ports.then_some(keep.as_slice()),
    );
    let mut summary = Summary {
        known_v4: learned.known_v4.len(),
        prefixes: learned.prefixes.len(),
        saturated: learned.saturated,
        truncated,
        ..Summary::default()
    };
    let mut rw = Rewriter::new(
        map,
        learned,
        Flags {
            zero_payloads: opts.zero_payloads,
        },
    );

    // Pass 2: rewrite and write.
    let partial = partial_path(output);
    let write_err = |source| Error::Write {
        path: partial.clone(),
        source,
    };
    let result = (|| {
        let mut reader = Reader::open(input).map_err(read_err)?;
        let file = File::create(&partial).map_err(write_err)?;
        let section = text_section(reader.section(), &mut rw.map);
        let app = application(reader.section());
        let mut w = Writer::new(file, &section, &app).map_err(write_err)?;
        let mut section_index = reader.section().index;
        let mut ids: Vec<Option<u32>> = Vec::new();
        loop {
            let mut p = match reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) if e.is_truncated() => break,
                Err(e) => return Err(read_err(e)),
            };
            if reader.section().index != section_index {
                section_index = reader.section().index;
                let s = text_section(reader.section(), &mut rw.map);
                w.section(&s, &application(reader.section())).map_err(write_err)?;
                ids.clear();
            }
            let idx = p.interface as usize;
            if ids.len() <= idx {
                ids.resize(idx + 1, None);
            }
            let id = match ids[idx] {
                Some(id) => id,
                None => {
                    let desc = match reader.interfaces().get(idx) {
                        Some(i) => IfaceDesc {
                            linktype: i.linktype,
                            snaplen: i.snaplen,
                            name: i.name.as_deref().map(|n| rewrite_text(&mut rw.map, n)),
                            description: i.description.as_deref().map(|d| rewrite_text(&mut rw.map, d)),
                        },
                        None => IfaceDesc {
                            linktype: p.linktype,
                            snaplen: 0,
                            name: None,
                            description: None,
                        },
                    };
                    let id = w.interface(&desc).map_err(write_err)?;
                    ids[idx] = Some(id);
                    id
                }
            };
            rw.rewrite_frame(p.linktype, &mut p.data);
            let comment = p.comment.as_deref().map(|c| rewrite_text(&mut rw.map, c));
            let ts =
                p.ts.0
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(p.ts.1));
            w.packet(id, ts, &p.data, p.orig_len, p.direction, comment.as_deref())
                .map_err(write_err)?;
            summary.packets += 1;
        }
        let file = w.finish().map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, output).map_err(|source| Error::Write {
        path: output.to_path_buf(),
        source,
    })?;
    summary.stats = rw.stats;
    Ok(summary)
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

/// The section's description with IPv4 addresses in its comments rewritten.
fn text_section(s: &Section, map: &mut KeyedMap) -> Section {
    Section {
        comments: s.comments.iter().map(|c| rewrite_text(map, c)).collect(),
        ..s.clone()
    }
}

fn application(s: &Section) -> String {
    let me = format!("bedlab {} anonymise", env!("CARGO_PKG_VERSION"));
    match &s.application {
        Some(a) => format!("{a}; {me}"),
        None => me,
    }
}

/// Replaces every dotted-quad IPv4 address in free text (comments, interface names) by
/// its anonymised form. A run of digits and dots that is not exactly four octets (a
/// version number such as 4.0.17, or 1.2.3.4.5) is left alone.
pub fn rewrite_text(map: &mut KeyedMap, text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
            j += 1;
        }
        let mut run = &text[i..j];
        // A sentence may end right after an address.
        if run.ends_with('.') && run.matches('.').count() == 4 {
            run = &run[..run.len() - 1];
        }
        let next_ok = !matches!(b.get(i + run.len()), Some(c) if c.is_ascii_alphanumeric());
        if let (Some(a), true) = (parse_quad(run), next_ok) {
            out.push_str(&text[copied..i]);
            out.push_str(&map.v4(a).to_string());
            copied = i + run.len();
        }
        i = j;
    }
    out.push_str(&text[copied..]);
    out
}

fn parse_quad(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty() || p.len() > 3) {
        return None;
    }
    s.parse().ok()
}
