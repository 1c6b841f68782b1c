//! Prints the display benchmark table, ffmpeg included (`cargo bench -p
//! pvgate-media --bench compare`). Environment: PVGATE_BENCH_FRAMES (default
//! 30), PVGATE_BENCH_SIZES like "1280x720,1920x1080".

use pvgate_media::bench::{run_display_bench, BenchOptions};

fn main() {
    // cargo bench passes --bench; a filter argument other than ours means
    // another target was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && a != "compare")
    {
        return;
    }
    let mut opts = BenchOptions::default();
    if let Some(n) = std::env::var("PVGATE_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.frames = n;
    }
    if let Ok(sizes) = std::env::var("PVGATE_BENCH_SIZES") {
        opts.sizes = sizes
            .split(',')
            .filter_map(|s| s.split_once('x'))
            .filter_map(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
            .collect();
    }
    let report = run_display_bench(&opts);
    println!("{}", report.to_markdown());
}
