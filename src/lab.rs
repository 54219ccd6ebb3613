//! A running lab: a topology turned into namespaces, TUN uplinks, a fabric and captures.
//!
//! [`Lab::build`] checks the machine first ([`crate::preflight`]), reaps what dead runs
//! left ([`crate::runs::gc`]), records the run before creating anything, then creates one
//! namespace per host (and per Linux NAT), one TUN per interface inside it with its address
//! and default route (a Linux NAT: its routes, forwarding, and nftables masquerade with a
//! stateful firewall, see [`linux_nat_ruleset`]), and hands every TUN to the fabric. Every link end is captured by the
//! fabric and every other interface inside a namespace (a 6bed4 TUN, say) by a packet
//! socket there, all into one pcapng per run.
//!
//! Dropping a [`Lab`] tears it down; so does the death of the process (see
//! ARCHITECTURE.md, "Nothing leaks").

use crate::capture::host::pcapng_sink;
use crate::capture::{
    linktype, CaptureFile, Direction as CapDirection, HostCapture, HostCaptureOptions, ShbInfo,
};
use crate::fabric::{self, Direction, Fabric, FabricHandle, FabricRunner, FabricSpec, IfaceId};
use crate::netns::NetNs;
use crate::preflight;
use crate::process::{spawn_in, LabProcess, Logs};
use crate::runs::{self, NsRecord, RunRecord};
use crate::topology::{self, NatKind, Node, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Why a lab could not be built or driven.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("this machine cannot run a lab:\n  - {}", .0.join("\n  - "))]
    Preflight(Vec<String>),
    #[error(transparent)]
    Topology(#[from] topology::TopologyError),
    #[error("the fabric rejected the topology: {0}")]
    Fabric(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("no node named {0:?} in this lab")]
    NoSuchNode(String),
    #[error("node {0:?} is a fabric router, not a namespace: nothing runs inside it")]
    NotANamespace(String),
    #[error("no link named {0:?} (links are named node/interface)")]
    NoSuchLink(String),
}

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, LabError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, LabError> {
        self.map_err(|source| LabError::Io {
            context: what(),
            source,
        })
    }
}

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Artifacts (capture, logs) go to `<out_dir>/<run-id>/`.
    pub out_dir: PathBuf,
    /// Where run records live ([`runs::default_state_root`] unless a test isolates itself).
    pub state_root: PathBuf,
    /// Capture every link end and every host interface into `capture.pcapng`.
    pub capture: bool,
    /// Use this run id instead of a fresh one.
    pub run_id: Option<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            out_dir: PathBuf::from("out"),
            state_root: runs::default_state_root(),
            capture: true,
            run_id: None,
        }
    }
}

/// A namespace node of a running lab.
struct NsNode {
    ns: NetNs,
    capture: Option<HostCapture>,
}

/// A running lab.
pub struct Lab {
    topology: Topology,
    record: RunRecord,
    state_root: PathBuf,
    artifacts: PathBuf,
    namespaces: BTreeMap<String, NsNode>,
    fabric: Option<FabricHandle>,
    links: BTreeMap<String, IfaceId>,
    /// Fabric node indices of the userspace NATs, for run-time controls.
    nodes: BTreeMap<String, usize>,
    capture_path: Option<PathBuf>,
    processes: Vec<LabProcess>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("run_id", &self.record.run_id)
            .field("topology", &self.topology.name)
            .finish()
    }
}

/// What the fabric needs from the topology, plus the names of its capture points.
fn fabric_spec(t: &Topology) -> Result<FabricSpec, LabError> {
    let segment_index: BTreeMap<&str, usize> = t
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let segments = t
        .segments
        .iter()
        .map(|s| fabric::SegmentSpec {
            name: s.name.clone(),
            subnet: (s.subnet.addr(), s.subnet.prefix_len()),
            subnet6: s.subnet6.map(|n| (n.addr(), n.prefix_len())),
        })
        .collect();
    let mut nodes = Vec::new();
    for node in t.nodes() {
        let kind = match node {
            Node::Host(_) => fabric::NodeKind::External,
            Node::Router(r) => match r.nat.as_ref().map(|n| &n.kind) {
                Some(NatKind::LinuxMasquerade) | Some(NatKind::LinuxMasqueradeRandom) => {
                    fabric::NodeKind::External
                }
                // Userspace NAT engines plug in here; until then a NAT forwards as a router.
                _ => fabric::NodeKind::Router {
                    routes: r
                        .routes
                        .iter()
                        .map(|rt| ((rt.prefix.addr(), rt.prefix.prefix_len()), rt.via))
                        .collect(),
                },
            },
        };
        let mut interfaces = Vec::new();
        for i in node.interfaces() {
            let segment = *segment_index.get(i.segment.as_str()).ok_or_else(|| {
                LabError::Fabric(format!(
                    "{}/{}: unknown segment {}",
                    node.name(),
                    i.name,
                    i.segment
                ))
            })?;
            interfaces.push(fabric::IfaceSpec {
                name: i.name.clone(),
                segment,
                address: i.address,
                gateway: match node {
                    Node::Router(r) if node.is_namespace() => linux_router_gateway(t, r, i),
                    _ => t.gateway_of(node.name(), &i.name),
                },
                mtu: i.mtu,
                egress: impairment(&i.egress),
                ingress: impairment(&i.ingress),
                aliases: match node {
                    Node::Router(r) if r.outside_interface().is_some_and(|o| o.name == i.name) => r
                        .external_addresses()
                        .into_iter()
                        .filter(|a| *a != i.address)
                        .collect(),
                    _ => Vec::new(),
                },
                address6: i.address6,
                gateway6: i.gateway6,
            });
        }
        nodes.push(fabric::NodeSpec {
            name: node.name().to_string(),
            kind,
            interfaces,
        });
    }
    Ok(FabricSpec {
        seed: t.seed,
        segments,
        nodes,
    })
}

