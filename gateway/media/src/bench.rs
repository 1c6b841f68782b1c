//! The display benchmark: each stage of the video path per frame, and ffmpeg
//! on the very same raw frames for comparison. `cargo bench -p pvgate-media`
//! runs it (bench target `compare`); `pvgate bench display` is meant to call
//! [`run_display_bench`] and print [`BenchReport::to_markdown`].

use crate::damage::{DamageTracker, SourceLayout};
use crate::encoder::{new_encoder, Codec, EncoderParams, Prepare};
use crate::frame::Frame;
use crate::pixfmt::PixelFormat;
use crate::testpattern::{Content, PatternGenerator};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub sizes: Vec<(u32, u32)>,
    pub contents: Vec<Content>,
    /// Frames per (size, content) run.
    pub frames: u32,
    /// Frame rate the encoders (ours and ffmpeg's) are told about.
    pub fps: u32,
    /// Run ffmpeg too (skipped with a note if it is not installed).
    pub ffmpeg: bool,
    pub ffmpeg_path: PathBuf,
    /// Encoder threads for ffmpeg (ours use 2).
    pub ffmpeg_threads: u32,
    /// Where the raw frames for ffmpeg are written.
    pub scratch_dir: PathBuf,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            sizes: vec![(1280, 720), (1920, 1080)],
            contents: Content::ALL.to_vec(),
            frames: 30,
            fps: 30,
            ffmpeg: true,
            ffmpeg_path: PathBuf::from("ffmpeg"),
            ffmpeg_threads: 2,
            scratch_dir: std::env::temp_dir(),
        }
    }
}

/// Bitrate used for a frame size: about 0.1 bit per pixel at 30 fps.
pub fn bench_bitrate(width: u32, height: u32) -> u32 {
    match width as u64 * height as u64 {
        p if p >= 1920 * 1080 => 4_000_000,
        p if p >= 1280 * 720 => 2_500_000,
        _ => 1_000_000,
    }
}

/// Milliseconds per frame for each stage, for one size and content kind.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub width: u32,
    pub height: u32,
    pub content: Content,
    pub bitrate_bps: u32,
    /// Share of tiles that changed per frame.
    pub damaged_share: f64,
    /// Hashing all tiles (reading the source once).
    pub damage_ms: f64,
    /// Copying the changed tiles from XRGB8888 on top of that.
    pub copy_ms: f64,
    /// XRGB → I420 (BT.601 limited).
    pub i420_ms: f64,
    /// Encoding every frame (changed or not; includes the I420 conversion),
    /// so that it compares with ffmpeg.
    pub h264_ms: f64,
    pub vp8_ms: f64,
    pub h264_kbytes: f64,
    pub vp8_kbytes: f64,
    pub ffmpeg_x264_ms: Option<f64>,
    pub ffmpeg_vpx_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub rows: Vec<BenchRow>,
    pub notes: Vec<String>,
    pub cpu: String,
    /// /proc/loadavg before and after the run: on a shared machine the
    /// numbers mean little when this is well above the core count.
    pub load: (String, String),
}

