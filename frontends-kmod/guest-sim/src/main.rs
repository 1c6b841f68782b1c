//! `pvgate-guest-sim`: a simulated Xen guest attached to a sim directory.
//!
//! By default it plays the toolstack (creates the domain and its devices as
//! `xl create` would), then runs the guest's frontends: every display shows
//! the chosen scene at the chosen rate, every playback stream plays tones,
//! every capture stream records, input events move the cursor and type into
//! the text line. It stops on Ctrl-C or SIGTERM, closing every device as
//! the Linux drivers do and destroying the domain.
//!
//! Machine-readable lines on stdout (one event per line) let a test follow
//! it: `state <device> <XenbusState>`, `input <device> <event>`,
//! `display <device>/<connector> flips=<n>`, `sound <device>/<stream> ...`,
//! `misbehave <mode> ...`, `ready`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pvgate_guest_sim::config::{DisplayConfig, GuestConfig, InputConfig, SoundCardConfig};
use pvgate_guest_sim::content::tone::ToneGenerator;
use pvgate_guest_sim::content::{pcm, Scene};
use pvgate_guest_sim::display::render::{render_loop, FlipObserver, RenderOptions};
use pvgate_guest_sim::guest::{GuestSim, StartOptions, StateReport};
use pvgate_guest_sim::misbehave::{self, Mode};
use pvgate_guest_sim::sim::{connect_guest, connect_toolstack, XsRegistry};
use pvgate_guest_sim::toolstack::Toolstack;
use pvgate_protocol::displif::PixelFormat;
use pvgate_protocol::sndif::PcmFormat;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "pvgate-guest-sim",
    about = "A simulated Xen guest: creates its xenstore devices as xl/libxl would and drives the displif, sndif and kbdif frontends as Linux's xen-drm-front, snd-xen-front and xen-kbdfront do.",
    after_help = "Example:\n  pvgate-guest-sim --sim-dir /tmp/sim --domid 5 --name demo \\\n    --vdispl 'backend=0,be-alloc=0,connectors=1280x720;1920x1080' \\\n    --vsnd \"card, sample-rates=48000, sample-formats=s16_le | pcm, name=dev0 | stream, type=p | stream, type=c\" \\\n    --vkb 'feature-abs-pointer=1,width=1280,height=720'"
)]
struct Args {
    /// The sim directory (`pvgate sim-xen --dir DIR`).
    #[arg(long, value_name = "DIR")]
    sim_dir: PathBuf,
    /// This guest's domain id.
    #[arg(long, value_name = "N")]
    domid: u16,
    /// This guest's name (`/local/domain/<N>/name`).
    #[arg(long, default_value = "guest-sim")]
    name: String,
    /// A vdispl device, in xl.cfg syntax (repeat for more devices).
    #[arg(long, value_name = "SPEC")]
    vdispl: Vec<String>,
    /// A vsnd card: its xl.cfg item list, `[ 'card, …', 'pcm, …', 'stream, …' ]`
    /// or the items separated by `|` (repeat for more cards).
    #[arg(long, value_name = "SPEC")]
    vsnd: Vec<String>,
    /// A vkb device, in xl.cfg syntax; `--vkb` alone gives libxl's defaults
    /// (repeat for more devices).
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    vkb: Vec<String>,
    /// What the displays show.
    #[arg(long, default_value = "pattern")]
    scene: Scene,
    /// What playback streams play: `tones` (440/660 Hz, one per channel)
    /// or `ticks` (a 30 ms 1 kHz burst on every whole wall-clock second,
    /// for measuring audio latency).
    #[arg(long, default_value = "tones", value_parser = ["tones", "ticks"])]
    sound: String,
    /// Frames per second on every display.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Pixel format of the displays' framebuffers (DRM name, e.g. XRGB8888).
    #[arg(long, default_value = "XRGB8888", value_parser = parse_pixel_format)]
    format: PixelFormat,
    /// Don't create the domain: attach to one a toolstack already created.
    #[arg(long)]
    no_toolstack: bool,
    /// Don't stream: complete the handshakes and then only follow events.
    #[arg(long)]
    idle: bool,
    /// Misbehave: invalid-gref, foreign-gref, overflow, garbage-opcodes,
    /// ring-ahead, flood, vanish, hang.
    #[arg(long, value_name = "MODE")]
    misbehave: Option<Mode>,
    /// For vanish/hang: how long to stream normally first, in ms.
    #[arg(long, default_value_t = 1000)]
    misbehave_after_ms: u64,
}

