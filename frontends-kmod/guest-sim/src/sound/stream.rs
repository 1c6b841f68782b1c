//! One sndif stream: the requests snd-xen-front sends and the playback and
//! capture loops ALSA runs on top of them.

use std::sync::Arc;
use std::time::Duration;

use pvgate_platform::Platform;
use pvgate_protocol::evtpage::{EventRingLayout, EVENT_SIZE};
use pvgate_protocol::sndif::{
    mask_of, HwParams, Interval, Open, PcmFormat, RwRange, SndEvent, SndEventKind, SndRequest,
    SndRequestOp, SndResponse, SndResponseBody, TriggerType,
};
use pvgate_protocol::sndif_config::StreamConfig;
use tokio::sync::{mpsc, Mutex};

use crate::content::{pcm, tone::ToneGenerator};
use crate::display::Dbuf;
use crate::io::channel::{CallError, ChannelPair, EventPage, RequestChannel, REQUEST_TIMEOUT};
use crate::DomId;

/// Why a sound request failed.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    #[error("{op}: {source}")]
    Call {
        op: &'static str,
        #[source]
        source: CallError,
    },
    #[error("{op}: backend answered status {status}")]
    Status { op: &'static str, status: i32 },
    #[error("{op}: bad response: {reason}")]
    BadResponse { op: &'static str, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("no CUR_POS event within {0:?}")]
    NoPosition(Duration),
}

/// What a playback or capture run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub writes: u32,
    pub reads: u32,
    pub bytes: u64,
    pub cur_pos_events: u32,
    pub last_position: u64,
}

struct OpenState {
    buffer: Dbuf,
    format: PcmFormat,
    rate: u32,
    channels: u8,
    period_sz: u32,
}

/// A stream of a connected card.
pub struct SoundStream {
    pub config: StreamConfig,
    platform: Platform,
    backend: DomId,
    req: Arc<RequestChannel>,
    _evt: EventPage,
    events: Mutex<mpsc::UnboundedReceiver<[u8; EVENT_SIZE]>>,
    /// The last CUR_POS position received (octets since OPEN). The
    /// backend keeps counting across TRIGGER STOP/START, so each playback
    /// or capture run measures its progress from the value at its start,
    /// as snd-xen-front works from position deltas.
    last_position: std::sync::atomic::AtomicU64,
    open: Mutex<Option<OpenState>>,
}

impl SoundStream {
    pub(crate) fn start(
        platform: Platform,
        backend: DomId,
        config: StreamConfig,
        mut pair: ChannelPair,
    ) -> SoundStream {
        let (tx, rx) = mpsc::unbounded_channel();
        pair.evt
            .start(tx, EventRingLayout::SNDIF, config.path.clone());
        pair.req.set_connected(true);
        SoundStream {
            config,
            platform,
            backend,
            req: pair.req,
            _evt: pair.evt,
            events: Mutex::new(rx),
            last_position: std::sync::atomic::AtomicU64::new(0),
            open: Mutex::new(None),
        }
    }

    /// Stop consuming events (a hung guest): rings and grants stay.
    pub fn freeze(&self) {
        self._evt.stop();
    }

    pub(crate) fn disconnect(&self) {
        self.req.set_connected(false);
    }

    pub fn request_channel(&self) -> Arc<RequestChannel> {
        self.req.clone()
    }

    async fn request(
        &self,
        op: &'static str,
        body: SndRequestOp,
    ) -> Result<SndResponse, SoundError> {
        let slot = self
            .req
            .call(|id| SndRequest { id, op: body }.encode())
            .await
            .map_err(|source| SoundError::Call { op, source })?;
        let rsp = SndResponse::decode(&slot).map_err(|e| SoundError::BadResponse {
            op,
            reason: e.to_string(),
        })?;
        if rsp.op() != body.op() {
            return Err(SoundError::BadResponse {
                op,
                reason: format!("answer is for {:?}", rsp.op()),
            });
        }
        if rsp.status != 0 {
            return Err(SoundError::Status {
                op,
                status: rsp.status,
            });
        }
        Ok(rsp)
    }

    /// One HW_PARAM_QUERY; returns the backend's refinement.
    pub async fn hw_param_query(&self, query: HwParams) -> Result<HwParams, SoundError> {
        let rsp = self
            .request("HW_PARAM_QUERY", SndRequestOp::HwParamQuery(query))
            .await?;
        match rsp.body {
            SndResponseBody::HwParamQuery(p) => Ok(p),
            _ => Err(SoundError::BadResponse {
                op: "HW_PARAM_QUERY",
                reason: "no parameters in the answer".into(),
            }),
        }
    }

