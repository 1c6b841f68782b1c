//! Xenstore key names and value parsers for displif, sndif, kbdif and the
//! generic XenBus nodes.
//!
//! Two kinds of parser live here: strict ones ([`parse_u32`],
//! [`parse_resolution`], …) for the backend reading what a guest wrote,
//! and `*_like_linux` ones that reproduce exactly what the Linux frontends
//! make of a value (kernel `sscanf` semantics), for code that must predict
//! a Linux guest's behaviour — the sndif configuration tree and the guest
//! simulator.

use crate::GrantRef;
use std::collections::BTreeMap;

/// Read access to a snapshot of the store (paths are absolute), for the
/// pure configuration readers here and in [`crate::sndif_config`].
pub trait StoreRead {
    fn read(&self, path: &str) -> Option<String>;
    /// True if the node exists (has a value or children), as
    /// `xenbus_exists` reports it.
    fn exists(&self, path: &str) -> bool;
}

impl StoreRead for BTreeMap<String, String> {
    fn read(&self, path: &str) -> Option<String> {
        self.get(path).cloned()
    }

    fn exists(&self, path: &str) -> bool {
        if self.contains_key(path) {
            return true;
        }
        let prefix = format!("{path}/");
        self.range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

/// Generic XenBus nodes (not protocol specific).
pub mod xenbus {
    pub const STATE: &str = "state";
    pub const FRONTEND: &str = "frontend";
    pub const FRONTEND_ID: &str = "frontend-id";
    pub const BACKEND: &str = "backend";
    pub const BACKEND_ID: &str = "backend-id";
    pub const ONLINE: &str = "online";
}

/// displif keys (`XENDISPL_FIELD_*`). Per connector:
/// `/local/domain/<dom>/device/vdispl/<dev>/<conn-idx>/...`.
pub mod displif {
    pub use crate::abi::displif::{
        XENDISPL_DRIVER_NAME as DRIVER_NAME, XENDISPL_FIELD_BE_ALLOC as BE_ALLOC,
        XENDISPL_FIELD_BE_VERSIONS as BE_VERSIONS, XENDISPL_FIELD_EVT_CHANNEL as EVT_CHANNEL,
        XENDISPL_FIELD_EVT_RING_REF as EVT_RING_REF, XENDISPL_FIELD_FE_VERSION as FE_VERSION,
        XENDISPL_FIELD_REQ_CHANNEL as REQ_CHANNEL, XENDISPL_FIELD_REQ_RING_REF as REQ_RING_REF,
        XENDISPL_FIELD_RESOLUTION as RESOLUTION, XENDISPL_FIELD_UNIQUE_ID as UNIQUE_ID,
    };

    /// xen-drm-front reads at most this many connectors (its
    /// `XEN_DRM_FRONT_MAX_CRTCS`) and stops at the first one without a
    /// valid `resolution`. displif.h itself has no `max-connectors` key.
    pub const LINUX_MAX_CONNECTORS: u32 = 4;

    /// `<frontend>/<conn-idx>`
    pub fn connector_path(frontend: &str, index: u32) -> String {
        format!("{frontend}/{index}")
    }

    /// One connector of a vdispl device.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConnectorConfig {
        pub index: u32,
        pub path: String,
        pub resolution: super::Resolution,
        pub unique_id: Option<String>,
    }

    /// A vdispl device's configuration as the frontend sees it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DisplConfig {
        pub be_alloc: bool,
        pub connectors: Vec<ConnectorConfig>,
    }

