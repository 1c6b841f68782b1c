//! One viewer's WebRTC peer connection (`webrtc` 0.21, the sans-IO rewrite):
//! the gateway offers one video m-line (sendonly, the one chosen codec),
//! Opus audio (sendrecv when the microphone is allowed) and the `input`
//! data channel. Congestion control (TWCC + GCC) drives the encoder
//! bitrate in shared steps; PLI/FIR from the browser ask the shared
//! encoder for a keyframe.
//!
//! Found with `webrtc` 0.21.1 (each shaped the code below):
//! - Inbound RTCP (PLI/FIR) never reaches the application unless an
//!   interceptor marks it; `KeyframeRequests` watches the chain instead.
//! - `register_default_interceptors` and `configure_congestion_control`
//!   both install a TWCC receiver (the second replaces the first with a
//!   warning), so only NACK and RTCP reports are added beside congestion
//!   control.
//! - The GCC estimator is boxed inside the chain; its target is published
//!   through an atomic by `ReportingEstimator`.
//! - A `0.0.0.0` bind address expands to every interface *except*
//!   loopback; the default configuration binds `127.0.0.1` too (with
//!   loopback candidates allowed) so viewers on the gateway's own machine
//!   connect.
//! - mDNS is off (see `RtcPeer::new`): without a multicast route its
//!   socket fails and with it the whole peer connection.
//! - `RTCIceCandidate::to_json` gives `sdpMid: ""`, which browsers refuse;
//!   candidates are sent with the offer's first mid instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pvgate_audio::AudioSubscriber;
use pvgate_media::{Codec, EncoderParams, Subscription};
use pvgate_platform::DomId;
use pvgate_policy::types as pt;
use rtc::data_channel::RTCDataChannelInit;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    BandwidthEstimator, EstimatorStats, Gcc, Interceptor, Packet, PacketReport, Registry, Slot,
    StreamInfo, TaggedPacket,
};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_congestion_control, configure_nack, configure_rtcp_reports, CongestionFeedback,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{RTCIceCandidateInit, RTCIceServer};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::statistics::report::RTCStatsReportEntry;
use tokio::sync::{mpsc, Notify};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, StatsSelector,
};
use webrtc::rtp_transceiver::RtpSender;

use super::audio_rtp::AudioRtpClock;
use super::bitrate::BitrateSteps;
use super::outbox::Outbox;
use super::protocol::{parse_client, ClientMessage, IceCandidate, ServerMessage, MAX_TEXT_FRAME};
use super::run::{InputPath, Resolution};
use super::websocket::Microphone;
use super::Live;
use crate::config::StreamingConfig;
use crate::http::GatewayView;
use crate::policy::Policies;

/// Payload types we offer (the browser answers with the same ones).
const PT_H264: u8 = 102;
const PT_VP8: u8 = 96;
const PT_OPUS: u8 = 111;
/// DESIGN.md: the default 200 ms ICE check interval sets the connect time;
/// 20 ms connects in ≈ 21 ms on loopback.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// A connection that has not come up by then will not.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn video_codec(codec: Codec) -> RTCRtpCodecParameters {
    let (mime, fmtp, pt) = match codec {
        // Constrained baseline, packetization-mode 1: what openh264 makes
        // and every browser decodes.
        Codec::H264 => (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            PT_H264,
        ),
        Codec::Vp8 => (MIME_TYPE_VP8, "", PT_VP8),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1;stereo=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: PT_OPUS,
    }
}

/// The GCC estimator, publishing its target for the bitrate task (the
/// estimator ends up boxed inside the interceptor chain, out of reach).
struct ReportingEstimator {
    inner: Gcc,
    target: Arc<AtomicU64>,
}

impl ReportingEstimator {
    fn publish(&self) {
        self.target
            .store(self.inner.target_bitrate().to_bits(), Ordering::Relaxed);
    }
}

impl BandwidthEstimator for ReportingEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.publish();
    }
    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.publish();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

