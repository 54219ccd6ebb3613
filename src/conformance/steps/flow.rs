//! Flow steps: UDP or TCP traffic between two nodes (peers, the router, a native IPv6 host),
//! generated and verified by the hidden `bedlab flow` agent ([`crate::traffic`]) run inside
//! both nodes, and judged against the step's stated expectations.
//!
//! ```toml
//! [[step]]
//! flow = { proto = "tcp", from = "peer-a", to = "server", bytes = 1048576 }
//! [[step]]
//! flow = { proto = "udp", from = "peer-a", to = "peer-b", packets = 500, size = 1000,
//!          rate = "4mbit", max_loss = 0.02 }
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::topology::{parse_duration, parse_rate};
use crate::traffic::{Proto, Report};

/// A flow step as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub proto: String,
    pub from: String,
    pub to: String,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub duration: Option<String>,
    pub size: Option<u32>,
    pub rate: Option<String>,
    pub port: Option<u16>,
    pub expect: Option<String>,
    pub max_loss: Option<f64>,
    pub max_reorder: Option<f64>,
    pub timeout: Option<String>,
}

/// What a flow must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowExpect {
    /// Everything arrives intact (UDP: loss within `max_loss`, default 0).
    Complete,
    /// Something arrives intact.
    Some,
    /// Nothing arrives (a path that must be closed).
    None,
    /// Recorded only.
    Any,
}

/// A parsed flow step.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    pub proto: Proto,
    pub from: String,
    pub to: String,
    /// TCP: bytes to send; UDP: computed from `packets`.
    pub bytes: Option<u64>,
    /// UDP datagrams to send.
    pub packets: Option<u64>,
    /// Send for this long instead of a fixed amount.
    pub duration: Option<Duration>,
    /// UDP datagram payload size; TCP write size.
    pub size: u32,
    /// UDP pacing in bits per second.
    pub rate_bps: u64,
    pub port: u16,
    pub expect: FlowExpect,
    pub max_loss: f64,
    pub max_reorder: Option<f64>,
    /// Longest the whole flow may take.
    pub timeout: Duration,
}

/// The field a parse error is about (for locating it in the file) and the message.
pub type FlowError = (String, String, String);

