//! One sndif stream, sans-IO: requests in, a status (or refined HW
//! parameters) out, CUR_POS positions due, PCM through the audio crate.
//! The caller owns the ring, the event page, the clock and the grant
//! mapper (behind [`BufferMapper`]), so this runs unchanged in tests and
//! benches without any Xen.

use std::sync::Arc;

use pvgate_audio::pacing::{CurPos, PositionClock, WriteOutcome};
use pvgate_audio::volume::Volume;
use pvgate_audio::{
    CaptureConfig, CapturePipeline, Layout, OpusSettings, PacingConfig, PlaybackConfig,
    PlaybackPacer, PlaybackPipeline, SampleFormat, Trigger,
};
use pvgate_protocol::keys::StreamType;
use pvgate_protocol::sndif::{
    HwParams, Open, RwRange, SndRequest, SndRequestOp, SndResponse, SndResponseBody, TriggerType,
};

use super::hwparams::{OpenParams, StreamSpace};
use super::outputs::{OpenInfo, StreamOutput};
use super::requests::{Refusal, EBUSY, EFAULT, EINVAL, EIO};

/// A stream buffer the guest shared at OPEN (a grant mapping in the
/// gateway; plain memory in tests).
pub trait PcmBuffer: Send {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), String>;
    fn write(&self, offset: usize, src: &[u8]) -> Result<(), String>;
}

/// Maps the buffer behind an OPEN's page directory.
pub trait BufferMapper {
    fn map(&mut self, open: &Open) -> Result<Box<dyn PcmBuffer>, Refusal>;
}

/// What is built at OPEN and dropped at CLOSE.
enum Engine {
    Playback {
        pacer: PlaybackPacer,
        pipeline: PlaybackPipeline,
    },
    Capture {
        clock: PositionClock,
        pipeline: CapturePipeline,
    },
}

struct OpenStream {
    params: OpenParams,
    buffer: Box<dyn PcmBuffer>,
    volume: Volume,
    engine: Engine,
}

/// Encoding settings for the stream's pipelines.
#[derive(Debug, Clone, Copy)]
pub struct MediaSettings {
    pub opus: OpusSettings,
    pub capture_source: Layout,
}

pub struct StreamCore {
    direction: StreamType,
    space: StreamSpace,
    media: MediaSettings,
    output: Arc<StreamOutput>,
    open: Option<OpenStream>,
    /// PCM released by the pacer or read from the buffer; reused.
    scratch: Vec<u8>,
    chunk: Vec<u8>,
    curpos: Vec<CurPos>,
}

fn trigger_of(t: TriggerType) -> Trigger {
    match t {
        TriggerType::Start => Trigger::Start,
        TriggerType::Pause => Trigger::Pause,
        TriggerType::Stop => Trigger::Stop,
        TriggerType::Resume => Trigger::Resume,
    }
}

/// The answer to `req`: its status, with the refined parameters for
/// HW_PARAM_QUERY.
pub fn response(req: &SndRequest, result: &Result<Option<HwParams>, Refusal>) -> SndResponse {
    match result {
        Ok(Some(p)) => SndResponse {
            id: req.id,
            status: 0,
            body: SndResponseBody::HwParamQuery(*p),
        },
        Ok(None) => SndResponse::for_request(req, 0),
        Err(r) => SndResponse::for_request(req, r.status),
    }
}

