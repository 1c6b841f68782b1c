//! The vsnd device backend: reads the card the guest was given, maps and
//! binds every stream's ring and event page on connect, serves each stream
//! in its own task, and lets go of everything at once on disconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pvgate_audio::AudioStats;
use pvgate_platform::{DomId, Store};
use pvgate_protocol::evtpage::{EventProducer, EventRingLayout};
use pvgate_protocol::keys;
use pvgate_protocol::ring::{BackRing, RingLayout};
use pvgate_protocol::sndif_config::{self, StreamConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::buffer::GrantBufferMapper;
use super::clock::Clock;
use super::hwparams::StreamSpace;
use super::limits::SoundLimits;
use super::outputs::{SoundOutputs, StreamKey};
use super::requests::RequestBudget;
use super::stream::{MediaSettings, StreamCore};
use super::task::StreamTask;
use crate::xenbus::{DeviceBackend, DeviceContext, DeviceError};

/// Most xenstore nodes read from a frontend's card directory: the guest
/// owns that directory and could fill it.
const MAX_CONFIG_NODES: usize = 4096;
/// How long a stream task may take to stop before it is aborted.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The sndif backend of one vsnd device.
pub struct SoundBackend {
    outputs: SoundOutputs,
    limits: Arc<SoundLimits>,
    clock: Arc<dyn Clock>,
    running: Option<Running>,
}

struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SoundBackend {
    pub fn new(outputs: SoundOutputs, limits: SoundLimits, clock: Arc<dyn Clock>) -> SoundBackend {
        SoundBackend {
            outputs,
            limits: Arc::new(limits),
            clock,
            running: None,
        }
    }
}

/// Copy of the frontend's card subtree (card/device/stream/key), which
/// the sndif config reader works on.
async fn snapshot(store: &dyn Store, root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_string(), 0usize)];
    let mut seen = 0usize;
    while let Some((path, level)) = todo.pop() {
        seen += 1;
        if seen > MAX_CONFIG_NODES {
            tracing::warn!(%root, "card directory has more than {MAX_CONFIG_NODES} nodes; reading no further");
            break;
        }
        if let Ok(Some(v)) = store.read_opt(&path).await {
            out.insert(path.clone(), v);
        }
        if level < 3 {
            if let Ok(children) = store.directory(&path).await {
                todo.extend(
                    children
                        .into_iter()
                        .map(|c| (format!("{path}/{c}"), level + 1)),
                );
            }
        }
    }
    out
}

fn stream_name(ctx: &DeviceContext, s: &StreamConfig, device: u32) -> String {
    format!(
        "{} stream {} ({}/{})",
        ctx.name(),
        s.card_index,
        device,
        s.index
    )
}

