//! The check registry of `shared/spec/checks.md`: one function per check, reading only
//! decoded captures ([`crate::conformance::decode`]) and the scenario's [`Expectations`].
//!
//! A check knows nothing about which implementation produced the packets. It returns N/A
//! (with the reason) when the capture holds nothing it is about, or when it needs an
//! expectation the scenario did not give; never PASS for the absence of evidence. Every
//! verdict names the capture and a few representative frames (the first offending ones).
//!
//! Several capture points of one lab run show the same packet several times; checks judge
//! a sender by the first sighting of its packets (its own uplink) and a receiver by the last
//! (what arrived): see [`View`]. A field capture with a single interface has one sighting per
//! packet, and the same code applies.

mod af_ka;
mod en;
mod nd;
mod rs_ra;
#[cfg(test)]
mod tests;
mod view;

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::conformance::decode::{self, DecodeOptions, Decoded, DecodedCapture, PathKind, Profile};
use crate::conformance::model::{CheckResult, Evidence, Verdict};
use crate::conformance::trace::Roles;

pub(crate) use view::UnionFind;
pub use view::{is_control, Peer, Rebinding, Rec, SourceCheck, View, Window};

/// What a scenario expects; every field optional. Checks that need an absent one return N/A.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The configured keepalive period (KA-03, KA-05).
    pub keepalive_period: Option<Duration>,
    /// The configured keepalive TTL (KA-02; 3 when absent, the spec's default).
    pub keepalive_ttl: Option<u8>,
    /// Intervals between successive RSs; the last one repeats (RS-04).
    pub rs_schedule: Option<Vec<Duration>>,
    /// Expected path per peer pair (ND-05).
    pub paths: Vec<PathExpectation>,
    /// The NAT's UDP mapping timeout (KA-05).
    pub nat_udp_timeout: Option<Duration>,
    /// The negative corpus was injected (RA-07, RA-08, ND-08, EN-06; and injected frames are
    /// not held against the implementation by the other checks).
    pub injection: Option<Injection>,
    /// When the scenario forced a NAT rebinding, ns since the Unix epoch (RA-09).
    pub rebinding_at_ns: Option<u64>,
    /// Bypass probes allowed per attempt (ND-07).
    pub max_probes: Option<u32>,
    /// Minimum time between failed probe attempts (ND-07).
    pub probe_holddown: Option<Duration>,
    /// Lab timing tolerance added to every time limit (default 100 ms).
    pub tolerance: Option<Duration>,
}

/// An expected outcome for one pair of peers, by lane name (`peer-a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathExpectation {
    pub a: String,
    pub b: String,
    pub path: PathKind,
}

/// When and from where the negative corpus was injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injection {
    /// Start, ns since the Unix epoch (as capture timestamps).
    pub at_ns: u64,
    /// End, if known (else ten seconds after the start).
    pub until_ns: Option<u64>,
    /// The injector's IPv4 address (its own, or its NAT's public one): datagrams sent in the
    /// window with this source at any sighting, from a socket that sends junk in the window
    /// and nothing outside it, are the injected ones (a peer sharing the address keeps its
    /// own socket). Without it, the window's malformed or otherwise faulty datagrams are.
    pub source: Option<Ipv4Addr>,
}

/// Everything a check reads.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub captures: Vec<DecodedCapture>,
    /// The profile the scenario runs (datagrams carry their own, from port or layout).
    pub profile: Profile,
    /// Strict mode: documented 6bed4 deviations from RFC rules FAIL instead of WARN.
    pub strict: bool,
    pub expect: Expectations,
    pub roles: Roles,
    views: Vec<view::ViewData>,
}

impl Inputs {
    /// Analyses the captures once (packets, peers, rebindings) for all checks.
    pub fn new(
        captures: Vec<DecodedCapture>,
        profile: Profile,
        strict: bool,
        expect: Expectations,
    ) -> Inputs {
        Inputs::with_roles(captures, profile, strict, expect, Roles::default())
    }

    /// Like [`Inputs::new`], naming lanes (peers) with `roles`.
    pub fn with_roles(
        captures: Vec<DecodedCapture>,
        profile: Profile,
        strict: bool,
        expect: Expectations,
        roles: Roles,
    ) -> Inputs {
        let views = captures
            .iter()
            .map(|c| view::ViewData::build(c, &roles, &expect))
            .collect();
        Inputs {
            captures,
            profile,
            strict,
            expect,
            roles,
            views,
        }
    }

