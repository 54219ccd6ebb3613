//! `ip_payload` through every link layer it knows.

use super::{ipv4_udp, ipv6_packet};
use crate::capture::linktype;
use crate::capture::reader::ip_payload;

fn eth(ethertype: u16, tags: &[u16], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    for &tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0, 42]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn raw_ip_linktypes() {
    let v4 = ipv4_udp([1, 2, 3, 4], [5, 6, 7, 8], b"abc");
    let v6 = ipv6_packet([1; 16], [2; 16], b"abc");
    assert_eq!(ip_payload(linktype::RAW, &v4), Some(&v4[..]));
    assert_eq!(ip_payload(linktype::RAW, &v6), Some(&v6[..]));
    assert_eq!(ip_payload(linktype::IPV4, &v4), Some(&v4[..]));
    assert_eq!(ip_payload(linktype::IPV4, &v6), None);
    assert_eq!(ip_payload(linktype::IPV6, &v6), Some(&v6[..]));
    assert_eq!(ip_payload(linktype::IPV6, &v4), None);
    assert_eq!(ip_payload(linktype::RAW, &[]), None);
    assert_eq!(ip_payload(linktype::RAW, &[0x20, 0, 0]), None);
    assert_eq!(ip_payload(9999, &v4), None);
}

#[test]
fn ethernet_with_and_without_vlan_tags_and_padding() {
    let v4 = ipv4_udp([1, 2, 3, 4], [5, 6, 7, 8], b"");
    let mut padded = v4.clone();
    padded.extend_from_slice(&[0; 18]); // padding up to the 60-byte minimum frame
    assert_eq!(
        ip_payload(linktype::ETHERNET, &eth(0x0800, &[], &padded)),
        Some(&v4[..])
    );
    let v6 = ipv6_packet([1; 16], [2; 16], b"hi");
    assert_eq!(
        ip_payload(linktype::ETHERNET, &eth(0x86DD, &[0x8100], &v6)),
        Some(&v6[..])
    );
    assert_eq!(
        ip_payload(linktype::ETHERNET, &eth(0x86DD, &[0x88A8, 0x8100], &v6)),
        Some(&v6[..])
    );
    // ARP, and frames cut inside the header or the tags.
    assert_eq!(ip_payload(linktype::ETHERNET, &eth(0x0806, &[], &[0; 28])), None);
    assert_eq!(ip_payload(linktype::ETHERNET, &eth(0x86DD, &[], &v6)[..13]), None);
    assert_eq!(
        ip_payload(linktype::ETHERNET, &eth(0x86DD, &[0x8100], &v6)[..16]),
        None
    );
}

#[test]
fn linux_cooked_headers() {
    let v6 = ipv6_packet([1; 16], [2; 16], b"hi");
    let mut sll = vec![0, 4, 0xff, 0xfe, 0, 0];
    sll.extend_from_slice(&[0; 8]);
    sll.extend_from_slice(&0x86DDu16.to_be_bytes());
    sll.extend_from_slice(&v6);
    assert_eq!(ip_payload(linktype::LINUX_SLL, &sll), Some(&v6[..]));

    let mut sll2 = 0x86DDu16.to_be_bytes().to_vec();
    sll2.extend_from_slice(&[0, 0, 0, 0, 0, 7, 0xff, 0xfe, 4, 0]);
    sll2.extend_from_slice(&[0; 8]);
    sll2.extend_from_slice(&v6);
    assert_eq!(ip_payload(linktype::LINUX_SLL2, &sll2), Some(&v6[..]));
    assert_eq!(ip_payload(linktype::LINUX_SLL2, &sll2[..19]), None);
}

#[test]
fn loopback_headers() {
    let v4 = ipv4_udp([127, 0, 0, 1], [127, 0, 0, 1], b"x");
    let v6 = ipv6_packet([0; 16], [0; 16], b"x");
    for (lt, fam) in [
        (linktype::NULL, 2u32.to_le_bytes()),
        (linktype::NULL, 2u32.to_be_bytes()),
        (linktype::NULL, 30u32.to_le_bytes()),
        (linktype::LOOP, 24u32.to_be_bytes()),
    ] {
        let pkt = if fam.contains(&2) { &v4 } else { &v6 };
        let mut f = fam.to_vec();
        f.extend_from_slice(pkt);
        assert_eq!(ip_payload(lt, &f), Some(&pkt[..]), "{lt} {fam:?}");
    }
    let mut f = 7u32.to_le_bytes().to_vec();
    f.extend_from_slice(&v4);
    assert_eq!(ip_payload(linktype::NULL, &f), None);
}

#[test]
fn ipv6_trailing_bytes_are_cut_but_a_short_packet_is_kept() {
    let v6 = ipv6_packet([1; 16], [2; 16], b"payload");
    let mut longer = v6.clone();
    longer.extend_from_slice(&[0xaa; 4]);
    assert_eq!(ip_payload(linktype::RAW, &longer), Some(&v6[..]));
    assert_eq!(ip_payload(linktype::RAW, &v6[..44]), Some(&v6[..44]));
}
