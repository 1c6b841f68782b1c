//! One viewer session, from `hello` to close: choose the transport, codec,
//! audio and microphone; send `welcome`; start the media; handle every
//! client message until the socket closes; clean up (keys released,
//! subscriptions dropped, registry entry removed).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use pvgate_media::EncoderParams;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::admission::{Recheck, RecheckOutcome};
use super::bitrate::BitrateSteps;
use super::frames::{self, Kind};
use super::input::{InputTarget, InputValidator, RateLimit, WARN_EVERY};
use super::outbox::Outbox;
use super::protocol::{
    choose_codec, codec_name, guest_json, parse_client, AudioDesc, ClientMessage, DisplayDesc,
    Hello, ServerMessage, Transport, VideoDesc,
};
use super::rtc::{LinkPolicy, RtcPeer, RtcSetup};
use super::signalling::{Signalling, Verdict};
use super::websocket::{audio_pump, video_pump, Microphone};
use super::{lock, Live};
use crate::access::{Role, Viewer};
use crate::http::{AppState, GuestInfo};
use crate::policy::apply;

/// A client that has not said hello by then is not a viewer.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Text messages per second before they are dropped unread (input has
/// its own, lower, limit).
const MAX_MESSAGES_PER_SECOND: u32 = 2000;

/// A session's input: validation state, where it goes, drop counting and
/// (rate-limited) explanations to the user. Shared by the WebSocket and
/// the data channel.
pub struct InputPath {
    validator: Mutex<InputValidator>,
    target: Option<Arc<dyn InputTarget>>,
    live: Arc<Live>,
    outbox: Arc<Outbox>,
    last_warning: Mutex<Option<Instant>>,
}

impl InputPath {
    pub fn new(
        role: Role,
        display: (u32, u32),
        target: Option<Arc<dyn InputTarget>>,
        live: Arc<Live>,
        outbox: Arc<Outbox>,
    ) -> InputPath {
        // Without a device the coordinates are still checked, against the
        // display itself.
        let space =
            target
                .as_ref()
                .map(|t| t.space())
                .unwrap_or(pvgate_backends::input::InputSpace {
                    pointer: display,
                    touch: display,
                    contacts: 10,
                });
        InputPath {
            validator: Mutex::new(InputValidator::new(role, display, space)),
            target,
            live,
            outbox,
            last_warning: Mutex::new(None),
        }
    }

    fn warn(&self, message: String) {
        let now = Instant::now();
        let mut last = lock(&self.last_warning);
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return;
        }
        *last = Some(now);
        self.outbox.send(&ServerMessage::error(message, false));
    }

    /// A message that is not valid input at all.
    pub fn invalid(&self, what: &str) {
        self.live.count_input_drop();
        self.warn(format!("input ignored: {what}"));
    }

    pub fn handle(&self, msg: &Map<String, Value>) {
        let result = lock(&self.validator).handle(Instant::now(), msg);
        match result {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => match &self.target {
                Some(t) => {
                    if let Err(e) = t.send(&batch) {
                        self.live.count_input_drop();
                        self.warn(format!("input not delivered to the guest: {e}"));
                    }
                }
                None => {
                    self.live.count_input_drop();
                    self.warn(
                        "this guest has no keyboard/pointer device (vkbd), so input does nothing"
                            .into(),
                    );
                }
            },
            Err(rejected) => {
                self.live.count_input_drop();
                self.warn(rejected.to_string());
            }
        }
    }

    /// Release every key, button and touch this session holds (focus lost
    /// is the client's `release`; this is for the end of the session).
    pub fn release(&self) {
        let batch = lock(&self.validator).release_all();
        if let (false, Some(t)) = (batch.is_empty(), &self.target) {
            let _ = t.send(&batch);
        }
    }

    pub fn set_display(&self, size: (u32, u32)) {
        lock(&self.validator).set_display(size);
    }

    /// A new role from the policy's re-check; losing control releases
    /// every key, button and touch this session holds.
    pub fn set_role(&self, role: Role) {
        let release = lock(&self.validator).set_role(role);
        if let (false, Some(t)) = (release.is_empty(), &self.target) {
            let _ = t.send(&release);
        }
    }
}

/// Tells the client when the encoded size changes, and the input path so
/// coordinates are read in the new size.
pub struct Resolution {
    current: Mutex<(u32, u32)>,
    outbox: Arc<Outbox>,
    input: Arc<InputPath>,
}

