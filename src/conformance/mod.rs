//! Conformance runs: what `bedlab run` produces and what reports read.
//!
//! - [`model`]: verdicts, check results with evidence, cells of the matrix, the run report
//!   (serialised as `report.json`; shards merge by concatenating cells).

pub mod adapter;
pub mod checks;
pub mod corpus;
pub mod decode;
pub mod echo;
pub mod evaluate;
pub mod model;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod steps;
pub mod stream;
pub mod toml_util;
pub mod trace;
