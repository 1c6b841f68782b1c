//! One plugin instance and its life: created on demand from the
//! `InstancePre`, called with a fuel budget and a deadline, dropped after
//! any failure (a trapped component instance must not be re-entered), and
//! re-created after an exponential backoff so a plugin that fails on every
//! call costs the gateway one short attempt per backoff period, not one per
//! decision.
//!
//! Calls are serialised by the mutex around the instance: a store is
//! single-threaded, and the WIT promises plugins one call at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use crate::bindings::{PolicyFuncs, PolicyIndices};
use crate::host::{HostState, Interrupted, Who};
use crate::limits::{BackoffConfig, CallLimits};
use crate::load::{error_chain, PluginErrorKind};
use crate::metrics::{bump, PolicyMetrics};

/// Which policy function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallKind {
    Video,
    Audio,
    Admit,
    Adjust,
}

impl CallKind {
    pub const fn name(self) -> &'static str {
        match self {
            CallKind::Video => "video",
            CallKind::Audio => "audio",
            CallKind::Admit => "admit",
            CallKind::Adjust => "adjust",
        }
    }
}

/// Why a plugin did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "failure", content = "detail")]
pub enum Failure {
    /// The plugin trapped (panic, `unreachable`, an invalid value…).
    Trap(String),
    OutOfFuel,
    /// The wall-clock deadline passed.
    Deadline,
    /// A memory grow beyond the cap.
    MemoryLimit,
    /// `TenantPolicy::interrupt` stopped it.
    Interrupted,
    /// Not called: the instance failed recently and is backing off.
    BackingOff {
        retry_in_ms: u64,
    },
    /// Re-creating the instance failed (its start code trapped…).
    Instantiate(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Trap(m) => write!(f, "trapped: {m}"),
            Failure::OutOfFuel => write!(f, "ran out of fuel"),
            Failure::Deadline => write!(f, "exceeded its deadline"),
            Failure::MemoryLimit => write!(f, "reached its memory limit"),
            Failure::Interrupted => write!(f, "was interrupted"),
            Failure::BackingOff { retry_in_ms } => {
                write!(
                    f,
                    "is restarting after a failure (next try in {retry_in_ms} ms)"
                )
            }
            Failure::Instantiate(m) => write!(f, "could not be restarted: {m}"),
        }
    }
}

/// One call's result with what it cost.
pub(crate) struct Called<R> {
    pub result: Result<R, Failure>,
    /// Fuel consumed, when the plugin ran.
    pub fuel_used: Option<u64>,
}

enum MakeError {
    Failed(Failure),
    /// The exports do not type-check against the WIT.
    Types(String),
}

struct Live {
    store: Store<HostState>,
    funcs: PolicyFuncs,
}

struct Slot {
    live: Option<Live>,
    /// Earliest time to re-create the instance after a failure.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    next_backoff: Duration,
}

/// Everything needed to (re-)create and call one plugin.
pub(crate) struct Supervisor {
    pre: InstancePre<HostState>,
    indices: PolicyIndices,
    who: Who,
    config: Arc<BTreeMap<String, String>>,
    metrics: Arc<PolicyMetrics>,
    cancel: Arc<AtomicU64>,
    limits: CallLimits,
    memory_bytes: usize,
    backoff: BackoffConfig,
    slot: Mutex<Slot>,
}

pub(crate) struct SupervisorParts {
    pub pre: InstancePre<HostState>,
    pub indices: PolicyIndices,
    pub who: Who,
    pub config: Arc<BTreeMap<String, String>>,
    pub metrics: Arc<PolicyMetrics>,
    pub cancel: Arc<AtomicU64>,
    pub limits: CallLimits,
    pub memory_bytes: usize,
    pub backoff: BackoffConfig,
}

