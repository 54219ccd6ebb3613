//! The streaming analysis: a capture from one capture point (a field capture, such as a
//! router's uplink) checked in memory that does not grow with the file.
//!
//! The in-memory analysis keeps a record of every datagram (~250 bytes each) because the
//! view and the checks look at them in any order. Here the file is read twice and only
//! what grows with peers and time is kept:
//! 1. [`scan`] decodes every packet and keeps the control packets (RS, RA, NS, NA,
//!    keepalives, ICMP, malformed: [`is_control`]) and the few data records the peers are
//!    found from: the first of each (socket, destination, inner source, profile), and each
//!    one that changes its peer's external mapping as the router saw it. Of the rest it
//!    keeps tallies per flow (how many, first and last time) and which flows are 6bed4.
//!    The kept records then go through the decoder's `finish` and the view is built from
//!    them, as in memory: the same peers, mappings, rebindings and RAs come out.
//! 2. [`walk`] decodes the file again, gives every record the fields `finish` gave the
//!    kept ones, and shows every packet, in order, to the checks' shared walk
//!    ([`crate::conformance::checks::Walk`]) and to the report's. A window of
//!    [`WALK_WINDOW_NS`](crate::conformance::checks::WALK_WINDOW_NS) on either side of the packet being walked holds the records a
//!    relay look-up may ask for; nothing older stays.
//!
//! Memory is then the control packets, the per-flow and per-peer state and the window
//! (the packets of six seconds), whatever the file's length.
//!
//! Which peer a data record belongs to is only certain at the end (a socket joins its peer
//! through the address it uses, or the endpoint that address names, possibly later), so
//! the scan groups sockets as it goes and checks at the end that its groups are the
//! view's peers. A capture this cannot be exact for is analysed in memory instead, and
//! [`scan`] says why: several capture points or TUN packets (sightings must be grouped),
//! records out of time order, no router port (routers are then found from where RSs
//! go), the router's own sending side, or two sockets with mappings of their own joined
//! late.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;

use crate::capture::{Direction, ReadError, Reader};

use crate::conformance::checks::{combine, CheckDef, CheckWalks, Inputs, UnionFind, View, Window, REGISTRY};
use crate::conformance::decode::{
    derive_alone, finish_records, flow_endpoints, note_flow, retained, stream_records, tunnel_profile,
    DecodeOptions, Decoded, DecodedCapture, Endpoint, FastMap, FastSet, Kind, Layer, Profile, StreamMode,
    Streamed,
};
use crate::conformance::model::CheckResult;

pub use crate::conformance::checks::is_control;

/// A capture after the first pass: the kept records, finished, and what the second pass
/// needs.
#[derive(Debug)]
pub struct Scanned {
    /// The control packets and the data records peers are found from, with
    /// [`DecodedCapture::streamed`] set.
    pub cap: DecodedCapture,
    /// The endpoints of the 6bed4 flows: which records of the second pass are retained.
    pub(crate) endpoints: FastSet<Endpoint>,
    /// The scan's grouping of sockets, checked against the view's peers.
    groups: Groups,
}

impl Scanned {
    /// Takes the capture out (to build the view on), leaving what the second pass needs.
    pub fn take_capture(&mut self) -> DecodedCapture {
        std::mem::take(&mut self.cap)
    }
}

/// Per (source, destination) of the tunnel records not kept.
#[derive(Debug, Clone, Copy)]
struct Tally {
    dropped: u64,
    first: u64,
    last: u64,
}

/// Sockets grouped into peers as the scan goes (union-find), with the last external
/// mapping the router saw from each group.
#[derive(Debug, Default)]
struct Groups {
    sockets: UnionFind,
    /// Root → the last mapping the router saw from the group.
    mapped: FastMap<Endpoint, Endpoint>,
    /// Set when two groups that both had mappings were joined: their records were judged
    /// apart, so the kept ones may miss a change of the joined peer's mapping.
    late: bool,
}

