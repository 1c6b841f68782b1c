//! One tenant's policy: the built-in one, or a plugin with its fallbacks,
//! validation, last-good memory and hot reload. Every method answers: a
//! plugin failure becomes a fallback decision, never an error.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use wasmtime::Store;

use crate::bindings::{pvgate::policy::types as wit, PolicyFuncs};
use crate::defaults;
use crate::engine::EngineInner;
use crate::host::{HostState, Who};
use crate::limits::CallLimits;
use crate::load::{self, PluginError, PluginErrorKind, PluginInfo};
use crate::metrics::{bump, PolicyMetrics};
use crate::report::{CallReport, Source};
use crate::supervisor::{CallKind, Failure, Supervisor, SupervisorParts};
use crate::trace::{PolicyEvent, TraceRecorder};
use crate::types::*;
use crate::validate::{self, Correction};

/// How many last-good decisions are kept per kind. Past that an arbitrary
/// old one is forgotten: the map must not grow with every viewer address
/// ever seen.
const MEMORY_CAP: usize = 4096;

struct Bounded<K, V>(HashMap<K, V>);

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn insert(&mut self, k: K, v: V) {
        if self.0.len() >= MEMORY_CAP && !self.0.contains_key(&k) {
            if let Some(old) = self.0.keys().next().cloned() {
                self.0.remove(&old);
            }
        }
        self.0.insert(k, v);
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.0.get(k)
    }
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded(HashMap::new())
    }
}

/// Adjustments are per viewer on a connector.
type AdjustKey = (u32, u32, String, String);

/// The last good decision for each question, by the call's inputs.
#[derive(Default)]
struct Memory {
    video: Bounded<(u32, u32), VideoPolicy>,
    audio: Bounded<(u32, String), AudioPolicy>,
    adjust: Bounded<AdjustKey, Option<Adjustment>>,
}

/// One loaded plugin file; swapped whole on reload.
pub(crate) struct Loaded {
    info: PluginInfo,
    sha: [u8; 32],
    sup: Supervisor,
    /// Correction kinds already logged for this file (bit per kind): a
    /// plugin that is wrong on every call is logged once per kind.
    warned: AtomicU32,
}

/// File identity seen by the watcher (stat only; hashed when it changes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    size: u64,
}

#[derive(Default)]
struct Watch {
    seen: Option<Stamp>,
    /// The file is missing and that was logged.
    missing_logged: bool,
}

struct PluginSlot {
    path: PathBuf,
    file_label: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    limits: CallLimits,
    cancel: Arc<AtomicU64>,
    current: ArcSwap<Loaded>,
    /// Serialises reloads (watcher vs explicit `reload`).
    watch: Mutex<Watch>,
}

pub(crate) struct TenantInner {
    tenant: Arc<str>,
    engine: Arc<EngineInner>,
    metrics: Arc<PolicyMetrics>,
    memory: Mutex<Memory>,
    recorder: ArcSwapOption<TraceRecorder>,
    plugin: Option<PluginSlot>,
}

