//! The socket shell of the flow agent: `bedlab flow recv` (run first, in the receiving
//! node) and `bedlab flow send` (in the sending node), both over IPv6 or IPv4.
//!
//! The sender prints one JSON [`Report`] on stdout and exits 0 whenever it could judge the
//! flow, even a flow that got nothing through (that is for the step to judge); it exits 1
//! only on bad arguments. The receiver prints its own side as JSON and exits when the
//! sender has its report, or at its timeout.

use super::{pattern, read_header, write_header, MsgKind, Proto, RecvStats, Report, UDP_HEADER_LEN};
use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn duration(s: &str) -> Result<Duration, String> {
    crate::topology::parse_duration(s).map_err(|e| e.to_string())
}

fn rate(s: &str) -> Result<u64, String> {
    crate::topology::parse_rate(s).map_err(|e| e.to_string())
}

/// `bedlab flow ...`.
#[derive(clap::Args, Debug)]
pub struct FlowArgs {
    #[command(subcommand)]
    pub role: FlowRole,
}

/// The two ends.
#[derive(clap::Subcommand, Debug)]
pub enum FlowRole {
    /// Receive one flow and check it.
    Recv(RecvArgs),
    /// Send one flow and print the joined report.
    Send(SendArgs),
}

#[derive(clap::Args, Debug)]
pub struct RecvArgs {
    #[arg(long, value_enum)]
    pub proto: Proto,
    #[arg(long, default_value_t = 5201)]
    pub port: u16,
    /// Give up after this long.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub timeout: Duration,
    /// Create this (empty) file once listening: whoever starts the sender waits for it,
    /// so that no datagram arrives at a port nobody listens on yet (the port-unreachable
    /// it would draw back is traffic of its own in the capture).
    #[arg(long)]
    pub ready_file: Option<std::path::PathBuf>,
}

/// Says "listening" through `--ready-file`, if given.
fn say_ready(a: &RecvArgs) {
    if let Some(p) = &a.ready_file {
        let _ = std::fs::write(p, b"");
    }
}

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    #[arg(long, value_enum)]
    pub proto: Proto,
    /// The receiver: `[addr]:port`.
    #[arg(long)]
    pub to: SocketAddr,
    /// TCP: bytes to send.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// UDP: datagrams to send.
    #[arg(long)]
    pub packets: Option<u64>,
    /// Send for this long instead.
    #[arg(long, value_parser = duration)]
    pub duration: Option<Duration>,
    /// UDP payload size (header included); TCP write size.
    #[arg(long, default_value_t = 1000)]
    pub size: u32,
    /// UDP pacing.
    #[arg(long, value_parser = rate, default_value = "5mbit")]
    pub rate: u64,
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub timeout: Duration,
}