    /// No connector has a usable `resolution`.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "no connector configured at {path} (expected {path}/0/resolution = \"<width>x<height>\")"
    )]
    pub struct NoConnectors {
        pub path: String,
    }

    /// Reads connectors the way xen-drm-front does: `0`, `1`, … up to
    /// [`LINUX_MAX_CONNECTORS`], stopping at the first one without a valid
    /// `resolution`; none at all is an error. `be-alloc` is any non-zero
    /// number. One deliberate difference: Linux scans `resolution` with
    /// `%dx%d` and would take "800" as 800x0; this reader requires both
    /// numbers ([`super::parse_resolution`]).
    pub fn read_config(
        store: &impl super::StoreRead,
        frontend: &str,
    ) -> Result<DisplConfig, NoConnectors> {
        let be_alloc =
            super::flag_like_linux(store.read(&format!("{frontend}/{BE_ALLOC}")).as_deref());
        let mut connectors = Vec::new();
        for index in 0..LINUX_MAX_CONNECTORS {
            let path = connector_path(frontend, index);
            let Some(resolution) = store
                .read(&format!("{path}/{RESOLUTION}"))
                .and_then(|v| super::parse_resolution(&v).ok())
            else {
                break;
            };
            let unique_id = store.read(&format!("{path}/{UNIQUE_ID}"));
            connectors.push(ConnectorConfig {
                index,
                path,
                resolution,
                unique_id,
            });
        }
        if connectors.is_empty() {
            return Err(NoConnectors {
                path: frontend.to_owned(),
            });
        }
        Ok(DisplConfig {
            be_alloc,
            connectors,
        })
    }

    /// A connector's two rings as its frontend published them.
    pub fn read_transport(
        store: &impl super::StoreRead,
        connector: &str,
    ) -> Result<super::RingPair, super::TransportError> {
        super::read_ring_pair(
            store,
            connector,
            [REQ_RING_REF, REQ_CHANNEL, EVT_RING_REF, EVT_CHANNEL],
        )
    }
}

/// sndif keys (`XENSND_FIELD_*`). Note the request ring of a stream is
/// `ring-ref` / `event-channel` (no `req-` prefix, unlike displif).
pub mod sndif {
    pub use crate::abi::sndif::{
        XENSND_DRIVER_NAME as DRIVER_NAME, XENSND_FIELD_BE_VERSIONS as BE_VERSIONS,
        XENSND_FIELD_BUFFER_SIZE as BUFFER_SIZE, XENSND_FIELD_CHANNELS_MAX as CHANNELS_MAX,
        XENSND_FIELD_CHANNELS_MIN as CHANNELS_MIN, XENSND_FIELD_DEVICE_NAME as DEVICE_NAME,
        XENSND_FIELD_EVT_CHNL as EVENT_CHANNEL, XENSND_FIELD_EVT_EVT_CHNL as EVT_EVENT_CHANNEL,
        XENSND_FIELD_EVT_RING_REF as EVT_RING_REF, XENSND_FIELD_FE_VERSION as FE_VERSION,
        XENSND_FIELD_RING_REF as RING_REF, XENSND_FIELD_SAMPLE_FORMATS as SAMPLE_FORMATS,
        XENSND_FIELD_SAMPLE_RATES as SAMPLE_RATES, XENSND_FIELD_STREAM_UNIQUE_ID as UNIQUE_ID,
        XENSND_FIELD_TYPE as TYPE, XENSND_FIELD_VCARD_LONG_NAME as LONG_NAME,
        XENSND_FIELD_VCARD_SHORT_NAME as SHORT_NAME,
    };

    /// `<card>/<dev-idx>`
    pub fn device_path(card: &str, device: u32) -> String {
        format!("{card}/{device}")
    }

    /// `<card>/<dev-idx>/<stream-idx>`
    pub fn stream_path(card: &str, device: u32, stream: u32) -> String {
        format!("{card}/{device}/{stream}")
    }

    /// A stream's two rings as its frontend published them (`ring-ref`,
    /// `event-channel`, `evt-ring-ref`, `evt-event-channel`).
    pub fn read_transport(
        store: &impl super::StoreRead,
        stream: &str,
    ) -> Result<super::RingPair, super::TransportError> {
        super::read_ring_pair(
            store,
            stream,
            [RING_REF, EVENT_CHANNEL, EVT_RING_REF, EVT_EVENT_CHANNEL],
        )
    }
}

