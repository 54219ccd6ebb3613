//! The sans-IO fabric: segments, links and nodes driven by packets and an injected clock.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::link::{LinkDir, Transit};
use super::node::{mask, Node, NodeIface, Outbox, Router};
use super::packet;
use super::spec::{Direction, FabricSpec, IfaceId, Impairment, LinkEnd, NodeKind};
use super::stats::{DropReason, LinkStats, LinkStatsEntry, Stats};
use super::FabricError;

/// A packet due to be written into an External interface's TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub iface: IfaceId,
    /// When it became due (it may be handed out later if the caller polls late).
    pub at: Instant,
    pub packet: Vec<u8>,
}

/// One packet seen at one capture point (a link end) in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureEvent {
    pub iface: IfaceId,
    pub direction: Direction,
    pub at: Instant,
    pub packet: Vec<u8>,
}

/// One interface and both directions of its link.
#[derive(Debug)]
struct Port {
    id: IfaceId,
    /// `node/iface`.
    name: String,
    segment: usize,
    /// The port that owns this interface's gateway address, resolved once at build time.
    gateway: Option<usize>,
    /// The same for IPv6 (`gateway6`).
    gateway6: Option<usize>,
    mtu: usize,
    external: bool,
    egress: LinkDir,
    ingress: LinkDir,
    stats: LinkStats,
}

impl Port {
    fn count_drop(&mut self, reason: DropReason) {
        self.stats.dropped.count(reason);
    }
}

#[derive(Debug)]
struct Segment {
    net: u32,
    len: u8,
    /// Address -> port that owns it.
    owners: HashMap<Ipv4Addr, usize>,
    /// Ports of External nodes on this segment (for the IPv6 rule without `subnet6`).
    externals: Vec<usize>,
    /// A dual-stack segment's IPv6 subnet (network, prefix length).
    net6: Option<(u128, u8)>,
    /// IPv6 address -> port that owns it.
    owners6: HashMap<Ipv6Addr, usize>,
}

fn mask6(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

impl Segment {
    fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ self.net) & mask(self.len) == 0
    }

    fn contains6(&self, a: Ipv6Addr) -> Option<bool> {
        self.net6
            .map(|(net, len)| (u128::from(a) ^ net) & mask6(len) == 0)
    }
}

#[derive(Debug)]
struct NodeState {
    name: String,
    first_port: usize,
    ports: usize,
    /// `None` for External nodes: their packets go to the shell.
    behaviour: Option<Box<dyn Node>>,
}

/// Work on a packet that is due at some time.
#[derive(Debug)]
enum Work {
    /// Left the sender's egress direction; enters the ingress direction of port `to`.
    Cross { to: usize, packet: Vec<u8> },
    /// Through both directions: port `to`'s node receives it.
    Arrive { to: usize, packet: Vec<u8> },
}

