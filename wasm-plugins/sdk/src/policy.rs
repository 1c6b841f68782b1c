//! The [`Policy`] trait and its adapter to the generated export trait.

use core::marker::PhantomData;

use crate::bindings::exports::pvgate::policy::policy as wit;
use crate::defaults;
use crate::types::{
    Adjustment, Admission, AudioPolicy, Clock, DisplayConnector, Guest, LinkStats, SoundStream,
    VideoPolicy, Viewer,
};

/// A tenant's policy. Every method defaults to the gateway's built-in policy
/// ([`defaults`]); override the ones you change.
///
/// The methods have no `self`: the gateway calls a plugin's exports as free
/// functions, one at a time. A plugin that needs state across calls keeps it
/// in a `static` (the instance lives as long as the gateway keeps it; a trap
/// discards it).
///
/// Whatever a method returns is validated and clamped by the gateway: a
/// plugin can be wrong but never harmful.
pub trait Policy {
    /// The encoder settings for one display connector of `guest`; asked when
    /// the connector's stream starts and when its resolution changes.
    ///
    /// Default: [`defaults::video`] — H.264 then VP8, 300 kbit/s..8 Mbit/s,
    /// 60 fps, the guest's own size, a keyframe every 2 s, screen tuning.
    fn video(guest: &Guest, connector: &DisplayConnector) -> VideoPolicy {
        let _ = (guest, connector);
        defaults::video()
    }

    /// What a sound stream may negotiate; asked when the guest's sound device
    /// connects.
    ///
    /// Default: [`defaults::audio`] — the formats the guest offers that the
    /// gateway converts, all offered rates, at most 2 channels, Opus at
    /// 96 kbit/s, microphone allowed.
    fn audio(guest: &Guest, stream: &SoundStream) -> AudioPolicy {
        let _ = guest;
        defaults::audio(stream)
    }

    /// Whether `viewer` may open `guest`, and with which role. Asked when the
    /// viewer connects and every minute while they stay. `now` is the only
    /// clock a plugin has.
    ///
    /// Default: [`defaults::admit`] — allowed with the role their token grants.
    fn admit(guest: &Guest, viewer: &Viewer, now: Clock) -> Admission {
        let _ = (guest, now);
        defaults::admit(viewer)
    }

    /// An optional tightening of one viewer's video after a statistics
    /// interval (every few seconds).
    ///
    /// Default: `None` — the connector's video policy stands.
    fn adjust(
        guest: &Guest,
        connector: &DisplayConnector,
        viewer: &Viewer,
        stats: &LinkStats,
    ) -> Option<Adjustment> {
        let _ = (guest, connector, viewer, stats);
        defaults::adjust()
    }
}

/// Connects a [`Policy`] to the generated bindings; named by [`export!`](crate::export).
#[doc(hidden)]
pub struct Export<P>(PhantomData<P>);

impl<P: Policy> wit::Guest for Export<P> {
    fn video(guest: Guest, connector: DisplayConnector) -> VideoPolicy {
        P::video(&guest, &connector)
    }

    fn audio(guest: Guest, stream: SoundStream) -> AudioPolicy {
        P::audio(&guest, &stream)
    }

    fn admit(guest: Guest, viewer: Viewer, now: Clock) -> Admission {
        P::admit(&guest, &viewer, now)
    }

    fn adjust(
        guest: Guest,
        connector: DisplayConnector,
        viewer: Viewer,
        stats: LinkStats,
    ) -> Option<Adjustment> {
        P::adjust(&guest, &connector, &viewer, &stats)
    }
}