impl StreamCore {
    pub fn new(space: StreamSpace, media: MediaSettings, output: Arc<StreamOutput>) -> StreamCore {
        StreamCore {
            direction: output.direction,
            space,
            media,
            output,
            open: None,
            scratch: Vec::new(),
            chunk: Vec::new(),
            curpos: Vec::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn output(&self) -> &Arc<StreamOutput> {
        &self.output
    }

    /// Handles one request at `now_ns`. CUR_POS positions that fell due
    /// on the way (a trigger or write first brings the stream up to now)
    /// are appended to `positions`.
    pub fn handle(
        &mut self,
        req: &SndRequest,
        now_ns: u64,
        mapper: &mut dyn BufferMapper,
        positions: &mut Vec<u64>,
    ) -> Result<Option<HwParams>, Refusal> {
        let op = req.op.op().name();
        match req.op {
            SndRequestOp::HwParamQuery(q) => self.space.refine(&q).map(Some),
            SndRequestOp::Open(o) => self.open(&o, mapper).map(|_| None),
            SndRequestOp::Close => {
                self.close();
                Ok(None)
            }
            SndRequestOp::Write(r) => {
                self.poll(now_ns, positions);
                self.write(r).map(|_| None)
            }
            SndRequestOp::Read(r) => {
                self.poll(now_ns, positions);
                self.read(r).map(|_| None)
            }
            SndRequestOp::Trigger(t) => {
                self.trigger(t, now_ns, positions)?;
                Ok(None)
            }
            SndRequestOp::SetVolume(r) => {
                let n = self.channels(op)? as usize;
                let bytes = self.copy_in(op, r, n * 4)?;
                let mdb: Vec<i32> = bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                self.change_volume(|v| v.set_volumes_mdb(&mdb));
                Ok(None)
            }
            SndRequestOp::GetVolume(r) => {
                let n = self.channels(op)? as usize;
                let open = self.open.as_ref().ok_or_else(|| not_open(op))?;
                let bytes: Vec<u8> = open
                    .volume
                    .volumes_mdb()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                let range = region(op, r, open.params.buffer_sz, n * 4)?;
                open.buffer
                    .write(range.start, &bytes)
                    .map_err(|e| Refusal::new(EFAULT, format!("{op}: {e}")))?;
                Ok(None)
            }
            SndRequestOp::Mute(r) | SndRequestOp::Unmute(r) => {
                let mute = matches!(req.op, SndRequestOp::Mute(_));
                let n = self.channels(op)? as usize;
                let flags = self.copy_in(op, r, n)?;
                self.change_volume(|v| v.set_mute(&flags, mute));
                Ok(None)
            }
        }
    }

    fn channels(&self, op: &str) -> Result<u32, Refusal> {
        self.open
            .as_ref()
            .map(|o| o.params.channels)
            .ok_or_else(|| not_open(op))
    }

    /// Copies `need` octets of the request's region out of the buffer.
    fn copy_in(&self, op: &str, r: RwRange, need: usize) -> Result<Vec<u8>, Refusal> {
        let open = self.open.as_ref().ok_or_else(|| not_open(op))?;
        let range = region(op, r, open.params.buffer_sz, need)?;
        let mut bytes = vec![0u8; need];
        open.buffer
            .read(range.start, &mut bytes)
            .map_err(|e| Refusal::new(EFAULT, format!("{op}: {e}")))?;
        Ok(bytes)
    }

    fn change_volume(&mut self, f: impl FnOnce(&mut Volume)) {
        if let Some(open) = &mut self.open {
            f(&mut open.volume);
            let v = open.volume.clone();
            match &mut open.engine {
                Engine::Playback { pipeline, .. } => *pipeline.volume_mut() = v,
                Engine::Capture { pipeline, .. } => *pipeline.volume_mut() = v,
            }
        }
    }

    fn open(&mut self, o: &Open, mapper: &mut dyn BufferMapper) -> Result<(), Refusal> {
        if self.open.is_some() {
            return Err(Refusal::new(
                EBUSY,
                "OPEN: the stream is already open (CLOSE it first)",
            ));
        }
        let params = self.space.check_open(o)?;
        let format =
            SampleFormat::new(params.format).map_err(|e| Refusal::invalid(format!("OPEN: {e}")))?;
        let pacing = PacingConfig::from_octets(
            params.rate,
            params.frame_bytes,
            params.buffer_sz,
            params.period_sz,
        )
        .map_err(|e| Refusal::invalid(format!("OPEN: {e}")))?;
        let channels = params.channels as usize;
        let engine = match self.direction {
            StreamType::Playback => Engine::Playback {
                pacer: PlaybackPacer::new(pacing)
                    .map_err(|e| Refusal::invalid(format!("OPEN: {e}")))?,
                pipeline: PlaybackPipeline::new(
                    PlaybackConfig {
                        format,
                        rate: params.rate,
                        channels,
                        opus: self.media.opus,
                    },
                    self.output.hub().clone(),
                )
                .map_err(|e| Refusal::new(EIO, format!("OPEN: cannot build the encoder: {e}")))?,
            },
            StreamType::Capture => Engine::Capture {
                clock: PositionClock::new(pacing)
                    .map_err(|e| Refusal::invalid(format!("OPEN: {e}")))?,
                pipeline: CapturePipeline::new(CaptureConfig::new(
                    format,
                    params.rate,
                    channels,
                    self.media.capture_source,
                ))
                .map_err(|e| Refusal::new(EIO, format!("OPEN: cannot build the decoder: {e}")))?,
            },
        };
        // Map last: nothing above can fail after the guest's pages are held.
        let buffer = mapper.map(o)?;
        self.output.set_open(Some(OpenInfo {
            format: params.format,
            rate: params.rate,
            channels: params.channels,
            buffer_sz: params.buffer_sz,
            period_sz: params.period_sz,
        }));
        self.open = Some(OpenStream {
            params,
            buffer,
            volume: Volume::new(channels),
            engine,
        });
        Ok(())
    }

    /// CLOSE: drop the buffer mapping and the pipelines. Linux sends CLOSE
    /// from hw_free also when the stream was never opened, so it always
    /// succeeds.
    pub fn close(&mut self) {
        self.open = None;
        self.output.set_open(None);
    }

    fn write(&mut self, r: RwRange) -> Result<WriteOutcome, Refusal> {
        let open = self.open.as_mut().ok_or_else(|| not_open("WRITE"))?;
        let Engine::Playback { pacer, .. } = &mut open.engine else {
            return Err(Refusal::invalid("WRITE on a capture stream"));
        };
        let range = region("WRITE", r, open.params.buffer_sz, r.length as usize)?;
        // One copy out of shared memory; the guest may scribble on the
        // buffer the moment we answer.
        self.chunk.resize(range.len(), 0);
        open.buffer
            .read(range.start, &mut self.chunk)
            .map_err(|e| Refusal::new(EFAULT, format!("WRITE: {e}")))?;
        Ok(pacer.write(&self.chunk))
    }

    fn read(&mut self, r: RwRange) -> Result<(), Refusal> {
        let open = self.open.as_mut().ok_or_else(|| not_open("READ"))?;
        let Engine::Capture { pipeline, .. } = &mut open.engine else {
            return Err(Refusal::invalid("READ on a playback stream"));
        };
        let range = region("READ", r, open.params.buffer_sz, r.length as usize)?;
        self.scratch.clear();
        pipeline.read(range.len(), &mut self.scratch);
        open.buffer
            .write(range.start, &self.scratch)
            .map_err(|e| Refusal::new(EFAULT, format!("READ: {e}")))?;
        Ok(())
    }

    fn trigger(
        &mut self,
        t: TriggerType,
        now_ns: u64,
        positions: &mut Vec<u64>,
    ) -> Result<(), Refusal> {
        let open = self.open.as_mut().ok_or_else(|| not_open("TRIGGER"))?;
        let trigger = trigger_of(t);
        match &mut open.engine {
            Engine::Playback { pacer, pipeline } => {
                self.scratch.clear();
                let tick = pacer.trigger(trigger, now_ns, &mut self.scratch);
                feed(pipeline, &self.scratch, tick.silence_frames);
                positions.extend(tick.events.iter().map(|e| e.position));
                if trigger == Trigger::Stop {
                    pipeline.reset();
                }
            }
            Engine::Capture { clock, pipeline } => {
                self.curpos.clear();
                clock.advance(now_ns, &mut self.curpos);
                positions.extend(self.curpos.iter().map(|e| e.position));
                clock.trigger(trigger, now_ns);
                if trigger == Trigger::Stop {
                    pipeline.reset();
                }
            }
        }
        Ok(())
    }

    /// Brings the stream up to `now_ns`: due PCM (or silence) to the
    /// encoder, period boundaries crossed to `positions`.
    pub fn poll(&mut self, now_ns: u64, positions: &mut Vec<u64>) {
        let Some(open) = &mut self.open else { return };
        match &mut open.engine {
            Engine::Playback { pacer, pipeline } => {
                self.scratch.clear();
                let tick = pacer.poll(now_ns, &mut self.scratch);
                feed(pipeline, &self.scratch, tick.silence_frames);
                positions.extend(tick.events.iter().map(|e| e.position));
            }
            Engine::Capture { clock, .. } => {
                self.curpos.clear();
                clock.advance(now_ns, &mut self.curpos);
                positions.extend(self.curpos.iter().map(|e| e.position));
            }
        }
    }

    /// When to poll next (None while closed, stopped or paused).
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.open.as_ref()?.engine {
            Engine::Playback { pacer, .. } => pacer.next_deadline(),
            Engine::Capture { clock, .. } => clock.next_event_ns(),
        }
    }

    /// One Opus packet from a viewer's microphone.
    pub fn push_capture(&mut self, packet: &[u8]) {
        if let Some(OpenStream {
            engine: Engine::Capture { pipeline, .. },
            ..
        }) = &mut self.open
        {
            // A packet libopus refuses is counted in the stats; the
            // viewer is not trusted either.
            let _ = pipeline.push_opus(packet);
        }
    }

    /// Publishes the counters for /metrics and the browser layer.
    pub fn publish_stats(&self) {
        let Some(open) = &self.open else { return };
        let stats = match &open.engine {
            Engine::Playback { pacer, pipeline } => pipeline.stats().with_pacing(pacer.stats()),
            Engine::Capture { clock, pipeline } => pipeline.stats().with_pacing(clock.stats()),
        };
        self.output.shared_stats().publish(&stats);
    }
}

fn feed(pipeline: &mut PlaybackPipeline, pcm: &[u8], silence_frames: usize) {
    // Encoder failures are counted in the pipeline's stats; the stream
    // carries on (a viewer hears a gap, the guest is not to blame).
    if !pcm.is_empty() {
        let _ = pipeline.push_pcm(pcm);
    }
    if silence_frames > 0 {
        let _ = pipeline.push_silence(silence_frames);
    }
}

fn not_open(op: &str) -> Refusal {
    Refusal::invalid(format!("{op} before OPEN"))
}

/// The request's region, checked against the buffer, and at least `need`
/// octets long; `need` octets from its start.
fn region(
    op: &str,
    r: RwRange,
    buffer_sz: u32,
    need: usize,
) -> Result<std::ops::Range<usize>, Refusal> {
    let range = r.within(buffer_sz).ok_or_else(|| {
        Refusal::invalid(format!(
            "{op}: offset {} + length {} is outside the {buffer_sz}-octet buffer",
            r.offset, r.length
        ))
    })?;
    if range.len() < need {
        return Err(Refusal::new(
            EINVAL,
            format!(
                "{op}: length {} is shorter than the {need} octets needed",
                r.length
            ),
        ));
    }
    Ok(range.start..range.start + need)
}
