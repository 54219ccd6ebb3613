//! `bedlab`: a network-namespace lab and conformance harness for 6bed4.
//!
//! The lab (topologies, scenarios, conformance checks, golden reports) is under construction.
//! Until it lands this binary only explains where things are; `make run` shows the project's
//! own 6bed4 router and peers working across two NATs in throwaway namespaces.

use clap::{Parser, Subcommand};

const ABOUT: &str = "A network-namespace lab and conformance harness for 6bed4 \
(under construction: try `make run`).";

const LONG_ABOUT: &str = "\
A network-namespace lab and conformance harness for 6bed4
(peer-to-peer IPv6 tunnelled over UDP/IPv4).

The lab and the conformance runs are under construction: this binary
does not build topologies or run scenarios yet. What works today:

  make run     build everything, then run the demo: a 6bed4 router on a
               public address and two peers, each behind its own
               masquerade NAT, in throwaway network namespaces (root)
  make test    fmt, clippy, unit tests and the end-to-end namespace
               test (the namespace test needs root)
  make bench   codec benchmarks and a namespace throughput table

The project's own 6bed4 peer and router is the `sixbed4` binary;
README.md shows how to run it by hand.";

#[derive(Debug, Parser)]
#[command(name = "bedlab", about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of bedlab.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("bedlab {}", env!("CARGO_PKG_VERSION"));
        }
        None => {
            println!("bedlab: the lab and conformance runs are under construction.");
            println!("Run `make run` for the namespace demo, or `bedlab --help` for more.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_subcommand_parses() {
        let cli = Cli::try_parse_from(["bedlab", "version"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Version)));
    }

    #[test]
    fn help_points_at_make_run() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("under construction"));
        assert!(help.contains("make run"));
    }
}