/// A tenant's policy. Cheap to clone; all clones are the same tenant.
#[derive(Clone)]
pub struct TenantPolicy {
    inner: Arc<TenantInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TenantPolicy {
    pub(crate) fn from_inner(inner: Arc<TenantInner>) -> Self {
        TenantPolicy { inner }
    }

    pub(crate) fn builtin(engine: Arc<EngineInner>, tenant: &str) -> Self {
        let inner = Arc::new(TenantInner {
            tenant: tenant.into(),
            engine: engine.clone(),
            metrics: Arc::default(),
            memory: Mutex::default(),
            recorder: ArcSwapOption::empty(),
            plugin: None,
        });
        engine.register(&inner);
        TenantPolicy { inner }
    }

    pub(crate) fn load(
        engine: Arc<EngineInner>,
        tenant: &str,
        path: &Path,
        config: BTreeMap<String, String>,
        limits: CallLimits,
    ) -> Result<Self, PluginError> {
        let metrics: Arc<PolicyMetrics> = Arc::default();
        let config = Arc::new(config);
        let cancel = Arc::new(AtomicU64::new(0));
        let file_label: Arc<str> = path.display().to_string().into();
        let err = |kind| PluginError::new(Some(tenant), path, kind);
        let stamp = std::fs::metadata(path).ok().map(|m| stamp_of(&m));
        let loaded = build(
            &engine,
            tenant.into(),
            path,
            file_label.clone(),
            config.clone(),
            metrics.clone(),
            cancel.clone(),
            limits,
        )
        .map_err(err)?;
        tracing::info!(
            tenant,
            plugin = &*file_label,
            sha256 = %loaded.info.sha256,
            from_cache = loaded.info.from_cache,
            load_ms = loaded.info.load_ms,
            "policy plugin loaded"
        );
        let inner = Arc::new(TenantInner {
            tenant: tenant.into(),
            engine: engine.clone(),
            metrics,
            memory: Mutex::default(),
            recorder: ArcSwapOption::empty(),
            plugin: Some(PluginSlot {
                path: path.to_path_buf(),
                file_label,
                config,
                limits,
                cancel,
                current: ArcSwap::from_pointee(loaded),
                watch: Mutex::new(Watch {
                    seen: stamp,
                    missing_logged: false,
                }),
            }),
        });
        engine.register(&inner);
        Ok(TenantPolicy { inner })
    }

    pub(crate) fn check(engine: Arc<EngineInner>, path: &Path) -> Result<PluginInfo, PluginError> {
        let loaded = build(
            &engine,
            "(check)".into(),
            path,
            path.display().to_string().into(),
            Arc::default(),
            Arc::default(),
            Arc::default(),
            engine.config.call_limits,
        )
        .map_err(|kind| PluginError::new(None, path, kind))?;
        Ok(loaded.info.clone())
    }

    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The plugin file, or `None` for the built-in policy.
    pub fn plugin_path(&self) -> Option<&Path> {
        self.inner.plugin.as_ref().map(|p| p.path.as_path())
    }

    /// What is loaded now (changes on reload).
    pub fn plugin_info(&self) -> Option<PluginInfo> {
        self.inner
            .plugin
            .as_ref()
            .map(|p| p.current.load().info.clone())
    }

    pub fn metrics(&self) -> &Arc<PolicyMetrics> {
        &self.inner.metrics
    }

    /// Records every call's inputs to `recorder` (or stops, with `None`).
    pub fn set_recorder(&self, recorder: Option<Arc<TraceRecorder>>) {
        self.inner.recorder.store(recorder);
    }

    /// Stops the plugin call running now, if any (it is answered with the
    /// fallback and the instance restarted). For shutdown, and for tests.
    pub fn interrupt(&self) {
        if let Some(p) = &self.inner.plugin {
            p.cancel.fetch_add(1, Ordering::SeqCst);
        }
    }

    // ---- the four questions -------------------------------------------

    pub fn video(&self, guest: &Guest, connector: &DisplayConnector) -> VideoPolicy {
        self.video_with_report(guest, connector).0
    }

    pub fn video_with_report(
        &self,
        guest: &Guest,
        connector: &DisplayConnector,
    ) -> (VideoPolicy, CallReport) {
        let b = self.inner.engine.config.bounds;
        let key = (guest.domid, connector.index);
        self.decide(
            CallKind::Video,
            || PolicyEvent::Video {
                guest: guest.clone(),
                connector: *connector,
            },
            |f, s| {
                f.video
                    .call(
                        s,
                        (
                            wit::Guest::from(guest),
                            wit::DisplayConnector::from(connector),
                        ),
                    )
                    .map(|(v,)| VideoPolicy::from(v))
            },
            || defaults::video(guest, connector),
            |v, out| validate::video(v, connector, &b, out),
            |m, v| m.video.insert(key, v.clone()),
            |m, _| m.video.get(&key).cloned().map(|v| (v, Source::LastGood)),
        )
    }

    pub fn audio(&self, guest: &Guest, stream: &SoundStream) -> AudioPolicy {
        self.audio_with_report(guest, stream).0
    }

    pub fn audio_with_report(
        &self,
        guest: &Guest,
        stream: &SoundStream,
    ) -> (AudioPolicy, CallReport) {
        let b = self.inner.engine.config.bounds;
        let key = (guest.domid, stream.unique_id.clone());
        self.decide(
            CallKind::Audio,
            || PolicyEvent::Audio {
                guest: guest.clone(),
                stream: stream.clone(),
            },
            |f, s| {
                f.audio
                    .call(s, (wit::Guest::from(guest), wit::SoundStream::from(stream)))
                    .map(|(a,)| AudioPolicy::from(a))
            },
            || defaults::audio(guest, stream),
            |a, out| validate::audio(a, guest, stream, &b, out),
            |m, a| m.audio.insert(key.clone(), a.clone()),
            |m, _| m.audio.get(&key).cloned().map(|a| (a, Source::LastGood)),
        )
    }

    pub fn admit(&self, guest: &Guest, viewer: &Viewer, now: Clock) -> Admission {
        self.admit_with_report(guest, viewer, now).0
    }

    pub fn admit_with_report(
        &self,
        guest: &Guest,
        viewer: &Viewer,
        now: Clock,
    ) -> (Admission, CallReport) {
        let b = self.inner.engine.config.bounds;
        self.decide(
            CallKind::Admit,
            || PolicyEvent::Admit {
                guest: guest.clone(),
                viewer: viewer.clone(),
                now,
            },
            |f, s| {
                f.admit
                    .call(
                        s,
                        (
                            wit::Guest::from(guest),
                            wit::Viewer::from(viewer),
                            wit::Clock::from(now),
                        ),
                    )
                    .map(|(a,)| Admission::from(a))
            },
            || defaults::admit(guest, viewer, now),
            |a, out| validate::admission(a, viewer, &b, out),
            |_, _| {},
            // Never let someone in on an old answer: a time- or
            // revocation-based rule must not be bypassed by breaking the
            // plugin.
            |_, _| {
                Some((
                    Admission::Deny(
                        "the access policy is unavailable right now; try again shortly".into(),
                    ),
                    Source::Deny,
                ))
            },
        )
    }

    pub fn adjust(
        &self,
        guest: &Guest,
        connector: &DisplayConnector,
        viewer: &Viewer,
        stats: &LinkStats,
    ) -> Option<Adjustment> {
        self.adjust_with_report(guest, connector, viewer, stats).0
    }

    pub fn adjust_with_report(
        &self,
        guest: &Guest,
        connector: &DisplayConnector,
        viewer: &Viewer,
        stats: &LinkStats,
    ) -> (Option<Adjustment>, CallReport) {
        let b = self.inner.engine.config.bounds;
        let key: AdjustKey = (
            guest.domid,
            connector.index,
            viewer.user.clone(),
            viewer.remote_address.clone(),
        );
        // An adjustment may only tighten the connector's current policy.
        let video = lock(&self.inner.memory)
            .video
            .get(&(guest.domid, connector.index))
            .cloned();
        self.decide(
            CallKind::Adjust,
            || PolicyEvent::Adjust {
                guest: guest.clone(),
                connector: *connector,
                viewer: viewer.clone(),
                stats: *stats,
            },
            |f, s| {
                f.adjust
                    .call(
                        s,
                        (
                            wit::Guest::from(guest),
                            wit::DisplayConnector::from(connector),
                            wit::Viewer::from(viewer),
                            wit::LinkStats::from(stats),
                        ),
                    )
                    .map(|(a,)| a.map(Adjustment::from))
            },
            || defaults::adjust(guest, connector, viewer, stats),
            |a, out| validate::adjustment(a, video.as_ref(), &b, out),
            |m, a| m.adjust.insert(key.clone(), *a),
            |m, _| m.adjust.get(&key).copied().map(|a| (a, Source::LastGood)),
        )
    }

    /// The common path of the four questions: record, ask the plugin (or
    /// the built-in policy), validate and remember, or fall back.
    #[allow(clippy::too_many_arguments)]
    fn decide<O>(
        &self,
        kind: CallKind,
        event: impl FnOnce() -> PolicyEvent,
        call: impl FnOnce(&PolicyFuncs, &mut Store<HostState>) -> wasmtime::Result<O>,
        builtin: impl FnOnce() -> O,
        validate: impl Fn(O, &mut Vec<Correction>) -> O,
        remember: impl FnOnce(&mut Memory, &O),
        fallback: impl FnOnce(&Memory, &Failure) -> Option<(O, Source)>,
    ) -> (O, CallReport) {
        let start = Instant::now();
        let inner = &*self.inner;
        bump(&inner.metrics.calls);
        if let Some(rec) = inner.recorder.load().as_ref() {
            rec.record_logged(&event(), &inner.tenant);
        }
        let report = |source, failure, fuel_used, corrections| CallReport {
            call: kind,
            source,
            failure,
            fuel_used,
            duration_ns: start.elapsed().as_nanos() as u64,
            corrections,
        };

        let Some(p) = &inner.plugin else {
            // Built-in decisions are validated too (an operator may have
            // set tighter bounds), but those corrections are not the
            // tenant's fault and are not counted.
            let v = validate(builtin(), &mut Vec::new());
            remember(&mut lock(&inner.memory), &v);
            return (v, report(Source::Builtin, None, None, Vec::new()));
        };

        let loaded = p.current.load_full();
        let called = loaded.sup.call(kind, call);
        match called.result {
            Ok(raw) => {
                bump(&inner.metrics.plugin_ok);
                let mut corrections = Vec::new();
                let v = validate(raw, &mut corrections);
                for c in &corrections {
                    inner.metrics.count_correction(c.kind);
                    let bit = 1u32 << (c.kind as u32);
                    if loaded.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                        tracing::warn!(
                            tenant = &*inner.tenant,
                            plugin = &*p.file_label,
                            call = kind.name(),
                            "policy plugin decision corrected: {} (logged once per kind)",
                            c.detail
                        );
                    }
                }
                remember(&mut lock(&inner.memory), &v);
                (
                    v,
                    report(Source::Plugin, None, called.fuel_used, corrections),
                )
            }
            Err(failure) => {
                bump(&inner.metrics.fallbacks);
                let found = fallback(&lock(&inner.memory), &failure);
                let (v, source) = match found {
                    Some(x) => x,
                    None => (validate(builtin(), &mut Vec::new()), Source::Default),
                };
                (
                    v,
                    report(source, Some(failure), called.fuel_used, Vec::new()),
                )
            }
        }
    }

