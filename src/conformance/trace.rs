//! A normalised trace of a decoded capture: what golden snapshots and sequence diagrams show.
//!
//! The trace names nodes by role (lanes such as `peer-a`, `nat-a`, `router`), replaces
//! addresses by symbols (`peer-a@nat-a:P1`: peer-a's mapping on nat-a, the first port seen
//! there), collapses runs of keepalives (`KA ×12 every 1.0 s`), leaves out the kernel's own
//! chatter on TUNs (MLD, its RS, DAD) and keeps one message per packet however many capture
//! points saw it. It is a pure function of the capture: the same exchange gives the same
//! text, and timing enters only bucketed (intervals rounded to `interval_bucket_ms`, times
//! left out of [`render_trace`] unless asked for).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::capture::Direction;
use crate::conformance::decode::{addr, Decoded, DecodedCapture, Endpoint, Kind, Layer};
use crate::conformance::model::SeqMessage;

/// Names for IPv4 addresses (from the topology, or given by hand for field captures).
/// Anything unnamed gets a name from the capture point that saw it leave, else an automatic
/// one (`host-1`, ...), in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub by_ipv4: BTreeMap<Ipv4Addr, String>,
    /// Name for the router's lane when no other name applies.
    pub router: Option<String>,
}

impl Roles {
    /// Roles from `(address, name)` pairs.
    pub fn from_pairs<I: IntoIterator<Item = (Ipv4Addr, String)>>(pairs: I) -> Roles {
        Roles {
            by_ipv4: pairs.into_iter().collect(),
            router: None,
        }
    }
}

/// Options for [`trace_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceOptions {
    /// Keepalive intervals are rounded to this many milliseconds (≥ 1).
    pub interval_bucket_ms: u64,
    /// Include TUN packets (what entered and left the tunnel).
    pub tun: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            interval_bucket_ms: 100,
            tun: true,
        }
    }
}

/// The lane and symbol namer for one capture.
#[derive(Debug, Clone)]
pub struct Namer {
    lanes: BTreeMap<Ipv4Addr, String>,
    /// Port symbols per IPv4 address, in order of first appearance.
    ports: BTreeMap<Ipv4Addr, Vec<u16>>,
    /// External endpoint → the peer lane that owns it (learned from multi-point sightings).
    owners: BTreeMap<Endpoint, String>,
    auto: usize,
    peers: usize,
}

impl Namer {
    /// Learns lanes from the capture: router endpoints, the node whose interface a packet
    /// left by, and `roles`; then owners of translated endpoints.
    pub fn new(cap: &DecodedCapture, roles: &Roles) -> Namer {
        let mut n = Namer {
            lanes: roles.by_ipv4.clone(),
            ports: BTreeMap::new(),
            owners: BTreeMap::new(),
            auto: 0,
            peers: 0,
        };
        let router_name = roles.router.clone().unwrap_or_else(|| "router".to_string());
        for r in &cap.routers {
            n.lanes.entry(*r.ip()).or_insert_with(|| router_name.clone());
        }
        // A node owns the source address of what it sends first or after translating it
        // (a NAT's outside address), and the destination address of what ends with it;
        // addresses merely passing through say nothing.
        let mut sent_from: BTreeMap<usize, Ipv4Addr> = BTreeMap::new();
        for r in cap.records.iter().filter(|r| r.is_tunnel()) {
            let (Some(node), Some(o)) = (r.node(), &r.outer) else {
                continue;
            };
            let first_src = *sent_from.entry(r.packet).or_insert(*o.src.ip());
            let ip = match r.direction {
                Some(Direction::Outbound) if r.is_first() || *o.src.ip() != first_src => Some(*o.src.ip()),
                Some(Direction::Inbound) if r.is_last() && r.sightings > 1 => Some(*o.dst.ip()),
                _ => None,
            };
            if let Some(ip) = ip {
                n.lanes.entry(ip).or_insert_with(|| node.to_string());
            }
        }
        // Peers: whoever sends tunnel traffic that is not the router's, in order of appearance.
        for r in cap
            .records
            .iter()
            .filter(|r| r.is_tunnel() && r.is_first() && !r.from_router)
        {
            if matches!(r.kind, Kind::IcmpError { .. }) {
                continue;
            }
            if let Some(o) = &r.outer {
                if !n.lanes.contains_key(o.src.ip()) {
                    n.peers += 1;
                    let name = format!("peer-{}", n.peers);
                    n.lanes.insert(*o.src.ip(), name);
                }
            }
        }
        // Owners: the sender's lane of a packet whose later sighting shows another source.
        let mut first_src: BTreeMap<usize, Endpoint> = BTreeMap::new();
        for r in cap.records.iter().filter(|r| r.is_tunnel()) {
            let Some(o) = &r.outer else { continue };
            if r.is_first() {
                first_src.insert(r.packet, o.src);
            } else if let Some(&s) = first_src.get(&r.packet) {
                if s != o.src && !n.owners.contains_key(&o.src) {
                    if let Some(owner) = n.lanes.get(s.ip()).cloned() {
                        n.owners.insert(o.src, owner);
                    }
                }
            }
        }
        n
    }

