//! Model → TOML, in the layout of the shipped files: top-level keys, then `[[segment]]`,
//! `[[host]]` and `[[router]]` tables with their interfaces, impairments, routes and NAT.
//!
//! Values equal to their defaults are left out (a perfect link writes no impairment table),
//! so the output stays readable; the parser fills the same defaults back in, which is what
//! makes `parse(to_toml(t)) == t`. Strings and floats go through the `toml` crate's own value
//! formatting so that quoting and escaping are always valid TOML.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::nat::NatSpec;
use super::values::{format_duration, format_rate};
use super::{Impairment, Interface, Topology, DEFAULT_HOST_ROLE, DEFAULT_MTU, DEFAULT_ROUTER_ROLE};

/// A TOML string literal.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML float literal (always with a `.` or exponent, so it reads back as a float).
fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

fn addresses(list: &[Ipv4Addr]) -> String {
    let items: Vec<String> = list.iter().map(|a| string(&a.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// `writeln!` into a `String` cannot fail; this keeps the callers free of `Result`s.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, $($arg)*);
    };
}

pub(crate) fn to_toml(t: &Topology) -> String {
    let mut out = String::new();
    line!(out, "name = {}", string(&t.name));
    if !t.description.is_empty() {
        line!(out, "description = {}", string(&t.description));
    }
    line!(out, "seed = {}", t.seed);
    for segment in &t.segments {
        line!(out, "\n[[segment]]");
        line!(out, "name = {}", string(&segment.name));
        line!(out, "subnet = {}", string(&segment.subnet.to_string()));
        if let Some(subnet6) = segment.subnet6 {
            line!(out, "subnet6 = {}", string(&subnet6.to_string()));
        }
        if !segment.description.is_empty() {
            line!(out, "description = {}", string(&segment.description));
        }
    }
    for host in &t.hosts {
        line!(out, "\n[[host]]");
        line!(out, "name = {}", string(&host.name));
        if host.role != DEFAULT_HOST_ROLE {
            line!(out, "role = {}", string(&host.role));
        }
        for iface in &host.interfaces {
            interface(&mut out, "host", iface);
        }
    }
    for router in &t.routers {
        line!(out, "\n[[router]]");
        line!(out, "name = {}", string(&router.name));
        if router.role != DEFAULT_ROUTER_ROLE {
            line!(out, "role = {}", string(&router.role));
        }
        for iface in &router.interfaces {
            interface(&mut out, "router", iface);
        }
        for route in &router.routes {
            line!(out, "[[router.route]]");
            line!(out, "prefix = {}", string(&route.prefix.to_string()));
            line!(out, "via = {}", string(&route.via.to_string()));
        }
        if let Some(nat) = &router.nat {
            self::nat(&mut out, nat);
        }
    }
    out
}

fn interface(out: &mut String, table: &str, iface: &Interface) {
    line!(out, "[[{table}.interface]]");
    line!(out, "name = {}", string(&iface.name));
    line!(out, "segment = {}", string(&iface.segment));
    line!(out, "address = {}", string(&iface.address.to_string()));
    if let Some(gateway) = iface.gateway {
        line!(out, "gateway = {}", string(&gateway.to_string()));
    }
    if let Some(a) = iface.address6 {
        line!(out, "address6 = {}", string(&a.to_string()));
    }
    if let Some(g) = iface.gateway6 {
        line!(out, "gateway6 = {}", string(&g.to_string()));
    }
    if iface.mtu != DEFAULT_MTU {
        line!(out, "mtu = {}", iface.mtu);
    }
    impairment(out, &format!("{table}.interface.egress"), &iface.egress);
    impairment(out, &format!("{table}.interface.ingress"), &iface.ingress);
}

fn impairment(out: &mut String, table: &str, imp: &Impairment) {
    if imp.is_none() {
        return;
    }
    let base = Impairment::default();
    line!(out, "[{table}]");
    if imp.delay != base.delay {
        line!(out, "delay = {}", string(&format_duration(imp.delay)));
    }
    if imp.jitter != base.jitter {
        line!(out, "jitter = {}", string(&format_duration(imp.jitter)));
    }
    for (key, value, default) in [
        ("loss", imp.loss, base.loss),
        ("loss_burst", imp.loss_burst, base.loss_burst),
        ("duplicate", imp.duplicate, base.duplicate),
        ("reorder", imp.reorder, base.reorder),
    ] {
        if value != default {
            line!(out, "{key} = {}", float(value));
        }
    }
    if let Some(gap) = imp.reorder_gap {
        line!(out, "reorder_gap = {}", string(&format_duration(gap)));
    }
    if let Some(rate) = imp.rate_bps {
        line!(out, "rate = {}", string(&format_rate(rate)));
    }
    if imp.queue_limit != base.queue_limit {
        line!(out, "queue_limit = {}", imp.queue_limit);
    }
}

fn nat(out: &mut String, nat: &NatSpec) {
    let k = &nat.knobs;
    line!(out, "[router.nat]");
    line!(out, "outside = {}", string(&nat.outside));
    line!(out, "type = {}", string(nat.kind.as_str()));
    if let Some(v) = k.mapping {
        line!(out, "mapping = {}", string(v.as_str()));
    }
    if let Some(v) = k.filtering {
        line!(out, "filtering = {}", string(v.as_str()));
    }
    if let Some(v) = k.port_allocation {
        line!(out, "port_allocation = {}", string(v.as_str()));
    }
    if let Some(v) = k.port_parity {
        line!(out, "port_parity = {v}");
    }
    if let Some(v) = &k.external_addresses {
        line!(out, "external_addresses = {}", addresses(v));
    }
    if let Some(v) = k.pairing {
        line!(out, "pairing = {v}");
    }
    if let Some(v) = k.hairpinning {
        line!(out, "hairpinning = {v}");
    }
    for (key, value) in [
        ("udp_timeout", k.udp_timeout),
        ("tcp_established_timeout", k.tcp_established_timeout),
        ("tcp_transitory_timeout", k.tcp_transitory_timeout),
    ] {
        if let Some(d) = value {
            line!(out, "{key} = {}", string(&format_duration(d)));
        }
    }
    if let Some(v) = k.refresh {
        line!(out, "refresh = {}", string(v.as_str()));
    }
    if let Some(v) = k.port_range {
        line!(out, "port_range = {}", string(&v.to_string()));
    }
    if let Some(v) = k.icmp {
        line!(out, "icmp = {}", string(v.as_str()));
    }
    if let Some(v) = k.firewall {
        line!(out, "firewall = {v}");
    }
}