/// Runs the agent; the report goes to stdout.
pub fn run(args: FlowArgs) -> io::Result<()> {
    let report = match args.role {
        FlowRole::Recv(a) => match a.proto {
            Proto::Udp => recv_udp(&a),
            Proto::Tcp => recv_tcp(&a),
        },
        FlowRole::Send(a) => match a.proto {
            Proto::Udp => send_udp(&a),
            Proto::Tcp => send_tcp(&a),
        },
    };
    let line = serde_json::to_string(&report).map_err(io::Error::other)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn bind_any(port: u16) -> io::Result<UdpSocket> {
    // A dual-stack wildcard: IPv4 senders arrive as mapped addresses.
    UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
}

fn recv_udp(a: &RecvArgs) -> Report {
    let mut report = Report {
        proto: Some(Proto::Udp),
        ..Default::default()
    };
    let sock = match bind_any(a.port) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!("binding UDP port {}: {e}", a.port));
            return report;
        }
    };
    say_ready(a);
    let deadline = Instant::now() + a.timeout;
    let mut buf = vec![0u8; 65_536];
    let mut scratch = Vec::new();
    let mut flow: Option<(u64, SocketAddr, Instant)> = None;
    let mut stats = RecvStats::default();
    let mut expected_len = None;
    let mut finished: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // After the end, answer repeated ENDs for a moment (the report may be lost), then go.
        if now >= deadline || finished.is_some_and(|f| now >= f + Duration::from_secs(1)) {
            break;
        }
        let wait = finished.map_or(deadline, |f| f + Duration::from_secs(1)) - now;
        let _ = sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let Some(h) = read_header(&buf[..n]) else { continue };
        match h.kind {
            MsgKind::Hello => {
                if flow.is_none() {
                    flow = Some((h.id, from, Instant::now()));
                    expected_len = usize::try_from(h.seq).ok();
                }
                if flow.is_some_and(|f| f.0 == h.id) {
                    let mut ack = [0u8; UDP_HEADER_LEN];
                    write_header(&mut ack, MsgKind::HelloAck, h.id, 0);
                    let _ = sock.send_to(&ack, from);
                }
            }
            MsgKind::Data if flow.is_some_and(|f| f.0 == h.id) => {
                let payload = &buf[UDP_HEADER_LEN..n];
                stats.data(
                    h.id,
                    h.seq,
                    payload,
                    expected_len.map(|l| l - UDP_HEADER_LEN),
                    &mut scratch,
                );
            }
            MsgKind::End if flow.is_some_and(|f| f.0 == h.id) => {
                let started = flow.map_or(now, |f| f.2);
                report.received_packets = stats.packets;
                report.received_bytes = stats.bytes;
                report.duplicates = stats.duplicates;
                report.reordered = stats.reordered;
                report.corrupt = stats.corrupt;
                report.sent_packets = h.seq;
                report.lost = h.seq.saturating_sub(stats.packets + stats.corrupt);
                report.complete = true;
                report.duration_ms = ms(now.saturating_duration_since(started));
                let body = serde_json::to_vec(&report).unwrap_or_default();
                let mut msg = vec![0u8; UDP_HEADER_LEN];
                write_header(&mut msg, MsgKind::Report, h.id, 0);
                msg.extend(body);
                let _ = sock.send_to(&msg, from);
                finished.get_or_insert(now);
            }
            _ => {}
        }
    }
    if finished.is_none() {
        report.received_packets = stats.packets;
        report.received_bytes = stats.bytes;
        report.corrupt = stats.corrupt;
        report.error = Some(if flow.is_some() {
            "the sender never ended the flow".into()
        } else {
            "no sender appeared".into()
        });
    }
    report
}

