//! `GET /metrics`: the gateway's counters in the Prometheus text exposition
//! format (version 0.0.4).
//!
//! Only raw counters and gauges are exported; rates (fps, bitrate) are
//! Prometheus' job (`rate(pvgate_encoder_frames_total[30s])`,
//! `8 * rate(pvgate_encoder_bytes_total[30s])`), which keeps the gateway
//! free of time windows and stays right across scrapes of any interval.
//!
//! Who sees what: the metrics token (or a gateway without authentication)
//! sees every guest; a viewer token sees its own tenant's guests only, so
//! one tenant cannot learn another's guest names, users or load.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use pvgate_audio::AudioStats;
use pvgate_backends::display::FlipStats;
use pvgate_media::{Codec, EncoderStats};
use pvgate_platform::DomId;

use super::api::TokenQuery;
use super::AppState;
use crate::access::MetricsScope;
use crate::session::ViewerStats;

/// One guest screen's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectorSample {
    pub domid: DomId,
    pub device: u32,
    pub connector: u32,
    pub width: u32,
    pub height: u32,
    pub enabled: bool,
    pub flips: FlipStats,
}

/// One sound stream's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamSample {
    pub domid: DomId,
    pub device: u32,
    pub stream: u32,
    /// `"playback"` or `"capture"`.
    pub direction: &'static str,
    pub open: bool,
    pub stats: AudioStats,
}

/// Everything the backends count, taken at one scrape.
#[derive(Clone, Debug, Default)]
pub struct GatewaySample {
    pub connectors: Vec<ConnectorSample>,
    pub encoders: Vec<EncoderStats>,
    pub streams: Vec<StreamSample>,
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let query = Query::<TokenQuery>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let token = query.token.as_deref();
    let scope = match state.access.metrics_scope(&headers, token) {
        Ok(scope) => scope,
        Err(e) => return e.into_response(),
    };
    // Who owns what, from one look at the guest list.
    let mut guests: BTreeMap<DomId, (String, String)> = BTreeMap::new();
    for g in state.view.guests() {
        let tenant = state.access.tenant_of(g.domid, &g.name).unwrap_or_default();
        let visible = match &scope {
            MetricsScope::All => true,
            MetricsScope::Tenant(v) => state.access.may_open(v, g.domid, &g.name).is_ok(),
        };
        if visible {
            guests.insert(g.domid, (g.name, tenant));
        }
    }
    let sample = state.view.metrics();
    let viewers = state.sessions.viewer_stats();
    let viewer_counts: BTreeMap<DomId, usize> = guests
        .keys()
        .map(|&d| (d, state.sessions.viewer_count(d)))
        .collect();
    let mut body = render(&guests, &viewer_counts, &sample, &viewers);
    // Policy counters: every tenant's for the metrics token, else the
    // caller's own tenant's.
    body.push_str(&crate::policy::metrics::render(
        &state.policies().tenant_policies(),
        |tenant| match &scope {
            MetricsScope::All => true,
            MetricsScope::Tenant(v) => v.tenant == tenant,
        },
    ));
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Escapes a label value: backslash, double quote and newline, as the
/// format requires (guest and user names are anyone's choice).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Collects samples per family so each family's HELP and TYPE come once,
/// before all of its samples (the format requires families to be contiguous).
#[derive(Default)]
struct Families {
    order: Vec<&'static str>,
    families: BTreeMap<&'static str, (&'static str, &'static str, String)>,
}

type Labels<'a> = Vec<(&'static str, String)>;

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &Labels,
        value: f64,
    ) {
        let entry = self.families.entry(name).or_insert_with(|| {
            self.order.push(name);
            (kind, help, String::new())
        });
        let body = &mut entry.2;
        body.push_str(name);
        if !labels.is_empty() {
            body.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let _ = write!(body, "{k}=\"{}\"", escape(v));
            }
            body.push('}');
        }
        let _ = writeln!(body, " {}", float(value));
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: u64) {
        self.add(name, "counter", help, labels, value as f64);
    }

    fn counter_f(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: f64) {
        self.add(name, "counter", help, labels, value);
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: f64) {
        self.add(name, "gauge", help, labels, value);
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for name in self.order {
            let (kind, help, body) = &self.families[name];
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            out.push_str(body);
        }
        out
    }
}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "h264",
        Codec::Vp8 => "vp8",
    }
}

