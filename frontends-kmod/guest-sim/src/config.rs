//! What a simulated guest has: its domain id and name, and its vdispl, vsnd
//! and vkb devices, parsed from the same syntax `xl.cfg` uses, so that a
//! test or a demo describes a guest exactly as an operator would.
//!
//! Syntax (see `man xl.cfg`, and xl's `parse_vdispl_config`,
//! `parse_vsnd_item` and `parse_vkb_config`):
//! - vdispl: `backend=0, be-alloc=1, connectors=id0:1920x1080;id1:800x600`
//!   (we also accept a bare `1280x720` per connector and name it `conn<i>`).
//! - vsnd: a list of items, each starting with `card`, `pcm` or `stream`:
//!   `[ 'card, short-name=Card, sample-rates=44100;48000, sample-formats=s16_le',
//!      'pcm, name=dev0', 'stream, unique-id=pb0, type=p', 'stream, type=c' ]`.
//!   On a command line the items may instead be separated by `|`.
//! - vkb: `backend-type=qemu|linux, feature-abs-pointer=1, width=W, height=H,
//!   feature-multi-touch=1, multi-touch-width=W, multi-touch-height=H,
//!   multi-touch-num-contacts=N, unique-id=ID`.

use crate::DomId;

/// A whole guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestConfig {
    pub domid: DomId,
    pub name: String,
    pub displays: Vec<DisplayConfig>,
    pub sound_cards: Vec<SoundCardConfig>,
    pub inputs: Vec<InputConfig>,
}

/// One `vdispl` device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayConfig {
    pub backend: DomId,
    /// The backend allocates the buffers; the guest maps them.
    pub be_alloc: bool,
    pub connectors: Vec<ConnectorConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub unique_id: String,
    pub width: u32,
    pub height: u32,
}

/// PCM parameters that may be set at card, device or stream level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcmParams {
    pub sample_rates: Vec<u32>,
    /// sndif names (`s16_le`, `float_le`, …).
    pub sample_formats: Vec<String>,
    pub channels_min: Option<u32>,
    pub channels_max: Option<u32>,
    pub buffer_size: Option<u32>,
}

/// One `vsnd` card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoundCardConfig {
    pub backend: DomId,
    pub short_name: Option<String>,
    pub long_name: Option<String>,
    pub params: PcmParams,
    pub pcms: Vec<PcmDeviceConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcmDeviceConfig {
    pub name: Option<String>,
    pub params: PcmParams,
    pub streams: Vec<StreamConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    Playback,
    Capture,
}

impl StreamType {
    /// The xenstore value (sndif.h `XENSND_STREAM_TYPE_*`).
    pub fn as_xenstore(self) -> &'static str {
        match self {
            StreamType::Playback => "p",
            StreamType::Capture => "c",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub unique_id: String,
    pub stream_type: StreamType,
    pub params: PcmParams,
}

/// Which backend kind libxl names for a vkb (`backend-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputBackendType {
    /// Backend directory `backend/vkbd` (libxl's default).
    Qemu,
    /// Backend directory `backend/vinput`.
    Linux,
}

/// One `vkb` device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputConfig {
    pub backend: DomId,
    pub backend_type: InputBackendType,
    pub unique_id: Option<String>,
    pub feature_disable_keyboard: bool,
    pub feature_disable_pointer: bool,
    pub feature_abs_pointer: bool,
    pub feature_raw_pointer: bool,
    pub feature_multi_touch: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub multi_touch_width: Option<u32>,
    pub multi_touch_height: Option<u32>,
    pub multi_touch_num_contacts: Option<u32>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            backend: 0,
            backend_type: InputBackendType::Qemu,
            unique_id: None,
            feature_disable_keyboard: false,
            feature_disable_pointer: false,
            feature_abs_pointer: false,
            feature_raw_pointer: false,
            feature_multi_touch: false,
            width: None,
            height: None,
            multi_touch_width: None,
            multi_touch_height: None,
            multi_touch_num_contacts: None,
        }
    }
}

/// A config line that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{device} spec: {reason}")]
pub struct ConfigError {
    pub device: &'static str,
    pub reason: String,
}