    // ---- reload ---------------------------------------------------------

    /// Re-reads the plugin file now; swaps it in if its content changed.
    /// `Ok(true)`: a new plugin serves from the next call on. `Err`: the
    /// new file was refused and the old plugin keeps serving.
    pub fn reload(&self) -> Result<bool, PluginError> {
        self.poll_file(true)
    }

    /// The watcher's check: stat the file and, if it changed (or `force`),
    /// hash it and reload when the content differs.
    pub(crate) fn poll_file(&self, force: bool) -> Result<bool, PluginError> {
        let inner = &*self.inner;
        let Some(p) = &inner.plugin else {
            return Ok(false);
        };
        let err = |kind| PluginError::new(Some(&inner.tenant), &p.path, kind);
        let mut watch = lock(&p.watch);
        let meta = match std::fs::metadata(&p.path) {
            Ok(m) => m,
            Err(e) => {
                if !watch.missing_logged {
                    watch.missing_logged = true;
                    tracing::warn!(tenant = &*inner.tenant, plugin = &*p.file_label, error = %e,
                        "policy plugin file unreadable; the loaded plugin keeps serving");
                }
                return Err(err(PluginErrorKind::Io(e)));
            }
        };
        watch.missing_logged = false;
        let stamp = stamp_of(&meta);
        if !force && watch.seen == Some(stamp) {
            return Ok(false);
        }
        // Remember the stamp even if the new file is refused: a bad file is
        // reported once, not every poll; the next write is tried again.
        watch.seen = Some(stamp);
        let (_, sha) = load::read(&p.path, inner.engine.config.engine_limits.max_plugin_bytes)
            .map_err(|k| self.reload_failed(err(k)))?;
        if sha == p.current.load().sha {
            return Ok(false);
        }
        let loaded = build(
            &inner.engine,
            inner.tenant.clone(),
            &p.path,
            p.file_label.clone(),
            p.config.clone(),
            inner.metrics.clone(),
            p.cancel.clone(),
            p.limits,
        )
        .map_err(|k| self.reload_failed(err(k)))?;
        let info = loaded.info.clone();
        // In-flight calls hold the old `Arc<Loaded>` and finish on it.
        p.current.store(Arc::new(loaded));
        bump(&inner.metrics.reloads);
        tracing::info!(
            tenant = &*inner.tenant,
            plugin = &*p.file_label,
            sha256 = %info.sha256,
            load_ms = info.load_ms,
            "policy plugin reloaded"
        );
        Ok(true)
    }

