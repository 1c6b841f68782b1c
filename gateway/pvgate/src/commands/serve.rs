//! `pvgate serve`: load the configuration, open the platform and serve the
//! guests' devices.

use std::sync::Arc;

use anyhow::Context;

use crate::access::Access;
use crate::cli::{PlatformKind, ServeArgs};
use crate::config::{Config, StreamingConfig};
use crate::gateway::Gateway;
use crate::http;
use crate::policy::settings::PolicySettings;
use crate::policy::{Policies, TenantConfigs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The configuration first: a mistake there (or in a tenant's policy
    // plugin) should not wait for Xen.
    let config = config_of(&args)?;
    let access = Arc::new(match &config {
        Some(c) => Access::from_config(c),
        None => Access::insecure_open(),
    });
    let streaming = config
        .as_ref()
        .map(|c| c.streaming.clone())
        .unwrap_or_default();
    let policies = Arc::new(load_policies(config.as_ref(), access.clone())?);
    if let Some(path) = &args.record_policy_trace {
        record_policy_trace(&policies, path)?;
    }
    let platform = match args.platform {
        PlatformKind::Xen => pvgate_platform::xen::connect().await?,
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
    let gateway = Gateway::with_policies(platform, policies);
    serve_until_interrupted(gateway, listener, access, streaming).await
}

/// Every tenant's policy plugin loaded (or the built-in policy), with the
/// `[policy]` limits; without a configuration, the built-in policy only.
pub fn load_policies(config: Option<&Config>, access: Arc<Access>) -> anyhow::Result<Policies> {
    let (settings, tenants): (PolicySettings, TenantConfigs) = match config {
        Some(c) => (
            c.policy.clone(),
            c.tenants
                .iter()
                .map(|t| (t.name.clone(), t.policy.clone()))
                .collect(),
        ),
        None => Default::default(),
    };
    Policies::load(&settings, &tenants, access)
}

/// `--record-policy-trace FILE`: every policy question from now on, as
/// JSON lines `pvgate plugin test FILE.wasm --events FILE` replays.
pub fn record_policy_trace(policies: &Policies, path: &std::path::Path) -> anyhow::Result<()> {
    let recorder = pvgate_policy::TraceRecorder::create(path).with_context(|| {
        format!(
            "cannot open the policy trace {} for appending (--record-policy-trace)",
            path.display()
        )
    })?;
    policies.record_to(Arc::new(recorder));
    tracing::info!(file = %path.display(), "recording every policy question (replay with `pvgate plugin test PLUGIN.wasm --events FILE`)");
    Ok(())
}

/// The configuration `args` name; `None` with `--insecure-no-auth`.
fn config_of(args: &ServeArgs) -> anyhow::Result<Option<Config>> {
    if let Some(path) = &args.config {
        let config = Config::load(path)?;
        if config.tenants.iter().all(|t| t.tokens.is_empty()) {
            tracing::warn!(
                config = %path.display(),
                "the configuration has no viewer tokens: nobody can open a guest (add [[tenant.token]] entries; `pvgate hash-token` makes them)"
            );
        }
        return Ok(Some(config));
    }
    anyhow::ensure!(
        args.insecure_no_auth,
        "pvgate serve needs --config FILE (tenants, their guests and viewer tokens; deploy/pvgate.example.toml shows the format), \
         or --insecure-no-auth to try it without authentication on a loopback address"
    );
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--insecure-no-auth would let anyone who reaches {} see and control every guest: listen on a loopback address (e.g. --listen 127.0.0.1:8080), or pass --config FILE",
        args.listen
    );
    tracing::warn!("authentication is OFF (--insecure-no-auth): every local user and program can see and control every guest");
    Ok(None)
}

/// Run the device supervisor and the web server until one fails, Ctrl-C or
/// SIGTERM (what systemd, podman and `kill` send: the demo must reap its
/// guests then too).
pub async fn serve_until_interrupted(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    access: Arc<Access>,
    streaming: StreamingConfig,
) -> anyhow::Result<()> {
    let view: Arc<dyn http::GatewayView> = gateway.clone();
    let mut state = http::AppState::new(view);
    state.access = access;
    state.streaming = Arc::new(streaming);
    let result = tokio::select! {
        result = gateway.run() => result,
        result = http::serve(listener, state) => result,
        _ = interrupted() => {
            tracing::info!("interrupted; stopping");
            Ok(())
        }
    };
    gateway.stop_all();
    gateway.policies().interrupt_all();
    // Let the device tasks release their mappings and channels.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    result
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
