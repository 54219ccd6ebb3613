//! The probe's agents, run inside lab namespaces as hidden subcommands of the bedlab binary:
//!
//! - `bedlab probe-agent server --bind A:P1 --bind A:P2 [--sibling B:P1]`: answers
//!   [`Msg::Request`]s from either port (see [`wire`](super::wire)), relays answers "from the
//!   other address" to its sibling, keeps the rendezvous table; runs until killed. Prints
//!   `ready` once both sockets are bound.
//! - `bedlab probe-agent client basic|hairpin|lifetime ...`: runs one test from an inside
//!   host and prints what it observed as one JSON line ([`super::BasicObservation`],
//!   [`super::HairpinObservation`], [`super::LifetimeObservation`]); exit status 1 with a
//!   sentence on stderr when a server never answered.

use super::wire::{Answer, Msg, Reply, MAX_DATAGRAM};
use super::{
    lifetime_bracket, BasicObservation, FilterSample, HairpinObservation, LifetimeObservation, LifetimeTrial,
    MappingSample, PortSample,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// `bedlab probe-agent ...`.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub role: AgentRole,
}

/// Which agent.
#[derive(clap::Subcommand, Debug)]
pub enum AgentRole {
    /// A probe server (outside the NAT).
    Server(ServerArgs),
    /// A probe client (inside the NAT): one test per run.
    Client(ClientArgs),
}

/// `probe-agent server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address:port to listen on, twice: the primary port, then the other one.
    #[arg(long = "bind", required = true, num_args = 1)]
    pub bind: Vec<SocketAddrV4>,
    /// The sibling server's primary address:port, for answers "from the other address".
    #[arg(long)]
    pub sibling: Option<SocketAddrV4>,
}

/// `probe-agent client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub test: ClientTest,
}

/// The client's tests.
#[derive(clap::Subcommand, Debug)]
pub enum ClientTest {
    /// Mapping, filtering and port allocation.
    Basic {
        /// S1's primary endpoint.
        #[arg(long)]
        s1: SocketAddrV4,
        /// S2's primary endpoint.
        #[arg(long)]
        s2: SocketAddrV4,
        /// The servers' other port.
        #[arg(long)]
        alt_port: u16,
        /// How long to wait for an answer that filtering may drop, once the request is
        /// known to have got through.
        #[arg(long, default_value_t = 500)]
        wait_ms: u64,
        /// Fresh sockets for the port allocation test.
        #[arg(long, default_value_t = 8)]
        port_samples: usize,
    },
    /// One side of the hairpinning test.
    Hairpin {
        /// S1's primary endpoint (the rendezvous).
        #[arg(long)]
        s1: SocketAddrV4,
        /// `a` waits for the hairpinned packet; `b` sends it.
        #[arg(long, value_enum)]
        role: HairpinRole,
        /// Names this test's registrations at the rendezvous.
        #[arg(long)]
        key: String,
        /// How long `b` keeps sending (milliseconds); `a` listens a second longer.
        #[arg(long, default_value_t = 1500)]
        window_ms: u64,
    },
    /// The mapping lifetime.
    Lifetime {
        /// S1's primary endpoint.
        #[arg(long)]
        s1: SocketAddrV4,
        /// Longest idle time to try.
        #[arg(long)]
        max_ms: u64,
        /// Stop narrowing when the bracket is this narrow.
        #[arg(long, default_value_t = 100)]
        resolution_ms: u64,
        /// How long after its due time an answer counts as missing.
        #[arg(long, default_value_t = 500)]
        wait_ms: u64,
        /// Parallel trials per round.
        #[arg(long, default_value_t = 10)]
        per_round: u64,
    },
}

/// The two sides of the hairpinning test.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HairpinRole {
    /// Registers, punches toward b, waits for b's hairpinned packet and answers it.
    A,
    /// Registers, waits for a, sends to a's external endpoint until answered.
    B,
}