    fn reload_failed(&self, e: PluginError) -> PluginError {
        bump(&self.inner.metrics.reload_failures);
        tracing::warn!("{e}; the previous plugin keeps serving");
        e
    }

    /// Bench support: the time to create a fresh instance from the
    /// `InstancePre` (it replaces the current one).
    #[doc(hidden)]
    pub fn bench_instantiate(&self) -> Option<std::time::Duration> {
        let p = self.inner.plugin.as_ref()?;
        p.current.load().sup.instantiate_fresh()
    }
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    Stamp {
        mtime: m.modified().ok(),
        size: m.len(),
    }
}

/// Reads, checks, compiles and instantiates a plugin file for a tenant.
#[allow(clippy::too_many_arguments)]
fn build(
    engine: &EngineInner,
    tenant: Arc<str>,
    path: &Path,
    file_label: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    metrics: Arc<PolicyMetrics>,
    cancel: Arc<AtomicU64>,
    limits: CallLimits,
) -> Result<Loaded, PluginErrorKind> {
    let prepared = load::prepare(engine, path)?;
    let sup = Supervisor::new(SupervisorParts {
        pre: prepared.pre,
        indices: prepared.indices,
        who: Who {
            tenant,
            file: file_label,
        },
        config,
        metrics,
        cancel,
        limits,
        memory_bytes: engine.config.engine_limits.memory_bytes,
        backoff: engine.config.backoff,
    });
    // Instantiate now: a file whose start code traps, or whose exports do
    // not type-check, is refused here rather than failing its first call.
    sup.instantiate_now()?;
    Ok(Loaded {
        info: prepared.info,
        sha: prepared.sha,
        sup,
        warned: AtomicU32::new(0),
    })
}
