//! Runs cells: builds the cell's lab, starts implementations through their adapters,
//! carries out the steps, tears down, then judges what the capture shows.
//!
//! Step results become checks of their own (`STEP-n`), next to the registry's passive
//! checks. A failure of the environment (a lab that would not build, a program that would
//! not start, an adapter that is wrong) is an ERROR with the relevant log tail, never a
//! FAIL.

use super::adapter::{expand as expand_args, Adapter, Readiness, Role, Vars};
use super::model::{Artifacts, CellResult, CheckResult, Evidence, Outcome, Verdict};
use super::scenario::{
    self, Action, At, Cell, LinkState, NatAction, PingExpect, Scenario, DEFAULT_PING_TIMEOUT,
};
use crate::fabric::{Direction, NodeControl};
use crate::lab::{Lab, LabOptions};
use crate::topology::{NatKind, NatKnobs, NatPreset, NatSpec, Topology};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a run's inputs and outputs are.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run directory: `out/<run-id>/`.
    pub run_dir: PathBuf,
    pub state_root: PathBuf,
    /// The `bedlab` program (for helper subcommands run inside nodes).
    pub bedlab: PathBuf,
    pub strict: bool,
}

/// The implementations and scenarios of a suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub scenarios: Vec<Arc<Scenario>>,
    pub adapters: Vec<Adapter>,
}

impl Suite {
    /// Default axes: every adapter with the role, the current profile.
    pub fn defaults(&self) -> BTreeMap<String, Vec<String>> {
        let mut d = BTreeMap::new();
        let with = |f: fn(&Adapter) -> bool| {
            self.adapters
                .iter()
                .filter(|a| f(a))
                .map(|a| a.name.clone())
                .collect()
        };
        d.insert("peer".to_string(), with(|a| a.peer.is_some()));
        d.insert("router".to_string(), with(|a| a.router.is_some()));
        d.insert("profile".to_string(), vec!["current".to_string()]);
        d
    }

    /// Every cell, in a stable order; `filter` keeps cells whose id contains every term;
    /// `shard` `(k, n)` keeps every n-th cell starting at the k-th (1-based).
    pub fn cells(&self, filter: &[String], shard: Option<(usize, usize)>) -> Vec<Cell> {
        let defaults = self.defaults();
        let all: Vec<Cell> = self
            .scenarios
            .iter()
            .flat_map(|s| scenario::expand(s, &defaults))
            .filter(|c| {
                let id = c.id().to_string();
                filter.iter().all(|f| id.contains(f.as_str()))
            })
            .collect();
        match shard {
            Some((k, n)) if n > 0 => all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % n == k - 1)
                .map(|(_, c)| c)
                .collect(),
            _ => all,
        }
    }

    fn adapter(&self, name: &str) -> Option<&Adapter> {
        self.adapters.iter().find(|a| a.name == name)
    }
}

/// A file-system-safe, unique name for a cell's directory.
pub fn cell_slug(index: usize, cell: &Cell) -> String {
    let id = cell.id().to_string();
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '=' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index:03}-{}", clean.trim_matches('_'))
}

/// A step's result as a check.
fn step_check(
    index: usize,
    title: String,
    verdict: Verdict,
    message: String,
    scenario: &Scenario,
) -> CheckResult {
    CheckResult {
        id: format!("STEP-{index}"),
        title,
        source: format!("{} step {index}", scenario.origin.display()),
        verdict,
        message,
        evidence: Vec::new(),
    }
}

/// Why a cell could not go on.
enum Stop {
    /// The environment failed.
    Error(String),
    /// The implementation failed a step; later steps make no sense.
    Fail,
}

/// The roles a node can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleKind {
    Router,
    Peer,
}

struct CellRun<'a> {
    cell: &'a Cell,
    suite: &'a Suite,
    ctx: &'a RunContext,
    lab: Lab,
    profile: String,
    router_ip: Ipv4Addr,
    router_port: u16,
    checks: Vec<CheckResult>,
    /// Node → (adapter, role) for started nodes.
    roles: BTreeMap<String, (Adapter, RoleKind)>,
    /// Node → the address it had at the last wait.
    addresses: BTreeMap<String, Ipv6Addr>,
    /// Node → the first address it got.
    first_addresses: BTreeMap<String, Ipv6Addr>,
    /// The NAT UDP timeout a step set, if any.
    nat_timeout: Option<Duration>,
    /// When and from where the negative corpus was injected.
    injection: Option<super::checks::Injection>,
    /// When a NAT was flushed or rebound (ns since the epoch).
    rebinding_at_ns: Option<u64>,
    started: Instant,
    /// The live view of the links the scenario's packet waits watch (opened at the start
    /// of the cell, only when there are such waits).
    watch: Option<super::steps::packet::Watch>,
    /// When the previous step ended (a wait: when its event happened).
    last_end: Instant,
    /// When each step with an `id` ended.
    step_ends: BTreeMap<String, Instant>,
    /// The event time the current step reports (a wait's packet or address).
    event_at: Option<Instant>,
}

