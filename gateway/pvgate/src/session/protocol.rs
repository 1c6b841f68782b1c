//! The session WebSocket's JSON messages (web/PROTOCOL.md), parsed and
//! validated. Pure: no I/O, nothing here can panic on what a browser sends.

use pvgate_media::Codec;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::IceServer;
use crate::http::GuestInfo;

/// Largest text frame accepted. An SDP answer from Chromium with every
/// codec it knows is ≈ 6–10 KiB; 64 KiB leaves room without letting a
/// browser make us parse megabytes.
pub const MAX_TEXT_FRAME: usize = 64 * 1024;
/// Largest binary frame accepted (a microphone Opus packet is at most
/// 1275 bytes plus our 12-byte header).
pub const MAX_BINARY_FRAME: usize = 4 * 1024;
/// Longest SDP, ICE candidate or mid we pass on to the WebRTC stack.
const MAX_SDP: usize = 60 * 1024;
const MAX_CANDIDATE: usize = 1024;

/// Which transport carries the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Webrtc,
    Websocket,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Webrtc => "webrtc",
            Transport::Websocket => "websocket",
        }
    }
}

/// The client's `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub transport: Transport,
    pub display: usize,
    /// Codecs the browser decodes, preferred first (unknown names dropped).
    pub codecs: Vec<Codec>,
    pub audio: bool,
    pub mic: bool,
}

/// A trickled ICE candidate; `candidate: None` ends gathering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    pub candidate: Option<String>,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

/// The client's `stats` (every field optional; only finite, sane numbers kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    pub fps: Option<f64>,
    pub decode_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    pub bitrate_bps: Option<f64>,
    pub latency_ms: Option<f64>,
}

/// Every message a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Hello(Hello),
    Answer {
        sdp: String,
    },
    Ice(IceCandidate),
    Keyframe,
    Ping {
        t: Value,
    },
    Stats(ClientStats),
    /// One of the input messages (`key`, `move`, …), validated later by
    /// [`super::input::InputValidator`], which knows the display and role.
    Input(Map<String, Value>),
}

/// Why a client message was refused. The text is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message too large ({0} bytes; the limit is {MAX_TEXT_FRAME})")]
    TooLarge(usize),
    #[error("message is not a JSON object with a \"type\": {0}")]
    NotJson(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad {kind} message: {detail}")]
    BadField { kind: &'static str, detail: String },
}

pub const INPUT_TYPES: [&str; 6] = ["key", "move", "button", "wheel", "touch", "release"];

fn bad(kind: &'static str, detail: impl Into<String>) -> MessageError {
    MessageError::BadField {
        kind,
        detail: detail.into(),
    }
}

fn opt_bool(obj: &Map<String, Value>, kind: &'static str, key: &str) -> Result<bool, MessageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(kind, format!("{key} must be true or false"))),
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    kind: &'static str,
    key: &str,
    max: usize,
) -> Result<Option<String>, MessageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(bad(kind, format!("{key} is {} bytes long", s.len()))),
        Some(_) => Err(bad(kind, format!("{key} must be a string"))),
    }
}

fn parse_hello(obj: &Map<String, Value>) -> Result<Hello, MessageError> {
    let transport = match obj.get("transport") {
        None | Some(Value::Null) => Transport::Webrtc,
        Some(Value::String(s)) if s == "webrtc" => Transport::Webrtc,
        Some(Value::String(s)) if s == "websocket" => Transport::Websocket,
        Some(_) => {
            return Err(bad(
                "hello",
                "transport must be \"webrtc\" or \"websocket\"",
            ))
        }
    };
    let display = match obj.get("display") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|d| *d < 64)
            .ok_or_else(|| bad("hello", "display must be a small non-negative integer"))?
            as usize,
    };
    let codecs = match obj.get("codecs") {
        None | Some(Value::Null) => vec![Codec::H264, Codec::Vp8],
        Some(Value::Array(list)) if list.len() <= 16 => {
            let mut out = Vec::new();
            for c in list {
                let codec = match c.as_str().map(str::to_ascii_lowercase).as_deref() {
                    Some("h264") => Some(Codec::H264),
                    Some("vp8") => Some(Codec::Vp8),
                    // Codecs this gateway does not encode are not an error:
                    // newer clients may list more.
                    Some(_) => None,
                    None => return Err(bad("hello", "codecs must be strings")),
                };
                if let Some(codec) = codec {
                    if !out.contains(&codec) {
                        out.push(codec);
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(bad(
                "hello",
                "codecs must be a list such as [\"h264\",\"vp8\"]",
            ))
        }
    };
    Ok(Hello {
        transport,
        display,
        codecs,
        audio: opt_bool(obj, "hello", "audio")?,
        mic: opt_bool(obj, "hello", "mic")?,
    })
}

fn parse_ice(obj: &Map<String, Value>) -> Result<IceCandidate, MessageError> {
    let sdp_mline_index = match obj.get("sdpMLineIndex") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|i| *i <= u16::MAX as u64)
                .ok_or_else(|| bad("ice", "sdpMLineIndex must be a small integer"))?
                as u16,
        ),
    };
    Ok(IceCandidate {
        candidate: opt_string(obj, "ice", "candidate", MAX_CANDIDATE)?,
        sdp_mid: opt_string(obj, "ice", "sdpMid", 64)?,
        sdp_mline_index,
    })
}

