//! `bedlab check` and `bedlab decode`: the conformance decoder and check registry
//! ([`crate::conformance::decode`], [`crate::conformance::checks`]) for a person holding one
//! capture file.
//!
//! Nothing here judges anything: the verdicts are the registry's. This module only says
//! what the decoder and the checks' shared analysis ([`View`]) found, in the order a person
//! asks: who is here (peers, their external mappings, the router), did they get addresses,
//! do they keep their mappings alive, did they find direct paths, did a NAT move them and
//! did they recover, and then the verdict table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use serde_json::json;

use crate::conformance::checks::{View, REGISTRY};
use crate::conformance::decode::{addr, Decoded, DecodedCapture, Endpoint, Kind, Layer, PathKind, Profile};
use crate::conformance::model::{CheckResult, Verdict};

/// Seconds since `t0`, for people.
fn rel(ns: u64, t0: u64) -> String {
    format!("{:.3}s", ns.saturating_sub(t0) as f64 / 1e9)
}

/// The endpoint a Router Advertisement tells its receiver it has: the first PIO's embedding
/// (layout C) in `current`, the destination's identifier (layout V) in `v01`.
pub fn ra_you_are(r: &Decoded) -> Option<Endpoint> {
    let Kind::Ra { prefixes, dst, .. } = &r.kind else {
        return None;
    };
    match r.profile {
        Profile::V01 => addr::decode_v(dst),
        Profile::Current => prefixes
            .iter()
            .find(|p| p.on_link || p.autonomous)
            .map(|p| addr::decode_c(&p.prefix).0)
            .filter(|e| e.port() != 0),
    }
}

/// One line per datagram (and per TUN packet), tshark-like (frame number, seconds since
/// `t0`: pass the capture's first frame's time to match tshark's), with 6bed4's meaning.
pub fn decode_lines(cap: &DecodedCapture, t0: u64) -> String {
    let mut out = Vec::new();
    let _ = write_decode_lines(cap, t0, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`decode_lines`] written to `out` as they are made: the text of a large capture is
/// several times the size of its records, and is never held whole.
pub fn write_decode_lines(
    cap: &DecodedCapture,
    t0: u64,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    for r in &cap.records {
        writeln!(out, "{}", decode_line(r, t0))?;
    }
    Ok(())
}

/// The line for one record.
pub fn decode_line(r: &Decoded, t0: u64) -> String {
    let secs = r.ts_ns.saturating_sub(t0) as f64 / 1e9;
    let ends = match (&r.outer, r.layer) {
        (Some(o), _) if matches!(r.kind, Kind::IcmpError { v6: false, .. }) => {
            format!("{} → {}", o.src.ip(), o.dst.ip())
        }
        (Some(o), _) => format!("{} → {}", o.src, o.dst),
        (None, Layer::Inner) => {
            let tun = r.interface.as_deref().unwrap_or("tun");
            match &r.inner {
                Some(h) => format!("{tun}: {} → {}", h.src, h.dst),
                None => tun.to_string(),
            }
        }
        (None, Layer::Tunnel) => String::new(),
    };
    let mut what = describe(r);
    if r.noise {
        what.push_str(" (the kernel's own)");
    }
    if !r.issues.is_empty() {
        let _ = write!(what, "  [! {}]", r.issues.join("; "));
    }
    format!("{:>6} {:>11.6}  {ends:<45} {what}", r.frame, secs)
}

fn flags_text(flags: u8) -> String {
    let f: Vec<&str> = [(0x80, "R"), (0x40, "S"), (0x20, "O")]
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, c)| *c)
        .collect();
    if f.is_empty() {
        "none".into()
    } else {
        f.join(",")
    }
}

/// An address with the endpoint it embeds, when it is a 6bed4 one.
fn named(a: &Ipv6Addr, profile: Profile) -> String {
    if a.is_unspecified() || addr::is_multicast(a) || a.octets()[8..] == [0; 8] {
        return a.to_string();
    }
    match profile.decode(a) {
        Some(ep) if ep.port() != 0 => format!("{a} (= {ep})"),
        _ => a.to_string(),
    }
}

