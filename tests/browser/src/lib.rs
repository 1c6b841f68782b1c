//! The end-to-end test bench: a simulated Xen host running the real `pvgate`
//! binary and guest simulators as processes ([`host`]), and Debian's headless
//! Chromium driven over WebDriver ([`browser`]), opening the real web client.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/<profile>/`); tests/run.sh builds them first.

pub mod browser;
pub mod host;
pub mod netns;
pub mod page;
pub mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A binary of this workspace, built next to the running test.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // A test runs from target/<profile>/deps/, a binary from target/<profile>/.
    let mut dir = exe.parent().ok_or_else(|| {
        anyhow::anyhow!("cannot tell the target directory from {}", exe.display())
    })?;
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`; tests/run.sh does)",
        path.display()
    );
    Ok(path)
}

/// Poll `f` until it returns `Some`, or fail with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
