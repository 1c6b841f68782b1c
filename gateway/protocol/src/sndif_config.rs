//! The sndif card → device → stream configuration tree, resolved exactly as
//! snd-xen-front (`sound/xen/xen_snd_front_cfg.c`) resolves it, so the
//! backend knows the hardware ranges the guest's ALSA will offer.
//!
//! Rules reproduced here (each has a test):
//! - The card starts from the driver defaults ([`PcmHw::linux_default`]):
//!   U8 and S16_LE, continuous rates 5512..=48000, 1..=2 channels, 64 KiB
//!   buffer; a device starts from the card's result, a stream from its
//!   device's.
//! - At each level `channels-min`, `channels-max` and `buffer-size`
//!   override only if they read as a non-zero `%u`; a missing or garbage
//!   value keeps the parent's.
//! - `sample-rates` / `sample-formats` override only if at least one listed
//!   item is known (rates from a fixed table 5512…192000, formats by
//!   xenstore name, both case-insensitive); unknown items are skipped. A
//!   rate list replaces the continuous range with exactly those rates.
//! - Then, at every level: `channels_min > channels_max` → `channels_min =
//!   channels_max` (so a level that only raises `channels-min` above the
//!   inherited max gets min = max); `rate_min > rate_max` → `rate_min =
//!   rate_max`; `period_bytes_max = buffer_bytes_max`; `periods_max =
//!   period_bytes_max / period_bytes_min`.
//! - Devices are `<card>/0`, `<card>/1`, … up to the first missing index
//!   (at most 8); none is an error. Streams likewise under each device (at
//!   most 8). Each stream must have `type` "p" or "c" (case-insensitive);
//!   anything else fails the whole card. Streams are numbered card-wide in
//!   order (that number picks the stream's event channel pair).

pub use crate::keys::StoreRead;
use crate::keys::{self, parse_stream_type, read_unsigned_like_linux, strncasecmp_eq, StreamType};
use crate::sndif::{mask_of, PcmFormat};

/// `SNDRV_PCM_DEVICES`: the most devices snd-xen-front looks for.
pub const MAX_DEVICES: u32 = 8;
/// `VSND_MAX_STREAM`: the most streams per device it looks for.
pub const MAX_STREAMS: u32 = 8;

/// Rates snd-xen-front understands in `sample-rates` (ALSA's fixed rates).
pub const KNOWN_RATES: [u32; 12] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 96000, 176400, 192000,
];

/// Which rates a level allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateSet {
    /// Any rate in `rate_min..=rate_max` (the driver default).
    Continuous,
    /// Exactly these rates (sorted, no duplicates).
    List(Vec<u32>),
}

/// The effective PCM hardware description of a level (the parts of
/// `struct snd_pcm_hardware` the configuration touches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcmHw {
    /// Mask of `1 << XENSND_PCM_FORMAT_*`.
    pub formats: u64,
    pub rates: RateSet,
    pub rate_min: u32,
    pub rate_max: u32,
    pub channels_min: u32,
    pub channels_max: u32,
    pub buffer_bytes_max: u32,
    pub period_bytes_min: u32,
    pub period_bytes_max: u32,
    pub periods_min: u32,
    pub periods_max: u32,
}

const MAX_BUFFER_SIZE: u32 = 64 * 1024;
const MIN_PERIOD_SIZE: u32 = 64;

impl PcmHw {
    /// snd-xen-front's `SND_DRV_PCM_HW_DEFAULT`.
    pub fn linux_default() -> PcmHw {
        PcmHw {
            formats: mask_of([PcmFormat::U8, PcmFormat::S16Le]),
            rates: RateSet::Continuous,
            rate_min: 5512,
            rate_max: 48000,
            channels_min: 1,
            channels_max: 2,
            buffer_bytes_max: MAX_BUFFER_SIZE,
            period_bytes_min: MIN_PERIOD_SIZE,
            period_bytes_max: MAX_BUFFER_SIZE,
            periods_min: 2,
            periods_max: MAX_BUFFER_SIZE / MIN_PERIOD_SIZE,
        }
    }

    /// The formats allowed.
    pub fn format_list(&self) -> Vec<PcmFormat> {
        crate::sndif::formats_in_mask(self.formats)
    }

    /// True if `rate` is allowed.
    pub fn allows_rate(&self, rate: u32) -> bool {
        match &self.rates {
            RateSet::Continuous => (self.rate_min..=self.rate_max).contains(&rate),
            RateSet::List(l) => l.contains(&rate),
        }
    }
}

/// One stream (`<card>/<dev>/<stream>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Index under its device.
    pub index: u32,
    /// Card-wide index, in order of appearance.
    pub card_index: u32,
    pub path: String,
    pub kind: StreamType,
    pub unique_id: Option<String>,
    pub pcm_hw: PcmHw,
}

/// One PCM device (`<card>/<dev>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub index: u32,
    pub path: String,
    pub name: Option<String>,
    pub pcm_hw: PcmHw,
    pub streams: Vec<StreamConfig>,
}

/// A resolved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardConfig {
    pub path: String,
    /// Optional in sndif.h; snd-xen-front does not read them.
    pub short_name: Option<String>,
    pub long_name: Option<String>,
    pub pcm_hw: PcmHw,
    pub devices: Vec<DeviceConfig>,
}

impl CardConfig {
    /// All streams, in card-wide order.
    pub fn streams(&self) -> impl Iterator<Item = &StreamConfig> {
        self.devices.iter().flat_map(|d| d.streams.iter())
    }
}

