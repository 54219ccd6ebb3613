//! Tests of the capture module: the writer against the reader and against tshark, the
//! reader against real captures and hand-made and broken files, and the host capture in a
//! throwaway namespace.

mod bad_input;
mod classic;
mod handmade_pcapng;
mod host;
mod ip_payload;
mod real_captures;
mod roundtrip;
mod tshark;

use std::path::Path;
use std::process::{Command, Output};

/// Whether `tool` can be run; prints why a test is skipped when not.
fn have_tool(tool: &str, test: &str) -> bool {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIP {test}: `{tool}` is not installed (apt-get install -y tshark)");
            false
        }
    }
}

/// A finished tshark (or capinfos) run, with tshark's notice about running as root removed
/// from stderr: it is printed whenever the tests run as root and says nothing about the file.
struct ToolRun {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

fn run_tool(tool: &str, args: &[&str], file: &Path) -> ToolRun {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(tool)
        .args(args)
        .arg(file)
        // Keep tshark off any user profile and preferences.
        .env("WIRESHARK_CONFIG_DIR", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    let stderr = String::from_utf8_lossy(&stderr)
        .lines()
        .filter(|l| !l.starts_with("Running as user \"root\""))
        .collect::<Vec<_>>()
        .join("\n");
    ToolRun {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    }
}

/// `tshark -r file -T fields -e ...`, one `Vec` of field values per packet.
fn tshark_fields(file: &Path, fields: &[&str]) -> (ToolRun, Vec<Vec<String>>) {
    let mut args = vec!["-n", "-T", "fields", "-E", "occurrence=f"];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    args.push("-r");
    let run = run_tool("tshark", &args, file);
    let rows = run
        .stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    (run, rows)
}

/// An IPv4/UDP packet (checksums left zero: tshark does not verify them by default).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&25788u16.to_be_bytes());
    p.extend_from_slice(&25788u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet with a "no next header" payload.
fn ipv6_packet(src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(59);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}
