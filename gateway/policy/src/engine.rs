//! The engine shared by all tenants: one wasmtime `Engine` (compiled code,
//! the instance pool), one `Linker` (the `host` functions), the compile
//! cache, and two background threads — the epoch ticker that makes
//! deadlines work and the file watcher that hot-reloads plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::cache::{CacheDir, CompileCache};
use crate::host::HostState;
use crate::limits::{BackoffConfig, Bounds, CallLimits, EngineLimits};
use crate::load::{PluginError, PluginInfo};
use crate::tenant::{TenantInner, TenantPolicy};

/// Everything configurable about policy plugins. `Default` is what the
/// gateway uses unless its config says otherwise.
#[derive(Debug, Clone)]
pub struct PolicyEngineConfig {
    /// Default per-call fuel and deadline (a tenant may get its own).
    pub call_limits: CallLimits,
    pub engine_limits: EngineLimits,
    /// What decisions are clamped into.
    pub bounds: Bounds,
    pub backoff: BackoffConfig,
    pub cache_dir: CacheDir,
    /// Epoch tick: the deadline's resolution. A few ms costs nothing (one
    /// atomic increment per tick) and keeps a 50 ms deadline within 10%.
    pub epoch_tick: Duration,
    /// How often plugin files are checked for changes; `None`: only on
    /// `TenantPolicy::reload`.
    pub reload_poll: Option<Duration>,
}

impl Default for PolicyEngineConfig {
    fn default() -> Self {
        PolicyEngineConfig {
            call_limits: CallLimits::default(),
            engine_limits: EngineLimits::default(),
            bounds: Bounds::default(),
            backoff: BackoffConfig::default(),
            cache_dir: CacheDir::Default,
            epoch_tick: Duration::from_millis(5),
            reload_poll: Some(Duration::from_secs(1)),
        }
    }
}

/// The engine could not be set up (wasmtime refused the configuration, or
/// the instance pool could not be reserved).
#[derive(Debug, thiserror::Error)]
#[error("policy engine: {0}")]
pub struct EngineError(String);

pub(crate) struct EngineInner {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub cache: CompileCache,
    pub config: PolicyEngineConfig,
    tenants: Mutex<Vec<Weak<TenantInner>>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<Thread>>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            t.unpark();
        }
    }
}

impl EngineInner {
    pub(crate) fn register(&self, t: &Arc<TenantInner>) {
        let mut v = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(t));
    }

    fn live_tenants(&self) -> Vec<Arc<TenantInner>> {
        let v = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().filter_map(Weak::upgrade).collect()
    }
}

/// The wasmtime settings, and a description of ours for the cache key.
fn wasmtime_config(limits: &EngineLimits) -> (Config, String) {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // Fuel bounds work per call deterministically; epochs bound wall time.
    c.consume_fuel(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(limits.max_wasm_stack);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c.parallel_compilation(true);

    // Pooling: instantiation is a few µs (pre-reserved slots, copy-on-write
    // memory images), which makes restart-after-trap and reload cheap.
    // Sized by `max_plugins`; virtual address space only until used.
    let slots = limits.pool_slots();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(8))
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(limits.memory_bytes);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    let knobs = format!(
        "component-model fuel epoch stack={} memory={} slots={} opt=speed",
        limits.max_wasm_stack, limits.memory_bytes, slots
    );
    (c, knobs)
}

/// The policy host, shared by the gateway (cheap to clone).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

impl PolicyEngine {
    pub fn new(config: PolicyEngineConfig) -> Result<Self, EngineError> {
        let (wcfg, knobs) = wasmtime_config(&config.engine_limits);
        let engine = Engine::new(&wcfg).map_err(|e| EngineError(crate::load::error_chain(&e)))?;
        let mut linker = Linker::<HostState>::new(&engine);
        bindings::pvgate::policy::host::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| EngineError(crate::load::error_chain(&e)))?;
        let cache = CompileCache::new(&engine, &config.cache_dir, &knobs);
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(EngineInner {
            engine: engine.clone(),
            linker,
            cache,
            config: config.clone(),
            tenants: Mutex::new(Vec::new()),
            stop: stop.clone(),
            threads: Mutex::new(Vec::new()),
        });