    /// The views of the captures, one each.
    pub fn views(&self) -> impl Iterator<Item = View<'_>> {
        self.captures
            .iter()
            .zip(&self.views)
            .map(|(c, d)| View::new(c, d, self))
    }

    /// The view of capture `i` whose data is streamed past through `window`.
    pub(crate) fn streamed_view<'s>(&'s self, i: usize, window: &'s view::Window) -> Option<View<'s>> {
        Some(View::streamed(
            self.captures.get(i)?,
            self.views.get(i)?,
            self,
            window,
        ))
    }

    /// The lab timing tolerance.
    pub fn tolerance_ns(&self) -> u64 {
        self.expect
            .tolerance
            .map_or(100_000_000, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
    }

    /// The verdict for a documented 6bed4 deviation: WARN, or FAIL in strict mode.
    pub fn deviation(&self) -> Verdict {
        if self.strict {
            Verdict::Fail
        } else {
            Verdict::Warn
        }
    }
}

/// A check's level as `checks.md` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fail,
    Warn,
    /// WARN under the 6bed4 profile, FAIL in strict mode.
    WarnStrictFail,
    /// WARN for a deviation, FAIL for the MUST part.
    WarnOrFail,
    /// FAIL, with an INFO part (a recorded parameter).
    FailInfo,
}

/// One entry of the registry.
#[derive(Clone, Copy)]
pub struct CheckDef {
    pub id: &'static str,
    pub title: &'static str,
    pub level: Level,
    pub source: &'static str,
    /// Whether the full check injects packets (only its passive half runs here).
    pub injects: bool,
    pub(crate) check: Check,
}

impl CheckDef {
    /// Whether it reads data in the shared walk over the packets.
    pub fn walks(&self) -> bool {
        matches!(self.check, Check::Walk(_))
    }

    /// Runs this check alone on `inputs` (every capture).
    pub fn run(&self, inputs: &Inputs) -> CheckResult {
        run_checks(inputs, &[self])
            .pop()
            .unwrap_or_else(|| missing(self.id))
    }
}

impl std::fmt::Debug for CheckDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDef")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How a check reads a capture.
///
/// Data (nearly every byte of a large capture) is read in **one walk over the packets
/// shared by every check** ([`Walk`]); what a check reads otherwise must not grow with
/// the data: control packets ([`View::control_packets`]: RS, RA, NS, NA, keepalives,
/// ICMP, malformed), the peers, capture-wide facts. This is what lets `bedlab check`
/// stream a capture of any size in bounded memory: the data packets need not be kept.
#[derive(Clone, Copy)]
pub(crate) enum Check {
    /// Reads control packets and capture-wide facts only.
    Whole(fn(&View<'_>) -> Finding),
    /// Reads data packets too: started before the shared walk, shown every packet, finished
    /// after it.
    Walk(for<'a> fn(&View<'a>) -> Box<dyn Walk<'a> + 'a>),
}

/// A check's part of the shared walk over a capture's packets.
///
/// What [`Walk::packet`] may read, so that the walk gives the same result whether the
/// capture's data is held in memory (a lab run) or streamed past (a large field capture):
/// - the packet (its sender's sighting `f` and receiver's `l`) and its other sightings
///   (`sightings`, `router_view`, `ends`, `source_check`, `sent_to`, `is_injected`);
/// - capture-wide facts: `cap.routers`, `cap.prefixes`, the peers' names, sockets,
///   addresses and RAs (`peer_of_socket`, `peer_of_address`), `router_node`, `t0`,
///   `t_end`, and control packets anywhere in the capture;
/// - the mappings and rebindings found so far (those with a frame up to the packet's);
/// - other data only within [`WALK_WINDOW_NS`] of the packet (`with_key_between`,
///   `with_own_key_between`).
///
/// It must keep state that does not grow with the number of data packets (counters,
/// per-peer or per-pair facts, `Offences`, which keeps a bounded digest), and it must
/// never walk the packets itself (`packets`, `all_packets`, `at_router`, `records`).
pub(crate) trait Walk<'a> {
    /// Every tunnel packet, injected ones too, in packet order (the order of
    /// [`View::all_packets`]).
    fn packet(&mut self, v: &View<'a>, f: &Decoded, l: &Decoded);
    /// After the last packet.
    fn finish(self: Box<Self>, v: &View<'a>) -> Finding;
}

/// How far from the packet it is shown a [`Walk`] may look at other data packets: the
/// relay window (2 s) plus the largest lab tolerance a scenario may set.
pub(crate) const WALK_WINDOW_NS: u64 = 3_000_000_000;

/// What one check found in one capture.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub verdict: Verdict,
    pub message: String,
    pub frames: Vec<u64>,
}

impl Finding {
    pub fn new(verdict: Verdict, message: impl Into<String>, frames: Vec<u64>) -> Finding {
        Finding {
            verdict,
            message: message.into(),
            frames,
        }
    }
    pub fn na(message: impl Into<String>) -> Finding {
        Finding::new(Verdict::NotApplicable, message, Vec::new())
    }
}

/// Evidence keeps this many frames per capture: the first few, enough to look at.
const MAX_FRAMES: usize = 8;

/// How bad a verdict is, for combining captures and parts of one check.
pub(crate) fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::NotApplicable => 0,
        Verdict::Info => 1,
        Verdict::Pass => 2,
        Verdict::Warn => 3,
        Verdict::Fail => 4,
        Verdict::Error => 5,
    }
}

