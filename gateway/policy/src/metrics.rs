//! Per-tenant policy counters: plain atomics, bumped on the call path
//! without locks, read by the gateway's `/metrics` through [`snapshot`].
//!
//! [`snapshot`]: PolicyMetrics::snapshot

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::validate::CorrectionKind;

/// Counters for one tenant's policy. Everything is a monotonic counter
/// except `in_flight` (a gauge).
#[derive(Debug, Default)]
pub struct PolicyMetrics {
    /// Decisions asked for (built-in or plugin).
    pub calls: AtomicU64,
    /// Plugin calls that returned normally.
    pub plugin_ok: AtomicU64,
    /// Plugin calls that trapped (panic, unreachable, bad value lifted…).
    pub traps: AtomicU64,
    /// Plugin calls stopped by the wall-clock deadline.
    pub timeouts: AtomicU64,
    /// Plugin calls that ran out of fuel.
    pub fuel_exhausted: AtomicU64,
    /// Plugin calls stopped at the memory cap.
    pub memory_exhausted: AtomicU64,
    /// Plugin calls stopped by [`crate::TenantPolicy::interrupt`].
    pub interrupted: AtomicU64,
    /// Decisions answered by a fallback (last good, default, or deny)
    /// instead of the plugin: after a failure, or while it is backing off.
    pub fallbacks: AtomicU64,
    /// Instances created (the first, and each restart after a failure).
    pub instantiations: AtomicU64,
    pub instantiation_failures: AtomicU64,
    /// New plugin files swapped in.
    pub reloads: AtomicU64,
    /// New plugin files refused (the old one kept serving).
    pub reload_failures: AtomicU64,
    /// Plugin values the gateway corrected (sum over `corrections`).
    pub rejected_values: AtomicU64,
    corrections: [AtomicU64; CorrectionKind::ALL.len()],
    /// Plugin log lines dropped by the rate limit.
    pub log_lines_dropped: AtomicU64,
    /// Fuel spent by successful plugin calls, total.
    pub fuel_used: AtomicU64,
    /// Plugin calls running now (gauge).
    pub in_flight: AtomicU64,
}

impl PolicyMetrics {
    pub fn correction(&self, kind: CorrectionKind) -> u64 {
        self.corrections[kind as usize].load(Relaxed)
    }

    pub(crate) fn count_correction(&self, kind: CorrectionKind) {
        self.corrections[kind as usize].fetch_add(1, Relaxed);
        self.rejected_values.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            calls: self.calls.load(Relaxed),
            plugin_ok: self.plugin_ok.load(Relaxed),
            traps: self.traps.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            fuel_exhausted: self.fuel_exhausted.load(Relaxed),
            memory_exhausted: self.memory_exhausted.load(Relaxed),
            interrupted: self.interrupted.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            instantiations: self.instantiations.load(Relaxed),
            instantiation_failures: self.instantiation_failures.load(Relaxed),
            reloads: self.reloads.load(Relaxed),
            reload_failures: self.reload_failures.load(Relaxed),
            rejected_values: self.rejected_values.load(Relaxed),
            corrections: CorrectionKind::ALL
                .iter()
                .map(|k| (k.name().to_string(), self.correction(*k)))
                .collect(),
            log_lines_dropped: self.log_lines_dropped.load(Relaxed),
            fuel_used: self.fuel_used.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// A copy of [`PolicyMetrics`] at one moment, for rendering and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub calls: u64,
    pub plugin_ok: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub fuel_exhausted: u64,
    pub memory_exhausted: u64,
    pub interrupted: u64,
    pub fallbacks: u64,
    pub instantiations: u64,
    pub instantiation_failures: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub rejected_values: u64,
    /// Per correction kind (`CorrectionKind::name`), every kind listed.
    pub corrections: Vec<(String, u64)>,
    pub log_lines_dropped: u64,
    pub fuel_used: u64,
    pub in_flight: u64,
}

impl MetricsSnapshot {
    /// Prometheus-style `(name, value)` pairs for the plain counters (the
    /// per-kind corrections are `pvgate_policy_corrections_total{kind=…}`,
    /// left to the renderer). `in_flight` is a gauge.
    pub fn counters(&self) -> [(&'static str, u64); 17] {
        [
            ("pvgate_policy_calls_total", self.calls),
            ("pvgate_policy_plugin_ok_total", self.plugin_ok),
            ("pvgate_policy_traps_total", self.traps),
            ("pvgate_policy_timeouts_total", self.timeouts),
            ("pvgate_policy_fuel_exhausted_total", self.fuel_exhausted),
            (
                "pvgate_policy_memory_exhausted_total",
                self.memory_exhausted,
            ),
            ("pvgate_policy_interrupted_total", self.interrupted),
            ("pvgate_policy_fallbacks_total", self.fallbacks),
            ("pvgate_policy_instantiations_total", self.instantiations),
            (
                "pvgate_policy_instantiation_failures_total",
                self.instantiation_failures,
            ),
            ("pvgate_policy_reloads_total", self.reloads),
            ("pvgate_policy_reload_failures_total", self.reload_failures),
            ("pvgate_policy_rejected_values_total", self.rejected_values),
            (
                "pvgate_policy_log_lines_dropped_total",
                self.log_lines_dropped,
            ),
            ("pvgate_policy_fuel_used_total", self.fuel_used),
            ("pvgate_policy_in_flight", self.in_flight),
            (
                "pvgate_policy_failures_total",
                self.traps
                    + self.timeouts
                    + self.fuel_exhausted
                    + self.memory_exhausted
                    + self.interrupted,
            ),
        ]
    }

    pub fn correction(&self, kind: CorrectionKind) -> u64 {
        self.corrections
            .iter()
            .find(|(n, _)| n == kind.name())
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}