/// kbdif keys (`XENKBD_FIELD_*`). `feature-*`, `width`/`height` and
/// `multi-touch-*` live in the backend directory; `request-*`, `page-gref`,
/// `page-ref` and `event-channel` in the frontend's.
pub mod kbdif {
    pub use crate::abi::kbdif::{
        XENKBD_DRIVER_NAME as DRIVER_NAME, XENKBD_FIELD_EVT_CHANNEL as EVENT_CHANNEL,
        XENKBD_FIELD_FEAT_ABS_POINTER as FEATURE_ABS_POINTER,
        XENKBD_FIELD_FEAT_DSBL_KEYBRD as FEATURE_DISABLE_KEYBOARD,
        XENKBD_FIELD_FEAT_DSBL_POINTER as FEATURE_DISABLE_POINTER,
        XENKBD_FIELD_FEAT_MTOUCH as FEATURE_MULTI_TOUCH,
        XENKBD_FIELD_FEAT_RAW_POINTER as FEATURE_RAW_POINTER, XENKBD_FIELD_HEIGHT as HEIGHT,
        XENKBD_FIELD_MT_HEIGHT as MT_HEIGHT, XENKBD_FIELD_MT_NUM_CONTACTS as MT_NUM_CONTACTS,
        XENKBD_FIELD_MT_WIDTH as MT_WIDTH, XENKBD_FIELD_REQ_ABS_POINTER as REQUEST_ABS_POINTER,
        XENKBD_FIELD_REQ_MTOUCH as REQUEST_MULTI_TOUCH,
        XENKBD_FIELD_REQ_RAW_POINTER as REQUEST_RAW_POINTER, XENKBD_FIELD_RING_GREF as PAGE_GREF,
        XENKBD_FIELD_RING_REF as PAGE_REF, XENKBD_FIELD_UNIQUE_ID as UNIQUE_ID,
        XENKBD_FIELD_WIDTH as WIDTH,
    };

    /// Range of raw (unscaled) absolute coordinates (`feature-raw-pointer`).
    pub const RAW_POINTER_MAX: i32 = 0x7fff;

    /// What a kbdif frontend published: its shared page and event channel,
    /// and which features it requested (Linux writes "1" for each).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FrontendRequest {
        pub page_gref: crate::GrantRef,
        pub event_channel: u32,
        pub abs_pointer: bool,
        pub multi_touch: bool,
        pub raw_pointer: bool,
    }

    /// Reads `page-gref`, `event-channel` and the `request-*` flags from the
    /// frontend directory. The obsolete `page-ref` (a PFN) is not used: a
    /// backend maps grants.
    pub fn read_frontend(
        store: &impl super::StoreRead,
        frontend: &str,
    ) -> Result<FrontendRequest, super::TransportError> {
        let flag =
            |k: &str| super::flag_like_linux(store.read(&format!("{frontend}/{k}")).as_deref());
        Ok(FrontendRequest {
            page_gref: super::required(store, frontend, PAGE_GREF, super::parse_grant_ref)?,
            event_channel: super::required(
                store,
                frontend,
                EVENT_CHANNEL,
                super::parse_event_channel,
            )?,
            abs_pointer: flag(REQUEST_ABS_POINTER),
            multi_touch: flag(REQUEST_MULTI_TOUCH),
            raw_pointer: flag(REQUEST_RAW_POINTER),
        })
    }

    /// What a kbdif backend advertises in its own directory before
    /// InitWait (xen-kbdfront reads these at probe time).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct BackendFeatures {
        pub abs_pointer: bool,
        pub raw_pointer: bool,
        pub disable_keyboard: bool,
        pub disable_pointer: bool,
        /// `width`/`height`: the absolute pointer range.
        pub size: Option<(u32, u32)>,
        /// `multi-touch-width`, `-height`, `-num-contacts`.
        pub multi_touch: Option<(u32, u32, u32)>,
        pub unique_id: Option<String>,
    }

    impl BackendFeatures {
        /// The nodes to write, relative to the backend directory. Features
        /// that are off are written as "0" so a stale "1" cannot survive.
        ///
        /// Parameters come before the features that use them: xen-kbdfront
        /// may probe between two writes, and a guest that saw
        /// `feature-abs-pointer=1` before `width`/`height` would scale every
        /// position by its 800×600 default (seen: a click at 400,300 drew the
        /// cursor at 640,360). Seeing the feature still off is harmless: the
        /// guest does not request it and gets relative motion.
        pub fn nodes(&self) -> Vec<(&'static str, String)> {
            let f = |on: bool| super::flag_value(on).to_string();
            let mut out = Vec::new();
            if let Some((w, h)) = self.size {
                out.push((WIDTH, w.to_string()));
                out.push((HEIGHT, h.to_string()));
            }
            if let Some((w, h, n)) = self.multi_touch {
                out.push((MT_WIDTH, w.to_string()));
                out.push((MT_HEIGHT, h.to_string()));
                out.push((MT_NUM_CONTACTS, n.to_string()));
            }
            out.extend([
                (FEATURE_DISABLE_KEYBOARD, f(self.disable_keyboard)),
                (FEATURE_DISABLE_POINTER, f(self.disable_pointer)),
                (FEATURE_RAW_POINTER, f(self.raw_pointer)),
                (FEATURE_MULTI_TOUCH, f(self.multi_touch.is_some())),
                (FEATURE_ABS_POINTER, f(self.abs_pointer)),
            ]);
            if let Some(id) = &self.unique_id {
                out.push((UNIQUE_ID, id.clone()));
            }
            out
        }
    }
}

