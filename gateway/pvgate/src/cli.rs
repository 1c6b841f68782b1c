//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "pvgate",
    version,
    about = "Serve Xen guests' para-virtual display, sound and input to web browsers",
    long_about = "pvgate runs in a Xen dom0 as the backend for guests' displif (xen-drm-front), \
                  sndif (snd-xen-front) and kbdif (xen-kbdfront) frontends.\n\n\
                  No Xen at hand? `pvgate sim-xen` runs a simulated hypervisor that \
                  `pvgate serve --platform sim` and `pvgate-guest-sim` attach to."
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `pvgate=debug` (default: $RUST_LOG, else `info`).
    #[arg(long, global = true)]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway: watch for guests' vdispl/vsnd/vkbd devices and serve them.
    Serve(ServeArgs),
    /// Run a simulated Xen (xenstore, grant tables, event channels) in DIR, for
    /// the demo, tests and guests written in other languages.
    SimXen(SimXenArgs),
    /// The demo: a simulated Xen, simulated guests and the gateway, with the
    /// web server on --listen. Prints the URL to open.
    Demo(DemoArgs),
    /// Measure pvgate on this machine and print a markdown table.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Make a viewer token for the configuration: hashes the token read from
    /// standard input, or generates a random one when stdin is a terminal,
    /// and prints the `[[tenant.token]]` entry to paste.
    HashToken(HashTokenArgs),
    /// Check a tenant's policy plugin, or replay a recorded policy trace
    /// through it (before putting it into the configuration).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Load FILE.wasm as the gateway would: print its world version,
    /// imports, exports and size, or what is wrong with it (exit 2).
    Check(PluginCheckArgs),
    /// Replay a policy trace (`pvgate serve --record-policy-trace`, or
    /// written by hand) through FILE.wasm: each decision, the fuel and the
    /// time per call. Exits 2 if a call failed (trap, fuel, deadline).
    Test(PluginTestArgs),
}