/// A result for a check id the registry lacks.
fn missing(id: &str) -> CheckResult {
    CheckResult {
        id: id.to_string(),
        title: String::new(),
        source: String::new(),
        verdict: Verdict::Error,
        message: format!("{id} is not in the registry"),
        evidence: Vec::new(),
    }
}

/// The findings of `defs` on one view: the [`Check::Whole`] ones called, the
/// [`Check::Walk`] ones fed one shared walk over the packets.
pub(crate) fn findings(v: &View<'_>, defs: &[&CheckDef]) -> Vec<Finding> {
    let mut walks = CheckWalks::start(v, defs);
    if walks.walking() {
        for (f, l) in v.all_packets() {
            walks.packet(v, f, l);
        }
    }
    walks.finish(v)
}

/// Checks of one view under way: the whole ones done, the walks waiting for packets.
pub(crate) struct CheckWalks<'a> {
    out: Vec<Option<Finding>>,
    walks: Vec<(usize, Box<dyn Walk<'a> + 'a>)>,
}

impl<'a> CheckWalks<'a> {
    /// Runs the whole checks of `defs` and starts the walks.
    pub(crate) fn start(v: &View<'a>, defs: &[&CheckDef]) -> CheckWalks<'a> {
        let mut w = CheckWalks {
            out: Vec::with_capacity(defs.len()),
            walks: Vec::new(),
        };
        for (i, d) in defs.iter().enumerate() {
            match d.check {
                Check::Whole(f) => w.out.push(Some(f(v))),
                Check::Walk(start) => {
                    w.walks.push((i, start(v)));
                    w.out.push(None);
                }
            }
        }
        w
    }

    /// Whether any check walks.
    pub(crate) fn walking(&self) -> bool {
        !self.walks.is_empty()
    }

    /// The next packet, to every walk.
    pub(crate) fn packet(&mut self, v: &View<'a>, f: &Decoded, l: &Decoded) {
        for (_, w) in self.walks.iter_mut() {
            w.packet(v, f, l);
        }
    }

    /// Every check's finding, in the order of `defs`.
    pub(crate) fn finish(self, v: &View<'a>) -> Vec<Finding> {
        let mut out = self.out;
        for (i, w) in self.walks {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(w.finish(v));
            }
        }
        out.into_iter()
            .map(|f| f.unwrap_or_else(|| Finding::na("not run")))
            .collect()
    }
}

/// Runs `defs` on every capture's view and combines each check's findings: the worst
/// verdict wins, its messages are kept (prefixed with the capture name when there are
/// several).
pub fn run_checks(inputs: &Inputs, defs: &[&CheckDef]) -> Vec<CheckResult> {
    let per_view: Vec<(String, Vec<Finding>)> = inputs
        .views()
        .map(|v| (v.cap.name.clone(), findings(&v, defs)))
        .collect();
    defs.iter()
        .enumerate()
        .map(|(k, def)| {
            let f = per_view
                .iter()
                .filter_map(|(n, fs)| Some((n.clone(), fs.get(k)?.clone())))
                .collect();
            combine(def, f)
        })
        .collect()
}