fn send_udp(a: &SendArgs) -> Report {
    let started = Instant::now();
    let deadline = started + a.timeout;
    let mut report = Report {
        proto: Some(Proto::Udp),
        ..Default::default()
    };
    let size = (a.size as usize).max(UDP_HEADER_LEN);
    let bind: SocketAddr = if a.to.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(a.to).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!("UDP socket to {}: {e}", a.to));
            return report;
        }
    };
    let id: u64 = rand::random();
    let mut buf = vec![0u8; 65_536];
    // 1. Hello until acknowledged.
    let mut hello = [0u8; UDP_HEADER_LEN];
    write_header(&mut hello, MsgKind::Hello, id, size as u64);
    let mut acked = false;
    while !acked && Instant::now() < deadline {
        let _ = sock.send(&hello);
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if read_header(&buf[..n]).is_some_and(|h| h.kind == MsgKind::HelloAck && h.id == id) {
                        acked = true;
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    if !acked {
        report.error = Some(format!("no answer from a receiver at {}", a.to));
        report.duration_ms = ms(started.elapsed());
        return report;
    }
    // 2. Data, paced.
    let gap = Duration::from_secs_f64(size as f64 * 8.0 / a.rate.max(1) as f64);
    let stop_at = a.duration.map(|d| Instant::now() + d);
    let count = a.packets.unwrap_or(u64::MAX);
    let data_start = Instant::now();
    let mut pkt = vec![0u8; size];
    let mut seq = 0u64;
    while seq < count && stop_at.is_none_or(|s| Instant::now() < s) && Instant::now() < deadline {
        let due = data_start + gap.mul_f64(seq as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        write_header(&mut pkt, MsgKind::Data, id, seq);
        pattern(id, seq, 0, &mut pkt[UDP_HEADER_LEN..]);
        // A full socket buffer or an ICMP error is loss like any other.
        let _ = sock.send(&pkt);
        seq += 1;
    }
    report.sent_packets = seq;
    report.sent_bytes = seq * (size - UDP_HEADER_LEN) as u64;
    // 3. End until the report comes.
    let mut end = [0u8; UDP_HEADER_LEN];
    write_header(&mut end, MsgKind::End, id, seq);
    let end_deadline =
        (Instant::now() + Duration::from_secs(5)).min(deadline.max(Instant::now() + Duration::from_secs(1)));
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    while Instant::now() < end_deadline {
        let _ = sock.send(&end);
        if let Ok(n) = sock.recv(&mut buf) {
            if read_header(&buf[..n]).is_some_and(|h| h.kind == MsgKind::Report && h.id == id) {
                if let Ok(theirs) = serde_json::from_slice::<Report>(&buf[UDP_HEADER_LEN..n]) {
                    report.received_packets = theirs.received_packets;
                    report.received_bytes = theirs.received_bytes;
                    report.duplicates = theirs.duplicates;
                    report.reordered = theirs.reordered;
                    report.corrupt = theirs.corrupt;
                    report.lost = seq.saturating_sub(theirs.received_packets + theirs.corrupt);
                    report.complete = true;
                    report.duration_ms = ms(data_start.elapsed());
                    return report;
                }
            }
        }
    }
    report.error = Some("the receiver never reported".into());
    report.lost = seq;
    report.duration_ms = ms(data_start.elapsed());
    report
}

fn recv_tcp(a: &RecvArgs) -> Report {
    let mut report = Report {
        proto: Some(Proto::Tcp),
        ..Default::default()
    };
    let deadline = Instant::now() + a.timeout;
    let listener = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, a.port)) {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(format!("listening on TCP port {}: {e}", a.port));
            return report;
        }
    };
    say_ready(a);
    let _ = listener.set_nonblocking(true);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                report.error = Some(format!("no connection: {e}"));
                return report;
            }
        }
    };
    let started = Instant::now();
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ));
    let mut header = [0u8; UDP_HEADER_LEN];
    let Some(h) = stream
        .read_exact(&mut header)
        .ok()
        .and_then(|()| read_header(&header))
    else {
        report.error = Some("the stream did not start with a flow header".into());
        return report;
    };
    let mut buf = vec![0u8; 65_536];
    let mut scratch = Vec::new();
    let mut offset = 0u64;
    let clean = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                report.corrupt += super::mismatches(h.id, 0, offset, &buf[..n], &mut scratch);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                report.error = Some(format!("reading the stream: {e}"));
                break false;
            }
        }
    };
    report.received_bytes = offset;
    report.received_packets = offset;
    report.complete = clean && (h.seq == 0 || h.seq == offset);
    report.duration_ms = ms(started.elapsed());
    if let Ok(body) = serde_json::to_vec(&report) {
        let _ = stream.write_all(&body);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    report
}