/// Where the fabric sends what a Linux NAT's interface `i` emits for a destination off its
/// segment. A TUN hands the fabric a packet without its next hop, so the namespace's routes
/// cannot be followed exactly: the most general route whose next hop is on `i`'s segment
/// (the default route, typically) gives the interface's gateway. Several next hops on one
/// interface cannot be told apart; the lab warns about it.
fn linux_router_gateway(
    t: &Topology,
    r: &topology::Router,
    i: &topology::Interface,
) -> Option<std::net::Ipv4Addr> {
    let subnet = t.segment(&i.segment)?.subnet;
    let mut on_link: Vec<&topology::Route> = r.routes.iter().filter(|rt| subnet.contains(rt.via)).collect();
    on_link.sort_by_key(|rt| rt.prefix.prefix_len());
    let gateway = on_link.first().map(|rt| rt.via);
    if on_link.iter().any(|rt| Some(rt.via) != gateway) {
        tracing::warn!(
            "{}/{}: routes via several next hops; the fabric sends everything off-link to {:?}",
            r.name,
            i.name,
            gateway
        );
    }
    gateway
}

/// The topology's impairment in the fabric's terms.
pub fn impairment(i: &topology::Impairment) -> fabric::Impairment {
    fabric::Impairment {
        delay: i.delay,
        jitter: i.jitter,
        loss: i.loss,
        loss_burst: i.loss_burst,
        duplicate: i.duplicate,
        reorder: i.reorder,
        rate_bps: i.rate_bps,
        queue_limit: i.queue_limit,
        reorder_gap: i.reorder_gap,
    }
}

/// The NAT engine's configuration for a topology NAT.
pub fn nat_config(
    k: &topology::NatBehaviour,
    inside_addr: std::net::Ipv4Addr,
    inside_net: (std::net::Ipv4Addr, u8),
    outside_addr: std::net::Ipv4Addr,
    seed: u64,
) -> crate::nat::Config {
    use crate::nat::{
        FilteringBehavior as F, MappingBehavior as M, Pooling, PortAllocation as P, RefreshDirection as R,
    };
    crate::nat::Config {
        mapping: match k.mapping {
            topology::Mapping::Eim => M::EndpointIndependent,
            topology::Mapping::Adm => M::AddressDependent,
            topology::Mapping::Apdm => M::AddressAndPortDependent,
        },
        filtering: match k.filtering {
            topology::Filtering::Eif => F::EndpointIndependent,
            topology::Filtering::Adf => F::AddressDependent,
            topology::Filtering::Apdf => F::AddressAndPortDependent,
        },
        port_allocation: match k.port_allocation {
            topology::PortAllocation::Preserve => P::Preserve,
            topology::PortAllocation::Sequential => P::Sequential,
            topology::PortAllocation::Random => P::Random,
        },
        parity: k.port_parity,
        port_range: (k.port_range.first(), k.port_range.last()),
        inside_addr,
        inside_net,
        outside_addr,
        external_addrs: k.external_addresses.clone(),
        pooling: if k.pairing {
            Pooling::Paired
        } else {
            Pooling::RoundRobin
        },
        hairpinning: k.hairpinning,
        udp_timeout: k.udp_timeout,
        refresh: match k.refresh {
            topology::Refresh::Outbound => R::Outbound,
            topology::Refresh::Both => R::Both,
        },
        tcp_established_timeout: k.tcp_established_timeout,
        tcp_transitory_timeout: k.tcp_transitory_timeout,
        seed,
        ..crate::nat::Config::default()
    }
}

