//! Every NAT kind the lab offers is proved by probing (`shared/spec/nat.md`): the RFC 5780
//! style probe of `bedlab nat-probe` must classify each preset, a few custom knob
//! combinations and both Linux kinds as what they claim, and measure the configured mapping
//! lifetime. A disagreement is a failure of the NAT, not of the test.
//!
//! Needs root (namespaces, TUN, nftables); skipped with a message otherwise. Each case runs
//! in a lab of its own; the cases of a test run side by side.

use bedlab::lab::LabOptions;
use bedlab::probe::{self, FilteringClass, HairpinClass, MappingClass, PortClass, ProbeOptions, ProbeReport};
use bedlab::topology::{
    Filtering, Host, Interface, Mapping, NatKind, NatKnobs, NatPreset, NatSpec, PortAllocation, Router,
    Segment, Topology,
};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !root() {
            eprintln!("skipped: needs root (namespaces, TUN, nftables)");
            return;
        }
    };
}

/// One NAT between a LAN and the internet, plus a peer on the LAN that the probe ignores.
fn one_nat(name: &str, nat: NatSpec) -> Topology {
    Topology::builder(name)
        .seed(7)
        .segment(Segment::new("internet", "198.51.100.0/24".parse().unwrap()))
        .segment(Segment::new("lan", "10.0.1.0/24".parse().unwrap()))
        .host(Host::new("peer").interface(Interface::new("eth0", "lan", Ipv4Addr::new(10, 0, 1, 2))))
        .router(
            Router::new("nat")
                .role("nat")
                .interface(Interface::new("lan", "lan", Ipv4Addr::new(10, 0, 1, 1)))
                .interface(Interface::new("wan", "internet", Ipv4Addr::new(198, 51, 100, 10)))
                .nat(nat),
        )
        .build()
        .expect("a valid test topology")
}

fn timeout(secs: u64) -> NatKnobs {
    NatKnobs {
        udp_timeout: Some(Duration::from_secs(secs)),
        ..NatKnobs::default()
    }
}

/// Probes every case in its own lab, all at once; returns the reports in order.
fn probe_all(cases: Vec<(String, Topology)>) -> Vec<(String, ProbeReport)> {
    let agent = Path::new(env!("CARGO_BIN_EXE_bedlab"));
    let start = Instant::now();
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(label, t)| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().expect("temporary directory");
                let lab = LabOptions {
                    out_dir: dir.path().join("out"),
                    state_root: dir.path().join("state"),
                    capture: false,
                    run_id: None,
                };
                let mut opts = ProbeOptions::new(agent, lab);
                // Twice the longest lifetime used here: the lifetime test brackets it.
                opts.lifetime_max = Duration::from_secs(10);
                opts.resolution = Duration::from_millis(100);
                opts.wait = Duration::from_millis(400);
                let report = probe::probe(&t, "nat", &opts)
                    .unwrap_or_else(|e| panic!("{label}: the probe could not run: {e}"));
                (label, report)
            })
        })
        .collect();
    let reports: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("probe thread"))
        .collect();
    eprintln!("probed {} NATs in {:.1?}", reports.len(), start.elapsed());
    reports
}

/// The configured lifetime, measured within half a second plus the probe's bracket.
fn assert_lifetime(label: &str, r: &ProbeReport, configured_s: f64) {
    let l = r
        .lifetime
        .as_ref()
        .unwrap_or_else(|| panic!("{label}: lifetime not measured\n{r}"));
    let (alive, expired) = match (l.alive_s, l.expired_s) {
        (Some(a), Some(e)) => (a, e),
        _ => panic!("{label}: no lifetime bracket: {}\n{r}", l.summary()),
    };
    assert!(!l.inconsistent, "{label}: inconsistent lifetime trials\n{r}");
    let estimate = (alive + expired) / 2.0;
    let tolerance = 0.5 + (expired - alive);
    assert!(
        (estimate - configured_s).abs() <= tolerance,
        "{label}: lifetime measured {} but configured {configured_s} s\n{r}",
        l.summary()
    );
    assert!(
        expired - alive <= 0.1 + 1e-9,
        "{label}: bracket wider than the resolution: {}",
        l.summary()
    );
}

