//! The gateway's device supervisor: one backend task per guest device,
//! started the moment discovery sees the device (xl gives us 10 s to reach
//! InitWait) and stopped when it goes away.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pvgate_backends::display::{self, DisplayLimits, DisplayOutputs};
use pvgate_backends::input::{self, InputKind, InputLimits, InputOutputs, InputSink};
use pvgate_backends::sound::StreamOutput;
use pvgate_backends::sound::{self, SoundLimits, SoundOutputs};
use pvgate_media::{EncodeError, EncoderHub, EncoderParams, SharedFrame, Subscription};
use pvgate_platform::{DomId, Platform};
use pvgate_protocol::keys::StreamType;
use tokio::sync::watch;

use crate::discovery::{self, Change, DeviceId};
use crate::http::{DisplayInfo, GatewayView, GuestInfo};
use crate::policy::{apply, sound::GuestSound, Policies};
use crate::session::input::InputTarget;

/// Everything the gateway serves, shared with the HTTP layer.
pub struct Gateway {
    platform: Platform,
    pub displays: DisplayOutputs,
    pub encoders: EncoderHub,
    pub sounds: SoundOutputs,
    /// Every connected vkbd/vinput device, for the session layer.
    pub inputs: InputOutputs,
    display_limits: DisplayLimits,
    sound_limits: SoundLimits,
    input_limits: InputLimits,
    /// `/local/domain/<id>/name` of every guest we serve.
    names: Mutex<BTreeMap<DomId, String>>,
    /// Stop switches of the running device tasks.
    devices: Mutex<BTreeMap<DeviceId, watch::Sender<bool>>>,
    /// Every tenant's policy: sound limits per stream, encoder limits per
    /// connector (and the sessions' admission, through `policies()`).
    policies: Arc<Policies>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task cannot leave these maps inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gateway {
    /// A gateway deciding with `policies` (tenants' plugins).
    pub fn with_policies(platform: Platform, policies: Arc<Policies>) -> Arc<Gateway> {
        Arc::new(Gateway {
            platform,
            displays: DisplayOutputs::new(),
            encoders: EncoderHub::new(),
            sounds: SoundOutputs::default(),
            inputs: InputOutputs::new(),
            display_limits: DisplayLimits::default(),
            sound_limits: SoundLimits::default(),
            input_limits: InputLimits::default(),
            names: Mutex::new(BTreeMap::new()),
            devices: Mutex::new(BTreeMap::new()),
            policies,
        })
    }

    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// Serve every device that appears, until the store connection ends.
    pub async fn run(self: &Arc<Self>) -> anyhow::Result<()> {
        discovery::run(&self.platform, |change| match change {
            Change::Added(device) => self.start_device(device),
            Change::Removed(device) => self.stop_device(&device),
        })
        .await
    }

    fn start_device(self: &Arc<Self>, device: DeviceId) {
        let (stop_tx, stop) = watch::channel(false);
        let name = format!("dom{} {}/{}", device.frontend, device.kind, device.devid);
        let this = self.clone();
        let platform = self.platform.clone();
        let (frontend, devid) = (device.frontend, device.devid);
        let served = match device.kind {
            "vdispl" => {
                let (outputs, hub, limits) = (
                    self.displays.clone(),
                    self.encoders.clone(),
                    self.display_limits.clone(),
                );
                tokio::spawn(async move {
                    let result = display::serve_device(
                        platform, frontend, devid, outputs, hub, limits, stop,
                    )
                    .await;
                    this.device_ended(&name, result);
                });
                true
            }
            "vsnd" => {
                let (outputs, mut limits) = (self.sounds.clone(), self.sound_limits.clone());
                tokio::spawn(async move {
                    // The guest's name decides its tenant (patterns) and
                    // labels, so it is read before the streams' limits are
                    // (one xenstore read; xl allows 10 s to InitWait).
                    let guest_name = this.name_of(frontend).await;
                    let guest = this.policies.guest(frontend, &guest_name);
                    limits.policy = sound::PolicyHook(Some(Arc::new(GuestSound {
                        policies: this.policies.clone(),
                        guest,
                    })));
                    let result =
                        sound::serve_device(platform, frontend, devid, outputs, limits, stop).await;
                    this.device_ended(&name, result);
                });
                true
            }
            "vkbd" | "vinput" => {
                let kind = InputKind::from_backend_kind(device.kind).unwrap_or(InputKind::Vkbd);
                let (outputs, limits) = (self.inputs.clone(), self.input_limits.clone());
                tokio::spawn(async move {
                    let result = input::serve_device_as(
                        kind, platform, frontend, devid, outputs, limits, stop,
                    )
                    .await;
                    this.device_ended(&name, result);
                });
                true
            }
            other => {
                tracing::warn!(device = %name, kind = other, "not a device kind this build serves");
                false
            }
        };
        if served {
            lock(&self.devices).insert(device, stop_tx);
            self.learn_name(frontend);
        }
    }

    /// Stop serving every device (on shutdown: before the platform goes).
    pub fn stop_all(&self) {
        for (_, stop) in std::mem::take(&mut *lock(&self.devices)) {
            let _ = stop.send(true);
        }
    }

    fn device_ended(&self, name: &str, result: Result<(), pvgate_backends::xenbus::DeviceError>) {
        match result {
            Ok(()) => tracing::info!(device = %name, "device task ended"),
            Err(e) => {
                tracing::error!(device = %name, error = %e, "device stopped; it is served again when the toolstack re-creates it")
            }
        }
    }

    fn stop_device(&self, device: &DeviceId) {
        if let Some(stop) = lock(&self.devices).remove(device) {
            let _ = stop.send(true);
        }
        let still_served = lock(&self.devices)
            .keys()
            .any(|d| d.frontend == device.frontend);
        if !still_served {
            lock(&self.names).remove(&device.frontend);
        }
    }

    /// Remember the guest's name for the API (best effort: a guest without
    /// one is shown by domid).
    fn learn_name(self: &Arc<Self>, domid: DomId) {
        if lock(&self.names).contains_key(&domid) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.name_of(domid).await;
        });
    }

    /// The guest's xenstore name, read once and remembered.
    async fn name_of(&self, domid: DomId) -> String {
        if let Some(n) = lock(&self.names).get(&domid) {
            return n.clone();
        }
        let name = self
            .platform
            .store
            .read_opt(&format!("/local/domain/{domid}/name"))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| format!("domain-{domid}"));
        lock(&self.names).entry(domid).or_insert(name).clone()
    }

    /// The guest's name if known (the API's and the policy's view).
    pub fn known_name(&self, domid: DomId) -> String {
        lock(&self.names)
            .get(&domid)
            .cloned()
            .unwrap_or_else(|| format!("domain-{domid}"))
    }

    /// The guest's first stream of `direction` (device, then stream order).
    fn first_stream(&self, domid: DomId, direction: StreamType) -> Option<Arc<StreamOutput>> {
        self.sounds
            .list()
            .into_iter()
            .find(|s| s.key.domid == domid && s.direction == direction)
    }

    /// The guest's input device (its lowest connected vkbd/vinput devid).
    pub fn input(&self, domid: DomId) -> Option<InputSink> {
        self.inputs.get(domid)
    }

    /// The displays of a guest in API order (device, then connector).
    fn guest_displays(&self, domid: DomId) -> Vec<Arc<display::ConnectorOutput>> {
        self.displays.of_guest(domid)
    }
}

