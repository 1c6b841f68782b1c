//! The task that drives one device's [`Lifecycle`] against xenstore and a
//! protocol backend.

use futures::{FutureExt, StreamExt};
use pvgate_platform::{DomId, Platform};
use pvgate_protocol::xenbus::XenbusState;
use tokio::sync::{mpsc, watch};

use super::lifecycle::{Action, ConnectWhen, Lifecycle};

/// Why a device could not be served. Always names what was wrong; the
/// runner adds which guest and device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("xenstore: {0}")]
    Store(#[from] pvgate_platform::StoreError),
    #[error("frontend published an unusable {key}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("cannot map the frontend's grants: {0}")]
    Grant(#[from] pvgate_platform::GrantError),
    #[error("cannot bind the frontend's event channel: {0}")]
    EventChannel(#[from] pvgate_platform::EventChannelError),
    #[error("{0}")]
    Protocol(String),
}

/// Where one device lives and how to reach the platform.
#[derive(Clone)]
pub struct DeviceContext {
    pub platform: Platform,
    /// `vdispl`, `vsnd`, `vkbd`, `vinput`.
    pub kind: &'static str,
    pub frontend_id: DomId,
    pub devid: u32,
    /// `/local/domain/<self>/backend/<kind>/<frontend>/<devid>`.
    pub backend_path: String,
    /// `/local/domain/<frontend>/device/<kind>/<devid>`, checked.
    pub frontend_path: String,
    fatal: mpsc::UnboundedSender<String>,
}

impl DeviceContext {
    /// A short name for log lines: `dom5 vdispl/0`.
    pub fn name(&self) -> String {
        format!("dom{} {}/{}", self.frontend_id, self.kind, self.devid)
    }

    /// Report that the connected device broke the protocol (bad ring, flood):
    /// the runner closes this device, and only this device.
    pub fn fail(&self, reason: impl Into<String>) {
        // The runner outlives every serving task; if it is gone there is
        // nobody left to tell.
        let _ = self.fatal.send(reason.into());
    }

    /// Read a frontend key.
    pub async fn frontend_key(&self, key: &str) -> Result<String, DeviceError> {
        Ok(self
            .platform
            .store
            .read(&format!("{}/{key}", self.frontend_path))
            .await?)
    }

    /// Read a frontend key that must be an unsigned number.
    pub async fn frontend_u32(&self, key: &str) -> Result<u32, DeviceError> {
        let value = self.frontend_key(key).await?;
        value.trim().parse().map_err(|_| DeviceError::BadKey {
            key: format!("{}/{key}", self.frontend_path),
            reason: format!("{value:?} is not an unsigned number"),
        })
    }
}

/// A protocol backend for one device.
#[async_trait::async_trait]
pub trait DeviceBackend: Send {
    /// Before InitWait: write the backend's own keys (features, sizes) that
    /// the frontend reads at probe time.
    async fn prepare(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError>;
    /// The frontend published its rings: read its keys, map, bind, and start
    /// serving (spawn what must run; report protocol failures through
    /// [`DeviceContext::fail`]).
    async fn connect(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError>;
    /// Stop serving and release every mapping and channel.
    async fn disconnect(&mut self, ctx: &DeviceContext);
}

/// Check that the backend directory's `frontend` key names the device we
/// expect. The toolstack writes it, but a path we then watch and read keys
/// from must never be steered elsewhere.
fn expected_frontend_path(kind: &str, frontend_id: DomId, devid: u32) -> String {
    // libxl's `backend-type=linux` vkb lives under backend/vinput but its
    // frontend is still device/vkbd (the only name xen-kbdfront binds to).
    let frontend_kind = if kind == "vinput" { "vkbd" } else { kind };
    format!("/local/domain/{frontend_id}/device/{frontend_kind}/{devid}")
}

/// Serve one device until it is removed or `stop` changes to true.
pub async fn run_device(
    platform: Platform,
    kind: &'static str,
    frontend_id: DomId,
    devid: u32,
    connect_when: ConnectWhen,
    mut backend: impl DeviceBackend,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DeviceError> {
    let store = platform.store.clone();
    let backend_path = format!(
        "{}/backend/{kind}/{frontend_id}/{devid}",
        store.get_domain_path(platform.domid).await?
    );
    let expected = expected_frontend_path(kind, frontend_id, devid);
    let frontend_path = store.read(&format!("{backend_path}/frontend")).await?;
    if frontend_path != expected {
        return Err(DeviceError::BadKey {
            key: format!("{backend_path}/frontend"),
            reason: format!("{frontend_path:?} is not {expected:?}"),
        });
    }
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let ctx = DeviceContext {
        platform,
        kind,
        frontend_id,
        devid,
        backend_path,
        frontend_path,
        fatal: fatal_tx,
    };
    let name = ctx.name();
    let state_path = format!("{}/state", ctx.frontend_path);
    let mut watch = store.watch(&state_path).await?;

    backend.prepare(&ctx).await?;
    let mut lifecycle = Lifecycle::new(connect_when);
    if kind == pvgate_protocol::keys::sndif::DRIVER_NAME {
        lifecycle = lifecycle.frontend_restarts_on_initwait();
    }
    let frontend = read_state(&ctx, &state_path).await;
    tracing::info!(device = %name, ?frontend, "serving device");
    let mut pending = lifecycle.start(frontend);

    loop {
        while !pending.is_empty() {
            let action = pending.remove(0);
            match action {
                Action::SwitchState(state) => {
                    tracing::debug!(device = %name, ?state, "backend state");
                    store
                        .write(
                            &format!("{}/state", ctx.backend_path),
                            &state.to_node_value(),
                        )
                        .await?;
                }
                Action::Connect => {
                    let result = backend.connect(&ctx).await;
                    // Watch events that came in while we read and mapped the
                    // frontend's keys: they decide whether a failure is its.
                    let mut moved = false;
                    while let Some(Some(_)) = watch.next().now_or_never() {
                        moved = true;
                    }
                    if moved {
                        let frontend = read_state(&ctx, &state_path).await;
                        tracing::debug!(device = %name, ?frontend, "frontend state (while connecting)");
                        if let Err(e) = &result {
                            tracing::info!(device = %name, error = %e, ?frontend, "the frontend changed state while we connected; trying again with what it publishes now");
                            pending.extend(lifecycle.connect_failed_while_frontend_moved());
                        } else {
                            tracing::info!(device = %name, "connected");
                            pending.extend(lifecycle.connect_result(true));
                        }
                        pending.extend(lifecycle.frontend_changed(frontend));
                        continue;
                    }
                    if let Err(e) = &result {
                        tracing::warn!(device = %name, error = %e, "cannot connect to the frontend; closing the device");
                    } else {
                        tracing::info!(device = %name, "connected");
                    }
                    pending.extend(lifecycle.connect_result(result.is_ok()));
                }
                Action::Disconnect => {
                    backend.disconnect(&ctx).await;
                    tracing::info!(device = %name, "disconnected");
                }
                Action::Remove => {
                    tracing::info!(device = %name, "frontend gone; device removed");
                    return Ok(());
                }
            }
        }
        tokio::select! {
            event = watch.next() => {
                if event.is_none() {
                    backend.disconnect(&ctx).await;
                    return Err(DeviceError::Protocol("the xenstore watch ended".into()));
                }
                let frontend = read_state(&ctx, &state_path).await;
                tracing::debug!(device = %name, ?frontend, "frontend state");
                pending = lifecycle.frontend_changed(frontend);
            }
            Some(reason) = fatal_rx.recv() => {
                tracing::warn!(device = %name, %reason, "protocol error; closing the device");
                pending = lifecycle.fatal();
            }
            _ = stop.changed() => {
                if lifecycle.is_connected() {
                    backend.disconnect(&ctx).await;
                }
                return Ok(());
            }
        }
    }
}

/// The frontend's state as Linux reads it: absent or garbage is Unknown.
async fn read_state(ctx: &DeviceContext, path: &str) -> XenbusState {
    let value = ctx.platform.store.read_opt(path).await.ok().flatten();
    XenbusState::parse_like_linux(value.as_deref())
}