#[test]
fn presets_classify_as_their_names() {
    need_root!();
    let cases: Vec<(String, Topology)> = NatPreset::ALL
        .iter()
        .zip([3u64, 4, 5, 3])
        .map(|(&p, secs)| {
            let spec = NatSpec::preset("wan", p).knobs(timeout(secs));
            (p.as_str().to_string(), one_nat(&format!("probe-{p}"), spec))
        })
        .collect();
    let timeouts = [3.0, 4.0, 5.0, 3.0];
    for ((label, r), secs) in probe_all(cases).iter().zip(timeouts) {
        eprintln!("{r}");
        assert_eq!(r.nat_type.as_deref(), Some(label.as_str()), "{label}\n{r}");
        assert!(r.mismatches.is_empty(), "{label}: {:?}\n{r}", r.mismatches);
        let expected_ports = if label == "symmetric" {
            PortClass::Random
        } else {
            PortClass::Preserve
        };
        assert_eq!(r.port_allocation.allocation, expected_ports, "{label}\n{r}");
        // Hairpinning is off in every preset; the symmetric NAT's cannot be decided.
        let hp = if label == "symmetric" {
            HairpinClass::Unknown
        } else {
            HairpinClass::No
        };
        assert_eq!(r.hairpinning.behaviour, hp, "{label}\n{r}");
        assert_lifetime(label, r, secs);
    }
}

#[test]
fn custom_knobs_classify_as_configured() {
    need_root!();
    let knobs = |k: NatKnobs| NatSpec::new("wan", NatKind::Userspace { preset: None }).knobs(k);
    let cases = vec![
        (
            "adm-adf".to_string(),
            one_nat(
                "probe-adm-adf",
                knobs(NatKnobs {
                    mapping: Some(Mapping::Adm),
                    filtering: Some(Filtering::Adf),
                    ..timeout(4)
                }),
            ),
        ),
        (
            "eim-eif-sequential-hairpin".to_string(),
            one_nat(
                "probe-eim-eif-seq",
                knobs(NatKnobs {
                    mapping: Some(Mapping::Eim),
                    filtering: Some(Filtering::Eif),
                    port_allocation: Some(PortAllocation::Sequential),
                    hairpinning: Some(true),
                    ..timeout(3)
                }),
            ),
        ),
        (
            "port-restricted-hairpin".to_string(),
            one_nat(
                "probe-prc-hairpin",
                NatSpec::preset("wan", NatPreset::PortRestrictedCone).knobs(NatKnobs {
                    hairpinning: Some(true),
                    ..timeout(5)
                }),
            ),
        ),
        (
            "apdm-eif-random-parity".to_string(),
            one_nat(
                "probe-apdm-eif",
                knobs(NatKnobs {
                    mapping: Some(Mapping::Apdm),
                    filtering: Some(Filtering::Eif),
                    port_allocation: Some(PortAllocation::Random),
                    port_parity: Some(true),
                    ..timeout(4)
                }),
            ),
        ),
    ];
    let reports = probe_all(cases);
    for (label, r) in &reports {
        eprintln!("{r}");
        assert!(r.mismatches.is_empty(), "{label}: {:?}\n{r}", r.mismatches);
    }
    let by = |l: &str| &reports.iter().find(|(x, _)| x == l).expect("a case").1;

    let r = by("adm-adf");
    assert_eq!(
        (r.mapping.behaviour, r.filtering.behaviour),
        (MappingClass::Adm, FilteringClass::Adf),
        "{r}"
    );
    assert_eq!(r.nat_type, None, "ADM with ADF has no RFC 3489 name");
    assert_lifetime("adm-adf", r, 4.0);

    let r = by("eim-eif-sequential-hairpin");
    assert_eq!(r.nat_type.as_deref(), Some("full-cone"), "{r}");
    assert_eq!(r.port_allocation.allocation, PortClass::Sequential, "{r}");
    assert_eq!(r.hairpinning.behaviour, HairpinClass::Yes, "{r}");
    assert_eq!(
        r.hairpinning.external_source,
        Some(true),
        "a hairpinned packet must carry the sender's external address (RFC 4787 REQ-9)\n{r}"
    );
    assert_lifetime("eim-eif-sequential-hairpin", r, 3.0);

    let r = by("port-restricted-hairpin");
    assert_eq!(r.nat_type.as_deref(), Some("port-restricted-cone"), "{r}");
    assert_eq!(r.hairpinning.behaviour, HairpinClass::Yes, "{r}");
    assert_eq!(r.hairpinning.external_source, Some(true), "{r}");
    assert_lifetime("port-restricted-hairpin", r, 5.0);

    let r = by("apdm-eif-random-parity");
    assert_eq!(
        (
            r.mapping.behaviour,
            r.filtering.behaviour,
            r.port_allocation.allocation
        ),
        (MappingClass::Apdm, FilteringClass::Eif, PortClass::Random),
        "{r}"
    );
    assert!(r.port_allocation.parity_preserved, "port_parity = true\n{r}");
    // Hairpinning is off, and EIF makes that decidable even under APDM.
    assert_eq!(r.hairpinning.behaviour, HairpinClass::No, "{r}");
    assert_lifetime("apdm-eif-random-parity", r, 4.0);
}