/// What one namespace node needs configured inside.
struct UplinkPlan {
    name: String,
    address: std::net::Ipv4Addr,
    prefix_len: u8,
    mtu: u32,
    gateway: Option<std::net::Ipv4Addr>,
    /// Native IPv6: the address with its segment's prefix length, and the IPv6 gateway.
    address6: Option<(std::net::Ipv6Addr, u8)>,
    gateway6: Option<std::net::Ipv6Addr>,
    fabric_id: IfaceId,
}

/// A static route of a namespace router: (prefix, prefix length, next hop).
type RoutePlan = (std::net::Ipv4Addr, u8, std::net::Ipv4Addr);

/// Creates the uplink TUNs inside the current thread's namespace, with a default route for
/// hosts and the static `routes` of a router (each on the uplink whose subnet holds its next
/// hop); returns them with their ifindexes. Runs on a thread that has entered the node's
/// namespace.
fn configure_uplinks(
    plans: &[UplinkPlan],
    forwarding: bool,
    routes: &[RoutePlan],
) -> io::Result<Vec<(IfaceId, u32, OwnedFd)>> {
    use sixbed4::sys::{netlink::Netlink, sysctl, tun::Tun};
    let mut nl = Netlink::open()?;
    let mut out = Vec::new();
    let mut default_set = false;
    for p in plans {
        let tun = Tun::create(&p.name)?;
        match p.address6 {
            // Uplinks carry the lab's IPv4; the kernel's IPv6 chatter (MLD, RS) on them is noise.
            None => sysctl::disable_ipv6(tun.name(), true)?,
            // A dual-stack uplink: IPv6 without autoconfiguration, DAD or a link-local
            // address (the fabric routes by the configured addresses alone).
            Some(_) => {
                sysctl::quiet_autoconf(tun.name())?;
                sysctl::set_ipv6_conf(tun.name(), "addr_gen_mode", "1")?;
            }
        }
        nl.set_link_up(tun.ifindex(), Some(p.mtu))?;
        nl.add_address_v4(tun.ifindex(), p.address, p.prefix_len)?;
        if let Some((a6, len)) = p.address6 {
            nl.add_address_v6(tun.ifindex(), a6, len)?;
            if let Some(gw6) = p.gateway6 {
                nl.add_route_v6(tun.ifindex(), std::net::Ipv6Addr::UNSPECIFIED, 0, Some(gw6))?;
            }
        }
        if let (Some(gw), false) = (p.gateway, default_set) {
            nl.add_route_v4(tun.ifindex(), std::net::Ipv4Addr::UNSPECIFIED, 0, Some(gw))?;
            default_set = true;
        }
        let ifindex = tun.ifindex();
        // Closing the descriptors at teardown is then instant; the kernel removes the
        // devices with the namespace (also when bedlab is killed).
        tun.set_persistent(true)?;
        out.push((p.fabric_id, ifindex, OwnedFd::from(tun)));
    }
    for &(prefix, len, via) in routes {
        let uplink = plans
            .iter()
            .zip(&out)
            .find(|(p, _)| fabric::in_subnet(via, (p.address, p.prefix_len)))
            .map(|(_, u)| u.1)
            .ok_or_else(|| io::Error::other(format!("no uplink on the segment of next hop {via}")))?;
        nl.add_route_v4(uplink, prefix, len, Some(via))
            .map_err(|e| io::Error::new(e.kind(), format!("route {prefix}/{len} via {via}: {e}")))?;
    }
    if forwarding {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    }
    Ok(out)
}

/// The nftables ruleset of a Linux NAT: masquerade on the outside interface (`fully-random`:
/// a random port per conntrack entry) and, with `firewall`, a home router's stateful filter
/// dropping new connections that arrive on the outside, in `forward` and `input` (echo
/// requests to the router itself excepted). Tables are replaced as a whole, atomically.
pub fn linux_nat_ruleset(outside: &str, random: bool, firewall: bool) -> String {
    let oif = format!("{outside:?}");
    let flags = if random { " fully-random" } else { "" };
    let mut rules = format!(
        "add table ip bedlab_nat\n\
         delete table ip bedlab_nat\n\
         table ip bedlab_nat {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname {oif} masquerade{flags}\n\
         \t}}\n\
         }}\n\
         add table inet bedlab_filter\n\
         delete table inet bedlab_filter\n"
    );
    if firewall {
        rules.push_str(&format!(
            "table inet bedlab_filter {{\n\
             \tchain forward {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tct state established,related accept\n\
             \t\tiifname {oif} ct state new drop\n\
             \t}}\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\tct state established,related accept\n\
             \t\tiifname {oif} icmp type echo-request accept\n\
             \t\tiifname {oif} ct state new drop\n\
             \t}}\n\
             }}\n"
        ));
    }
    rules
}

