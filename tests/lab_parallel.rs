//! Two labs of the same topology, built at the same time from two threads, sharing one state
//! root: both come up with their own run ids and namespaces, neither's start-up garbage
//! collection touches the other (it is alive), both work, traffic in one never shows up in
//! the other although the addresses are the same, and both tear down without a trace.

mod common;

use bedlab::lab::{Lab, LabOptions};
use common::*;
use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::sync::Barrier;
use std::time::Duration;

#[test]
fn two_labs_side_by_side() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let barrier = Barrier::new(2);
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (state, barrier) = (&state, &barrier);
                let out = dir.path().join(format!("out{i}"));
                s.spawn(move || {
                    let options = LabOptions {
                        out_dir: out,
                        state_root: state.clone(),
                        capture: true,
                        run_id: None,
                    };
                    barrier.wait();
                    Lab::from_file(&topology_file("same-nat"), options).expect("build")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (a, b) = (&labs[0], &labs[1]);
    assert_ne!(a.run_id(), b.run_id());
    let inodes = |l: &Lab| {
        l.record()
            .namespaces
            .iter()
            .map(|n| n.inode)
            .collect::<BTreeSet<u64>>()
    };
    assert_eq!(inodes(a).len(), 3);
    assert!(inodes(a).is_disjoint(&inodes(b)), "the labs share a namespace");
    assert_eq!(
        bedlab::runs::list(&state).len(),
        2,
        "both run records are there (neither reaped the other)"
    );

    // Both work, concurrently: peer-a -> peer-b on their LAN, the router host -> the NAT's
    // outside address (the fabric router answers for its own addresses).
    std::thread::scope(|s| {
        for lab in [a, b] {
            s.spawn(move || {
                let nat_wan = lab
                    .topology()
                    .node("nat")
                    .unwrap()
                    .interface("wan")
                    .unwrap()
                    .address;
                for (node, to) in [("peer-a", addr_of(lab.topology(), "peer-b")), ("router", nat_wan)] {
                    let (ok, out) = ping(lab, node, to, 2, &[]);
                    assert!(ok, "{}: {node} -> {to}: {out}", lab.run_id());
                }
            });
        }
    });

    // Same addresses, separate worlds: what peer-a sends in lab a arrives in lab a only.
    let peer_b = addr_of(a.topology(), "peer-b");
    let rx: Vec<_> = labs
        .iter()
        .map(|l| udp_in(l, "peer-b", SocketAddrV4::new(peer_b, 9000)))
        .collect();
    let tx = udp_in(a, "peer-a", SocketAddrV4::new(addr_of(a.topology(), "peer-a"), 0));
    tx.send_to(b"for lab a", SocketAddrV4::new(peer_b, 9000)).unwrap();
    let mut buf = [0u8; 64];
    rx[0].set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = rx[0].recv(&mut buf).expect("lab a's peer-b receives");
    assert_eq!(&buf[..n], b"for lab a");
    rx[1].set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(
        rx[1].recv(&mut buf).is_err(),
        "lab b's peer-b received lab a's datagram"
    );
    assert_eq!(
        b.stats().unwrap().link("peer-a/eth0").unwrap().sent_packets,
        a.stats().unwrap().link("peer-a/eth0").unwrap().sent_packets - 1
    );
    drop(rx);
    drop(tx);

    let ours: BTreeSet<u64> = inodes(a).union(&inodes(b)).copied().collect();
    assert!(ours.is_subset(&netns_inodes()));
    let captures: Vec<_> = labs
        .iter()
        .map(|l| l.capture_path().unwrap().to_path_buf())
        .collect();
    assert_ne!(captures[0], captures[1]);
    std::thread::scope(|s| {
        for lab in labs {
            s.spawn(move || lab.teardown().expect("teardown"));
        }
    });
    assert!(bedlab::runs::list(&state).is_empty(), "both run records are gone");
    assert!(
        wait_until(Duration::from_secs(5), || netns_inodes().is_disjoint(&ours)),
        "namespaces of the labs left: {:?}",
        netns_inodes().intersection(&ours).collect::<Vec<_>>()
    );
    for c in captures {
        assert!(std::fs::metadata(&c).unwrap().len() > 0, "{} kept", c.display());
    }
}