#[derive(clap::Args, Debug)]
pub struct PluginCheckArgs {
    /// The plugin (a WebAssembly component of pvgate:policy/plugin@0.1.0).
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Where compiled code is cached (default: $XDG_CACHE_HOME/pvgate/policy,
    /// else /var/cache/pvgate/policy).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct PluginTestArgs {
    /// The plugin.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// The trace: a JSON document `{"events": [...]}` or JSON lines.
    #[arg(long, value_name = "TRACE.json")]
    pub events: PathBuf,
    /// A key/value the plugin reads with `config-get` (repeatable), as the
    /// tenant's `policy_config` table in the gateway's configuration.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::commands::plugin::parse_config_pair)]
    pub config: Vec<(String, String)>,
    /// The tenant to load it for (default: the first event's guest's tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Fuel per call (default 50000000, as the gateway).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Wall-clock deadline per call in milliseconds (default 50).
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<u64>,
    /// One JSON object per step instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even if calls failed (for traces of a misbehaving plugin).
    #[arg(long)]
    pub allow_failures: bool,
    /// Where compiled code is cached (as for `plugin check`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct HashTokenArgs {
    /// Generate a random token even if standard input is not a terminal.
    #[arg(long)]
    pub generate: bool,
    /// The user name to put in the printed entry.
    #[arg(long, default_value = "USER")]
    pub user: String,
    /// The role to put in the printed entry.
    #[arg(long, value_parser = ["view", "control"], default_value = "view")]
    pub role: String,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The video path per frame (damage detection, copy, colour conversion,
    /// H.264, VP8) at 720p and 1080p for static, desktop and full-motion
    /// content, next to ffmpeg on the same frames.
    Display(BenchDisplayArgs),
    /// Glass-to-glass latency in headless Chromium (guest draw → browser
    /// presentation), p50/p99 per size, codec and transport, and audio
    /// latency (guest playback → the page's audio output). Needs Debian's
    /// chromium and chromium-driver and the `pvgate-bench-e2e` binary built
    /// next to this one (`cargo build --release -p pvgate-browser-tests`).
    E2e(BenchE2eArgs),
}

#[derive(clap::Args, Debug)]
pub struct BenchE2eArgs {
    /// Frames measured per configuration.
    #[arg(long, default_value_t = 60)]
    pub samples: u32,
    /// Sizes, e.g. 1280x720,1920x1080.
    #[arg(long, default_value = "1280x720,1920x1080")]
    pub size: String,
    /// Codecs: h264, vp8.
    #[arg(long, default_value = "h264,vp8")]
    pub codec: String,
    /// Transports: webrtc, websocket.
    #[arg(long, default_value = "webrtc,websocket")]
    pub transport: String,
    /// Measure only video (skip the audio latency rows).
    #[arg(long, conflicts_with = "audio_only")]
    pub no_audio: bool,
    /// Measure only audio latency (guest playback → the page's audio output).
    #[arg(long)]
    pub audio_only: bool,
}

#[derive(clap::Args, Debug)]
pub struct BenchDisplayArgs {
    /// Frames per (size, content) run.
    #[arg(long, default_value_t = 60)]
    pub frames: u32,
    /// Skip the ffmpeg comparison.
    #[arg(long)]
    pub no_ffmpeg: bool,
    /// Only this size, e.g. 1280x720 (repeatable; default 1280x720 and 1920x1080).
    #[arg(long, value_parser = parse_size)]
    pub size: Vec<(u32, u32)>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| v.parse::<u32>().ok().filter(|v| (16..=8192).contains(v));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("{s:?}: width and height must be 16..8192")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlatformKind {
    /// Real Xen: xenstored, /dev/xen/gntdev, /dev/xen/evtchn.
    Xen,
    /// The simulator started by `pvgate sim-xen --dir DIR`.
    Sim,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Which hypervisor to serve.
    #[arg(long, value_enum, default_value_t = PlatformKind::Xen)]
    pub platform: PlatformKind,
    /// With `--platform sim`: the directory given to `pvgate sim-xen --dir`.
    #[arg(long, required_if_eq("platform", "sim"))]
    pub sim_dir: Option<PathBuf>,
    /// Address of the web server (API, snapshots, browser client).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The configuration: tenants, their guests and viewer tokens, allowed
    /// origins, streaming settings (TOML; see deploy/pvgate.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve without authentication: whoever reaches --listen sees and
    /// controls every guest. For trying pvgate on this machine only: refused
    /// unless --listen is a loopback address.
    #[arg(long, conflicts_with = "config")]
    pub insecure_no_auth: bool,
    /// Append every policy question (video, audio, admission, with their
    /// inputs) to FILE as JSON lines, for `pvgate plugin test PLUGIN.wasm
    /// --events FILE`.
    #[arg(long, value_name = "FILE")]
    pub record_policy_trace: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address of the web server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How many simulated guests to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=16))]
    pub guests: u16,
    /// Directory for the simulated Xen (default: a fresh one under /tmp,
    /// removed on exit). Keep it short: unix socket paths are limited.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The guest simulator binary (default: `pvgate-guest-sim` next to this
    /// binary).
    #[arg(long)]
    pub guest_sim: Option<PathBuf>,
    /// The demo tenant's control token (default: a random one). For scripts;
    /// letters, digits and `-._~` only, so the printed URL needs no escaping.
    #[arg(long, value_parser = parse_demo_token)]
    pub token: Option<String>,
}

fn parse_demo_token(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 256 {
        return Err("the token must be 1-256 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(format!(
            "{s:?}: use only letters, digits and -._~ (it goes into a URL as is)"
        ));
    }
    Ok(s.to_string())
}

#[derive(clap::Args, Debug)]
pub struct SimXenArgs {
    /// Directory for the simulator's sockets and guest memory files
    /// (created if missing; see gateway/platform/SIM-PROTOCOL.md).
    #[arg(long)]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tokens_must_go_into_a_url_as_they_are() {
        assert_eq!(
            parse_demo_token("test-token_1.~").unwrap(),
            "test-token_1.~"
        );
        assert!(parse_demo_token("").is_err());
        assert!(parse_demo_token("a&b").unwrap_err().contains("-._~"));
        assert!(parse_demo_token("a b").is_err());
        assert!(parse_demo_token(&"x".repeat(257)).is_err());
    }

    #[test]
    fn bench_e2e_measures_audio_only_or_no_audio_not_both() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["pvgate", "bench", "e2e"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Bench(BenchCommand::E2e(a)) => (a.audio_only, a.no_audio),
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(parse(&[]).unwrap(), (false, false));
        assert_eq!(parse(&["--audio-only"]).unwrap(), (true, false));
        assert_eq!(parse(&["--no-audio"]).unwrap(), (false, true));
        assert!(parse(&["--audio-only", "--no-audio"]).is_err());
    }

    #[test]
    fn serve_takes_a_config_or_the_insecure_flag_not_both() {
        let ok = Cli::try_parse_from(["pvgate", "serve", "--config", "/etc/pvgate.toml"]);
        assert!(ok.is_ok());
        let both = Cli::try_parse_from([
            "pvgate",
            "serve",
            "--config",
            "x.toml",
            "--insecure-no-auth",
        ]);
        assert!(both.is_err());
    }
}
