//! TCP (RFC 5382 basics): established versus transitory timeouts.

use std::time::Duration;

use super::*;
use crate::nat::{Config, DropReason, Proto};

const MS: Duration = Duration::from_millis(1);
const EST: Duration = Duration::from_secs(7440);
const TRANS: Duration = Duration::from_secs(240);

fn out_tcp(lab: &mut Lab, from: SocketAddrV4, to: SocketAddrV4, flags: u8) -> SocketAddrV4 {
    let (v, p) = lab.out(tcp(from, to, flags));
    assert_eq!(v, Verdict::Forward);
    src_of(&p)
}

fn in_tcp(lab: &mut Lab, from: SocketAddrV4, to: SocketAddrV4, flags: u8) -> Result<SocketAddrV4, Verdict> {
    let (v, p) = lab.inb(tcp(from, to, flags));
    if v == Verdict::Forward {
        Ok(dst_of(&p))
    } else {
        Err(v)
    }
}

fn established(lab: &Lab, e: SocketAddrV4) -> bool {
    lab.nat
        .mapping_at(lab.now, Proto::Tcp, e)
        .is_some_and(|m| m.tcp_established)
}

const C: SocketAddrV4 = SocketAddrV4::new(C1, 40000);
const S: SocketAddrV4 = SocketAddrV4::new(S1, 443);

#[test]
fn syn_only_is_transitory() {
    let mut lab = Lab::new(Config::default());
    let e = out_tcp(&mut lab, C, S, SYN);
    assert!(!established(&lab, e));
    lab.at(TRANS - MS);
    assert!(lab.nat.mapping_at(lab.now, Proto::Tcp, e).is_some());
    lab.at(TRANS);
    assert_eq!(
        in_tcp(&mut lab, S, e, SYN | ACK),
        Err(Verdict::Drop(DropReason::NoMapping))
    );
}

#[test]
fn handshake_makes_it_established_and_close_makes_it_transitory() {
    let mut lab = Lab::new(Config::default());
    let e = out_tcp(&mut lab, C, S, SYN);
    assert_eq!(in_tcp(&mut lab, S, e, SYN | ACK), Ok(C));
    assert!(established(&lab, e));
    out_tcp(&mut lab, C, S, ACK);
    // Idle for almost the established timeout: still there.
    lab.advance(EST - MS);
    assert_eq!(in_tcp(&mut lab, S, e, ACK), Ok(C), "inbound TCP refreshes");
    lab.advance(EST - MS);
    lab.nat.handle_timeout(lab.now);
    assert_eq!(lab.nat.len(), 1);
    // Close: FIN both ways -> transitory from the last packet.
    out_tcp(&mut lab, C, S, FIN | ACK);
    assert!(established(&lab, e));
    assert_eq!(in_tcp(&mut lab, S, e, FIN | ACK), Ok(C));
    assert!(!established(&lab, e));
    let closed_at = lab.now;
    // The timer must not sleep until the old established expiry (it may wake earlier for a
    // stale entry).
    assert!(lab.nat.poll_timeout().is_some_and(|due| due <= closed_at + TRANS));
    lab.now = closed_at + TRANS - MS;
    lab.nat.handle_timeout(lab.now);
    assert_eq!(lab.nat.len(), 1);
    lab.now = closed_at + TRANS;
    lab.nat.handle_timeout(lab.now);
    assert_eq!(lab.nat.len(), 0);
}

#[test]
fn rst_makes_it_transitory_and_a_new_syn_reopens() {
    let mut lab = Lab::new(Config::default());
    let e = out_tcp(&mut lab, C, S, SYN);
    in_tcp(&mut lab, S, e, SYN | ACK).expect("admitted");
    assert!(established(&lab, e));
    in_tcp(&mut lab, S, e, RST).expect("admitted");
    assert!(!established(&lab, e));
    let t = lab.now;
    assert_eq!(lab.nat.poll_timeout(), Some(t + TRANS));
    // Reopen on the same mapping.
    lab.advance(Duration::from_secs(10));
    assert_eq!(out_tcp(&mut lab, C, S, SYN), e);
    in_tcp(&mut lab, S, e, SYN | ACK).expect("admitted");
    assert!(established(&lab, e));
}

#[test]
fn simultaneous_open_and_unsolicited_syn() {
    // Hole punching: both sides send SYN; the inbound SYN passes the APDF filter because the
    // inside sent to that endpoint.
    let mut lab = Lab::new(Config::default());
    let e = out_tcp(&mut lab, C, S, SYN);
    assert_eq!(in_tcp(&mut lab, S, e, SYN), Ok(C));
    assert!(established(&lab, e));
    // Unsolicited SYN from elsewhere: filtered; to an unmapped port: no mapping.
    assert_eq!(
        in_tcp(&mut lab, ep(S2, 443), e, SYN),
        Err(Verdict::Drop(DropReason::Filtered))
    );
    assert_eq!(
        in_tcp(&mut lab, S, ep(EXT, 1234), SYN),
        Err(Verdict::Drop(DropReason::NoMapping))
    );
}

#[test]
fn mid_stream_pickup_becomes_established() {
    let mut lab = Lab::new(Config::default());
    let e = out_tcp(&mut lab, C, S, ACK);
    assert!(!established(&lab, e));
    in_tcp(&mut lab, S, e, ACK).expect("admitted");
    assert!(established(&lab, e));
}
