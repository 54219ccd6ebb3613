//! The Linux system layer: TUN device, rtnetlink, the tunnel's UDP socket, sysctls and `poll`.
//!
//! This layer is deliberately thin. Everything that decides *what* to send lives in the sans-IO
//! cores ([`crate::router`], [`crate::peer`]) and is tested without privileges; this module only
//! carries their [`crate::io::Output`]s out. Keeping it small keeps the part of the code that
//! needs root, a kernel and a network namespace to test as small as possible, and makes every
//! system call easy to audit: each wrapper does one thing, returns `io::Result`, and names the
//! operation in its errors.
//!
//! No async runtime and no `ip` subprocesses are used: the daemon is a single-threaded `poll`
//! loop over two file descriptors (the TUN and the UDP socket), and rtnetlink is spoken directly
//! so errors come back with the kernel's errno instead of a scraped command line.

pub mod netlink;
pub mod poll;
pub mod sysctl;
pub mod tun;
pub mod udp;

#[cfg(test)]
pub(crate) mod testns;