fn describe(r: &Decoded) -> String {
    let path = match r.path {
        Some(PathKind::Direct) => " direct",
        Some(PathKind::ViaRouter) => " via router",
        None => "",
    };
    match &r.kind {
        Kind::Rs { slla } => {
            let from = r.inner.map_or("?".to_string(), |h| h.src.to_string());
            match slla {
                Some(ll) => format!("RS from {from} (SLLA {})", addr::fmt_ll(ll)),
                None => format!("RS from {from}"),
            }
        }
        Kind::Ra {
            prefixes, lifetimes, ..
        } => {
            let pfx: Vec<String> = prefixes
                .iter()
                .map(|p| format!("{}/{}", p.prefix, p.len))
                .collect();
            let mut s = format!(
                "RA prefix={}",
                if pfx.is_empty() {
                    "none".into()
                } else {
                    pfx.join(",")
                }
            );
            if let Some(ep) = ra_you_are(r) {
                let _ = write!(s, " → you are {ep}");
            }
            let _ = write!(s, " (router lifetime {} s)", lifetimes.router);
            s
        }
        Kind::Ns { target, .. } => format!("NS{path} target={}", named(target, r.profile)),
        Kind::Na { target, flags, .. } => {
            format!(
                "NA{path} target={} flags={}",
                named(target, r.profile),
                flags_text(*flags)
            )
        }
        Kind::Keepalive => match &r.outer {
            Some(o) => format!("KA ttl={}", o.ttl),
            None => "KA".into(),
        },
        Kind::Data {
            src, dst, icmp_type, ..
        } => {
            let what = match icmp_type {
                Some(128) => "echo request".to_string(),
                Some(129) => "echo reply".to_string(),
                Some(t) => format!("ICMPv6 type {t}"),
                None => "data".to_string(),
            };
            let path = if r.layer == Layer::Inner {
                " on the TUN"
            } else {
                path
            };
            format!(
                "{what}{path} {} → {}",
                named(src, r.profile),
                named(dst, r.profile)
            )
        }
        Kind::IcmpError {
            v6,
            icmp_type,
            code,
            about,
        } => {
            let name = match (v6, icmp_type, code) {
                (false, 3, 3) => "port unreachable".to_string(),
                (false, 3, 1) => "host unreachable".to_string(),
                (false, 3, 4) => "fragmentation needed".to_string(),
                (false, 11, _) => "time exceeded".to_string(),
                (true, 1, _) => "destination unreachable".to_string(),
                (true, 2, _) => "packet too big".to_string(),
                (true, 3, _) => "time exceeded".to_string(),
                _ => format!("type {icmp_type} code {code}"),
            };
            let v = if *v6 { "ICMPv6" } else { "ICMP" };
            match about {
                Some((a, b)) => format!("{v} {name} about {a} → {b}"),
                None => format!("{v} {name}"),
            }
        }
        Kind::Malformed { why } => format!("malformed: {why}"),
    }
}

/// Everything `check` prints, built once for the text and the JSON forms.
#[derive(Debug)]
pub struct CheckReport<'a> {
    pub cap: &'a DecodedCapture,
    pub results: Vec<CheckResult>,
    facts: Facts,
    t0: u64,
}

/// What the report says about the capture, apart from the verdicts: built apart from them
/// ([`Facts::build`]), so that `check` can make it while the checks run.
#[derive(Debug, Default)]
pub struct Facts {
    routers: Vec<String>,
    peers: Vec<PeerFacts>,
    paths: Vec<String>,
    rebindings: Vec<String>,
    /// Tunnel messages sent per kind (every packet's first sighting, injected ones too).
    counts: BTreeMap<&'static str, usize>,
    /// The capture's last timestamp.
    end_ns: u64,
    /// Packets on a 6bed4 TUN, and how many of them were the kernel's own.
    tun: (usize, usize),
}

#[derive(Debug, Default, serde::Serialize)]
struct PeerFacts {
    name: String,
    sockets: Vec<String>,
    mappings: Vec<String>,
    addresses: Vec<String>,
    acquisition: String,
    keepalives: String,
    data: String,
}

