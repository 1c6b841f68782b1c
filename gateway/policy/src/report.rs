//! What happened during one decision: who answered, what it cost, what the
//! gateway corrected. The gateway ignores it; `pvgate plugin test` prints it.

use serde::{Deserialize, Serialize};

use crate::supervisor::{CallKind, Failure};
use crate::validate::Correction;

/// Who produced the decision that was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The tenant has no plugin: the built-in policy.
    Builtin,
    /// The plugin answered (possibly corrected, see `corrections`).
    Plugin,
    /// The plugin failed: the last good decision for the same question.
    LastGood,
    /// The plugin failed and there was no earlier decision: the built-in
    /// policy's answer.
    Default,
    /// The plugin failed on an admission question: denied.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReport {
    pub call: CallKind,
    pub source: Source,
    /// `None` when the answer came from the plugin or the built-in policy.
    pub failure: Option<Failure>,
    /// Fuel the plugin consumed (also on failure, up to the stop); `None`
    /// when no plugin code ran.
    pub fuel_used: Option<u64>,
    /// Wall-clock time of the whole decision, nanoseconds.
    pub duration_ns: u64,
    pub corrections: Vec<Correction>,
}

impl CallReport {
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.duration_ns)
    }

    /// True when the plugin (or the built-in policy) answered.
    pub fn answered(&self) -> bool {
        self.failure.is_none()
    }
}
