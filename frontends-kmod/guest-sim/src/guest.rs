//! A running simulated guest: one frontend task per device, and handles
//! through which tests and the binary drive each device step by step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvgate_platform::Platform;
use pvgate_protocol::kbdif::KbdInEvent;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::GuestConfig;
use crate::content::InputState;
use crate::display::{DisplayOps, DisplaySession};
use crate::input::{FrameLookup, InputFeatures, InputOps};
use crate::sound::{SoundOps, SoundSession};
use crate::xenbus::driver::{self, StateObserver};
use crate::xenbus::{Driver, FrontendPolicy, XenbusDevice, XenbusState};

/// Called with (device label, our new state); the binary prints these.
pub type StateReport = Arc<dyn Fn(&str, XenbusState) + Send + Sync>;

/// Options for [`GuestSim::start`].
#[derive(Clone, Default)]
pub struct StartOptions {
    /// Told every state change of every device.
    pub report: Option<StateReport>,
    /// Frame numbers for kbdif's `page-ref`.
    pub frame_lookup: Option<FrameLookup>,
}

/// A device's frontend and what it currently offers.
pub struct DeviceHandle<S> {
    /// `/local/domain/<id>/device/<kind>/<devid>`.
    pub nodename: String,
    session: watch::Receiver<Option<Arc<S>>>,
    state: watch::Receiver<XenbusState>,
}

impl<S> Clone for DeviceHandle<S> {
    fn clone(&self) -> Self {
        DeviceHandle {
            nodename: self.nodename.clone(),
            session: self.session.clone(),
            state: self.state.clone(),
        }
    }
}

/// Waiting for a device failed.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {what} within {waited:?} (frontend state {state:?})")]
pub struct WaitError {
    pub device: String,
    pub what: &'static str,
    pub waited: Duration,
    pub state: XenbusState,
}

impl<S> DeviceHandle<S> {
    /// The current connection, if the device is connected.
    pub fn current(&self) -> Option<Arc<S>> {
        self.session.borrow().clone()
    }

    /// Our current xenbus state.
    pub fn state(&self) -> XenbusState {
        *self.state.borrow()
    }

