//! The few IPv6 sysctls the daemon changes, written through `/proc/sys`.
//!
//! The 6bed4 peer does its own Router Solicitation and address configuration over the tunnel,
//! so the kernel's own — sending RSs into the TUN, autoconfiguring from RAs it would accept,
//! probing every new address with DAD — must be switched off on the TUN, or the kernel and the
//! daemon would both configure the same interface. The router additionally needs forwarding.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the file, so these
//! calls act on the caller's namespace, like the rest of [`crate::sys`].

use std::fs;
use std::io;
use std::path::PathBuf;

/// Writes `value` to `/proc/sys/net/ipv6/conf/<ifname>/<key>`.
///
/// `ifname` may also be `all` or `default`. Names containing `/` or equal to `.`/`..` are
/// refused so a caller-supplied name can never reach another sysctl.
pub fn set_ipv6_conf(ifname: &str, key: &str, value: &str) -> io::Result<()> {
    let path = conf_path(ifname, key)?;
    fs::write(&path, format!("{value}\n"))
        .map_err(|e| io::Error::new(e.kind(), format!("set {} to {value:?}: {e}", path.display())))
}

/// Reads `/proc/sys/net/ipv6/conf/<ifname>/<key>`, trimmed.
pub fn ipv6_conf(ifname: &str, key: &str) -> io::Result<String> {
    let path = conf_path(ifname, key)?;
    fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", path.display())))
}

/// Turns off the kernel's own IPv6 autoconfiguration on `ifname`: no accepting Router
/// Advertisements (which also stops it sending Router Solicitations), no SLAAC addresses, and
/// no Duplicate Address Detection probes. Call it before bringing the interface up, so not even
/// the first RS leaves.
pub fn quiet_autoconf(ifname: &str) -> io::Result<()> {
    set_ipv6_conf(ifname, "accept_ra", "0")?;
    set_ipv6_conf(ifname, "autoconf", "0")?;
    set_ipv6_conf(ifname, "dad_transmits", "0")
}

/// Switches IPv6 forwarding on or off for the whole namespace (`conf/all/forwarding`), as the
/// 6bed4 router needs to pass packets between its tunnel and its other interfaces. The kernel
/// propagates the `all` value to every interface.
pub fn set_ipv6_forwarding(enabled: bool) -> io::Result<()> {
    set_ipv6_conf("all", "forwarding", if enabled { "1" } else { "0" })
}

/// Disables (or re-enables) IPv6 on `ifname` altogether; for interfaces that must not join
/// the IPv6 side of a lab topology.
pub fn disable_ipv6(ifname: &str, disabled: bool) -> io::Result<()> {
    set_ipv6_conf(ifname, "disable_ipv6", if disabled { "1" } else { "0" })
}

fn conf_path(ifname: &str, key: &str) -> io::Result<PathBuf> {
    for (what, part) in [("interface name", ifname), ("sysctl key", key)] {
        if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid {what} {part:?} for /proc/sys/net/ipv6/conf"),
            ));
        }
    }
    Ok(PathBuf::from(format!("/proc/sys/net/ipv6/conf/{ifname}/{key}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testns::in_netns;
    use crate::sys::tun::Tun;

    #[test]
    fn rejects_path_tricks() {
        assert!(set_ipv6_conf("..", "forwarding", "1").is_err());
        assert!(set_ipv6_conf("all", "../../ipv4/ip_forward", "1").is_err());
        assert!(set_ipv6_conf("", "forwarding", "1").is_err());
    }

    #[test]
    fn settings_apply_in_the_namespace_only() {
        in_netns(|| {
            let tun = Tun::create("bedsys").expect("tun");
            quiet_autoconf(tun.name()).expect("quiet");
            assert_eq!(ipv6_conf(tun.name(), "accept_ra").expect("read"), "0");
            assert_eq!(ipv6_conf(tun.name(), "autoconf").expect("read"), "0");
            assert_eq!(ipv6_conf(tun.name(), "dad_transmits").expect("read"), "0");

            set_ipv6_forwarding(true).expect("forwarding on");
            assert_eq!(ipv6_conf("all", "forwarding").expect("read"), "1");
            assert_eq!(ipv6_conf(tun.name(), "forwarding").expect("read"), "1");
            set_ipv6_forwarding(false).expect("forwarding off");
            assert_eq!(ipv6_conf("all", "forwarding").expect("read"), "0");

            disable_ipv6(tun.name(), true).expect("disable");
            assert_eq!(ipv6_conf(tun.name(), "disable_ipv6").expect("read"), "1");
            disable_ipv6(tun.name(), false).expect("enable");

            let err = set_ipv6_conf("nosuchif", "accept_ra", "0").expect_err("no interface");
            assert!(err.to_string().contains("nosuchif/accept_ra"), "{err}");
        });
    }
}