impl FlowSpec {
    /// Checks and completes a raw flow; errors name the offending value, what was expected
    /// and what was found.
    pub fn from_raw(r: RawFlow) -> Result<FlowSpec, FlowError> {
        if r.from == r.to {
            return Err((
                r.to.clone(),
                "a flow between two different nodes".into(),
                format!("{:?} to itself", r.to),
            ));
        }
        let proto = match r.proto.as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err((
                    r.proto.clone(),
                    "proto = \"tcp\" or \"udp\"".into(),
                    format!("{other:?}"),
                ))
            }
        };
        let dur = |s: &String| {
            parse_duration(s).map_err(|e| (s.clone(), "a duration such as \"2s\"".into(), e.to_string()))
        };
        let duration = r.duration.as_ref().map(dur).transpose()?;
        let timeout = r.timeout.as_ref().map(dur).transpose()?;
        let amounts = [r.bytes.is_some(), r.packets.is_some(), duration.is_some()];
        if amounts.iter().filter(|x| **x).count() > 1 {
            return Err((
                r.proto.clone(),
                "one of bytes, packets or duration".into(),
                "several".into(),
            ));
        }
        if proto == Proto::Tcp && r.packets.is_some() {
            return Err((
                "packets".into(),
                "bytes or duration for a TCP flow".into(),
                "packets".into(),
            ));
        }
        if proto == Proto::Udp && r.bytes.is_some() {
            return Err((
                "bytes".into(),
                "packets or duration for a UDP flow".into(),
                "bytes".into(),
            ));
        }
        let size = r.size.unwrap_or(match proto {
            Proto::Tcp => 16_384,
            Proto::Udp => 1000,
        });
        let min = crate::traffic::UDP_HEADER_LEN as u32;
        if size < min || size > 65_000 {
            return Err((
                "size".into(),
                format!("a size in {min}..=65000 bytes"),
                size.to_string(),
            ));
        }
        let rate_bps = match &r.rate {
            Some(s) => {
                parse_rate(s).map_err(|e| (s.clone(), "a rate such as \"4mbit\"".into(), e.to_string()))?
            }
            None => 5_000_000,
        };
        let expect = match r.expect.as_deref() {
            None | Some("complete") => FlowExpect::Complete,
            Some("some") => FlowExpect::Some,
            Some("none") => FlowExpect::None,
            Some("any") => FlowExpect::Any,
            Some(other) => {
                return Err((
                    other.to_string(),
                    "expect = \"complete\", \"some\", \"none\" or \"any\"".into(),
                    format!("{other:?}"),
                ))
            }
        };
        for (name, v) in [("max_loss", r.max_loss), ("max_reorder", r.max_reorder)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err((
                        name.into(),
                        format!("{name} as a fraction in 0..=1"),
                        v.to_string(),
                    ));
                }
            }
        }
        if proto == Proto::Tcp && (r.max_loss.is_some() || r.max_reorder.is_some()) {
            return Err((
                "max_loss".into(),
                "no loss or reordering bound on TCP (the stream is complete or not)".into(),
                "a bound".into(),
            ));
        }
        let (bytes, packets) = match (proto, r.bytes, r.packets, duration) {
            (_, _, _, Some(_)) => (None, None),
            (Proto::Tcp, b, _, None) => (Some(b.unwrap_or(1 << 20)), None),
            (Proto::Udp, _, p, None) => (None, Some(p.unwrap_or(1000))),
        };
        let estimate = match (proto, packets, bytes, duration) {
            (_, _, _, Some(d)) => d,
            (Proto::Udp, Some(p), _, _) => {
                Duration::from_secs_f64(p as f64 * f64::from(size) * 8.0 / rate_bps as f64)
            }
            _ => Duration::from_secs(10),
        };
        Ok(FlowSpec {
            proto,
            from: r.from,
            to: r.to,
            bytes,
            packets,
            duration,
            size,
            rate_bps,
            port: r.port.unwrap_or(5201),
            expect,
            max_loss: r.max_loss.unwrap_or(0.0),
            max_reorder: r.max_reorder,
            timeout: timeout.unwrap_or(estimate + Duration::from_secs(20)),
        })
    }

    /// A one-line description for reports.
    pub fn title(&self) -> String {
        let amount = match (self.bytes, self.packets, self.duration) {
            (Some(b), _, _) => format!("{b} bytes"),
            (_, Some(p), _) => format!("{p} × {} bytes", self.size),
            (_, _, Some(d)) => format!("for {}", crate::topology::format_duration(d)),
            _ => String::new(),
        };
        format!("{} flow {}→{} ({amount})", self.proto, self.from, self.to)
    }

    /// Judges the sender's report (which carries the receiver's counts).
    pub fn judge(&self, r: &Report) -> (bool, String) {
        let intact = r.corrupt == 0;
        let loss = r.loss_fraction();
        let reorder = if r.received_packets == 0 {
            0.0
        } else {
            r.reordered as f64 / r.received_packets as f64
        };
        let summary = r.summary();
        let ok = match self.expect {
            FlowExpect::Any => true,
            FlowExpect::None => r.received_bytes == 0,
            FlowExpect::Some => intact && r.received_bytes > 0,
            FlowExpect::Complete => match self.proto {
                Proto::Tcp => intact && r.complete && r.received_bytes == r.sent_bytes && r.sent_bytes > 0,
                Proto::Udp => {
                    intact
                        && r.sent_packets > 0
                        && loss <= self.max_loss + 1e-12
                        && self.max_reorder.is_none_or(|m| reorder <= m + 1e-12)
                }
            },
        };
        let why = if ok {
            String::new()
        } else if !intact {
            format!(" — {} corrupt", r.corrupt)
        } else {
            match self.expect {
                FlowExpect::None => " — traffic got through where none may".into(),
                FlowExpect::Some => " — nothing arrived".into(),
                _ if self.proto == Proto::Udp && loss > self.max_loss => {
                    format!(
                        " — loss {:.1} % above {:.1} %",
                        loss * 100.0,
                        self.max_loss * 100.0
                    )
                }
                _ if self.proto == Proto::Udp => {
                    format!(" — reordering {:.1} % above the bound", reorder * 100.0)
                }
                _ => " — the stream did not arrive complete".into(),
            }
        };
        (ok, format!("{summary}{why}"))
    }
}

