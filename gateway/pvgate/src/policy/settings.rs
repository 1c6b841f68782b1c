//! What the configuration says about policy plugins: the top-level
//! `[policy]` table (engine-wide limits, the compile cache) and each
//! tenant's plugin, its `config-get` table and its guests' labels.
//!
//! config.rs parses the TOML (and reports errors with file and line); these
//! are the validated values it produces, and what [`super::Policies`] is
//! built from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pvgate_policy::{CacheDir, CallLimits};

use crate::config::GuestRef;

/// `[policy]`: limits for every tenant's plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySettings {
    /// Where compiled plugins are cached.
    pub cache_dir: CacheDir,
    /// Fuel and wall-clock deadline per call (a tenant may override).
    pub call_limits: CallLimits,
    /// Linear memory per plugin instance.
    pub memory_bytes: usize,
    /// How often a live session's admission is asked again (a time-based
    /// rule such as office hours takes effect within this).
    pub recheck: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            cache_dir: CacheDir::Default,
            call_limits: CallLimits::default(),
            memory_bytes: pvgate_policy::EngineLimits::default().memory_bytes,
            recheck: Duration::from_secs(60),
        }
    }
}

/// Labels given to some of a tenant's guests (`[[tenant.labels]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRule {
    pub guests: Vec<GuestRef>,
    pub labels: Vec<String>,
}

/// One tenant's policy as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPolicyConfig {
    /// The plugin (`policy = "FILE.wasm"`, relative to the configuration
    /// file); `None`: the built-in policy.
    pub plugin: Option<PathBuf>,
    /// Where `policy` was written (`FILE:LINE`), for load errors.
    pub defined_at: String,
    /// What the plugin's `config-get(key)` answers (`[tenant.policy_config]`).
    pub config: BTreeMap<String, String>,
    /// This tenant's fuel / deadline, if not the `[policy]` defaults.
    pub call_limits: Option<CallLimits>,
    pub labels: Vec<LabelRule>,
}

impl TenantPolicyConfig {
    /// The labels of guest `domid` named `name`: every matching rule's, in
    /// rule order, without repeats.
    pub fn labels_of(&self, domid: u32, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in &self.labels {
            let hit = rule.guests.iter().any(|g| match g {
                GuestRef::Domid(d) => u32::from(*d) == domid,
                GuestRef::Pattern(p) => crate::config::glob_match(p, name),
            });
            if hit {
                for l in &rule.labels {
                    if !out.contains(l) {
                        out.push(l.clone());
                    }
                }
            }
        }
        out
    }
}

/// A label as the configuration may write it: 1-64 printable characters
/// without spaces (plugins compare them as strings).
pub fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_union_of_matching_rules() {
        let t = TenantPolicyConfig {
            labels: vec![
                LabelRule {
                    guests: vec![GuestRef::Domid(5), GuestRef::Pattern("acme-db-*".into())],
                    labels: vec!["gold".into()],
                },
                LabelRule {
                    guests: vec![GuestRef::Pattern("acme-*".into())],
                    labels: vec!["bronze".into(), "gold".into()],
                },
            ],
            ..TenantPolicyConfig::default()
        };
        assert_eq!(t.labels_of(5, "x"), vec!["gold"]);
        assert_eq!(t.labels_of(9, "acme-db-1"), vec!["gold", "bronze"]);
        assert_eq!(t.labels_of(9, "acme-web"), vec!["bronze", "gold"]);
        assert!(t.labels_of(9, "other").is_empty());
        assert!(valid_label("gold") && !valid_label("") && !valid_label("a b"));
    }
}