impl SoundBackend {
    async fn start_streams(&mut self, ctx: &DeviceContext) -> Result<Running, DeviceError> {
        let tree = snapshot(&*ctx.platform.store, &ctx.frontend_path).await;
        let card = sndif_config::read_card(&tree, &ctx.frontend_path).map_err(|e| {
            DeviceError::BadKey {
                key: ctx.frontend_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let domid: DomId = ctx.frontend_id;
        let streams: Vec<(u32, StreamConfig)> = card
            .devices
            .iter()
            .flat_map(|d| d.streams.iter().map(|s| (d.index, s.clone())))
            .collect();
        let registered = self
            .outputs
            .register(
                streams
                    .iter()
                    .map(|(_, s)| {
                        (
                            StreamKey {
                                domid,
                                devid: ctx.devid,
                                stream: s.card_index,
                            },
                            s.clone(),
                        )
                    })
                    .collect(),
                self.limits.guest.max_streams,
            )
            .map_err(|e| DeviceError::Protocol(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for ((device, cfg), reg) in streams.into_iter().zip(registered) {
            let name = stream_name(ctx, &cfg, device);
            let transport =
                keys::sndif::read_transport(&tree, &cfg.path).map_err(|e| DeviceError::BadKey {
                    key: cfg.path.clone(),
                    reason: e.to_string(),
                })?;
            let grants = &ctx.platform.grants;
            let ring_page = grants.map(domid, &[transport.req_ring_ref], true)?;
            let req_channel = ctx
                .platform
                .events
                .bind_interdomain(domid, transport.req_event_channel)
                .await?;
            let evt_page = grants.map(domid, &[transport.evt_ring_ref], true)?;
            let evt_channel = ctx
                .platform
                .events
                .bind_interdomain(domid, transport.evt_event_channel)
                .await?;
            let events = EventProducer::attach(evt_page, EventRingLayout::SNDIF)
                .map_err(|e| DeviceError::Protocol(format!("{name}: event page: {e}")))?;
            let limits = &self.limits;
            // The policy's narrowing for this stream, decided once per
            // connect: HW_PARAM_QUERY and OPEN are answered from it.
            let stream_limits = limits.for_stream(&reg.output.key, &cfg);
            let space = StreamSpace::new(&cfg.pcm_hw, &stream_limits);
            if space.formats == 0 || space.rate_min > space.rate_max {
                tracing::warn!(stream = %name, "no format or rate of this stream's configuration is allowed; every OPEN will be refused");
            }
            let core = StreamCore::new(
                space,
                MediaSettings {
                    opus: stream_limits.opus,
                    capture_source: stream_limits.capture_source,
                },
                reg.output,
            );
            let task = StreamTask {
                ctx: ctx.clone(),
                name,
                core,
                ring: BackRing::attach(ring_page, RingLayout::SNDIF, 0),
                req_channel,
                events,
                evt_channel,
                clock: self.clock.clone(),
                budget: RequestBudget::new(
                    limits.guest.max_requests_per_sec,
                    limits.guest.request_burst,
                    self.clock.now_ns(),
                ),
                mapper: GrantBufferMapper {
                    platform: ctx.platform.clone(),
                    domid,
                    outputs: self.outputs.clone(),
                    max_pages: limits.guest.max_buffer_pages,
                },
                capture_rx: reg.capture_rx,
                stop: stop_rx.clone(),
            };
            tasks.push(task);
        }
        // Every stream mapped and bound: only now start serving, so a
        // failure above leaves nothing running.
        let tasks = tasks.into_iter().map(|t| tokio::spawn(t.run())).collect();
        Ok(Running { stop, tasks })
    }
}

#[async_trait::async_trait]
impl DeviceBackend for SoundBackend {
    async fn prepare(&mut self, _ctx: &DeviceContext) -> Result<(), DeviceError> {
        // snd-xen-front reads nothing from the backend directory.
        Ok(())
    }

    async fn connect(&mut self, ctx: &DeviceContext) -> Result<(), DeviceError> {
        match self.start_streams(ctx).await {
            Ok(running) => {
                self.running = Some(running);
                Ok(())
            }
            Err(e) => {
                // Mappings and channels built so far were dropped with the
                // unstarted tasks; take the outputs back too.
                self.outputs.remove_device(ctx.frontend_id, ctx.devid);
                Err(e)
            }
        }
    }

    async fn disconnect(&mut self, ctx: &DeviceContext) {
        if let Some(running) = self.running.take() {
            running.stop.send_replace(true);
            for mut t in running.tasks {
                if tokio::time::timeout(STOP_WAIT, &mut t).await.is_err() {
                    t.abort();
                    let _ = t.await;
                }
            }
        }
        self.outputs.remove_device(ctx.frontend_id, ctx.devid);
    }
}

/// Counters of every stream of a device, for tests and metrics.
pub fn device_stats(
    outputs: &SoundOutputs,
    domid: DomId,
    devid: u32,
) -> Vec<(StreamKey, AudioStats)> {
    outputs
        .list()
        .into_iter()
        .filter(|o| o.key.domid == domid && o.key.devid == devid)
        .map(|o| (o.key, o.stats()))
        .collect()
}
