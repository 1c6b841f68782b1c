//! `pvgate`: the Xen para-virtual display/sound/input backend that streams
//! guests to web browsers.

mod access;
mod cli;
mod commands;
mod config;
mod discovery;
mod gateway;
mod http;
mod policy;
mod session;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pvgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line per cause,
            // which is what a user needs; never a backtrace.
            eprintln!("pvgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        // xenstore-rs warns once per open watch when its connection closes,
        // which is every shutdown: only its errors are worth showing.
        .unwrap_or_else(|| EnvFilter::new("info,xenstore_rs=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
