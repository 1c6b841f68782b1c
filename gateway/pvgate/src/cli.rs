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
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The video path per frame (damage detection, copy, colour conversion,
    /// H.264, VP8) at 720p and 1080p for static, desktop and full-motion
    /// content, next to ffmpeg on the same frames.
    Display(BenchDisplayArgs),
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
}

#[derive(clap::Args, Debug)]
pub struct SimXenArgs {
    /// Directory for the simulator's sockets and guest memory files
    /// (created if missing; see gateway/platform/SIM-PROTOCOL.md).
    #[arg(long)]
    pub dir: PathBuf,
}