#[test]
fn linux_nats_classify_as_the_kernel_behaves() {
    need_root!();
    let linux = |kind, secs, firewall: Option<bool>| {
        NatSpec::new("wan", kind).knobs(NatKnobs {
            firewall,
            ..timeout(secs)
        })
    };
    let cases = vec![
        (
            "linux-masquerade".to_string(),
            one_nat("probe-lm", linux(NatKind::LinuxMasquerade, 4, None)),
        ),
        (
            "linux-masquerade-random".to_string(),
            one_nat("probe-lmr", linux(NatKind::LinuxMasqueradeRandom, 3, None)),
        ),
        (
            "linux-masquerade-no-firewall".to_string(),
            one_nat("probe-lm-nofw", linux(NatKind::LinuxMasquerade, 5, Some(false))),
        ),
    ];
    let reports = probe_all(cases);
    for (label, r) in &reports {
        eprintln!("{r}");
        assert!(r.mismatches.is_empty(), "{label}: {:?}\n{r}", r.mismatches);
    }
    let by = |l: &str| &reports.iter().find(|(x, _)| x == l).expect("a case").1;

    let r = by("linux-masquerade");
    assert_eq!(
        (
            r.mapping.behaviour,
            r.filtering.behaviour,
            r.port_allocation.allocation
        ),
        (MappingClass::Eim, FilteringClass::Apdf, PortClass::Preserve),
        "{r}"
    );
    assert_eq!(r.nat_type.as_deref(), Some("port-restricted-cone"));
    assert_eq!(r.hairpinning.behaviour, HairpinClass::No, "{r}");
    assert_lifetime("linux-masquerade", r, 4.0);

    let r = by("linux-masquerade-random");
    assert_eq!(
        (
            r.mapping.behaviour,
            r.filtering.behaviour,
            r.port_allocation.allocation
        ),
        (MappingClass::Apdm, FilteringClass::Apdf, PortClass::Random),
        "{r}"
    );
    assert_eq!(r.nat_type.as_deref(), Some("symmetric"));
    assert_lifetime("linux-masquerade-random", r, 3.0);

    // Without the firewall the probe's sequence (fresh sockets per test) still sees a port-
    // restricted cone; what the firewall prevents is shown in tests/nat_linux.rs.
    let r = by("linux-masquerade-no-firewall");
    assert_eq!(r.nat_type.as_deref(), Some("port-restricted-cone"), "{r}");
    assert_lifetime("linux-masquerade-no-firewall", r, 5.0);
}

/// `bedlab nat-probe`: JSON on stdout and exit 0 when the probe ran; exit 1 when it could not.
#[test]
fn cli_prints_json_and_exits_1_when_it_cannot_probe() {
    need_root!();
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("t.toml");
    let spec = NatSpec::preset("wan", NatPreset::RestrictedCone);
    std::fs::write(&file, one_nat("probe-cli", spec).to_toml()).expect("writing the topology");
    let bedlab = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bedlab"))
            .args(args)
            .arg("--state-root")
            .arg(dir.path().join("state"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .expect("running bedlab")
    };
    let file = file.to_str().expect("a UTF-8 path");
    let out = bedlab(&[
        "nat-probe",
        file,
        "nat",
        "--json",
        "--lifetime-max",
        "0",
        "--no-capture",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["nat"], "nat");
    assert_eq!(v["mapping"]["behaviour"], "eim");
    assert_eq!(v["filtering"]["behaviour"], "adf");
    assert_eq!(v["nat_type"], "restricted-cone");
    assert_eq!(v["lifetime"], serde_json::Value::Null);
    assert_eq!(v["mismatches"], serde_json::json!([]));

    let out = bedlab(&["nat-probe", file, "peer", "--lifetime-max", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a host, not a NAT"));
    let out = bedlab(&["nat-probe", "/nonexistent.toml", "nat"]);
    assert_eq!(out.status.code(), Some(1));
}