/// The exposition text for the guests in `guests` (domid → (name, tenant)).
pub fn render(
    guests: &BTreeMap<DomId, (String, String)>,
    viewer_counts: &BTreeMap<DomId, usize>,
    sample: &GatewaySample,
    viewers: &[ViewerStats],
) -> String {
    let mut f = Families::default();
    let guest_labels = |domid: DomId| -> Option<Labels> {
        let (name, tenant) = guests.get(&domid)?;
        Some(vec![
            ("domid", domid.to_string()),
            ("guest", name.clone()),
            ("tenant", tenant.clone()),
        ])
    };

    f.gauge(
        "pvgate_guests",
        "Guests served (that this caller may see).",
        &vec![],
        guests.len() as f64,
    );
    for (&domid, &n) in viewer_counts {
        if let Some(l) = guest_labels(domid) {
            f.gauge(
                "pvgate_guest_viewers",
                "Viewers watching the guest now.",
                &l,
                n as f64,
            );
        }
    }

    for c in &sample.connectors {
        let Some(mut l) = guest_labels(c.domid) else {
            continue;
        };
        l.push(("device", c.device.to_string()));
        l.push(("connector", c.connector.to_string()));
        let s = &c.flips;
        f.gauge(
            "pvgate_display_enabled",
            "1 when the guest has the display switched on.",
            &l,
            f64::from(u8::from(c.enabled)),
        );
        f.gauge(
            "pvgate_display_width_pixels",
            "Connector width.",
            &l,
            f64::from(c.width),
        );
        f.gauge(
            "pvgate_display_height_pixels",
            "Connector height.",
            &l,
            f64::from(c.height),
        );
        f.counter(
            "pvgate_display_flips_total",
            "Page flips (PG_FLIP) answered.",
            &l,
            s.flips,
        );
        f.counter(
            "pvgate_display_copies_total",
            "Flips copied into the gateway's frame.",
            &l,
            s.copies,
        );
        f.counter(
            "pvgate_display_unchanged_total",
            "Copies that found nothing changed.",
            &l,
            s.unchanged,
        );
        f.counter_f(
            "pvgate_display_copy_seconds_total",
            "Time spent copying flipped buffers.",
            &l,
            secs(s.copy_time_total),
        );
        f.gauge(
            "pvgate_display_copy_seconds_max",
            "Longest copy of one flip.",
            &l,
            secs(s.copy_time_max),
        );
        if let Some(t) = s
            .last_flip
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        {
            f.gauge(
                "pvgate_display_last_flip_timestamp_seconds",
                "When the guest last flipped (Unix time).",
                &l,
                t.as_secs_f64(),
            );
        }
    }

    for e in &sample.encoders {
        let Ok(domid) = DomId::try_from(e.connector.domid) else {
            continue;
        };
        let Some(mut l) = guest_labels(domid) else {
            continue;
        };
        l.push(("device", e.connector.device.to_string()));
        l.push(("connector", e.connector.connector.to_string()));
        l.push(("codec", codec_name(e.params.codec).into()));
        // Encoders are shared per parameter set: these tell them apart.
        l.push(("target_bitrate_bps", e.params.bitrate_bps.to_string()));
        l.push(("max_fps", e.params.max_fps.to_string()));
        f.gauge(
            "pvgate_encoder_subscribers",
            "Viewers sharing this encoder.",
            &l,
            e.subscribers as f64,
        );
        f.counter(
            "pvgate_encoder_frames_in_total",
            "Frames offered to the encoder.",
            &l,
            e.frames_in,
        );
        f.counter(
            "pvgate_encoder_unchanged_total",
            "Offered frames without damage (not encoded).",
            &l,
            e.unchanged,
        );
        f.counter(
            "pvgate_encoder_dropped_total",
            "Frames skipped: replaced by a newer one or over the frame-rate limit.",
            &l,
            e.dropped,
        );
        f.counter(
            "pvgate_encoder_frames_total",
            "Frames encoded (rate() = encoded fps).",
            &l,
            e.encoded,
        );
        f.counter(
            "pvgate_encoder_keyframes_total",
            "Keyframes encoded.",
            &l,
            e.keyframes,
        );
        f.counter(
            "pvgate_encoder_bytes_total",
            "Encoded bytes (8 * rate() = bitrate).",
            &l,
            e.bytes,
        );
        f.counter_f(
            "pvgate_encoder_encode_seconds_total",
            "Time spent encoding.",
            &l,
            secs(e.encode_time_total),
        );
        f.gauge(
            "pvgate_encoder_encode_seconds_max",
            "Longest encode of one frame.",
            &l,
            secs(e.encode_time_max),
        );
        f.counter(
            "pvgate_encoder_errors_total",
            "Frames the encoder failed on.",
            &l,
            e.errors,
        );
        f.counter(
            "pvgate_encoder_lagged_total",
            "Times a viewer fell behind and lost frames.",
            &l,
            e.lagged_subscribers,
        );
    }

    for s in &sample.streams {
        let Some(mut l) = guest_labels(s.domid) else {
            continue;
        };
        l.push(("device", s.device.to_string()));
        l.push(("stream", s.stream.to_string()));
        l.push(("direction", s.direction.into()));
        let a = &s.stats;
        let ns = |v: u64| v as f64 / 1e9;
        f.gauge(
            "pvgate_sound_open",
            "1 while the guest has the stream open.",
            &l,
            f64::from(u8::from(s.open)),
        );
        f.counter(
            "pvgate_sound_underruns_total",
            "Times the guest's data ran out while due to play.",
            &l,
            a.underruns,
        );
        f.counter(
            "pvgate_sound_silence_frames_total",
            "Frames of silence played in place of missing data.",
            &l,
            a.silence_frames,
        );
        f.counter(
            "pvgate_sound_overflow_bytes_total",
            "Octets written beyond the buffer (dropped).",
            &l,
            a.overflow_bytes,
        );
        f.counter(
            "pvgate_sound_late_frames_skipped_total",
            "Frames written after their time had played as silence.",
            &l,
            a.late_frames_skipped,
        );
        f.counter(
            "pvgate_sound_cur_pos_events_total",
            "CUR_POS events sent.",
            &l,
            a.cur_pos_events,
        );
        f.counter(
            "pvgate_sound_cur_pos_coalesced_total",
            "CUR_POS events merged into a later one.",
            &l,
            a.cur_pos_coalesced,
        );
        f.gauge(
            "pvgate_sound_cur_pos_lag_seconds",
            "Lateness of the last CUR_POS event behind its period boundary.",
            &l,
            ns(a.cur_pos_lag_last_ns),
        );
        f.gauge(
            "pvgate_sound_cur_pos_lag_seconds_max",
            "Largest CUR_POS lateness.",
            &l,
            ns(a.cur_pos_lag_max_ns),
        );
        f.counter(
            "pvgate_sound_opus_frames_total",
            "Opus frames encoded.",
            &l,
            a.frames_encoded,
        );
        f.counter(
            "pvgate_sound_opus_bytes_total",
            "Opus bytes encoded.",
            &l,
            a.bytes_encoded,
        );
        f.counter(
            "pvgate_sound_encode_errors_total",
            "Opus encode failures.",
            &l,
            a.encode_errors,
        );
        f.counter(
            "pvgate_sound_encode_dropped_frames_total",
            "Frames dropped because the Opus encoder fell behind the guest's clock.",
            &l,
            a.encode_dropped_frames,
        );
        f.counter(
            "pvgate_sound_nonfinite_samples_total",
            "NaN or infinite float samples from the guest, encoded as silence.",
            &l,
            a.nonfinite_samples,
        );
        f.counter(
            "pvgate_sound_capture_dropped_frames_total",
            "Microphone frames dropped (sent faster than the guest read).",
            &l,
            a.capture_dropped_frames,
        );
        f.counter(
            "pvgate_sound_capture_silence_frames_total",
            "Silence served to the guest's capture READs.",
            &l,
            a.capture_silence_frames,
        );
        f.counter(
            "pvgate_sound_capture_bad_packets_total",
            "Microphone packets refused.",
            &l,
            a.capture_bad_packets,
        );
    }

    for v in viewers {
        let Some(mut l) = guest_labels(v.domid) else {
            continue;
        };
        l.push(("session", v.session.clone()));
        l.push(("user", v.user.clone()));
        l.push(("transport", v.transport.into()));
        if let Some(rtt) = v.rtt_ms {
            f.gauge(
                "pvgate_viewer_rtt_seconds",
                "Round-trip time to the viewer.",
                &l,
                rtt / 1000.0,
            );
        }
        if let Some(loss) = v.loss {
            f.gauge(
                "pvgate_viewer_loss_ratio",
                "Fraction of packets lost, 0..1.",
                &l,
                loss,
            );
        }
        if let Some(bps) = v.bitrate_bps {
            f.gauge(
                "pvgate_viewer_bitrate_bps",
                "Congestion controller's estimate, or the measured send rate.",
                &l,
                bps as f64,
            );
        }
        if let Some(bps) = v.encoder_bitrate_bps {
            f.gauge(
                "pvgate_viewer_encoder_bitrate_bps",
                "Bitrate of the shared encoder the viewer watches (its congestion-control step).",
                &l,
                bps as f64,
            );
        }
        f.counter(
            "pvgate_viewer_input_dropped_total",
            "Input messages dropped (view-only role, invalid, over the rate).",
            &l,
            v.input_dropped,
        );
        f.counter(
            "pvgate_viewer_video_dropped_total",
            "Video frames dropped because the viewer's WebSocket fell behind (it resumes at a keyframe).",
            &l,
            v.video_dropped,
        );
    }
    f.finish()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// One parsed sample line.
    #[derive(Debug)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// A strict reader of the text format: every line is a HELP, a TYPE, or
    /// a sample of the family last declared; names and labels are valid;
    /// label values are escaped; values parse; no series repeats.
    pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
        let mut out: Vec<Sample> = Vec::new();
        let mut declared: Vec<String> = Vec::new();
        let mut current: Option<(String, String)> = None;
        let mut seen = std::collections::BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if !valid_name(name) {
                    return Err(err("bad HELP name"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if !valid_name(name)
                    || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                {
                    return Err(err("bad TYPE"));
                }
                if declared.iter().any(|d| d == name) {
                    return Err(err("family declared twice"));
                }
                declared.push(name.into());
                current = Some((name.into(), kind.into()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(err("unexpected comment or blank line"));
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
            let name = &line[..name_end];
            if !valid_name(name) {
                return Err(err("bad metric name"));
            }
            match &current {
                Some((family, kind)) if family == name => {
                    if kind == "counter" && !name.ends_with("_total") {
                        return Err(err("counter without _total"));
                    }
                }
                _ => return Err(err("sample outside its family")),
            }
            let mut rest = &line[name_end..];
            let mut labels = BTreeMap::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                loop {
                    // label name
                    let start = chars
                        .peek()
                        .map(|&(i, _)| i)
                        .ok_or_else(|| err("open labels"))?;
                    if r[start..].starts_with('}') {
                        chars.next();
                        break;
                    }
                    let eq = r[start..].find('=').ok_or_else(|| err("label without ="))? + start;
                    let lname = &r[start..eq];
                    if !valid_name(lname) || lname.contains(':') {
                        return Err(err("bad label name"));
                    }
                    while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                        chars.next();
                    }
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(err("label value not quoted"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().ok_or_else(|| err("unterminated value"))?.1 {
                            '"' => break,
                            '\\' => match chars.next().ok_or_else(|| err("dangling escape"))?.1 {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                _ => return Err(err("bad escape")),
                            },
                            '\n' => return Err(err("raw newline")),
                            c => value.push(c),
                        }
                    }
                    if labels.insert(lname.to_string(), value).is_some() {
                        return Err(err("label repeated"));
                    }
                    match chars.next().map(|(_, c)| c) {
                        Some(',') => continue,
                        Some('}') => break,
                        _ => return Err(err("expected , or }")),
                    }
                }
                let consumed = chars.peek().map_or(r.len(), |&(i, _)| i);
                rest = &r[consumed..];
            }
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| err("no space before value"))?;
            let value: f64 = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| err("value is not a number"))?,
            };
            if !seen.insert((name.to_string(), labels.clone())) {
                return Err(err("series repeated"));
            }
            out.push(Sample {
                name: name.into(),
                labels,
                value,
            });
        }
        Ok(out)
    }

    #[test]
    fn the_exposition_parses_and_escapes_labels() {
        let mut guests = BTreeMap::new();
        guests.insert(5, ("we\"ird\\name\nx".to_string(), "acme".to_string()));
        guests.insert(6, ("plain".to_string(), String::new()));
        let counts = BTreeMap::from([(5, 2), (6, 0)]);
        let sample = GatewaySample {
            connectors: vec![ConnectorSample {
                domid: 5,
                width: 1280,
                height: 720,
                enabled: true,
                flips: FlipStats {
                    flips: 42,
                    copy_time_total: Duration::from_millis(1500),
                    last_flip: Some(SystemTime::now()),
                    ..FlipStats::default()
                },
                ..ConnectorSample::default()
            }],
            encoders: vec![],
            streams: vec![StreamSample {
                domid: 6,
                direction: "playback",
                open: true,
                stats: AudioStats {
                    underruns: 3,
                    cur_pos_lag_last_ns: 2_000_000,
                    encode_dropped_frames: 960,
                    nonfinite_samples: 11,
                    ..AudioStats::default()
                },
                ..StreamSample::default()
            }],
        };
        let viewers = vec![
            ViewerStats {
                session: "s1".into(),
                domid: 5,
                user: "alice".into(),
                transport: "webrtc",
                rtt_ms: Some(12.5),
                loss: Some(f64::NAN),
                input_dropped: 4,
                video_dropped: 7,
                encoder_bitrate_bps: Some(1_200_000),
                ..ViewerStats::default()
            },
            // A viewer of a guest the caller may not see is left out.
            ViewerStats {
                session: "s2".into(),
                domid: 9,
                transport: "websocket",
                ..ViewerStats::default()
            },
        ];
        let text = render(&guests, &counts, &sample, &viewers);
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let find = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        let flips = find("pvgate_display_flips_total");
        assert_eq!(flips.value, 42.0);
        assert_eq!(flips.labels["guest"], "we\"ird\\name\nx");
        assert_eq!(flips.labels["tenant"], "acme");
        assert_eq!(find("pvgate_display_copy_seconds_total").value, 1.5);
        assert_eq!(find("pvgate_sound_underruns_total").value, 3.0);
        assert_eq!(find("pvgate_sound_cur_pos_lag_seconds").value, 0.002);
        assert_eq!(
            find("pvgate_sound_encode_dropped_frames_total").value,
            960.0
        );
        assert_eq!(find("pvgate_sound_nonfinite_samples_total").value, 11.0);
        assert_eq!(find("pvgate_viewer_rtt_seconds").value, 0.0125);
        assert!(find("pvgate_viewer_loss_ratio").value.is_nan());
        assert_eq!(find("pvgate_viewer_input_dropped_total").value, 4.0);
        assert_eq!(find("pvgate_viewer_video_dropped_total").value, 7.0);
        assert_eq!(find("pvgate_viewer_encoder_bitrate_bps").value, 1.2e6);
        assert!(!text.contains("s2"), "{text}");
        assert_eq!(find("pvgate_guests").value, 2.0);
        let v: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "pvgate_guest_viewers")
            .collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].value, 2.0);
    }

    #[test]
    fn the_reader_rejects_malformed_text() {
        for bad in [
            "x 1",                                 // no TYPE
            "# TYPE x gauge\nx{a=\"b} 1",          // unterminated
            "# TYPE x gauge\nx{a=\"\\q\"} 1",      // bad escape
            "# TYPE x gauge\nx one",               // value
            "# TYPE x counter\nx 1",               // _total
            "# TYPE x gauge\nx 1\nx 2",            // repeated series
            "# TYPE x gauge\n# TYPE y gauge\nx 1", // not contiguous
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