        let mut threads = Vec::new();
        // The ticker holds only a weak engine handle, so it never keeps the
        // engine alive; the stop flag ends it promptly.
        let weak_engine = engine.weak();
        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let stop_t = stop.clone();
        let ticker = std::thread::Builder::new()
            .name("pvgate-policy-epoch".into())
            .spawn(move || {
                while !stop_t.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    match weak_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| EngineError(format!("cannot start the epoch thread: {e}")))?;
        threads.push(ticker.thread().clone());

        if let Some(poll) = config.reload_poll {
            let weak = Arc::downgrade(&inner);
            let stop_w = stop.clone();
            let watcher = std::thread::Builder::new()
                .name("pvgate-policy-watch".into())
                .spawn(move || loop {
                    std::thread::park_timeout(poll);
                    if stop_w.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(inner) = weak.upgrade() else { break };
                    let tenants = inner.live_tenants();
                    drop(inner);
                    for t in tenants {
                        // Errors are logged and counted inside; the old
                        // plugin keeps serving.
                        let _ = TenantPolicy::from_inner(t).poll_file(false);
                    }
                })
                .map_err(|e| EngineError(format!("cannot start the reload thread: {e}")))?;
            threads.push(watcher.thread().clone());
        }
        *inner.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(PolicyEngine { inner })
    }

    pub fn config(&self) -> &PolicyEngineConfig {
        &self.inner.config
    }

    /// The compile cache in use, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }

    /// A tenant without a plugin: the built-in policy.
    pub fn builtin(&self, tenant: &str) -> TenantPolicy {
        TenantPolicy::builtin(self.inner.clone(), tenant)
    }

    /// A tenant's plugin, checked, compiled and instantiated, with the
    /// engine's default call limits. `config` is what `host.config-get`
    /// answers. The file is then watched for changes.
    pub fn load(
        &self,
        tenant: &str,
        path: impl AsRef<Path>,
        config: BTreeMap<String, String>,
    ) -> Result<TenantPolicy, PluginError> {
        self.load_with_limits(tenant, path, config, self.inner.config.call_limits)
    }

    /// As [`load`](Self::load), with this tenant's own fuel and deadline.
    pub fn load_with_limits(
        &self,
        tenant: &str,
        path: impl AsRef<Path>,
        config: BTreeMap<String, String>,
        limits: CallLimits,
    ) -> Result<TenantPolicy, PluginError> {
        TenantPolicy::load(self.inner.clone(), tenant, path.as_ref(), config, limits)
    }

    /// Checks a plugin file as `load` would (including one instantiation),
    /// without keeping it.
    pub fn check(&self, path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
        TenantPolicy::check(self.inner.clone(), path.as_ref())
    }

    /// The tenants alive now (for `/metrics`).
    pub fn tenants(&self) -> Vec<TenantPolicy> {
        self.inner
            .live_tenants()
            .into_iter()
            .map(TenantPolicy::from_inner)
            .collect()
    }
}

/// `pvgate plugin check FILE`: a throwaway engine (no reload thread) with
/// the default limits and cache.
pub fn check(path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
    let path: PathBuf = path.as_ref().to_path_buf();
    let config = PolicyEngineConfig {
        engine_limits: EngineLimits {
            max_plugins: 1,
            ..EngineLimits::default()
        },
        reload_poll: None,
        ..PolicyEngineConfig::default()
    };
    let engine = PolicyEngine::new(config).map_err(|e| {
        PluginError::new(
            None,
            &path,
            crate::load::PluginErrorKind::Compile(e.to_string()),
        )
    })?;
    engine.check(&path)
}
