//! One module per subcommand.

mod bench;
mod bench_e2e;
mod demo;
mod hash_token;
pub mod plugin;
pub mod serve;
mod sim_xen;

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
