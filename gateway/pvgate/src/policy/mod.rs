//! The gateway's side of per-tenant policy (issue #6): one
//! [`TenantPolicy`] per configured tenant — its plugin, or the built-in
//! policy — asked by the device supervisor (sound limits per stream), the
//! shared encoders (video limits per connector) and the sessions
//! (admission, role, microphone).
//!
//! | module | job |
//! |---|---|
//! | [`settings`] | what the configuration says (`[policy]`, `policy`, `policy_config`, `labels`) |
//! | [`apply`] | decisions → encoder parameters, bitrate bounds, sndif limits (pure) |
//! | [`sound`] | the sndif backend's per-stream hook |
//! | [`metrics`] | policy counters in `/metrics` |
//!
//! Asking never fails and never blocks for long: the policy crate answers
//! every question within the per-call deadline, with a fallback if the
//! plugin misbehaves.

pub mod apply;
pub mod metrics;
pub mod settings;
pub mod sound;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use pvgate_platform::DomId;
use pvgate_policy::types::{self as pt, Admission, AudioPolicy, Clock, VideoPolicy};
use pvgate_policy::{EngineLimits, PolicyEngine, PolicyEngineConfig, TenantPolicy, TraceRecorder};

use crate::access::{self, Access};
use settings::{PolicySettings, TenantPolicyConfig};

/// The tenant name guests nobody claims are decided for (with
/// authentication off every guest is such a guest).
pub const UNCLAIMED: &str = "(unclaimed)";

struct Tenant {
    policy: TenantPolicy,
    config: TenantPolicyConfig,
}

/// Every tenant's policy, shared by the whole gateway.
pub struct Policies {
    /// `None` for [`Policies::builtin_only`] (tests, tools): the built-in
    /// decisions without a wasmtime engine behind them.
    engine: Option<PolicyEngine>,
    tenants: BTreeMap<String, Tenant>,
    /// For guests of no configured tenant.
    unclaimed: Option<TenantPolicy>,
    access: Arc<Access>,
    settings: PolicySettings,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a tenant's configuration contributes, keyed by tenant name.
pub type TenantConfigs = BTreeMap<String, TenantPolicyConfig>;

impl Policies {
    /// The policy engine and every tenant's plugin, loaded and checked now:
    /// a plugin that cannot be used stops the gateway at start with an
    /// error naming the configuration line, the tenant and the file.
    pub fn load(
        settings: &PolicySettings,
        tenants: &TenantConfigs,
        access: Arc<Access>,
    ) -> anyhow::Result<Policies> {
        let plugins = tenants.values().filter(|t| t.plugin.is_some()).count();
        let config = PolicyEngineConfig {
            call_limits: settings.call_limits,
            engine_limits: EngineLimits {
                memory_bytes: settings.memory_bytes,
                // Each tenant is a pool slot pair; a few spare for reloads.
                max_plugins: u32::try_from(plugins).unwrap_or(u32::MAX).max(1),
                ..EngineLimits::default()
            },
            // Nothing to compile without plugins: do not create (or warn
            // about) a cache directory then.
            cache_dir: if plugins == 0 {
                pvgate_policy::CacheDir::Disabled
            } else {
                settings.cache_dir.clone()
            },
            ..PolicyEngineConfig::default()
        };
        let engine = PolicyEngine::new(config).context("cannot start the policy engine")?;
        let mut loaded = BTreeMap::new();
        for (name, t) in tenants {
            let policy = match &t.plugin {
                None => engine.builtin(name),
                Some(path) => engine
                    .load_with_limits(
                        name,
                        path,
                        t.config.clone(),
                        t.call_limits.unwrap_or(settings.call_limits),
                    )
                    .with_context(|| {
                        format!(
                            "{}: the policy plugin of tenant {name:?} cannot be used \
                             (`pvgate plugin check FILE` shows the same; fix or remove `policy`)",
                            t.defined_at
                        )
                    })?,
            };
            loaded.insert(
                name.clone(),
                Tenant {
                    policy,
                    config: t.clone(),
                },
            );
        }
        Ok(Policies {
            unclaimed: Some(engine.builtin(UNCLAIMED)),
            engine: Some(engine),
            tenants: loaded,
            access,
            settings: settings.clone(),
        })
    }

    /// Built-in decisions for everyone, no engine (for tests and views that
    /// are not a gateway).
    pub fn builtin_only(access: Arc<Access>) -> Policies {
        Policies {
            engine: None,
            tenants: BTreeMap::new(),
            unclaimed: None,
            access,
            settings: PolicySettings::default(),
        }
    }

    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// Every live tenant policy (for `/metrics`).
    pub fn tenant_policies(&self) -> Vec<TenantPolicy> {
        self.engine
            .as_ref()
            .map(PolicyEngine::tenants)
            .unwrap_or_default()
    }