impl Groups {
    fn find(&mut self, x: Endpoint) -> Endpoint {
        self.sockets.find(x)
    }

    fn union(&mut self, a: Endpoint, b: Endpoint) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let mb = self.mapped.remove(&rb);
        if mb.is_some() && self.mapped.contains_key(&ra) {
            self.late = true;
        }
        if let (Some(m), false) = (mb, self.mapped.contains_key(&ra)) {
            self.mapped.insert(ra, m);
        }
        // `ra` stays the root, as `mapped` now says.
        self.sockets.union(ra, rb);
    }
}

/// The first pass.
struct Scan {
    opts: DecodeOptions,
    kept: Vec<Decoded>,
    six_flows: FastSet<(Endpoint, Endpoint)>,
    prefixes: BTreeSet<Ipv6Addr>,
    flows: FastMap<(Endpoint, Endpoint), Tally>,
    last: Option<(u64, u64)>,
    point: Option<(Arc<str>, Option<Direction>)>,
    /// (socket, destination, inner source, profile) of every datagram a peer sent.
    seen: FastSet<(Endpoint, Endpoint, Option<Ipv6Addr>, Profile)>,
    groups: Groups,
    /// The first socket to use each address.
    owner: FastMap<Ipv6Addr, Endpoint>,
    known: FastSet<Endpoint>,
    /// Endpoints an address named before they sent anything → the sockets using it.
    pending: FastMap<Endpoint, Vec<Endpoint>>,
    refused: Option<String>,
}

impl Scan {
    fn refuse(&mut self, why: impl Into<String>) {
        if self.refused.is_none() {
            self.refused = Some(why.into());
        }
        self.kept = Vec::new();
    }

    fn take(&mut self, r: Arc<Decoded>) {
        if self.refused.is_some() {
            return;
        }
        let order = (r.ts_ns, r.frame);
        if self.last.is_some_and(|l| order < l) {
            return self.refuse(format!("frame {} is older than the one before it", r.frame));
        }
        self.last = Some(order);
        if r.layer == Layer::Inner {
            return self.refuse("it holds packets of a 6bed4 TUN");
        }
        if let Some(i) = &r.interface {
            match &self.point {
                None => {
                    if r.direction == Some(Direction::Outbound) && r.node().is_some() {
                        return self.refuse("it was taken on a node's sending side");
                    }
                    self.point = Some((Arc::clone(i), r.direction));
                }
                Some((pi, pd)) if **pi == **i && *pd == r.direction => {}
                Some(_) => return self.refuse("it has several capture points"),
            }
        }
        let opts = &self.opts;
        note_flow(
            &r,
            &|p| opts.is_router_port(p),
            &mut self.six_flows,
            &mut self.prefixes,
        );
        let needed = self.find_peer(&r);
        let keep = needed || is_control(&r);
        if let (Some(o), false) = (&r.outer, matches!(r.kind, Kind::IcmpError { v6: false, .. })) {
            let t = self.flows.entry((o.src, o.dst)).or_insert(Tally {
                dropped: 0,
                first: r.ts_ns,
                last: r.ts_ns,
            });
            t.last = r.ts_ns;
            if !keep {
                t.dropped += 1;
            }
        }
        if keep {
            self.kept
                .push(Arc::try_unwrap(r).unwrap_or_else(|shared| (*shared).clone()));
        }
    }