/// The ruleset that takes a Linux NAT down: every packet dropped, before anything else.
const LINUX_NAT_DOWN: &str = "add table inet bedlab_down\n\
delete table inet bedlab_down\n\
table inet bedlab_down {\n\
\tchain prerouting { type filter hook prerouting priority -300; policy drop; }\n\
\tchain output { type filter hook output priority -300; policy drop; }\n\
}\n";

/// Brings a Linux NAT back up.
const LINUX_NAT_UP: &str = "add table inet bedlab_down\ndelete table inet bedlab_down\n";

/// Runs `program args` inside `ns` (entered between fork and exec) with `input` on its
/// standard input; an exit status other than 0 is an error carrying its stderr.
fn run_tool_in(ns: &NetNs, program: &str, args: &[&str], input: &str) -> io::Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only setns and prctl, both async-signal-safe, run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            crate::netns::setns(fd)?;
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(())
}

/// Sets the namespace's conntrack UDP timeouts (unreplied and stream alike, so a mapping's
/// lifetime does not depend on whether it saw replies). Conntrack sysctls are per namespace.
fn set_conntrack_udp_timeout(ns: &NetNs, timeout: Duration) -> io::Result<()> {
    let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
    ns.run(move || -> io::Result<()> {
        for name in ["nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"] {
            let path = format!("/proc/sys/net/netfilter/{name}");
            std::fs::write(&path, secs.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))?;
        }
        Ok(())
    })?
}

/// nftables and conntrack inside a Linux NAT's namespace (its uplinks, routes and
/// forwarding are already in place). The ruleset's `ct` and `masquerade` expressions load
/// conntrack, so its sysctls exist by the time the timeout is written.
fn configure_linux_nat(ns: &NetNs, nat: &topology::NatSpec) -> io::Result<()> {
    let random = nat.kind == NatKind::LinuxMasqueradeRandom;
    let firewall = nat.knobs.firewall.unwrap_or(true);
    run_tool_in(
        ns,
        "nft",
        &["-f", "-"],
        &linux_nat_ruleset(&nat.outside, random, firewall),
    )?;
    if let Some(timeout) = nat.knobs.udp_timeout {
        set_conntrack_udp_timeout(ns, timeout)?;
    }
    Ok(())
}

/// A run-time control of a Linux NAT; `Unsupported` for what the kernel NAT cannot do.
fn linux_nat_control(ns: &NetNs, ctl: &fabric::NodeControl) -> io::Result<()> {
    match ctl {
        fabric::NodeControl::Flush => run_tool_in(ns, "conntrack", &["-F"], ""),
        fabric::NodeControl::SetUdpTimeout(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a UDP timeout must be above 0",
        )),
        fabric::NodeControl::SetUdpTimeout(d) => set_conntrack_udp_timeout(ns, *d),
        fabric::NodeControl::SetUp(false) => {
            run_tool_in(ns, "nft", &["-f", "-"], LINUX_NAT_DOWN)?;
            run_tool_in(ns, "conntrack", &["-F"], "")
        }
        fabric::NodeControl::SetUp(true) => run_tool_in(ns, "nft", &["-f", "-"], LINUX_NAT_UP),
        fabric::NodeControl::Rebind(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "rebinding is not supported for Linux NATs (their external address is their outside \
             interface's; use a userspace NAT to rebind)",
        )),
    }
}

/// What a topology needs from the machine beyond namespaces and TUN devices.
pub fn needs_of(topology: &Topology) -> preflight::Needs {
    let linux_nats = || {
        topology
            .routers
            .iter()
            .filter_map(|r| r.nat.as_ref())
            .filter(|n| n.kind.is_linux())
    };
    preflight::Needs {
        nft: linux_nats().next().is_some(),
        conntrack_timeouts: linux_nats().any(|n| n.knobs.udp_timeout.is_some()),
    }
}

/// Makes this process able to build labs: checks the machine (one sentence per missing
/// prerequisite, nothing created), and for a normal user enters a user namespace of its own
/// ([`crate::userns::enter`]), in which every lab namespace is then created.
///
/// Must run while the process has a single thread (the kernel creates a user namespace
/// only for such a process), so before a lab, a fabric or a thread pool exists. Root, and
/// root inside a user namespace already, stay where they are.
pub fn prepare(needs: preflight::Needs) -> Result<preflight::Privilege, LabError> {
    let problems: Vec<String> = preflight::check(needs).into_iter().map(|p| p.0).collect();
    if !problems.is_empty() {
        return Err(LabError::Preflight(problems));
    }
    let privilege = preflight::privilege();
    if privilege == preflight::Privilege::Unprivileged {
        crate::userns::enter().map_err(|e| LabError::Preflight(vec![e.to_string()]))?;
    }
    Ok(privilege)
}

impl Lab {
    /// Reads, validates and builds a topology file.
    pub fn from_file(path: &Path, options: LabOptions) -> Result<Lab, LabError> {
        Lab::build(Topology::from_file(path)?, options)
    }

