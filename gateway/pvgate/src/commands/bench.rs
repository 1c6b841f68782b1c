//! `pvgate bench …`: measurements on this machine, printed as markdown so
//! they can go straight into the README.

use anyhow::Context;
use pvgate_backends::display::flip_bench;
use pvgate_media::bench::{run_display_bench, BenchOptions};

use crate::cli::{BenchCommand, BenchDisplayArgs};

pub async fn run(which: BenchCommand) -> anyhow::Result<()> {
    match which {
        BenchCommand::Display(args) => display(args).await,
        BenchCommand::E2e(args) => super::bench_e2e::run(args).await,
    }
}

async fn display(args: BenchDisplayArgs) -> anyhow::Result<()> {
    let scratch =
        tempfile::tempdir().context("cannot create a scratch directory for raw frames")?;
    let mut opts = BenchOptions {
        frames: args.frames.max(2),
        ffmpeg: !args.no_ffmpeg,
        scratch_dir: scratch.path().to_path_buf(),
        ..BenchOptions::default()
    };
    if !args.size.is_empty() {
        opts.sizes = args.size.clone();
    }
    let sizes = opts.sizes.clone();
    let runs = opts.sizes.len() * opts.contents.len();
    eprintln!(
        "pvgate bench display: {runs} runs of {} frames each ({} sizes × {} contents){}; this takes a few minutes…",
        opts.frames,
        opts.sizes.len(),
        opts.contents.len(),
        if opts.ffmpeg { ", with ffmpeg" } else { "" }
    );
    let report = tokio::task::spawn_blocking(move || run_display_bench(&opts))
        .await
        .context("the benchmark thread failed")?;
    println!("{}", report.to_markdown());
    // The guest's side of the display path, in the same run: the flip
    // latency the guest's compositor waits for, with and without encoders
    // busy on the same connector.
    eprintln!(
        "pvgate bench display: PG_FLIP → EVT_PG_FLIP, {FLIPS} flips at 60 Hz per size, without and with encoders…"
    );
    let rows = flip_bench::run(&sizes, FLIPS)
        .await
        .context("the flip latency benchmark failed")?;
    println!("{}", flip_bench::to_markdown(&rows));
    Ok(())
}

/// Flips measured per configuration: 5 s at 60 Hz, enough for a p99.
const FLIPS: usize = 300;