fn direction_name(d: StreamType) -> &'static str {
    match d {
        StreamType::Playback => "playback",
        StreamType::Capture => "capture",
    }
}

impl Gateway {
    /// The sound streams of a guest as the API shows them.
    fn guest_sound(&self, domid: DomId) -> Vec<crate::http::SoundInfo> {
        self.sounds
            .list()
            .iter()
            .filter(|s| s.key.domid == domid)
            .map(|s| crate::http::SoundInfo {
                device: s.key.devid,
                stream: s.key.stream,
                direction: direction_name(s.direction),
                open: s.open_info().is_some(),
            })
            .collect()
    }
}

impl GatewayView for Gateway {
    fn guests(&self) -> Vec<GuestInfo> {
        let names = lock(&self.names).clone();
        names
            .into_iter()
            .map(|(domid, name)| GuestInfo {
                domid,
                name,
                displays: self
                    .guest_displays(domid)
                    .iter()
                    .enumerate()
                    .map(|(index, out)| DisplayInfo {
                        index,
                        device: out.key.devid,
                        connector: out.key.connector,
                        width: out.resolution.0,
                        height: out.resolution.1,
                    })
                    .collect(),
                sound: self.guest_sound(domid),
                input: self.input(domid).is_some(),
                ..GuestInfo::default()
            })
            .collect()
    }

    fn metrics(&self) -> crate::http::metrics::GatewaySample {
        use crate::http::metrics::{ConnectorSample, GatewaySample, StreamSample};
        GatewaySample {
            connectors: self
                .displays
                .list()
                .iter()
                .map(|o| ConnectorSample {
                    domid: o.key.domid,
                    device: o.key.devid,
                    connector: o.key.connector,
                    width: o.resolution.0,
                    height: o.resolution.1,
                    enabled: o.is_enabled(),
                    flips: o.stats(),
                })
                .collect(),
            encoders: self.encoders.stats(),
            streams: self
                .sounds
                .list()
                .iter()
                .map(|s| StreamSample {
                    domid: s.key.domid,
                    device: s.key.devid,
                    stream: s.key.stream,
                    direction: direction_name(s.direction),
                    open: s.open_info().is_some(),
                    stats: s.stats(),
                })
                .collect(),
        }
    }

    fn display_frame(&self, domid: DomId, index: usize) -> Option<SharedFrame> {
        self.guest_displays(domid).get(index)?.latest_frame()
    }

    fn subscribe_video(
        &self,
        domid: DomId,
        index: usize,
        params: EncoderParams,
    ) -> Option<Result<Subscription, EncodeError>> {
        let output = self.guest_displays(domid).get(index)?.clone();
        // The tenant's video policy bounds every encoder a viewer gets,
        // whatever the session asked for: bitrate, frame rate, size.
        let guest = self.policies.guest(domid, &self.known_name(domid));
        let policy = self
            .policies
            .video(&guest, output.key.connector, output.resolution);
        let params = apply::clamp_encoder(params, &policy, output.resolution);
        Some(self.encoders.subscribe(output.hub_id(), params))
    }

    fn playback_stream(&self, domid: DomId) -> Option<Arc<StreamOutput>> {
        self.first_stream(domid, StreamType::Playback)
    }

    fn capture_stream(&self, domid: DomId) -> Option<Arc<StreamOutput>> {
        self.first_stream(domid, StreamType::Capture)
    }

    fn input_target(&self, domid: DomId) -> Option<Arc<dyn InputTarget>> {
        Gateway::input(self, domid).map(|sink| Arc::new(sink) as Arc<dyn InputTarget>)
    }

    fn policies(&self) -> Option<Arc<Policies>> {
        Some(self.policies.clone())
    }
}