    /// Builds a lab. Nothing is created when the topology is invalid or the machine lacks
    /// something.
    ///
    /// Needs root, or root inside a user namespace: a normal user's program calls
    /// [`prepare`] first (the `bedlab` command does).
    pub fn build(topology: Topology, options: LabOptions) -> Result<Lab, LabError> {
        topology.validate()?;
        let needs = needs_of(&topology);
        let mut problems: Vec<String> = preflight::check(needs).into_iter().map(|p| p.0).collect();
        if preflight::privilege() == preflight::Privilege::Unprivileged {
            problems.push(
                "this process is neither root nor inside a user namespace of its own: call \
                 bedlab::lab::prepare before starting threads (the bedlab command does)"
                    .into(),
            );
        }
        if !problems.is_empty() {
            return Err(LabError::Preflight(problems));
        }
        runs::ensure_state_root(&options.state_root).map_err(|e| LabError::Preflight(vec![e.to_string()]))?;
        let reaped = runs::gc(&options.state_root);
        if !reaped.runs_reaped.is_empty() {
            tracing::info!(
                "reaped dead runs {:?} ({} processes)",
                reaped.runs_reaped,
                reaped.processes_killed.len()
            );
        }
        let spec = fabric_spec(&topology)?;
        let fabric = Fabric::new(spec.clone()).map_err(|e| LabError::Fabric(e.to_string()))?;
        let run_id = options.run_id.clone().unwrap_or_else(runs::new_run_id);
        let artifacts = options.out_dir.join(&run_id);
        std::fs::create_dir_all(artifacts.join("logs"))
            .context(|| format!("creating {}", artifacts.display()))?;
        let record = RunRecord::for_this_process(&run_id, &topology.name, &artifacts)
            .context(|| "run record".into())?;
        record
            .save(&options.state_root)
            .context(|| format!("saving the run record under {}", options.state_root.display()))?;

        let mut lab = Lab {
            topology,
            record,
            state_root: options.state_root.clone(),
            artifacts,
            namespaces: BTreeMap::new(),
            fabric: None,
            links: BTreeMap::new(),
            nodes: BTreeMap::new(),
            capture_path: None,
            processes: Vec::new(),
        };
        // From here on, an error drops `lab`, which tears down whatever was built.
        let mut fabric = fabric;
        lab.plug_nats(&mut fabric, &spec)?;
        lab.bring_up(fabric, options.capture)?;
        Ok(lab)
    }

    /// Replaces each userspace NAT's plain router with the NAT engine; its decisions go to
    /// `nat-<name>.jsonl` beside the capture.
    fn plug_nats(&mut self, fabric: &mut Fabric, spec: &FabricSpec) -> Result<(), LabError> {
        let now = Instant::now();
        for r in &self.topology.routers {
            let Some(nat) = &r.nat else { continue };
            let Some(knobs) = nat.effective_knobs() else {
                continue;
            }; // a Linux NAT
            let index = fabric
                .node_index(&r.name)
                .ok_or_else(|| LabError::Fabric(format!("no fabric node {}", r.name)))?;
            let node_spec = &spec.nodes[index];
            let outside = r
                .interfaces
                .iter()
                .position(|i| i.name == nat.outside)
                .ok_or_else(|| {
                    LabError::Fabric(format!("{}: outside interface {} not found", r.name, nat.outside))
                })?;
            let inside = (0..r.interfaces.len())
                .find(|&i| i != outside)
                .ok_or_else(|| LabError::Fabric(format!("{}: a NAT needs an inside interface", r.name)))?;
            let subnet_of = |i: usize| spec.segments[node_spec.interfaces[i].segment].subnet;
            let ifaces: Vec<fabric::NodeIface> = node_spec
                .interfaces
                .iter()
                .map(|i| fabric::NodeIface {
                    address: i.address,
                    subnet: spec.segments[i.segment].subnet,
                    mtu: i.mtu,
                })
                .collect();
            let routes = match &node_spec.kind {
                fabric::NodeKind::Router { routes } => routes.clone(),
                fabric::NodeKind::External => Vec::new(),
            };
            let config = nat_config(
                &knobs,
                r.interfaces[inside].address,
                subnet_of(inside),
                r.interfaces[outside].address,
                self.topology.seed ^ index as u64,
            );
            let drop_icmp = knobs.icmp == topology::IcmpPolicy::Drop;
            let path = self.artifacts.join(format!("nat-{}.jsonl", r.name));
            let mut file = std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
            let sink: fabric::NatEventSink = Box::new(move |e: &crate::nat::NatEvent| {
                use std::io::Write;
                let _ = writeln!(file, "{}", e.to_json_line());
            });
            let node = fabric::NatNode::new(
                ifaces,
                &routes,
                inside,
                outside,
                config,
                drop_icmp,
                now,
                Some(sink),
            )
            .map_err(|e| LabError::Fabric(format!("NAT {}: {e}", r.name)))?;
            fabric
                .replace_node(index, Box::new(node))
                .map_err(|e| LabError::Fabric(e.to_string()))?;
            self.nodes.insert(r.name.clone(), index);
        }
        Ok(())
    }