/// A scheduled [`Work`]; ordered by time, then by scheduling order so equal times stay FIFO.
#[derive(Debug)]
struct Event {
    at: Instant,
    seq: u64,
    work: Work,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The userspace network: see the [module documentation](super).
#[derive(Debug)]
pub struct Fabric {
    nodes: Vec<NodeState>,
    ports: Vec<Port>,
    segments: Vec<Segment>,
    /// Future work, earliest first.
    events: BinaryHeap<Event>,
    seq: u64,
    /// Work due at the time currently being processed: a queue rather than recursion, so a
    /// chain of routers with perfect links cannot grow the stack.
    immediate: VecDeque<Work>,
    /// Deliveries due for External interfaces, in order.
    ready: VecDeque<Delivery>,
    capture: bool,
    captures: Vec<CaptureEvent>,
    /// Reused for every node call.
    outbox: Outbox,
}

impl Fabric {
    /// Builds a fabric, checking the spec: segment indices, addresses inside their subnet and
    /// unique on it, gateways owned by an interface on the segment, router next hops on
    /// connected subnets, MTUs in 68..=65535, valid impairments, unique names.
    pub fn new(spec: FabricSpec) -> Result<Fabric, FabricError> {
        let err = |msg: String| Err(FabricError::Spec(msg));
        let mut segments = Vec::with_capacity(spec.segments.len());
        for s in &spec.segments {
            if s.subnet.1 > 32 {
                return err(format!(
                    "segment {}: prefix length {} over 32",
                    s.name, s.subnet.1
                ));
            }
            segments.push(Segment {
                net: u32::from(s.subnet.0) & mask(s.subnet.1),
                len: s.subnet.1,
                owners: HashMap::new(),
                externals: Vec::new(),
                net6: match s.subnet6 {
                    Some((_, len)) if len > 128 => {
                        return err(format!("segment {}: IPv6 prefix length {len} over 128", s.name))
                    }
                    Some((a, len)) => Some((u128::from(a) & mask6(len), len)),
                    None => None,
                },
                owners6: HashMap::new(),
            });
        }

        let mut nodes = Vec::with_capacity(spec.nodes.len());
        let mut ports: Vec<Port> = Vec::new();
        for (n, node) in spec.nodes.iter().enumerate() {
            if node.name.is_empty() || node.name.contains('/') {
                return err(format!("node name {:?} must be non-empty without '/'", node.name));
            }
            if spec.nodes[..n].iter().any(|o| o.name == node.name) {
                return err(format!("node name {:?} used twice", node.name));
            }
            let external = matches!(node.kind, NodeKind::External);
            let first_port = ports.len();
            for (i, ifs) in node.interfaces.iter().enumerate() {
                let name = format!("{}/{}", node.name, ifs.name);
                if ifs.name.is_empty() || node.interfaces[..i].iter().any(|o| o.name == ifs.name) {
                    return err(format!("interface {name}: name empty or used twice"));
                }
                let Some(seg) = segments.get_mut(ifs.segment) else {
                    return err(format!("interface {name}: no segment #{}", ifs.segment));
                };
                let seg_spec = &spec.segments[ifs.segment];
                if !seg.contains(ifs.address) {
                    return err(format!(
                        "interface {name}: address {} is not in segment {} ({}/{})",
                        ifs.address, seg_spec.name, seg_spec.subnet.0, seg_spec.subnet.1
                    ));
                }
                if seg.owners.insert(ifs.address, ports.len()).is_some() {
                    return err(format!(
                        "interface {name}: address {} is used twice on segment {}",
                        ifs.address, seg_spec.name
                    ));
                }
                for alias in &ifs.aliases {
                    if !seg.contains(*alias) || seg.owners.insert(*alias, ports.len()).is_some() {
                        return err(format!(
                            "interface {name}: alias {alias} is outside segment {} or used twice",
                            seg_spec.name
                        ));
                    }
                }
                if let Some(a6) = ifs.address6 {
                    if seg.contains6(a6) != Some(true) || seg.owners6.insert(a6, ports.len()).is_some() {
                        return err(format!(
                            "interface {name}: IPv6 address {a6} is outside segment {}'s IPv6 subnet or used twice",
                            seg_spec.name
                        ));
                    }
                }
                if !(68..=65535).contains(&ifs.mtu) {
                    return err(format!("interface {name}: mtu {} not in 68..=65535", ifs.mtu));
                }
                for (dir, imp) in [(Direction::Out, &ifs.egress), (Direction::In, &ifs.ingress)] {
                    if let Err(reason) = imp.validate() {
                        return Err(FabricError::Impairment {
                            link: name,
                            direction: dir,
                            reason,
                        });
                    }
                }
                if external {
                    seg.externals.push(ports.len());
                }
                ports.push(Port {
                    id: IfaceId::new(n, i),
                    egress: LinkDir::new(ifs.egress.clone(), spec.seed, &name, Direction::Out),
                    ingress: LinkDir::new(ifs.ingress.clone(), spec.seed, &name, Direction::In),
                    name,
                    segment: ifs.segment,
                    gateway: None,
                    gateway6: None,
                    mtu: ifs.mtu as usize,
                    external,
                    stats: LinkStats::default(),
                });
            }
            let behaviour: Option<Box<dyn Node>> = match &node.kind {
                NodeKind::External => None,
                NodeKind::Router { routes } => {
                    let ifaces = node
                        .interfaces
                        .iter()
                        .map(|i| NodeIface {
                            address: i.address,
                            subnet: spec.segments[i.segment].subnet,
                            mtu: i.mtu,
                        })
                        .collect();
                    let router = Router::new(ifaces, routes)
                        .map_err(|e| FabricError::Spec(format!("router {}: {e}", node.name)))?;
                    Some(Box::new(router))
                }
            };
            nodes.push(NodeState {
                name: node.name.clone(),
                first_port,
                ports: node.interfaces.len(),
                behaviour,
            });
        }

        // Gateways, now that every address is known.
        for (n, node) in spec.nodes.iter().enumerate() {
            for (i, ifs) in node.interfaces.iter().enumerate() {
                if let Some(gw6) = ifs.gateway6 {
                    let p = nodes[n].first_port + i;
                    match segments[ifs.segment].owners6.get(&gw6) {
                        Some(&owner) if owner != p => ports[p].gateway6 = Some(owner),
                        _ => {
                            return err(format!(
                                "interface {}: IPv6 gateway {gw6} is not another interface's address on segment {}",
                                ports[p].name, spec.segments[ifs.segment].name
                            ))
                        }
                    }
                }
                let Some(gw) = ifs.gateway else { continue };
                let p = nodes[n].first_port + i;
                let seg = &segments[ifs.segment];
                match seg.owners.get(&gw) {
                    Some(&owner) if owner != p => ports[p].gateway = Some(owner),
                    _ => {
                        return err(format!(
                            "interface {}: gateway {gw} is not another interface's address on segment {}",
                            ports[p].name, spec.segments[ifs.segment].name
                        ))
                    }
                }
            }
        }

        Ok(Fabric {
            nodes,
            ports,
            segments,
            events: BinaryHeap::new(),
            seq: 0,
            immediate: VecDeque::new(),
            ready: VecDeque::new(),
            capture: false,
            captures: Vec::new(),
            outbox: Outbox::default(),
        })
    }