    /// Wait until the device is connected (a new connection if `after` is
    /// the previous one: for tests of backend restarts).
    pub async fn connected_after(
        &self,
        after: Option<&Arc<S>>,
        wait: Duration,
    ) -> Result<Arc<S>, WaitError> {
        let mut rx = self.session.clone();
        let res = tokio::time::timeout(wait, async {
            loop {
                if let Some(s) = rx.borrow_and_update().clone() {
                    if after.is_none_or(|old| !Arc::ptr_eq(old, &s)) {
                        return Some(s);
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match res {
            Ok(Some(s)) => Ok(s),
            _ => Err(WaitError {
                device: self.nodename.clone(),
                what: "not connected",
                waited: wait,
                state: self.state(),
            }),
        }
    }

    pub async fn connected(&self, wait: Duration) -> Result<Arc<S>, WaitError> {
        self.connected_after(None, wait).await
    }

    /// Wait until our state is `want`.
    pub async fn wait_state(&self, want: XenbusState, wait: Duration) -> Result<(), WaitError> {
        let mut rx = self.state.clone();
        let ok = tokio::time::timeout(wait, rx.wait_for(|s| *s == want)).await;
        match ok {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WaitError {
                device: self.nodename.clone(),
                what: "state not reached",
                waited: wait,
                state: self.state(),
            }),
        }
    }
}

/// The kbdif device: state plus the input it received.
#[derive(Clone)]
pub struct InputHandle {
    pub device: DeviceHandle<()>,
    /// What the guest's input devices report, drawn by the content overlay.
    pub state: Arc<Mutex<InputState>>,
    events: broadcast::Sender<KbdInEvent>,
    features: Arc<Mutex<Option<InputFeatures>>>,
}

impl InputHandle {
    /// Every kbdif event received from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<KbdInEvent> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> InputState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the driver read from the backend's directory at its last probe.
    pub fn features(&self) -> Option<InputFeatures> {
        *self.features.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running guest.
pub struct GuestSim {
    pub config: GuestConfig,
    pub platform: Platform,
    pub displays: Vec<DeviceHandle<DisplaySession>>,
    pub sounds: Vec<DeviceHandle<SoundSession>>,
    pub inputs: Vec<InputHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

fn observer(label_state: watch::Sender<XenbusState>, report: Option<StateReport>) -> StateObserver {
    Box::new(move |label: &str, s: XenbusState| {
        label_state.send_replace(s);
        if let Some(r) = &report {
            r(label, s);
        }
    })
}

/// The size the input state (and so the pointer) works in: the first
/// display's first connector, else the pointer's default space.
fn input_frame_size(config: &GuestConfig) -> (u32, u32) {
    config
        .displays
        .first()
        .and_then(|d| d.connectors.first())
        .map(|c| (c.width, c.height))
        .unwrap_or(crate::input::DEFAULT_POINTER_SIZE)
}

impl GuestSim {
    /// Start the frontends for every device in `config` (the toolstack must
    /// already have created them). `platform` acts as the guest.
    pub async fn start(
        config: GuestConfig,
        platform: Platform,
        opts: StartOptions,
    ) -> anyhow::Result<GuestSim> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let dom = format!("/local/domain/{}/device", config.domid);
        let mut displays = Vec::new();
        for (i, d) in config.displays.iter().enumerate() {
            let nodename = format!("{dom}/vdispl/{i}");
            let dev = XenbusDevice::probe(platform.store.clone(), &nodename).await?;
            let (session_tx, session_rx) = watch::channel(None);
            let (state_tx, state_rx) = watch::channel(XenbusState::Initialising);
            let ops = DisplayOps::new(platform.clone(), session_tx);
            let policy = FrontendPolicy::new(Driver::Display {
                be_alloc: d.be_alloc,
            });
            let label = format!("vdispl/{i}");
            tasks.push(tokio::spawn(driver::run(
                dev,
                policy,
                ops,
                label,
                Some(observer(state_tx, opts.report.clone())),
                stop_rx.clone(),
            )));
            displays.push(DeviceHandle {
                nodename,
                session: session_rx,
                state: state_rx,
            });
        }
        let mut sounds = Vec::new();
        for i in 0..config.sound_cards.len() {
            let nodename = format!("{dom}/vsnd/{i}");
            let dev = XenbusDevice::probe(platform.store.clone(), &nodename).await?;
            let (session_tx, session_rx) = watch::channel(None);
            let (state_tx, state_rx) = watch::channel(XenbusState::Initialising);
            let ops = SoundOps::new(platform.clone(), session_tx);
            tasks.push(tokio::spawn(driver::run(
                dev,
                FrontendPolicy::new(Driver::Sound),
                ops,
                format!("vsnd/{i}"),
                Some(observer(state_tx, opts.report.clone())),
                stop_rx.clone(),
            )));
            sounds.push(DeviceHandle {
                nodename,
                session: session_rx,
                state: state_rx,
            });
        }
        let mut inputs = Vec::new();
        let frame = input_frame_size(&config);
        for i in 0..config.inputs.len() {
            let nodename = format!("{dom}/vkbd/{i}");
            let dev = XenbusDevice::probe(platform.store.clone(), &nodename).await?;
            // Connected is the only "session" kbdif has.
            let (session_tx, session_rx) = watch::channel(None::<Arc<()>>);
            let (state_tx, state_rx) = watch::channel(XenbusState::Initialising);
            let state = Arc::new(Mutex::new(InputState::new(frame.0, frame.1)));
            let (events, _) = broadcast::channel(1024);
            let features = Arc::new(Mutex::new(None));
            let ops = InputOps::new(
                platform.clone(),
                frame,
                state.clone(),
                events.clone(),
                opts.frame_lookup.clone(),
            )
            .with_features_report(features.clone());
            let report = opts.report.clone();
            let obs: StateObserver = Box::new(move |label: &str, s: XenbusState| {
                state_tx.send_replace(s);
                session_tx.send_replace((s == XenbusState::Connected).then(|| Arc::new(())));
                if let Some(r) = &report {
                    r(label, s);
                }
            });
            tasks.push(tokio::spawn(driver::run(
                dev,
                FrontendPolicy::new(Driver::Input),
                ops,
                format!("vkbd/{i}"),
                Some(obs),
                stop_rx.clone(),
            )));
            inputs.push(InputHandle {
                device: DeviceHandle {
                    nodename,
                    session: session_rx,
                    state: state_rx,
                },
                state,
                events,
                features,
            });
        }
        Ok(GuestSim {
            config,
            platform,
            displays,
            sounds,
            inputs,
            stop,
            tasks,
        })
    }

    /// Close every device as the drivers do on removal, and wait for it.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Stop without closing anything (a guest that crashed): tasks are
    /// aborted, our state nodes stay as they were; rings, grants and event
    /// channels go as the process's would.
    pub fn vanish(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Hang: stop reacting to anything (xenbus, events, requests) but keep
    /// the display and sound rings, grants and event channels as they are.
    /// The returned value holds them until dropped.
    pub fn freeze(self) -> Frozen {
        for t in &self.tasks {
            t.abort();
        }
        let displays: Vec<_> = self.displays.iter().filter_map(|d| d.current()).collect();
        let sounds: Vec<_> = self.sounds.iter().filter_map(|d| d.current()).collect();
        for d in &displays {
            d.freeze();
        }
        for s in &sounds {
            s.freeze();
        }
        Frozen {
            _displays: displays,
            _sounds: sounds,
        }
    }
}

/// What a hung guest still holds (see [`GuestSim::freeze`]).
pub struct Frozen {
    _displays: Vec<Arc<DisplaySession>>,
    _sounds: Vec<Arc<SoundSession>>,
}