/// Sees every inbound RTCP packet and wakes the video task on PLI/FIR.
/// Passes everything through untouched (the NACK responder and the
/// congestion controller need the same packets).
struct KeyframeRequests {
    wake: Arc<Notify>,
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wants = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if wants {
                self.wake.notify_one();
            }
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// What the peer connection's callbacks report to the session.
enum Event {
    Candidate(RTCIceCandidateInit),
    GatheringDone,
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

struct Handler {
    tx: mpsc::UnboundedSender<Event>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.tx.send(Event::Candidate(init));
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(Event::GatheringDone);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(Event::State(state));
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(Event::Track(track));
    }
}

/// Everything a peer connection needs from its session.
pub struct RtcSetup {
    pub config: Arc<StreamingConfig>,
    /// The `ip:port` UDP addresses to bind (from [`super::udp_ports`]).
    pub udp_bind: Vec<String>,
    pub view: Arc<dyn GatewayView>,
    pub domid: DomId,
    pub display: usize,
    pub codec: Codec,
    pub steps: BitrateSteps,
    /// The first subscription (at `steps.current()`).
    pub video: Subscription,
    pub audio: Option<AudioSubscriber>,
    /// Whether the audio m-line receives (the microphone is allowed).
    pub mic_allowed: bool,
    pub mic: Arc<Microphone>,
    pub input: Arc<InputPath>,
    pub outbox: Arc<Outbox>,
    pub live: Arc<Live>,
    pub resolution: Arc<Resolution>,
    /// Who to ask for per-viewer adjustments on link statistics.
    pub adjust: LinkPolicy,
}

/// The tenant policy's per-viewer view of one connector: asked every few
/// seconds with the link's statistics, it may cap the viewer's bitrate and
/// frame rate below the connector's policy.
pub struct LinkPolicy {
    pub policies: Arc<Policies>,
    pub guest: pt::Guest,
    pub viewer: pt::Viewer,
    pub connector: u32,
    /// The guest's mode on that connector when the session started.
    pub resolution: (u32, u32),
}

/// A running peer connection. Dropping it stops its tasks; [`Self::close`]
/// also closes the connection cleanly.
pub struct RtcPeer {
    pc: Arc<dyn PeerConnection>,
    keyframe: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The mid the browser knows our candidates by.
    _mid: String,
}

impl Drop for RtcPeer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("WebRTC: {what} failed: {e}")
}

