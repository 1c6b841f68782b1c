//! Policy counters per tenant in the Prometheus text format, appended to
//! `/metrics`: calls, plugin answers, traps, timeouts, fuel and memory
//! exhaustion, fallbacks, reloads, corrections and fuel used (names from
//! `pvgate_policy::MetricsSnapshot::counters`, label `tenant`, plus
//! `plugin` = the file or "builtin").

use std::fmt::Write;

use pvgate_policy::TenantPolicy;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text per family: what a counter means to an operator.
fn help(name: &str) -> &'static str {
    match name {
        "pvgate_policy_calls_total" => "Policy decisions asked for (plugin or built-in).",
        "pvgate_policy_plugin_ok_total" => "Plugin calls that returned normally.",
        "pvgate_policy_traps_total" => "Plugin calls that trapped (panic, unreachable, bad value).",
        "pvgate_policy_timeouts_total" => "Plugin calls stopped by the wall-clock deadline.",
        "pvgate_policy_fuel_exhausted_total" => "Plugin calls that ran out of fuel.",
        "pvgate_policy_memory_exhausted_total" => "Plugin calls stopped at the memory cap.",
        "pvgate_policy_interrupted_total" => "Plugin calls interrupted (shutdown).",
        "pvgate_policy_fallbacks_total" => {
            "Decisions answered by a fallback (last good, built-in, or deny) instead of the plugin."
        }
        "pvgate_policy_instantiations_total" => "Plugin instances created (first and restarts).",
        "pvgate_policy_instantiation_failures_total" => "Plugin instances that failed to start.",
        "pvgate_policy_reloads_total" => "New plugin files swapped in.",
        "pvgate_policy_reload_failures_total" => {
            "New plugin files refused (the old one kept serving)."
        }
        "pvgate_policy_rejected_values_total" => "Plugin values the gateway corrected.",
        "pvgate_policy_log_lines_dropped_total" => "Plugin log lines dropped by the rate limit.",
        "pvgate_policy_fuel_used_total" => "Fuel spent by successful plugin calls.",
        "pvgate_policy_in_flight" => "Plugin calls running now.",
        "pvgate_policy_failures_total" => {
            "Plugin calls that failed (traps, timeouts, fuel, memory, interrupts)."
        }
        _ => "Policy counter.",
    }
}

/// The policy families for `tenants` whose name passes `visible`.
pub fn render(tenants: &[TenantPolicy], visible: impl Fn(&str) -> bool) -> String {
    let mut tenants: Vec<&TenantPolicy> = tenants.iter().filter(|t| visible(t.tenant())).collect();
    tenants.sort_by(|a, b| a.tenant().cmp(b.tenant()));
    if tenants.is_empty() {
        return String::new();
    }
    let snaps: Vec<_> = tenants
        .iter()
        .map(|t| {
            let plugin = t
                .plugin_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "builtin".into());
            (
                format!(
                    "tenant=\"{}\",plugin=\"{}\"",
                    escape(t.tenant()),
                    escape(&plugin)
                ),
                t.metrics().snapshot(),
            )
        })
        .collect();
    let mut out = String::new();
    let families = snaps[0].1.counters().map(|(n, _)| n);
    for (i, name) in families.iter().enumerate() {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {}", help(name));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, s) in &snaps {
            let _ = writeln!(out, "{name}{{{labels}}} {}", s.counters()[i].1);
        }
    }
    let name = "pvgate_policy_corrections_total";
    let _ = writeln!(out, "# HELP {name} Plugin values corrected, per kind.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, s) in &snaps {
        for (kind, v) in &s.corrections {
            let _ = writeln!(out, "{name}{{{labels},kind=\"{}\"}} {v}", escape(kind));
        }
    }
    out
}
