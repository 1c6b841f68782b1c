//! `pvgate plugin check FILE.wasm` and `pvgate plugin test FILE.wasm
//! --events TRACE.json`: what an operator runs before putting a tenant's
//! policy plugin into the configuration.
//!
//! Both load the plugin exactly as the gateway would (same checks, same
//! limits, same validation of decisions), so a plugin that passes here is
//! one `serve` accepts, and the decisions printed are the ones it would
//! apply. The printing is kept apart from the running so the tests can
//! check the text without a plugin.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use pvgate_policy::types::*;
use pvgate_policy::{
    CacheDir, CallLimits, Decision, EngineLimits, PluginInfo, PolicyEngine, PolicyEngineConfig,
    PolicyEvent, PolicyTrace, ReplayStep, Source,
};

use super::emit;
use crate::cli::{PluginCheckArgs, PluginCommand, PluginTestArgs};

pub fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Check(args) => check(args),
        PluginCommand::Test(args) => test(args),
    }
}

/// An engine for one plugin, run once: no file watcher, a pool of one.
fn engine(cache_dir: Option<&Path>, limits: CallLimits) -> anyhow::Result<PolicyEngine> {
    let config = PolicyEngineConfig {
        call_limits: limits,
        engine_limits: EngineLimits {
            max_plugins: 1,
            ..EngineLimits::default()
        },
        cache_dir: match cache_dir {
            Some(d) => CacheDir::Path(d.to_path_buf()),
            None => CacheDir::Default,
        },
        reload_poll: None,
        ..PolicyEngineConfig::default()
    };
    Ok(PolicyEngine::new(config)?)
}

fn check(args: PluginCheckArgs) -> anyhow::Result<()> {
    let engine = engine(args.cache_dir.as_deref(), CallLimits::default())?;
    // The error already names the file and says what to do.
    let info = engine.check(&args.file)?;
    emit(&format!(
        "{}ok: the gateway would load this plugin\n",
        describe(&info)
    ))?;
    Ok(())
}

/// The `plugin check` report of a plugin that passed.
pub fn describe(info: &PluginInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", info.path.display());
    let _ = writeln!(s, "  world      {}", info.world);
    let _ = writeln!(s, "  size       {} bytes", info.size);
    let _ = writeln!(s, "  sha256     {}", info.sha256);
    let _ = writeln!(s, "  imports    {}", list(&info.imports));
    let _ = writeln!(s, "  exports    {}", list(&info.exports));
    let _ = writeln!(s, "  functions  {}", list(&info.functions));
    let _ = writeln!(
        s,
        "  compiled   {:.1} ms ({})",
        info.load_ms,
        if info.from_cache {
            "from the cache"
        } else {
            "not cached"
        }
    );
    s
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// `k=v` from `--config`.
pub fn parse_config_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "{s:?}: write --config KEY=VALUE (what the plugin's config-get(KEY) returns)"
        )),
    }
}

fn test(args: PluginTestArgs) -> anyhow::Result<()> {
    // Its message already names the file and the cause; as an error chain
    // the cause would print twice.
    let trace = PolicyTrace::load(&args.events).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config: BTreeMap<String, String> = args.config.iter().cloned().collect();
    let limits = CallLimits {
        fuel: args.fuel.unwrap_or(CallLimits::default().fuel),
        deadline: args
            .deadline_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(CallLimits::default().deadline),
    };
    let engine = engine(args.cache_dir.as_deref(), limits)?;
    // The tenant the plugin is loaded for: the trace's own when it has one
    // (what `config-get` and the log lines are attributed to).
    let tenant = args
        .tenant
        .clone()
        .or_else(|| trace.events.first().map(|e| guest_of(e).tenant.clone()))
        .unwrap_or_else(|| "test".into());
    let policy = engine
        .load_with_limits(&tenant, &args.file, config, limits)
        .with_context(|| "the plugin cannot be loaded, so nothing was replayed")?;
    let steps = pvgate_policy::replay(&policy, &trace);
    let mut open = true;
    for step in &steps {
        let text = if args.json {
            format!("{}\n", serde_json::to_string(step)?)
        } else {
            format_step(step)
        };
        open = open && emit(&text)?;
    }
    if open && !args.json {
        emit(&summary(&steps))?;
    }
    let failed = steps.iter().filter(|s| !s.report.answered()).count();
    anyhow::ensure!(
        failed == 0 || args.allow_failures,
        "{failed} of {} calls did not get the plugin's own answer (trap, fuel, deadline: see above); \
         the gateway would apply the fallback shown. Pass --allow-failures to accept that",
        steps.len()
    );
    Ok(())
}

fn guest_of(e: &PolicyEvent) -> &Guest {
    match e {
        PolicyEvent::Video { guest, .. }
        | PolicyEvent::Audio { guest, .. }
        | PolicyEvent::Admit { guest, .. }
        | PolicyEvent::Adjust { guest, .. } => guest,
    }
}

fn guest_label(g: &Guest) -> String {
    let mut s = format!("dom{} {}", g.domid, g.name);
    if !g.labels.is_empty() {
        let _ = write!(s, " [{}]", g.labels.join(","));
    }
    s
}

fn kebab<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn kebabs<T: serde::Serialize>(v: &[T]) -> String {
    v.iter().map(kebab).collect::<Vec<_>>().join(",")
}