fn parse_pixel_format(s: &str) -> Result<PixelFormat, String> {
    PixelFormat::ALL
        .into_iter()
        .find(|f| f.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let names: Vec<_> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
            format!("unknown pixel format '{s}' (one of: {})", names.join(", "))
        })
}

/// One line on stdout, flushed at once (a test reads them as they come).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn guest_config(args: &Args) -> anyhow::Result<GuestConfig> {
    Ok(GuestConfig {
        domid: args.domid,
        name: args.name.clone(),
        displays: args
            .vdispl
            .iter()
            .map(|s| DisplayConfig::parse(s))
            .collect::<Result<_, _>>()?,
        sound_cards: args
            .vsnd
            .iter()
            .map(|s| SoundCardConfig::parse(s))
            .collect::<Result<_, _>>()?,
        inputs: args
            .vkb
            .iter()
            .map(|s| InputConfig::parse(s))
            .collect::<Result<_, _>>()?,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvgate-guest-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = guest_config(&args)?;
    if config.displays.is_empty() && config.sound_cards.is_empty() && config.inputs.is_empty() {
        anyhow::bail!("no devices: give at least one of --vdispl, --vsnd, --vkb");
    }
    let toolstack_store = if args.no_toolstack {
        None
    } else {
        let store = connect_toolstack(&args.sim_dir).await?;
        Toolstack::new(&store, &XsRegistry(&store))
            .create_domain(&config)
            .await
            .with_context(|| format!("creating domain {}", config.domid))?;
        Some(store)
    };
    let guest = connect_guest(&args.sim_dir, config.domid).await?;
    let report: StateReport =
        Arc::new(|device: &str, state| say(&format!("state {device} {state:?}")));
    let sim = GuestSim::start(
        config.clone(),
        guest.platform.clone(),
        StartOptions {
            report: Some(report),
            frame_lookup: Some(guest.frame_lookup()),
        },
    )
    .await?;

    for (i, input) in sim.inputs.iter().enumerate() {
        let mut rx = input.subscribe();
        tokio::spawn(async move {
            while let Ok(ev) = rx.recv().await {
                say(&format!("input vkbd/{i} {}", describe_input(&ev)));
            }
        });
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    if !args.idle {
        for (d, handle) in sim.displays.iter().enumerate() {
            let handle = handle.clone();
            let input = sim.inputs.first().map(|i| i.state.clone());
            let stop = stop_rx.clone();
            let opts = (args.scene, args.fps, args.format, args.misbehave);
            workers.push(tokio::spawn(async move {
                display_worker(d, handle, input, opts, stop).await;
            }));
        }
        for (c, handle) in sim.sounds.iter().enumerate() {
            let handle = handle.clone();
            let stop = stop_rx.clone();
            let mode = args.misbehave;
            let ticks = args.sound == "ticks";
            workers.push(tokio::spawn(async move {
                sound_worker(c, handle, mode, ticks, stop).await;
            }));
        }
    }
    say("ready");

    let after = Duration::from_millis(args.misbehave_after_ms);
    match args.misbehave {
        Some(Mode::Vanish) => {
            tokio::time::sleep(after).await;
            say("misbehave vanish now");
            // Gone without a word: no state change, no close, no cleanup.
            std::process::exit(0);
        }
        Some(Mode::Hang) => {
            tokio::time::sleep(after).await;
            say("misbehave hang now");
            // Workers stop issuing requests (aborted, not closed), the
            // frontends stop reacting, everything stays mapped.
            for w in &workers {
                w.abort();
            }
            let _frozen = sim.freeze();
            wait_for_signal().await;
            std::process::exit(0);
        }
        _ => {}
    }

    wait_for_signal().await;
    stop_tx.send_replace(true);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    sim.shutdown().await;
    if let Some(store) = toolstack_store {
        let plans = pvgate_guest_sim::toolstack::plan_devices(&config);
        Toolstack::new(&store, &XsRegistry(&store))
            .destroy_domain(config.domid, &plans)
            .await
            .context("destroying the domain")?;
    }
    say("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn describe_input(ev: &pvgate_protocol::kbdif::KbdInEvent) -> String {
    use pvgate_protocol::kbdif::KbdInEvent::*;
    match *ev {
        Key { pressed, keycode } => format!("key keycode={keycode} pressed={}", u8::from(pressed)),
        Motion {
            rel_x,
            rel_y,
            rel_z,
        } => format!("motion rel_x={rel_x} rel_y={rel_y} rel_z={rel_z}"),
        Position {
            abs_x,
            abs_y,
            rel_z,
        } => format!("position abs_x={abs_x} abs_y={abs_y} rel_z={rel_z}"),
        MultiTouch { contact_id, event } => format!("mtouch contact={contact_id} {event:?}"),
    }
}

type DisplayOpts = (Scene, u32, PixelFormat, Option<Mode>);

/// Show the scene on every connector of one vdispl, reconnecting after a
/// backend restart.
async fn display_worker(
    d: usize,
    handle: pvgate_guest_sim::guest::DeviceHandle<pvgate_guest_sim::display::DisplaySession>,
    input: Option<Arc<std::sync::Mutex<pvgate_guest_sim::content::InputState>>>,
    (scene, fps, format, mode): DisplayOpts,
    stop: watch::Receiver<bool>,
) {
    let mut last = None;
    while !*stop.borrow() {
        let Ok(session) = handle
            .connected_after(last.as_ref(), Duration::from_secs(3600))
            .await
        else {
            continue;
        };
        last = Some(session.clone());
        if let Some(m) = mode.filter(|m| !matches!(m, Mode::Vanish | Mode::Hang)) {
            match misbehave::on_display(m, &session, Duration::from_secs(3)).await {
                Ok(o) => say(&format!(
                    "misbehave {} vdispl/{d} sent={} statuses={:?} silent={}",
                    m.name(),
                    o.sent,
                    o.statuses,
                    o.silent
                )),
                Err(e) => say(&format!("misbehave {} vdispl/{d} error {e}", m.name())),
            }
        }
        let mut loops = Vec::new();
        for c in 0..session.connectors().len() {
            let opts = RenderOptions {
                connector: c,
                format,
                fps,
                scene,
                frames: None,
            };
            let (session, input, stop) = (session.clone(), input.clone(), stop.clone());
            // Report the first flips (enough for a test to follow) and then
            // every 100th.
            let on_flip: FlipObserver = Arc::new(move |n, fb, outcome| {
                if n <= 3 || n % 100 == 0 {
                    say(&format!(
                        "flip vdispl/{d}/{c} frame={n} fb={fb:#x} outcome={outcome:?}"
                    ));
                }
            });
            loops.push(tokio::spawn(async move {
                let r = render_loop(session, opts, input, Some(on_flip), stop).await;
                match r {
                    Ok(stats) => say(&format!("display vdispl/{d}/{c} flips={}", stats.flips)),
                    Err(e) => say(&format!("display vdispl/{d}/{c} error {e}")),
                }
            }));
        }
        for l in loops {
            let _ = l.await;
        }
    }
}

/// Play on playback streams and record on capture streams of one card,
/// until stopped; after a backend restart, start again.
async fn sound_worker(
    c: usize,
    handle: pvgate_guest_sim::guest::DeviceHandle<pvgate_guest_sim::sound::SoundSession>,
    mode: Option<Mode>,
    ticks: bool,
    stop: watch::Receiver<bool>,
) {
    let mut last = None;
    while !*stop.borrow() {
        let Ok(session) = handle
            .connected_after(last.as_ref(), Duration::from_secs(3600))
            .await
        else {
            continue;
        };
        last = Some(session.clone());
        let mut jobs = Vec::new();
        for (s, stream) in session.streams().iter().enumerate() {
            let stream = stream.clone();
            let stop = stop.clone();
            jobs.push(tokio::spawn(async move {
                if let Some(m) = mode.filter(|m| {
                    matches!(
                        m,
                        Mode::Overflow | Mode::GarbageOpcodes | Mode::RingAhead | Mode::Flood
                    )
                }) {
                    match misbehave::on_sound(m, &stream, Duration::from_secs(3)).await {
                        Ok(o) => say(&format!(
                            "misbehave {} vsnd/{c}/{s} sent={} statuses={:?} silent={}",
                            m.name(),
                            o.sent,
                            o.statuses,
                            o.silent
                        )),
                        Err(e) => say(&format!("misbehave {} vsnd/{c}/{s} error {e}", m.name())),
                    }
                }
                let result = stream_forever(c, s, &stream, ticks, stop).await;
                match result {
                    Ok(bytes) => say(&format!("sound vsnd/{c}/{s} bytes={bytes}")),
                    Err(e) => say(&format!("sound vsnd/{c}/{s} error {e}")),
                }
            }));
        }
        for j in jobs {
            let _ = j.await;
        }
    }
}

/// Play `total` bytes of wall-clock ticks. The backend consumes from
/// TRIGGER START at the stream rate, so the playback timeline starts when
/// START is sent: byte `offset` plays at start + offset / rate. The buffer
/// filled before START is silence (its start time is not known yet); a
/// tick that would fall in it is skipped. Each run starts a new timeline:
/// the backend's position counts on across runs, but this run's bytes play
/// from its own START.
async fn play_ticks(
    stream: &pvgate_guest_sim::sound::SoundStream,
    format: PcmFormat,
    rate: u32,
    channels: usize,
    total: u64,
) -> Result<u64, String> {
    use pvgate_guest_sim::content::{ticks, tone::amplitude_of};
    let frame_bytes = pcm::sample_size(format).map_err(|e| e.to_string())? * channels;
    let stats = stream
        .play_from_start(total, |offset, chunk, started| {
            let frames = chunk.len() / frame_bytes;
            let origin = started
                .and_then(|s| s.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as u64);
            let samples = match origin {
                Some(origin) => {
                    let first_frame = offset / frame_bytes as u64;
                    let t = origin + first_frame * 1_000_000 / u64::from(rate);
                    ticks::tick_frames(t, rate, channels, frames, amplitude_of(TONE_DBFS))
                }
                None => vec![0.0; frames * channels],
            };
            match pcm::encode_to_vec(&samples, format) {
                Ok(bytes) if bytes.len() == chunk.len() => chunk.copy_from_slice(&bytes),
                _ => chunk.fill(0),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(stats.bytes)
}

/// Tone level: loud enough to measure, far from clipping.
const TONE_DBFS: f64 = -6.0;

/// Negotiate and open, then one second at a time: play 440/660 Hz (one
/// tone per channel) or record and measure what came in; close when
/// stopped.
async fn stream_forever(
    c: usize,
    s: usize,
    stream: &pvgate_guest_sim::sound::SoundStream,
    ticks: bool,
    stop: watch::Receiver<bool>,
) -> Result<u64, String> {
    let hw = &stream.config.pcm_hw;
    let formats = hw.format_list();
    let format = if formats.contains(&PcmFormat::S16Le) {
        PcmFormat::S16Le
    } else {
        *formats
            .iter()
            .find(|f| pcm::is_supported(**f))
            .ok_or("no sample format we can produce")?
    };
    let rate = if hw.allows_rate(48000) {
        48000
    } else {
        hw.rate_max
    };
    let channels = hw.channels_max.clamp(1, 2);
    let frame_bytes = pcm::sample_size(format).map_err(|e| e.to_string())? as u32 * channels;
    let period_frames = (rate / 100).max(1); // 10 ms
    let periods = 4;
    stream
        .negotiate(format, rate, channels, period_frames, periods)
        .await
        .map_err(|e| e.to_string())?;
    let period_sz = period_frames * frame_bytes;
    stream
        .open(format, rate, channels as u8, period_sz * periods, period_sz)
        .await
        .map_err(|e| e.to_string())?;
    let mut tone = ToneGenerator::new(rate, channels as usize, TONE_DBFS);
    let second = u64::from(rate) * u64::from(frame_bytes);
    let mut total = 0u64;
    while !*stop.borrow() {
        let bytes = match stream.config.kind {
            pvgate_protocol::keys::StreamType::Playback if ticks => {
                play_ticks(stream, format, rate, channels as usize, second).await?
            }
            pvgate_protocol::keys::StreamType::Playback => {
                stream
                    .play_tone(&mut tone, second)
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes
            }
            pvgate_protocol::keys::StreamType::Capture => {
                let (samples, stats) = stream
                    .capture_samples(second)
                    .await
                    .map_err(|e| e.to_string())?;
                for ch in 0..channels as usize {
                    let mono =
                        pvgate_guest_sim::content::tone::channel(&samples, channels as usize, ch);
                    match pvgate_guest_sim::content::tone::measure_tone(&mono, rate) {
                        Some(m) => say(&format!(
                            "capture vsnd/{c}/{s} channel={ch} hz={:.1} dbfs={:.1}",
                            m.frequency_hz, m.level_dbfs
                        )),
                        None => say(&format!("capture vsnd/{c}/{s} channel={ch} silence")),
                    }
                }
                stats.bytes
            }
        };
        total += bytes;
    }
    stream.close().await.map_err(|e| e.to_string())?;
    Ok(total)
}
