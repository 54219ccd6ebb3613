//! `sixbed4`: a 6bed4 peer and router.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sixbed4::cli::{parse_duration, parse_keepalive, parse_positive_duration, KeepaliveArg};
use sixbed4::daemon::{self, DaemonOptions};
use sixbed4::peer::PeerConfig;
use sixbed4::profile::{parse_prefix64, Profile};
use sixbed4::router::RouterConfig;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

/// A 6bed4 peer and router: IPv6 for every node, tunnelled over UDP/IPv4 through any NAT.
///
/// The router hands each peer an IPv6 address that embeds the peer's external IPv4 address
/// and UDP port, relays traffic between peers and to its native IPv6 side, and tells a peer
/// when its NAT mapping changed. Peers find direct paths to each other ("bypass") and keep
/// their NAT mapping open with keepalives.
///
/// Examples:
///   sixbed4 router --listen 198.51.100.1
///   sixbed4 peer --router 198.51.100.1 --keepalive 1s,3 --events json
///   sixbed4 peer --router 145.136.0.1 --profile v01 --default-route
#[derive(Parser, Debug)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    role: Role,
    /// Log level for the human-readable log on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Run a 6bed4 router on a public IPv4 address.
    ///
    /// Creates a TUN device (default `6bed4`) carrying the router's own address and a route
    /// for its /64, enables IPv6 forwarding in its network namespace, and answers Router
    /// Solicitations on the profile's UDP port.
    Router(RouterArgs),
    /// Run a 6bed4 peer: solicit an address from a router and keep it working.
    ///
    /// Creates a TUN device (default `6bed4`, MTU 1280), configures the address the router
    /// advertises, sends keepalives, finds direct paths to other peers, and moves to a new
    /// address when the NAT mapping changes.
    Peer(PeerArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Wire profile: `current` (port 25790, address layout C) or `v01` (port 25788, layout V).
    #[arg(long, default_value = "current")]
    profile: Profile,
    /// The router's UDP port (default: the profile's).
    #[arg(long)]
    port: Option<u16>,
    /// Name of the TUN device to create.
    #[arg(long, default_value = "6bed4")]
    ifname: String,
    /// Machine-readable events on stdout, one JSON object per line.
    #[arg(long, value_enum, default_value = "none")]
    events: EventsFormat,
    /// How often changed drop/traffic counters are reported as an event.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    counters_interval: Duration,
    /// Move one packet per system call: no UDP GSO/GRO on the socket, no TSO or
    /// coalescing on the TUN (for comparison, or for a kernel that misbehaves with them).
    #[arg(long)]
    no_offload: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EventsFormat {
    None,
    Json,
}

#[derive(Args, Debug)]
struct RouterArgs {
    /// Public IPv4 address to listen on (it is embedded in the router's own address).
    #[arg(long)]
    listen: Ipv4Addr,
    /// The router's /64 (default: fc64:0bed:<listen IPv4>::/64 for `current`,
    /// 2001:67c:127c::/64 for `v01`).
    #[arg(long, value_parser = parse_prefix64)]
    prefix: Option<[u8; 8]>,
    /// A further prefix reachable through the router, announced to peers (repeatable).
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(Ipv6Addr, u8)>,
    /// Router lifetime advertised in RAs, in seconds (RFC 4861 allows up to 9000).
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u16).range(0..=9000))]
    router_lifetime: u16,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct PeerArgs {
    /// The router's IPv4 address.
    #[arg(long)]
    router: Ipv4Addr,
    /// Keepalive period and IPv4 TTL: `30s,3` (default), `1s`, `500ms,2`, or `off`.
    #[arg(long, default_value = "30s,3", value_parser = parse_keepalive)]
    keepalive: KeepaliveArg,
    /// Local id appended to the advertised prefix (layout C), 1 to 16383.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16383))]
    lanip: u16,
    /// Install a default route through the tunnel.
    #[arg(long)]
    default_route: bool,
    /// Never try direct paths to other peers; everything goes via the router.
    #[arg(long)]
    no_bypass: bool,
    /// Local IPv4 address (and port) for the tunnel socket (default: any, random port).
    #[arg(long, default_value = "0.0.0.0:0", value_parser = parse_bind)]
    bind: SocketAddrV4,
    /// First gap between Router Solicitations (then doubling plus this, up to --rs-max).
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    rs_initial: Duration,
    /// Largest gap between Router Solicitations.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    rs_max: Duration,
    /// Re-solicit this long after the last accepted RA.
    #[arg(long, default_value = "15m", value_parser = parse_positive_duration)]
    refresh: Duration,
    /// Bypass probes (Neighbor Solicitations) per attempt.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    probes: u32,
    /// Gap between bypass probes.
    #[arg(long, default_value = "200ms", value_parser = parse_positive_duration)]
    probe_interval: Duration,
    /// Re-confirm a direct path after this long.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    reachable: Duration,
    /// Do not probe a failed path again for this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    holddown: Duration,
    #[command(flatten)]
    common: Common,
}

fn parse_route(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("expected <ipv6-prefix>/<length>, found {s:?}"))?;
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| format!("expected an IPv6 prefix, found {a:?}"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&l| l <= 128)
        .ok_or_else(|| format!("expected a prefix length 0..=128, found {l:?}"))?;
    Ok((addr, len))
}

fn parse_bind(s: &str) -> Result<SocketAddrV4, String> {
    s.parse::<SocketAddrV4>()
        .or_else(|_| s.parse::<Ipv4Addr>().map(|ip| SocketAddrV4::new(ip, 0)))
        .map_err(|_| format!("expected <ipv4> or <ipv4>:<port>, found {s:?}"))
}

fn options(c: &Common) -> DaemonOptions {
    DaemonOptions {
        ifname: c.ifname.clone(),
        events_json: c.events == EventsFormat::Json,
        counters_interval: c.counters_interval,
        offload: !c.no_offload,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.role {
        Role::Router(a) => {
            let port = a.common.port.unwrap_or(a.common.profile.router_port());
            let mut cfg = RouterConfig::new(a.common.profile, SocketAddrV4::new(a.listen, port));
            if let Some(p) = a.prefix {
                cfg.prefix = p;
            }
            cfg.routes = a.routes;
            cfg.ra.router_lifetime = a.router_lifetime;
            daemon::run_router(cfg, &options(&a.common))
        }
        Role::Peer(a) => {
            let port = a.common.port.unwrap_or(a.common.profile.router_port());
            let mut cfg = PeerConfig::new(a.common.profile, SocketAddrV4::new(a.router, port));
            cfg.keepalive = a.keepalive.0;
            cfg.lanip = a.lanip;
            cfg.default_route = a.default_route;
            cfg.bypass = !a.no_bypass;
            cfg.rs_initial = a.rs_initial;
            cfg.rs_max = a.rs_max.max(a.rs_initial);
            cfg.refresh = a.refresh;
            cfg.probes = a.probes;
            cfg.probe_interval = a.probe_interval;
            cfg.reachable = a.reachable;
            cfg.holddown = a.holddown;
            daemon::run_peer(cfg, a.bind, &options(&a.common))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixbed4: {e:#}");
            ExitCode::FAILURE
        }
    }
}