/// One check's result from its findings per capture.
pub(crate) fn combine(def: &CheckDef, findings: Vec<(String, Finding)>) -> CheckResult {
    let (verdict, message) = match findings
        .iter()
        .map(|(_, f)| f.verdict)
        .max_by_key(|v| severity(*v))
    {
        None => (Verdict::NotApplicable, "no capture to check".to_string()),
        Some(worst) => {
            let several = findings.len() > 1;
            let msgs: Vec<String> = findings
                .iter()
                .filter(|(_, f)| f.verdict == worst)
                .map(|(n, f)| {
                    if several {
                        format!("{n}: {}", f.message)
                    } else {
                        f.message.clone()
                    }
                })
                .collect();
            (worst, msgs.join(" "))
        }
    };
    let evidence = findings
        .into_iter()
        .filter(|(_, f)| !f.frames.is_empty() || f.verdict == verdict)
        .map(|(capture, f)| {
            let mut frames = f.frames;
            frames.sort_unstable();
            frames.dedup();
            frames.truncate(MAX_FRAMES);
            Evidence {
                capture,
                frames,
                note: f.message,
            }
        })
        .collect();
    CheckResult {
        id: def.id.to_string(),
        title: def.title.to_string(),
        source: def.source.to_string(),
        verdict,
        message,
        evidence,
    }
}

macro_rules! registry {
    ($( $id:literal, $title:literal, $level:ident, $source:literal, $injects:literal, $f:expr; )*) => {
        /// Every check of `checks.md`, in its order.
        pub static REGISTRY: &[CheckDef] = &[
            $( CheckDef {
                id: $id,
                title: $title,
                level: Level::$level,
                source: $source,
                injects: $injects,
                check: $f,
            }, )*
        ];
    };
}

registry! {
    "RS-01", "RS: hop limit 255, code 0, checksum valid, ICMPv6 length ≥ 8, no zero-length option", Fail, "RFC 4861 §4.1, §6.1.1, §4.6", false, Check::Whole(rs_ra::rs01);
    "RS-02", "RS: dst ff02::2 (or the router's link-local); src :: or link-local", Fail, "RFC 4861 §6.3.7", false, Check::Whole(rs_ra::rs02);
    "RS-03", "RS from :: carries an SLLA", WarnStrictFail, "RFC 4861 §4.1", false, Check::Whole(rs_ra::rs03);
    "RS-04", "RS schedule: backoff as configured; solicitation stops after a valid RA", WarnOrFail, "RFC 4861 §6.3.7, RFC 7559", false, Check::Whole(rs_ra::rs04);
    "RA-01", "RA: src link-local, hop limit 255, code 0, checksum valid, length ≥ 16, no zero-length option", Fail, "RFC 4861 §4.2, §6.1.2", false, Check::Whole(rs_ra::ra01);
    "RA-02", "RA goes back to the exact outer IPv4:port the RS came from; inner dst per profile", Fail, "6bed4", false, Check::Whole(rs_ra::ra02);
    "RA-03", "RA within 0.5 s (+ lab tolerance) of the RS", Warn, "RFC 4861 §6.2.6", false, Check::Whole(rs_ra::ra03);
    "RA-04", "PIO: L/A set, preferred ≤ valid, bits past the length zero, length per profile", Fail, "RFC 4861 §4.6.2, RFC 4862 §5.5.3", false, Check::Whole(rs_ra::ra04);
    "RA-05", "PIO embeds the requester's outer IPv4:port as the router saw it", Fail, "6bed4", false, Check::Whole(rs_ra::ra05);
    "RA-06", "Router lifetime ≤ 9000 s, reachable time ≤ 3,600,000 ms", WarnStrictFail, "RFC 4861 §6.2.1", false, Check::Whole(rs_ra::ra06);
    "RA-07", "Peer ignores invalid RAs: no address change", Fail, "RFC 4861 §6.1.2", true, Check::Walk(rs_ra::ra07);
    "RA-08", "Router ignores invalid RSs: no RA, and still answers a valid RS after", Fail, "RFC 4861 §6.1.1", true, Check::Walk(rs_ra::ra08);
    "RA-09", "After a NAT rebinding the router sends an RA with the new mapping; the peer stops using the old address and traffic resumes", Fail, "6bed4", false, Check::Walk(rs_ra::ra09);
    "AF-01", "The peer's address = advertised prefix + identifier, decoding to its outer IPv4:port as the router saw it", Fail, "6bed4", false, Check::Walk(af_ka::af01);
    "AF-02", "lanip ≠ 0 for peers; port valid for the profile", Fail, "6bed4", false, Check::Walk(af_ka::af02);
    "AF-03", "Every 6bed4 source seen in the capture is consistent with its outer IPv4:port", WarnOrFail, "derived", false, Check::Walk(af_ka::af03);
    "KA-01", "Keepalive: UDP payload 0 bytes, from the tunnel's own socket, to the router IPv4:port", Fail, "6bed4", false, Check::Walk(af_ka::ka01);
    "KA-02", "IPv4 TTL equals the configured value (3 by default)", Fail, "6bed4", false, Check::Whole(af_ka::ka02);
    "KA-03", "Interval ≥ configured period − tolerance; report the jitter", FailInfo, "6bed4", false, Check::Whole(af_ka::ka03);
    "KA-04", "No keepalives before an address is held", Warn, "6bed4", false, Check::Whole(af_ka::ka04);
    "KA-05", "With period < NAT UDP timeout, the peer's external mapping never changes over ≥ 3 timeouts", Fail, "purpose of keepalives", false, Check::Walk(af_ka::ka05);
    "ND-01", "Every NS/NA over UDP: hop limit 255, code 0, checksum valid, ICMPv6 length ≥ 24, no trailing bytes past the IPv6 payload length", Fail, "RFC 4861 §7.1", false, Check::Whole(nd::nd01);
    "ND-02", "Bypass NS goes directly to the IPv4:port decoded from the target; target = remote address; SLLA = sender's link-layer address", Fail, "6bed4", false, Check::Whole(nd::nd02);
    "ND-03", "NA: target copied, S set and unicast to the NS source, sent directly back", Fail, "RFC 4861 §7.2.4", false, Check::Whole(nd::nd03);
    "ND-04", "Direct data only after a matching NA; unmatched NAs ignored", Fail, "6bed4", false, Check::Walk(nd::nd04);
    "ND-05", "Outcome per NAT pair matches the expected table (direct vs via router), and data flows both ways", Fail, "6bed4 + spec §7", false, Check::Walk(nd::nd05);
    "ND-06", "Path symmetry: once direct, both directions direct", Warn, "6bed4", false, Check::Walk(nd::nd06);
    "ND-07", "Probe rate: no more than the configured probes per attempt; failed paths not re-probed faster than the hold-down", Fail, "RFC 4861 §7.2.2", false, Check::Whole(nd::nd07);
    "ND-08", "Spoofed NS/NA (source not matching outer tuple, hop limit ≠ 255, bad checksum) change nothing", Fail, "6bed4, RFC 4861", true, Check::Walk(nd::nd08);
    "EN-01", "UDP payload is exactly one IPv6 packet (length consistent) or empty", Fail, "6bed4", false, Check::Walk(en::en01);
    "EN-02", "Router drops or corrects packets whose inner source does not match the outer tuple", Fail, "6bed4", false, Check::Walk(en::en02);
    "EN-03", "Hop limit decremented per 6bed4 hop on data, never on ND; nothing forwarded at ≤ 1", Fail, "6bed4", false, Check::Walk(en::en03);
    "EN-04", "Inner packets up to 1280 bytes pass intact; larger are not silently truncated", Fail, "RFC 8200 §5", false, Check::Walk(en::en04);
    "EN-05", "No packet is relayed to multicast or reflected to its own sender", Fail, "6bed4", false, Check::Walk(en::en05);
    "EN-06", "Implementation survives the negative corpus and still serves valid traffic afterwards", Fail, "robustness", true, Check::Walk(en::en06);
}