impl Resolution {
    pub fn new(initial: (u32, u32), outbox: Arc<Outbox>, input: Arc<InputPath>) -> Resolution {
        Resolution {
            current: Mutex::new(initial),
            outbox,
            input,
        }
    }

    pub fn seen(&self, width: u32, height: u32) {
        let mut cur = lock(&self.current);
        if *cur != (width, height) {
            *cur = (width, height);
            self.input.set_display((width, height));
            self.outbox
                .send(&ServerMessage::Resolution { width, height });
        }
    }
}

/// The transport side of a running session.
enum Media {
    Websocket {
        keyframe: Arc<Notify>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
    Webrtc(RtcPeer),
}

fn fatal(outbox: &Outbox, message: impl Into<String>) {
    outbox.send(&ServerMessage::error(message, true));
    outbox.close();
}

pub async fn run(
    socket: WebSocket,
    state: AppState,
    viewer: Viewer,
    guest: GuestInfo,
    remote: Option<std::net::SocketAddr>,
) {
    let (sink, mut stream) = socket.split();
    let outbox = Outbox::new();
    let writer = tokio::spawn(outbox.clone().write_loop(sink));
    let mut sig = Signalling::default();

    if let Some(hello) = wait_hello(&mut stream, &outbox, &mut sig).await {
        serve(
            &mut stream,
            &outbox,
            &mut sig,
            &state,
            &viewer,
            &guest,
            hello,
            remote,
        )
        .await;
    }
    outbox.close();
    // Let the writer send what is queued (a fatal error's text), briefly.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(3), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn wait_hello(
    stream: &mut futures::stream::SplitStream<WebSocket>,
    outbox: &Arc<Outbox>,
    sig: &mut Signalling,
) -> Option<Hello> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let msg = match next {
            Err(_) => {
                fatal(
                    outbox,
                    "no hello within 10 s; reload the page to start again",
                );
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Binary(_)))) => {
                fatal(
                    outbox,
                    "the first message must be hello (text), not binary media",
                );
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        };
        let parsed = match parse_client(msg.as_str()) {
            Ok(m) => m,
            Err(e) => {
                fatal(outbox, format!("{e}; the first message must be hello"));
                return None;
            }
        };
        match sig.check(&parsed) {
            Verdict::Handle => match parsed {
                ClientMessage::Hello(h) => return Some(h),
                ClientMessage::Ping { t } => outbox.send_droppable(&ServerMessage::Pong { t }),
                _ => {}
            },
            Verdict::Refuse { message, fatal: f } => {
                outbox.send(&ServerMessage::error(message, f));
                if f {
                    outbox.close();
                    return None;
                }
            }
            Verdict::Ignore => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    stream: &mut futures::stream::SplitStream<WebSocket>,
    outbox: &Arc<Outbox>,
    sig: &mut Signalling,
    state: &AppState,
    viewer: &Viewer,
    guest: &GuestInfo,
    hello: Hello,
    remote: Option<std::net::SocketAddr>,
) {
    let domid = guest.domid;
    let cfg = state.streaming.clone();
    let policies = state.policies();
    let policy_guest = policies.guest(domid, &guest.name);
    let Some(display) = guest.displays.get(hello.display).cloned() else {
        return fatal(
            outbox,
            format!(
                "guest {} has no display {} (it has {}); open display 0",
                guest.name,
                hello.display,
                guest.displays.len()
            ),
        );
    };
    let transport = if hello.transport == Transport::Webrtc && cfg.webrtc {
        Transport::Webrtc
    } else {
        Transport::Websocket
    };
    // The tenant's video policy narrows the operator's settings for this
    // connector: codec order, bitrate range (also congestion control's),
    // frame rate. The encoder size is enforced where encoders are made.
    let video_policy = policies.video(
        &policy_guest,
        display.connector,
        (display.width, display.height),
    );
    let cfg = std::sync::Arc::new(apply::narrow_streaming(&state.streaming, &video_policy));
    let Some(codec) = choose_codec(&cfg.codecs, &hello.codecs) else {
        let ours: Vec<_> = cfg.codecs.iter().map(|c| codec_name(*c)).collect();
        let theirs: Vec<_> = hello.codecs.iter().map(|c| codec_name(*c)).collect();
        return fatal(
            outbox,
            format!(
                "no video codec in common: the gateway encodes {ours:?}, this browser decodes {theirs:?}"
            ),
        );
    };
    let steps = BitrateSteps::new(
        cfg.min_bitrate_bps,
        cfg.start_bitrate_bps,
        cfg.max_bitrate_bps,
        Instant::now(),
    );
    let mut params = EncoderParams::new(codec, steps.current());
    params.max_fps = cfg.max_fps.max(1);
    let video = match state.view.subscribe_video(domid, hello.display, params) {
        Some(Ok(sub)) => sub,
        Some(Err(e)) => {
            return fatal(
                outbox,
                format!("the video encoder could not start: {e}; try another codec"),
            )
        }
        None => {
            return fatal(
                outbox,
                format!(
                    "guest {}'s display {} went away; reconnect when it is back",
                    guest.name, hello.display
                ),
            )
        }
    };
    let playback = if hello.audio {
        state.view.playback_stream(domid)
    } else {
        None
    };
    // The microphone needs control, and the tenant's audio policy for the
    // guest's capture stream.
    let capture = if hello.mic && viewer.role == Role::Control {
        state.view.capture_stream(domid).filter(|c| {
            policies
                .audio(&policy_guest, &apply::sound_stream(&c.config))
                .capture_allowed
        })
    } else {
        None
    };
    let mic_allowed = capture.is_some();
    let mic = Arc::new(Microphone::new(capture));

    let registration = state.sessions.register(
        state.sessions.new_id(),
        domid,
        viewer.tenant.clone(),
        viewer.user.clone(),
        transport.name(),
    );
    let live = registration.live.clone();
    live.set_encoder_bitrate(steps.current());
    let input = Arc::new(InputPath::new(
        viewer.role,
        (display.width, display.height),
        state.view.input_target(domid),
        live.clone(),
        outbox.clone(),
    ));
    let resolution = Arc::new(Resolution::new(
        (display.width, display.height),
        outbox.clone(),
        input.clone(),
    ));

    outbox.send(&ServerMessage::Welcome {
        session: registration.id.clone(),
        role: viewer.role,
        guest: guest_json(
            guest,
            state.access.tenant_of(domid, &guest.name),
            state.sessions.viewer_count(domid),
        ),
        display: DisplayDesc {
            index: hello.display,
            width: display.width,
            height: display.height,
        },
        transport,
        video: VideoDesc {
            codec: codec_name(codec),
        },
        audio: playback.as_ref().map(|_| AudioDesc {
            codec: "opus",
            rate: 48_000,
            channels: 2,
        }),
        mic: mic_allowed,
        ice_servers: cfg.ice_servers.clone(),
    });
    sig.welcomed(transport);

    let media = match transport {
        Transport::Websocket => {
            let keyframe = Arc::new(Notify::new());
            let mut tasks = Vec::new();
            let res = resolution.clone();
            tasks.push(tokio::spawn(video_pump(
                video,
                outbox.clone(),
                keyframe.clone(),
                Box::new(move |w, h| res.seen(w, h)),
            )));
            if let Some(p) = &playback {
                tasks.push(tokio::spawn(audio_pump(p.subscribe(), outbox.clone())));
            }
            live.set_bitrate(None);
            Media::Websocket { keyframe, tasks }
        }
        Transport::Webrtc => {
            let ports = super::udp_ports::UdpPorts {
                addresses: &cfg.udp_addresses,
                range: cfg.udp_ports.as_ref(),
                cursor: &state.sessions.udp_cursor,
            };
            let udp_bind = match ports.next_bind() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(domid, error = %e, "WebRTC session could not start");
                    return fatal(outbox, format!("{e}; or use ?transport=websocket"));
                }
            };
            let setup = RtcSetup {
                udp_bind,
                config: cfg.clone(),
                view: state.view.clone(),
                domid,
                display: hello.display,
                codec,
                steps,
                video,
                audio: playback.as_ref().map(|p| p.subscribe()),
                mic_allowed,
                mic: mic.clone(),
                input: input.clone(),
                outbox: outbox.clone(),
                live: live.clone(),
                resolution: resolution.clone(),
                adjust: LinkPolicy {
                    policies: policies.clone(),
                    guest: policy_guest.clone(),
                    viewer: crate::policy::policy_viewer(viewer, remote),
                    connector: display.connector,
                    resolution: (display.width, display.height),
                },
            };
            match RtcPeer::start(setup).await {
                Ok(peer) => Media::Webrtc(peer),
                Err(e) => {
                    tracing::warn!(domid, error = %e, "WebRTC session could not start");
                    return fatal(outbox, format!("{e}; retry, or use ?transport=websocket"));
                }
            }
        }
    };
    tracing::info!(domid, session = %registration.id, transport = transport.name(), codec = %codec, role = ?viewer.role, "viewer session started");

    let mut recheck = Recheck::new(
        policies.clone(),
        policy_guest.clone(),
        viewer.clone(),
        remote,
    );
    let mut rate = RateLimit::new(MAX_MESSAGES_PER_SECOND);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_sent = (Instant::now(), 0u64);
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = tick.tick() => {
                if outbox.is_broken() {
                    break;
                }
                match recheck.due(Instant::now()) {
                    RecheckOutcome::Same => {}
                    RecheckOutcome::Role(role) => {
                        input.set_role(role);
                        let microphone = if role == Role::Control {
                            mic.restore()
                        } else {
                            mic.revoke();
                            false
                        };
                        outbox.send(&ServerMessage::error(recheck.role_message(role, microphone), false));
                    }
                    RecheckOutcome::Denied(reason) => {
                        fatal(outbox, reason);
                        break;
                    }
                }
                if let Media::Websocket { .. } = media {
                    // The send rate is this transport's bitrate figure.
                    let now = Instant::now();
                    let sent = outbox.sent_bytes();
                    let dt = now.duration_since(last_sent.0).as_secs_f64();
                    if dt > 0.5 {
                        live.set_bitrate(Some(((sent - last_sent.1) as f64 * 8.0 / dt) as u64));
                        last_sent = (now, sent);
                    }
                    live.video_dropped.store(outbox.dropped_video(), Ordering::Relaxed);
                }
                continue;
            }
        };
        let text = match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => {
                handle_binary(&b, transport, &mic, &input);
                continue;
            }
            Some(Ok(_)) => continue,
        };
        if !rate.allow(Instant::now()) {
            live.count_input_drop();
            continue;
        }
        let parsed = match parse_client(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                // Droppable: a client that floods bad messages and never
                // reads must not grow our queue.
                outbox.send_droppable(&ServerMessage::error(format!("{e} (ignored)"), false));
                continue;
            }
        };
        match sig.check(&parsed) {
            Verdict::Handle => {}
            Verdict::Refuse { message, fatal: f } => {
                outbox.send_droppable(&ServerMessage::error(message, f));
                if f {
                    sig.close();
                    outbox.close();
                }
                continue;
            }
            Verdict::Ignore => continue,
        }
        match parsed {
            ClientMessage::Hello(_) => {}
            ClientMessage::Answer { sdp } => {
                if let Media::Webrtc(peer) = &media {
                    if let Err(e) = peer.apply_answer(sdp).await {
                        fatal(outbox, format!("{e}; reload the page to retry"));
                        sig.close();
                    }
                }
            }
            ClientMessage::Ice(c) => {
                if let Media::Webrtc(peer) = &media {
                    if let Err(e) = peer.add_candidate(c).await {
                        // One bad candidate does not end the session: others may work.
                        outbox.send_droppable(&ServerMessage::error(e, false));
                    }
                }
            }
            ClientMessage::Keyframe => match &media {
                Media::Websocket { keyframe, .. } => keyframe.notify_one(),
                Media::Webrtc(peer) => peer.request_keyframe(),
            },
            ClientMessage::Ping { t } => outbox.send_droppable(&ServerMessage::Pong { t }),
            ClientMessage::Stats(s) => {
                live.set_rtt_ms(s.rtt_ms);
                live.set_loss(s.loss);
                if transport == Transport::Websocket {
                    live.set_bitrate(s.bitrate_bps.map(|b| b as u64));
                }
            }
            ClientMessage::Input(obj) => input.handle(&obj),
        }
    }

    input.release();
    match media {
        Media::Websocket { tasks, .. } => {
            for t in tasks {
                t.abort();
            }
        }
        Media::Webrtc(peer) => peer.close().await,
    }
    tracing::info!(domid, session = %registration.id, "viewer session ended");
    drop(registration);
}

fn handle_binary(data: &[u8], transport: Transport, mic: &Microphone, input: &InputPath) {
    match frames::decode(data) {
        Ok((h, payload)) if h.kind == Kind::Microphone && transport == Transport::Websocket => {
            if !mic.packet(payload) && mic.capture.is_none() {
                input.warn(
                    "microphone audio ignored: not allowed for this session, or the guest has no capture stream"
                        .into(),
                );
            }
        }
        Ok(_) => input.warn("only microphone frames (kind 3) may be sent on this socket".into()),
        Err(e) => input.warn(format!("binary frame ignored: {e}")),
    }
}
