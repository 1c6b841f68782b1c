//! The I/O shell around [`FrontendPolicy`]: follow the backend's state and
//! carry out the policy's actions through a device's [`FrontendOps`].

use futures::StreamExt;
use tokio::sync::watch;

use super::{Action, FrontendPolicy, XenbusDevice, XenbusState};

/// What a device does for each [`Action`] (the driver-specific part).
#[async_trait::async_trait]
pub trait FrontendOps: Send {
    /// Read config, allocate and grant rings, allocate event channels,
    /// publish them in one transaction.
    async fn publish(&mut self, dev: &XenbusDevice) -> Result<(), String>;
    /// The backend has mapped everything: start using the rings.
    async fn connect(&mut self, dev: &XenbusDevice) -> Result<(), String>;
    /// Free rings, channels, buffers.
    async fn teardown(&mut self);
}

/// Something that wants to know our state (logs, tests, the binary's
/// stdout report).
pub type StateObserver = Box<dyn Fn(&str, XenbusState) + Send + Sync>;

/// How long a device waits for its backend before probing anyway (libxl
/// gives up on a backend after 10 s; tests want a guest without a backend to
/// go on sooner).
const BACKEND_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Until the backend is InitWait or later (its features are written).
async fn wait_for_backend_ready(dev: &XenbusDevice, timeout: std::time::Duration) {
    use XenbusState::{Connected, InitWait, Initialised};
    let Ok(states) = dev.watch_backend_state().await else {
        return;
    };
    let mut states = Box::pin(states);
    let _ = tokio::time::timeout(timeout, async {
        while let Some(s) = states.next().await {
            if matches!(s, InitWait | Initialised | Connected) {
                return;
            }
        }
    })
    .await;
}

/// Run one frontend device until `stop` turns true: probe, then react to
/// every backend state change. On stop, close as `xen_drv_remove` does
/// (Closing, wait briefly for the backend, tear down, Closed).
pub async fn run<O: FrontendOps>(
    dev: XenbusDevice,
    mut policy: FrontendPolicy,
    mut ops: O,
    label: String,
    observer: Option<StateObserver>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let report = |state: XenbusState| {
        tracing::info!(device = %label, ?state, "frontend state");
        if let Some(o) = &observer {
            o(&label, state);
        }
    };
    // A device our previous life left connected is reset first (the xenbus
    // core does this at boot, before any driver probes).
    if dev.reset_if_stale().await {
        report(XenbusState::Initialising);
    }
    // libxl unpauses a domain only after its backends reached InitWait, so
    // on Xen a driver probes with the backend's features already written and
    // its watch fires once with InitWait. This process is toolstack and
    // guest at once: wait as libxl would (bounded, so a guest without a
    // backend still boots). Probing earlier is legal but racy for the test
    // backends: a write landing between the watch's registration and its
    // first read is seen twice, and snd-xen-front republishes on each.
    tokio::select! {
        _ = wait_for_backend_ready(&dev, BACKEND_READY_WAIT) => {}
        _ = stop.changed() => return Ok(()),
    }
    let mut states = Box::pin(dev.watch_backend_state().await.map_err(|e| e.to_string())?);
    let probe = policy.probe();
    execute(&dev, &mut ops, probe, &label, &report).await;
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            next = states.next() => {
                let Some(backend) = next else { break };
                tracing::debug!(device = %label, ?backend, "backend state");
                let actions = policy.on_backend_state(backend);
                execute(&dev, &mut ops, actions, &label, &report).await;
            }
        }
    }
    // xen_drv_remove: Closing, give the backend up to 1 s (100 × 10 ms) to
    // reach InitWait, then free everything and go Closed.
    let _ = dev.switch_state(XenbusState::Closing).await;
    report(XenbusState::Closing);
    for _ in 0..100 {
        if dev.backend_state().await == XenbusState::InitWait {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ops.teardown().await;
    let _ = dev.switch_state(XenbusState::Closed).await;
    report(XenbusState::Closed);
    Ok(())
}

async fn execute<O: FrontendOps>(
    dev: &XenbusDevice,
    ops: &mut O,
    actions: Vec<Action>,
    label: &str,
    report: &impl Fn(XenbusState),
) {
    for action in actions {
        match action {
            Action::Teardown => ops.teardown().await,
            Action::Publish => {
                if let Err(e) = ops.publish(dev).await {
                    // xenbus_dev_fatal: record the error and close.
                    tracing::error!(device = %label, "initializing frontend: {e}");
                    let _ = dev
                        .write_own("error", &format!("initializing frontend: {e}"))
                        .await;
                    let _ = dev.switch_state(XenbusState::Closing).await;
                    report(XenbusState::Closing);
                    return;
                }
            }
            Action::Connect => {
                if let Err(e) = ops.connect(dev).await {
                    tracing::error!(device = %label, "connecting backend: {e}");
                    let _ = dev
                        .write_own("error", &format!("connecting backend: {e}"))
                        .await;
                    let _ = dev.switch_state(XenbusState::Closing).await;
                    report(XenbusState::Closing);
                    return;
                }
            }
            Action::SwitchState(s) => {
                if let Err(e) = dev.switch_state(s).await {
                    tracing::error!(device = %label, "cannot switch to {s:?}: {e}");
                }
                report(s);
            }
        }
    }
}
