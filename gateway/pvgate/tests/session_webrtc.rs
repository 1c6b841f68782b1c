//! WebRTC end to end in Rust: a client peer made with the same `webrtc`
//! crate answers the gateway's offer over the session WebSocket, receives
//! the guest's video as RTP (depacketised and decoded: the guest's frame
//! counter advances), and types a key through the `input` data channel.

mod session_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pvgate_media::decode::new_decoder;
use pvgate_media::Codec;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use serde_json::json;
use session_common::{strip, Host, In};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCPeerConnectionIceEvent,
};

enum Ev {
    Candidate(String),
    Track(Arc<dyn TrackRemote>),
    Channel(Arc<dyn DataChannel>),
}

struct Client {
    tx: mpsc::UnboundedSender<Ev>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Client {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.tx.send(Ev::Candidate(c.candidate));
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(Ev::Track(track));
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.tx.send(Ev::Channel(dc));
    }
}

fn codec(mime: &str, rate: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: rate,
            channels,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// Video RTP → Annex B access units (decoded by the test's main loop).
async fn watch_video(track: Arc<dyn TrackRemote>, units: mpsc::UnboundedSender<Vec<u8>>) {
    let mut depack = H264Packet::default();
    let mut au = Vec::new();
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else {
            continue;
        };
        let payload: Bytes = pkt.payload.clone();
        if let Ok(nalus) = depack.depacketize(&payload) {
            au.extend_from_slice(&nalus);
        }
        if pkt.header.marker && !au.is_empty() {
            let _ = units.send(std::mem::take(&mut au));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_video_and_data_channel_input() {
    let host = Host::start();
    let mut ws = host.connect().await;
    ws.send(
        json!({"type":"hello","transport":"webrtc","codecs":["h264"],"audio":true,"mic":false}),
    )
    .await;
    let welcome = ws.next_text("welcome").await;
    assert_eq!(welcome["transport"], "webrtc");
    assert_eq!(welcome["video"]["codec"], "h264");
    assert_eq!(welcome["ice_servers"], json!([]), "none hard-coded");
    let offer = ws.next_text("offer").await;
    let sdp = offer["sdp"].as_str().unwrap().to_string();
    // The offer's shape (PROTOCOL.md "WebRTC").
    let video_line = sdp.lines().position(|l| l.starts_with("m=video")).unwrap();
    let audio_line = sdp.lines().position(|l| l.starts_with("m=audio")).unwrap();
    assert!(sdp.contains("m=application"), "a data channel: {sdp}");
    let section = |from: usize| {
        sdp.lines()
            .skip(from + 1)
            .take_while(|l| !l.starts_with("m="))
            .collect::<Vec<_>>()
    };
    assert!(section(video_line).contains(&"a=sendonly"), "{sdp}");
    assert!(
        sdp.lines().nth(video_line).unwrap().split(' ').count() == 4,
        "one video codec: {sdp}"
    );
    assert!(
        section(audio_line).iter().any(|l| l.contains("opus/48000")),
        "{sdp}"
    );
    assert!(
        sdp.contains("transport-cc"),
        "congestion control feedback: {sdp}"
    );

    let mut media = MediaEngine::default();
    media
        .register_codec(
            codec(
                MIME_TYPE_H264,
                90_000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
            ),
            RtpCodecKind::Video,
        )
        .unwrap();
    media
        .register_codec(
            codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
            RtpCodecKind::Audio,
        )
        .unwrap();
    let registry =
        register_default_interceptors(rtc::interceptor::Registry::new(), &mut media).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
                .build(),
        )
        .with_handler(Arc::new(Client { tx }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .unwrap();
    pc.set_remote_description(RTCSessionDescription::offer(sdp).unwrap())
        .await
        .unwrap();
    let answer = pc.create_answer(None).await.unwrap();
    pc.set_local_description(answer).await.unwrap();
    let answer_sdp = pc.local_description().await.unwrap().sdp;
    ws.send(json!({"type":"answer","sdp":answer_sdp})).await;

    let (strip_tx, mut strips) = mpsc::unbounded_channel();
    let mut decoder = new_decoder(Codec::H264).unwrap();
    let mut channel: Option<Arc<dyn DataChannel>> = None;
    let mut frames = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    let mut last_typed: Option<Instant> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "WebRTC: {} frames decoded, data channel {}, guest lines {:?}",
            frames.len(),
            channel.is_some(),
            host.guest_lines.lock().unwrap()
        );
        tokio::select! {
            m = ws.next() => {
                if let In::Text(v) = m {
                    match v["type"].as_str() {
                        Some("ice") => {
                            if let Some(c) = v["candidate"].as_str() {
                                pc.add_ice_candidate(RTCIceCandidateInit {
                                    candidate: c.to_string(),
                                    sdp_mid: v["sdpMid"].as_str().map(str::to_string),
                                    sdp_mline_index: v["sdpMLineIndex"].as_u64().map(|i| i as u16),
                                    ..Default::default()
                                })
                                .await
                                .unwrap();
                            }
                        }
                        Some("error") => panic!("the gateway said: {v}"),
                        _ => {}
                    }
                }
            }
            Some(ev) = events.recv() => match ev {
                Ev::Candidate(c) => {
                    ws.send(json!({"type":"ice","candidate":c,"sdpMid":"0","sdpMLineIndex":0})).await;
                }
                Ev::Track(t) => {
                    if t.kind().await == RtpCodecKind::Video {
                        tokio::spawn(watch_video(t, strip_tx.clone()));
                    }
                }
                Ev::Channel(dc) => {
                    assert_eq!(dc.label().await.unwrap(), "input");
                    let dc2 = dc.clone();
                    // Drain its events (OnOpen etc.) so it keeps going.
                    tokio::spawn(async move { while dc2.poll().await.is_some() {} });
                    channel = Some(dc);
                }
            },
            Some(unit) = strips.recv() => {
                if let Ok(Some(frame)) = decoder.decode(&unit) {
                    if let Some(s) = strip(&frame) {
                        frames.push(s.frame);
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let due = last_typed.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(2));
        if let (Some(dc), true) = (&channel, due) {
            if !host.guest_saw("key keycode=48 pressed=1") {
                // KEY_B (48) down and up, as the browser sends them; again
                // later if the channel was not open yet.
                let _ = dc
                    .send_text(&json!({"type":"key","code":48,"down":true}).to_string())
                    .await;
                let _ = dc
                    .send_text(&json!({"type":"key","code":48,"down":false}).to_string())
                    .await;
                last_typed = Some(Instant::now());
            }
        }
        if frames.len() >= 5 && host.guest_saw("key keycode=48 pressed=1") {
            break;
        }
    }
    assert!(
        frames.windows(2).filter(|w| w[1] > w[0]).count() >= 3,
        "the guest's frame counter advances in the decoded video: {frames:?}"
    );
    // The session counts as a viewer while it runs.
    let guest: serde_json::Value = serde_json::from_slice(
        &session_common::http_get(&format!(
            "{}/api/guests/{}",
            host.base,
            session_common::DOMID
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(guest["viewers"], 1);
    // The gateway measures the viewer's round-trip time from the peer
    // connection's own statistics and shows it in /metrics.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = session_common::http_get(&format!("{}/metrics", host.base))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let rtt = metrics
            .lines()
            .find(|l| l.starts_with("pvgate_viewer_rtt_seconds{") && l.contains("webrtc"));
        if let Some(line) = rtt {
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(v > 0.0 && v < 1.0, "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no viewer RTT in /metrics:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pc.close().await.unwrap();
}

/// The browser's microphone as the audio track of its answer reaches the
/// guest's capture stream (the gateway offered audio sendrecv).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_microphone_reaches_the_guest() {
    use rtc::media::Sample;
    use rtc::media_stream::MediaStreamTrack;
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters};
    use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
    use webrtc::media_stream::track_local::TrackLocal;

    let host = Host::start();
    let mut ws = host.connect().await;
    ws.send(json!({"type":"hello","transport":"webrtc","codecs":["h264"],"audio":true,"mic":true}))
        .await;
    assert_eq!(ws.next_text("welcome").await["mic"], true);
    let offer = ws.next_text("offer").await;
    let sdp = offer["sdp"].as_str().unwrap().to_string();
    let audio_line = sdp.lines().position(|l| l.starts_with("m=audio")).unwrap();
    assert!(
        sdp.lines()
            .skip(audio_line + 1)
            .take_while(|l| !l.starts_with("m="))
            .any(|l| l == "a=sendrecv"),
        "audio is sendrecv when the microphone is allowed: {sdp}"
    );

    let mut media = MediaEngine::default();
    media
        .register_codec(
            codec(
                MIME_TYPE_H264,
                90_000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
            ),
            RtpCodecKind::Video,
        )
        .unwrap();
    let opus_params = codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111);
    media
        .register_codec(opus_params.clone(), RtpCodecKind::Audio)
        .unwrap();
    let registry =
        register_default_interceptors(rtc::interceptor::Registry::new(), &mut media).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
                .build(),
        )
        .with_handler(Arc::new(Client { tx }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .unwrap();
    pc.set_remote_description(RTCSessionDescription::offer(sdp).unwrap())
        .await
        .unwrap();
    let ssrc = 0x1234_5678;
    let mic = Arc::new(
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                "browser".into(),
                "mic".into(),
                "microphone".into(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus_params.rtp_codec.clone(),
                    ..Default::default()
                }],
            ),
        )
        .unwrap(),
    );
    let sender = pc
        .add_track(mic.clone() as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let answer = pc.create_answer(None).await.unwrap();
    pc.set_local_description(answer).await.unwrap();
    let answer_sdp = pc.local_description().await.unwrap().sdp;
    ws.send(json!({"type":"answer","sdp":answer_sdp})).await;

    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
    let step = 2.0 * std::f32::consts::PI * 1000.0 / 48_000.0;
    let mut phase = 0f32;
    let mut pt = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the guest never heard the tone: {:?}",
            host.guest_lines.lock().unwrap()
        );
        tokio::select! {
            m = ws.next() => {
                if let In::Text(v) = m {
                    if v["type"] == "ice" {
                        if let Some(c) = v["candidate"].as_str() {
                            pc.add_ice_candidate(RTCIceCandidateInit {
                                candidate: c.to_string(),
                                sdp_mid: v["sdpMid"].as_str().map(str::to_string),
                                sdp_mline_index: v["sdpMLineIndex"].as_u64().map(|i| i as u16),
                                ..Default::default()
                            })
                            .await
                            .unwrap();
                        }
                    }
                    assert_ne!(v["type"], "error", "{v}");
                }
            }
            Some(ev) = events.recv() => {
                if let Ev::Candidate(c) = ev {
                    ws.send(json!({"type":"ice","candidate":c,"sdpMid":"0","sdpMLineIndex":0})).await;
                }
            }
            _ = tick.tick() => {
                if pt.is_none() {
                    pt = sender
                        .get_parameters()
                        .await
                        .ok()
                        .and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type));
                }
                if let Some(pt) = pt {
                    let mut pcm = Vec::with_capacity(960 * 2);
                    for _ in 0..960 {
                        let v = 0.3 * phase.sin();
                        pcm.extend_from_slice(&[v, v]);
                        phase = (phase + step) % (2.0 * std::f32::consts::PI);
                    }
                    let packet = enc.encode_vec_float(&pcm, 1500).unwrap();
                    let sample = Sample {
                        data: Bytes::from(packet),
                        duration: Duration::from_millis(20),
                        ..Sample::new(Instant::now())
                    };
                    // Before the connection is up the write fails; keep going.
                    let _ = mic.sample_writer(ssrc, pt).write_sample(&sample).await;
                }
            }
        }
        let heard = host.guest_lines.lock().unwrap().iter().any(|l| {
            l.starts_with("capture vsnd/")
                && l.split_whitespace()
                    .find_map(|w| w.strip_prefix("hz="))
                    .and_then(|h| h.parse::<f64>().ok())
                    .is_some_and(|hz| (hz - 1000.0).abs() < 30.0)
        });
        if heard {
            break;
        }
    }
    pc.close().await.unwrap();
}
