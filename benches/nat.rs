//! NAT engine benchmarks: translations per second on an existing mapping, lookup cost with
//! 10 k and 1 M live mappings, and memory per mapping (printed, measured two ways: the
//! engine's own capacity-based count, and a counting global allocator).
//!
//! `cargo bench --bench nat` (add `-- --quick` style criterion flags to shorten).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bedlab::nat::{Config, Nat, Verdict};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Counts live heap bytes, so that memory per mapping is measured, not estimated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        LIVE.fetch_add(new, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 3478);

fn checksum(data: &[u8], mut acc: u32) -> u16 {
    for c in data.chunks(2) {
        acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A UDP datagram with a 64-byte payload and valid checksums.
fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let len = 8 + 64;
    let mut p = vec![0u8; 20 + len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&(len as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let pseudo = checksum(&p[12..20], 17 + len as u32);
    let c = checksum(&p[20..], u32::from(!pseudo));
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

fn src_of(p: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        u16::from_be_bytes([p[20], p[21]]),
    )
}

/// The i-th inside endpoint: 16 ports on each of up to 2^20 hosts in 10.0.0.0/8.
fn inside(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i / 16), 10000 + (i % 16) as u16)
}

fn config() -> Config {
    Config {
        inside_net: (Ipv4Addr::new(10, 0, 0, 0), 8),
        external_addrs: (1..=32).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect(),
        log_drops: false,
        max_pending_events: 0,
        ..Config::default()
    }
}

/// A NAT with `n` live UDP mappings (EIM/APDF, one remote each), and the external endpoint
/// of each. Prints memory per mapping.
fn populated(n: u32, now: Instant) -> (Nat, Vec<SocketAddrV4>) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut nat = Nat::new(config(), now).expect("valid config");
    let mut buf = udp(inside(0), SERVER);
    let mut ext = Vec::with_capacity(n as usize);
    let build = Instant::now();
    for i in 0..n {
        let template = udp(inside(i), SERVER);
        buf.copy_from_slice(&template);
        assert_eq!(nat.outbound(now, &mut buf), Verdict::Forward);
        ext.push(src_of(&buf));
    }
    let build = build.elapsed();
    let measured = LIVE.load(Ordering::Relaxed)
        - before
        - ext.capacity() * std::mem::size_of::<SocketAddrV4>()
        - buf.capacity();
    println!(
        "nat/{n} mappings: {:.1} B/mapping (engine count), {:.1} B/mapping (allocator), created in {:?} ({:.0} ns each)",
        nat.heap_bytes() as f64 / f64::from(n),
        measured as f64 / f64::from(n),
        build,
        build.as_nanos() as f64 / f64::from(n),
    );
    (nat, ext)
}

/// Outbound + inbound on one existing mapping: two translations per iteration.
fn translate(c: &mut Criterion) {
    let now = Instant::now();
    let mut nat = Nat::new(config(), now).expect("valid config");
    let out_tpl = udp(inside(0), SERVER);
    let mut out = out_tpl.clone();
    assert_eq!(nat.outbound(now, &mut out), Verdict::Forward);
    let in_tpl = udp(SERVER, src_of(&out));
    let mut inb = in_tpl.clone();
    let mut g = c.benchmark_group("nat/translate");
    g.throughput(Throughput::Elements(2));
    g.bench_function("udp_out_and_in_existing_mapping", |b| {
        b.iter(|| {
            out.copy_from_slice(&out_tpl);
            inb.copy_from_slice(&in_tpl);
            let v1 = nat.outbound(now, black_box(&mut out));
            let v2 = nat.inbound(now, black_box(&mut inb));
            black_box((v1, v2))
        })
    });
    g.finish();
}

/// Inbound (port-table lookup + filter) and outbound (hash lookup + refresh) translations
/// spread over random live mappings, with 10 k and 1 M of them.
fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat/lookup");
    g.throughput(Throughput::Elements(1));
    for n in [10_000u32, 1_000_000] {
        let now = Instant::now();
        let (mut nat, ext) = populated(n, now);
        // A fixed pseudo-random sample of mappings, so that caches do not flatter 1 M.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let sample: Vec<u32> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % u64::from(n)) as u32
            })
            .collect();
        let inbound: Vec<Vec<u8>> = sample.iter().map(|&i| udp(SERVER, ext[i as usize])).collect();
        let outbound: Vec<Vec<u8>> = sample.iter().map(|&i| udp(inside(i), SERVER)).collect();
        let mut buf = inbound[0].clone();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("inbound", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 65535;
                buf.copy_from_slice(&inbound[k]);
                let v = nat.inbound(now, black_box(&mut buf));
                debug_assert_eq!(v, Verdict::Forward);
                v
            })
        });
        g.bench_with_input(BenchmarkId::new("outbound", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 65535;
                buf.copy_from_slice(&outbound[k]);
                let v = nat.outbound(now, black_box(&mut buf));
                debug_assert_eq!(v, Verdict::Forward);
                v
            })
        });
        assert_eq!(nat.len(), n as usize);
    }
    g.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = short(); targets = translate, lookup }
criterion_main!(benches);