fn finite(obj: &Map<String, Value>, key: &str, max: f64) -> Option<f64> {
    obj.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= max)
}

fn parse_stats(obj: &Map<String, Value>) -> ClientStats {
    // Bad numbers are ignored rather than refused: stats are advisory.
    ClientStats {
        fps: finite(obj, "fps", 1000.0),
        decode_ms: finite(obj, "decode_ms", 60_000.0),
        rtt_ms: finite(obj, "rtt_ms", 60_000.0),
        loss: finite(obj, "loss", 1.0),
        bitrate_bps: finite(obj, "bitrate_bps", 1e10),
        latency_ms: finite(obj, "latency_ms", 600_000.0),
    }
}

/// Parse one text frame.
pub fn parse_client(text: &str) -> Result<ClientMessage, MessageError> {
    if text.len() > MAX_TEXT_FRAME {
        return Err(MessageError::TooLarge(text.len()));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(MessageError::NotJson("not an object".into()));
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(MessageError::NotJson("no \"type\" string".into()));
    };
    Ok(match kind {
        "hello" => ClientMessage::Hello(parse_hello(&obj)?),
        "answer" => ClientMessage::Answer {
            sdp: opt_string(&obj, "answer", "sdp", MAX_SDP)?
                .ok_or_else(|| bad("answer", "sdp is missing"))?,
        },
        "ice" => ClientMessage::Ice(parse_ice(&obj)?),
        "keyframe" => ClientMessage::Keyframe,
        "ping" => {
            // Echoed back as given, but only if it is a plain number: a
            // ping must not make us echo a large object.
            let t = obj.get("t").cloned().unwrap_or(Value::Null);
            if !(t.is_number() || t.is_null()) {
                return Err(bad("ping", "t must be a number"));
            }
            ClientMessage::Ping { t }
        }
        "stats" => ClientMessage::Stats(parse_stats(&obj)),
        k if INPUT_TYPES.contains(&k) => ClientMessage::Input(obj),
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(MessageError::UnknownType(shown));
        }
    })
}

/// `welcome.display`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DisplayDesc {
    pub index: usize,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VideoDesc {
    pub codec: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioDesc {
    pub codec: &'static str,
    pub rate: u32,
    pub channels: u32,
}

/// Every message the gateway sends.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Welcome {
        session: String,
        role: crate::access::Role,
        guest: Value,
        display: DisplayDesc,
        transport: Transport,
        video: VideoDesc,
        audio: Option<AudioDesc>,
        mic: bool,
        ice_servers: Vec<IceServer>,
    },
    Offer {
        sdp: String,
    },
    Ice {
        candidate: Option<String>,
        #[serde(rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
    Pong {
        t: Value,
    },
    Resolution {
        width: u32,
        height: u32,
    },
    Error {
        message: String,
        fatal: bool,
    },
}

