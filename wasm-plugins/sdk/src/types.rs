//! The WIT types under their Rust names, with a few conveniences.

use alloc::string::String;

pub use crate::bindings::pvgate::policy::host::Level;
/// A guest domain as the gateway sees it (WIT `guest`; wit-bindgen calls it
/// `Guest_` because its own export trait is named `Guest`).
pub use crate::bindings::pvgate::policy::types::Guest_ as Guest;
pub use crate::bindings::pvgate::policy::types::{
    Adjustment, Admission, AudioPolicy, Clock, Codec, Direction, DisplayConnector, LinkStats,
    QualityMode, Role, SampleFormat, Size, SoundStream, VideoPolicy, Viewer,
};

impl Guest {
    /// Whether the operator attached `label` to this guest (exact match).
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

impl Size {
    /// 0x0: "the guest's own size" in a [`VideoPolicy`].
    pub const UNLIMITED: Size = Size {
        width: 0,
        height: 0,
    };

    pub const fn new(width: u32, height: u32) -> Size {
        Size { width, height }
    }
}

impl Admission {
    /// Refuse the viewer, telling them why.
    pub fn deny(reason: impl Into<String>) -> Admission {
        Admission::Deny(reason.into())
    }
}

impl Role {
    /// The lesser of two roles (`View` < `Control`).
    pub fn min(self, other: Role) -> Role {
        // The WIT enum order is view, control, and wit-bindgen derives Ord in
        // declaration order.
        core::cmp::Ord::min(self, other)
    }
}

impl SampleFormat {
    /// Every sndif PCM format, in WIT order.
    pub const ALL: [SampleFormat; 25] = [
        SampleFormat::S8,
        SampleFormat::U8,
        SampleFormat::S16Le,
        SampleFormat::S16Be,
        SampleFormat::U16Le,
        SampleFormat::U16Be,
        SampleFormat::S24Le,
        SampleFormat::S24Be,
        SampleFormat::U24Le,
        SampleFormat::U24Be,
        SampleFormat::S32Le,
        SampleFormat::S32Be,
        SampleFormat::U32Le,
        SampleFormat::U32Be,
        SampleFormat::FloatLe,
        SampleFormat::FloatBe,
        SampleFormat::Float64Le,
        SampleFormat::Float64Be,
        SampleFormat::Iec958SubframeLe,
        SampleFormat::Iec958SubframeBe,
        SampleFormat::MuLaw,
        SampleFormat::ALaw,
        SampleFormat::ImaAdpcm,
        SampleFormat::Mpeg,
        SampleFormat::Gsm,
    ];

    /// Whether the gateway converts this format to and from its own sample
    /// type: the linear PCM ones. IEC958 frames, companded (mu-law, a-law)
    /// and compressed (IMA ADPCM, MPEG, GSM) audio it does not decode.
    pub const fn gateway_converts(self) -> bool {
        !matches!(
            self,
            SampleFormat::Iec958SubframeLe
                | SampleFormat::Iec958SubframeBe
                | SampleFormat::MuLaw
                | SampleFormat::ALaw
                | SampleFormat::ImaAdpcm
                | SampleFormat::Mpeg
                | SampleFormat::Gsm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_view_below_control() {
        assert_eq!(Role::Control.min(Role::View), Role::View);
        assert_eq!(Role::Control.min(Role::Control), Role::Control);
    }

    #[test]
    fn eighteen_formats_are_converted() {
        let n = SampleFormat::ALL
            .iter()
            .filter(|f| f.gateway_converts())
            .count();
        assert_eq!(n, 18);
    }
}
