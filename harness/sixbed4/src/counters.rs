//! Named counters of what a daemon did and dropped. Bad input is never an error to the
//! daemon: it is dropped and counted here, and `--events json` shows the totals.

use std::collections::BTreeMap;

/// A set of named, monotonically increasing counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    values: BTreeMap<&'static str, u64>,
    changed: bool,
}

impl Counters {
    pub fn bump(&mut self, name: &'static str) {
        *self.values.entry(name).or_insert(0) += 1;
        self.changed = true;
    }
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }
    /// A copy for an event, keyed by owned names.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.values.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }
    /// Whether anything changed since the last call (used to rate-limit counter events).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}