fn err(device: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        device,
        reason: reason.into(),
    }
}

/// Split `key=value`; keys compare case-insensitively as xl's MATCH_OPTION does not,
/// but values keep their case.
fn key_value(token: &str) -> Option<(&str, &str)> {
    let (k, v) = token.split_once('=')?;
    Some((k.trim(), v.trim()))
}

fn parse_u32(device: &'static str, key: &str, value: &str) -> Result<u32, ConfigError> {
    // xl uses strtoul(…, 0): accept hex with 0x as well.
    let parsed = if let Some(hex) = value.strip_prefix("0x") {
        u32::from_str_radix(hex, 16)
    } else {
        value.parse::<u32>()
    };
    parsed.map_err(|_| err(device, format!("{key}: '{value}' is not a number")))
}

fn parse_backend(device: &'static str, value: &str) -> Result<DomId, ConfigError> {
    match value {
        "Domain-0" | "dom0" => Ok(0),
        _ => value.parse::<DomId>().map_err(|_| {
            err(
                device,
                format!("backend '{value}': only domain ids (or Domain-0) are supported"),
            )
        }),
    }
}

fn parse_bool(device: &'static str, key: &str, value: &str) -> Result<bool, ConfigError> {
    Ok(parse_u32(device, key, value)? != 0)
}

/// Parse a `WxH` resolution.
pub fn parse_resolution(value: &str) -> Option<(u32, u32)> {
    let (w, h) = value.trim().split_once('x')?;
    let w: u32 = w.parse().ok()?;
    let h: u32 = h.parse().ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

impl DisplayConfig {
    /// Parse one `vdispl=` entry.
    pub fn parse(spec: &str) -> Result<DisplayConfig, ConfigError> {
        const D: &str = "vdispl";
        let mut cfg = DisplayConfig {
            backend: 0,
            be_alloc: false,
            connectors: Vec::new(),
        };
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) =
                key_value(token).ok_or_else(|| err(D, format!("'{token}' is not key=value")))?;
            match key {
                "backend" => cfg.backend = parse_backend(D, value)?,
                "be-alloc" => cfg.be_alloc = parse_bool(D, key, value)?,
                "connectors" => {
                    for (i, conn) in value
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .enumerate()
                    {
                        let (id, res) = match conn.split_once(':') {
                            Some((id, res)) => (id.to_string(), res),
                            None => (format!("conn{i}"), conn),
                        };
                        let (width, height) = parse_resolution(res).ok_or_else(|| {
                            err(D, format!("connector '{conn}': resolution must be WxH"))
                        })?;
                        cfg.connectors.push(ConnectorConfig {
                            unique_id: id,
                            width,
                            height,
                        });
                    }
                }
                _ => return Err(err(D, format!("unknown key '{key}'"))),
            }
        }
        if cfg.connectors.is_empty() {
            return Err(err(D, "no connectors (connectors=WxH;…)"));
        }
        Ok(cfg)
    }
}

/// The sndif format names we accept, with the libxl IDL spellings as aliases.
const PCM_FORMATS: &[(&str, &str)] = &[
    ("s8", "s8"),
    ("u8", "u8"),
    ("s16_le", "s16_le"),
    ("s16_be", "s16_be"),
    ("u16_le", "u16_le"),
    ("u16_be", "u16_be"),
    ("s24_le", "s24_le"),
    ("s24_be", "s24_be"),
    ("u24_le", "u24_le"),
    ("u24_be", "u24_be"),
    ("s32_le", "s32_le"),
    ("s32_be", "s32_be"),
    ("u32_le", "u32_le"),
    ("u32_be", "u32_be"),
    ("float_le", "float_le"),
    ("f32_le", "float_le"),
    ("float_be", "float_be"),
    ("f32_be", "float_be"),
    ("float64_le", "float64_le"),
    ("f64_le", "float64_le"),
    ("float64_be", "float64_be"),
    ("f64_be", "float64_be"),
    ("iec958_subframe_le", "iec958_subframe_le"),
    ("iec958_subframe_be", "iec958_subframe_be"),
    ("mu_law", "mu_law"),
    ("a_law", "a_law"),
    ("ima_adpcm", "ima_adpcm"),
    ("mpeg", "mpeg"),
    ("gsm", "gsm"),
];