impl Supervisor {
    pub fn new(p: SupervisorParts) -> Self {
        Supervisor {
            pre: p.pre,
            indices: p.indices,
            who: p.who,
            config: p.config,
            metrics: p.metrics,
            cancel: p.cancel,
            limits: p.limits,
            memory_bytes: p.memory_bytes,
            backoff: p.backoff,
            slot: Mutex::new(Slot {
                live: None,
                retry_at: None,
                next_backoff: p.backoff.initial,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Nothing panics while holding it; if something did, the slot is
        // still consistent (at worst an instance we then drop).
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the instance now (at load, so a file whose instantiation
    /// fails is refused instead of failing its first call).
    pub fn instantiate_now(&self) -> Result<(), PluginErrorKind> {
        let mut slot = self.lock();
        if slot.live.is_none() {
            match self.instantiate() {
                Ok(live) => slot.live = Some(live),
                Err(MakeError::Types(m)) => return Err(PluginErrorKind::ExportMismatch(m)),
                Err(MakeError::Failed(f)) => {
                    return Err(PluginErrorKind::Instantiate(format!("it {f}")))
                }
            }
        }
        Ok(())
    }

    /// Time to (re-)create an instance, for the bench.
    pub fn instantiate_fresh(&self) -> Option<Duration> {
        let start = Instant::now();
        let live = self.instantiate().ok()?;
        let d = start.elapsed();
        self.lock().live = Some(live);
        Some(d)
    }

    fn instantiate(&self) -> Result<Live, MakeError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            // Generous for any real component, small enough that a
            // component cannot make the store hoard them.
            .instances(64)
            .tables(64)
            .memories(8)
            // A refused grow traps instead of returning -1: a policy that
            // hits 64 MiB is broken, and the trap names the reason.
            .trap_on_grow_failure(true)
            .build();
        let state = HostState::new(
            self.who.clone(),
            self.config.clone(),
            self.metrics.clone(),
            limits,
            self.cancel.clone(),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // The epoch ticks every few ms; the callback compares real elapsed
        // time with this call's deadline (and the cancel flag) and keeps
        // going in one-tick steps until either says stop.
        store.epoch_deadline_callback(|mut cx| {
            Ok(match cx.data_mut().check_interrupt() {
                Some(_) => UpdateDeadline::Interrupt,
                None => UpdateDeadline::Continue(1),
            })
        });
        self.arm(&mut store);
        bump(&self.metrics.instantiations);
        let instance: Instance = match self.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                bump(&self.metrics.instantiation_failures);
                return Err(MakeError::Failed(match classify(&store, e) {
                    Failure::Trap(m) => Failure::Instantiate(m),
                    other => other,
                }));
            }
        };
        match PolicyFuncs::load(&mut store, &instance, &self.indices) {
            Ok(funcs) => Ok(Live { store, funcs }),
            Err(e) => {
                bump(&self.metrics.instantiation_failures);
                Err(MakeError::Types(error_chain(&e)))
            }
        }
    }

    /// Fresh fuel and deadline for the next entry into the store.
    fn arm(&self, store: &mut Store<HostState>) {
        // Fuel is enabled on the engine, so this cannot fail.
        let _ = store.set_fuel(self.limits.fuel);
        let s = store.data_mut();
        s.call_started = Instant::now();
        s.call_gen = self.cancel.load(Ordering::SeqCst);
        s.deadline = self.limits.deadline;
        s.interrupted = None;
        s.memory_limit_hit = false;
        store.set_epoch_deadline(1);
    }

    /// Runs `f` on the instance (creating it if needed), with fuel and
    /// deadline. On failure the instance is dropped and a restart scheduled.
    pub fn call<R>(
        &self,
        kind: CallKind,
        f: impl FnOnce(&PolicyFuncs, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Called<R> {
        let mut slot = self.lock();
        if slot.live.is_none() {
            let now = Instant::now();
            if let Some(at) = slot.retry_at.filter(|at| *at > now) {
                let retry_in_ms = at.duration_since(now).as_millis() as u64;
                return Called {
                    result: Err(Failure::BackingOff { retry_in_ms }),
                    fuel_used: None,
                };
            }
            match self.instantiate() {
                Ok(live) => slot.live = Some(live),
                Err(e) => {
                    let failure = match e {
                        MakeError::Failed(f) => f,
                        MakeError::Types(m) => Failure::Instantiate(m),
                    };
                    self.failed(&mut slot, "instantiate", &failure);
                    return Called {
                        result: Err(failure),
                        fuel_used: None,
                    };
                }
            }
        }
        let live = slot.live.as_mut().expect("instance just ensured");
        // Armed (generation recorded) before counting in-flight: an
        // interrupt() that sees this call in flight always stops it.
        self.arm(&mut live.store);
        self.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = f(&live.funcs, &mut live.store);
        self.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(live.store.get_fuel().unwrap_or(0));
        match result {
            Ok(v) => {
                slot.next_backoff = self.backoff.initial;
                slot.retry_at = None;
                self.metrics
                    .fuel_used
                    .fetch_add(fuel_used, Ordering::Relaxed);
                Called {
                    result: Ok(v),
                    fuel_used: Some(fuel_used),
                }
            }
            Err(e) => {
                let failure = classify(&live.store, e);
                // Never re-enter a trapped instance: drop it (its pool
                // slot is released with the store).
                slot.live = None;
                self.failed(&mut slot, kind.name(), &failure);
                Called {
                    result: Err(failure),
                    fuel_used: Some(fuel_used),
                }
            }
        }
    }

    /// Counts, logs (once per failure) and schedules the restart.
    fn failed(&self, slot: &mut Slot, call: &str, failure: &Failure) {
        let m = &self.metrics;
        match failure {
            Failure::Trap(_) | Failure::Instantiate(_) => bump(&m.traps),
            Failure::OutOfFuel => bump(&m.fuel_exhausted),
            Failure::Deadline => bump(&m.timeouts),
            Failure::MemoryLimit => bump(&m.memory_exhausted),
            Failure::Interrupted => bump(&m.interrupted),
            Failure::BackingOff { .. } => {}
        }
        let wait = slot.next_backoff;
        slot.retry_at = Some(Instant::now() + wait);
        slot.next_backoff = (wait * 2).min(self.backoff.max);
        tracing::warn!(
            tenant = &*self.who.tenant,
            plugin = &*self.who.file,
            call,
            retry_in_ms = wait.as_millis() as u64,
            "policy plugin {failure}; answering with the fallback until it restarts"
        );
    }
}

/// Maps a wasmtime error from a call into our failure kinds, using what
/// the store recorded (deadline vs cancel, memory cap) where wasmtime's
/// trap code alone cannot tell.
fn classify(store: &Store<HostState>, e: wasmtime::Error) -> Failure {
    let s = store.data();
    match s.interrupted {
        Some(Interrupted::Deadline) => return Failure::Deadline,
        Some(Interrupted::Cancelled) => return Failure::Interrupted,
        None => {}
    }
    if s.memory_limit_hit {
        return Failure::MemoryLimit;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel,
        Some(Trap::Interrupt) => Failure::Deadline,
        _ => Failure::Trap(error_chain(&e)),
    }
}