impl RtcPeer {
    /// Build the connection, send the offer (and then trickle candidates)
    /// through the outbox, and start the media tasks.
    pub async fn start(setup: RtcSetup) -> Result<RtcPeer, String> {
        let mut media = MediaEngine::default();
        let vcodec = video_codec(setup.codec);
        media
            .register_codec(vcodec.clone(), RtpCodecKind::Video)
            .map_err(|e| err("registering the video codec", e))?;
        media
            .register_codec(opus_codec(), RtpCodecKind::Audio)
            .map_err(|e| err("registering Opus", e))?;

        let cfg = &setup.config;
        let target = Arc::new(AtomicU64::new((setup.steps.current() as f64).to_bits()));
        let estimator = ReportingEstimator {
            inner: Gcc::new(
                setup.steps.current() as f64,
                cfg.min_bitrate_bps as f64,
                cfg.max_bitrate_bps.max(cfg.min_bitrate_bps) as f64,
            ),
            target: target.clone(),
        };
        let keyframe = Arc::new(Notify::new());
        let registry = configure_congestion_control(
            Registry::new(),
            estimator,
            CongestionFeedback::Twcc,
            &mut media,
        )
        .map_err(|e| err("configuring congestion control", e))?;
        // The rest of the default chain (NACK, RTCP reports), without its
        // TWCC receiver: congestion control brought its own.
        let registry = configure_rtcp_reports(configure_nack(registry, &mut media));
        let registry = registry.with(
            Slot::from(14_000),
            KeyframeRequests {
                wake: keyframe.clone(),
                read: Default::default(),
                write: Default::default(),
            },
        );

        let ice_servers = cfg
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let settings = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
            // Viewers on the gateway's own machine (the demo, tests) reach
            // it over loopback.
            .with_include_loopback_candidate(true)
            // No mDNS: its socket joins 224.0.0.251, which fails with
            // ENODEV wherever there is no multicast route (a container or
            // network namespace without a default route) and took every
            // WebRTC session down with it. Browsers that hide their host
            // addresses behind `.local` names still connect: their checks
            // reach our host candidates and teach us their address
            // (peer-reflexive).
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();
        let (tx, mut events) = mpsc::unbounded_channel();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler { tx }))
            .with_udp_addrs(setup.udp_bind.clone())
            .build()
            .await
            .map_err(|e| err("creating the peer connection", e))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let ssrc = |salt: u32| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (nanos ^ salt.wrapping_mul(0x9e37_79b9)).max(1)
        };
        let video_ssrc = ssrc(1);
        let video_track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "pvgate".to_owned(),
                    "video".to_owned(),
                    "guest display".to_owned(),
                    RtpCodecKind::Video,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(video_ssrc),
                            ..Default::default()
                        },
                        codec: vcodec.rtp_codec.clone(),
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| err("creating the video track", e))?,
        );
        let video_tx = pc
            .add_transceiver_from_track(
                video_track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| err("adding the video track", e))?;

        let audio_ssrc = ssrc(2);
        let audio_track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "pvgate".to_owned(),
                    "audio".to_owned(),
                    "guest sound".to_owned(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(audio_ssrc),
                            ..Default::default()
                        },
                        codec: opus_codec().rtp_codec,
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| err("creating the audio track", e))?,
        );
        let audio_tx = pc
            .add_transceiver_from_track(
                audio_track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: if setup.mic_allowed {
                        RTCRtpTransceiverDirection::Sendrecv
                    } else {
                        RTCRtpTransceiverDirection::Sendonly
                    },
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| err("adding the audio track", e))?;

        let channel = pc
            .create_data_channel(
                "input",
                Some(RTCDataChannelInit {
                    ordered: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| err("creating the input data channel", e))?;

        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| err("creating the offer", e))?;
        pc.set_local_description(offer)
            .await
            .map_err(|e| err("setting the offer", e))?;
        let sdp = pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| err("reading the offer", "no local description"))?;
        let mid = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        // The offer goes out before any candidate: the browser cannot add
        // a candidate before it has the description.
        setup.outbox.send(&ServerMessage::Offer { sdp });

        let mut tasks = Vec::new();
        let video_sender = video_tx
            .sender()
            .await
            .ok()
            .flatten()
            .ok_or_else(|| err("finding the video sender", "none"))?;
        let audio_sender = audio_tx.sender().await.ok().flatten();

        // Connection events: candidates to the browser, state, the mic track.
        let (connected_tx, connected_rx) = tokio::sync::watch::channel(false);
        {
            let outbox = setup.outbox.clone();
            let mic = setup.mic.clone();
            let mid = mid.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    match ev {
                        Event::Candidate(c) => outbox.send(&ServerMessage::Ice {
                            candidate: Some(c.candidate),
                            sdp_mid: Some(mid.clone()),
                            sdp_mline_index: Some(0),
                        }),
                        Event::GatheringDone => outbox.send(&ServerMessage::Ice {
                            candidate: None,
                            sdp_mid: Some(mid.clone()),
                            sdp_mline_index: Some(0),
                        }),
                        Event::State(s) => match s {
                            RTCPeerConnectionState::Connected => {
                                let _ = connected_tx.send(true);
                            }
                            RTCPeerConnectionState::Failed => {
                                outbox.send(&ServerMessage::error(
                                    "the WebRTC connection failed (no network path between browser and gateway: a firewall, or a TURN server is needed); retry, or use ?transport=websocket",
                                    true,
                                ));
                                outbox.close();
                            }
                            _ => {}
                        },
                        Event::Track(track) => {
                            let mic = mic.clone();
                            tokio::spawn(microphone(track, mic));
                        }
                    }
                }
            }));
        }

        // Input from the data channel.
        tasks.push(tokio::spawn(input_channel(channel, setup.input.clone())));

        // Video: wait until connected (samples before that are lost and
        // the first one must be the keyframe), then stream.
        tasks.push(tokio::spawn(video_task(
            VideoTask {
                view: setup.view.clone(),
                domid: setup.domid,
                display: setup.display,
                codec: setup.codec,
                max_fps: setup.config.max_fps,
                steps: setup.steps,
                target,
                keyframe: keyframe.clone(),
                track: video_track,
                ssrc: video_ssrc,
                sender: video_sender,
                outbox: setup.outbox.clone(),
                live: setup.live.clone(),
                resolution: setup.resolution.clone(),
                adjust: setup.adjust,
                adjusted_fps: None,
                sent_frames: 0,
            },
            setup.video,
            connected_rx.clone(),
        )));
        if let (Some(audio), Some(sender)) = (setup.audio, audio_sender) {
            tasks.push(tokio::spawn(audio_task(
                audio,
                audio_track,
                audio_ssrc,
                sender,
                connected_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(stats_task(
            pc.clone(),
            setup.live.clone(),
            connected_rx,
            setup.outbox.clone(),
        )));

        Ok(RtcPeer {
            pc,
            keyframe,
            tasks,
            _mid: mid,
        })
    }

    pub async fn apply_answer(&self, sdp: String) -> Result<(), String> {
        let desc = RTCSessionDescription::answer(sdp).map_err(|e| err("parsing the answer", e))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(|e| err("applying the answer", e))
    }

    pub async fn add_candidate(&self, c: IceCandidate) -> Result<(), String> {
        let Some(candidate) = c.candidate.filter(|s| !s.is_empty()) else {
            // End of the browser's candidates: nothing to do.
            return Ok(());
        };
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                ..Default::default()
            })
            .await
            .map_err(|e| err("adding the browser's ICE candidate", e))
    }

    pub fn request_keyframe(&self) {
        self.keyframe.notify_one();
    }

    pub async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pc.close()).await;
    }
}