    /// The lane of an IPv4 address.
    pub fn lane(&mut self, ip: Ipv4Addr) -> String {
        if let Some(l) = self.lanes.get(&ip) {
            return l.clone();
        }
        self.auto += 1;
        let name = format!("host-{}", self.auto);
        self.lanes.insert(ip, name.clone());
        name
    }

    /// `lane:Pn`, or `owner@lane:Pn` when another lane's packets leave through it.
    pub fn endpoint(&mut self, ep: Endpoint) -> String {
        let lane = self.lane(*ep.ip());
        let ports = self.ports.entry(*ep.ip()).or_default();
        let i = match ports.iter().position(|&p| p == ep.port()) {
            Some(i) => i,
            None => {
                ports.push(ep.port());
                ports.len() - 1
            }
        };
        // Profile ports are constants worth showing; other ports become symbols.
        let sym = if crate::conformance::decode::Profile::from_port(ep.port()).is_some() {
            format!("{lane}:{}", ep.port())
        } else {
            format!("{lane}:P{}", i + 1)
        };
        match self.owners.get(&ep) {
            Some(o) if *o != lane => format!("{o}@{sym}"),
            _ => sym,
        }
    }

    /// A 6bed4 address as `[endpoint]` (with `#lanip` when not 1), other addresses verbatim.
    pub fn address(&mut self, a: &Ipv6Addr, cap: &DecodedCapture) -> String {
        if a.is_unspecified() {
            return "::".into();
        }
        if addr::is_multicast(a) || (addr::is_link_local(a) && a.segments()[4..] == [0, 0, 0, 0]) {
            return a.to_string();
        }
        if cap.prefixes.contains(&addr::prefix64(a)) {
            let (ep, lanip) = addr::decode_c(a);
            let ep = addr::decode_v(a).filter(|_| ep.port() == 0).unwrap_or(ep);
            let s = self.endpoint(ep);
            return if lanip == 1 || lanip == 0 {
                format!("[{s}]")
            } else {
                format!("[{s}#{lanip}]")
            };
        }
        a.to_string()
    }
}

/// The trace with default options.
pub fn trace(cap: &DecodedCapture, roles: &Roles) -> Vec<SeqMessage> {
    trace_with(cap, roles, TraceOptions::default())
}

/// One message per packet (its sender's side), TUN packets as messages between a node and
/// its `node/6bed4` lane, keepalive runs collapsed.
pub fn trace_with(cap: &DecodedCapture, roles: &Roles, opts: TraceOptions) -> Vec<SeqMessage> {
    let mut namer = Namer::new(cap, roles);
    let t0 = cap.records.first().map_or(0, |r| r.ts_ns);
    // Receiver lane per packet: the node of its last sighting, when that is an arrival.
    let mut receiver: BTreeMap<usize, String> = BTreeMap::new();
    for r in cap
        .records
        .iter()
        .filter(|r| r.is_tunnel() && r.is_last() && r.sightings > 1)
    {
        if let (Some(node), Some(Direction::Inbound)) = (r.node(), r.direction) {
            receiver.insert(r.packet, node.to_string());
        }
    }
    let mut out: Vec<SeqMessage> = Vec::new();
    // Open keepalive runs: (from, to) → (index in out, times).
    let mut runs: BTreeMap<(String, String), (usize, Vec<u64>)> = BTreeMap::new();
    for r in &cap.records {
        if r.noise {
            continue;
        }
        let msg = match r.layer {
            Layer::Inner => {
                if !opts.tun {
                    continue;
                }
                let Some(iface) = r
                    .interface
                    .as_deref()
                    .map(str::to_string)
                    .or_else(|| Some("6bed4".to_string()))
                else {
                    continue;
                };
                let node = r.node().unwrap_or("tun").to_string();
                let (from, to) = match r.direction {
                    Some(Direction::Inbound) => (node, iface),
                    _ => (iface, node),
                };
                SeqMessage {
                    t_ms: r.ts_ns.saturating_sub(t0) / 1_000_000,
                    from,
                    to,
                    label: label(r, &mut namer, cap),
                    path: String::new(),
                    frame: r.frame,
                }
            }
            Layer::Tunnel => {
                if !r.is_first() {
                    continue;
                }
                let Some(o) = &r.outer else { continue };
                let from = match (r.node(), r.direction) {
                    (Some(n), Some(Direction::Outbound)) => n.to_string(),
                    _ => namer.lane(*o.src.ip()),
                };
                let to = match receiver.get(&r.packet) {
                    Some(n) => n.clone(),
                    None => namer.lane(*o.dst.ip()),
                };
                SeqMessage {
                    t_ms: r.ts_ns.saturating_sub(t0) / 1_000_000,
                    from,
                    to,
                    label: label(r, &mut namer, cap),
                    path: r.path.map(|p| p.name().to_string()).unwrap_or_default(),
                    frame: r.frame,
                }
            }
        };
        if msg.label == "KA" {
            let key = (msg.from.clone(), msg.to.clone());
            if let Some((_, times)) = runs.get_mut(&key) {
                times.push(r.ts_ns);
                continue;
            }
            runs.insert(key, (out.len(), vec![r.ts_ns]));
            out.push(msg);
            continue;
        }
        // Anything else from or to a lane closes that lane's keepalive runs.
        let closing: Vec<(String, String)> = runs
            .keys()
            .filter(|(f, t)| *f == msg.from || *t == msg.from || *f == msg.to)
            .cloned()
            .collect();
        for k in closing {
            if let Some((i, times)) = runs.remove(&k) {
                collapse(&mut out[i], &times, opts.interval_bucket_ms);
            }
        }
        out.push(msg);
    }
    for (_, (i, times)) in runs {
        collapse(&mut out[i], &times, opts.interval_bucket_ms);
    }
    out
}

