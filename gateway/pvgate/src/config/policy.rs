//! The policy parts of the configuration: the top-level `[policy]` table
//! and each tenant's `policy`, `policy_config`, `policy_fuel_per_call`,
//! `policy_deadline_ms` and `[[tenant.labels]]` (deploy/pvgate.example.toml
//! documents them). Errors name the file, line and what to write, like the
//! rest of the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pvgate_policy::{CacheDir, CallLimits};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, GuestRef, RawGuest, Source, DOMID_FIRST_RESERVED};
use crate::policy::settings::{valid_label, LabelRule, PolicySettings, TenantPolicyConfig};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    cache_dir: Option<Spanned<String>>,
    cache: Option<bool>,
    fuel_per_call: Option<Spanned<u64>>,
    deadline_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<u64>>,
    recheck_seconds: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLabels {
    guests: Vec<Spanned<RawGuest>>,
    labels: Vec<Spanned<String>>,
}

/// A tenant's policy keys as written.
#[derive(Default)]
pub(super) struct RawTenantPolicy {
    pub policy: Option<Spanned<String>>,
    pub policy_config: BTreeMap<String, Spanned<toml::Value>>,
    pub policy_fuel_per_call: Option<Spanned<u64>>,
    pub policy_deadline_ms: Option<Spanned<u64>>,
    pub labels: Vec<RawLabels>,
}

const FUEL: std::ops::RangeInclusive<u64> = 100_000..=10_000_000_000;
const DEADLINE_MS: std::ops::RangeInclusive<u64> = 1..=10_000;

fn in_range(
    src: &Source,
    v: &Spanned<u64>,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64, ConfigError> {
    let x = *v.get_ref();
    if range.contains(&x) {
        Ok(x)
    } else {
        Err(src.error(
            v.span(),
            format!("{what} = {x}: use {} to {}", range.start(), range.end()),
        ))
    }
}

/// A path as written, relative to the configuration file's directory.
fn resolve(file: &str, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(file).parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// `[policy]`.
pub(super) fn settings(
    src: &Source,
    raw: Option<RawPolicy>,
) -> Result<PolicySettings, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut s = PolicySettings::default();
    if let Some(d) = &raw.cache_dir {
        if d.get_ref().trim().is_empty() {
            return Err(src.error(
                d.span(),
                "cache_dir is empty: give a directory for compiled plugins, or write cache = false",
            ));
        }
        s.cache_dir = CacheDir::Path(resolve(src.file, d.get_ref()));
    }
    if raw.cache == Some(false) {
        s.cache_dir = CacheDir::Disabled;
    }
    if let Some(f) = &raw.fuel_per_call {
        s.call_limits.fuel = in_range(src, f, FUEL, "fuel_per_call")?;
    }
    if let Some(d) = &raw.deadline_ms {
        s.call_limits.deadline =
            Duration::from_millis(in_range(src, d, DEADLINE_MS, "deadline_ms")?);
    }
    if let Some(m) = &raw.memory_mib {
        s.memory_bytes = (in_range(src, m, 1..=4096, "memory_mib")? as usize) << 20;
    }
    if let Some(r) = &raw.recheck_seconds {
        s.recheck = Duration::from_secs(in_range(src, r, 1..=86_400, "recheck_seconds")?);
    }
    Ok(s)
}

/// One guest reference of a `labels` rule (same rules as `guests`).
fn guest_ref(src: &Source, g: &Spanned<RawGuest>) -> Result<GuestRef, ConfigError> {
    match g.get_ref() {
        RawGuest::Domid(d) if (1..DOMID_FIRST_RESERVED).contains(d) => {
            Ok(GuestRef::Domid(*d as pvgate_platform::DomId))
        }
        RawGuest::Domid(d) => Err(src.error(
            g.span(),
            format!(
                "domid {d} is not a guest's: domids are 1 to {}",
                DOMID_FIRST_RESERVED - 1
            ),
        )),
        RawGuest::Pattern(p)
            if !p.is_empty() && p.len() <= 128 && !p.chars().any(|c| c.is_control() || c == '/') =>
        {
            Ok(GuestRef::Pattern(p.clone()))
        }
        RawGuest::Pattern(p) => Err(src.error(
            g.span(),
            format!("guest pattern {p:?}: write a guest name, with * for any run of characters and ? for one"),
        )),
    }
}

/// A tenant's `policy*` keys and `[[tenant.labels]]`.
pub(super) fn tenant(
    src: &Source,
    tenant: &str,
    raw: RawTenantPolicy,
) -> Result<TenantPolicyConfig, ConfigError> {
    let mut t = TenantPolicyConfig::default();
    if let Some(p) = &raw.policy {
        if p.get_ref().trim().is_empty() {
            return Err(src.error(
                p.span(),
                format!("tenant {tenant:?}: policy is empty: give the plugin's .wasm file, or remove the key for the built-in policy"),
            ));
        }
        t.plugin = Some(resolve(src.file, p.get_ref()));
        t.defined_at = format!("{}:{}", src.file, src.line_of(p.span()));
    } else if !raw.policy_config.is_empty() {
        tracing::warn!(
            tenant,
            "policy_config is set but there is no `policy` plugin to read it"
        );
    }
    for (k, v) in raw.policy_config {
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => {
                return Err(src.error(
                    v.span(),
                    format!("policy_config.{k}: write a string, number or boolean (the plugin reads every value as a string with config-get)"),
                ))
            }
        };
        t.config.insert(k, text);
    }
    if raw.policy_fuel_per_call.is_some() || raw.policy_deadline_ms.is_some() {
        let mut l = CallLimits::default();
        if let Some(f) = &raw.policy_fuel_per_call {
            l.fuel = in_range(src, f, FUEL, "policy_fuel_per_call")?;
        }
        if let Some(d) = &raw.policy_deadline_ms {
            l.deadline =
                Duration::from_millis(in_range(src, d, DEADLINE_MS, "policy_deadline_ms")?);
        }
        t.call_limits = Some(l);
    }
    for rule in raw.labels {
        let guests = rule
            .guests
            .iter()
            .map(|g| guest_ref(src, g))
            .collect::<Result<Vec<_>, _>>()?;
        let mut labels = Vec::new();
        for l in rule.labels {
            if !valid_label(l.get_ref()) {
                return Err(src.error(
                    l.span(),
                    format!(
                        "label {:?}: use 1-64 printable characters without spaces (e.g. \"gold\")",
                        l.get_ref()
                    ),
                ));
            }
            labels.push(l.into_inner());
        }
        t.labels.push(LabelRule { guests, labels });
    }
    Ok(t)
}
