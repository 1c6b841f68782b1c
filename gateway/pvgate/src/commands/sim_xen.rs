//! `pvgate sim-xen`: the simulated hypervisor as its own process.

use anyhow::Context;

use crate::cli::SimXenArgs;

pub async fn run(args: SimXenArgs) -> anyhow::Result<()> {
    let sim = pvgate_platform::sim::SimXen::start(&args.dir)
        .await
        .with_context(|| format!("cannot start the simulated Xen in {}", args.dir.display()))?;
    super::emit(&format!(
        "simulated Xen running in {}\n  dom0 xenstore: {}\n  attach the gateway: pvgate serve --platform sim --sim-dir {}\n",
        args.dir.display(),
        sim.dom0_xenstore_socket().display(),
        args.dir.display()
    ))?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    sim.stop().await;
    Ok(())
}
