//! One sndif stream, sans-IO: requests in, a status (or refined HW
//! parameters) out, CUR_POS positions due, PCM through the audio crate.
//! The caller owns the ring, the event page, the clock and the grant
//! mapper (behind [`BufferMapper`]), so this runs unchanged in tests and
//! benches without any Xen.
//!
//! Positions never wait for the encoder. [`StreamCore::poll`] only moves
//! the virtual card: the PCM it plays goes into an encode backlog, and the
//! caller encodes that separately ([`StreamCore::encode_step`], one Opus
//! frame's worth at a time) after it has sent the CUR_POS events. When the
//! encoder cannot keep up (a starved or emulated CPU), the backlog is
//! capped at [`MAX_ENCODE_BACKLOG_MS`]: the oldest audio is dropped and
//! counted, stream time skips past it, and the guest's hardware pointer
//! keeps following the clock — a viewer hears a gap, the guest's ALSA never
//! sees its pointer stall.

use std::collections::VecDeque;
use std::sync::Arc;

use pvgate_audio::pacing::{CurPos, PositionClock, WriteOutcome};
use pvgate_audio::volume::Volume;
use pvgate_audio::{
    AudioStats, CaptureConfig, CapturePipeline, Layout, OpusSettings, PacingConfig, PlaybackConfig,
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

/// Most audio played by the virtual card but not yet encoded; beyond it
/// the oldest is dropped.
pub const MAX_ENCODE_BACKLOG_MS: u32 = 250;
/// Audio encoded per [`StreamCore::encode_step`]: one 20 ms Opus frame.
const ENCODE_SLICE_MS: u32 = 20;

/// PCM the pacer released (in the stream's format; silence as the format's
/// silent bytes) that the encoder has not taken yet.
struct EncodeBacklog {
    bytes: VecDeque<u8>,
    frame_bytes: usize,
    /// One frame of silence in the stream's format.
    silence: Vec<u8>,
    max_frames: usize,
    slice_frames: usize,
    dropped_frames: u64,
    slice: Vec<u8>,
}

impl EncodeBacklog {
    fn new(format: SampleFormat, channels: usize, rate: u32) -> EncodeBacklog {
        let frame_bytes = format.sample_bytes() * channels;
        let frames = |ms: u32| ((u64::from(rate) * u64::from(ms) / 1000) as usize).max(1);
        EncodeBacklog {
            bytes: VecDeque::new(),
            frame_bytes,
            silence: format.silence().repeat(channels),
            max_frames: frames(MAX_ENCODE_BACKLOG_MS),
            slice_frames: frames(ENCODE_SLICE_MS),
            dropped_frames: 0,
            slice: Vec::new(),
        }
    }

    fn frames(&self) -> usize {
        self.bytes.len() / self.frame_bytes.max(1)
    }

    /// Queues `pcm` (whole frames) then `silence_frames` of silence;
    /// returns the frames dropped from the front to stay within the cap.
    fn push(&mut self, pcm: &[u8], silence_frames: usize) -> u64 {
        self.bytes.extend(pcm);
        // Silence beyond the cap would be dropped at once anyway: it (and
        // everything before it) is counted as dropped without being queued.
        let unqueued = silence_frames.saturating_sub(self.max_frames);
        for _ in 0..silence_frames - unqueued {
            self.bytes.extend(&self.silence);
        }
        let over = self.frames().saturating_sub(self.max_frames);
        self.bytes.drain(..over * self.frame_bytes);
        let dropped = (over + unqueued) as u64;
        self.dropped_frames += dropped;
        dropped
    }

    /// The next slice (at most one Opus frame's worth) to encode.
    fn take_slice(&mut self) -> Option<&[u8]> {
        let frames = self.frames().min(self.slice_frames);
        if frames == 0 {
            return None;
        }
        self.slice.clear();
        self.slice
            .extend(self.bytes.drain(..frames * self.frame_bytes));
        Some(&self.slice)
    }
}

/// What is built at OPEN and dropped at CLOSE.
enum Engine {
    Playback {
        pacer: PlaybackPacer,
        pipeline: PlaybackPipeline,
        backlog: Box<EncodeBacklog>,
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
                backlog: Box::new(EncodeBacklog::new(format, channels, params.rate)),
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
            Engine::Playback {
                pacer,
                pipeline,
                backlog,
            } => {
                self.scratch.clear();
                let tick = pacer.trigger(trigger, now_ns, &mut self.scratch);
                positions.extend(tick.events.iter().map(|e| e.position));
                queue(pipeline, backlog, &self.scratch, tick.silence_frames);
                if trigger == Trigger::Stop {
                    // What was played before the STOP still reaches the
                    // viewers (at most the capped backlog), then the
                    // pipeline restarts cleanly.
                    while encode_one(pipeline, backlog) {}
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
            Engine::Playback {
                pacer,
                pipeline,
                backlog,
            } => {
                self.scratch.clear();
                let tick = pacer.poll(now_ns, &mut self.scratch);
                positions.extend(tick.events.iter().map(|e| e.position));
                queue(pipeline, backlog, &self.scratch, tick.silence_frames);
            }
            Engine::Capture { clock, .. } => {
                self.curpos.clear();
                clock.advance(now_ns, &mut self.curpos);
                positions.extend(self.curpos.iter().map(|e| e.position));
            }
        }
    }

    /// Encodes the oldest slice of the backlog (at most one Opus frame's
    /// worth); returns whether more is waiting. The caller sends the
    /// positions of its last poll first, and polls again between steps
    /// when a deadline falls due, so encoding never holds CUR_POS back.
    pub fn encode_step(&mut self) -> bool {
        match self.open.as_mut().map(|o| &mut o.engine) {
            Some(Engine::Playback {
                pipeline, backlog, ..
            }) => encode_one(pipeline, backlog),
            _ => false,
        }
    }

    /// Encodes the whole backlog (benches, tests).
    pub fn encode_all(&mut self) {
        while self.encode_step() {}
    }

    /// Frames played but not yet encoded.
    pub fn encode_backlog_frames(&self) -> usize {
        match self.open.as_ref().map(|o| &o.engine) {
            Some(Engine::Playback { backlog, .. }) => backlog.frames(),
            _ => 0,
        }
    }

    /// The stream's counters, as [`Self::publish_stats`] publishes them
    /// (None while closed).
    pub fn stats(&self) -> Option<AudioStats> {
        let open = self.open.as_ref()?;
        Some(match &open.engine {
            Engine::Playback {
                pacer,
                pipeline,
                backlog,
            } => AudioStats {
                encode_dropped_frames: backlog.dropped_frames,
                ..pipeline.stats().with_pacing(pacer.stats())
            },
            Engine::Capture { clock, pipeline } => pipeline.stats().with_pacing(clock.stats()),
        })
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
        if let Some(stats) = self.stats() {
            self.output.shared_stats().publish(&stats);
        }
    }
}

/// Queues what the card played for the encoder; audio dropped to keep the
/// backlog bounded is skipped in stream time.
fn queue(
    pipeline: &mut PlaybackPipeline,
    backlog: &mut EncodeBacklog,
    pcm: &[u8],
    silence_frames: usize,
) {
    let dropped = backlog.push(pcm, silence_frames);
    if dropped > 0 {
        pipeline.skip(dropped);
    }
}

fn encode_one(pipeline: &mut PlaybackPipeline, backlog: &mut EncodeBacklog) -> bool {
    if let Some(slice) = backlog.take_slice() {
        // Encoder failures are counted in the pipeline's stats; the stream
        // carries on (a viewer hears a gap, the guest is not to blame).
        let _ = pipeline.push_pcm(slice);
    }
    backlog.frames() > 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sound::{StreamKey, StreamLimits};
    use pvgate_protocol::sndif::{mask_of, PcmFormat};
    use pvgate_protocol::sndif_config::{PcmHw, StreamConfig};

    struct Memory(std::sync::Mutex<Vec<u8>>);

    impl PcmBuffer for Memory {
        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
        fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), String> {
            let m = self.0.lock().unwrap();
            dst.copy_from_slice(m.get(offset..offset + dst.len()).ok_or("out of range")?);
            Ok(())
        }
        fn write(&self, offset: usize, src: &[u8]) -> Result<(), String> {
            let mut m = self.0.lock().unwrap();
            m.get_mut(offset..offset + src.len())
                .ok_or("out of range")?
                .copy_from_slice(src);
            Ok(())
        }
    }

    /// The guest's buffer, holding a 660 Hz tone on the left channel.
    struct Mapper;

    impl BufferMapper for Mapper {
        fn map(&mut self, open: &Open) -> Result<Box<dyn PcmBuffer>, Refusal> {
            let data: Vec<u8> = (0..open.buffer_sz / 4)
                .flat_map(|i| {
                    let t = f64::from(i) / 48_000.0;
                    let l = (0.5 * (std::f64::consts::TAU * 660.0 * t).sin() * 32767.0) as i16;
                    [l.to_le_bytes(), [0, 0]].concat()
                })
                .collect();
            Ok(Box::new(Memory(std::sync::Mutex::new(data))))
        }
    }

    const PERIOD: u32 = 480 * 4; // 10 ms of 48 kHz S16 stereo
    const PERIODS: u32 = 8;
    const PERIOD_NS: u64 = 10_000_000;

    fn playback() -> (StreamCore, Arc<StreamOutput>) {
        let mut hw = PcmHw::linux_default();
        hw.formats = mask_of([PcmFormat::S16Le]);
        let config = StreamConfig {
            index: 0,
            card_index: 0,
            path: "/test".into(),
            kind: StreamType::Playback,
            unique_id: None,
            pcm_hw: hw.clone(),
        };
        let output = StreamOutput::unregistered(
            StreamKey {
                domid: 1,
                devid: 0,
                stream: 0,
            },
            config,
        );
        let limits = StreamLimits::default();
        let mut core = StreamCore::new(
            StreamSpace::new(&hw, &limits),
            MediaSettings {
                opus: limits.opus,
                capture_source: limits.capture_source,
            },
            output.clone(),
        );
        let mut pos = Vec::new();
        let open = SndRequest {
            id: 1,
            op: SndRequestOp::Open(Open {
                pcm_rate: 48_000,
                pcm_format: PcmFormat::S16Le,
                pcm_channels: 2,
                buffer_sz: PERIOD * PERIODS,
                gref_directory: 1,
                period_sz: PERIOD,
            }),
        };
        core.handle(&open, 0, &mut Mapper, &mut pos).expect("OPEN");
        (core, output)
    }

    fn request(core: &mut StreamCore, op: SndRequestOp, now: u64, pos: &mut Vec<u64>) {
        core.handle(&SndRequest { id: 9, op }, now, &mut Mapper, pos)
            .expect("request");
    }

    /// The encoder never runs here (as if the CPU were too slow for it):
    /// the guest's pointer must still move every period, on time, and the
    /// audio waiting for the encoder stays bounded.
    #[test]
    fn positions_follow_the_clock_while_nothing_is_encoded() {
        let (mut core, output) = playback();
        let mut sub = output.subscribe();
        let mut pos = Vec::new();
        // The guest fills its buffer, then starts.
        for k in 0..PERIODS {
            let w = RwRange {
                offset: k * PERIOD,
                length: PERIOD,
            };
            request(&mut core, SndRequestOp::Write(w), 0, &mut pos);
        }
        request(
            &mut core,
            SndRequestOp::Trigger(TriggerType::Start),
            0,
            &mut pos,
        );
        // One second: each period boundary the guest refills what played.
        for k in 1..=100u64 {
            let now = k * PERIOD_NS;
            let before = pos.len();
            core.poll(now, &mut pos);
            assert_eq!(pos.len(), before + 1, "one CUR_POS at {now} ns");
            assert_eq!(*pos.last().unwrap(), k * u64::from(PERIOD));
            let w = RwRange {
                offset: ((k % u64::from(PERIODS)) as u32) * PERIOD,
                length: PERIOD,
            };
            request(&mut core, SndRequestOp::Write(w), now, &mut pos);
        }
        assert!(sub.try_recv().is_none(), "nothing was encoded");
        let backlog = core.encode_backlog_frames();
        assert_eq!(backlog, 48_000 * MAX_ENCODE_BACKLOG_MS as usize / 1000);
        let stats = core.stats().unwrap();
        assert_eq!(stats.cur_pos_events, 100);
        assert_eq!(stats.underruns, 0, "the guest kept up");
        assert_eq!(stats.encode_dropped_frames, 48_000 - backlog as u64);

        // The encoder catches up with what is left; stream time skipped
        // the dropped audio, so the first frame is stamped where it
        // really played.
        // (The subscriber is a viewer's, which joins at the newest frame:
        // take each frame as it comes.)
        let mut frames = Vec::new();
        loop {
            let more = core.encode_step();
            while let Some(f) = sub.try_recv() {
                frames.push(f.timestamp);
            }
            if !more {
                break;
            }
        }
        assert_eq!(core.encode_backlog_frames(), 0);
        assert_eq!(frames.len(), backlog / 960);
        for (n, t) in frames.iter().enumerate() {
            assert_eq!(*t, 48_000 - backlog as u64 + 960 * n as u64);
        }
    }

    /// With an encoder that keeps up, nothing is dropped and every frame
    /// follows the previous one.
    #[test]
    fn an_encoder_that_keeps_up_drops_nothing() {
        let (mut core, output) = playback();
        let mut sub = output.subscribe();
        let mut pos = Vec::new();
        request(
            &mut core,
            SndRequestOp::Trigger(TriggerType::Start),
            0,
            &mut pos,
        );
        let mut frames = 0;
        for k in 1..=100u64 {
            let w = RwRange {
                offset: ((k % u64::from(PERIODS)) as u32) * PERIOD,
                length: PERIOD,
            };
            request(
                &mut core,
                SndRequestOp::Write(w),
                (k - 1) * PERIOD_NS,
                &mut pos,
            );
            core.poll(k * PERIOD_NS, &mut pos);
            core.encode_all();
            while let Some(f) = sub.try_recv() {
                assert_eq!(f.timestamp, 960 * frames);
                frames += 1;
            }
        }
        assert_eq!(frames, 50);
        let stats = core.stats().unwrap();
        assert_eq!(stats.encode_dropped_frames, 0);
        assert_eq!(stats.nonfinite_samples, 0);
        assert_eq!(stats.frames_encoded, 50);
    }
}