/// Why a card configuration is unusable (snd-xen-front would fail probe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SndConfigError {
    #[error("no PCM devices configured for sound card at {path} (expected {path}/0)")]
    NoDevices { path: String },
    #[error("stream {path} has no \"type\" node")]
    MissingStreamType { path: String },
    #[error("stream {path}: {source}")]
    BadStreamType {
        path: String,
        #[source]
        source: keys::KeyError,
    },
}

/// `sample-rates` as snd-xen-front reads it: known rates only (each item
/// compared case-insensitively with the table, up to
/// `XENSND_SAMPLE_RATE_MAX_LEN` characters), sorted, deduplicated. Empty if
/// none is known.
pub fn parse_sample_rates_like_linux(list: &str) -> Vec<u32> {
    let mut out: Vec<u32> = list
        .split(crate::abi::sndif::XENSND_LIST_SEPARATOR)
        .filter_map(|item| {
            KNOWN_RATES.into_iter().find(|r| {
                strncasecmp_eq(
                    item,
                    &r.to_string(),
                    crate::abi::sndif::XENSND_SAMPLE_RATE_MAX_LEN,
                )
            })
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `sample-formats` as snd-xen-front reads it: the mask of known names
/// (0 if none is known).
pub fn parse_sample_formats_like_linux(list: &str) -> u64 {
    mask_of(
        list.split(crate::abi::sndif::XENSND_LIST_SEPARATOR)
            .filter_map(PcmFormat::from_xenstore_name),
    )
}

/// `cfg_read_pcm_hw`: inherit `parent` (or the defaults) and apply the
/// overrides found at `path`.
pub fn read_pcm_hw(store: &impl StoreRead, path: &str, parent: Option<&PcmHw>) -> PcmHw {
    let mut hw = parent.cloned().unwrap_or_else(PcmHw::linux_default);
    let node = |key: &str| store.read(&format!("{path}/{key}"));

    let v = read_unsigned_like_linux(node(keys::sndif::CHANNELS_MIN).as_deref(), 0);
    if v != 0 {
        hw.channels_min = v;
    }
    let v = read_unsigned_like_linux(node(keys::sndif::CHANNELS_MAX).as_deref(), 0);
    if v != 0 {
        hw.channels_max = v;
    }
    if let Some(list) = node(keys::sndif::SAMPLE_RATES) {
        let rates = parse_sample_rates_like_linux(&list);
        if let (Some(&min), Some(&max)) = (rates.first(), rates.last()) {
            hw.rate_min = min;
            hw.rate_max = max;
            hw.rates = RateSet::List(rates);
        }
    }
    if let Some(list) = node(keys::sndif::SAMPLE_FORMATS) {
        let formats = parse_sample_formats_like_linux(&list);
        if formats != 0 {
            hw.formats = formats;
        }
    }
    let v = read_unsigned_like_linux(node(keys::sndif::BUFFER_SIZE).as_deref(), 0);
    if v != 0 {
        hw.buffer_bytes_max = v;
    }

    if hw.channels_min > hw.channels_max {
        hw.channels_min = hw.channels_max;
    }
    if hw.rate_min > hw.rate_max {
        hw.rate_min = hw.rate_max;
    }
    hw.period_bytes_max = hw.buffer_bytes_max;
    hw.periods_max = hw.period_bytes_max / hw.period_bytes_min.max(1);
    hw
}

fn count_children(store: &impl StoreRead, path: &str, max: u32) -> u32 {
    (0..max)
        .take_while(|i| store.exists(&format!("{path}/{i}")))
        .count() as u32
}

/// Resolves the whole card under `card_path`
/// (`/local/domain/<dom>/device/vsnd/<dev-id>`).
pub fn read_card(store: &impl StoreRead, card_path: &str) -> Result<CardConfig, SndConfigError> {
    let num_devices = count_children(store, card_path, MAX_DEVICES);
    if num_devices == 0 {
        return Err(SndConfigError::NoDevices {
            path: card_path.to_owned(),
        });
    }
    let card_hw = read_pcm_hw(store, card_path, None);
    let mut card_index = 0;
    let mut devices = Vec::new();
    for d in 0..num_devices {
        let dev_path = keys::sndif::device_path(card_path, d);
        let dev_hw = read_pcm_hw(store, &dev_path, Some(&card_hw));
        let num_streams = count_children(store, &dev_path, MAX_STREAMS);
        // snd-xen-front checks every stream's type before configuring any.
        let mut kinds = Vec::new();
        for s in 0..num_streams {
            let path = format!("{dev_path}/{s}");
            let value = store
                .read(&format!("{path}/{}", keys::sndif::TYPE))
                .ok_or_else(|| SndConfigError::MissingStreamType { path: path.clone() })?;
            let kind = parse_stream_type(&value)
                .map_err(|source| SndConfigError::BadStreamType { path, source })?;
            kinds.push(kind);
        }
        let mut streams = Vec::new();
        for (s, kind) in (0..num_streams).zip(kinds) {
            let path = format!("{dev_path}/{s}");
            streams.push(StreamConfig {
                index: s,
                card_index,
                unique_id: store.read(&format!("{path}/{}", keys::sndif::UNIQUE_ID)),
                pcm_hw: read_pcm_hw(store, &path, Some(&dev_hw)),
                path,
                kind,
            });
            card_index += 1;
        }
        devices.push(DeviceConfig {
            index: d,
            name: store.read(&format!("{dev_path}/{}", keys::sndif::DEVICE_NAME)),
            path: dev_path,
            pcm_hw: dev_hw,
            streams,
        });
    }
    Ok(CardConfig {
        path: card_path.to_owned(),
        short_name: store.read(&format!("{card_path}/{}", keys::sndif::SHORT_NAME)),
        long_name: store.read(&format!("{card_path}/{}", keys::sndif::LONG_NAME)),
        pcm_hw: card_hw,
        devices,
    })
}
