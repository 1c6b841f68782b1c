//! What a plugin's store holds, and the two host functions the WIT gives
//! a plugin (`log`, `config-get`). Nothing else is linked: no WASI.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreLimits};

use crate::bindings::pvgate::policy::host;
use crate::metrics::{bump, PolicyMetrics};

/// Why the epoch callback stopped a call (wasmtime reports both as
/// `Trap::Interrupt`; we need to tell them apart for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    Deadline,
    Cancelled,
}

/// Identifies the tenant and plugin file in log lines.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub tenant: Arc<str>,
    pub file: Arc<str>,
}

/// Plugin log lines: a token bucket per instance, so a chatty or
/// malicious plugin cannot flood the gateway's log.
struct LogBucket {
    tokens: f64,
    last: Instant,
}

const LOG_BURST: f64 = 20.0;
const LOG_PER_SECOND: f64 = 5.0;
/// Longest plugin log message kept (bytes, cut at a char boundary).
const LOG_MAX_LEN: usize = 1024;

pub(crate) struct HostState {
    pub who: Who,
    pub config: Arc<BTreeMap<String, String>>,
    pub metrics: Arc<PolicyMetrics>,
    limits: StoreLimits,
    /// Set when a memory grow was refused (the limiter makes it trap), so
    /// the failure is reported as "memory cap" rather than a plain trap.
    pub memory_limit_hit: bool,
    /// Per-call wall-clock deadline, checked by the epoch callback.
    pub call_started: Instant,
    pub deadline: Duration,
    /// Shared with the tenant: `interrupt()` bumps it, which stops a call
    /// that started under an older value (`call_gen`). A generation, not a
    /// flag: nothing has to reset it, so an interrupt cannot be lost to a
    /// reset by a later call.
    pub cancel: Arc<AtomicU64>,
    pub call_gen: u64,
    pub interrupted: Option<Interrupted>,
    log: LogBucket,
}

impl HostState {
    pub fn new(
        who: Who,
        config: Arc<BTreeMap<String, String>>,
        metrics: Arc<PolicyMetrics>,
        limits: StoreLimits,
        cancel: Arc<AtomicU64>,
    ) -> Self {
        HostState {
            who,
            config,
            metrics,
            limits,
            memory_limit_hit: false,
            call_started: Instant::now(),
            deadline: Duration::from_millis(50),
            cancel,
            call_gen: 0,
            interrupted: None,
            log: LogBucket {
                tokens: LOG_BURST,
                last: Instant::now(),
            },
        }
    }

    /// Called from the epoch callback: should the running call stop?
    pub fn check_interrupt(&mut self) -> Option<Interrupted> {
        let why = if self.cancel.load(Ordering::SeqCst) != self.call_gen {
            Some(Interrupted::Cancelled)
        } else if self.call_started.elapsed() >= self.deadline {
            Some(Interrupted::Deadline)
        } else {
            None
        };
        if why.is_some() {
            self.interrupted = why;
        }
        why
    }
}

/// Delegates to `StoreLimits` and remembers refusals (see `memory_limit_hit`).
impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.limits.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.memory_limit_hit = true;
        }
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let now = Instant::now();
        let refill = now.duration_since(self.log.last).as_secs_f64() * LOG_PER_SECOND;
        self.log.tokens = (self.log.tokens + refill).min(LOG_BURST);
        self.log.last = now;
        if self.log.tokens < 1.0 {
            bump(&self.metrics.log_lines_dropped);
            return;
        }
        self.log.tokens -= 1.0;
        let mut msg: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if msg.len() > LOG_MAX_LEN {
            let mut cut = LOG_MAX_LEN;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push('…');
        }
        let (tenant, file) = (&*self.who.tenant, &*self.who.file);
        match level {
            host::Level::Error => tracing::error!(tenant, plugin = file, "plugin: {msg}"),
            host::Level::Warn => tracing::warn!(tenant, plugin = file, "plugin: {msg}"),
            host::Level::Info => tracing::info!(tenant, plugin = file, "plugin: {msg}"),
            host::Level::Debug => tracing::debug!(tenant, plugin = file, "plugin: {msg}"),
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}