    fn bring_up(&mut self, fabric: Fabric, capture: bool) -> Result<(), LabError> {
        let capture_file = if capture {
            let path = self.artifacts.join("capture.pcapng");
            let mut comments = vec![
                format!("bedlab run {}", self.record.run_id),
                format!("topology {}: {}", self.topology.name, self.topology.description),
            ];
            comments.extend(
                self.topology
                    .nodes()
                    .map(|n| format!("node {} role {}", n.name(), n.role())),
            );
            let file = CaptureFile::create(&path, ShbInfo::bedlab(comments))
                .context(|| format!("creating {}", path.display()))?;
            self.capture_path = Some(path);
            Some(file)
        } else {
            None
        };
        for id in fabric.ifaces().collect::<Vec<_>>() {
            if let Some(name) = fabric.link_name(id) {
                self.links.insert(name.to_string(), id);
            }
        }
        let names: BTreeMap<IfaceId, String> = self.links.iter().map(|(n, id)| (*id, n.clone())).collect();

        let topology = self.topology.clone();
        let work: Vec<(usize, Node<'_>)> = topology
            .nodes()
            .enumerate()
            .filter(|(_, n)| n.is_namespace())
            .collect();
        // Nodes are independent: set them up from several threads. Nothing runs inside a
        // namespace until `Lab::spawn`, which comes after the run record below lists them
        // all, and a namespace with nothing inside dies with its descriptor if bedlab does.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: std::sync::Mutex<Vec<Result<SetUpNode, LabError>>> = std::sync::Mutex::new(Vec::new());
        let workers = work.len().clamp(1, 8);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((node_index, node)) = work.get(i) else {
                        break;
                    };
                    let r = setup_node(*node_index, node, &topology, capture_file.as_ref());
                    if let Ok(mut v) = results.lock() {
                        v.push(r);
                    }
                });
            }
        });
        let mut tuns = Vec::new();
        let mut first_error = None;
        for r in results.into_inner().unwrap_or_default() {
            match r {
                Ok((name, node, uplinks)) => {
                    self.record.namespaces.push(NsRecord {
                        node: name.clone(),
                        inode: node.ns.inode(),
                        fd: node.ns.as_raw_fd(),
                    });
                    tuns.extend(uplinks);
                    self.namespaces.insert(name, node);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.record.namespaces.sort_by(|a, b| a.node.cmp(&b.node));
        self.record
            .save(&self.state_root)
            .context(|| "updating the run record".into())?;
        if let Some(e) = first_error {
            return Err(e);
        }

        let mut runner = FabricRunner::new(fabric).tuns(tuns);
        if let Some(file) = capture_file {
            runner = runner.capture_sink(Box::new(move |ev: fabric::CaptureEvent, ts: SystemTime| {
                let Some(name) = names.get(&ev.iface) else { return };
                let dir = match ev.direction {
                    Direction::Out => CapDirection::Outbound,
                    Direction::In => CapDirection::Inbound,
                };
                if let Err(e) = file.record(name, linktype::RAW, ts, &ev.packet, Some(dir)) {
                    tracing::warn!("capture write failed: {e}");
                }
            }));
        }
        self.fabric = Some(runner.spawn().context(|| "starting the fabric".into())?);
        Ok(())
    }

    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    /// `<out>/<run-id>/`.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }
    /// The run's pcapng, when capturing.
    pub fn capture_path(&self) -> Option<&Path> {
        self.capture_path.as_deref()
    }
    /// The run record (what `bedlab exec` and `gc` read).
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The namespace of a node.
    pub fn netns(&self, node: &str) -> Result<&NetNs, LabError> {
        match self.namespaces.get(node) {
            Some(n) => Ok(&n.ns),
            None if self.topology.node(node).is_some() => Err(LabError::NotANamespace(node.into())),
            None => Err(LabError::NoSuchNode(node.into())),
        }
    }

    /// Starts `argv` inside `node`; output goes to `logs/<node>.<name>.stdout|stderr`.
    pub fn spawn(&mut self, node: &str, name: &str, argv: &[String]) -> Result<&mut LabProcess, LabError> {
        let logs = Logs::in_dir(&self.artifacts.join("logs"), node, name);
        let ns = self.netns(node)?;
        let p = spawn_in(ns, node, name, argv, logs).context(|| format!("starting {name} in {node}"))?;
        self.processes.push(p);
        let last = self.processes.len() - 1;
        Ok(&mut self.processes[last])
    }

    /// Runs `argv` inside `node` to completion and returns its output.
    pub fn exec(&self, node: &str, argv: &[String]) -> Result<std::process::Output, LabError> {
        let ns = self.netns(node)?;
        let (program, args) = argv.split_first().ok_or_else(|| LabError::Io {
            context: "exec".into(),
            source: io::Error::other("empty command"),
        })?;
        let fd = ns.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: only setns and prctl, both async-signal-safe, run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                crate::netns::setns(fd)?;
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.output().context(|| format!("running {program:?} in {node}"))
    }

    /// The processes started with [`Lab::spawn`].
    pub fn processes(&mut self) -> &mut [LabProcess] {
        &mut self.processes
    }

    /// Changes a link's impairment while the lab runs (`link` is `node/interface`).
    pub fn set_impairment(
        &self,
        link: &str,
        direction: Direction,
        imp: &topology::Impairment,
    ) -> Result<(), LabError> {
        let id = *self
            .links
            .get(link)
            .ok_or_else(|| LabError::NoSuchLink(link.into()))?;
        let handle = self
            .fabric
            .as_ref()
            .ok_or_else(|| LabError::Fabric("the fabric is not running".into()))?;
        handle
            .set_impairment(id, direction, impairment(imp))
            .context(|| format!("changing {link}"))
    }

    /// A run-time command to a NAT (flush, rebind, lifetime, down/up).
    ///
    /// Userspace NATs support all four. Linux NATs: `Flush` empties the namespace's conntrack
    /// table (`conntrack -F`); `SetUdpTimeout` sets `nf_conntrack_udp_timeout` and `_stream`
    /// (existing entries take the new value at their next packet, as in the kernel);
    /// `SetUp(false)` drops every packet in every hook (a table `bedlab_down` at priority
    /// -300) and empties conntrack, like a rebooting router, and `SetUp(true)` removes that
    /// table; `Rebind` is refused (the kernel NAT's addresses are its interfaces').
    pub fn nat_control(&self, nat: &str, ctl: fabric::NodeControl) -> Result<(), LabError> {
        if let Some(Node::Router(r)) = self.topology.node(nat) {
            if r.nat.as_ref().is_some_and(|n| n.kind.is_linux()) {
                let ns = self.netns(nat)?;
                return linux_nat_control(ns, &ctl).map_err(|source| LabError::Io {
                    context: format!("controlling the Linux NAT {nat}"),
                    source,
                });
            }
        }
        let index = *self.nodes.get(nat).ok_or_else(|| match self.topology.node(nat) {
            Some(_) => LabError::Fabric(format!("{nat} is not a userspace NAT")),
            None => LabError::NoSuchNode(nat.into()),
        })?;
        let handle = self
            .fabric
            .as_ref()
            .ok_or_else(|| LabError::Fabric("the fabric is not running".into()))?;
        handle
            .control_node(index, ctl)
            .context(|| format!("controlling {nat}"))
    }

    /// A live view of the packets recorded at `links` (`node/interface`; empty: every link)
    /// from now on, at most `capacity` held, `snap` bytes of each (see [`fabric::Tap`]).
    pub fn tap(&self, links: &[&str], capacity: usize, snap: usize) -> Result<fabric::Tap, LabError> {
        let mut ids = BTreeSet::new();
        for l in links {
            ids.insert(
                *self
                    .links
                    .get(*l)
                    .ok_or_else(|| LabError::NoSuchLink((*l).into()))?,
            );
        }
        let handle = self
            .fabric
            .as_ref()
            .ok_or_else(|| LabError::Fabric("the fabric is not running".into()))?;
        handle
            .tap(fabric::TapSpec {
                links: ids,
                capacity,
                snap,
            })
            .context(|| "opening a tap on the fabric".into())
    }

    /// The link name (`node/interface`) of a fabric interface.
    pub fn link_name(&self, id: IfaceId) -> Option<&str> {
        self.links
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }

    /// Per-link counters of the fabric.
    pub fn stats(&self) -> Result<fabric::Stats, LabError> {
        let handle = self
            .fabric
            .as_ref()
            .ok_or_else(|| LabError::Fabric("the fabric is not running".into()))?;
        handle.stats().context(|| "reading fabric stats".into())
    }

    /// Link names (`node/interface`) in this lab.
    pub fn links(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    /// Polls `cond` until it is true or `timeout` passes; returns whether it became true.
    pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Tears the lab down now: processes, captures, fabric, namespaces, run record.
    pub fn teardown(mut self) -> io::Result<()> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> io::Result<()> {
        for p in &mut self.processes {
            let _ = p.stop(Duration::from_millis(500));
        }
        self.processes.clear();
        // Host captures hold their namespace: stop them before letting go of it. Closing a
        // packet socket waits for the kernel (a grace period each); stopped from several
        // threads at once, those waits overlap.
        let captures: Vec<HostCapture> = self
            .namespaces
            .values_mut()
            .filter_map(|n| n.capture.take())
            .collect();
        let chunk = captures.len().div_ceil(16).max(1);
        let mut captures = captures.into_iter();
        std::thread::scope(|s| loop {
            let batch: Vec<HostCapture> = captures.by_ref().take(chunk).collect();
            if batch.is_empty() {
                break;
            }
            s.spawn(move || {
                for c in batch {
                    let _ = c.stop();
                }
            });
        });
        if let Some(f) = self.fabric.take() {
            let _ = f.stop();
        }
        // Anything still inside (a daemon that escaped its group) dies with the namespace.
        let inodes: Vec<u64> = self.namespaces.values().map(|n| n.ns.inode()).collect();
        runs::kill_processes_in(&inodes);
        self.namespaces.clear();
        self.record.remove(&self.state_root)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_inner() {
            tracing::warn!("teardown of {}: {e}", self.record.run_id);
        }
    }
}

/// A node once set up: its name, namespace (with capture) and uplink descriptors.
type SetUpNode = (String, NsNode, Vec<(IfaceId, OwnedFd)>);

/// Creates one namespace node: its namespace, uplink TUNs with addresses and routes, a Linux
/// NAT's ruleset, and the capture of its own interfaces.
fn setup_node(
    node_index: usize,
    node: &Node<'_>,
    topology: &Topology,
    capture_file: Option<&CaptureFile>,
) -> Result<SetUpNode, LabError> {
    let node = *node;
    let ns = NetNs::create().context(|| format!("creating the namespace of {}", node.name()))?;
    let plans: Vec<UplinkPlan> = node
        .interfaces()
        .iter()
        .enumerate()
        .map(|(i, iface)| UplinkPlan {
            name: iface.name.clone(),
            address: iface.address,
            prefix_len: topology
                .segment(&iface.segment)
                .map_or(32, |s| s.subnet.prefix_len()),
            mtu: iface.mtu,
            gateway: topology.gateway_of(node.name(), &iface.name),
            address6: iface.address6.map(|a| {
                let len = topology
                    .segment(&iface.segment)
                    .and_then(|s| s.subnet6)
                    .map_or(128, |n| n.prefix_len());
                (a, len)
            }),
            gateway6: iface.gateway6,
            fabric_id: IfaceId::new(node_index, i),
        })
        .collect();
    let forwarding = node.is_router();
    let routes: Vec<RoutePlan> = match node {
        Node::Router(r) => r
            .routes
            .iter()
            .map(|rt| (rt.prefix.addr(), rt.prefix.prefix_len(), rt.via))
            .collect(),
        Node::Host(_) => Vec::new(),
    };
    let uplinks = ns
        .run(|| configure_uplinks(&plans, forwarding, &routes))
        .and_then(|r| r)
        .context(|| format!("configuring the uplinks of {}", node.name()))?;
    if let Node::Router(r) = node {
        if let Some(nat) = r.nat.as_ref().filter(|n| n.kind.is_linux()) {
            configure_linux_nat(&ns, nat).context(|| format!("configuring the Linux NAT {}", r.name))?;
        }
    }
    let mut host_capture = None;
    if let Some(file) = capture_file {
        let options = HostCaptureOptions {
            exclude_ifindexes: uplinks.iter().map(|u| u.1).collect::<BTreeSet<u32>>(),
            ..Default::default()
        };
        host_capture = Some(
            HostCapture::start(ns.as_fd(), options, pcapng_sink(file.clone(), node.name()))
                .context(|| format!("starting the capture inside {}", node.name()))?,
        );
    }
    Ok((
        node.name().to_string(),
        NsNode {
            ns,
            capture: host_capture,
        },
        uplinks.into_iter().map(|(id, _, fd)| (id, fd)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::linux_nat_ruleset;

    #[test]
    fn linux_nat_rulesets_replace_their_tables_and_follow_the_knobs() {
        let home = linux_nat_ruleset("wan", false, true);
        assert!(home.starts_with("add table ip bedlab_nat\ndelete table ip bedlab_nat\n"));
        assert!(home.contains("oifname \"wan\" masquerade\n"));
        assert!(home.contains("ct state established,related accept"));
        assert_eq!(
            home.matches("iifname \"wan\" ct state new drop").count(),
            2,
            "forward and input"
        );
        let random = linux_nat_ruleset("up0", true, false);
        assert!(random.contains("oifname \"up0\" masquerade fully-random\n"));
        // The filter table is still removed (a reconfiguration turns the firewall off).
        assert!(random.ends_with("add table inet bedlab_filter\ndelete table inet bedlab_filter\n"));
        assert!(!random.contains("ct state"));
    }
}