/// The request ring and event page of a displif connector or sndif stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPair {
    pub req_ring_ref: GrantRef,
    pub req_event_channel: u32,
    pub evt_ring_ref: GrantRef,
    pub evt_event_channel: u32,
}

/// A transport node the backend needs is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("{path} is missing")]
    Missing { path: String },
    #[error("{path}: {source}")]
    Bad {
        path: String,
        #[source]
        source: KeyError,
    },
}

fn required<T>(
    store: &impl StoreRead,
    dir: &str,
    key: &'static str,
    parse: fn(&'static str, &str) -> Result<T, KeyError>,
) -> Result<T, TransportError> {
    let path = format!("{dir}/{key}");
    let value = store
        .read(&path)
        .ok_or_else(|| TransportError::Missing { path: path.clone() })?;
    parse(key, &value).map_err(|source| TransportError::Bad { path, source })
}

fn read_ring_pair(
    store: &impl StoreRead,
    dir: &str,
    keys: [&'static str; 4],
) -> Result<RingPair, TransportError> {
    let [req_ring, req_chan, evt_ring, evt_chan] = keys;
    Ok(RingPair {
        req_ring_ref: required(store, dir, req_ring, parse_grant_ref)?,
        req_event_channel: required(store, dir, req_chan, parse_event_channel)?,
        evt_ring_ref: required(store, dir, evt_ring, parse_grant_ref)?,
        evt_event_channel: required(store, dir, evt_chan, parse_event_channel)?,
    })
}

/// A xenstore value the backend cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{key} = {value:?}: not a decimal number that fits in {bits} bits")]
    NotANumber {
        key: &'static str,
        value: String,
        bits: u32,
    },
    #[error("{key} = {value:?}: expected <width>x<height>, both positive")]
    BadResolution { key: &'static str, value: String },
    #[error("{key} = {value:?}: grant reference 0 is never valid for a PV driver")]
    ZeroGrantRef { key: &'static str, value: String },
    #[error("{key} = {value:?}: expected \"p\" or \"c\"")]
    BadStreamType { key: &'static str, value: String },
}

/// Strict unsigned decimal (`<uint32_t>` nodes): digits only, surrounding
/// whitespace tolerated.
pub fn parse_u32(key: &'static str, value: &str) -> Result<u32, KeyError> {
    let t = value.trim();
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(KeyError::NotANumber {
            key,
            value: value.to_owned(),
            bits: 32,
        });
    }
    t.parse::<u32>().map_err(|_| KeyError::NotANumber {
        key,
        value: value.to_owned(),
        bits: 32,
    })
}

/// A grant reference node (`req-ring-ref`, `ring-ref`, `evt-ring-ref`,
/// `page-gref`): a non-zero u32.
pub fn parse_grant_ref(key: &'static str, value: &str) -> Result<GrantRef, KeyError> {
    match parse_u32(key, value)? {
        0 => Err(KeyError::ZeroGrantRef {
            key,
            value: value.to_owned(),
        }),
        r => Ok(r),
    }
}

/// An event channel port node (`req-event-channel`, `event-channel`, …).
pub fn parse_event_channel(key: &'static str, value: &str) -> Result<u32, KeyError> {
    parse_u32(key, value)
}

/// displif `resolution` = `"<width>x<height>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// Strict `WxH`: both decimal, positive, and at most `i32::MAX` because
/// xen-drm-front scans them with `%d`.
pub fn parse_resolution(value: &str) -> Result<Resolution, KeyError> {
    let bad = || KeyError::BadResolution {
        key: displif::RESOLUTION,
        value: value.to_owned(),
    };
    let (w, h) = value
        .trim()
        .split_once(crate::abi::displif::XENDISPL_RESOLUTION_SEPARATOR)
        .ok_or_else(bad)?;
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let v = s.parse::<u32>().ok()?;
        (v > 0 && v <= i32::MAX as u32).then_some(v)
    };
    Ok(Resolution {
        width: num(w).ok_or_else(bad)?,
        height: num(h).ok_or_else(bad)?,
    })
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A "0"/"1" feature or request flag as Linux reads it
/// (`xenbus_read_unsigned(..., 0) != 0`): absent or unparsable is false,
/// any non-zero number is true.
pub fn flag_like_linux(value: Option<&str>) -> bool {
    read_unsigned_like_linux(value, 0) != 0
}

/// The value to write for a flag.
pub fn flag_value(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// displif `be-alloc`, as xen-drm-front reads it.
pub fn be_alloc_like_linux(value: Option<&str>) -> bool {
    flag_like_linux(value)
}

/// Linux `xenbus_read_unsigned(dir, node, default)`: `%u`, or `default` if
/// the node is absent or does not start with a number.
pub fn read_unsigned_like_linux(value: Option<&str>, default: u32) -> u32 {
    value.and_then(scan_uint_like_linux).unwrap_or(default)
}

fn skip_kernel_spaces(s: &str) -> &str {
    // The kernel's isspace(): space, \t \n \v \f \r.
    s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
}

fn scan_digits(s: &str) -> Option<u64> {
    let digits: Vec<u64> = s
        .bytes()
        .take_while(u8::is_ascii_digit)
        .map(|c| u64::from(c - b'0'))
        .collect();
    if digits.is_empty() {
        return None;
    }
    // The kernel keeps multiplying in 64 bits on overflow (it only flags
    // it), then stores the low bits.
    Some(
        digits
            .into_iter()
            .fold(0u64, |acc, d| acc.wrapping_mul(10).wrapping_add(d)),
    )
}

/// Kernel `sscanf(s, "%u")`: leading whitespace skipped, no sign accepted,
/// trailing garbage ignored, the 64-bit result truncated to 32 bits.
pub fn scan_uint_like_linux(s: &str) -> Option<u32> {
    scan_digits(skip_kernel_spaces(s)).map(|v| v as u32)
}

/// Kernel `sscanf(s, "%d")`: as [`scan_uint_like_linux`] with an optional
/// leading `-`.
pub fn scan_int_like_linux(s: &str) -> Option<i32> {
    let s = skip_kernel_spaces(s);
    match s.strip_prefix('-') {
        Some(rest) => scan_digits(rest).map(|v| (v as i64).wrapping_neg() as i32),
        None => scan_digits(s).map(|v| v as i32),
    }
}

/// C `strncasecmp(a, b, n) == 0` for ASCII strings.
pub fn strncasecmp_eq(a: &str, b: &str, n: usize) -> bool {
    let a = a.bytes().take(n).map(|c| c.to_ascii_lowercase());
    let b = b.bytes().take(n).map(|c| c.to_ascii_lowercase());
    a.eq(b)
}

/// sndif stream `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    Playback,
    Capture,
}

impl StreamType {
    pub const fn value(self) -> &'static str {
        match self {
            StreamType::Playback => crate::abi::sndif::XENSND_STREAM_TYPE_PLAYBACK,
            StreamType::Capture => crate::abi::sndif::XENSND_STREAM_TYPE_CAPTURE,
        }
    }
}

/// `type` as snd-xen-front matches it: `"p"` or `"c"`, case-insensitive,
/// nothing else (it compares `sizeof("p")` = 2 bytes, the NUL included).
pub fn parse_stream_type(value: &str) -> Result<StreamType, KeyError> {
    if strncasecmp_eq(value, StreamType::Playback.value(), 2) {
        Ok(StreamType::Playback)
    } else if strncasecmp_eq(value, StreamType::Capture.value(), 2) {
        Ok(StreamType::Capture)
    } else {
        Err(KeyError::BadStreamType {
            key: sndif::TYPE,
            value: value.to_owned(),
        })
    }
}

/// A `versions` list ("1,2"): the numbers in it, garbage items skipped.
pub fn parse_versions(value: &str) -> Vec<u32> {
    value
        .split(crate::abi::displif::XENDISPL_LIST_SEPARATOR)
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}