/// Runs every check of the registry on `inputs` (passive halves of injecting checks).
pub fn run_passive(inputs: &Inputs) -> Vec<CheckResult> {
    let all: Vec<&CheckDef> = REGISTRY.iter().collect();
    run_checks(inputs, &all)
}

/// The check with this id, if any.
pub fn find(id: &str) -> Option<&'static CheckDef> {
    REGISTRY.iter().find(|d| d.id == id)
}

/// Treats `data` as a capture file, decodes it and runs every check, in normal and strict
/// mode; the fuzz target. It must never panic, whatever the bytes.
pub fn fuzz_decode(data: &[u8]) {
    let Ok(cap) = decode::decode_bytes(
        data,
        DecodeOptions {
            name: "fuzz".into(),
            ..DecodeOptions::default()
        },
    ) else {
        return;
    };
    let _ = crate::conformance::trace::render_trace(
        &crate::conformance::trace::trace(&cap, &Roles::default()),
        Some(100),
    );
    for strict in [false, true] {
        let inputs = Inputs::new(
            vec![cap.clone()],
            Profile::Current,
            strict,
            Expectations::default(),
        );
        let _ = run_passive(&inputs);
    }
}

/// A duration for messages: milliseconds below a second, else seconds.
pub(crate) fn secs(ns: u64) -> String {
    if ns < 1_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.3} s", ns as f64 / 1e9)
    }
}

/// Duration to ns, saturating.
pub(crate) fn dur_ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}