fn send_tcp(a: &SendArgs) -> Report {
    let started = Instant::now();
    let deadline = started + a.timeout;
    let mut report = Report {
        proto: Some(Proto::Tcp),
        ..Default::default()
    };
    // The receiver may not listen yet: retry a refused connection until the deadline.
    let mut stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(
            &a.to,
            left.clamp(Duration::from_millis(1), Duration::from_secs(3)),
        ) {
            Ok(s) => break s,
            Err(e) if Instant::now() + Duration::from_millis(50) < deadline => {
                tracing::debug!("connect {}: {e}; retrying", a.to);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                report.error = Some(format!("connecting to {}: {e}", a.to));
                report.duration_ms = ms(started.elapsed());
                return report;
            }
        }
    };
    let _ = stream.set_write_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ));
    let id: u64 = rand::random();
    let total = a.bytes.unwrap_or(0);
    let mut header = [0u8; UDP_HEADER_LEN];
    write_header(&mut header, MsgKind::Tcp, id, total);
    let data_start = Instant::now();
    if let Err(e) = stream.write_all(&header) {
        report.error = Some(format!("writing: {e}"));
        return report;
    }
    let stop_at = a.duration.map(|d| data_start + d);
    let mut chunk = vec![0u8; (a.size as usize).max(1)];
    let mut offset = 0u64;
    let mut failed = None;
    loop {
        let left = match a.bytes {
            Some(b) => b - offset,
            None => u64::MAX,
        };
        if left == 0 || stop_at.is_some_and(|s| Instant::now() >= s) || Instant::now() >= deadline {
            break;
        }
        let n = (chunk.len() as u64).min(left) as usize;
        pattern(id, 0, offset, &mut chunk[..n]);
        if let Err(e) = stream.write_all(&chunk[..n]) {
            failed = Some(format!("writing: {e}"));
            break;
        }
        offset += n as u64;
    }
    report.sent_bytes = offset;
    report.sent_packets = offset;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ));
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body);
    match serde_json::from_slice::<Report>(&body) {
        Ok(theirs) => {
            report.received_bytes = theirs.received_bytes;
            report.received_packets = theirs.received_bytes;
            report.corrupt = theirs.corrupt;
            report.complete = theirs.complete && failed.is_none() && theirs.received_bytes == offset;
            report.error = failed.or(theirs.error);
        }
        Err(_) => report.error = Some(failed.unwrap_or_else(|| "the receiver sent no report".into())),
    }
    report.duration_ms = ms(data_start.elapsed());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends on the loopback of the test's own namespace: the protocol works end to
    /// end, and a flow nobody receives reports that instead of hanging.
    #[test]
    fn udp_and_tcp_flows_over_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (proto, port) in [(Proto::Udp, 39_611u16), (Proto::Tcp, 39_612u16)] {
            let ready = dir.path().join(format!("{port}.ready"));
            let recv = RecvArgs {
                proto,
                port,
                timeout: Duration::from_secs(20),
                ready_file: Some(ready.clone()),
            };
            let receiver = std::thread::spawn(move || match proto {
                Proto::Udp => recv_udp(&recv),
                Proto::Tcp => recv_tcp(&recv),
            });
            // The receiver says when it listens; the sender starts then (and the port is
            // bound by then: binding it again fails).
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while !ready.exists() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(ready.exists(), "{proto:?}: no ready file");
            match proto {
                Proto::Udp => assert!(bind_any(port).is_err(), "UDP port not bound when ready"),
                Proto::Tcp => assert!(
                    std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_err(),
                    "TCP port not listening when ready"
                ),
            }
            let send = SendArgs {
                proto,
                to: format!("[::1]:{port}").parse().unwrap(),
                bytes: (proto == Proto::Tcp).then_some(300_000),
                packets: (proto == Proto::Udp).then_some(200),
                duration: None,
                size: 500,
                rate: 50_000_000,
                timeout: Duration::from_secs(20),
            };
            let r = match proto {
                Proto::Udp => send_udp(&send),
                Proto::Tcp => send_tcp(&send),
            };
            let theirs = receiver.join().unwrap();
            assert_eq!(r.error, None, "{r:?}");
            assert!(r.complete && r.corrupt == 0, "{r:?}");
            match proto {
                Proto::Udp => {
                    assert_eq!((r.sent_packets, r.received_packets), (200, 200), "{r:?}");
                    assert_eq!(r.received_bytes, 200 * (500 - UDP_HEADER_LEN as u64));
                }
                Proto::Tcp => assert_eq!((r.sent_bytes, r.received_bytes), (300_000, 300_000)),
            }
            assert_eq!(theirs.received_bytes, r.received_bytes);
        }
        let nobody = SendArgs {
            proto: Proto::Udp,
            to: "[::1]:39613".parse().unwrap(),
            bytes: None,
            packets: Some(5),
            duration: None,
            size: 100,
            rate: 1_000_000,
            timeout: Duration::from_millis(400),
        };
        let r = send_udp(&nobody);
        assert!(r.error.is_some_and(|e| e.contains("no answer")) && r.received_bytes == 0);
    }
}
