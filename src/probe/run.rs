//! Running a probe: build the planned lab, start the servers, run the client tests, classify.

use super::plan::{plan, ProbePlan, SERVER_PORTS};
use super::{
    claimed, classify_filtering, classify_hairpin, classify_mapping, classify_ports, BasicObservation,
    FilteringResult, HairpinObservation, HairpinResult, LifetimeObservation, LifetimeResult, MappingResult,
    PortResult, ProbeReport,
};
use crate::lab::{Lab, LabError, LabOptions};
use crate::topology::{Topology, TopologyError};
use std::io::Read;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a probe could not run (a probe that ran reports its findings, whatever they are).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The topology has no such NAT, or no room for the probe's hosts.
    #[error("{0}")]
    Plan(String),
    /// The topology with the probe's hosts is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The lab could not be built or driven.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// An agent failed, timed out or printed something unreadable.
    #[error("probe agent `{what}` in {node}: {detail}")]
    Agent {
        node: String,
        what: String,
        detail: String,
    },
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The bedlab binary, whose hidden `probe-agent` subcommand runs inside the namespaces.
    pub agent: PathBuf,
    /// How to build the lab (artifacts, run records, capture).
    pub lab: LabOptions,
    /// Longest idle time the lifetime test tries; zero skips the test.
    pub lifetime_max: Duration,
    /// The lifetime test stops narrowing at this bracket width.
    pub resolution: Duration,
    /// How long an answer that filtering may drop is waited for, once the request is known
    /// to have got through (and how late a lifetime answer may be).
    pub wait: Duration,
}

impl ProbeOptions {
    /// Defaults: lifetime up to 40 s (Linux's 30 s default fits), 100 ms resolution, 500 ms
    /// waits.
    pub fn new(agent: impl Into<PathBuf>, lab: LabOptions) -> ProbeOptions {
        ProbeOptions {
            agent: agent.into(),
            lab,
            lifetime_max: Duration::from_secs(40),
            resolution: Duration::from_millis(100),
            wait: Duration::from_millis(500),
        }
    }
}

/// Parses a duration flag (`40s`, `500ms`, `0`).
pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::topology::parse_duration(s).map_err(|e| e.to_string())
}

/// Probes NAT `nat` of `topology` in a lab of its own (the topology plus the probe's hosts),
/// torn down before returning.
pub fn probe(topology: &Topology, nat: &str, opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let plan = plan(topology, nat)?;
    let mut lab = Lab::build(plan.topology.clone(), opts.lab.clone())?;
    let result = run(&mut lab, &plan, opts);
    let teardown = lab.teardown();
    let report = result?;
    teardown.map_err(|source| LabError::Io {
        context: "tearing the probe's lab down".into(),
        source,
    })?;
    Ok(report)
}

/// An agent process started by the probe; killed if dropped unfinished.
struct AgentRun {
    node: String,
    what: String,
    child: Option<Child>,
}