/// `KA ×n every a–b s` for a run of more than one keepalive.
fn collapse(m: &mut SeqMessage, times: &[u64], bucket_ms: u64) {
    if times.len() < 2 {
        return;
    }
    let bucket = bucket_ms.max(1);
    let round = |ns: u64| (ns / 1_000_000).saturating_add(bucket / 2) / bucket * bucket;
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| round(w[1].saturating_sub(w[0])))
        .collect();
    let lo = gaps.iter().copied().min().unwrap_or(0);
    let hi = gaps.iter().copied().max().unwrap_or(0);
    let secs = |ms: u64| format!("{}.{}", ms / 1000, (ms % 1000) / 100);
    let every = if lo == hi {
        format!("{} s", secs(lo))
    } else {
        format!("{}–{} s", secs(lo), secs(hi))
    };
    m.label = format!("KA ×{} every {every}", times.len());
}

/// The message text for one record.
fn label(r: &Decoded, namer: &mut Namer, cap: &DecodedCapture) -> String {
    let mut s = match &r.kind {
        Kind::Rs { slla } => {
            if slla.is_some() {
                "RS (SLLA)".to_string()
            } else {
                "RS".to_string()
            }
        }
        Kind::Ra { prefixes, dst, .. } => {
            let mut s = "RA".to_string();
            if let Some(p) = prefixes.first() {
                let (ep, _) = addr::decode_c(&p.prefix);
                if p.len > 64 {
                    let _ = write!(s, " {}/{}", namer.endpoint(ep), p.len);
                } else if let Some(v) = addr::decode_v(dst) {
                    let _ = write!(s, " {}", namer.endpoint(v));
                } else {
                    let _ = write!(s, " /{}", p.len);
                }
            }
            if !addr::is_multicast(dst) {
                let _ = write!(s, " to {}", namer.address(dst, cap));
            }
            s
        }
        Kind::Ns { target, .. } => format!("NS {}", namer.address(target, cap)),
        Kind::Na { target, flags, .. } => {
            let f: String = [(0x80, 'R'), (0x40, 'S'), (0x20, 'O')]
                .iter()
                .filter(|(b, _)| flags & b != 0)
                .map(|(_, c)| *c)
                .collect();
            format!("NA {} [{f}]", namer.address(target, cap))
        }
        Kind::Keepalive => "KA".to_string(),
        Kind::Data {
            src, dst, icmp_type, ..
        } => {
            let what = match icmp_type {
                Some(128) => "echo-request".to_string(),
                Some(129) => "echo-reply".to_string(),
                Some(t) => format!("icmpv6-{t}"),
                None => "data".to_string(),
            };
            format!("{what} {} → {}", namer.address(src, cap), namer.address(dst, cap))
        }
        Kind::IcmpError {
            v6, icmp_type, code, ..
        } => format!("ICMP{} error {icmp_type}/{code}", if *v6 { "v6" } else { "v4" }),
        Kind::Malformed { .. } => "malformed".to_string(),
    };
    if !r.issues.is_empty() {
        s.push_str(" (!)");
    }
    s
}

/// The trace as text, one message per line: `from -> to: label [path]`, with bucketed
/// times when `time_bucket_ms` is given (`[+1.2s]`).
pub fn render_trace(msgs: &[SeqMessage], time_bucket_ms: Option<u64>) -> String {
    let mut out = String::new();
    for m in msgs {
        if let Some(b) = time_bucket_ms {
            let b = b.max(1);
            let t = m.t_ms.saturating_add(b / 2) / b * b;
            let _ = write!(out, "[+{}.{}s] ", t / 1000, (t % 1000) / 100);
        }
        let _ = write!(out, "{} -> {}: {}", m.from, m.to, m.label);
        if !m.path.is_empty() {
            let _ = write!(out, " [{}]", m.path);
        }
        out.push('\n');
    }
    out
}