impl ServerMessage {
    pub fn error(message: impl Into<String>, fatal: bool) -> ServerMessage {
        ServerMessage::Error {
            message: message.into(),
            fatal,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising our own plain structs cannot fail; an empty object is
        // a safe answer if it ever did.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

pub fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "h264",
        Codec::Vp8 => "vp8",
    }
}

/// The guest as the API shows it, for `welcome.guest`.
pub fn guest_json(guest: &GuestInfo, tenant: Option<String>, viewers: usize) -> Value {
    let mut v = serde_json::to_value(guest).unwrap_or(Value::Null);
    if let Value::Object(obj) = &mut v {
        obj.insert(
            "tenant".into(),
            tenant.map(Value::String).unwrap_or(Value::Null),
        );
        obj.insert("viewers".into(), Value::from(viewers));
    }
    v
}

/// The video codec: the first in the configured preference the browser
/// also decodes (the operator's order wins so that viewers share encoders).
pub fn choose_codec(configured: &[Codec], client: &[Codec]) -> Option<Codec> {
    configured.iter().copied().find(|c| client.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_defaults_and_fields() {
        let m = parse_client(r#"{"type":"hello"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello(Hello {
                transport: Transport::Webrtc,
                display: 0,
                codecs: vec![Codec::H264, Codec::Vp8],
                audio: false,
                mic: false
            })
        );
        let m = parse_client(
            r#"{"type":"hello","transport":"websocket","display":1,"codecs":["VP8","av1","vp8"],"audio":true,"mic":true}"#,
        )
        .unwrap();
        let ClientMessage::Hello(h) = m else { panic!() };
        assert_eq!(h.transport, Transport::Websocket);
        assert_eq!(h.display, 1);
        assert_eq!(h.codecs, vec![Codec::Vp8]);
        assert!(h.audio && h.mic);
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        for text in [
            "",
            "null",
            "[]",
            "{\"type\":5}",
            "{\"no\":\"type\"}",
            "{\"type\":\"hello\",\"transport\":\"carrier-pigeon\"}",
            "{\"type\":\"hello\",\"display\":-1}",
            "{\"type\":\"hello\",\"codecs\":\"h264\"}",
            "{\"type\":\"hello\",\"audio\":\"yes\"}",
            "{\"type\":\"answer\"}",
            "{\"type\":\"ice\",\"sdpMLineIndex\":70000}",
            "{\"type\":\"ping\",\"t\":{\"deep\":[1,2,3]}}",
        ] {
            assert!(parse_client(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_client(r#"{"type":"launch-missiles"}"#),
            Err(MessageError::UnknownType("launch-missiles".into()))
        );
        let big = format!(
            r#"{{"type":"answer","sdp":"{}"}}"#,
            "a".repeat(MAX_TEXT_FRAME)
        );
        assert!(matches!(parse_client(&big), Err(MessageError::TooLarge(_))));
    }

    #[test]
    fn ice_stats_ping_and_input_are_recognised() {
        let m = parse_client(
            r#"{"type":"ice","candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
        )
        .unwrap();
        let ClientMessage::Ice(c) = m else { panic!() };
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_mline_index, Some(0));
        let ClientMessage::Ice(end) = parse_client(r#"{"type":"ice","candidate":null}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(end.candidate, None);
        let ClientMessage::Stats(s) =
            parse_client(r#"{"type":"stats","rtt_ms":12.5,"loss":7,"fps":"x"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.rtt_ms, Some(12.5));
        assert_eq!(s.loss, None, "loss > 1 is not a fraction");
        assert_eq!(s.fps, None);
        assert_eq!(
            parse_client(r#"{"type":"ping","t":123.5}"#).unwrap(),
            ClientMessage::Ping { t: 123.5.into() }
        );
        assert!(matches!(
            parse_client(r#"{"type":"key","code":30,"down":true}"#).unwrap(),
            ClientMessage::Input(_)
        ));
    }

    #[test]
    fn server_messages_serialise_as_the_protocol_says() {
        let v: Value = serde_json::from_str(
            &ServerMessage::Ice {
                candidate: None,
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(v["type"], "ice");
        assert_eq!(v["candidate"], Value::Null);
        assert_eq!(v["sdpMid"], "0");
        assert_eq!(v["sdpMLineIndex"], 0);
        let v: Value = serde_json::from_str(&ServerMessage::error("no", true).to_json()).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["fatal"].as_bool()),
            (Some("error"), Some(true))
        );
    }

    #[test]
    fn the_configured_preference_picks_the_codec() {
        use Codec::*;
        assert_eq!(choose_codec(&[H264, Vp8], &[Vp8, H264]), Some(H264));
        assert_eq!(choose_codec(&[H264, Vp8], &[Vp8]), Some(Vp8));
        assert_eq!(choose_codec(&[Vp8], &[H264]), None);
    }
}