    /// Groups the sender's socket with its peer's (the unions of the view's peer finding)
    /// and says whether the record must be kept for the view to find the same peers.
    fn find_peer(&mut self, r: &Decoded) -> bool {
        let (Some(o), Layer::Tunnel) = (&r.outer, r.layer) else {
            return false;
        };
        if matches!(r.kind, Kind::IcmpError { v6: false, .. }) || self.opts.is_router_port(o.src.port()) {
            return false;
        }
        let socket = o.src;
        let profile = tunnel_profile(r, o, &self.opts);
        let src6 = r.inner.map(|h| h.src).filter(|a| !a.is_unspecified());
        let mut needed = self.seen.insert((socket, o.dst, src6, profile));
        if self.known.insert(socket) {
            for s in self.pending.remove(&socket).unwrap_or_default() {
                self.groups.union(s, socket);
            }
        }
        if let Some(a) = src6 {
            let first = *self.owner.entry(a).or_insert(socket);
            self.groups.union(first, socket);
            if let Some(named) = profile.decode(&a) {
                if self.known.contains(&named) {
                    self.groups.union(named, socket);
                } else {
                    self.pending.entry(named).or_default().push(socket);
                }
            }
        }
        // The router saw the socket itself (one capture point, not the router's sending
        // side): a mapping change when it differs from the group's last.
        if self.opts.is_router_port(o.dst.port()) {
            let root = self.groups.find(socket);
            if self.groups.mapped.get(&root) != Some(&socket) {
                self.groups.mapped.insert(root, socket);
                needed = true;
            }
        }
        needed
    }
}

/// The first pass over `path`: `Ok(Err(why))` when the capture must be analysed in memory.
pub fn scan(path: &Path, opts: &DecodeOptions) -> Result<Result<Scanned, String>, ReadError> {
    let reader = Reader::open(path)?;
    let mut s = Scan {
        opts: opts.clone(),
        kept: Vec::new(),
        six_flows: FastSet::default(),
        prefixes: BTreeSet::new(),
        flows: FastMap::default(),
        last: None,
        point: None,
        seen: FastSet::default(),
        groups: Groups::default(),
        owner: FastMap::default(),
        known: FastSet::default(),
        pending: FastMap::default(),
        refused: None,
    };
    let light = StreamMode {
        light: true,
        ..StreamMode::default()
    };
    let (stats, error) = stream_records(reader, opts, light, &mut |r| s.take(r));
    if let Some(why) = s.refused.take() {
        return Ok(Err(why));
    }
    if s.groups.late {
        return Ok(Err(
            "two sockets with mappings of their own turned out to be one peer".into(),
        ));
    }
    let endpoints = flow_endpoints(&s.six_flows);
    if !endpoints.iter().any(|e| s.opts.is_router_port(e.port())) {
        return Ok(Err("no datagram on a router port".into()));
    }
    let mut cap = finish_records(opts.clone(), s.kept, stats, &s.six_flows, s.prefixes);
    cap.read_error = error;
    if cap.packets != cap.records.len() {
        return Ok(Err("its datagrams group into packets".into()));
    }
    let mut span = (u64::MAX, 0u64);
    let mut destinations: FastSet<Endpoint> = FastSet::default();
    for r in &cap.records {
        span = (span.0.min(r.ts_ns), span.1.max(r.ts_ns));
        if let Some(d) = r.dst().filter(|_| r.is_tunnel()) {
            destinations.insert(d);
        }
    }
    for (&(src, dst), t) in &s.flows {
        if endpoints.contains(&src) || endpoints.contains(&dst) {
            span = (span.0.min(t.first), span.1.max(t.last));
            destinations.insert(dst);
            cap.stats.tunnel += t.dropped;
        }
    }
    if span.0 > span.1 {
        span = (0, 0);
    }
    cap.streamed = Some(Box::new(Streamed { span, destinations }));
    Ok(Ok(Scanned {
        cap,
        endpoints,
        groups: s.groups,
    }))
}

/// Whether the scan's groups of sockets are the view's peers (no socket grouped with
/// another peer's, no peer split into groups that both had mappings): the condition for
/// the kept records to show every change of a peer's mapping.
pub fn verify_peers(s: &mut Scanned, v: &View<'_>) -> Result<(), String> {
    let mut peer_of_group: FastMap<Endpoint, usize> = FastMap::default();
    let mut group_of_peer: FastMap<usize, Endpoint> = FastMap::default();
    let sockets: Vec<Endpoint> = v.peers().iter().flat_map(|p| p.sockets.iter().copied()).collect();
    for socket in sockets {
        let Some(p) = v.peer_of_socket(socket) else {
            continue;
        };
        let g = s.groups.find(socket);
        if *peer_of_group.entry(g).or_insert(p) != p {
            return Err(format!("socket {socket} was grouped with another peer's"));
        }
        let first = *group_of_peer.entry(p).or_insert(g);
        if first != g && s.groups.mapped.contains_key(&first) && s.groups.mapped.contains_key(&g) {
            return Err(format!(
                "peer {} has sockets with mappings of their own",
                v.peers()[p].name
            ));
        }
    }
    Ok(())
}

