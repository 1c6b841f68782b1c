//! `pvgate serve`: open the platform and serve the guests' devices.

use anyhow::Context;

use crate::cli::{PlatformKind, ServeArgs};
use crate::discovery;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let platform = match args.platform {
        PlatformKind::Xen => pvgate_platform::xen::connect()?,
        PlatformKind::Sim => {
            let dir = args
                .sim_dir
                .as_deref()
                .context("--platform sim needs --sim-dir DIR")?;
            pvgate_platform::sim::connect(dir, 0).await.with_context(|| {
                format!(
                    "cannot attach to the simulated Xen in {} (is `pvgate sim-xen --dir {}` running?)",
                    dir.display(),
                    dir.display()
                )
            })?
        }
    };
    tokio::select! {
        result = discovery::run(&platform, |change| tracing::info!(?change, "device")) => result,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; stopping");
            Ok(())
        }
    }
}
