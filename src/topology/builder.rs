//! The Rust way to write a topology: the same model the TOML parser produces, checked by the
//! same [`Topology::validate`].
//!
//! ```
//! use std::net::Ipv4Addr;
//! use bedlab::topology::{Host, Interface, NatPreset, NatSpec, Router, Segment, Topology};
//!
//! let topology = Topology::builder("one-nat")
//!     .seed(7)
//!     .segment(Segment::new("internet", "198.51.100.0/24".parse()?))
//!     .segment(Segment::new("lan", "10.0.1.0/24".parse()?))
//!     .host(Host::new("router").role("6bed4-router").interface(Interface::new(
//!         "eth0",
//!         "internet",
//!         Ipv4Addr::new(198, 51, 100, 1),
//!     )))
//!     .host(Host::new("peer").role("peer").interface(Interface::new("eth0", "lan", Ipv4Addr::new(10, 0, 1, 2))))
//!     .router(
//!         Router::new("nat")
//!             .interface(Interface::new("lan", "lan", Ipv4Addr::new(10, 0, 1, 1)))
//!             .interface(Interface::new("wan", "internet", Ipv4Addr::new(198, 51, 100, 10)))
//!             .nat(NatSpec::preset("wan", NatPreset::PortRestrictedCone)),
//!     )
//!     .build()?;
//! assert_eq!(topology.gateway_of("peer", "eth0"), Some(Ipv4Addr::new(10, 0, 1, 1)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{Host, Router, Segment, Topology, TopologyError};

/// Assembles a [`Topology`] in Rust.
#[derive(Clone, Debug)]
pub struct TopologyBuilder {
    topology: Topology,
}

impl TopologyBuilder {
    /// An empty topology called `name`, seed 0.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            topology: Topology {
                name: name.into(),
                description: String::new(),
                seed: 0,
                segments: Vec::new(),
                hosts: Vec::new(),
                routers: Vec::new(),
            },
        }
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.topology.description = text.into();
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.topology.seed = seed;
        self
    }

    /// Adds a segment.
    pub fn segment(mut self, segment: Segment) -> Self {
        self.topology.segments.push(segment);
        self
    }

    /// Adds a host.
    pub fn host(mut self, host: Host) -> Self {
        self.topology.hosts.push(host);
        self
    }

    /// Adds a router (or NAT).
    pub fn router(mut self, router: Router) -> Self {
        self.topology.routers.push(router);
        self
    }

    /// The topology, if it passes [`Topology::validate`].
    pub fn build(self) -> Result<Topology, TopologyError> {
        self.topology.validate()?;
        Ok(self.topology)
    }

    /// The topology without validation (for tests of the validator, and for callers that
    /// validate later).
    pub fn build_unchecked(self) -> Topology {
        self.topology
    }
}
