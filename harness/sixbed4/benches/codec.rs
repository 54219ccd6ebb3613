//! Per-packet cost of the sans-IO cores on 1280-byte packets (the tunnel MTU):
//! the peer encapsulating (TUN → UDP), the peer decapsulating (UDP → TUN), and the router's
//! relay decision (UDP → UDP). Throughput is reported in packets (elements) per second on
//! one core.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sixbed4::addr;
use sixbed4::io::Output;
use sixbed4::peer::{Peer, PeerConfig};
use sixbed4::profile::Profile;
use sixbed4::router::{Router, RouterConfig};
use sixbed4::wire::icmpv6;
use sixbed4::wire::NdRepr;
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Instant;

const ROUTER: &str = "198.51.100.1:25790";
const ME: &str = "203.0.113.10:40000";
const OTHER: &str = "203.0.113.20:40002";

fn ep(s: &str) -> SocketAddrV4 {
    s.parse().expect("endpoint")
}

fn packet(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    icmpv6::build(src, dst, 64, 128, 0, &vec![0xA5; 1280 - 44])
}

/// A configured peer with a confirmed direct path to OTHER.
fn direct_peer() -> (Peer, Ipv6Addr, Ipv6Addr) {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::new(Profile::Current, ep(ROUTER))).expect("router");
    let mut peer = Peer::new(PeerConfig::new(Profile::Current, ep(ROUTER)), t0);
    let mut out = vec![];
    peer.handle_timeout(t0, &mut out);
    let rs = match &out[0] {
        Output::Udp { payload, .. } => payload.clone(),
        _ => unreachable!(),
    };
    out.clear();
    router.handle_udp(t0, ep(ME), &rs, &mut out);
    let ra = match &out[0] {
        Output::Udp { payload, .. } => payload.clone(),
        _ => unreachable!(),
    };
    out.clear();
    peer.handle_udp(t0, ep(ROUTER), &ra, &mut out);
    let me = peer.lease().expect("lease").address;
    let other = addr::encode(Profile::Current, router.config().prefix, ep(OTHER), 1).expect("addr");
    peer.handle_tun(t0, &packet(me, other), &mut out);
    let na = NdRepr::NeighborAdvert {
        flags: 0x60,
        target: other,
        target_lla: None,
    }
    .emit(other, me);
    peer.handle_udp(t0, ep(OTHER), &na, &mut out);
    (peer, me, other)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("1280-byte packet");
    g.throughput(Throughput::Elements(1));

    let mut router = Router::new(RouterConfig::new(Profile::Current, ep(ROUTER))).expect("router");
    let a = addr::encode(Profile::Current, router.config().prefix, ep(ME), 1).expect("a");
    let b = addr::encode(Profile::Current, router.config().prefix, ep(OTHER), 1).expect("b");
    let relayed = packet(a, b);
    let mut out = Vec::with_capacity(4);
    let now = Instant::now();
    g.bench_function("router relay decision", |bench| {
        bench.iter(|| {
            router.handle_udp(now, ep(ME), black_box(&relayed), &mut out);
            black_box(out.pop());
        })
    });

    let (mut peer, me, other) = direct_peer();
    let outbound = packet(me, other);
    g.bench_function("peer encapsulate (direct)", |bench| {
        bench.iter(|| {
            peer.handle_tun(now, black_box(&outbound), &mut out);
            black_box(out.pop());
        })
    });
    let inbound = packet(other, me);
    g.bench_function("peer decapsulate (direct)", |bench| {
        bench.iter(|| {
            peer.handle_udp(now, ep(OTHER), black_box(&inbound), &mut out);
            black_box(out.pop());
        })
    });
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