    /// The query sequence ALSA's refinement runs through snd-xen-front's
    /// `alsa_hw_rule` (one query per rule invocation) when an application
    /// asks for `format`, `rate`, `channels`: first everything the stream's
    /// xenstore config allows, then narrowing one parameter at a time, then
    /// buffer and period. Returns every answer.
    pub async fn negotiate(
        &self,
        format: PcmFormat,
        rate: u32,
        channels: u32,
        period_frames: u32,
        periods: u32,
    ) -> Result<Vec<HwParams>, SoundError> {
        let hw = &self.config.pcm_hw;
        let frame_bytes = format.bytes_per_sample().unwrap_or(1).max(1) * channels.max(1);
        let buffer_max = (hw.buffer_bytes_max / frame_bytes).max(1);
        let period_min = (hw.period_bytes_min / frame_bytes).max(1);
        let mut q = HwParams {
            formats: hw.formats,
            rates: Interval {
                min: hw.rate_min,
                max: hw.rate_max,
            },
            channels: Interval {
                min: hw.channels_min,
                max: hw.channels_max,
            },
            buffer: Interval {
                min: 1,
                max: buffer_max,
            },
            period: Interval {
                min: period_min,
                max: buffer_max,
            },
        };
        let mut answers = Vec::new();
        for step in 0..5 {
            match step {
                1 => q.formats = mask_of([format]),
                2 => {
                    q.rates = Interval {
                        min: rate,
                        max: rate,
                    }
                }
                3 => {
                    q.channels = Interval {
                        min: channels,
                        max: channels,
                    }
                }
                4 => {
                    q.period = Interval {
                        min: period_frames,
                        max: period_frames,
                    };
                    let b = period_frames.saturating_mul(periods);
                    q.buffer = Interval { min: b, max: b };
                }
                _ => {}
            }
            let a = self.hw_param_query(q).await?;
            answers.push(a);
            // ALSA keeps the refined ranges for the next rule.
            q = HwParams {
                formats: q.formats & a.formats,
                rates: intersect(q.rates, a.rates),
                channels: intersect(q.channels, a.channels),
                buffer: intersect(q.buffer, a.buffer),
                period: intersect(q.period, a.period),
            };
        }
        Ok(answers)
    }

    /// Allocate the buffer (`alsa_hw_params`) and send OPEN (`alsa_prepare`).
    /// Sizes are in bytes, as the driver sends them.
    pub async fn open(
        &self,
        format: PcmFormat,
        rate: u32,
        channels: u8,
        buffer_sz: u32,
        period_sz: u32,
    ) -> Result<(), SoundError> {
        let mut open = self.open.lock().await;
        // hw_params may run again: free the previous buffer first.
        *open = None;
        let buffer = Dbuf::allocate(&self.platform, self.backend, 0, (0, 0, 0), buffer_sz, false)
            .map_err(|e| {
            SoundError::Usage(format!("cannot allocate the stream buffer: {e}"))
        })?;
        self.request(
            "OPEN",
            SndRequestOp::Open(Open {
                pcm_rate: rate,
                pcm_format: format,
                pcm_channels: channels,
                buffer_sz,
                gref_directory: buffer.gref_directory,
                period_sz,
            }),
        )
        .await?;
        // OPEN restarts the backend's position count.
        self.drain_positions().await;
        self.last_position
            .store(0, std::sync::atomic::Ordering::Relaxed);
        *open = Some(OpenState {
            buffer,
            format,
            rate,
            channels,
            period_sz,
        });
        Ok(())
    }

    pub async fn trigger(&self, t: TriggerType) -> Result<(), SoundError> {
        self.request("TRIGGER", SndRequestOp::Trigger(t))
            .await
            .map(drop)
    }

    /// Copy `data` into the buffer at `offset` and send WRITE for it.
    pub async fn write_at(&self, offset: u32, data: &[u8]) -> Result<(), SoundError> {
        {
            let open = self.open.lock().await;
            let st = open
                .as_ref()
                .ok_or_else(|| SoundError::Usage("WRITE before OPEN".into()))?;
            st.buffer
                .write(offset as usize, data)
                .map_err(|e| SoundError::Usage(e.to_string()))?;
        }
        let length =
            u32::try_from(data.len()).map_err(|_| SoundError::Usage("chunk too large".into()))?;
        self.request("WRITE", SndRequestOp::Write(RwRange { offset, length }))
            .await
            .map(drop)
    }