fn question(e: &PolicyEvent) -> String {
    match e {
        PolicyEvent::Video { guest, connector } => format!(
            "video  {} connector {} {}x{}",
            guest_label(guest),
            connector.index,
            connector.resolution.width,
            connector.resolution.height
        ),
        PolicyEvent::Audio { guest, stream } => format!(
            "audio  {} stream {} {} offers {} @ {} Hz, {}..{} ch",
            guest_label(guest),
            stream.unique_id,
            kebab(&stream.direction),
            kebabs(&stream.formats),
            stream
                .rates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            stream.channels_min,
            stream.channels_max
        ),
        PolicyEvent::Admit { guest, viewer, now } => format!(
            "admit  {} viewer {}/{} ({}) from {} at unix {}",
            guest_label(guest),
            viewer.tenant,
            viewer.user,
            kebab(&viewer.role),
            viewer.remote_address,
            now.unix_seconds
        ),
        PolicyEvent::Adjust {
            guest,
            connector,
            viewer,
            stats,
        } => format!(
            "adjust {} connector {} viewer {}: rtt {} ms, loss {}‰, {} bit/s, {} fps",
            guest_label(guest),
            connector.index,
            viewer.user,
            stats.rtt_ms,
            stats.loss_permille,
            stats.estimated_bps,
            stats.fps_achieved
        ),
    }
}

fn answer(d: &Decision) -> String {
    match d {
        Decision::Video(v) => format!(
            "codecs {}, bitrate {}..{} bit/s, ≤ {} fps, ≤ {}x{}, keyframe every {} ms, {}",
            kebabs(&v.codecs),
            v.min_bitrate_bps,
            v.max_bitrate_bps,
            v.max_fps,
            v.max_size.width,
            v.max_size.height,
            v.keyframe_interval_ms,
            kebab(&v.quality)
        ),
        Decision::Audio(a) => format!(
            "formats {}, rates {}, ≤ {} ch, opus {} bit/s, capture {}",
            kebabs(&a.formats),
            a.rates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            a.channels_max,
            a.opus_bitrate_bps,
            if a.capture_allowed {
                "allowed"
            } else {
                "refused"
            }
        ),
        Decision::Admit(Admission::Allow(role)) => format!("allow as {}", kebab(role)),
        Decision::Admit(Admission::Deny(reason)) => format!("deny: {reason}"),
        Decision::Adjust(None) => "no adjustment".into(),
        Decision::Adjust(Some(a)) => format!(
            "tighten to ≤ {} bit/s, ≤ {} fps",
            a.max_bitrate_bps, a.max_fps
        ),
    }
}

fn source(s: Source) -> &'static str {
    match s {
        Source::Builtin => "built-in policy",
        Source::Plugin => "plugin",
        Source::LastGood => "fallback: last good decision",
        Source::Default => "fallback: built-in policy",
        Source::Deny => "fallback: denied",
    }
}

/// One replayed step: the question, the decision, who answered, fuel, time,
/// and anything the gateway corrected.
pub fn format_step(step: &ReplayStep) -> String {
    let r = &step.report;
    let mut s = format!("#{:<3} {}\n", step.index, question(&step.event));
    let _ = writeln!(s, "      → {}", answer(&step.decision));
    let fuel = r
        .fuel_used
        .map(|f| format!("fuel {f}"))
        .unwrap_or_else(|| "no plugin code ran".into());
    let _ = writeln!(
        s,
        "      {}; {}; {:.1} µs",
        source(r.source),
        fuel,
        r.duration_ns as f64 / 1e3
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(s, "      the plugin {f}");
    }
    for c in &r.corrections {
        let _ = writeln!(s, "      corrected: {}", c.detail);
    }
    s
}

/// Totals after the steps: calls, failures, corrections, fuel and time
/// per call.
pub fn summary(steps: &[ReplayStep]) -> String {
    let n = steps.len();
    if n == 0 {
        return "the trace has no events\n".into();
    }
    let failures = steps.iter().filter(|s| !s.report.answered()).count();
    let corrections: usize = steps.iter().map(|s| s.report.corrections.len()).sum();
    let mut fuel: Vec<u64> = steps.iter().filter_map(|s| s.report.fuel_used).collect();
    fuel.sort_unstable();
    let mut ns: Vec<u64> = steps.iter().map(|s| s.report.duration_ns).collect();
    ns.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let mut s = format!("{n} calls, {failures} failed, {corrections} values corrected\n");
    if !fuel.is_empty() {
        let _ = writeln!(
            s,
            "fuel per call: median {}, max {}",
            pct(&fuel, 0.5),
            fuel[fuel.len() - 1]
        );
    }
    let _ = writeln!(
        s,
        "time per call: median {:.1} µs, p99 {:.1} µs (the first call includes instantiation)",
        pct(&ns, 0.5) as f64 / 1e3,
        pct(&ns, 0.99) as f64 / 1e3
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_need_a_key() {
        assert_eq!(
            parse_config_pair("mode=loop").unwrap(),
            ("mode".into(), "loop".into())
        );
        assert_eq!(
            parse_config_pair("tz=+01:00=x").unwrap(),
            ("tz".into(), "+01:00=x".into())
        );
        assert_eq!(parse_config_pair("empty=").unwrap().1, "");
        assert!(parse_config_pair("novalue")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse_config_pair("=v").is_err());
    }

    #[test]
    fn decisions_print_in_the_wit_spelling() {
        let d = Decision::Video(VideoPolicy {
            codecs: vec![Codec::H264, Codec::Vp8],
            min_bitrate_bps: 50_000,
            max_bitrate_bps: 500_000,
            max_fps: 15,
            max_size: Size::new(854, 480),
            keyframe_interval_ms: 2000,
            quality: QualityMode::Screen,
        });
        let a = answer(&d);
        assert!(a.contains("codecs h264,vp8"), "{a}");
        assert!(a.contains("≤ 854x480"), "{a}");
        assert_eq!(
            answer(&Decision::Admit(Admission::Deny("closed".into()))),
            "deny: closed"
        );
    }
}