async fn wait_connected(mut rx: tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::time::timeout(CONNECT_TIMEOUT, rx.wait_for(|c| *c))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// The payload type the browser accepted for a sender (DESIGN.md: read it
/// from the sender after negotiation, not from our offer).
async fn negotiated_pt(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
}

struct VideoTask {
    view: Arc<dyn GatewayView>,
    domid: DomId,
    display: usize,
    codec: Codec,
    max_fps: u32,
    steps: BitrateSteps,
    target: Arc<AtomicU64>,
    keyframe: Arc<Notify>,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    sender: Arc<dyn RtpSender>,
    outbox: Arc<Outbox>,
    live: Arc<Live>,
    resolution: Arc<Resolution>,
    adjust: LinkPolicy,
    /// The policy's frame-rate cap for this viewer, if it set one.
    adjusted_fps: Option<u32>,
    /// Frames written since the last adjustment (the fps achieved).
    sent_frames: u32,
}

/// How often the estimate is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// Ask the tenant's policy for an adjustment every this many checks.
const ADJUST_EVERY: u32 = 4;

impl VideoTask {
    fn fps_cap(&self) -> u32 {
        let own = self.max_fps.max(1);
        self.adjusted_fps.map_or(own, |a| a.clamp(1, own))
    }

    /// Subscribe to `step` at the current frame-rate cap before leaving the
    /// old subscription, so the picture never stops; its first frame is a
    /// keyframe.
    fn resubscribe(&mut self, sub: &mut Subscription, step: u32) -> bool {
        let mut params = EncoderParams::new(self.codec, step);
        params.max_fps = self.fps_cap();
        match self.view.subscribe_video(self.domid, self.display, params) {
            Some(Ok(new)) => {
                *sub = new;
                self.live.set_encoder_bitrate(step);
                true
            }
            _ => false,
        }
    }

    /// The link's statistics as the policy sees them, over `window`.
    fn link_stats(&mut self, estimate: f64, window: Duration) -> pt::LinkStats {
        let fps = f64::from(std::mem::take(&mut self.sent_frames)) / window.as_secs_f64();
        let (rtt_ms, loss) = self.live.link();
        pt::LinkStats {
            rtt_ms: rtt_ms.map_or(0, |r| r.clamp(0.0, 1e6) as u32),
            loss_permille: loss.map_or(0, |l| (l.clamp(0.0, 1.0) * 1000.0).round() as u32),
            estimated_bps: if estimate.is_finite() {
                estimate.max(0.0) as u64
            } else {
                0
            },
            fps_achieved: fps.round() as u32,
        }
    }

    /// Ask the policy (off the async threads: a plugin call may take up to
    /// its deadline) and apply what it says.
    async fn adjust(&mut self, sub: &mut Subscription, estimate: f64, window: Duration) {
        let stats = self.link_stats(estimate, window);
        let (policies, guest, viewer) = (
            self.adjust.policies.clone(),
            self.adjust.guest.clone(),
            self.adjust.viewer.clone(),
        );
        let (connector, resolution) = (self.adjust.connector, self.adjust.resolution);
        let decided = tokio::task::spawn_blocking(move || {
            policies.adjust(&guest, connector, resolution, &viewer, &stats)
        })
        .await
        .unwrap_or(None);
        let fps_before = self.fps_cap();
        self.adjusted_fps = decided.map(|a| a.max_fps);
        let stepped = self
            .steps
            .set_cap(Instant::now(), decided.map(|a| a.max_bitrate_bps));
        if stepped.is_some() || self.fps_cap() != fps_before {
            let step = self.steps.current();
            if self.resubscribe(sub, step) {
                tracing::info!(
                    domid = self.domid,
                    bitrate = step,
                    fps = self.fps_cap(),
                    "the tenant's policy adjusted this viewer's stream"
                );
            }
        }
    }
}

async fn video_task(
    mut t: VideoTask,
    mut sub: Subscription,
    connected: tokio::sync::watch::Receiver<bool>,
) {
    if !wait_connected(connected).await {
        // Tell the client, so it can fall back rather than wait forever.
        t.outbox.send(&ServerMessage::error(
            "WebRTC did not connect within 30 s (a firewall, or a TURN server is needed); retry, or use ?transport=websocket",
            true,
        ));
        t.outbox.close();
        return;
    }
    let Some(pt) = negotiated_pt(&t.sender).await else {
        t.outbox.send(&ServerMessage::error(
            "WebRTC: the browser accepted no video codec we offered",
            true,
        ));
        t.outbox.close();
        return;
    };
    // Joining mid-stream: the first frame must be a keyframe.
    sub.request_keyframe();
    let mut last_sent: Option<Instant> = None;
    let mut check = tokio::time::interval(CHECK_EVERY);
    let mut checks = 0u32;
    t.live.set_bitrate(Some(t.steps.current() as u64));
    t.live.set_encoder_bitrate(t.steps.current());
    loop {
        tokio::select! {
            frame = sub.recv() => {
                let Some(frame) = frame else {
                    t.outbox.send(&ServerMessage::error(
                        "the guest's display went away (the guest stopped or restarted); reconnect to watch it again",
                        true,
                    ));
                    t.outbox.close();
                    return;
                };
                t.resolution.seen(frame.width, frame.height);
                // RTP time follows the send clock, not the encoder's pts:
                // the hub keeps pts at least a frame interval apart, so at
                // the frame-rate cap they run ahead of real time, and the
                // browser's jitter buffer grows to match (measured: 10 ms →
                // 250 ms within seconds). The first frame gets one interval.
                let now = Instant::now();
                let frame_interval = Duration::from_secs(1) / t.max_fps.max(1);
                let duration = match last_sent {
                    Some(p) => now.saturating_duration_since(p).clamp(Duration::from_millis(1), Duration::from_secs(1)),
                    None => frame_interval,
                };
                last_sent = Some(now);
                let sample = Sample {
                    data: Bytes::from(frame.data.clone()),
                    duration,
                    ..Sample::new(Instant::now())
                };
                if t.track.sample_writer(t.ssrc, pt).write_sample(&sample).await.is_err() {
                    // The connection closed; the session notices on its own.
                    return;
                }
                t.sent_frames = t.sent_frames.saturating_add(1);
            }
            _ = t.keyframe.notified() => sub.request_keyframe(),
            _ = check.tick() => {
                let estimate = f64::from_bits(t.target.load(Ordering::Relaxed));
                t.live.set_bitrate(Some(estimate as u64));
                checks += 1;
                if checks.is_multiple_of(ADJUST_EVERY) {
                    t.adjust(&mut sub, estimate, CHECK_EVERY * ADJUST_EVERY).await;
                }
                if let Some(step) = t.steps.update(Instant::now(), estimate) {
                    if t.resubscribe(&mut sub, step) {
                        tracing::info!(domid = t.domid, bitrate = step, estimate = estimate as u64, "viewer moved to another bitrate step");
                    }
                }
            }
        }
    }
}

async fn audio_task(
    mut sub: AudioSubscriber,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    sender: Arc<dyn RtpSender>,
    connected: tokio::sync::watch::Receiver<bool>,
) {
    if !wait_connected(connected).await {
        return;
    }
    let Some(pt) = negotiated_pt(&sender).await else {
        return;
    };
    // Our own headers rather than the sample packetizer's: its timestamps
    // only sum frame lengths, which a pause or dropped audio turns into
    // latency in the browser (see `audio_rtp`). An Opus frame is one packet.
    let mut clock = {
        let mut seed = [0u8; 6];
        let _ = getrandom::fill(&mut seed);
        AudioRtpClock::new(
            u16::from_le_bytes([seed[0], seed[1]]),
            u32::from_le_bytes([seed[2], seed[3], seed[4], seed[5]]),
        )
    };
    while let Some(frame) = sub.recv().await {
        let stamp = clock.stamp(frame.timestamp, frame.samples, Instant::now());
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker: stamp.marker,
                payload_type: pt,
                sequence_number: stamp.sequence,
                timestamp: stamp.timestamp,
                ssrc,
                ..Default::default()
            },
            payload: Bytes::from(frame.data.clone()),
        };
        if track.write_rtp(packet).await.is_err() {
            return;
        }
    }
}