    /// Send READ for `length` bytes at `offset` and copy them out.
    pub async fn read_at(&self, offset: u32, length: u32) -> Result<Vec<u8>, SoundError> {
        self.request("READ", SndRequestOp::Read(RwRange { offset, length }))
            .await?;
        let open = self.open.lock().await;
        let st = open
            .as_ref()
            .ok_or_else(|| SoundError::Usage("READ before OPEN".into()))?;
        let mut out = vec![0u8; length as usize];
        st.buffer
            .read(offset as usize, &mut out)
            .map_err(|e| SoundError::Usage(e.to_string()))?;
        Ok(out)
    }

    /// SET_VOLUME: one value per channel in 0.001 dB. sndif carries the
    /// values in the stream's buffer (here at its start). snd-xen-front does
    /// not send it today; the protocol has it and the backend applies it.
    ///
    /// May run while [`Self::play`] runs on another task: the buffer is held
    /// until the backend answered, so playback cannot overwrite the values
    /// first; a WRITE already in flight over the buffer's first bytes carries
    /// the values as two frames of audio, as it would on a real guest.
    pub async fn set_volume(&self, mdb: &[i32]) -> Result<(), SoundError> {
        let bytes: Vec<u8> = mdb.iter().flat_map(|v| v.to_le_bytes()).collect();
        let range = RwRange {
            offset: 0,
            length: bytes.len() as u32,
        };
        self.with_buffer_values(&bytes, "SET_VOLUME", SndRequestOp::SetVolume(range))
            .await
            .map(drop)
    }