    /// Record every question asked from now on (`--record-policy-trace`).
    pub fn record_to(&self, recorder: Arc<TraceRecorder>) {
        for p in self.tenant_policies() {
            p.set_recorder(Some(recorder.clone()));
        }
    }

    /// Stop plugin calls in progress (shutdown).
    pub fn interrupt_all(&self) {
        for p in self.tenant_policies() {
            p.interrupt();
        }
    }

    /// The guest as a plugin sees it: tenant from the access rules, labels
    /// from the tenant's configuration.
    pub fn guest(&self, domid: DomId, name: &str) -> pt::Guest {
        let tenant = self.access.tenant_of(domid, name);
        let labels = tenant
            .as_ref()
            .and_then(|t| self.tenants.get(t))
            .map(|t| t.config.labels_of(u32::from(domid), name))
            .unwrap_or_default();
        pt::Guest {
            domid: u32::from(domid),
            name: name.to_string(),
            tenant: tenant.unwrap_or_else(|| {
                if self.access.is_open() {
                    access::OPEN_TENANT.to_string()
                } else {
                    UNCLAIMED.to_string()
                }
            }),
            labels,
        }
    }

    fn policy_of(&self, guest: &pt::Guest) -> Option<&TenantPolicy> {
        self.tenants
            .get(&guest.tenant)
            .map(|t| &t.policy)
            .or(self.unclaimed.as_ref())
    }

    /// Encoder limits for connector `index` of `guest`, showing `resolution`.
    pub fn video(&self, guest: &pt::Guest, index: u32, resolution: (u32, u32)) -> VideoPolicy {
        let connector = pt::DisplayConnector {
            index,
            resolution: pt::Size::new(resolution.0, resolution.1),
        };
        match self.policy_of(guest) {
            Some(p) => p.video(guest, &connector),
            None => builtin::video(guest, &connector),
        }
    }

    /// What a sound stream may negotiate and whether a microphone may feed it.
    pub fn audio(&self, guest: &pt::Guest, stream: &pt::SoundStream) -> AudioPolicy {
        match self.policy_of(guest) {
            Some(p) => p.audio(guest, stream),
            None => builtin::audio(guest, stream),
        }
    }

    /// May `viewer` (connecting from `remote`) open `guest`, and as what?
    /// The role is never above the token's (the policy crate clamps it).
    pub fn admit(
        &self,
        guest: &pt::Guest,
        viewer: &access::Viewer,
        remote: Option<std::net::SocketAddr>,
    ) -> Admission {
        let v = policy_viewer(viewer, remote);
        match self.policy_of(guest) {
            Some(p) => p.admit(guest, &v, Clock::now()),
            None => Admission::Allow(v.role),
        }
    }

    /// A per-viewer tightening of connector `index`'s encoder from the
    /// viewer's link statistics (`None`: no tightening). Only ever lowers
    /// the connector's video policy (the policy crate clamps it).
    pub fn adjust(
        &self,
        guest: &pt::Guest,
        index: u32,
        resolution: (u32, u32),
        viewer: &pt::Viewer,
        stats: &pt::LinkStats,
    ) -> Option<pt::Adjustment> {
        let connector = pt::DisplayConnector {
            index,
            resolution: pt::Size::new(resolution.0, resolution.1),
        };
        // The built-in policy adds nothing to congestion control.
        self.policy_of(guest)?
            .adjust(guest, &connector, viewer, stats)
    }
}

/// A viewer as plugins see it.
pub fn policy_viewer(viewer: &access::Viewer, remote: Option<std::net::SocketAddr>) -> pt::Viewer {
    pt::Viewer {
        tenant: viewer.tenant.clone(),
        user: viewer.user.clone(),
        role: role_to_policy(viewer.role),
        remote_address: remote.map(|a| a.to_string()).unwrap_or_default(),
    }
}

pub fn role_to_policy(r: access::Role) -> pt::Role {
    match r {
        access::Role::View => pt::Role::View,
        access::Role::Control => pt::Role::Control,
    }
}

pub fn role_from_policy(r: pt::Role) -> access::Role {
    match r {
        pt::Role::View => access::Role::View,
        pt::Role::Control => access::Role::Control,
    }
}

/// The built-in decisions, validated as the policy crate validates them,
/// for [`Policies::builtin_only`].
mod builtin {
    use pvgate_policy::types::*;
    use pvgate_policy::{defaults, validate, Bounds};

    pub fn video(g: &Guest, c: &DisplayConnector) -> VideoPolicy {
        validate::video(
            defaults::video(g, c),
            c,
            &Bounds::default(),
            &mut Vec::new(),
        )
    }

    pub fn audio(g: &Guest, s: &SoundStream) -> AudioPolicy {
        validate::audio(
            defaults::audio(g, s),
            g,
            s,
            &Bounds::default(),
            &mut Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests;
