//! The host side of `wasm-plugins/wit/policy.wit`: bindgen-generated types
//! and `host` import, typed handles on the `policy` exports, and
//! conversions to and from our own types. Everything generated stays inside
//! the crate: the public API speaks `crate::types`.
//!
//! Why not `bindgen!` for the whole `plugin` world: the `policy` interface
//! uses a record named `guest`, and bindgen names its export wrapper struct
//! `Guest` too, in the same module, so the generated code does not compile.
//! So bindgen generates the `types` and `host` interfaces only, and the four
//! exported functions are looked up by name and called as `TypedFunc`s
//! (which type-check against the component just as bindgen's would).

use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};
use wasmtime::AsContextMut;

use crate::types as our;

wasmtime::component::bindgen!({
    path: "../../wasm-plugins/wit",
    interfaces: "
        import pvgate:policy/host@0.1.0;
        import pvgate:policy/types@0.1.0;
    ",
});

use pvgate::policy::types as wit;

/// What this host implements, as the component model names it.
pub const HOST_IMPORT: &str = "pvgate:policy/host@0.1.0";
pub const TYPES_IMPORT: &str = "pvgate:policy/types@0.1.0";
pub const POLICY_EXPORT: &str = "pvgate:policy/policy@0.1.0";
pub const WORLD: &str = "pvgate:policy/plugin@0.1.0";
pub const POLICY_FUNCTIONS: [&str; 4] = ["video", "audio", "admit", "adjust"];

/// Where the four functions sit in a component, found once per file.
#[derive(Clone)]
pub(crate) struct PolicyIndices {
    video: ComponentExportIndex,
    audio: ComponentExportIndex,
    admit: ComponentExportIndex,
    adjust: ComponentExportIndex,
}

impl PolicyIndices {
    pub fn new(component: &Component) -> Result<Self, String> {
        let (_, instance) = component
            .get_export(None, POLICY_EXPORT)
            .ok_or_else(|| format!("no export named `{POLICY_EXPORT}`"))?;
        let lookup = |name: &str| {
            component
                .get_export(Some(&instance), name)
                .map(|(_, i)| i)
                .ok_or_else(|| format!("`{POLICY_EXPORT}` has no function `{name}`"))
        };
        Ok(PolicyIndices {
            video: lookup("video")?,
            audio: lookup("audio")?,
            admit: lookup("admit")?,
            adjust: lookup("adjust")?,
        })
    }
}

/// Typed handles on one instance's exports.
pub(crate) struct PolicyFuncs {
    pub video: TypedFunc<(wit::Guest, wit::DisplayConnector), (wit::VideoPolicy,)>,
    pub audio: TypedFunc<(wit::Guest, wit::SoundStream), (wit::AudioPolicy,)>,
    pub admit: TypedFunc<(wit::Guest, wit::Viewer, wit::Clock), (wit::Admission,)>,
    #[allow(clippy::type_complexity)]
    pub adjust: TypedFunc<
        (
            wit::Guest,
            wit::DisplayConnector,
            wit::Viewer,
            wit::LinkStats,
        ),
        (Option<wit::Adjustment>,),
    >,
}

impl PolicyFuncs {
    /// Type-checks each export against the WIT; an error names the function.
    pub fn load(
        mut store: impl AsContextMut,
        instance: &Instance,
        idx: &PolicyIndices,
    ) -> wasmtime::Result<Self> {
        use wasmtime::error::Context as _;
        let mut store = store.as_context_mut();
        Ok(PolicyFuncs {
            video: instance
                .get_typed_func(&mut store, idx.video)
                .context("function `video`")?,
            audio: instance
                .get_typed_func(&mut store, idx.audio)
                .context("function `audio`")?,
            admit: instance
                .get_typed_func(&mut store, idx.admit)
                .context("function `admit`")?,
            adjust: instance
                .get_typed_func(&mut store, idx.adjust)
                .context("function `adjust`")?,
        })
    }
}

impl From<&our::Guest> for wit::Guest {
    fn from(g: &our::Guest) -> Self {
        wit::Guest {
            domid: g.domid,
            name: g.name.clone(),
            tenant: g.tenant.clone(),
            labels: g.labels.clone(),
        }
    }
}

impl From<our::Size> for wit::Size {
    fn from(s: our::Size) -> Self {
        wit::Size {
            width: s.width,
            height: s.height,
        }
    }
}

impl From<wit::Size> for our::Size {
    fn from(s: wit::Size) -> Self {
        our::Size {
            width: s.width,
            height: s.height,
        }
    }
}

impl From<&our::DisplayConnector> for wit::DisplayConnector {
    fn from(c: &our::DisplayConnector) -> Self {
        wit::DisplayConnector {
            index: c.index,
            resolution: c.resolution.into(),
        }
    }
}