/// Runs a flow in a lab: the receiver in `spec.to` (listening on every address), the sender
/// in `spec.from` towards `target`; returns the sender's joined report, or why the agent
/// could not run at all (an environment error, not a failed flow).
pub fn run(
    lab: &crate::lab::Lab,
    bedlab: &std::path::Path,
    spec: &FlowSpec,
    target: std::net::IpAddr,
) -> Result<Report, String> {
    let timeout = crate::topology::format_duration(spec.timeout);
    let proto = match spec.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let prog = bedlab.display().to_string();
    static FLOWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ready = std::env::temp_dir().join(format!(
        "bedlab-flow-{}-{}.ready",
        std::process::id(),
        FLOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&ready);
    let recv: Vec<String> = vec![
        prog.clone(),
        "flow".into(),
        "recv".into(),
        "--proto".into(),
        proto.into(),
        "--port".into(),
        spec.port.to_string(),
        "--timeout".into(),
        timeout.clone(),
        "--ready-file".into(),
        ready.display().to_string(),
    ];
    let mut send: Vec<String> = vec![
        prog,
        "flow".into(),
        "send".into(),
        "--proto".into(),
        proto.into(),
        "--to".into(),
        std::net::SocketAddr::new(target, spec.port).to_string(),
        "--size".into(),
        spec.size.to_string(),
        "--rate".into(),
        format!("{}bit", spec.rate_bps),
        "--timeout".into(),
        timeout,
    ];
    if let Some(b) = spec.bytes {
        send.extend(["--bytes".into(), b.to_string()]);
    }
    if let Some(p) = spec.packets {
        send.extend(["--packets".into(), p.to_string()]);
    }
    if let Some(d) = spec.duration {
        send.extend(["--duration".into(), crate::topology::format_duration(d)]);
    }
    // The sender starts once the receiver listens (its ready file), so that no datagram
    // draws a port-unreachable from a port not yet bound: that would be traffic of its own
    // in the capture, there or not depending on timing. A receiver that never gets ready
    // (it failed, and says why) does not hold the sender back for long; the sender also
    // retries its hello until the receiver answers.
    let (received, sent) = std::thread::scope(|s| {
        let receiver = s.spawn(|| lab.exec(&spec.to, &recv));
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ready.exists() && !receiver.is_finished() && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let sent = lab.exec(&spec.from, &send);
        (receiver.join(), sent)
    });
    let _ = std::fs::remove_file(&ready);
    let sent = sent.map_err(|e| format!("the flow sender in {}: {e}", spec.from))?;
    match received {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => {
            return Err(format!(
                "the flow receiver in {} failed: {}",
                spec.to,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Ok(Err(e)) => return Err(format!("the flow receiver in {}: {e}", spec.to)),
        Err(_) => return Err("the flow receiver thread panicked".into()),
    }
    if !sent.status.success() {
        return Err(format!(
            "the flow sender in {} failed: {}",
            spec.from,
            String::from_utf8_lossy(&sent.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&sent.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("the flow sender's report {line:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(proto: &str) -> RawFlow {
        RawFlow {
            proto: proto.into(),
            from: "peer-a".into(),
            to: "server".into(),
            bytes: None,
            packets: None,
            duration: None,
            size: None,
            rate: None,
            port: None,
            expect: None,
            max_loss: None,
            max_reorder: None,
            timeout: None,
        }
    }

    #[test]
    fn defaults_and_refusals() {
        let t = FlowSpec::from_raw(raw("tcp")).unwrap();
        assert_eq!((t.bytes, t.expect), (Some(1 << 20), FlowExpect::Complete));
        let u = FlowSpec::from_raw(raw("udp")).unwrap();
        assert_eq!((u.packets, u.size, u.max_loss), (Some(1000), 1000, 0.0));
        assert!(FlowSpec::from_raw(raw("sctp")).is_err());
        let mut r = raw("tcp");
        r.to = "peer-a".into();
        assert!(FlowSpec::from_raw(r).is_err(), "a flow to itself");
        let mut r = raw("tcp");
        r.max_loss = Some(0.1);
        assert!(FlowSpec::from_raw(r).is_err(), "a loss bound on TCP");
        let mut r = raw("udp");
        r.bytes = Some(10);
        assert!(FlowSpec::from_raw(r).is_err());
        let mut r = raw("udp");
        r.packets = Some(10);
        r.duration = Some("1s".into());
        assert!(FlowSpec::from_raw(r).is_err(), "two amounts");
        let mut r = raw("udp");
        r.size = Some(10);
        assert!(FlowSpec::from_raw(r).is_err(), "smaller than the header");
        let mut r = raw("udp");
        r.max_loss = Some(1.5);
        assert!(FlowSpec::from_raw(r).is_err());
    }

    #[test]
    fn judgement_follows_the_expectation() {
        let udp = |max_loss: f64| {
            let mut r = raw("udp");
            r.max_loss = Some(max_loss);
            FlowSpec::from_raw(r).unwrap()
        };
        let report = Report {
            proto: Some(Proto::Udp),
            sent_packets: 100,
            received_packets: 98,
            received_bytes: 98_000,
            lost: 2,
            complete: true,
            ..Default::default()
        };
        assert!(udp(0.05).judge(&report).0);
        let (ok, why) = udp(0.01).judge(&report);
        assert!(!ok && why.contains("loss 2.0 % above 1.0 %"), "{why}");
        let corrupt = Report {
            corrupt: 1,
            ..report.clone()
        };
        assert!(!udp(0.05).judge(&corrupt).0, "corruption always fails");
        let tcp = FlowSpec::from_raw(raw("tcp")).unwrap();
        let short = Report {
            proto: Some(Proto::Tcp),
            sent_bytes: 1000,
            received_bytes: 900,
            complete: false,
            ..Default::default()
        };
        assert!(!tcp.judge(&short).0);
        let full = Report {
            received_bytes: 1000,
            complete: true,
            ..short.clone()
        };
        assert!(tcp.judge(&full).0);
        let mut none = raw("tcp");
        none.expect = Some("none".into());
        let none = FlowSpec::from_raw(none).unwrap();
        assert!(none.judge(&Report::default()).0);
        assert!(!none.judge(&full).0);
    }
}
