//! Hairpinning (RFC 4787 §6): inside hosts reaching each other through external endpoints.

use super::*;
use crate::nat::{Config, DropReason, Proto};

const A: SocketAddrV4 = SocketAddrV4::new(C1, 4000);
const B: SocketAddrV4 = SocketAddrV4::new(C2, 5000);

#[test]
fn hairpin_translates_both_addresses() {
    let mut lab = Lab::new(Config::full_cone());
    let ea = lab.udp_out(A, ep(S1, P1));
    // B sends to A's external endpoint: delivered to A, from B's external endpoint.
    let (v, p) = lab.out(udp(B, ea));
    assert_eq!(v, Verdict::Hairpin);
    let eb = src_of(&p);
    assert_eq!(*eb.ip(), EXT);
    assert_eq!(dst_of(&p), A);
    assert_eq!(
        lab.nat.mapping_at(lab.now, Proto::Udp, eb).map(|m| m.inside),
        Some(B)
    );
    // And A answers to what it saw: reaches B.
    let (v, p) = lab.out(udp(A, eb));
    assert_eq!(v, Verdict::Hairpin);
    assert_eq!(src_of(&p), ea);
    assert_eq!(dst_of(&p), B);
    assert_eq!(lab.nat.stats().hairpinned, 2);
    // TCP too.
    let (v, _) = lab.out(tcp(A, ep(S1, 80), SYN));
    assert_eq!(v, Verdict::Forward);
    let (v, p) = lab.out(tcp(B, ep(EXT, 4000), SYN));
    assert_eq!(v, Verdict::Hairpin);
    assert_eq!(dst_of(&p), ep(C1, 4000));
    // To an external port nobody owns.
    let (v, _) = lab.out(udp(B, ep(EXT, 9)));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
}

#[test]
fn hairpin_respects_filtering() {
    // Port-restricted: B gets through only after A sent to B's external endpoint.
    let mut lab = Lab::new(Config::default());
    let ea = lab.udp_out(A, ep(S1, P1));
    let eb = lab.udp_out(B, ep(S1, P1));
    let before = udp(B, ea);
    let (v, p) = lab.out(before.clone());
    assert_eq!(v, Verdict::Drop(DropReason::Filtered));
    assert_eq!(p, before, "a dropped packet is left untouched");
    let (v, p) = lab.out(udp(A, eb));
    // B's attempt went out through B's mapping towards `ea`, so B's filter admits A now, and
    // A's packet opens A's filter towards `eb` (hole punching through the hairpin).
    assert_eq!(v, Verdict::Hairpin);
    assert_eq!(dst_of(&p), B);
    let (v, p) = lab.out(udp(B, ea));
    assert_eq!(v, Verdict::Hairpin);
    assert_eq!(src_of(&p), eb);
    assert_eq!(dst_of(&p), A);
}

#[test]
fn hairpin_off_drops_and_counts() {
    let mut lab = Lab::new(Config {
        hairpinning: false,
        ..Config::full_cone()
    });
    let ea = lab.udp_out(A, ep(S1, P1));
    let (v, _) = lab.out(udp(B, ea));
    assert_eq!(v, Verdict::Drop(DropReason::HairpinOff));
    assert_eq!(lab.nat.stats().drops.hairpin_off, 1);
    assert_eq!(
        lab.nat.len(),
        1,
        "no mapping is made for a hairpin that is refused"
    );
}