impl<'a> CheckReport<'a> {
    /// Builds the report from the decoded capture, its view and the registry's results;
    /// times are given since `t0` (the capture's first frame, as tshark counts).
    pub fn new(
        cap: &'a DecodedCapture,
        view: &View<'_>,
        results: Vec<CheckResult>,
        t0: u64,
    ) -> CheckReport<'a> {
        let facts = Facts::build(cap, view, t0);
        CheckReport::with_facts(cap, results, facts, t0)
    }

    /// [`CheckReport::new`] with facts already built (by [`Facts::build`] on the same
    /// capture, view and `t0`).
    pub fn with_facts(
        cap: &'a DecodedCapture,
        results: Vec<CheckResult>,
        facts: Facts,
        t0: u64,
    ) -> CheckReport<'a> {
        CheckReport {
            cap,
            results,
            facts,
            t0,
        }
    }

    /// Whether a verdict means "exit non-zero".
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|r| matches!(r.verdict, Verdict::Fail | Verdict::Error))
    }

    /// The person's version.
    pub fn text(&self) -> String {
        let cap = self.cap;
        let mut o = String::new();
        let dur = self.facts.end_ns.saturating_sub(self.t0);
        let _ = writeln!(
            o,
            "{}: {} frames, {} 6bed4 datagrams ({}), over {:.1} s",
            cap.name,
            cap.stats.frames,
            cap.stats.tunnel,
            counts_text(&self.facts.counts),
            dur as f64 / 1e9
        );
        let (tun, noise) = self.facts.tun;
        if tun > 0 {
            let _ = writeln!(
                o,
                "{tun} packets on a 6bed4 TUN ({noise} of them the kernel's own: MLD, its RS, DAD)"
            );
        }
        if let Some(e) = &cap.read_error {
            let _ = writeln!(
                o,
                "warning: the capture does not end cleanly: {e} (checked what came before)"
            );
        }
        let _ = writeln!(o, "\nrouter: {}", or_none(&self.facts.routers));
        if self.facts.peers.is_empty() {
            let _ = writeln!(o, "peers: none seen (no datagram from a peer's socket)");
        }
        for p in &self.facts.peers {
            let _ = writeln!(o, "\npeer {}: socket {}", p.name, p.sockets.join(", "));
            let _ = writeln!(
                o,
                "  external mapping (as the router saw it): {}",
                or_none(&p.mappings)
            );
            let _ = writeln!(o, "  addresses used: {}", or_none(&p.addresses));
            let _ = writeln!(o, "  address acquisition: {}", p.acquisition);
            let _ = writeln!(o, "  keepalives: {}", p.keepalives);
            let _ = writeln!(o, "  data: {}", p.data);
        }
        let _ = writeln!(o, "\ndirect paths:");
        for l in &self.facts.paths {
            let _ = writeln!(o, "  {l}");
        }
        let _ = writeln!(o, "\nNAT rebindings:");
        if self.facts.rebindings.is_empty() {
            let _ = writeln!(o, "  none (no peer's external mapping changed)");
        }
        for l in &self.facts.rebindings {
            let _ = writeln!(o, "  {l}");
        }
        let _ = writeln!(o, "\nverdicts:");
        let mut na = Vec::new();
        for r in &self.results {
            if r.verdict == Verdict::NotApplicable {
                na.push(r.id.as_str());
                continue;
            }
            let frames: BTreeSet<u64> = r.evidence.iter().flat_map(|e| e.frames.iter().copied()).collect();
            let frames = if frames.is_empty() {
                String::new()
            } else {
                let f: Vec<String> = frames.iter().take(8).map(|f| f.to_string()).collect();
                format!(" [frames {}]", f.join(", "))
            };
            let _ = writeln!(
                o,
                "  {:<6} {:<5} {}{frames}",
                r.id,
                r.verdict.to_string(),
                r.message
            );
        }
        if !na.is_empty() {
            let _ = writeln!(
                o,
                "  N/A (nothing in this capture to judge; reasons in --json): {}",
                na.join(", ")
            );
        }
        let mut tally: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.results {
            *tally.entry(r.verdict.to_string()).or_default() += 1;
        }
        let t: Vec<String> = ["FAIL", "ERROR", "WARN", "PASS", "INFO", "N/A"]
            .iter()
            .filter_map(|k| tally.get(*k).map(|n| format!("{n} {k}")))
            .collect();
        let _ = writeln!(o, "\n{}", t.join(", "));
        o
    }

    /// The machines' version.
    pub fn json(&self) -> serde_json::Value {
        let cap = self.cap;
        json!({
            "capture": cap.name,
            "frames": cap.stats.frames,
            "datagrams": cap.stats.tunnel,
            "counts": self.facts.counts,
            "read_error": cap.read_error,
            "routers": self.facts.routers,
            "peers": self.facts.peers,
            "direct_paths": self.facts.paths,
            "rebindings": self.facts.rebindings,
            "results": self.results,
            "failed": self.failed(),
        })
    }
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none seen".into()
    } else {
        v.join(", ")
    }
}