/// Runs an agent; the error is one sentence for stderr.
pub fn run(args: AgentArgs) -> Result<(), String> {
    match args.role {
        AgentRole::Server(s) => {
            let [primary, other] = match s.bind.as_slice() {
                [a, b] => [*a, *b],
                _ => return Err("a server binds exactly two endpoints (--bind twice)".into()),
            };
            server([primary, other], s.sibling).map_err(|e| format!("probe server: {e}"))
        }
        AgentRole::Client(c) => {
            let json = match c.test {
                ClientTest::Basic {
                    s1,
                    s2,
                    alt_port,
                    wait_ms,
                    port_samples,
                } => to_json(&basic(
                    s1,
                    s2,
                    alt_port,
                    Duration::from_millis(wait_ms),
                    port_samples,
                )?),
                ClientTest::Hairpin {
                    s1,
                    role,
                    key,
                    window_ms,
                } => to_json(&hairpin(s1, role, &key, Duration::from_millis(window_ms))?),
                ClientTest::Lifetime {
                    s1,
                    max_ms,
                    resolution_ms,
                    wait_ms,
                    per_round,
                } => to_json(&lifetime(
                    s1,
                    max_ms,
                    resolution_ms.max(1),
                    Duration::from_millis(wait_ms),
                    per_round.clamp(2, 64),
                )?),
            };
            let mut out = io::stdout().lock();
            writeln!(out, "{json}")
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

// ----- sockets ------------------------------------------------------------------------------

fn bind(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn fresh() -> Result<UdpSocket, String> {
    bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())
}

fn local_port(s: &UdpSocket) -> u16 {
    s.local_addr().map_or(0, |a| a.port())
}

fn send(sock: &UdpSocket, msg: &Msg, to: SocketAddrV4) {
    // A failed send (a full buffer, an ICMP error reported late) is a lost datagram: the
    // tests retry or count it as not answered.
    let _ = sock.send_to(&msg.encode(), to);
}

/// Waits until one of `socks` is readable or `timeout` passes.
fn wait_readable(socks: &[&UdpSocket], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up, so that a sub-millisecond wait does not spin.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// A datagram that arrived: on which socket, what, from where, when.
struct Arrival {
    sock: usize,
    msg: Msg,
    from: SocketAddrV4,
    at: Instant,
}

/// The next probe message on any of `socks` before `deadline`.
fn recv_any(socks: &[&UdpSocket], deadline: Instant) -> Result<Option<Arrival>, String> {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        for (i, s) in socks.iter().enumerate() {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => {
                        if let Some(msg) = Msg::decode(&buf[..n]) {
                            return Ok(Some(Arrival {
                                sock: i,
                                msg,
                                from,
                                at: Instant::now(),
                            }));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors reported on the socket: nothing arrived.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("receiving: {e}")),
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        wait_readable(socks, deadline - now).map_err(|e| format!("poll: {e}"))?;
    }
}

// ----- server -------------------------------------------------------------------------------

/// A datagram due later.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    seq: u64,
    sock: usize,
    to: SocketAddrV4,
    bytes: Vec<u8>,
}

fn server(binds: [SocketAddrV4; 2], sibling: Option<SocketAddrV4>) -> io::Result<()> {
    let socks = [bind(binds[0])?, bind(binds[1])?];
    println!("ready {} {}", binds[0], binds[1]);
    io::stdout().flush()?;
    let mut due: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut names: HashMap<String, SocketAddrV4> = HashMap::new();
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = due.pop() {
                let _ = socks[d.sock].send_to(&d.bytes, d.to);
            }
        }
        let timeout = due.peek().map_or(Duration::from_secs(3600), |Reverse(d)| {
            d.at.saturating_duration_since(now)
        });
        wait_readable(&[&socks[0], &socks[1]], timeout)?;
        for (k, sock) in socks.iter().enumerate() {
            loop {
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => (n, from),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => continue,
                };
                let Some(msg) = Msg::decode(&buf[..n]) else {
                    continue;
                };
                let now = Instant::now();
                let mut schedule = |delay_ms: u64, sock: usize, to: SocketAddrV4, msg: &Msg| {
                    seq += 1;
                    due.push(Reverse(Due {
                        at: now + Duration::from_millis(delay_ms),
                        seq,
                        sock,
                        to,
                        bytes: msg.encode(),
                    }));
                };
                match msg {
                    Msg::Request { id, replies } => {
                        for Reply {
                            from: answer,
                            delay_ms,
                            tag,
                        } in replies
                        {
                            let body = Msg::Response {
                                id,
                                tag,
                                mapped: from,
                                reached: binds[k],
                            };
                            match (answer, sibling) {
                                (Answer::Same, _) => schedule(delay_ms, k, from, &body),
                                (Answer::OtherPort, _) => schedule(delay_ms, 1 - k, from, &body),
                                (Answer::OtherAddress | Answer::OtherBoth, Some(sib)) => {
                                    let port = if answer == Answer::OtherAddress { k } else { 1 - k };
                                    let relay = Msg::Relay {
                                        to: from,
                                        port: port as u8,
                                        delay_ms,
                                        body: Box::new(body),
                                    };
                                    schedule(0, 0, sib, &relay);
                                }
                                (_, None) => {}
                            }
                        }
                    }
                    Msg::Relay {
                        to,
                        port,
                        delay_ms,
                        body,
                    } => schedule(delay_ms, usize::from(port.min(1)), to, &body),
                    Msg::Register { id, name } => {
                        names.insert(name, from);
                        let body = Msg::Response {
                            id,
                            tag: 0,
                            mapped: from,
                            reached: binds[k],
                        };
                        schedule(0, k, from, &body);
                    }
                    Msg::Lookup { id, name } => {
                        let body = Msg::Found {
                            id,
                            addr: names.get(&name).copied(),
                        };
                        schedule(0, k, from, &body);
                    }
                    _ => {}
                }
            }
        }
    }
}

// ----- client -------------------------------------------------------------------------------

/// Attempts at a request that must be answered, and the pause between them.
const ATTEMPTS: u32 = 5;
const RETRY: Duration = Duration::from_millis(300);

/// Request ids: unique per process and unlikely to repeat across runs.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) << 32;
    base | NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends `make(id)` to `to` until `accept` takes an answer (matching `id`); up to
/// [`ATTEMPTS`] times. Other messages go to `other`.
fn exchange<T>(
    sock: &UdpSocket,
    to: SocketAddrV4,
    make: impl Fn(u64) -> Msg,
    mut accept: impl FnMut(u64, &Arrival) -> Option<T>,
    mut other: impl FnMut(&Arrival),
) -> Result<T, String> {
    for _ in 0..ATTEMPTS {
        let id = next_id();
        send(sock, &make(id), to);
        let deadline = Instant::now() + RETRY;
        while let Some(a) = recv_any(&[sock], deadline)? {
            match accept(id, &a) {
                Some(v) => return Ok(v),
                None => other(&a),
            }
        }
    }
    Err(format!(
        "no answer from the probe server {to} after {ATTEMPTS} attempts (is the NAT passing UDP?)"
    ))
}

/// The external endpoint S at `to` sees for `sock`.
fn mapped_by(sock: &UdpSocket, to: SocketAddrV4) -> Result<SocketAddrV4, String> {
    exchange(
        sock,
        to,
        |id| Msg::Request {
            id,
            replies: vec![Reply::now(Answer::Same, 0)],
        },
        |id, a| match a.msg {
            Msg::Response {
                id: got,
                tag: 0,
                mapped,
                ..
            } if got == id => Some(mapped),
            _ => None,
        },
        |_| {},
    )
}

fn basic(
    s1: SocketAddrV4,
    s2: SocketAddrV4,
    alt_port: u16,
    wait: Duration,
    port_samples: usize,
) -> Result<BasicObservation, String> {
    // Mapping: one socket toward the four server endpoints.
    let sock = fresh()?;
    let endpoints = [
        s1,
        SocketAddrV4::new(*s1.ip(), alt_port),
        s2,
        SocketAddrV4::new(*s2.ip(), alt_port),
    ];
    let mut mapping = Vec::new();
    for server in endpoints {
        mapping.push(MappingSample {
            server,
            mapped: mapped_by(&sock, server)?,
        });
    }

    // Filtering: a fresh socket per changed answer, each sending only to S1:P1 and asking
    // for the changed answer first and an unchanged one (the proof it got through) second.
    let answers = [Answer::OtherPort, Answer::OtherAddress, Answer::OtherBoth];
    let socks: Vec<UdpSocket> = answers.iter().map(|_| fresh()).collect::<Result<_, _>>()?;
    let refs: Vec<&UdpSocket> = socks.iter().collect();
    let ids: Vec<u64> = answers.iter().map(|_| next_id()).collect();
    let request = |i: usize| Msg::Request {
        id: ids[i],
        replies: vec![Reply::now(answers[i], 1), Reply::now(Answer::Same, 0)],
    };
    let mut proven: Vec<Option<Instant>> = vec![None; answers.len()];
    let mut changed: Vec<Option<SocketAddrV4>> = vec![None; answers.len()];
    let mut attempts = vec![0u32; answers.len()];
    let mut last_sent = vec![Instant::now(); answers.len()];
    for (i, s) in socks.iter().enumerate() {
        send(s, &request(i), s1);
        attempts[i] = 1;
    }
    loop {
        let now = Instant::now();
        for i in 0..answers.len() {
            if proven[i].is_none() && now >= last_sent[i] + RETRY && attempts[i] < ATTEMPTS {
                send(&socks[i], &request(i), s1);
                attempts[i] += 1;
                last_sent[i] = now;
            }
        }
        let unproven_done = (0..answers.len())
            .filter(|&i| proven[i].is_none())
            .all(|i| attempts[i] >= ATTEMPTS && now >= last_sent[i] + RETRY);
        let last_proof = proven.iter().flatten().max().copied();
        let all_heard = changed.iter().all(Option::is_some);
        let window_over = last_proof.is_some_and(|t| now >= t + wait);
        if unproven_done && (all_heard || window_over || last_proof.is_none()) {
            break;
        }
        let mut deadline = now + wait;
        for i in 0..answers.len() {
            if proven[i].is_none() && attempts[i] < ATTEMPTS {
                deadline = deadline.min(last_sent[i] + RETRY);
            }
        }
        if let Some(t) = last_proof {
            deadline = deadline.min(t + wait);
        }
        if let Some(a) = recv_any(&refs, deadline.max(now + Duration::from_millis(1)))? {
            if let Msg::Response { id, tag, .. } = a.msg {
                if id == ids[a.sock] {
                    match tag {
                        0 => proven[a.sock] = proven[a.sock].or(Some(a.at)),
                        _ => changed[a.sock] = Some(a.from),
                    }
                }
            }
        }
    }
    if let Some(i) = proven.iter().position(Option::is_none) {
        return Err(format!(
            "the probe server {s1} never answered the filtering request asking for {:?}",
            answers[i]
        ));
    }
    let filtering = answers
        .iter()
        .zip(&changed)
        .map(|(&answer, &source)| FilterSample {
            answer,
            received: source.is_some(),
            source,
        })
        .collect();

    // Port allocation: fresh sockets, kept open so that no inside port is reused.
    let mut kept = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..port_samples {
        let s = fresh()?;
        ports.push(PortSample {
            local: local_port(&s),
            mapped: mapped_by(&s, s1)?,
        });
        kept.push(s);
    }
    Ok(BasicObservation {
        local_port: local_port(&sock),
        mapping,
        filtering,
        ports,
    })
}

fn register(
    sock: &UdpSocket,
    s1: SocketAddrV4,
    name: &str,
    seen: &mut dyn FnMut(&Arrival),
) -> Result<SocketAddrV4, String> {
    exchange(
        sock,
        s1,
        |id| Msg::Register {
            id,
            name: name.to_string(),
        },
        |id, a| match a.msg {
            Msg::Response { id: got, mapped, .. } if got == id => Some(mapped),
            _ => None,
        },
        |a| seen(a),
    )
}

/// Asks the rendezvous for `name` until it is registered or `timeout` passes.
fn lookup(
    sock: &UdpSocket,
    s1: SocketAddrV4,
    name: &str,
    timeout: Duration,
    seen: &mut dyn FnMut(&Arrival),
) -> Result<SocketAddrV4, String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = exchange(
            sock,
            s1,
            |id| Msg::Lookup {
                id,
                name: name.to_string(),
            },
            |id, a| match a.msg {
                Msg::Found { id: got, addr } if got == id => Some(addr),
                _ => None,
            },
            |a| seen(a),
        )?;
        if let Some(addr) = found {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the other hairpinning client never registered {name:?}"))
}

fn hairpin(
    s1: SocketAddrV4,
    role: HairpinRole,
    key: &str,
    window: Duration,
) -> Result<HairpinObservation, String> {
    let sock = fresh()?;
    let mut punch_received = false;
    let mut hairpins: Vec<SocketAddrV4> = Vec::new();
    let mut seen = |a: &Arrival| match a.msg {
        Msg::Punch { .. } => punch_received = true,
        Msg::Hairpin { .. } => hairpins.push(a.from),
        _ => {}
    };
    let (me, peer) = match role {
        HairpinRole::A => (format!("{key}-a"), format!("{key}-b")),
        HairpinRole::B => (format!("{key}-b"), format!("{key}-a-ready")),
    };
    let mapped = register(&sock, s1, &me, &mut seen)?;
    let peer_mapped = lookup(&sock, s1, &peer, Duration::from_secs(10), &mut seen)?;
    match role {
        HairpinRole::A => {
            // Open this mapping's filter toward b's external endpoint, then tell b.
            for _ in 0..3 {
                send(&sock, &Msg::Punch { id: next_id() }, peer_mapped);
            }
            register(&sock, s1, &format!("{key}-a-ready"), &mut seen)?;
            let deadline = Instant::now() + window + Duration::from_secs(1);
            let mut source = hairpins.first().copied();
            while source.is_none() {
                match recv_any(&[&sock], deadline)? {
                    Some(a) => {
                        if let Msg::Hairpin { .. } = a.msg {
                            source = Some(a.from);
                        }
                    }
                    None => break,
                }
            }
            if let Some(to) = source {
                for _ in 0..3 {
                    send(&sock, &Msg::HairpinAck { id: next_id() }, to);
                }
            }
            Ok(HairpinObservation {
                mapped,
                peer_mapped: Some(peer_mapped),
                received: source.is_some(),
                source,
                punch_received,
            })
        }
        HairpinRole::B => {
            let deadline = Instant::now() + window;
            let mut next_send = Instant::now();
            let mut ack = None;
            while ack.is_none() && Instant::now() < deadline {
                if Instant::now() >= next_send {
                    send(&sock, &Msg::Hairpin { id: next_id() }, peer_mapped);
                    next_send = Instant::now() + Duration::from_millis(100);
                }
                if let Some(a) = recv_any(&[&sock], next_send.min(deadline))? {
                    match a.msg {
                        Msg::HairpinAck { .. } => ack = Some(a.from),
                        Msg::Punch { .. } => punch_received = true,
                        _ => {}
                    }
                }
            }
            Ok(HairpinObservation {
                mapped,
                peer_mapped: Some(peer_mapped),
                received: ack.is_some(),
                source: ack,
                punch_received,
            })
        }
    }
}

/// One lifetime trial in flight.
struct Trial {
    sock: UdpSocket,
    delay_ms: u64,
    id: u64,
    sent: Instant,
    attempts: u32,
    acked: bool,
    alive: Option<bool>,
}

impl Trial {
    fn request(&self) -> Msg {
        Msg::Request {
            id: self.id,
            replies: vec![
                Reply::now(Answer::Same, 0),
                Reply {
                    from: Answer::Same,
                    delay_ms: self.delay_ms,
                    tag: 1,
                },
            ],
        }
    }
}

/// Runs trials with these idle times in parallel, each on a fresh mapping; stops early
/// once a trial expired and every shorter one is decided (longer ones would expire too).
fn lifetime_round(s1: SocketAddrV4, delays: &[u64], wait: Duration) -> Result<Vec<LifetimeTrial>, String> {
    let mut trials = Vec::new();
    for &delay_ms in delays {
        let t = Trial {
            sock: fresh()?,
            delay_ms,
            id: next_id(),
            sent: Instant::now(),
            attempts: 1,
            acked: false,
            alive: None,
        };
        send(&t.sock, &t.request(), s1);
        trials.push(t);
    }
    loop {
        let now = Instant::now();
        for t in trials.iter_mut().filter(|t| t.alive.is_none()) {
            if !t.acked && now >= t.sent + RETRY {
                if t.attempts >= ATTEMPTS {
                    return Err(format!("the probe server {s1} never answered a lifetime trial"));
                }
                // A new id: the mapping's idle time now counts from this send.
                t.id = next_id();
                t.sent = now;
                t.attempts += 1;
                send(&t.sock, &t.request(), s1);
            } else if t.acked && now >= t.sent + Duration::from_millis(t.delay_ms) + wait {
                t.alive = Some(false);
            }
        }
        let first_dead = trials
            .iter()
            .filter(|t| t.alive == Some(false))
            .map(|t| t.delay_ms)
            .min();
        let open = |t: &&Trial| t.alive.is_none() && first_dead.is_none_or(|d| t.delay_ms < d);
        if !trials.iter().any(|t| open(&t)) {
            break;
        }
        let deadline = trials
            .iter()
            .filter(open)
            .map(|t| {
                if t.acked {
                    t.sent + Duration::from_millis(t.delay_ms) + wait
                } else {
                    t.sent + RETRY
                }
            })
            .min()
            .unwrap_or(now);
        let socks: Vec<&UdpSocket> = trials.iter().map(|t| &t.sock).collect();
        if let Some(a) = recv_any(&socks, deadline)? {
            let t = &mut trials[a.sock];
            if let Msg::Response { id, tag, .. } = a.msg {
                if id == t.id && t.alive.is_none() {
                    match tag {
                        0 => t.acked = true,
                        _ => t.alive = Some(true),
                    }
                }
            }
        }
    }
    Ok(trials
        .iter()
        .filter_map(|t| {
            t.alive.map(|alive| LifetimeTrial {
                delay_ms: t.delay_ms,
                alive,
            })
        })
        .collect())
}

fn lifetime(
    s1: SocketAddrV4,
    max_ms: u64,
    resolution_ms: u64,
    wait: Duration,
    per_round: u64,
) -> Result<LifetimeObservation, String> {
    let start = Instant::now();
    // Bounded: a few rounds, each at most the longest idle time plus the wait.
    let budget = Duration::from_millis(max_ms.saturating_mul(3)) + wait * 4 + Duration::from_secs(5);
    let mut all: Vec<LifetimeTrial> = Vec::new();
    let mut delays: Vec<u64> = (1..=per_round).map(|i| max_ms * i / per_round).collect();
    for _round in 0..6 {
        delays.retain(|d| *d > 0 && !all.iter().any(|t| t.delay_ms == *d));
        delays.dedup();
        if delays.is_empty() {
            break;
        }
        all.extend(lifetime_round(s1, &delays, wait)?);
        let (lower, upper, _) = lifetime_bracket(&all);
        let Some(upper) = upper else { break }; // alive all the way to max_ms
        let lower = lower.unwrap_or(0);
        if upper - lower <= resolution_ms {
            break;
        }
        if start.elapsed() + Duration::from_millis(upper) + wait > budget {
            break;
        }
        let span = upper - lower;
        delays = (1..=per_round)
            .map(|i| lower + span * i / (per_round + 1))
            .collect();
    }
    all.sort_by_key(|t| t.delay_ms);
    Ok(LifetimeObservation { max_ms, trials: all })
}
