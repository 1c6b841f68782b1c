//! Policy traces: the questions a gateway asked, as JSON, so a plugin can
//! be tried on real traffic offline (`pvgate plugin test FILE --events
//! TRACE.json`) and its decisions, fuel and time compared.
//!
//! Two spellings are read: a JSON document `{"events": [...]}` (hand-written
//! test traces) and JSON lines, one event per line (what [`TraceRecorder`]
//! appends while the gateway runs). Each event is tagged by its call:
//!
//! ```json
//! {"call": "video", "guest": {...}, "connector": {"index": 0, "resolution": {"width": 1280, "height": 720}}}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::report::CallReport;
use crate::tenant::TenantPolicy;
use crate::types::*;

/// One question asked of a policy, with its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum PolicyEvent {
    Video {
        guest: Guest,
        connector: DisplayConnector,
    },
    Audio {
        guest: Guest,
        stream: SoundStream,
    },
    Admit {
        guest: Guest,
        viewer: Viewer,
        now: Clock,
    },
    Adjust {
        guest: Guest,
        connector: DisplayConnector,
        viewer: Viewer,
        stats: LinkStats,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTrace {
    pub events: Vec<PolicyEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("policy trace {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy trace {path}: line {line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

impl PolicyTrace {
    /// Reads a trace file in either spelling.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| TraceError::Parse {
            path: name,
            line,
            message,
        })
    }

    /// Parses a trace; on error, the 1-based line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let doc_err = match serde_json::from_str::<PolicyTrace>(text) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        // JSON lines if the first line is an event by itself.
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if serde_json::from_str::<PolicyEvent>(first).is_err() {
            return Err((doc_err.line(), doc_err.to_string()));
        }
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let ev =
                serde_json::from_str::<PolicyEvent>(line).map_err(|e| (i + 1, e.to_string()))?;
            events.push(ev);
        }
        Ok(PolicyTrace { events })
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a trace always serialises")
    }
}

/// A decision, tagged like the event it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", content = "decision", rename_all = "kebab-case")]
pub enum Decision {
    Video(VideoPolicy),
    Audio(AudioPolicy),
    Admit(Admission),
    Adjust(Option<Adjustment>),
}

/// One replayed event: what was decided and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStep {
    pub index: usize,
    pub event: PolicyEvent,
    pub decision: Decision,
    pub report: CallReport,
}

impl TenantPolicy {
    /// Asks the question `event` carries.
    pub fn decide_event(&self, event: &PolicyEvent) -> (Decision, CallReport) {
        match event {
            PolicyEvent::Video { guest, connector } => {
                let (v, r) = self.video_with_report(guest, connector);
                (Decision::Video(v), r)
            }
            PolicyEvent::Audio { guest, stream } => {
                let (a, r) = self.audio_with_report(guest, stream);
                (Decision::Audio(a), r)
            }
            PolicyEvent::Admit { guest, viewer, now } => {
                let (a, r) = self.admit_with_report(guest, viewer, *now);
                (Decision::Admit(a), r)
            }
            PolicyEvent::Adjust {
                guest,
                connector,
                viewer,
                stats,
            } => {
                let (a, r) = self.adjust_with_report(guest, connector, viewer, stats);
                (Decision::Adjust(a), r)
            }
        }
    }
}

/// Replays `trace` against `policy`, in order, returning every decision
/// with its fuel and time.
pub fn replay(policy: &TenantPolicy, trace: &PolicyTrace) -> Vec<ReplayStep> {
    trace
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let (decision, report) = policy.decide_event(event);
            ReplayStep {
                index,
                event: event.clone(),
                decision,
                report,
            }
        })
        .collect()
}

/// Appends events as JSON lines (for `--record-policy-trace`). One line
/// per event, flushed per line, so a crash loses at most the last one.
pub struct TraceRecorder {
    out: Mutex<LineWriter<File>>,
    error_logged: AtomicBool,
}

impl TraceRecorder {
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(TraceRecorder {
            out: Mutex::new(LineWriter::new(f)),
            error_logged: AtomicBool::new(false),
        })
    }

    pub fn record(&self, event: &PolicyEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(line.as_bytes())
    }

    /// `record`, logging the first failure instead of returning it: the
    /// decision path must not fail because a trace file filled a disk.
    pub(crate) fn record_logged(&self, event: &PolicyEvent, tenant: &str) {
        if let Err(e) = self.record(event) {
            if !self.error_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(tenant, error = %e, "cannot write the policy trace; further errors not logged");
            }
        }
    }
}
