//! `pvgate bench e2e`: runs `pvgate-bench-e2e` (tests/browser), which drives
//! headless Chromium against a simulated host. It lives with the browser
//! tests because it is their harness; this subcommand is the way in.

use anyhow::Context;

use crate::cli::BenchE2eArgs;

pub async fn run(args: BenchE2eArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find where pvgate runs from")?;
    let bench = exe.with_file_name("pvgate-bench-e2e");
    anyhow::ensure!(
        bench.exists(),
        "{} is missing: build it with `cargo build --release -p pvgate-browser-tests` (it needs Debian's chromium and chromium-driver to run)",
        bench.display()
    );
    let mut command = tokio::process::Command::new(&bench);
    command
        .args(["--samples", &args.samples.to_string()])
        .args(["--size", &args.size])
        .args(["--codec", &args.codec])
        .args(["--transport", &args.transport]);
    if args.no_audio {
        command.arg("--no-audio");
    }
    if args.audio_only {
        command.arg("--audio-only");
    }
    let status = command
        .status()
        .await
        .with_context(|| format!("cannot run {}", bench.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", bench.display());
    Ok(())
}