    fn port_index(&self, id: IfaceId) -> Option<usize> {
        let node = self.nodes.get(id.node)?;
        (id.iface < node.ports).then_some(node.first_port + id.iface)
    }

    /// The id of the link end named `node/iface`.
    pub fn iface_id(&self, name: &str) -> Option<IfaceId> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.id)
    }

    /// The name (`node/iface`) of a link end.
    pub fn link_name(&self, id: IfaceId) -> Option<&str> {
        self.port_index(id).map(|p| self.ports[p].name.as_str())
    }

    /// The link end as node and interface names.
    pub fn link_end(&self, id: IfaceId) -> Option<LinkEnd> {
        let p = &self.ports[self.port_index(id)?];
        let (node, iface) = p.name.split_once('/')?;
        Some(LinkEnd {
            node: node.to_string(),
            iface: iface.to_string(),
        })
    }

    /// Every interface, External or not, in node and interface order: the capture points.
    pub fn ifaces(&self) -> impl Iterator<Item = IfaceId> + '_ {
        self.ports.iter().map(|p| p.id)
    }

    /// The interfaces of External nodes: the ones the shell must attach a TUN to.
    pub fn external_ifaces(&self) -> impl Iterator<Item = IfaceId> + '_ {
        self.ports.iter().filter(|p| p.external).map(|p| p.id)
    }

    /// An interface's MTU (what the lab sets on its TUN, and what reads must have room for).
    pub fn mtu(&self, id: IfaceId) -> Option<u32> {
        self.port_index(id).map(|p| self.ports[p].mtu as u32)
    }

    /// The node's name.
    pub fn node_name(&self, node: usize) -> Option<&str> {
        self.nodes.get(node).map(|n| n.name.as_str())
    }

    /// Replaces the behaviour of a fabric node (not an External one) with `node`, returning
    /// the old one. How node kinds the spec does not know yet (a NAT engine under
    /// development, a test double) are plugged in without touching segments or links.
    pub fn replace_node(
        &mut self,
        node: usize,
        behaviour: Box<dyn Node>,
    ) -> Result<Box<dyn Node>, FabricError> {
        let state = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| FabricError::Spec(format!("no node #{node}")))?;
        match state.behaviour.as_mut() {
            Some(old) => Ok(std::mem::replace(old, behaviour)),
            None => Err(FabricError::Spec(format!(
                "node {} is External: its packets go to a TUN, not to a Node",
                state.name
            ))),
        }
    }

    /// Sends a run-time command to a fabric node.
    pub fn control_node(
        &mut self,
        now: Instant,
        node: usize,
        ctl: &super::NodeControl,
    ) -> Result<(), FabricError> {
        let state = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| FabricError::Spec(format!("no node #{node}")))?;
        let name = state.name.clone();
        match state.behaviour.as_mut() {
            Some(b) => b
                .control(now, ctl)
                .map_err(|e| FabricError::Spec(format!("node {name}: {e}"))),
            None => Err(FabricError::Spec(format!(
                "node {name} is a namespace, not a fabric node"
            ))),
        }
    }

    /// Index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Turns capture records on or off. Off (the default) costs nothing per packet: no
    /// copies are made.
    pub fn set_capture(&mut self, on: bool) {
        self.capture = on;
        if !on {
            self.captures.clear();
        }
    }

    pub fn capture_enabled(&self) -> bool {
        self.capture
    }

    /// Takes the capture records made so far, in the order they happened.
    pub fn take_captures(&mut self) -> std::vec::Drain<'_, CaptureEvent> {
        self.captures.drain(..)
    }

    /// The impairment currently applied to one direction of a link.
    pub fn impairment(&self, iface: IfaceId, dir: Direction) -> Option<&Impairment> {
        let p = &self.ports[self.port_index(iface)?];
        Some(match dir {
            Direction::Out => p.egress.impairment(),
            Direction::In => p.ingress.impairment(),
        })
    }

    /// Changes one direction's impairment. Packets already on the link keep their schedule;
    /// only packets entering that direction from now on see the new values.
    pub fn set_impairment(
        &mut self,
        iface: IfaceId,
        dir: Direction,
        imp: Impairment,
    ) -> Result<(), FabricError> {
        let p = self.port_index(iface).ok_or(FabricError::UnknownIface(iface))?;
        let port = &mut self.ports[p];
        imp.validate().map_err(|reason| FabricError::Impairment {
            link: port.name.clone(),
            direction: dir,
            reason,
        })?;
        match dir {
            Direction::Out => port.egress.set_impairment(imp),
            Direction::In => port.ingress.set_impairment(imp),
        }
        Ok(())
    }

    /// A snapshot of every link end's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            links: self
                .ports
                .iter()
                .map(|p| LinkStatsEntry {
                    id: p.id,
                    name: p.name.clone(),
                    stats: p.stats,
                })
                .collect(),
        }
    }

    /// Counts a drop the shell made (a failed TUN write) at a link end.
    pub fn count_drop(&mut self, iface: IfaceId, reason: DropReason) {
        if let Some(p) = self.port_index(iface) {
            self.ports[p].count_drop(reason);
        }
    }

    /// A packet that an External node's interface sent (read from its TUN) at `now`.
    /// Anything due up to `now` is processed first, so packets keep their time order.
    /// An unknown interface is ignored; a fabric node's interface is accepted as if that
    /// node had sent the packet (tests use this to inject traffic anywhere).
    pub fn ingress(&mut self, now: Instant, iface: IfaceId, packet: Vec<u8>) {
        let Some(p) = self.port_index(iface) else {
            tracing::debug!(%iface, "ingress on an unknown interface ignored");
            return;
        };
        while self.step(now) {}
        self.transmit(now, p, None, packet);
        self.drain_immediate(now);
    }

    /// The next packet due for an External interface at `now`, processing whatever became
    /// due (link delays, router hops, node timers) on the way.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Delivery> {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Some(d);
            }
            if !self.step(now) {
                return None;
            }
        }
    }

    /// When something is next due: call [`Fabric::poll_delivery`] then. `None` if nothing
    /// is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.ready.front().map(|d| d.at);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.events.peek().map(|e| e.at));
        for node in &self.nodes {
            if let Some(b) = &node.behaviour {
                consider(b.poll_timeout());
            }
        }
        next
    }

    /// Runs the earliest piece of work due at or before `now` (a scheduled event or a node
    /// timer) and everything it makes due at the same time. False if nothing was due.
    fn step(&mut self, now: Instant) -> bool {
        let event_at = self.events.peek().map(|e| e.at).filter(|&t| t <= now);
        let mut timer: Option<(Instant, usize)> = None;
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(t) = node.behaviour.as_ref().and_then(|b| b.poll_timeout()) {
                let earlier = match timer {
                    Some((best, _)) => t < best,
                    None => true,
                };
                if t <= now && earlier {
                    timer = Some((t, n));
                }
            }
        }
        match (event_at, timer) {
            (Some(e), Some((t, n))) if t < e => self.run_timer(t, n),
            (Some(_), _) => {
                if let Some(ev) = self.events.pop() {
                    self.run(ev.at, ev.work);
                    self.drain_immediate(ev.at);
                }
            }
            (None, Some((t, n))) => self.run_timer(t, n),
            (None, None) => return false,
        }
        true
    }

    fn run_timer(&mut self, at: Instant, node: usize) {
        if let Some(b) = self.nodes[node].behaviour.as_mut() {
            b.handle_timeout(at, &mut self.outbox);
        }
        self.collect_outbox(at, node);
        self.drain_immediate(at);
    }

    fn drain_immediate(&mut self, at: Instant) {
        while let Some(w) = self.immediate.pop_front() {
            self.run(at, w);
        }
    }

    fn schedule(&mut self, at: Instant, now: Instant, work: Work) {
        if at <= now {
            self.immediate.push_back(work);
        } else {
            self.seq += 1;
            self.events.push(Event {
                at,
                seq: self.seq,
                work,
            });
        }
    }

    /// Schedules the copies a link direction let through.
    fn schedule_copies(
        &mut self,
        now: Instant,
        transit: Transit,
        packet: Vec<u8>,
        make: impl Fn(Vec<u8>) -> Work,
    ) {
        match transit.copies {
            [Some(a), Some(b)] => {
                self.schedule(a, now, make(packet.clone()));
                self.schedule(b, now, make(packet));
            }
            [Some(a), None] | [None, Some(a)] => self.schedule(a, now, make(packet)),
            [None, None] => {}
        }
    }

    fn record(&mut self, port: usize, direction: Direction, at: Instant, packet: &[u8]) {
        if self.capture {
            self.captures.push(CaptureEvent {
                iface: self.ports[port].id,
                direction,
                at,
                packet: packet.to_vec(),
            });
        }
    }

    /// Port `from` sends `packet` at `now`: capture, MTU, the segment's choice of receiver,
    /// then the egress direction of `from`'s link.
    fn transmit(&mut self, now: Instant, from: usize, next_hop: Option<Ipv4Addr>, packet: Vec<u8>) {
        let len = packet.len();
        self.record(from, Direction::Out, now, &packet);
        let port = &mut self.ports[from];
        port.stats.sent_packets += 1;
        port.stats.sent_bytes += len as u64;
        if len > port.mtu {
            return port.count_drop(DropReason::Mtu);
        }
        let to = match self.resolve(from, next_hop, &packet) {
            Ok(to) => to,
            Err(reason) => return self.ports[from].count_drop(reason),
        };
        let port = &mut self.ports[from];
        let transit = port.egress.transit(now, len, &mut port.stats);
        self.schedule_copies(now, transit, packet, |packet| Work::Cross { to, packet });
    }

    /// The segment's forwarding decision: which port receives what `from` sends.
    ///
    /// IPv4: the owner of `next_hop` if given (a router's choice), else of the destination
    /// if it is inside the segment's subnet, else the sender's gateway. IPv6 on a
    /// dual-stack segment: the owner of the destination inside `subnet6` (multicast has
    /// none), else the sender's `gateway6`. IPv6 elsewhere: to the other External member if
    /// the segment has exactly two and the sender is one of them, else to the gateway.
    fn resolve(&self, from: usize, next_hop: Option<Ipv4Addr>, packet: &[u8]) -> Result<usize, DropReason> {
        let port = &self.ports[from];
        let seg = &self.segments[port.segment];
        match packet::parse_ip(packet) {
            Some(packet::IpInfo::V4(info)) => {
                let target = match next_hop {
                    Some(hop) => hop,
                    None if seg.contains(info.dst) => info.dst,
                    None => return port.gateway.ok_or(DropReason::NoRoute),
                };
                seg.owners.get(&target).copied().ok_or(DropReason::NoHost)
            }
            Some(packet::IpInfo::V6(info)) if seg.net6.is_some() => {
                // A dual-stack segment routes IPv6 like IPv4: on-link by its subnet, else
                // the gateway. Multicast (the kernels' MLD reports, say) has no owner here.
                if info.dst.is_multicast() {
                    return Err(DropReason::NoHost);
                }
                if seg.contains6(info.dst) == Some(true) {
                    return seg.owners6.get(&info.dst).copied().ok_or(DropReason::NoHost);
                }
                port.gateway6.ok_or(DropReason::NoRoute)
            }
            Some(packet::IpInfo::V6(_)) => {
                if port.external && seg.externals.len() == 2 {
                    if let Some(&other) = seg.externals.iter().find(|&&p| p != from) {
                        return Ok(other);
                    }
                }
                port.gateway.ok_or(DropReason::NoRoute)
            }
            None => Err(DropReason::Malformed),
        }
    }

    fn run(&mut self, at: Instant, work: Work) {
        match work {
            Work::Cross { to, packet } => {
                let port = &mut self.ports[to];
                if packet.len() > port.mtu {
                    return port.count_drop(DropReason::Mtu);
                }
                let transit = port.ingress.transit(at, packet.len(), &mut port.stats);
                self.schedule_copies(at, transit, packet, |packet| Work::Arrive { to, packet });
            }
            Work::Arrive { to, packet } => self.arrive(at, to, packet),
        }
    }

    /// Port `to`'s node receives `packet` at `at`.
    fn arrive(&mut self, at: Instant, to: usize, packet: Vec<u8>) {
        self.record(to, Direction::In, at, &packet);
        let port = &mut self.ports[to];
        port.stats.delivered_packets += 1;
        port.stats.delivered_bytes += packet.len() as u64;
        let id = port.id;
        let node = id.node;
        match self.nodes[node].behaviour.as_mut() {
            None => self.ready.push_back(Delivery {
                iface: id,
                at,
                packet,
            }),
            Some(b) => {
                b.handle(at, id.iface, packet, &mut self.outbox);
                self.collect_outbox(at, node);
            }
        }
    }

    /// Carries out what a node put in the outbox: drops are counted, sends transmitted.
    fn collect_outbox(&mut self, at: Instant, node: usize) {
        let (first, count) = (self.nodes[node].first_port, self.nodes[node].ports);
        let mut outbox = std::mem::take(&mut self.outbox);
        for (iface, reason) in outbox.drops.drain(..) {
            if iface < count {
                self.ports[first + iface].count_drop(reason);
            }
        }
        for send in outbox.sends.drain(..) {
            if send.iface < count {
                self.transmit(at, first + send.iface, send.next_hop, send.packet);
            } else {
                tracing::warn!(node = %self.nodes[node].name, iface = send.iface, "node sent on a missing interface");
            }
        }
        self.outbox = outbox;
    }
}
