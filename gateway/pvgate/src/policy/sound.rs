//! The sndif backend's per-stream hook: when a guest's vsnd device
//! connects, each stream's limits come from the tenant's audio decision
//! for what that stream offers (so HW_PARAM_QUERY and OPEN are answered
//! with the narrowed ranges, and Opus runs at the decided bitrate).

use std::sync::Arc;

use pvgate_backends::sound::{StreamKey, StreamLimits, StreamPolicy};
use pvgate_policy::types as pt;
use pvgate_protocol::sndif_config::StreamConfig;

use super::{apply, Policies};

/// One guest's streams, decided by its tenant's policy.
pub struct GuestSound {
    pub policies: Arc<Policies>,
    pub guest: pt::Guest,
}

impl StreamPolicy for GuestSound {
    fn stream_limits(
        &self,
        key: &StreamKey,
        config: &StreamConfig,
        base: &StreamLimits,
    ) -> StreamLimits {
        let offered = apply::sound_stream(config);
        let decision = self.policies.audio(&self.guest, &offered);
        let limits = apply::narrow_stream(base, &decision);
        tracing::debug!(
            stream = %key,
            tenant = %self.guest.tenant,
            rates = ?limits.rates,
            channels_max = limits.channels_max,
            opus_bps = limits.opus.bitrate_bps,
            "sound stream limits from the tenant's policy"
        );
        limits
    }
}