fn parse_format(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    PCM_FORMATS
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map(|(_, canon)| *canon)
}

impl PcmParams {
    /// Try `key=value` as a PCM parameter; `Ok(false)` if the key is not one.
    fn apply(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        const D: &str = "vsnd";
        match key {
            "sample-rates" => {
                self.sample_rates = value
                    .split(';')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|r| parse_u32(D, key, r))
                    .collect::<Result<_, _>>()?;
            }
            "sample-formats" => {
                self.sample_formats = value
                    .split(';')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(|f| {
                        parse_format(f)
                            .map(str::to_string)
                            .ok_or_else(|| err(D, format!("unknown sample format '{f}'")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "channels-min" => self.channels_min = Some(parse_u32(D, key, value)?),
            "channels-max" => self.channels_max = Some(parse_u32(D, key, value)?),
            "buffer-size" => self.buffer_size = Some(parse_u32(D, key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Split a vsnd card spec into its items: either xl.cfg's quoted list or
/// items separated by `|`.
fn vsnd_items(spec: &str) -> Vec<String> {
    let trimmed = spec.trim();
    if trimmed.contains('\'') || trimmed.contains('"') {
        let mut items = Vec::new();
        let mut current: Option<(char, String)> = None;
        for c in trimmed.chars() {
            match &mut current {
                Some((quote, text)) if c == *quote => {
                    items.push(std::mem::take(text));
                    current = None;
                }
                Some((_, text)) => text.push(c),
                None if c == '\'' || c == '"' => current = Some((c, String::new())),
                None => {}
            }
        }
        items
    } else {
        trimmed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split('|')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl SoundCardConfig {
    /// Parse one card of `vsnd=`.
    pub fn parse(spec: &str) -> Result<SoundCardConfig, ConfigError> {
        const D: &str = "vsnd";
        let mut card = SoundCardConfig {
            backend: 0,
            short_name: None,
            long_name: None,
            params: PcmParams::default(),
            pcms: Vec::new(),
        };
        for item in vsnd_items(spec) {
            let mut tokens = item.split(',').map(str::trim).filter(|t| !t.is_empty());
            let kind = tokens.next().unwrap_or_default().to_ascii_lowercase();
            match kind.as_str() {
                "card" => {}
                "pcm" => card.pcms.push(PcmDeviceConfig::default()),
                "stream" => {
                    if card.pcms.is_empty() {
                        card.pcms.push(PcmDeviceConfig::default());
                    }
                    let pcm = card.pcms.last_mut().ok_or_else(|| err(D, "no pcm"))?;
                    pcm.streams.push(StreamConfig {
                        // Replaced below once the whole card is known.
                        unique_id: "#".to_string(),
                        stream_type: StreamType::Playback,
                        params: PcmParams::default(),
                    });
                }
                other => {
                    return Err(err(
                        D,
                        format!("item must start with card, pcm or stream, not '{other}'"),
                    ))
                }
            }
            for token in tokens {
                let (key, value) = key_value(token)
                    .ok_or_else(|| err(D, format!("'{token}' is not key=value")))?;
                match kind.as_str() {
                    "card" => {
                        if card.params.apply(key, value)? {
                            continue;
                        }
                        match key {
                            "backend" => card.backend = parse_backend(D, value)?,
                            "short-name" => card.short_name = Some(value.to_string()),
                            "long-name" => card.long_name = Some(value.to_string()),
                            _ => return Err(err(D, format!("card: unknown key '{key}'"))),
                        }
                    }
                    "pcm" => {
                        let pcm = card.pcms.last_mut().ok_or_else(|| err(D, "no pcm"))?;
                        if pcm.params.apply(key, value)? {
                            continue;
                        }
                        match key {
                            "name" => pcm.name = Some(value.to_string()),
                            _ => return Err(err(D, format!("pcm: unknown key '{key}'"))),
                        }
                    }
                    _ => {
                        let stream = card
                            .pcms
                            .last_mut()
                            .and_then(|p| p.streams.last_mut())
                            .ok_or_else(|| err(D, "no stream"))?;
                        if stream.params.apply(key, value)? {
                            continue;
                        }
                        match key {
                            "unique-id" | "id" => stream.unique_id = value.to_string(),
                            "type" => {
                                stream.stream_type = match value.to_ascii_lowercase().as_str() {
                                    "p" | "playback" => StreamType::Playback,
                                    "c" | "capture" => StreamType::Capture,
                                    _ => {
                                        return Err(err(
                                            D,
                                            format!("stream type '{value}': use p or c"),
                                        ))
                                    }
                                }
                            }
                            _ => return Err(err(D, format!("stream: unknown key '{key}'"))),
                        }
                    }
                }
            }
        }
        if card.pcms.iter().all(|p| p.streams.is_empty()) {
            return Err(err(D, "a card needs at least one stream"));
        }
        // Default unique ids must be unique across the card.
        let mut n = 0;
        for pcm in &mut card.pcms {
            for stream in &mut pcm.streams {
                if stream.unique_id == "#" {
                    stream.unique_id = format!("stream{n}");
                }
                n += 1;
            }
        }
        Ok(card)
    }

    /// All streams in the order snd-xen-front numbers them (device by
    /// device, stream node by stream node), with their device index.
    pub fn streams(&self) -> impl Iterator<Item = (usize, usize, &StreamConfig)> {
        self.pcms.iter().enumerate().flat_map(|(d, pcm)| {
            pcm.streams
                .iter()
                .enumerate()
                .map(move |(s, st)| (d, s, st))
        })
    }
}

impl InputConfig {
    /// Parse one `vkb=` entry (an empty spec gives libxl's defaults).
    pub fn parse(spec: &str) -> Result<InputConfig, ConfigError> {
        const D: &str = "vkb";
        let mut cfg = InputConfig::default();
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) =
                key_value(token).ok_or_else(|| err(D, format!("'{token}' is not key=value")))?;
            match key {
                "backend" => cfg.backend = parse_backend(D, value)?,
                "backend-type" => {
                    cfg.backend_type = match value {
                        "qemu" => InputBackendType::Qemu,
                        "linux" => InputBackendType::Linux,
                        _ => {
                            return Err(err(
                                D,
                                format!("backend-type '{value}': use qemu or linux"),
                            ))
                        }
                    }
                }
                "unique-id" => cfg.unique_id = Some(value.to_string()),
                "feature-disable-keyboard" => {
                    cfg.feature_disable_keyboard = parse_bool(D, key, value)?
                }
                "feature-disable-pointer" => {
                    cfg.feature_disable_pointer = parse_bool(D, key, value)?
                }
                "feature-abs-pointer" => cfg.feature_abs_pointer = parse_bool(D, key, value)?,
                "feature-raw-pointer" => cfg.feature_raw_pointer = parse_bool(D, key, value)?,
                "feature-multi-touch" => cfg.feature_multi_touch = parse_bool(D, key, value)?,
                "width" => cfg.width = Some(parse_u32(D, key, value)?),
                "height" => cfg.height = Some(parse_u32(D, key, value)?),
                "multi-touch-width" => cfg.multi_touch_width = Some(parse_u32(D, key, value)?),
                "multi-touch-height" => cfg.multi_touch_height = Some(parse_u32(D, key, value)?),
                "multi-touch-num-contacts" => {
                    cfg.multi_touch_num_contacts = Some(parse_u32(D, key, value)?)
                }
                _ => return Err(err(D, format!("unknown key '{key}'"))),
            }
        }
        // As xl does: any multi-touch geometry turns the feature on, and the
        // feature needs a geometry.
        if cfg.multi_touch_width.is_some()
            || cfg.multi_touch_height.is_some()
            || cfg.multi_touch_num_contacts.is_some()
        {
            cfg.feature_multi_touch = true;
        }
        if cfg.feature_multi_touch
            && cfg.multi_touch_width.is_none()
            && cfg.multi_touch_height.is_none()
            && cfg.multi_touch_num_contacts.is_none()
        {
            return Err(err(
                D,
                "multi-touch-width, multi-touch-height, multi-touch-num-contacts should be set for multi touch",
            ));
        }
        Ok(cfg)
    }

    /// The backend directory kind libxl uses for this vkb.
    pub fn backend_kind(&self) -> &'static str {
        match self.backend_type {
            InputBackendType::Qemu => "vkbd",
            InputBackendType::Linux => "vinput",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdispl_with_and_without_ids() {
        let d = DisplayConfig::parse("backend=0,be-alloc=1,connectors=1280x720;right:1920x1080")
            .unwrap();
        assert_eq!(d.backend, 0);
        assert!(d.be_alloc);
        assert_eq!(
            d.connectors,
            vec![
                ConnectorConfig {
                    unique_id: "conn0".into(),
                    width: 1280,
                    height: 720
                },
                ConnectorConfig {
                    unique_id: "right".into(),
                    width: 1920,
                    height: 1080
                },
            ]
        );
        assert!(DisplayConfig::parse("connectors=12x").is_err());
        assert!(DisplayConfig::parse("be-alloc=0").is_err());
        assert!(DisplayConfig::parse("colour=blue,connectors=1x1").is_err());
    }

    #[test]
    fn vsnd_card_tree_in_xl_syntax() {
        let c = SoundCardConfig::parse(
            "[ 'card, backend=0, short-name=Card, sample-rates=44100;48000, sample-formats=s16_le;f32_le, buffer-size=65536', \
               'pcm, name=dev0, channels-max=2', 'stream, unique-id=pb, type=p', 'stream, type=c, channels-min=1, channels-max=1', \
               'pcm, name=dev1', 'stream, type=p, sample-rates=8000' ]",
        )
        .unwrap();
        assert_eq!(c.short_name.as_deref(), Some("Card"));
        assert_eq!(c.params.sample_rates, vec![44100, 48000]);
        assert_eq!(c.params.sample_formats, vec!["s16_le", "float_le"]);
        assert_eq!(c.params.buffer_size, Some(65536));
        assert_eq!(c.pcms.len(), 2);
        assert_eq!(c.pcms[0].params.channels_max, Some(2));
        assert_eq!(c.pcms[0].streams[0].unique_id, "pb");
        assert_eq!(c.pcms[0].streams[1].stream_type, StreamType::Capture);
        assert_eq!(c.pcms[0].streams[1].params.channels_min, Some(1));
        assert_eq!(c.pcms[1].streams[0].params.sample_rates, vec![8000]);
        // Generated ids are unique across the card.
        assert_eq!(c.pcms[0].streams[1].unique_id, "stream1");
        assert_eq!(c.pcms[1].streams[0].unique_id, "stream2");
        let order: Vec<_> = c.streams().map(|(d, s, _)| (d, s)).collect();
        assert_eq!(order, vec![(0, 0), (0, 1), (1, 0)]);
    }

    #[test]
    fn vsnd_pipe_syntax_and_errors() {
        let c = SoundCardConfig::parse("card, sample-rates=48000 | stream, type=p").unwrap();
        assert_eq!(c.pcms.len(), 1);
        assert!(SoundCardConfig::parse("card, sample-formats=s17").is_err());
        assert!(SoundCardConfig::parse("card").is_err());
        assert!(SoundCardConfig::parse("stream, type=x").is_err());
    }

    #[test]
    fn vkb_defaults_and_multitouch_rules() {
        let v = InputConfig::parse("").unwrap();
        assert_eq!(v.backend_kind(), "vkbd");
        let v = InputConfig::parse("backend-type=linux, feature-abs-pointer=1, width=1920, height=1080, multi-touch-num-contacts=2")
            .unwrap();
        assert_eq!(v.backend_kind(), "vinput");
        assert!(v.feature_abs_pointer && v.feature_multi_touch);
        assert_eq!((v.width, v.height), (Some(1920), Some(1080)));
        assert!(InputConfig::parse("feature-multi-touch=1").is_err());
    }
}