/// The second pass: every retained record of `path`, finished as the kept ones were,
/// shown in order to `each` (a packet: sender's and receiver's sighting are the record)
/// with `window` holding the records within [`WALK_WINDOW_NS`](crate::conformance::checks::WALK_WINDOW_NS) of it.
pub(crate) fn walk(
    path: &Path,
    opts: &DecodeOptions,
    cap: &DecodedCapture,
    endpoints: &FastSet<Endpoint>,
    window: &Window,
    each: &mut dyn FnMut(&Decoded),
) -> Result<(), ReadError> {
    let reader = Reader::open(path)?;
    let (routers, prefixes, o) = (cap.routers.clone(), cap.prefixes.clone(), opts.clone());
    let keep = endpoints.clone();
    // On the decoding threads: a record not retained is marked (packet `usize::MAX`);
    // the others get the fields `finish` gave the kept records. (The window gives each
    // its packet number, past the kept ones'.)
    let finish = move |r: &mut Decoded| {
        if !retained(&keep, r) {
            r.packet = usize::MAX;
            return;
        }
        derive_alone(r, &routers, &prefixes, &o);
    };
    let mode = StreamMode {
        finish: Some(Arc::new(finish)),
        ..StreamMode::default()
    };
    let mut next_kept = 0usize;
    let mut ready = Vec::new();
    // The counts and a read error were the first pass's to report: the same file again.
    let _ = stream_records(reader, opts, mode, &mut |r: Arc<Decoded>| {
        if r.packet == usize::MAX {
            return;
        }
        // A kept control record is shown as kept (checks may hold it); a kept data
        // record was read without its inner key: the one read now has it.
        let kept = cap.records.get(next_kept).filter(|k| k.frame == r.frame);
        if kept.is_some() {
            next_kept += 1;
        }
        let kept = kept.filter(|k| is_control(k)).map(|_| next_kept - 1);
        window.push_ready(cap, kept, r, &mut ready);
        for rec in ready.drain(..) {
            each(&rec);
        }
    });
    window.finish(cap, &mut ready);
    for rec in ready.drain(..) {
        each(&rec);
    }
    Ok(())
}

/// What [`check_file`] found.
#[derive(Debug)]
pub struct Checked {
    /// The inputs the checks read (the kept records).
    pub inputs: Inputs,
    /// Every check of the registry, in its order.
    pub results: Vec<CheckResult>,
    /// How long the first pass took, and the view and second pass.
    pub scan: std::time::Duration,
    pub walk: std::time::Duration,
}

