//! sndif stream volume and mute (XENSND_OP_SET_VOLUME/GET_VOLUME,
//! MUTE/UNMUTE): per channel, volume in steps of 0.001 dB (0 = 0 dB).
//!
//! Linux's snd-xen-front does not send these today; the protocol has them,
//! so the backend stores and applies them.

/// Gains above this are clamped: a guest cannot make the stream louder
/// than +24 dB (and the encoder clamps at full scale anyway).
pub const MAX_MDB: i32 = 24_000;
/// At or below this a channel is silent.
pub const MIN_MDB: i32 = -120_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    mdb: Vec<i32>,
    muted: Vec<bool>,
    gains: Vec<f32>,
    unity: bool,
}

impl Volume {
    /// 0 dB, unmuted, for `channels` channels.
    pub fn new(channels: usize) -> Self {
        Self {
            mdb: vec![0; channels],
            muted: vec![false; channels],
            gains: vec![1.0; channels],
            unity: true,
        }
    }

    pub fn channels(&self) -> usize {
        self.mdb.len()
    }

    /// The stored volumes (GET_VOLUME answers with these).
    pub fn volumes_mdb(&self) -> &[i32] {
        &self.mdb
    }

    pub fn muted(&self) -> &[bool] {
        &self.muted
    }

    /// SET_VOLUME: one value per channel; extra values are ignored and
    /// missing ones leave their channel unchanged. Values are clamped to
    /// [`MIN_MDB`]..=[`MAX_MDB`].
    pub fn set_volumes_mdb(&mut self, mdb: &[i32]) {
        for (slot, &v) in self.mdb.iter_mut().zip(mdb) {
            *slot = v.clamp(MIN_MDB, MAX_MDB);
        }
        self.recompute();
    }

    /// MUTE (`mute = true`) or UNMUTE: channels whose flag is non-zero
    /// change, the others keep their state.
    pub fn set_mute(&mut self, flags: &[u8], mute: bool) {
        for (slot, &f) in self.muted.iter_mut().zip(flags) {
            if f != 0 {
                *slot = mute;
            }
        }
        self.recompute();
    }

    fn recompute(&mut self) {
        for ((g, &mdb), &m) in self.gains.iter_mut().zip(&self.mdb).zip(&self.muted) {
            *g = if m || mdb <= MIN_MDB {
                0.0
            } else {
                10f32.powf(mdb as f32 / 20_000.0)
            };
        }
        self.unity = self.gains.iter().all(|&g| g == 1.0);
    }

    /// Applies the gains to interleaved frames of `channels()` channels.
    pub fn apply(&self, samples: &mut [f32]) {
        if self.unity || self.gains.is_empty() {
            return;
        }
        for frame in samples.chunks_exact_mut(self.gains.len()) {
            for (s, g) in frame.iter_mut().zip(&self.gains) {
                *s *= g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_and_mute_apply_per_channel() {
        let mut v = Volume::new(2);
        let mut s = [0.5, 0.5, 0.5, 0.5];
        v.apply(&mut s);
        assert_eq!(s, [0.5; 4]);
        v.set_volumes_mdb(&[-6_000, 0, 99]);
        assert_eq!(v.volumes_mdb(), &[-6_000, 0]);
        v.apply(&mut s);
        assert!((s[0] - 0.5 * 0.501_187).abs() < 1e-5, "{}", s[0]);
        assert_eq!(s[1], 0.5);
        v.set_mute(&[0, 1], true);
        let mut s = [0.5, 0.5];
        v.apply(&mut s);
        assert_eq!(s[1], 0.0);
        assert!(s[0] > 0.2);
        v.set_mute(&[1, 1], false);
        assert_eq!(v.muted(), &[false, false]);
        v.set_volumes_mdb(&[i32::MAX, i32::MIN]);
        assert_eq!(v.volumes_mdb(), &[MAX_MDB, MIN_MDB]);
        let mut s = [0.01, 0.5];
        v.apply(&mut s);
        assert!((s[0] - 0.01 * 15.848_93).abs() < 1e-4);
        assert_eq!(s[1], 0.0);
    }
}
