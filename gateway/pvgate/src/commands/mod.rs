//! One module per subcommand.

mod bench;
mod bench_e2e;
mod demo;
mod hash_token;
pub mod plugin;
pub mod serve;
mod sim_xen;

use std::io::Write as _;

use crate::cli::Command;

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::SimXen(args) => sim_xen::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(which) => bench::run(which).await,
        Command::HashToken(args) => hash_token::run(args),
        Command::Plugin(which) => plugin::run(which),
    }
}

/// Writes to stdout in one go; `Ok(false)` once the reader has gone
/// (`| head`, a test that read the line it wanted), which is not an error
/// worth a message — and must not end a running demo or simulator, as a
/// panicking `println!` would.
pub fn emit(text: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}