/// `bedlab check`'s checks over a streamed capture: the first pass, the view from the kept
/// records, and the second pass through every check's walk (and `also`'s, for the report:
/// each packet, then `None` at the end). `Ok(Err(why))` when the capture must be analysed
/// in memory instead.
pub fn check_file(
    path: &Path,
    opts: &DecodeOptions,
    inputs_of: impl FnOnce(DecodedCapture) -> Inputs,
    also: &mut dyn FnMut(&View<'_>, Option<&Decoded>),
) -> Result<Result<Checked, String>, ReadError> {
    let started = std::time::Instant::now();
    let mut scanned = match scan(path, opts)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let scan_time = started.elapsed();
    let inputs = inputs_of(scanned.take_capture());
    let window = Window::default();
    let results = {
        let Some(v) = inputs.streamed_view(0, &window) else {
            return Ok(Err("no capture".into()));
        };
        if let Err(why) = verify_peers(&mut scanned, &v) {
            return Ok(Err(why));
        }
        let defs: Vec<&CheckDef> = REGISTRY.iter().collect();
        let mut walks = CheckWalks::start(&v, &defs);
        walk(path, opts, v.cap, &scanned.endpoints, &window, &mut |r| {
            walks.packet(&v, r, r);
            also(&v, Some(r));
        })?;
        also(&v, None);
        if std::env::var_os("BEDLAB_STREAM_TIMINGS").is_some() {
            eprintln!(
                "stream: scan {scan_time:.2?}, view and walk {:.2?}",
                started.elapsed() - scan_time
            );
        }
        let found = walks.finish(&v);
        defs.iter()
            .zip(found)
            .map(|(d, f)| combine(d, vec![(v.cap.name.clone(), f)]))
            .collect()
    };
    Ok(Ok(Checked {
        inputs,
        results,
        scan: scan_time,
        walk: started.elapsed() - scan_time,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::conformance::checks::{run_passive, Expectations, WALK_WINDOW_NS};
    use crate::conformance::decode::decode_file;

    fn fixtures() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        v.sort();
        v
    }

    /// A generated router-uplink capture (what `make bench` checks, small).
    fn generated(dir: &Path, seed: u64) -> PathBuf {
        let path = dir.join(format!("gen-{seed}.pcapng"));
        let file = std::fs::File::create(&path).expect("temp file");
        crate::field::gen::generate(
            std::io::BufWriter::new(file),
            &crate::field::gen::GenOptions {
                bytes: 3_000_000,
                peers: 6,
                seed,
            },
        )
        .expect("generate");
        path
    }

    fn inputs(cap: DecodedCapture, strict: bool) -> Inputs {
        Inputs::new(vec![cap], Profile::Current, strict, Expectations::default())
    }

    /// Streamed and in-memory analyses give the same results, check for check, wherever
    /// the capture can be streamed; the generated captures must be streamable.
    #[test]
    fn streamed_checks_equal_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = fixtures();
        files.extend((1..=3).map(|s| generated(dir.path(), s)));
        let mut streamed = 0;
        for f in &files {
            for strict in [false, true] {
                let opts = DecodeOptions {
                    name: f.display().to_string(),
                    ..DecodeOptions::default()
                };
                let memory = run_passive(&inputs(decode_file(f, opts.clone()).expect("decode"), strict));
                let got = check_file(f, &opts, |c| inputs(c, strict), &mut |_, _| {}).expect("read");
                let results = match got {
                    Ok(r) => r.results,
                    Err(why) => {
                        eprintln!("{}: in memory: {why}", f.display());
                        assert!(
                            !f.to_string_lossy().contains("gen-"),
                            "{}: not streamed: {why}",
                            f.display()
                        );
                        continue;
                    }
                };
                streamed += 1;
                for (m, s) in memory.iter().zip(&results) {
                    assert_eq!(
                        (m.verdict, &m.message, &m.evidence),
                        (s.verdict, &s.message, &s.evidence),
                        "{} {} (strict {strict})",
                        f.display(),
                        m.id
                    );
                }
            }
        }
        assert!(streamed >= 6, "only {streamed} streamed runs");
    }

    /// Rewrites a capture packet by packet: `edit(index, ts_ns)` gives each packet's
    /// interface (0 or 1: "router/eth0", "router/eth1") and time.
    fn rewrite(from: &Path, to: &Path, edit: impl Fn(usize, u64) -> (u32, u64)) {
        use crate::capture::linktype;
        use crate::field::pcapng_out::{IfaceDesc, Writer};
        let mut r = Reader::open(from).expect("open");
        let file = std::fs::File::create(to).expect("create");
        let mut w = Writer::new(
            std::io::BufWriter::new(file),
            &crate::capture::Section::default(),
            "test",
        )
        .expect("writer");
        for name in ["router/eth0", "router/eth1"] {
            w.interface(&IfaceDesc {
                linktype: linktype::ETHERNET,
                snaplen: 262_144,
                name: Some(name.into()),
                description: None,
            })
            .expect("interface");
        }
        let mut i = 0;
        while let Some(p) = r.next_packet().expect("read") {
            let ts = p.ts.0 * 1_000_000_000 + u64::from(p.ts.1);
            let (iface, ts) = edit(i, ts);
            w.packet(iface, ts, &p.data, p.orig_len, None, None)
                .expect("write");
            i += 1;
        }
        drop(w);
    }

    fn why_not(path: &Path) -> Option<String> {
        scan(path, &DecodeOptions::default()).expect("read").err()
    }

    /// What the streaming analysis cannot be exact for is refused with its reason (and
    /// then analysed in memory); the generated capture itself streams.
    #[test]
    fn refuses_what_it_cannot_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gen = generated(dir.path(), 7);
        assert_eq!(why_not(&gen), None);
        let two = dir.path().join("two-points.pcapng");
        rewrite(&gen, &two, |i, ts| (u32::from(i % 2 == 1), ts));
        assert!(why_not(&two).is_some_and(|w| w.contains("several capture points")));
        let swapped = dir.path().join("out-of-order.pcapng");
        rewrite(&gen, &swapped, |i, ts| {
            (0, if i == 500 { ts - 10_000_000 } else { ts })
        });
        assert!(why_not(&swapped).is_some_and(|w| w.contains("older than the one before")));
        let tun = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/refimpl-c-router-tun.pcap");
        assert!(why_not(&tun).is_some_and(|w| w.contains("TUN")));
        let no_port = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid-nd.pcap");
        assert!(why_not(&no_port).is_some_and(|w| w.contains("router port")));
    }

    /// The first pass keeps what grows with peers and time, not with data: four times the
    /// data (same peers, seconds of traffic) adds no kept record but the control packets
    /// of the longer time, and the window holds a few seconds of packets, not the file.
    #[test]
    fn kept_records_and_window_do_not_grow_with_the_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = |bytes: u64| {
            let path = dir.path().join(format!("gen-{bytes}.pcapng"));
            let file = std::fs::File::create(&path).expect("temp file");
            crate::field::gen::generate(
                std::io::BufWriter::new(file),
                &crate::field::gen::GenOptions {
                    bytes,
                    peers: 6,
                    seed: 3,
                },
            )
            .expect("generate");
            let s = scan(&path, &DecodeOptions::default())
                .expect("read")
                .expect("streams");
            let control = s.cap.records.iter().filter(|r| is_control(r)).count();
            (s.cap.records.len() - control, s.cap.stats.tunnel, path, s)
        };
        let (small_data, small_all, _, _) = kept(7_000_000);
        let (big_data, big_all, path, mut s) = kept(30_000_000);
        assert!(big_all > 3 * small_all, "{big_all} vs {small_all} datagrams");
        assert_eq!(big_data, small_data, "data records kept for the peers");
        // The window over a capture longer than it: never near the whole file.
        let cap = s.take_capture();
        let window = Window::default();
        let (mut shown, mut most) = (0u64, 0usize);
        walk(
            &path,
            &DecodeOptions::default(),
            &cap,
            &s.endpoints,
            &window,
            &mut |_| {
                shown += 1;
                most = most.max(window.len());
            },
        )
        .expect("walk");
        assert_eq!(shown, big_all);
        let span = cap.streamed.as_ref().map_or(0, |st| st.span.1 - st.span.0);
        assert!(span > 3 * WALK_WINDOW_NS, "the capture spans {span} ns");
        // At most the records of two windows and a second (the generated traffic is
        // even in time); one that never dropped anything would hold them all.
        let bound = u128::from(big_all) * u128::from(2 * WALK_WINDOW_NS + 1_000_000_000) / u128::from(span);
        assert!(
            (most as u128) < bound,
            "window held {most} of {big_all} records (bound {bound})"
        );
    }
}