/// The browser's audio track: Opus payloads into the guest's capture stream.
async fn microphone(track: Arc<dyn TrackRemote>, mic: Arc<Microphone>) {
    if track.kind().await != RtpCodecKind::Audio {
        return;
    }
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(pkt) if !pkt.payload.is_empty() => {
                mic.packet(&pkt.payload);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

async fn input_channel(channel: Arc<dyn DataChannel>, input: Arc<InputPath>) {
    while let Some(ev) = channel.poll().await {
        match ev {
            DataChannelEvent::OnMessage(m) => {
                if m.data.len() > MAX_TEXT_FRAME {
                    input.invalid("an input message larger than 64 KiB");
                    continue;
                }
                let Ok(text) = std::str::from_utf8(&m.data) else {
                    input.invalid("an input message that is not UTF-8 text");
                    continue;
                };
                match parse_client(text) {
                    Ok(ClientMessage::Input(obj)) => input.handle(&obj),
                    Ok(_) => input.invalid("a non-input message on the input channel"),
                    Err(e) => input.invalid(&e.to_string()),
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
}

/// RTT and loss from the peer connection's own statistics (RTCP receiver
/// reports of the browser), every 2 s.
async fn stats_task(
    pc: Arc<dyn PeerConnection>,
    live: Arc<Live>,
    connected: tokio::sync::watch::Receiver<bool>,
    _outbox: Arc<Outbox>,
) {
    if !wait_connected(connected).await {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
        let (mut rtt, mut loss) = (None, None);
        let mut pair_rtt = None;
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::RemoteInboundRtp(s) => {
                    if s.round_trip_time > 0.0 {
                        rtt = Some(s.round_trip_time * 1000.0);
                    }
                    let l = s.fraction_lost;
                    loss = Some(loss.map_or(l, |x: f64| x.max(l)));
                }
                RTCStatsReportEntry::IceCandidatePair(p) if p.current_round_trip_time > 0.0 => {
                    pair_rtt = Some(p.current_round_trip_time * 1000.0);
                }
                _ => {}
            }
        }
        live.set_rtt_ms(rtt.or(pair_rtt));
        live.set_loss(loss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::{TransportContext, TransportMessage};

    fn rtcp(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::from(Packet::Rtcp(packets)),
        }
    }

    #[tokio::test]
    async fn pli_and_fir_wake_the_video_task_and_pass_through() {
        let wake = Arc::new(Notify::new());
        let mut i = KeyframeRequests {
            wake: wake.clone(),
            read: Default::default(),
            write: Default::default(),
        };
        i.handle_read(rtcp(vec![Box::new(ReceiverReport::default())]))
            .unwrap();
        assert!(i.poll_read().is_some(), "other RTCP passes through");
        let quiet = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
        assert!(quiet.is_err(), "a receiver report asks for nothing");

        i.handle_read(rtcp(vec![Box::new(PictureLossIndication::default())]))
            .unwrap();
        assert!(i.poll_read().is_some(), "the PLI passes through too");
        tokio::time::timeout(Duration::from_secs(1), wake.notified())
            .await
            .expect("a PLI asks for a keyframe");

        i.handle_read(rtcp(vec![Box::new(FullIntraRequest::default())]))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), wake.notified())
            .await
            .expect("a FIR asks for a keyframe");
    }
}