/// Applies the cell's NAT and impairment axes to the topology.
fn topology_for(cell: &Cell, base: &Topology) -> Result<Topology, String> {
    let mut t = base.clone();
    for router in &mut t.routers {
        let Some(value) = cell.params.get(&router.name) else {
            continue;
        };
        let Some(nat) = router.nat.as_mut() else { continue };
        let (base_name, hairpin) = match value.strip_suffix("+hairpin") {
            Some(b) => (b, true),
            None => (value.as_str(), false),
        };
        let kind = match base_name {
            "linux-masquerade" => NatKind::LinuxMasquerade,
            "linux-masquerade-random" => NatKind::LinuxMasqueradeRandom,
            other => {
                let preset = NatPreset::ALL
                    .into_iter()
                    .find(|p| p.as_str() == other)
                    .ok_or_else(|| format!("unknown NAT behaviour {other:?}"))?;
                NatKind::Userspace { preset: Some(preset) }
            }
        };
        let mut spec = NatSpec::new(nat.outside.clone(), kind);
        let mut knobs = NatKnobs {
            udp_timeout: nat.knobs.udp_timeout,
            external_addresses: nat.knobs.external_addresses.clone(),
            ..NatKnobs::default()
        };
        if hairpin {
            knobs.hairpinning = Some(true);
        }
        if kind.is_linux() {
            knobs = NatKnobs {
                udp_timeout: nat.knobs.udp_timeout,
                ..NatKnobs::default()
            };
        }
        spec = spec.knobs(knobs);
        *nat = spec;
    }
    if let Some(name) = cell.params.get("impairment").filter(|n| *n != "none") {
        let imp = cell
            .scenario
            .impairments
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no impairment {name}"))?;
        for h in t.hosts.iter_mut().filter(|h| h.role == "peer") {
            for i in &mut h.interfaces {
                i.egress = imp.clone();
                i.ingress = imp.clone();
            }
        }
    }
    t.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// What one ping sends: `count` echoes `interval` apart with `size` data bytes; replies
/// are waited for until `timeout` after the last.
#[derive(Debug, Clone, Copy)]
struct Echoes {
    count: u32,
    interval: Duration,
    size: Option<u32>,
    timeout: Duration,
}

impl Echoes {
    fn new(count: u32, interval: Duration) -> Echoes {
        Echoes {
            count,
            interval,
            size: None,
            timeout: DEFAULT_PING_TIMEOUT,
        }
    }
}

/// One ordered pair of a mesh ping: (sent, received), `None` when `to` had no address.
struct MeshRow {
    from: String,
    to: String,
    result: Option<(u32, u32)>,
}

/// ICMPv6 echo from `from` to `to` with `bedlab echo6` inside the node (see `echo` for
/// why not iputils ping).
fn ping_in(
    lab: &Lab,
    bedlab: &Path,
    from: &str,
    to: Ipv6Addr,
    e: Echoes,
) -> Result<super::echo::EchoReport, Stop> {
    let Echoes {
        count,
        interval,
        size,
        timeout,
    } = e;
    let mut argv = vec![
        bedlab.display().to_string(),
        "echo6".into(),
        to.to_string(),
        "--count".into(),
        count.to_string(),
        "--interval-ms".into(),
        interval.as_millis().max(2).to_string(),
        "--timeout-ms".into(),
        timeout.as_millis().to_string(),
    ];
    if let Some(s) = size {
        argv.push("--size".into());
        argv.push(s.to_string());
    }
    let out = lab.exec(from, &argv).map_err(|e| Stop::Error(e.to_string()))?;
    if !out.status.success() {
        return Err(Stop::Error(format!(
            "echo6 in {from} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let report: super::echo::EchoReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        Stop::Error(format!(
            "echo6 in {from} printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })?;
    Ok(report)
}

/// Whether `got` of `sent` echo replies meet what the step expects.
fn ping_met(expect: PingExpect, sent: u32, got: u32) -> bool {
    match expect {
        PingExpect::Success => got == sent,
        PingExpect::Some => got > 0,
        PingExpect::Failure => got == 0,
        PingExpect::Any => true,
    }
}

/// Global IPv6 addresses on `ifname` inside `node` (empty if the interface is absent).
fn global_addresses(lab: &Lab, node: &str, ifname: &str) -> Vec<Ipv6Addr> {
    let Ok(ns) = lab.netns(node) else {
        return Vec::new();
    };
    let ifname = ifname.to_string();
    ns.run(move || -> Vec<Ipv6Addr> {
        let Ok(cname) = std::ffi::CString::new(ifname) else {
            return Vec::new();
        };
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Vec::new();
        }
        let Ok(mut nl) = sixbed4::sys::netlink::Netlink::open() else {
            return Vec::new();
        };
        nl.addresses_v6(index)
            .unwrap_or_default()
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| !a.is_loopback() && (a.segments()[0] & 0xffc0) != 0xfe80)
            .collect()
    })
    .unwrap_or_default()
}

impl<'a> CellRun<'a> {
    fn vars(&self, adapter: &Adapter, role: &Role, node: &str) -> Result<Vars, String> {
        let t = &self.cell.scenario.timers;
        let binary = adapter.binary.as_ref().ok_or_else(|| {
            format!(
                "adapter {}: none of {:?} exists",
                adapter.name, adapter.binary_candidates
            )
        })?;
        let profile: sixbed4::profile::Profile = self.profile.parse().map_err(|e| format!("{e}"))?;
        let mut v = Vars::new();
        v.insert("binary", binary.display().to_string());
        v.insert("node", node.to_string());
        v.insert("router_ip", self.router_ip.to_string());
        v.insert("router_port", self.router_port.to_string());
        v.insert("profile", self.profile.clone());
        v.insert(
            "prefix",
            sixbed4::profile::prefix_to_string(profile.default_prefix(self.router_ip)),
        );
        v.insert("ifname", role.ifname.clone());
        v.insert("lanip", "1".into());
        let ka = t.keepalive.unwrap_or(Duration::from_secs(3600));
        v.insert("keepalive", ms(ka));
        v.insert("keepalive_ttl", t.keepalive_ttl.to_string());
        v.insert("keepalive_s", ka.as_secs().max(1).to_string());
        v.insert(
            "keepalive_spec",
            t.keepalive
                .map_or_else(|| "off".to_string(), |k| format!("{},{}", ms(k), t.keepalive_ttl)),
        );
        v.insert("rs_initial", ms(t.rs_initial));
        v.insert("rs_max", ms(t.rs_max));
        v.insert("reachable", ms(t.reachable));
        v.insert("holddown", ms(t.holddown));
        v.insert("probe_interval", ms(t.probe_interval));
        v.insert("bypass_flag", String::new());
        // The native IPv6 network behind the 6bed4 router, if the topology has one: the
        // router announces it so that peers route it through the tunnel.
        let native = self.native_prefix();
        v.insert("native_prefix", native.clone().unwrap_or_default());
        v.insert(
            "route_flag",
            native.map(|p| format!("--route={p}")).unwrap_or_default(),
        );
        Ok(v)
    }

    /// The `subnet6` of the first dual-stack segment the 6bed4 router's host is on.
    fn native_prefix(&self) -> Option<String> {
        let t = self.lab.topology();
        let router = t.nodes_with_role("6bed4-router").next()?;
        router
            .interfaces()
            .iter()
            .filter(|i| i.address6.is_some())
            .find_map(|i| t.segment(&i.segment)?.subnet6)
            .map(|n| n.to_string())
    }

    /// Which implementation and role a node runs.
    fn role_of(&self, node: &str) -> Result<(Adapter, RoleKind), Stop> {
        let topo_role = self
            .lab
            .topology()
            .node(node)
            .map(|n| n.role().to_string())
            .unwrap_or_default();
        let kind = if topo_role == "6bed4-router" {
            RoleKind::Router
        } else {
            RoleKind::Peer
        };
        let axis = if kind == RoleKind::Router {
            "router"
        } else {
            "peer"
        };
        let name = self
            .cell
            .params
            .get(node)
            .or_else(|| self.cell.params.get(axis))
            .cloned()
            .unwrap_or_else(|| "sixbed4".into());
        let adapter = self
            .suite
            .adapter(&name)
            .cloned()
            .ok_or_else(|| Stop::Error(format!("no adapter named {name:?} in harness/impls")))?;
        Ok((adapter, kind))
    }

    fn start(&mut self, step: usize, node: &str) -> Result<(), Stop> {
        let (adapter, kind) = self.role_of(node)?;
        let role = match kind {
            RoleKind::Router => adapter.router.clone(),
            RoleKind::Peer => adapter.peer.clone(),
        }
        .ok_or_else(|| Stop::Error(format!("adapter {} has no {kind:?} role", adapter.name)))?;
        let vars = self.vars(&adapter, &role, node).map_err(Stop::Error)?;
        let argv = expand_args(&role.start, &vars)
            .map_err(|e| Stop::Error(format!("adapter {}: {e}", adapter.name)))?;
        let name = adapter.name.clone();
        self.lab
            .spawn(node, &name, &argv)
            .map_err(|e| Stop::Error(e.to_string()))?;
        for cmd in &role.after_start {
            let argv =
                expand_args(cmd, &vars).map_err(|e| Stop::Error(format!("adapter {}: {e}", adapter.name)))?;
            let out = self
                .lab
                .exec(node, &argv)
                .map_err(|e| Stop::Error(e.to_string()))?;
            if !out.status.success() {
                return Err(Stop::Error(format!(
                    "after_start command {argv:?} in {node} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        self.roles.insert(node.to_string(), (adapter, kind));
        match role.ready {
            Readiness::Delay(d) => std::thread::sleep(d),
            Readiness::Address => {
                let deadline = role.ready_timeout;
                let ok = Lab::wait_for(deadline, || {
                    self.exited(node).is_some() || !global_addresses(&self.lab, node, &role.ifname).is_empty()
                });
                if let Some(status) = self.exited(node) {
                    let tail = self.log_tail(node);
                    self.checks.push(step_check(
                        step,
                        format!("start {node}"),
                        Verdict::Fail,
                        format!("{name} in {node} exited ({status}) before it was ready:\n{tail}"),
                        &self.cell.scenario,
                    ));
                    return Err(Stop::Fail);
                }
                if !ok {
                    let what = if kind == RoleKind::Router {
                        "its tunnel address"
                    } else {
                        "an address"
                    };
                    self.checks.push(step_check(
                        step,
                        format!("start {node}"),
                        Verdict::Fail,
                        format!(
                            "{name} in {node} got no {what} on {} within {:?}",
                            role.ifname, deadline
                        ),
                        &self.cell.scenario,
                    ));
                    return Err(Stop::Fail);
                }
                if let Some(a) = global_addresses(&self.lab, node, &role.ifname).first() {
                    self.addresses.insert(node.to_string(), *a);
                    self.first_addresses.entry(node.to_string()).or_insert(*a);
                }
            }
        }
        Ok(())
    }

    /// How the node's current (most recently started) process ended, if it did.
    fn exited(&mut self, node: &str) -> Option<String> {
        self.lab
            .processes()
            .iter_mut()
            .rev()
            .find(|p| p.node == node)
            .and_then(|p| p.try_wait().ok().flatten().map(|s| s.to_string()))
    }

    fn log_tail(&mut self, node: &str) -> String {
        self.lab
            .processes()
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.stderr_tail(15))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop_node(&mut self, node: &str) {
        for p in self.lab.processes().iter_mut().filter(|p| p.node == node) {
            let _ = p.stop(Duration::from_secs(2));
        }
    }

    fn ifname_of(&self, node: &str) -> String {
        self.roles
            .get(node)
            .and_then(|(a, k)| match k {
                RoleKind::Router => a.router.as_ref(),
                RoleKind::Peer => a.peer.as_ref(),
            })
            .map_or_else(|| "6bed4".to_string(), |r| r.ifname.clone())
    }

    /// A ping target: a node's current tunnel address, a native host's IPv6 address (a node
    /// that runs no 6bed4 role), or a literal address.
    fn target(&self, to: &str) -> Option<Ipv6Addr> {
        if let Ok(a) = to.parse() {
            return Some(a);
        }
        if !self.roles.contains_key(to) {
            let native = self
                .lab
                .topology()
                .node(to)
                .and_then(|n| n.interfaces().iter().find_map(|i| i.address6));
            if native.is_some() {
                return native;
            }
        }
        global_addresses(&self.lab, to, &self.ifname_of(to))
            .first()
            .copied()
    }

    fn ping(&mut self, from: &str, to: Ipv6Addr, e: Echoes) -> Result<super::echo::EchoReport, Stop> {
        ping_in(&self.lab, &self.ctx.bedlab, from, to, e)
    }

    /// Every node of `nodes` pings every other one; the sources run at once (one thread
    /// each, their targets in turn). Returns, per ordered pair, (sent, received); a node
    /// without an address is reported as `None`.
    fn ping_mesh(&self, nodes: &[String], e: Echoes) -> Result<Vec<MeshRow>, Stop> {
        let addrs: Vec<Option<Ipv6Addr>> = nodes.iter().map(|n| self.target(n)).collect();
        let lab = &self.lab;
        let bedlab = self.ctx.bedlab.as_path();
        let per_source: Vec<Result<Vec<MeshRow>, Stop>> = std::thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|from| {
                    let addrs = &addrs;
                    scope.spawn(move || {
                        let mut rows = Vec::new();
                        for (to, addr) in nodes.iter().zip(addrs) {
                            if to == from {
                                continue;
                            }
                            let result = match addr {
                                Some(a) => {
                                    let r = ping_in(lab, bedlab, from, *a, e)?;
                                    Some((r.sent, r.received))
                                }
                                None => None,
                            };
                            rows.push(MeshRow {
                                from: from.clone(),
                                to: to.clone(),
                                result,
                            });
                        }
                        Ok(rows)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Stop::Error("a mesh ping thread panicked".into())))
                })
                .collect()
        });
        let mut rows = Vec::new();
        for r in per_source {
            rows.extend(r?);
        }
        Ok(rows)
    }

    /// Whether a datagram carrying IPv6 from `from_addr` to `to_addr` reached `to`'s uplink
    /// from anywhere but the router: the direct path is in use.
    fn saw_direct(&self, to: &str, from_addr: Ipv6Addr, to_addr: Ipv6Addr) -> bool {
        let Some(path) = self.lab.capture_path() else {
            return false;
        };
        let Ok(mut reader) = crate::capture::Reader::open(path) else {
            return false;
        };
        let prefix = format!("{to}/");
        while let Ok(Some(p)) = reader.next_packet() {
            let on_uplink = p
                .interface_name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with("/6bed4"));
            if !on_uplink || p.direction != Some(crate::capture::Direction::Inbound) {
                continue;
            }
            let d = &p.data;
            if d.len() < 28 + 40 || d[0] >> 4 != 4 || d[9] != 17 {
                continue;
            }
            let ihl = usize::from(d[0] & 0x0f) * 4;
            let outer_src = Ipv4Addr::new(d[12], d[13], d[14], d[15]);
            let Some(inner) = d.get(ihl + 8..) else { continue };
            if inner.len() < 40 || inner[0] >> 4 != 6 {
                continue;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[8..24]).unwrap_or([0; 16]));
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[24..40]).unwrap_or([0; 16]));
            if src == from_addr && dst == to_addr && outer_src != self.router_ip && inner[6] != 58 {
                return true;
            }
            if src == from_addr
                && dst == to_addr
                && outer_src != self.router_ip
                && inner.get(40).is_some_and(|t| *t == 128 || *t == 129)
            {
                return true;
            }
        }
        false
    }

    fn run_step(&mut self, step: &scenario::Step) -> Result<(), Stop> {
        let sc = self.cell.scenario.clone();
        match &step.action {
            Action::Start(nodes) => {
                for n in nodes {
                    self.start(step.index, n)?;
                }
            }
            Action::Stop(nodes) => {
                for n in nodes {
                    self.stop_node(n);
                }
            }
            Action::Restart(nodes) => {
                for n in nodes {
                    self.stop_node(n);
                    self.start(step.index, n)?;
                }
            }
            Action::WaitAddress { nodes, timeout } | Action::WaitAddressChange { nodes, timeout } => {
                let change = matches!(step.action, Action::WaitAddressChange { .. });
                // A window replaces the timeout: the address must appear inside it.
                let window = self.window_of(step);
                let timeout = window.map_or(*timeout, |(_, hi)| hi.saturating_duration_since(Instant::now()));
                for n in nodes {
                    let ifname = self.ifname_of(n);
                    let before = self.addresses.get(n).copied();
                    let mut got = None;
                    let ok = Lab::wait_for(timeout, || {
                        got = global_addresses(&self.lab, n, &ifname)
                            .into_iter()
                            .find(|a| !change || Some(*a) != before);
                        got.is_some()
                    });
                    let seen_at = Instant::now();
                    let what = if change { "a new address" } else { "an address" };
                    if !ok {
                        self.checks.push(step_check(
                            step.index,
                            format!("{n} has {what}"),
                            Verdict::Fail,
                            format!("{n} had no {what} on {ifname} within {timeout:?} (before: {before:?})"),
                            &sc,
                        ));
                        return Err(Stop::Fail);
                    }
                    if let (Some((lo, _)), Some(w)) = (window, &step.window) {
                        if seen_at < lo {
                            self.checks.push(step_check(
                                step.index,
                                format!("{n} has {what}"),
                                Verdict::Fail,
                                format!("{n} had {what} too early: before the window {}", w.describe()),
                                &sc,
                            ));
                            return Err(Stop::Fail);
                        }
                    }
                    self.event_at = Some(seen_at);
                    if let Some(a) = got {
                        self.addresses.insert(n.clone(), a);
                        self.checks.push(step_check(
                            step.index,
                            format!("{n} has {what}"),
                            Verdict::Pass,
                            format!("{n} has {a}"),
                            &sc,
                        ));
                    }
                }
            }
            Action::WaitPath { from, to, timeout } => {
                let expected = self.expected_path(from, to);
                if expected == "direct" {
                    return self.run_step(&scenario::Step {
                        at: At::Next,
                        action: Action::WaitDirect {
                            from: from.clone(),
                            to: to.clone(),
                            timeout: *timeout,
                        },
                        index: step.index,
                        id: None,
                        window: None,
                    });
                }
                let (Some(a), Some(b)) = (self.target(from), self.target(to)) else {
                    self.checks.push(step_check(
                        step.index,
                        format!("path {from}→{to}"),
                        Verdict::Fail,
                        "a node has no address".into(),
                        &sc,
                    ));
                    return Err(Stop::Fail);
                };
                // Give a bypass every chance to (wrongly) come up, then look.
                let deadline = Instant::now() + *timeout;
                let mut got = 0;
                while Instant::now() < deadline {
                    got += self
                        .ping(from, b, Echoes::new(1, Duration::from_millis(10)))?
                        .received;
                    std::thread::sleep(Duration::from_millis(200));
                }
                let direct = self.saw_direct(to, a, b);
                let (verdict, msg) = match (direct, got > 0) {
                    (false, true) => (
                        Verdict::Pass,
                        format!("{from}→{to} stays via the router, as spec §7 expects here; {got} replies"),
                    ),
                    (true, _) => (
                        Verdict::Fail,
                        format!("{from}→{to} went direct where spec §7 expects via-router"),
                    ),
                    (false, false) => (
                        Verdict::Fail,
                        format!("no reply at all {from}→{to}: data must flow both ways in every cell"),
                    ),
                };
                self.checks.push(CheckResult {
                    id: "ND-05".into(),
                    title: format!("path {from}→{to} as spec §7 expects ({expected})"),
                    source: "6bed4 spec §7".into(),
                    verdict,
                    message: msg,
                    evidence: Vec::new(),
                });
            }
            Action::WaitDirect { from, to, timeout } => {
                let (Some(a), Some(b)) = (self.target(from), self.target(to)) else {
                    self.checks.push(step_check(
                        step.index,
                        format!("direct {from}→{to}"),
                        Verdict::Fail,
                        "a node has no address".into(),
                        &sc,
                    ));
                    return Err(Stop::Fail);
                };
                let deadline = Instant::now() + *timeout;
                let mut direct = false;
                while Instant::now() < deadline {
                    self.ping(from, b, Echoes::new(1, Duration::from_millis(10)))?;
                    if self.saw_direct(to, a, b) {
                        direct = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let verdict = if direct { Verdict::Pass } else { Verdict::Fail };
                let msg = if direct {
                    format!("{from}→{to} traffic arrives directly")
                } else {
                    format!("no direct {from}→{to} traffic within {timeout:?}")
                };
                self.checks.push(step_check(
                    step.index,
                    format!("direct {from}→{to}"),
                    verdict,
                    msg,
                    &sc,
                ));
            }
            Action::Ping {
                from,
                to,
                count,
                interval,
                size,
                timeout,
                expect,
            } => {
                let Some(addr) = self.target(to) else {
                    self.checks.push(step_check(
                        step.index,
                        format!("ping {from}→{to}"),
                        Verdict::Fail,
                        format!("{to} has no address"),
                        &sc,
                    ));
                    return Ok(());
                };
                let report = self.ping(
                    from,
                    addr,
                    Echoes {
                        count: *count,
                        interval: *interval,
                        size: *size,
                        timeout: *timeout,
                    },
                )?;
                let (sent, got) = (report.sent, report.received);
                let ok = ping_met(*expect, sent, got);
                let verdict = match (ok, expect) {
                    (_, PingExpect::Any) => Verdict::Info,
                    (true, _) => Verdict::Pass,
                    (false, _) => Verdict::Fail,
                };
                self.checks.push(step_check(
                    step.index,
                    format!("ping {from}→{to}"),
                    verdict,
                    if report.send_errors.is_empty() {
                        format!("{got}/{sent} replies from {addr} (expected: {expect:?})")
                    } else {
                        format!(
                            "{got}/{sent} replies from {addr} (expected: {expect:?}); not sent: {}",
                            report.send_errors.join(", ")
                        )
                    },
                    &sc,
                ));
            }
            Action::PingMesh {
                nodes,
                count,
                interval,
                expect,
            } => {
                let rows = self.ping_mesh(nodes, Echoes::new(*count, *interval))?;
                let missed: Vec<String> = rows
                    .iter()
                    .filter(|r| match r.result {
                        None => true,
                        Some((sent, got)) => !ping_met(*expect, sent, got),
                    })
                    .map(|r| match r.result {
                        None => format!("{}→{} (no address)", r.from, r.to),
                        Some((s, g)) => format!("{}→{} {g}/{s}", r.from, r.to),
                    })
                    .collect();
                let answered = rows.len() - missed.len();
                let verdict = match (missed.is_empty(), expect) {
                    (_, PingExpect::Any) => Verdict::Info,
                    (true, _) => Verdict::Pass,
                    (false, _) => Verdict::Fail,
                };
                let mut msg = format!(
                    "{answered}/{} ordered pairs of {} nodes met {expect:?} ({count} echo each)",
                    rows.len(),
                    nodes.len()
                );
                if !missed.is_empty() {
                    let shown: Vec<&str> = missed.iter().take(20).map(String::as_str).collect();
                    msg.push_str(&format!("; missed: {}", shown.join(", ")));
                    if missed.len() > shown.len() {
                        msg.push_str(&format!(" and {} more", missed.len() - shown.len()));
                    }
                }
                self.checks.push(step_check(
                    step.index,
                    format!("ping mesh of {} nodes", nodes.len()),
                    verdict,
                    msg,
                    &sc,
                ));
            }
            Action::Sleep(d) => std::thread::sleep(*d),
            Action::Nat {
                node,
                action,
                addresses,
                udp_timeout,
            } => {
                match action {
                    NatAction::Timeout => self.nat_timeout = *udp_timeout,
                    NatAction::Flush | NatAction::Rebind => self.rebinding_at_ns = Some(now_ns()),
                    _ => {}
                }
                let ctl = match action {
                    NatAction::Flush => NodeControl::Flush,
                    NatAction::Rebind => NodeControl::Rebind(addresses.clone()),
                    NatAction::Down => NodeControl::SetUp(false),
                    NatAction::Up => NodeControl::SetUp(true),
                    NatAction::Timeout => {
                        NodeControl::SetUdpTimeout(udp_timeout.unwrap_or(Duration::from_secs(30)))
                    }
                };
                self.lab
                    .nat_control(node, ctl)
                    .map_err(|e| Stop::Error(e.to_string()))?;
            }
            Action::Link {
                link,
                direction,
                state,
                impairment,
            } => {
                let dirs: Vec<Direction> = match direction.as_str() {
                    "egress" => vec![Direction::Out],
                    "ingress" => vec![Direction::In],
                    _ => vec![Direction::Out, Direction::In],
                };
                let (node, iface) = link.split_once('/').unwrap_or((link.as_str(), ""));
                let original = self
                    .lab
                    .topology()
                    .interface(node, iface)
                    .map(|i| (i.interface.egress.clone(), i.interface.ingress.clone()));
                for d in dirs {
                    let imp = match (state, impairment) {
                        (Some(LinkState::Down), _) => crate::topology::Impairment {
                            loss: 1.0,
                            ..Default::default()
                        },
                        (_, Some(i)) => i.clone(),
                        (Some(LinkState::Up), None) | (None, None) => match (&original, d) {
                            (Some((e, _)), Direction::Out) => e.clone(),
                            (Some((_, i)), Direction::In) => i.clone(),
                            _ => Default::default(),
                        },
                    };
                    self.lab
                        .set_impairment(link, d, &imp)
                        .map_err(|e| Stop::Error(e.to_string()))?;
                }
            }
            Action::Inject { from, to, corpus } => {
                let target = self
                    .inject_target(to)
                    .ok_or_else(|| Stop::Error(format!("cannot tell where {to} listens")))?;
                let argv = vec![
                    self.ctx.bedlab.display().to_string(),
                    "inject".into(),
                    "--to".into(),
                    target.to_string(),
                    "--corpus".into(),
                    corpus.clone(),
                ];
                let at_ns = now_ns();
                let out = self
                    .lab
                    .exec(from, &argv)
                    .map_err(|e| Stop::Error(e.to_string()))?;
                if !out.status.success() {
                    return Err(Stop::Error(format!(
                        "inject failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                // One window over every injection of the cell: from the first datagram to
                // shortly after the last (the corpus is sent in a few milliseconds).
                let until = now_ns() + 100_000_000;
                let source = self.public_address_of(from);
                self.injection = Some(match self.injection.take() {
                    Some(prev) => super::checks::Injection {
                        at_ns: prev.at_ns.min(at_ns),
                        until_ns: Some(until),
                        source: if prev.source == source { source } else { None },
                    },
                    None => super::checks::Injection {
                        at_ns,
                        until_ns: Some(until),
                        source,
                    },
                });
                self.checks.push(step_check(
                    step.index,
                    format!("inject {corpus} into {to}"),
                    Verdict::Info,
                    String::from_utf8_lossy(&out.stdout).trim().to_string(),
                    &sc,
                ));
            }
            Action::WaitPacket(wait) => self.wait_packet(step, wait)?,
            Action::Flow(spec) => self.flow(step, spec)?,
        }
        Ok(())
    }

    /// What a step's times count from: its window's anchor, else the previous step's end.
    fn anchor_of(&self, step: &scenario::Step) -> Instant {
        use super::steps::Anchor;
        match step.window.as_ref().map(|w| &w.anchor) {
            Some(Anchor::Cell) => self.started,
            Some(Anchor::Step(id)) => self.step_ends.get(id).copied().unwrap_or(self.last_end),
            _ => self.last_end,
        }
    }

    /// The absolute window of a step.
    fn window_of(&self, step: &scenario::Step) -> Option<(Instant, Instant)> {
        step.window.as_ref().map(|w| w.at(self.anchor_of(step)))
    }

    /// Opens the packet watch when the scenario waits for packets: one tap over every link
    /// any of its packet waits names.
    fn open_watch(&mut self) -> Result<(), String> {
        let mut links: Vec<String> = self
            .cell
            .scenario
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::WaitPacket(w) => Some(w.on.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        if links.is_empty() {
            return Ok(());
        }
        links.sort();
        links.dedup();
        let watch = super::steps::packet::Watch::open(&self.lab, &links).map_err(|e| e.to_string())?;
        self.watch = Some(watch);
        Ok(())
    }

    /// `wait = "packet"`: see `steps::packet`.
    fn wait_packet(&mut self, step: &scenario::Step, wait: &super::steps::PacketWait) -> Result<(), Stop> {
        use super::steps::Judgement;
        let started = Instant::now();
        let window = self.window_of(step);
        let baseline = match (&step.window, &wait.since) {
            (None, Some(super::steps::Anchor::Cell)) => self.started,
            (None, Some(super::steps::Anchor::Step(id))) => {
                self.step_ends.get(id).copied().unwrap_or(self.last_end)
            }
            _ => self.anchor_of(step),
        };
        // Every node's current 6bed4 addresses, so filters can name peers and the router.
        let mut v6 = BTreeMap::new();
        for (node, _) in self.roles.clone() {
            v6.insert(
                node.clone(),
                global_addresses(&self.lab, &node, &self.ifname_of(&node)),
            );
        }
        let ids = super::steps::packet::identities(
            self.lab.topology(),
            std::net::SocketAddrV4::new(self.router_ip, self.router_port),
            self.profile == "v01",
            &v6,
        );
        let Some(watch) = self.watch.as_mut() else {
            return Err(Stop::Error("no packet watch is open".into()));
        };
        let lost_before = watch.lost();
        let (judgement, event) = watch.run(wait, &ids, baseline, window, started);
        if watch.lost() != lost_before {
            return Err(Stop::Error(format!(
                "the packet tap lost {} records while waiting: the judgement would be unsound",
                watch.lost() - lost_before
            )));
        }
        let title = match &step.window {
            Some(w) => format!(
                "{:?} on {} at {}",
                wait.filter_text,
                wait.on.join(", "),
                w.describe()
            ),
            None => format!("{:?} on {}", wait.filter_text, wait.on.join(", ")),
        };
        let (verdict, message, fail) = match judgement {
            Judgement::Pass(m) => (Verdict::Pass, m, false),
            Judgement::Fail(m) => (Verdict::Fail, m, true),
        };
        self.checks.push(step_check(
            step.index,
            title,
            verdict,
            message,
            &self.cell.scenario,
        ));
        self.event_at = event;
        if fail {
            return Err(Stop::Fail);
        }
        Ok(())
    }

    /// Where a flow to `to` goes: its tunnel address when it runs a 6bed4 role, else its
    /// native IPv6 address, else its first IPv4 address.
    fn flow_target(&self, to: &str) -> Option<std::net::IpAddr> {
        if self.roles.contains_key(to) {
            return self.target(to).map(std::net::IpAddr::V6);
        }
        let node = self.lab.topology().node(to)?;
        node.interfaces()
            .iter()
            .find_map(|i| i.address6)
            .map(std::net::IpAddr::V6)
            .or_else(|| node.interfaces().first().map(|i| std::net::IpAddr::V4(i.address)))
    }

    /// `flow = {...}`: see `steps::flow`.
    fn flow(&mut self, step: &scenario::Step, spec: &super::steps::flow::FlowSpec) -> Result<(), Stop> {
        let title = spec.title();
        let Some(target) = self.flow_target(&spec.to) else {
            self.checks.push(step_check(
                step.index,
                title,
                Verdict::Fail,
                format!("{} has no address to send to", spec.to),
                &self.cell.scenario,
            ));
            return Ok(());
        };
        let report =
            super::steps::flow::run(&self.lab, &self.ctx.bedlab, spec, target).map_err(Stop::Error)?;
        let (ok, message) = spec.judge(&report);
        let verdict = match (ok, spec.expect) {
            (_, super::steps::flow::FlowExpect::Any) => Verdict::Info,
            (true, _) => Verdict::Pass,
            (false, _) => Verdict::Fail,
        };
        self.checks.push(step_check(
            step.index,
            format!("{title} to {target}"),
            verdict,
            message,
            &self.cell.scenario,
        ));
        Ok(())
    }

    /// What the checks need to know about this cell beyond the capture.
    fn facts(&self) -> super::evaluate::CellFacts {
        use super::checks::{Expectations, PathExpectation};
        use super::decode::{PathKind, Profile};
        let t = self.lab.topology();
        let mut pairs = Vec::new();
        for n in t.nodes() {
            for i in n.interfaces() {
                pairs.push((i.address, n.name().to_string()));
            }
        }
        for r in &t.routers {
            if r.nat.is_some() {
                for a in r.external_addresses() {
                    pairs.push((a, r.name.clone()));
                }
            }
        }
        let mut roles = super::trace::Roles::from_pairs(pairs);
        roles.router = Some("router".into());
        let sc = &self.cell.scenario;
        let tm = &sc.timers;
        let mut schedule = Vec::new();
        let mut gap = tm.rs_initial;
        for _ in 0..8 {
            schedule.push(gap);
            gap = (gap * 2 + tm.rs_initial).min(tm.rs_max);
        }
        let paths = sc
            .expect
            .path
            .iter()
            .map(|((a, b), _)| PathExpectation {
                a: a.clone(),
                b: b.clone(),
                path: if self.expected_path(a, b) == "direct" {
                    PathKind::Direct
                } else {
                    PathKind::ViaRouter
                },
            })
            .collect();
        let expectations = Expectations {
            keepalive_period: tm.keepalive,
            keepalive_ttl: Some(tm.keepalive_ttl),
            rs_schedule: Some(schedule),
            paths,
            nat_udp_timeout: self.nat_timeout,
            injection: self.injection.clone(),
            rebinding_at_ns: self.rebinding_at_ns,
            max_probes: None,
            probe_holddown: Some(tm.holddown),
            tolerance: self.cell.scenario.expect.tolerance,
        };
        let profile = if self.profile == "v01" {
            Profile::V01
        } else {
            Profile::Current
        };
        super::evaluate::CellFacts {
            expectations,
            roles,
            profile,
        }
    }

    /// KA-05 (the mapping held) or RA-09 (the peer moved after a rebinding), as the
    /// scenario expects, comparing each peer's first and final addresses.
    fn mapping_checks(&mut self) -> Vec<CheckResult> {
        let mut out = Vec::new();
        let peers: Vec<(String, Ipv6Addr)> = self
            .first_addresses
            .iter()
            .filter(|(n, _)| self.roles.get(*n).is_some_and(|(_, k)| *k == RoleKind::Peer))
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        for (node, first) in peers {
            let now = global_addresses(&self.lab, &node, &self.ifname_of(&node))
                .first()
                .copied();
            if self.cell.scenario.expect.stable_mapping == Some(true) {
                let (verdict, message) = match now {
                    Some(a) if a == first => (Verdict::Pass, format!("{node} kept {a} for the whole cell")),
                    Some(a) => (
                        Verdict::Fail,
                        format!(
                            "{node} moved from {first} to {a}: its NAT mapping changed despite keepalives"
                        ),
                    ),
                    None => (Verdict::Fail, format!("{node} lost its address {first}")),
                };
                out.push(CheckResult {
                    id: "KA-05".into(),
                    title: format!("{node}'s external mapping never changes"),
                    source: "purpose of keepalives".into(),
                    verdict,
                    message,
                    evidence: Vec::new(),
                });
            }
            if self.cell.scenario.expect.address_change == Some(true) {
                let (verdict, message) = match now {
                    Some(a) if a != first => (
                        Verdict::Pass,
                        format!("{node} moved from {first} to {a} after the rebinding"),
                    ),
                    Some(a) => (
                        Verdict::Fail,
                        format!("{node} still uses {a} after its mapping changed"),
                    ),
                    None => (
                        Verdict::Fail,
                        format!("{node} has no address after the rebinding"),
                    ),
                };
                out.push(CheckResult {
                    id: "RA-09".into(),
                    title: format!("{node} recovers from a NAT rebinding"),
                    source: "6bed4".into(),
                    verdict,
                    message,
                    evidence: Vec::new(),
                });
            }
        }
        out
    }

    /// The path spec §7 expects between two peers, from the cell's NAT axes (or the
    /// scenario's explicit expectation).
    fn expected_path(&self, from: &str, to: &str) -> String {
        let sc = &self.cell.scenario;
        if let Some((_, v)) = sc
            .expect
            .path
            .iter()
            .find(|((a, b), _)| a == from && b == to || a == to && b == from)
        {
            if v != "table" {
                return v.clone();
            }
        }
        let t = self.lab.topology();
        let nat_of = |node: &str| -> Option<String> {
            let iface = t.node(node)?.interfaces().first()?.clone();
            let gw = t.gateway_of(node, &iface.name)?;
            let owner = t.owner_of(gw)?;
            let r = t.routers.iter().find(|r| r.name == owner.node.name())?;
            r.nat.as_ref()?;
            Some(r.name.clone())
        };
        let (na, nb) = (nat_of(from), nat_of(to));
        let value = |n: &Option<String>| -> Option<String> {
            let n = n.as_ref()?;
            Some(self.cell.params.get(n).cloned().unwrap_or_else(|| {
                t.routers
                    .iter()
                    .find(|r| &r.name == n)
                    .and_then(|r| r.nat.as_ref())
                    .map(|x| x.kind.as_str().to_string())
                    .unwrap_or_default()
            }))
        };
        let same = na.is_some() && na == nb;
        scenario::expected_path(value(&na).as_deref(), value(&nb).as_deref(), same).to_string()
    }

    /// The address a node's traffic has on the internet: its NAT's outside address, or its
    /// own when it is not behind a NAT.
    fn public_address_of(&self, node: &str) -> Option<Ipv4Addr> {
        let t = self.lab.topology();
        let iface = t.node(node)?.interfaces().first()?.clone();
        let Some(gw) = t.gateway_of(node, &iface.name) else {
            return Some(iface.address);
        };
        let owner = t.owner_of(gw)?;
        let r = t.routers.iter().find(|r| r.name == owner.node.name())?;
        match r.nat {
            Some(_) => r.outside_interface().map(|o| o.address),
            None => Some(iface.address),
        }
    }

    /// Where to send injected datagrams: the router's socket, or a peer's external mapping
    /// as its address says.
    fn inject_target(&self, to: &str) -> Option<std::net::SocketAddrV4> {
        let kind = self.roles.get(to).map(|(_, k)| *k);
        if kind == Some(RoleKind::Router)
            || self
                .lab
                .topology()
                .node(to)
                .is_some_and(|n| n.role() == "6bed4-router")
        {
            return Some(std::net::SocketAddrV4::new(self.router_ip, self.router_port));
        }
        let addr = self.target(to)?;
        let profile: sixbed4::profile::Profile = self.profile.parse().ok()?;
        sixbed4::addr::decode(profile, &addr).ok().map(|d| d.endpoint)
    }
}

/// Runs one cell.
pub fn run_cell(index: usize, cell: &Cell, suite: &Suite, ctx: &RunContext) -> CellResult {
    let started = Instant::now();
    let slug = cell_slug(index, cell);
    let mut result = CellResult {
        cell: cell.id(),
        outcome: Outcome::Error,
        duration_ms: 0,
        checks: Vec::new(),
        error: None,
        artifacts: Artifacts::default(),
        sequence: Vec::new(),
    };
    let finish = |mut r: CellResult| {
        r.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        r
    };

    // Applicability: implementations, profile, requirements.
    let profile = cell
        .params
        .get("profile")
        .cloned()
        .unwrap_or_else(|| "current".into());
    let peer_impl = cell
        .params
        .get("peer")
        .cloned()
        .unwrap_or_else(|| "sixbed4".into());
    let router_impl = cell
        .params
        .get("router")
        .cloned()
        .unwrap_or_else(|| "sixbed4".into());
    for name in [&peer_impl, &router_impl] {
        match suite.adapter(name) {
            None => {
                result.error = Some(format!("no adapter named {name:?}"));
                return finish(result);
            }
            Some(a) if !a.supports_profile(&profile) => {
                result.outcome = Outcome::NotApplicable;
                result.error = Some(format!("{name} does not speak the {profile} profile"));
                return finish(result);
            }
            Some(_) => {}
        }
    }
    let base = match Topology::from_file(&cell.scenario.topology) {
        Ok(t) => t,
        Err(e) => {
            result.error = Some(e.to_string());
            return finish(result);
        }
    };
    let topology = match topology_for(cell, &base) {
        Ok(t) => t,
        Err(e) => {
            result.error = Some(format!("cannot apply the cell to the topology: {e}"));
            return finish(result);
        }
    };
    let Some(router_ip) = topology
        .nodes_with_role("6bed4-router")
        .next()
        .and_then(|n| n.interfaces().first().map(|i| i.address))
    else {
        result.error = Some("the topology has no host with role 6bed4-router".into());
        return finish(result);
    };
    if let Some(router) = suite.adapter(&router_impl).or(suite.adapter(&peer_impl)) {
        if let Some(required) = router.requires.router_address {
            if required != router_ip {
                result.outcome = Outcome::NotApplicable;
                result.error = Some(format!(
                    "{} needs its router at {required}; this topology has it at {router_ip}",
                    router.name
                ));
                return finish(result);
            }
        }
    }
    let router_port = suite
        .adapter(&router_impl)
        .and_then(|a| a.requires.router_port)
        .unwrap_or_else(|| {
            profile
                .parse::<sixbed4::profile::Profile>()
                .map(|p| p.router_port())
                .unwrap_or(25790)
        });

    let options = LabOptions {
        out_dir: ctx.run_dir.join("cells"),
        state_root: ctx.state_root.clone(),
        capture: true,
        run_id: Some(slug.clone()),
    };
    let lab = match Lab::build(topology, options) {
        Ok(l) => l,
        Err(e) => {
            result.error = Some(format!("the lab would not build: {e}"));
            return finish(result);
        }
    };
    let rel = |p: &Path| p.strip_prefix(&ctx.run_dir).unwrap_or(p).display().to_string();
    result.artifacts.capture = lab.capture_path().map(rel);
    let logs_dir = lab.artifacts().join("logs");
    let cell_dir = lab.artifacts().to_path_buf();

    let mut run = CellRun {
        cell,
        suite,
        ctx,
        lab,
        profile,
        router_ip,
        router_port,
        checks: Vec::new(),
        roles: BTreeMap::new(),
        addresses: BTreeMap::new(),
        first_addresses: BTreeMap::new(),
        nat_timeout: None,
        injection: None,
        rebinding_at_ns: None,
        started,
        watch: None,
        last_end: Instant::now(),
        step_ends: BTreeMap::new(),
        event_at: None,
    };
    let mut stopped = None;
    if let Err(e) = run.open_watch() {
        stopped = Some(Stop::Error(e));
    }
    for step in cell.scenario.steps.iter().filter(|_| stopped.is_none()) {
        match step.at {
            At::Next => {}
            At::After(d) => std::thread::sleep((run.last_end + d).saturating_duration_since(Instant::now())),
            At::Since(d) => std::thread::sleep((run.started + d).saturating_duration_since(Instant::now())),
        }
        if let Err(s) = run.run_step(step) {
            stopped = Some(s);
            break;
        }
        let end = run.event_at.take().unwrap_or_else(Instant::now);
        run.last_end = end;
        if let Some(id) = &step.id {
            run.step_ends.insert(id.clone(), end);
        }
    }
    // Processes still running at the end that crashed meanwhile are failures.
    let crashed: Vec<String> = run
        .roles
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|n| run.exited(&n).map(|s| format!("{n} exited early ({s})")))
        .collect();
    let mut checks = std::mem::take(&mut run.checks);
    if !crashed.is_empty() && stopped.is_none() {
        checks.push(CheckResult {
            id: "EN-06".into(),
            title: "implementation survives the scenario".into(),
            source: "robustness".into(),
            verdict: Verdict::Fail,
            message: crashed.join("; "),
            evidence: Vec::new(),
        });
    }
    if stopped.is_none() {
        checks.extend(run.mapping_checks());
    }
    let error = match &stopped {
        Some(Stop::Error(e)) => Some(e.clone()),
        _ => None,
    };
    let facts = run.facts();
    drop(run.lab.teardown());
    for entry in std::fs::read_dir(&logs_dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        result.artifacts.logs.insert(name, rel(&path));
    }
    for entry in std::fs::read_dir(&cell_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("nat-") {
            result.artifacts.other.push(rel(&entry.path()));
        }
    }
    if let Some(capture) = result.artifacts.capture.clone() {
        checks.extend(super::evaluate::passive_checks(
            facts,
            &ctx.run_dir.join(&capture),
            &capture,
            ctx.strict,
            &mut result.sequence,
        ));
    }
    result.checks = checks;
    result.error = error;
    result.outcome = outcome(cell, suite, &peer_impl, &result);
    finish(result)
}

/// The cell's outcome from its checks, the scenario's decisive checks and the
/// implementation's claimed features.
fn outcome(cell: &Cell, suite: &Suite, peer_impl: &str, r: &CellResult) -> Outcome {
    if r.error.is_some() {
        return Outcome::Error;
    }
    let decisive = |id: &str| {
        id.starts_with("STEP-")
            || cell.scenario.expect.checks.is_empty()
            || cell
                .scenario
                .expect
                .checks
                .iter()
                .any(|c| id.starts_with(c.as_str()))
    };
    let failed = r
        .checks
        .iter()
        .any(|c| c.verdict == Verdict::Fail && decisive(&c.id));
    let claimed = cell
        .scenario
        .feature
        .as_deref()
        .is_none_or(|f| suite.adapter(peer_impl).is_some_and(|a| a.features.claims(f)));
    match (failed, claimed) {
        (true, true) => Outcome::Fail,
        (false, true) => Outcome::Pass,
        (true, false) => Outcome::Xfail,
        (false, false) => Outcome::Xpass,
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Evidence pointing at a capture.
pub fn evidence(capture: &str, frames: Vec<u64>, note: impl Into<String>) -> Evidence {
    Evidence {
        capture: capture.to_string(),
        frames,
        note: note.into(),
    }
}