fn counts_text(c: &BTreeMap<&'static str, usize>) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median of a non-empty sorted list.
fn median(v: &[u64]) -> u64 {
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Facts {
    /// The report's facts about a capture (`v`'s: `_cap` is kept for the callers that
    /// pass it); times since `t0`. A [`FactsWalk`] over every tunnel packet of the view.
    pub fn build(_cap: &DecodedCapture, v: &View<'_>, t0: u64) -> Facts {
        let mut w = FactsWalk::start(v, t0);
        for (f, l) in v.all_packets() {
            w.packet(v, f, l);
        }
        w.finish(v)
    }
}

/// A peer's packets as the report tells them, gathered as they pass.
#[derive(Debug, Default)]
struct PeerTally {
    /// RSs sent: how many, the first one's time, the first 8 frames.
    rs: usize,
    rs_first_ns: Option<u64>,
    rs_frames: Vec<u64>,
    /// Keepalives sent: how many, the first and last one's time, the gaps between them
    /// (one per keepalive: they grow with time, not with data), the TTLs seen.
    ka: usize,
    ka_first_ns: Option<u64>,
    ka_last_ns: u64,
    ka_gaps: Vec<u64>,
    ka_ttls: BTreeSet<u8>,
    /// Data packets sent via the router and direct.
    via: usize,
    direct: usize,
}

/// The first packet a peer sent from the endpoint an RA named, after each such RA: one
/// answer per RA (RAs are control packets), filled as the packets pass in time order.
#[derive(Debug, Default)]
struct AfterRas {
    /// The frame of the first packet after the RA, per RA of [`FactsWalk::ras_to`]'s list
    /// for that endpoint (a prefix: the RAs are in time order).
    first_frame: Vec<u64>,
}

/// The report's facts gathered in one walk over the capture's tunnel packets (every
/// packet, injected ones too, in packet order: what the checks' shared walk sees), with
/// state that does not grow with the data: per peer, per pair of peers, per endpoint, and
/// lists of control packets. [`Facts::build`] runs it over a capture held in memory; a
/// front end that streams a capture can feed it the same packets.
///
/// `packet` reads only what a check's walk may read ([`View::peer_of_socket`],
/// [`View::peer_of_address`], the packet itself); mappings (which `paths` needs for
/// packets sent directly to an endpoint that is no peer's socket) are looked up in
/// `finish`, when they are complete.
pub struct FactsWalk {
    t0: u64,
    peers: Vec<PeerTally>,
    tally: PairTally,
    /// Per tunnel message kind, the packets sent (first sightings, injected ones too).
    counts: BTreeMap<&'static str, usize>,
    /// The RAs from the router (control packets, not injected) per endpoint they were sent
    /// to, in packet order: (time, frame).
    ras_to: BTreeMap<Endpoint, Vec<(u64, u64)>>,
    /// Per (peer, endpoint an RA was sent to): the first packet from an address naming
    /// the endpoint after each of those RAs (what "recovered" asks after a rebinding).
    after_ras: BTreeMap<(usize, Endpoint), AfterRas>,
}

impl FactsWalk {
    /// Before the first packet: the peers and the router's RAs (control packets).
    pub fn start(v: &View<'_>, t0: u64) -> FactsWalk {
        let mut ras_to: BTreeMap<Endpoint, Vec<(u64, u64)>> = BTreeMap::new();
        for (f, _) in v.control_packets() {
            if View::is_ra(f) && f.from_router {
                if let Some(d) = f.dst() {
                    ras_to.entry(d).or_default().push((f.ts_ns, f.frame));
                }
            }
        }
        FactsWalk {
            t0,
            peers: v.peers().iter().map(|_| PeerTally::default()).collect(),
            tally: PairTally::default(),
            counts: BTreeMap::new(),
            ras_to,
            after_ras: BTreeMap::new(),
        }
    }

    /// One tunnel packet: its sender's sighting `f` and receiver's `l`, in packet order.
    pub fn packet(&mut self, v: &View<'_>, f: &Decoded, _l: &Decoded) {
        // Every message sent, injected or not (as `decode::kind_counts` counts them).
        *self.counts.entry(f.kind.label()).or_insert(0) += 1;
        if v.is_injected(f) {
            return;
        }
        let Some(p) = f.src().and_then(|s| v.peer_of_socket(s)) else {
            return;
        };
        if let Some(t) = self.peers.get_mut(p) {
            match f.kind {
                Kind::Rs { .. } => {
                    t.rs += 1;
                    t.rs_first_ns.get_or_insert(f.ts_ns);
                    if t.rs_frames.len() < 8 {
                        t.rs_frames.push(f.frame);
                    }
                }
                Kind::Keepalive => {
                    if t.ka_first_ns.is_some() {
                        t.ka_gaps.push(f.ts_ns.saturating_sub(t.ka_last_ns));
                    }
                    t.ka += 1;
                    t.ka_first_ns.get_or_insert(f.ts_ns);
                    t.ka_last_ns = f.ts_ns;
                    if let Some(o) = &f.outer {
                        t.ka_ttls.insert(o.ttl);
                    }
                }
                Kind::Data { .. } => match f.path {
                    Some(PathKind::ViaRouter) => t.via += 1,
                    Some(PathKind::Direct) => t.direct += 1,
                    None => {}
                },
                _ => {}
            }
        }
        self.tally.add(v, p, f);
        // Answers "the first packet from the new address after the RA" for every RA sent
        // to the endpoint this packet's source names (packets come in time order).
        if !self.ras_to.is_empty() {
            let named = f.inner.and_then(|h| f.profile.decode(&h.src));
            if let Some((e, ras)) = named.and_then(|e| Some((e, self.ras_to.get(&e)?))) {
                let a = self.after_ras.entry((p, e)).or_default();
                while let Some(&(t, _)) = ras.get(a.first_frame.len()) {
                    if t >= f.ts_ns {
                        break;
                    }
                    a.first_frame.push(f.frame);
                }
            }
        }
    }

    /// After the last packet: the facts.
    pub fn finish(self, v: &View<'_>) -> Facts {
        let t0 = self.t0;
        let cap = v.cap;
        let mut f = Facts {
            routers: cap
                .routers
                .iter()
                .map(|r| {
                    let profile =
                        Profile::from_port(r.port()).map_or("extra port".into(), |p| p.name().to_string());
                    format!("{r} (profile {profile})")
                })
                .collect(),
            end_ns: v.t_end(),
            ..Facts::default()
        };
        let (mut tun, mut noise) = (0, 0);
        for r in v.tun_records() {
            tun += 1;
            noise += usize::from(r.noise);
        }
        f.tun = (tun, noise);
        let peers = v.peers();
        for (i, p) in peers.iter().enumerate() {
            let none = PeerTally::default();
            let t = self.peers.get(i).unwrap_or(&none);
            let mut pf = PeerFacts {
                name: p.name.clone(),
                sockets: p.sockets.iter().map(|s| s.to_string()).collect(),
                mappings: p
                    .mappings
                    .iter()
                    .map(|(t, ep, frame)| format!("{ep} from {} (frame {frame})", rel(*t, t0)))
                    .collect(),
                addresses: p.addresses.iter().map(|a| named(a, Profile::Current)).collect(),
                ..PeerFacts::default()
            };
            // Address acquisition. The RA is a control record, read by its index.
            let records = v.records();
            let first_ra = p
                .ras
                .first()
                .and_then(|&(at, idx)| Some((at, records.get(idx.min(records.len().saturating_sub(1)))?)));
            pf.acquisition = match (t.rs_first_ns, first_ra) {
                (_, Some((at, ra))) => {
                    let you =
                        ra_you_are(ra).map_or("no embedded endpoint".into(), |e| format!("\"you are {e}\""));
                    let after = t.rs_first_ns.map_or(String::new(), |first| {
                        format!(" after {} RS(s) from {}", t.rs, rel(first, t0))
                    });
                    format!("RA at {} (frame {}){after}: {you}", rel(at, t0), ra.frame)
                }
                (Some(first), None) => format!(
                    "{} RS(s) from {} (frames {}), no valid RA reached it",
                    t.rs,
                    rel(first, t0),
                    t.rs_frames
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, None) => "no RS or RA seen (the capture starts after it had an address?)".into(),
            };
            // Keepalives.
            pf.keepalives = match t.ka_first_ns {
                None => "none".into(),
                Some(first) => {
                    let mut gaps = t.ka_gaps.clone();
                    gaps.sort_unstable();
                    let ttls: Vec<String> = t.ka_ttls.iter().map(|t| t.to_string()).collect();
                    let period = if gaps.is_empty() {
                        "one only".to_string()
                    } else {
                        format!(
                            "period {:.1} s (min {:.1}, max {:.1})",
                            median(&gaps) as f64 / 1e9,
                            gaps.first().copied().unwrap_or(0) as f64 / 1e9,
                            gaps.last().copied().unwrap_or(0) as f64 / 1e9
                        )
                    };
                    let first_after = match p.address_since() {
                        Some(since) if first >= since => {
                            format!(", first {} after the address", rel(first, since))
                        }
                        Some(_) => ", first BEFORE the address was held".into(),
                        None => String::new(),
                    };
                    format!("{} sent, {period}, TTL {}{first_after}", t.ka, ttls.join("/"))
                }
            };
            pf.data = format!("{} packet(s) via the router, {} direct", t.via, t.direct);
            f.peers.push(pf);
        }
        for rb in v.rebindings() {
            let name = peers.get(rb.peer).map_or("?", |p| p.name.as_str());
            let recovered = self.recovered(rb.peer, rb.new, rb.at_ns);
            f.rebindings.push(format!(
                "{name}: {} → {} at {} (frame {}); {recovered}",
                rb.old,
                rb.new,
                rel(rb.at_ns, t0),
                rb.frame
            ));
        }
        let ns = self.counts.get("NS").copied().unwrap_or(0);
        f.paths = paths(v, self.tally, ns);
        f.counts = self.counts;
        f
    }

    /// Whether a peer recovered from a rebinding: an RA carried the new mapping to it, and
    /// it then sent from an address naming the new mapping.
    fn recovered(&self, peer: usize, new: Endpoint, at: u64) -> String {
        let ras = self.ras_to.get(&new).map_or(&[][..], |l| l.as_slice());
        let Some(k) = ras.iter().position(|&(t, _)| t >= at) else {
            return "not recovered: no RA carried the new mapping to it".into();
        };
        let ra_frame = ras[k].1;
        let moved = self
            .after_ras
            .get(&(peer, new))
            .and_then(|a| a.first_frame.get(k));
        match moved {
            Some(frame) => format!(
                "recovered: RA with the new mapping (frame {ra_frame}), new address in use from frame {frame}"
            ),
            None => format!(
                "not recovered: the RA with the new mapping (frame {ra_frame}) was not followed by traffic from the new address"
            ),
        }
    }
}

/// What `paths` reports, gathered packet by packet: per pair of peers (lower index
/// first) the direct NSs, direct NAs, direct data and data via the router; and the NS/NA
/// sent directly to endpoints no peer owns, with their sender (listed per sender in
/// capture order, as a walk of each peer's packets would).
///
/// A packet sent directly to an endpoint that is no peer's socket may be for a peer's
/// mapping, known for sure only at the end: such packets are kept per (sender, endpoint)
/// (counts) and, for NS/NA (control packets), one by one, and resolved in `paths`.
#[derive(Default)]
struct PairTally {
    pairs: BTreeMap<(usize, usize), (usize, usize, usize, usize)>,
    /// Direct NS/NA to an endpoint that is no peer's socket: (sender, endpoint, whether
    /// an NS, the line for `stray`), in packet order.
    unowned_nd: Vec<(usize, Endpoint, bool, String)>,
    /// Per (sender, endpoint that is no peer's socket): the direct data packets sent
    /// there (any packet at all makes the pair known once the endpoint is resolved).
    unowned: BTreeMap<(usize, Endpoint), usize>,
    /// The first peer owning an inner address (`View::peer_of_address`, which scans
    /// every peer), remembered: asked for nearly every packet.
    /// Keyed by the address's two halves (two rounds of the hasher, not sixteen).
    owner: crate::conformance::decode::FastMap<(u64, u64), Option<usize>>,
}

impl PairTally {
    /// Counts packet `r` sent by peer `a`.
    fn add(&mut self, v: &View<'_>, a: usize, r: &Decoded) {
        let is_ns = matches!(r.kind, Kind::Ns { .. });
        let is_na = matches!(r.kind, Kind::Na { .. });
        let is_data = matches!(r.kind, Kind::Data { .. });
        // The peer it is for: by outer destination when direct, else by inner destination.
        let to = match r.path {
            Some(PathKind::Direct) => {
                let Some(d) = r.dst() else { return };
                match v.peer_of_socket(d) {
                    Some(b) => Some(b),
                    None => {
                        // Maybe a peer's mapping: resolved in `paths`.
                        if is_ns || is_na {
                            let line = format!("frame {} {} to {d}", r.frame, r.kind.label());
                            self.unowned_nd.push((a, d, is_ns, line));
                        }
                        *self.unowned.entry((a, d)).or_default() += usize::from(is_data);
                        return;
                    }
                }
            }
            _ => r.inner.and_then(|h| {
                let k = u128::from(h.dst);
                *self
                    .owner
                    .entry(((k >> 64) as u64, k as u64))
                    .or_insert_with(|| v.peer_of_address(&h.dst))
            }),
        };
        let Some(b) = to else { return };
        if a == b {
            return;
        }
        let key = (a.min(b), a.max(b));
        let e = self.pairs.entry(key).or_default();
        match (r.path, is_ns, is_na, is_data) {
            (Some(PathKind::Direct), true, _, _) => e.0 += 1,
            (Some(PathKind::Direct), _, true, _) => e.1 += 1,
            (Some(PathKind::Direct), _, _, true) => e.2 += 1,
            (_, _, _, true) => e.3 += 1,
            _ => {}
        }
    }
}

/// Direct paths between peers: per pair that exchanged anything, whether traffic went
/// direct and, if not, why not (no bypass NS; NSs to endpoints no peer owns; no NA back).
/// `ns` is the number of NSs sent (injected ones too). Reads the peers' mappings, complete
/// only after the walk.
fn paths(v: &View<'_>, tally: PairTally, ns: usize) -> Vec<String> {
    let peers = v.peers();
    let mut out = Vec::new();
    let PairTally {
        mut pairs,
        unowned_nd,
        unowned,
        ..
    } = tally;
    // What went directly to endpoints that are no peer's socket, now that every mapping is
    // known: to a peer (its mapping), or to no peer in this capture.
    for ((a, d), data) in unowned {
        match v.peer_of_endpoint(d) {
            Some(b) if b != a => pairs.entry((a.min(b), a.max(b))).or_default().2 += data,
            _ => {}
        }
    }
    let mut stray: Vec<(usize, String)> = Vec::new();
    for (a, d, is_ns, line) in unowned_nd {
        match v.peer_of_endpoint(d) {
            None => stray.push((a, line)),
            Some(b) if b != a => {
                let e = pairs.entry((a.min(b), a.max(b))).or_default();
                if is_ns {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
            Some(_) => {}
        }
    }
    // Per sender, in capture order (a stable sort).
    stray.sort_by_key(|&(a, _)| a);
    let mut stray: Vec<String> = stray.into_iter().map(|(_, s)| s).collect();
    for ((a, b), (ns, na, direct, via)) in &pairs {
        let (na_, nb) = (&peers[*a].name, &peers[*b].name);
        let line = if *direct > 0 {
            format!("{na_} ↔ {nb}: direct ({direct} data packet(s) direct, {via} via the router; {ns} NS, {na} NA direct)")
        } else {
            let how = if *via > 0 {
                format!("via the router only ({via} data packet(s))")
            } else {
                "no data between them".to_string()
            };
            let why = if *ns == 0 {
                "no bypass NS was sent".to_string()
            } else if *na == 0 {
                format!("{ns} bypass NS sent directly, no NA came back (a NAT or firewall in the way?)")
            } else {
                format!("{ns} NS and {na} NA exchanged directly, yet no data went direct")
            };
            format!("{na_} ↔ {nb}: {how}: {why}")
        };
        out.push(line);
    }
    if !stray.is_empty() {
        let n = stray.len();
        stray.truncate(4);
        out.push(format!(
            "{n} NS/NA sent directly to endpoints no peer in this capture owns (decoded from the target in the wrong layout?): {}{}",
            stray.join("; "),
            if n > 4 { "; ..." } else { "" }
        ));
    }
    if out.is_empty() {
        out.push(if peers.len() < 2 {
            format!("none: fewer than two peers in this capture ({} NS seen)", ns)
        } else {
            "none: the peers exchanged no traffic".into()
        });
    }
    out
}

/// The registry's id order, for sorting results from anywhere.
pub fn registry_ids() -> Vec<&'static str> {
    REGISTRY.iter().map(|d| d.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::checks::{Expectations, Inputs};
    use crate::conformance::decode::{decode_bytes, kind_counts, DecodeOptions};
    use crate::field::gen::{generate, GenOptions};

    /// A generated capture (peers with direct paths and via the router, a rebinding the
    /// peer recovers from), analysed.
    fn generated(peers: usize, seed: u64) -> Inputs {
        let mut buf = Vec::new();
        generate(
            &mut buf,
            &GenOptions {
                bytes: 300_000,
                peers,
                seed,
            },
        )
        .expect("generating a capture");
        let cap = decode_bytes(&buf, DecodeOptions::default()).expect("decoding the generated capture");
        Inputs::new(vec![cap], Profile::Current, false, Expectations::default())
    }

    /// The facts as a walk over every packet with every mapping known computes them: the
    /// pair tallies with `peer_of_endpoint`, "recovered" as the first packet from the new
    /// address after the RA, data counts per peer.
    fn by_whole_walks(v: &View<'_>) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut tally = PairTally::default();
        let mut data = vec![(0usize, 0usize); v.peers().len()];
        for (r, _) in v.packets() {
            let Some(a) = r.src().and_then(|s| v.peer_of_socket(s)) else {
                continue;
            };
            if matches!(r.kind, Kind::Data { .. }) {
                match r.path {
                    Some(PathKind::ViaRouter) => data[a].0 += 1,
                    Some(PathKind::Direct) => data[a].1 += 1,
                    None => {}
                }
            }
            let to = match r.path {
                Some(PathKind::Direct) => r.dst().and_then(|d| v.peer_of_endpoint(d)),
                _ => r.inner.and_then(|h| v.peer_of_address(&h.dst)),
            };
            let (is_ns, is_na) = (
                matches!(r.kind, Kind::Ns { .. }),
                matches!(r.kind, Kind::Na { .. }),
            );
            if r.path == Some(PathKind::Direct) && (is_ns || is_na) && to.is_none() {
                if let Some(d) = r.dst() {
                    let line = format!("frame {} {} to {d}", r.frame, r.kind.label());
                    tally.unowned_nd.push((a, d, is_ns, line));
                }
                continue;
            }
            let Some(b) = to.filter(|&b| b != a) else { continue };
            let e = tally.pairs.entry((a.min(b), a.max(b))).or_default();
            match (r.path, is_ns, is_na, matches!(r.kind, Kind::Data { .. })) {
                (Some(PathKind::Direct), true, _, _) => e.0 += 1,
                (Some(PathKind::Direct), _, true, _) => e.1 += 1,
                (Some(PathKind::Direct), _, _, true) => e.2 += 1,
                (_, _, _, true) => e.3 += 1,
                _ => {}
            }
        }
        let ns = kind_counts(v.cap).get("NS").copied().unwrap_or(0);
        let recovered = v
            .rebindings()
            .iter()
            .map(|rb| {
                let ra = v.packets().map(|p| p.0).find(|f| {
                    View::is_ra(f) && f.from_router && f.dst() == Some(rb.new) && f.ts_ns >= rb.at_ns
                });
                let moved = ra.and_then(|ra| {
                    v.packets().map(|p| p.0).find(|r| {
                        r.ts_ns > ra.ts_ns
                            && r.src().and_then(|s| v.peer_of_socket(s)) == Some(rb.peer)
                            && r.inner.is_some_and(|h| r.profile.decode(&h.src) == Some(rb.new))
                    })
                });
                format!("{:?} {:?}", ra.map(|r| r.frame), moved.map(|r| r.frame))
            })
            .collect();
        let data = data
            .iter()
            .map(|(via, direct)| format!("{via} packet(s) via the router, {direct} direct"))
            .collect();
        (paths(v, tally, ns), recovered, data)
    }

    #[test]
    fn the_walk_gives_what_whole_walks_give() {
        for (peers, seed) in [(4, 1), (6, 2), (2, 3)] {
            let inputs = generated(peers, seed);
            let Some(v) = inputs.views().next() else {
                panic!("no view");
            };
            let facts = Facts::build(v.cap, &v, v.t0());
            let (paths, recovered, data) = by_whole_walks(&v);
            assert_eq!(facts.paths, paths, "{peers} peers");
            let got: Vec<String> = facts.peers.iter().map(|p| p.data.clone()).collect();
            assert_eq!(got, data);
            assert_eq!(facts.counts, kind_counts(v.cap));
            assert_eq!(facts.end_ns, v.cap.records.last().map_or(0, |r| r.ts_ns));
            assert_eq!(facts.rebindings.len(), recovered.len());
            for (line, want) in facts.rebindings.iter().zip(&recovered) {
                let want = match want.split_once(' ') {
                    Some(("None", _)) => "not recovered: no RA carried".to_string(),
                    Some((_, "None")) => "was not followed by traffic".to_string(),
                    Some((_, m)) => format!(
                        "new address in use from frame {}",
                        m.trim_start_matches("Some(").trim_end_matches(')')
                    ),
                    None => unreachable!(),
                };
                assert!(line.contains(&want), "{line} lacks {want}");
            }
        }
    }

    /// A rebinding whose peer recovered: the RA (frame) and the first packet from the new
    /// address after it.
    #[test]
    fn a_recovered_rebinding_names_the_ra_and_the_first_new_packet() {
        let inputs = generated(4, 1);
        let Some(v) = inputs.views().next() else {
            panic!("no view");
        };
        let facts = Facts::build(v.cap, &v, v.t0());
        assert_eq!(facts.rebindings.len(), 1, "{:?}", facts.rebindings);
        assert!(
            facts.rebindings[0].contains("; recovered: RA with the new mapping (frame "),
            "{}",
            facts.rebindings[0]
        );
        assert!(
            facts.paths.iter().any(|l| l.contains(": direct (")),
            "{:?}",
            facts.paths
        );
    }
}