    /// GET_VOLUME: the backend writes one value per channel (0.001 dB) into
    /// the start of the buffer.
    pub async fn get_volume(&self) -> Result<Vec<i32>, SoundError> {
        let (_, _, channels, _, _) = self
            .open_params()
            .await
            .ok_or_else(|| SoundError::Usage("GET_VOLUME before OPEN".into()))?;
        let length = u32::from(channels) * 4;
        let out = self
            .with_buffer_values(
                &[],
                "GET_VOLUME",
                SndRequestOp::GetVolume(RwRange { offset: 0, length }),
            )
            .await?;
        Ok(out
            .get(..length as usize)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// MUTE (`mute`) or UNMUTE the channels whose flag is set (one byte per
    /// channel, in the buffer like [`Self::set_volume`]'s values).
    pub async fn set_mute(&self, channels: &[bool], mute: bool) -> Result<(), SoundError> {
        let flags: Vec<u8> = channels.iter().map(|&c| u8::from(c)).collect();
        let range = RwRange {
            offset: 0,
            length: flags.len() as u32,
        };
        let (op, body) = if mute {
            ("MUTE", SndRequestOp::Mute(range))
        } else {
            ("UNMUTE", SndRequestOp::Unmute(range))
        };
        self.with_buffer_values(&flags, op, body).await.map(drop)
    }

    /// Put `values` at the start of the buffer, send `body`, and read back
    /// the first 64 bytes, all with the buffer held (see
    /// [`Self::set_volume`]).
    async fn with_buffer_values(
        &self,
        values: &[u8],
        op: &'static str,
        body: SndRequestOp,
    ) -> Result<Vec<u8>, SoundError> {
        let open = self.open.lock().await;
        let st = open
            .as_ref()
            .ok_or_else(|| SoundError::Usage(format!("{op} before OPEN")))?;
        st.buffer
            .write(0, values)
            .map_err(|e| SoundError::Usage(e.to_string()))?;
        self.request(op, body).await?;
        let mut out = vec![0u8; 64.min(st.buffer.size as usize)];
        st.buffer
            .read(0, &mut out)
            .map_err(|e| SoundError::Usage(e.to_string()))?;
        Ok(out)
    }

    /// CLOSE (`alsa_hw_free`) and free the buffer.
    pub async fn close(&self) -> Result<(), SoundError> {
        let r = self.request("CLOSE", SndRequestOp::Close).await;
        *self.open.lock().await = None;
        r.map(drop)
    }

    /// The next CUR_POS position (octets since OPEN).
    pub async fn next_position(&self, wait: Duration) -> Option<u64> {
        let mut events = self.events.lock().await;
        loop {
            let raw = tokio::time::timeout(wait, events.recv()).await.ok()??;
            if let Some(position) = cur_pos(&raw) {
                self.last_position
                    .store(position, std::sync::atomic::Ordering::Relaxed);
                return Some(position);
            }
        }
    }

    /// Takes the events already queued (positions from before a STOP that
    /// arrived after the last run stopped reading), so that the next run
    /// starts from the latest position.
    async fn drain_positions(&self) {
        let mut events = self.events.lock().await;
        while let Ok(raw) = events.try_recv() {
            if let Some(position) = cur_pos(&raw) {
                self.last_position
                    .store(position, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Where this run starts: the latest position since OPEN.
    async fn run_base(&self) -> u64 {
        self.drain_positions().await;
        self.last_position
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What OPEN said: (format, rate, channels, buffer_sz, period_sz).
    pub async fn open_params(&self) -> Option<(PcmFormat, u32, u8, u32, u32)> {
        let open = self.open.lock().await;
        open.as_ref()
            .map(|s| (s.format, s.rate, s.channels, s.buffer.size, s.period_sz))
    }

    /// Playback as ALSA does it over snd-xen-front: fill the whole buffer
    /// period by period (a WRITE each), TRIGGER start, then write one more
    /// period each time CUR_POS shows one was consumed, until `total` bytes
    /// went out; wait for them to play, TRIGGER stop. `fill(offset_in_stream,
    /// chunk)` produces the samples. The stream must be open. Progress is
    /// counted from the position at the start of the run (the backend's
    /// count runs on from earlier runs), so every run is paced the same.
    pub async fn play(
        &self,
        total: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> Result<StreamStats, SoundError> {
        self.play_from_start(total, |offset, chunk, _| fill(offset, chunk))
            .await
    }

    /// [`Self::play`], telling `fill` when TRIGGER START was sent (wall
    /// clock): `None` while the buffer is filled before it. The backend
    /// consumes from START at the stream rate, so byte `offset` plays at
    /// start + offset / rate (what the latency ticks are stamped with).
    pub async fn play_from_start(
        &self,
        total: u64,
        mut fill: impl FnMut(u64, &mut [u8], Option<std::time::SystemTime>),
    ) -> Result<StreamStats, SoundError> {
        let (_, _, _, buffer_sz, period_sz) = self
            .open_params()
            .await
            .ok_or_else(|| SoundError::Usage("play before OPEN".into()))?;
        if period_sz == 0 || buffer_sz < period_sz {
            return Err(SoundError::Usage(format!(
                "period {period_sz} and buffer {buffer_sz} cannot be played"
            )));
        }
        let base = self.run_base().await;
        let mut stats = StreamStats::default();
        let mut written: u64 = 0;
        let mut chunk = vec![0u8; period_sz as usize];
        let mut write_next = |written: &mut u64,
                              stats: &mut StreamStats,
                              chunk: &mut Vec<u8>,
                              started: Option<std::time::SystemTime>| {
            let offset = (*written % u64::from(buffer_sz)) as u32;
            let len = u64::from(period_sz)
                .min(total.saturating_sub(*written))
                .min(u64::from(buffer_sz - offset)) as usize;
            chunk.resize(len, 0);
            fill(*written, chunk, started);
            *written += len as u64;
            stats.writes += 1;
            stats.bytes += len as u64;
            (offset, chunk.clone())
        };
        while written < total && written < u64::from(buffer_sz) {
            let (offset, data) = write_next(&mut written, &mut stats, &mut chunk, None);
            self.write_at(offset, &data).await?;
        }
        let started = Some(std::time::SystemTime::now());
        self.trigger(TriggerType::Start).await?;
        let mut position: u64 = 0;
        while position < written {
            let Some(p) = self.next_position(REQUEST_TIMEOUT).await else {
                return Err(SoundError::NoPosition(REQUEST_TIMEOUT));
            };
            stats.cur_pos_events += 1;
            position = p.saturating_sub(base);
            stats.last_position = p;
            // Room in the buffer: everything the backend has consumed.
            while written < total
                && written.saturating_sub(position) + u64::from(period_sz) <= u64::from(buffer_sz)
            {
                let (offset, data) = write_next(&mut written, &mut stats, &mut chunk, started);
                self.write_at(offset, &data).await?;
            }
        }
        self.trigger(TriggerType::Stop).await?;
        Ok(stats)
    }

    /// Capture as ALSA does it: TRIGGER start, then READ each period the
    /// CUR_POS events say is ready, until `total` bytes came in; TRIGGER
    /// stop. Each chunk goes to `sink`. The stream must be open.
    pub async fn capture(
        &self,
        total: u64,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<StreamStats, SoundError> {
        let (_, _, _, buffer_sz, period_sz) = self
            .open_params()
            .await
            .ok_or_else(|| SoundError::Usage("capture before OPEN".into()))?;
        if period_sz == 0 || buffer_sz < period_sz {
            return Err(SoundError::Usage(format!(
                "period {period_sz} and buffer {buffer_sz} cannot be captured"
            )));
        }
        let base = self.run_base().await;
        let mut stats = StreamStats::default();
        self.trigger(TriggerType::Start).await?;
        let mut read: u64 = 0;
        while read < total {
            let Some(p) = self.next_position(REQUEST_TIMEOUT).await else {
                return Err(SoundError::NoPosition(REQUEST_TIMEOUT));
            };
            stats.cur_pos_events += 1;
            stats.last_position = p;
            let p = p.saturating_sub(base);
            while read < total && p.saturating_sub(read) >= u64::from(period_sz) {
                let offset = (read % u64::from(buffer_sz)) as u32;
                let len = period_sz.min(buffer_sz - offset);
                let data = self.read_at(offset, len).await?;
                sink(&data);
                read += u64::from(len);
                stats.reads += 1;
                stats.bytes += u64::from(len);
            }
        }
        self.trigger(TriggerType::Stop).await?;
        Ok(stats)
    }
}

impl SoundStream {
    /// [`play`](Self::play) `total` bytes of `tone` (its channel count must
    /// be the stream's), in the format the stream was opened with.
    pub async fn play_tone(
        &self,
        tone: &mut ToneGenerator,
        total: u64,
    ) -> Result<StreamStats, SoundError> {
        let (format, _, channels, _, _) = self
            .open_params()
            .await
            .ok_or_else(|| SoundError::Usage("play before OPEN".into()))?;
        if tone.channels() != usize::from(channels) {
            return Err(SoundError::Usage(format!(
                "tone has {} channels, the stream {channels}",
                tone.channels()
            )));
        }
        let frame_bytes = pcm::sample_size(format).map_err(|e| SoundError::Usage(e.to_string()))?
            * usize::from(channels);
        let mut failure = None;
        let stats = self
            .play(total, |_, chunk| {
                match tone.next_bytes(chunk.len() / frame_bytes, format) {
                    Ok(bytes) if bytes.len() == chunk.len() => chunk.copy_from_slice(&bytes),
                    Ok(_) | Err(_) => {
                        chunk.fill(0);
                        failure.get_or_insert_with(|| format!("cannot make {format:?} samples"));
                    }
                }
            })
            .await?;
        match failure {
            Some(f) => Err(SoundError::Usage(f)),
            None => Ok(stats),
        }
    }

    /// [`capture`](Self::capture) `total` bytes and decode them to
    /// interleaved samples in [-1, 1] (for analysis).
    pub async fn capture_samples(&self, total: u64) -> Result<(Vec<f32>, StreamStats), SoundError> {
        let (format, ..) = self
            .open_params()
            .await
            .ok_or_else(|| SoundError::Usage("capture before OPEN".into()))?;
        let mut bytes = Vec::new();
        let stats = self
            .capture(total, |chunk| bytes.extend_from_slice(chunk))
            .await?;
        let samples = pcm::decode(&bytes, format).map_err(|e| SoundError::Usage(e.to_string()))?;
        Ok((samples, stats))
    }
}

fn intersect(a: Interval, b: Interval) -> Interval {
    let min = a.min.max(b.min);
    let max = a.max.min(b.max);
    if min > max {
        b
    } else {
        Interval { min, max }
    }
}

/// The position of a CUR_POS event (None for other events).
fn cur_pos(raw: &[u8; EVENT_SIZE]) -> Option<u64> {
    match SndEvent::decode(raw) {
        Ok(SndEvent {
            kind: SndEventKind::CurPos { position },
            ..
        }) => Some(position),
        _ => None,
    }
}