fn ms(d: Duration, frames: u32) -> f64 {
    d.as_secs_f64() * 1000.0 / frames.max(1) as f64
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    match theirs {
        Some(t) if ours > 0.0 => format!("{:.2}×", t / ours),
        _ => "–".into(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

impl BenchReport {
    /// A markdown table (ms per frame; ratio = ffmpeg time / ours, so above
    /// 1 means we are faster).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Display path, ms per frame ({} frames per run, {} fps, CPU: {}, load average before/after: {} / {}).\n\n",
            self.options.frames, self.options.fps, self.cpu, self.load.0, self.load.1
        ));
        s.push_str("| size | content | tiles changed | damage | copy | XRGB→I420 | H.264 (openh264) | VP8 (libvpx) | ffmpeg libx264 | ratio | ffmpeg libvpx | ratio | H.264 KB/frame | VP8 KB/frame |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {}×{} | {} | {:.1} % | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
                r.width,
                r.height,
                r.content.name(),
                r.damaged_share * 100.0,
                r.damage_ms,
                r.copy_ms,
                r.i420_ms,
                r.h264_ms,
                r.vp8_ms,
                opt_ms(r.ffmpeg_x264_ms),
                ratio(r.h264_ms, r.ffmpeg_x264_ms),
                opt_ms(r.ffmpeg_vpx_ms),
                ratio(r.vp8_ms, r.ffmpeg_vpx_ms),
                r.h264_kbytes,
                r.vp8_kbytes,
            ));
        }
        s.push('\n');
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .map(|name| {
            format!(
                "{name}, {} threads",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The frames of one run, generated before anything is timed.
pub fn bench_frames(content: Content, width: u32, height: u32, frames: u32) -> Vec<Frame> {
    let mut g = PatternGenerator::new(content, width, height);
    (0..frames).map(|_| g.next_frame().clone()).collect()
}

fn time_damage(frames: &[Frame]) -> (f64, f64, f64) {
    let Some(first) = frames.first() else {
        return (0.0, 0.0, 0.0);
    };
    let (w, h) = (first.width(), first.height());
    let raw: Vec<Vec<u8>> = frames.iter().map(|f| f.packed().into_owned()).collect();
    let layout = match SourceLayout::dumb(w, h, PixelFormat::Xrgb8888, 0) {
        Ok(l) => l,
        Err(_) => return (0.0, 0.0, 0.0),
    };
    let (Ok(mut detect_only), Ok(mut with_copy), Ok(mut target)) = (
        DamageTracker::new(layout),
        DamageTracker::new(layout),
        Frame::new(w, h),
    ) else {
        return (0.0, 0.0, 0.0);
    };
    let _ = detect_only.detect(&raw[0]);
    let _ = with_copy.update(&raw[0], &mut target);
    let n = (raw.len() - 1) as u32;
    let mut changed = 0usize;
    let mut total = 0usize;
    let t = Instant::now();
    for r in &raw[1..] {
        if let Ok(d) = detect_only.detect(r) {
            changed += d.tiles.len();
            total += d.total_tiles() as usize;
        }
    }
    let detect = t.elapsed();
    // The copy is timed where it happens, inside the update (the tracker
    // times each run of changed tiles): the difference of two separately
    // timed passes drowned a copy of a few tiles in the noise of hashing
    // the whole frame.
    let mut copy = Duration::ZERO;
    for r in &raw[1..] {
        if with_copy.update(r, &mut target).is_ok() {
            copy += with_copy.last_copy_time();
        }
    }
    let share = if total == 0 {
        0.0
    } else {
        changed as f64 / total as f64
    };
    (ms(detect, n), ms(copy, n), share)
}

fn time_i420(frames: &[Frame]) -> f64 {
    let mut prep = Prepare::default();
    let t = Instant::now();
    for f in frames {
        let _ = prep.to_i420(f, f.width() & !1, f.height() & !1);
    }
    ms(t.elapsed(), frames.len() as u32)
}

fn time_encoder(codec: Codec, frames: &[Frame], bitrate: u32, fps: u32) -> (f64, f64) {
    let mut params = EncoderParams::new(codec, bitrate);
    params.max_fps = fps;
    let Ok(mut enc) = new_encoder(params) else {
        return (f64::NAN, f64::NAN);
    };
    let interval = Duration::from_secs(1) / fps.max(1);
    let mut bytes = 0usize;
    let t = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        if let Ok(Some(e)) = enc.encode(f, interval * i as u32, false) {
            bytes += e.data.len();
        }
    }
    let n = frames.len() as u32;
    (ms(t.elapsed(), n), bytes as f64 / 1024.0 / n.max(1) as f64)
}

/// Run ffmpeg over the raw BGRA frames in `raw_path`; ms per frame from its
/// own `-benchmark` real time (reading the file, BGRA→YUV and encoding).
fn time_ffmpeg(
    opts: &BenchOptions,
    raw_path: &std::path::Path,
    (w, h): (u32, u32),
    frames: u32,
    codec_args: &[&str],
) -> Result<f64, String> {
    let out = Command::new(&opts.ffmpeg_path)
        .args([
            "-hide_banner",
            "-nostdin",
            "-benchmark",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgra",
        ])
        .args(["-s", &format!("{w}x{h}"), "-r", &opts.fps.to_string(), "-i"])
        .arg(raw_path)
        .args(["-threads", &opts.ffmpeg_threads.to_string()])
        .args(codec_args)
        .args(["-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {}: {e}", opts.ffmpeg_path.display()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "ffmpeg failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    // "bench: utime=0.123s stime=0.010s rtime=0.090s"
    let rtime = err
        .lines()
        .filter(|l| l.contains("bench:"))
        .filter_map(|l| l.split("rtime=").nth(1))
        .filter_map(|v| v.trim().trim_end_matches('s').parse::<f64>().ok())
        .next_back()
        .ok_or_else(|| "no -benchmark line in ffmpeg's output".to_string())?;
    Ok(rtime * 1000.0 / frames.max(1) as f64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Run the whole display benchmark.
pub fn run_display_bench(opts: &BenchOptions) -> BenchReport {
    let load_before = load_average();
    let mut rows = Vec::new();
    let mut notes = vec![
        "damage: xxh3 of every 64×64 tile, reading the source once; copy: converting the changed tiles into the gateway's frame (XRGB8888 source).".to_string(),
        "H.264/VP8: every frame encoded, changed or not, including scaling-free BT.601 I420 conversion, so the numbers compare with ffmpeg; in the gateway unchanged frames are not encoded at all.".to_string(),
        "openh264: constrained baseline, screen-content realtime, 2 slices on 2 threads; libvpx VP8: realtime, cpu-used 8, 1 thread (its 2-thread mode spins and collapses on a busy host), error resilient, CBR.".to_string(),
    ];
    let ffmpeg_ok = opts.ffmpeg
        && Command::new(&opts.ffmpeg_path)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opts.ffmpeg && !ffmpeg_ok {
        notes.push(format!(
            "ffmpeg ({}) not found: install Debian's `ffmpeg` for the comparison columns.",
            opts.ffmpeg_path.display()
        ));
    }
    if ffmpeg_ok {
        notes.push(format!(
            "ffmpeg on the same raw BGRA frames from a file, `-threads {}` (libvpx: as many as ours): libx264 `-preset ultrafast -tune zerolatency`, libvpx `-deadline realtime -cpu-used 8 -lag-in-frames 0 -error-resilient 1`, same bitrate; time = its `-benchmark` rtime / frames (includes reading the frames and swscale BGRA→YUV). ratio = ffmpeg / ours.",
            opts.ffmpeg_threads
        ));
    }
    for &(w, h) in &opts.sizes {
        let bitrate = bench_bitrate(w, h);
        for &content in &opts.contents {
            let frames = bench_frames(content, w, h, opts.frames.max(2));
            let (damage_ms, copy_ms, damaged_share) = time_damage(&frames);
            let i420_ms = time_i420(&frames);
            let (h264_ms, h264_kbytes) = time_encoder(Codec::H264, &frames, bitrate, opts.fps);
            let (vp8_ms, vp8_kbytes) = time_encoder(Codec::Vp8, &frames, bitrate, opts.fps);
            let (mut ffmpeg_x264_ms, mut ffmpeg_vpx_ms) = (None, None);
            if ffmpeg_ok {
                let raw_path = opts.scratch_dir.join(format!(
                    "pvgate-bench-{}-{w}x{h}-{}.bgra",
                    std::process::id(),
                    content.name()
                ));
                let written = std::fs::File::create(&raw_path).and_then(|mut file| {
                    for f in &frames {
                        file.write_all(&f.packed())?;
                    }
                    file.flush()
                });
                match written {
                    Err(e) => notes.push(format!("writing {}: {e}", raw_path.display())),
                    Ok(()) => {
                        let n = frames.len() as u32;
                        let b = bitrate.to_string();
                        let vpx_threads = crate::vp8::VP8_THREADS.to_string();
                        let x264 = [
                            "-pix_fmt",
                            "yuv420p",
                            "-c:v",
                            "libx264",
                            "-preset",
                            "ultrafast",
                            "-tune",
                            "zerolatency",
                            "-b:v",
                            &b,
                        ];
                        let vpx = [
                            // yuv420p: from BGRA input libvpx would try to encode alpha.
                            "-pix_fmt",
                            "yuv420p",
                            "-c:v",
                            "libvpx",
                            "-deadline",
                            "realtime",
                            "-cpu-used",
                            "8",
                            "-lag-in-frames",
                            "0",
                            "-error-resilient",
                            "1",
                            // As many threads as our VP8 encoder uses.
                            "-threads",
                            &vpx_threads,
                            "-b:v",
                            &b,
                        ];
                        match time_ffmpeg(opts, &raw_path, (w, h), n, &x264) {
                            Ok(v) => ffmpeg_x264_ms = Some(v),
                            Err(e) => {
                                notes.push(format!("libx264 {w}×{h} {}: {e}", content.name()))
                            }
                        }
                        match time_ffmpeg(opts, &raw_path, (w, h), n, &vpx) {
                            Ok(v) => ffmpeg_vpx_ms = Some(v),
                            Err(e) => notes.push(format!("libvpx {w}×{h} {}: {e}", content.name())),
                        }
                    }
                }
                let _ = std::fs::remove_file(&raw_path);
            }
            rows.push(BenchRow {
                width: w,
                height: h,
                content,
                bitrate_bps: bitrate,
                damaged_share,
                damage_ms,
                copy_ms,
                i420_ms,
                h264_ms,
                vp8_ms,
                h264_kbytes,
                vp8_kbytes,
                ffmpeg_x264_ms,
                ffmpeg_vpx_ms,
            });
        }
    }
    BenchReport {
        options: opts.clone(),
        rows,
        notes,
        cpu: cpu_name(),
        load: (load_before, load_average()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_fills_every_column_but_ffmpeg_when_disabled() {
        let opts = BenchOptions {
            sizes: vec![(128, 64)],
            contents: vec![Content::Desktop],
            frames: 3,
            ffmpeg: false,
            ..BenchOptions::default()
        };
        let report = run_display_bench(&opts);
        assert_eq!(report.rows.len(), 1);
        let r = &report.rows[0];
        assert!(r.h264_kbytes > 0.0 && r.vp8_kbytes > 0.0);
        assert!(r.ffmpeg_x264_ms.is_none());
        let md = report.to_markdown();
        assert!(md.contains("| 128×64 | desktop |"), "{md}");
    }
}