impl AgentRun {
    fn start(
        lab: &Lab,
        opts: &ProbeOptions,
        node: &str,
        what: &str,
        args: &[String],
    ) -> Result<AgentRun, ProbeError> {
        let fd = lab.netns(node)?.as_raw_fd();
        let mut cmd = Command::new(&opts.agent);
        cmd.arg("probe-agent")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only setns and prctl, both async-signal-safe, run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                crate::netns::setns(fd)?;
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| ProbeError::Agent {
            node: node.into(),
            what: what.into(),
            detail: format!("starting {}: {e}", opts.agent.display()),
        })?;
        Ok(AgentRun {
            node: node.into(),
            what: what.into(),
            child: Some(child),
        })
    }

    fn error(&self, detail: impl Into<String>) -> ProbeError {
        ProbeError::Agent {
            node: self.node.clone(),
            what: self.what.clone(),
            detail: detail.into(),
        }
    }

    /// Waits for the agent until `deadline`; its stdout when it succeeded.
    fn finish(mut self, deadline: Instant) -> Result<String, ProbeError> {
        let Some(mut child) = self.child.take() else {
            return Err(self.error("already finished"));
        };
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            })
        };
        let out = pipe(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
        let err = pipe(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(stdout),
            Some(s) => Err(self.error(format!("{s}: {}", stderr.trim()))),
            None => Err(self.error(format!("timed out; stderr: {}", stderr.trim()))),
        }
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(run_what: &str, node: &str, text: &str) -> Result<T, ProbeError> {
    serde_json::from_str(text.trim()).map_err(|e| ProbeError::Agent {
        node: node.into(),
        what: run_what.into(),
        detail: format!("unreadable output ({e}): {}", text.trim()),
    })
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn run(lab: &mut Lab, plan: &ProbePlan, opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let [p1, p2] = SERVER_PORTS;
    let s = |i: usize, port: u16| SocketAddrV4::new(plan.server_addrs[i], port);
    let agent = opts.agent.display().to_string();

    // Servers: two ports each, the other server as sibling.
    for i in 0..2 {
        let argv = strings(&[
            &agent,
            "probe-agent",
            "server",
            "--bind",
            &s(i, p1).to_string(),
            "--bind",
            &s(i, p2).to_string(),
            "--sibling",
            &s(1 - i, p1).to_string(),
        ]);
        lab.spawn(&plan.servers[i], "probe-server", &argv)?;
    }
    let ready = Lab::wait_for(Duration::from_secs(10), || {
        lab.processes().iter().all(|p| {
            p.name != "probe-server"
                || std::fs::read_to_string(&p.stdout_path).is_ok_and(|t| t.starts_with("ready"))
        })
    });
    if !ready {
        let tails: Vec<String> = lab
            .processes()
            .iter()
            .filter(|p| p.name == "probe-server")
            .map(|p| format!("{}: {}", p.node, p.stderr_tail(5)))
            .collect();
        return Err(ProbeError::Agent {
            node: plan.servers.join(", "),
            what: "server".into(),
            detail: format!("not ready after 10 s; {}", tails.join("; ")),
        });
    }

    let wait_ms = opts.wait.as_millis().to_string();
    let (c1, c2) = (&plan.clients[0], &plan.clients[1]);

    // Mapping, filtering, ports.
    let basic_args = strings(&[
        "client",
        "basic",
        "--s1",
        &s(0, p1).to_string(),
        "--s2",
        &s(1, p1).to_string(),
        "--alt-port",
        &p2.to_string(),
        "--wait-ms",
        &wait_ms,
    ]);
    let out = AgentRun::start(lab, opts, c1, "client basic", &basic_args)?
        .finish(Instant::now() + Duration::from_secs(60) + opts.wait * 10)?;
    let basic: BasicObservation = parse("client basic", c1, &out)?;
    let mapping = classify_mapping(&basic.mapping);
    let filtering = classify_filtering(&basic.filtering);
    let (allocation, parity) = classify_ports(&basic.ports);

    // Hairpinning: two inside clients meeting at S1.
    let key = format!("hp-{}-{}", lab.run_id(), std::process::id());
    let hp = |role: &str| {
        strings(&[
            "client",
            "hairpin",
            "--s1",
            &s(0, p1).to_string(),
            "--role",
            role,
            "--key",
            &key,
        ])
    };
    let a = AgentRun::start(lab, opts, c1, "client hairpin a", &hp("a"))?;
    let b = AgentRun::start(lab, opts, c2, "client hairpin b", &hp("b"))?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let b_out = b.finish(deadline)?;
    let a_out = a.finish(deadline)?;
    let ha: HairpinObservation = parse("client hairpin a", c1, &a_out)?;
    let hb: HairpinObservation = parse("client hairpin b", c2, &b_out)?;
    let hairpin = classify_hairpin(&ha, &hb, mapping, filtering);

    // Lifetime.
    let lifetime = if opts.lifetime_max.is_zero() {
        None
    } else {
        let max_ms = opts.lifetime_max.as_millis().max(1).to_string();
        let res_ms = opts.resolution.as_millis().max(1).to_string();
        let args = strings(&[
            "client",
            "lifetime",
            "--s1",
            &s(0, p1).to_string(),
            "--max-ms",
            &max_ms,
            "--resolution-ms",
            &res_ms,
            "--wait-ms",
            &wait_ms,
        ]);
        let budget = opts.lifetime_max * 4 + opts.wait * 8 + Duration::from_secs(30);
        let out =
            AgentRun::start(lab, opts, c1, "client lifetime", &args)?.finish(Instant::now() + budget)?;
        let obs: LifetimeObservation = parse("client lifetime", c1, &out)?;
        Some(LifetimeResult::from_observation(&obs))
    };

    let mut report = ProbeReport {
        topology: plan.topology.name.clone(),
        nat: plan.nat.clone(),
        run_id: lab.run_id().to_string(),
        clients: plan.client_addrs,
        servers: plan.server_addrs,
        ports: SERVER_PORTS,
        claimed: claimed(&plan.spec),
        mapping: MappingResult {
            behaviour: mapping,
            local_port: basic.local_port,
            samples: basic.mapping,
        },
        filtering: FilteringResult {
            behaviour: filtering,
            samples: basic.filtering,
        },
        port_allocation: PortResult {
            allocation,
            parity_preserved: parity,
            samples: basic.ports,
        },
        hairpinning: HairpinResult {
            behaviour: hairpin,
            source: ha.source,
            external_source: ha.source.map(|s| *s.ip() != plan.client_addrs[1]),
        },
        lifetime,
        nat_type: None,
        mismatches: Vec::new(),
    };
    report.conclude();
    Ok(report)
}
