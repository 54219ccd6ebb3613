//! The negative corpus: datagrams a 6bed4 router or peer must drop, count and survive.
//!
//! Built byte by byte here (not with `sixbed4`'s codecs), so a codec bug cannot make the
//! corpus accidentally valid. Each entry is named for the report.

use std::net::Ipv6Addr;

fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 packet with an ICMPv6 message; `fix` computes the checksum.
fn icmp(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, mut msg: Vec<u8>, fix: bool) -> Vec<u8> {
    if fix && msg.len() >= 4 {
        msg[2] = 0;
        msg[3] = 0;
        let c = checksum(&src, &dst, &msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, hop]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&msg);
    p
}

fn rs_msg() -> Vec<u8> {
    vec![133, 0, 0, 0, 0, 0, 0, 0]
}

/// The named corpus, or `None`.
pub fn corpus(name: &str) -> Option<Vec<(&'static str, Vec<u8>)>> {
    if name != "negative" {
        return None;
    }
    let unspec = Ipv6Addr::UNSPECIFIED;
    let all_routers: Ipv6Addr = "ff02::2".parse().ok()?;
    let all_nodes: Ipv6Addr = "ff02::1".parse().ok()?;
    let ll: Ipv6Addr = "fe80::".parse().ok()?;
    let global: Ipv6Addr = "2001:db8::66".parse().ok()?;
    let victim: Ipv6Addr = "fc64:bed:c633:6401:c433:6401:64be:4001".parse().ok()?;
    let mut c: Vec<(&'static str, Vec<u8>)> = Vec::new();
    c.push(("one garbage byte", vec![0xff]));
    c.push(("39 bytes: shorter than an IPv6 header", vec![0x60; 39]));
    c.push(("IPv4 header instead of IPv6", {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0; 8]);
        p
    }));
    let good_rs = icmp(unspec, all_routers, 255, rs_msg(), true);
    c.push(("RS with trailing bytes past the payload length", {
        let mut p = good_rs.clone();
        p.extend_from_slice(&[0; 10]);
        p
    }));
    c.push(("RS whose payload length runs past the datagram", {
        let mut p = good_rs.clone();
        p[5] = 200;
        p
    }));
    c.push((
        "RS with hop limit 254",
        icmp(unspec, all_routers, 254, rs_msg(), true),
    ));
    c.push(("RS with a bad checksum", {
        let mut p = good_rs.clone();
        p[42] ^= 0x5a;
        p
    }));
    c.push((
        "RS with code 1",
        icmp(unspec, all_routers, 255, vec![133, 1, 0, 0, 0, 0, 0, 0], true),
    ));
    c.push((
        "RS truncated to 4 bytes of ICMPv6",
        icmp(unspec, all_routers, 255, vec![133, 0, 0, 0], true),
    ));
    c.push((
        "RS with a zero-length option",
        icmp(
            unspec,
            all_routers,
            255,
            vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            true,
        ),
    ));
    c.push((
        "RS with an option running past the end",
        icmp(
            unspec,
            all_routers,
            255,
            vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0],
            true,
        ),
    ));
    c.push((
        "RA from a global source",
        icmp(
            global,
            all_nodes,
            255,
            vec![134, 0, 0, 0, 64, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
            true,
        ),
    ));
    c.push((
        "RA with hop limit 254",
        icmp(
            ll,
            all_nodes,
            254,
            vec![134, 0, 0, 0, 64, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
            true,
        ),
    ));
    c.push(("NS with a multicast target", {
        let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&all_nodes.octets());
        icmp(global, victim, 255, m, true)
    }));
    c.push(("unsolicited NA with a spoofed source", {
        let mut m = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        m.extend_from_slice(&victim.octets());
        icmp(victim, victim, 255, m, true)
    }));
    c.push((
        "data with a spoofed inner source",
        icmp(victim, global, 64, vec![128, 0, 0, 0, 0, 1, 0, 1], true),
    ));
    c.push((
        "data with hop limit 0",
        icmp(global, victim, 0, vec![128, 0, 0, 0, 0, 1, 0, 1], true),
    ));
    c.push(("oversized datagram (1500 bytes)", {
        let body = vec![0u8; 1500 - 48];
        let mut m = vec![128, 0, 0, 0, 0, 1, 0, 1];
        m.extend_from_slice(&body);
        icmp(global, victim, 64, m, true)
    }));
    c.push(("oversized datagram (8000 bytes)", vec![0x60; 8000]));
    // Seeded garbage: the same bytes every run.
    let mut x: u32 = 0x6bed4;
    for n in 0..8 {
        let len = 40 + n * 37;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0xff) as u8
            })
            .collect();
        let mut b = bytes;
        b[0] = 0x60; // look like IPv6 to get past the first test
        c.push(("seeded garbage with an IPv6 version nibble", b));
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_stable_and_every_entry_is_invalid_for_a_strict_parser() {
        let a = corpus("negative").unwrap();
        let b = corpus("negative").unwrap();
        assert_eq!(a, b, "deterministic");
        assert!(a.len() >= 25);
        assert!(corpus("nope").is_none());
        // The valid base RS, for contrast, does have a correct checksum.
        let rs = icmp(
            Ipv6Addr::UNSPECIFIED,
            "ff02::2".parse().unwrap(),
            255,
            rs_msg(),
            true,
        );
        assert_eq!(
            checksum(&Ipv6Addr::UNSPECIFIED, &"ff02::2".parse().unwrap(), &rs[40..]),
            0
        );
        // No entry is a 48-byte RS with a valid checksum and hop limit 255 (that would be valid).
        for (name, d) in &a {
            let valid_rs = d.len() == 48
                && d[4..6] == [0, 8]
                && d[7] == 255
                && d[40] == 133
                && d[41] == 0
                && checksum(&Ipv6Addr::UNSPECIFIED, &"ff02::2".parse().unwrap(), &d[40..]) == 0;
            assert!(!valid_rs, "{name} is a valid RS");
        }
    }
}
