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
        let dur = cap.records.last().map_or(0, |r| r.ts_ns).saturating_sub(self.t0);
        let _ = writeln!(
            o,
            "{}: {} frames, {} 6bed4 datagrams ({}), over {:.1} s",
            cap.name,
            cap.stats.frames,
            cap.stats.tunnel,
            counts_text(cap),
            dur as f64 / 1e9
        );
        let tun: Vec<&Decoded> = cap.records.iter().filter(|r| r.layer == Layer::Inner).collect();
        if !tun.is_empty() {
            let noise = tun.iter().filter(|r| r.noise).count();
            let _ = writeln!(
                o,
                "{} packets on a 6bed4 TUN ({noise} of them the kernel's own: MLD, its RS, DAD)",
                tun.len()
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
            "counts": crate::conformance::decode::kind_counts(cap),
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

fn counts_text(cap: &DecodedCapture) -> String {
    let c = crate::conformance::decode::kind_counts(cap);
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
    /// The report's facts about a capture; times since `t0`.
    pub fn build(cap: &DecodedCapture, v: &View<'_>, t0: u64) -> Facts {
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
            ..Facts::default()
        };
        let peers = v.peers();
        // One walk over the packets in capture order (the records are read in the order
        // they lie in memory): per peer its RSs and keepalives (few), its data counts, and
        // the per-pair tallies of `paths`.
        let mut sent_by: Vec<Vec<&Decoded>> = vec![Vec::new(); peers.len()];
        let mut counts: Vec<(usize, usize)> = vec![(0, 0); peers.len()];
        let mut tally = PairTally::default();
        for (first, _) in v.packets() {
            let Some(p) = first.src().and_then(|s| v.peer_of_socket(s)) else {
                continue;
            };
            match first.kind {
                Kind::Rs { .. } | Kind::Keepalive => {
                    if let Some(l) = sent_by.get_mut(p) {
                        l.push(first);
                    }
                }
                Kind::Data { .. } => {
                    if let Some(c) = counts.get_mut(p) {
                        match first.path {
                            Some(PathKind::ViaRouter) => c.0 += 1,
                            Some(PathKind::Direct) => c.1 += 1,
                            None => {}
                        }
                    }
                }
                _ => {}
            }
            tally.add(v, p, first);
        }
        for (i, p) in peers.iter().enumerate() {
            let mine = &sent_by[i];
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
            // Address acquisition.
            let rs: Vec<&&Decoded> = mine
                .iter()
                .filter(|r| matches!(r.kind, Kind::Rs { .. }))
                .collect();
            pf.acquisition = match (rs.first(), p.ras.first()) {
                (_, Some(&(t, idx))) => {
                    let ra = &cap.records[idx.min(cap.records.len().saturating_sub(1))];
                    let you =
                        ra_you_are(ra).map_or("no embedded endpoint".into(), |e| format!("\"you are {e}\""));
                    let after = rs.first().map_or(String::new(), |r| {
                        format!(" after {} RS(s) from {}", rs.len(), rel(r.ts_ns, t0))
                    });
                    format!("RA at {} (frame {}){after}: {you}", rel(t, t0), ra.frame)
                }
                (Some(first), None) => format!(
                    "{} RS(s) from {} (frames {}), no valid RA reached it",
                    rs.len(),
                    rel(first.ts_ns, t0),
                    rs.iter()
                        .take(8)
                        .map(|r| r.frame.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, None) => "no RS or RA seen (the capture starts after it had an address?)".into(),
            };
            // Keepalives.
            let ka: Vec<&&Decoded> = mine
                .iter()
                .filter(|r| matches!(r.kind, Kind::Keepalive))
                .collect();
            pf.keepalives = if ka.is_empty() {
                "none".into()
            } else {
                let mut gaps: Vec<u64> = ka
                    .windows(2)
                    .map(|w| w[1].ts_ns.saturating_sub(w[0].ts_ns))
                    .collect();
                gaps.sort_unstable();
                let ttls: BTreeSet<u8> = ka
                    .iter()
                    .filter_map(|r| r.outer.as_ref().map(|o| o.ttl))
                    .collect();
                let ttls: Vec<String> = ttls.iter().map(|t| t.to_string()).collect();
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
                    Some(t) if ka[0].ts_ns >= t => {
                        format!(", first {} after the address", rel(ka[0].ts_ns, t))
                    }
                    Some(_) => ", first BEFORE the address was held".into(),
                    None => String::new(),
                };
                format!("{} sent, {period}, TTL {}{first_after}", ka.len(), ttls.join("/"))
            };
            let (via, direct) = counts.get(i).copied().unwrap_or((0, 0));
            pf.data = format!("{via} packet(s) via the router, {direct} direct");
            f.peers.push(pf);
        }
        f.paths = paths(cap, v, tally);
        for rb in v.rebindings() {
            let name = peers.get(rb.peer).map_or("?", |p| p.name.as_str());
            let recovered = recovered(v, rb.peer, rb.new, rb.at_ns);
            f.rebindings.push(format!(
                "{name}: {} → {} at {} (frame {}); {recovered}",
                rb.old,
                rb.new,
                rel(rb.at_ns, t0),
                rb.frame
            ));
        }
        f
    }
}

/// Whether a peer recovered from a rebinding: an RA carried the new mapping to it, and it
/// then sent from an address naming the new mapping.
fn recovered(v: &View<'_>, peer: usize, new: Endpoint, at: u64) -> String {
    let ra = v
        .packets()
        .find(|(f, _)| View::is_ra(f) && f.from_router && f.dst() == Some(new) && f.ts_ns >= at);
    let Some((ra, _)) = ra else {
        return "not recovered: no RA carried the new mapping to it".into();
    };
    let moved = v.packets().map(|p| p.0).find(|r| {
        r.ts_ns > ra.ts_ns
            && r.src().and_then(|s| v.peer_of_socket(s)) == Some(peer)
            && r.inner.is_some_and(|h| r.profile.decode(&h.src) == Some(new))
    });
    match moved {
        Some(r) => format!(
            "recovered: RA with the new mapping (frame {}), new address in use from frame {}",
            ra.frame, r.frame
        ),
        None => format!(
            "not recovered: the RA with the new mapping (frame {}) was not followed by traffic from the new address",
            ra.frame
        ),
    }
}

/// What `paths` reports, gathered packet by packet: per pair of peers (lower index
/// first) the direct NSs, direct NAs, direct data and data via the router; and the NS/NA
/// sent directly to endpoints no peer owns, with their sender (listed per sender in
/// capture order, as a walk of each peer's packets would).
#[derive(Default)]
struct PairTally {
    pairs: BTreeMap<(usize, usize), (usize, usize, usize, usize)>,
    stray: Vec<(usize, String)>,
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
            Some(PathKind::Direct) => r.dst().and_then(|d| v.peer_of_endpoint(d)),
            _ => r.inner.and_then(|h| {
                let k = u128::from(h.dst);
                *self
                    .owner
                    .entry(((k >> 64) as u64, k as u64))
                    .or_insert_with(|| v.peer_of_address(&h.dst))
            }),
        };
        if r.path == Some(PathKind::Direct) && (is_ns || is_na) && to.is_none() {
            if let Some(d) = r.dst() {
                self.stray
                    .push((a, format!("frame {} {} to {d}", r.frame, r.kind.label())));
            }
            return;
        }
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
fn paths(cap: &DecodedCapture, v: &View<'_>, tally: PairTally) -> Vec<String> {
    let peers = v.peers();
    let mut out = Vec::new();
    let PairTally { pairs, mut stray, .. } = tally;
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
        let ns = cap.sent().filter(|r| matches!(r.kind, Kind::Ns { .. })).count();
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