/// One table for both directions, so a new format cannot be added to one
/// side only.
macro_rules! sample_formats {
    ($($v:ident),* $(,)?) => {
        impl From<our::SampleFormat> for wit::SampleFormat {
            fn from(f: our::SampleFormat) -> Self {
                match f { $(our::SampleFormat::$v => wit::SampleFormat::$v,)* }
            }
        }
        impl From<wit::SampleFormat> for our::SampleFormat {
            fn from(f: wit::SampleFormat) -> Self {
                match f { $(wit::SampleFormat::$v => our::SampleFormat::$v,)* }
            }
        }
    };
}

sample_formats!(
    S8,
    U8,
    S16Le,
    S16Be,
    U16Le,
    U16Be,
    S24Le,
    S24Be,
    U24Le,
    U24Be,
    S32Le,
    S32Be,
    U32Le,
    U32Be,
    FloatLe,
    FloatBe,
    Float64Le,
    Float64Be,
    Iec958SubframeLe,
    Iec958SubframeBe,
    MuLaw,
    ALaw,
    ImaAdpcm,
    Mpeg,
    Gsm,
);

impl From<&our::SoundStream> for wit::SoundStream {
    fn from(s: &our::SoundStream) -> Self {
        wit::SoundStream {
            unique_id: s.unique_id.clone(),
            direction: match s.direction {
                our::Direction::Playback => wit::Direction::Playback,
                our::Direction::Capture => wit::Direction::Capture,
            },
            formats: s.formats.iter().map(|&f| f.into()).collect(),
            rates: s.rates.clone(),
            channels_min: s.channels_min,
            channels_max: s.channels_max,
        }
    }
}

impl From<our::Role> for wit::Role {
    fn from(r: our::Role) -> Self {
        match r {
            our::Role::View => wit::Role::View,
            our::Role::Control => wit::Role::Control,
        }
    }
}

impl From<wit::Role> for our::Role {
    fn from(r: wit::Role) -> Self {
        match r {
            wit::Role::View => our::Role::View,
            wit::Role::Control => our::Role::Control,
        }
    }
}

impl From<&our::Viewer> for wit::Viewer {
    fn from(v: &our::Viewer) -> Self {
        wit::Viewer {
            tenant: v.tenant.clone(),
            user: v.user.clone(),
            role: v.role.into(),
            remote_address: v.remote_address.clone(),
        }
    }
}

impl From<our::Clock> for wit::Clock {
    fn from(c: our::Clock) -> Self {
        wit::Clock {
            unix_seconds: c.unix_seconds,
        }
    }
}

impl From<&our::LinkStats> for wit::LinkStats {
    fn from(s: &our::LinkStats) -> Self {
        wit::LinkStats {
            rtt_ms: s.rtt_ms,
            loss_permille: s.loss_permille,
            estimated_bps: s.estimated_bps,
            fps_achieved: s.fps_achieved,
        }
    }
}

impl From<wit::VideoPolicy> for our::VideoPolicy {
    fn from(v: wit::VideoPolicy) -> Self {
        our::VideoPolicy {
            codecs: v
                .codecs
                .into_iter()
                .map(|c| match c {
                    wit::Codec::H264 => our::Codec::H264,
                    wit::Codec::Vp8 => our::Codec::Vp8,
                })
                .collect(),
            min_bitrate_bps: v.min_bitrate_bps,
            max_bitrate_bps: v.max_bitrate_bps,
            max_fps: v.max_fps,
            max_size: v.max_size.into(),
            keyframe_interval_ms: v.keyframe_interval_ms,
            quality: match v.quality {
                wit::QualityMode::Screen => our::QualityMode::Screen,
                wit::QualityMode::Motion => our::QualityMode::Motion,
            },
        }
    }
}

impl From<wit::AudioPolicy> for our::AudioPolicy {
    fn from(a: wit::AudioPolicy) -> Self {
        our::AudioPolicy {
            formats: a.formats.into_iter().map(Into::into).collect(),
            rates: a.rates,
            channels_max: a.channels_max,
            opus_bitrate_bps: a.opus_bitrate_bps,
            capture_allowed: a.capture_allowed,
        }
    }
}

impl From<wit::Admission> for our::Admission {
    fn from(a: wit::Admission) -> Self {
        match a {
            wit::Admission::Allow(r) => our::Admission::Allow(r.into()),
            wit::Admission::Deny(s) => our::Admission::Deny(s),
        }
    }
}

impl From<wit::Adjustment> for our::Adjustment {
    fn from(a: wit::Adjustment) -> Self {
        our::Adjustment {
            max_bitrate_bps: a.max_bitrate_bps,
            max_fps: a.max_fps,
        }
    }
}
