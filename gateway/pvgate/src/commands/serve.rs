//! `pvgate serve`: open the platform and serve the guests' devices.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{PlatformKind, ServeArgs};
use crate::gateway::Gateway;
use crate::http;

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
    let listener = http::bind(args.listen).await?;
    tracing::info!("web server on http://{}/", args.listen);
    let gateway = Gateway::new(platform);
    serve_until_interrupted(gateway, listener).await
}

/// Run the device supervisor and the web server until one fails or Ctrl-C.
pub async fn serve_until_interrupted(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let view: Arc<dyn http::GatewayView> = gateway.clone();
    let state = http::AppState::new(view);
    let result = tokio::select! {
        result = gateway.run() => result,
        result = http::serve(listener, state) => result,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; stopping");
            Ok(())
        }
    };
    gateway.stop_all();
    // Let the device tasks release their mappings and channels.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    result
}
