//! HW_PARAM_QUERY refinement and OPEN validation for one stream, pure.
//!
//! A stream's space is what the toolstack configured for it in xenstore
//! (resolved card → device → stream as snd-xen-front resolves it, so we
//! offer exactly what the guest's ALSA was told) narrowed by our
//! [`StreamLimits`]. snd-xen-front calls HW_PARAM_QUERY from an ALSA hw
//! rule: it sends the current configuration space (formats mask; rate,
//! channel, buffer and period intervals, the last two in frames) and
//! refines the space to our answer, so the answer is the intersection of
//! the query with the stream's space. An empty intersection is `-EINVAL`,
//! which ALSA reports as "no configuration matches".
//!
//! Buffer and period bounds are octets in the configuration but frames in
//! the query; a frame's size depends on the format and channel count still
//! undecided, so the frame bounds are taken over the whole remaining space
//! (never excluding a valid configuration; ALSA's own byte constraints,
//! which snd-xen-front sets from the same configuration, do the rest).

use pvgate_protocol::sndif::{formats_in_mask, HwParams, Interval, Open, PcmFormat};
use pvgate_protocol::sndif_config::{PcmHw, RateSet};

use super::limits::StreamLimits;
use super::requests::Refusal;

/// What one stream accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpace {
    /// Linear/companded formats allowed.
    pub formats: u64,
    /// Compressed formats the configuration names (refused, but named in
    /// the refusal so the operator sees why).
    pub compressed: u64,
    rates: RateSet,
    pub rate_min: u32,
    pub rate_max: u32,
    pub channels: Interval,
    pub buffer_bytes_max: u32,
    pub period_bytes_min: u32,
    pub periods_min: u32,
}

/// A validated OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenParams {
    pub format: PcmFormat,
    pub rate: u32,
    pub channels: u32,
    pub frame_bytes: u32,
    pub buffer_sz: u32,
    pub period_sz: u32,
}

fn intersect(a: Interval, b: Interval) -> Option<Interval> {
    let iv = Interval {
        min: a.min.max(b.min),
        max: a.max.min(b.max),
    };
    (iv.min <= iv.max).then_some(iv)
}

fn names(mask: u64) -> String {
    formats_in_mask(mask)
        .iter()
        .map(|f| f.xenstore_name())
        .collect::<Vec<_>>()
        .join(",")
}

impl StreamSpace {
    pub fn new(hw: &PcmHw, limits: &StreamLimits) -> StreamSpace {
        let carried = formats_in_mask(hw.formats)
            .into_iter()
            .filter(|f| limits.allows_format(*f));
        let compressed = formats_in_mask(hw.formats)
            .into_iter()
            .filter(|f| !pvgate_audio::is_supported(*f));
        let mut rate_min = hw.rate_min.max(limits.rate_min);
        let mut rate_max = hw.rate_max.min(limits.rate_max);
        // A rate list from the limits (a policy's) narrows a continuous
        // range to a list, and a list to the common rates.
        let rates = match (&hw.rates, &limits.rates) {
            (r, None) => r.clone(),
            (r, Some(allowed)) => {
                let mut l: Vec<u32> = allowed
                    .iter()
                    .copied()
                    .filter(|x| (rate_min..=rate_max).contains(x))
                    .filter(|x| match r {
                        RateSet::Continuous => true,
                        RateSet::List(h) => h.contains(x),
                    })
                    .collect();
                l.sort_unstable();
                l.dedup();
                match (l.first(), l.last()) {
                    (Some(&lo), Some(&hi)) => (rate_min, rate_max) = (lo, hi),
                    // Nothing in common: no rate at all (min > max).
                    _ => (rate_min, rate_max) = (1, 0),
                }
                RateSet::List(l)
            }
        };
        StreamSpace {
            formats: pvgate_protocol::sndif::mask_of(carried),
            compressed: pvgate_protocol::sndif::mask_of(compressed),
            rates,
            rate_min,
            rate_max,
            channels: Interval {
                min: hw.channels_min.max(limits.channels_min),
                max: hw.channels_max.min(limits.channels_max).min(255),
            },
            buffer_bytes_max: hw.buffer_bytes_max.min(limits.buffer_bytes_max),
            period_bytes_min: hw.period_bytes_min.max(limits.period_bytes_min).max(1),
            periods_min: hw.periods_min.max(limits.periods_min).max(1),
        }
    }

    pub fn allows_rate(&self, rate: u32) -> bool {
        (self.rate_min..=self.rate_max).contains(&rate)
            && match &self.rates {
                RateSet::Continuous => true,
                RateSet::List(l) => l.contains(&rate),
            }
    }

    /// The rates of the space within `q`, as an interval.
    fn rates_within(&self, q: Interval) -> Option<Interval> {
        let bounds = intersect(
            q,
            Interval {
                min: self.rate_min,
                max: self.rate_max,
            },
        )?;
        match &self.rates {
            RateSet::Continuous => Some(bounds),
            RateSet::List(l) => {
                let mut inside = l
                    .iter()
                    .copied()
                    .filter(|r| (bounds.min..=bounds.max).contains(r));
                let min = inside.next()?;
                let max = inside.next_back().unwrap_or(min);
                Some(Interval { min, max })
            }
        }
    }

    /// Answer to a HW_PARAM_QUERY.
    pub fn refine(&self, q: &HwParams) -> Result<HwParams, Refusal> {
        let formats = q.formats & self.formats;
        if formats == 0 {
            let asked_compressed = formats_in_mask(q.formats)
                .into_iter()
                .filter(|f| f.is_compressed() || !pvgate_audio::is_supported(*f));
            let asked_compressed = pvgate_protocol::sndif::mask_of(asked_compressed);
            return Err(Refusal::invalid(if asked_compressed != 0 {
                format!(
                    "HW_PARAM_QUERY: compressed format(s) {} are not carried; the stream allows {}",
                    names(asked_compressed),
                    names(self.formats)
                )
            } else {
                format!(
                    "HW_PARAM_QUERY: none of the formats {} is allowed (stream allows {})",
                    names(q.formats),
                    names(self.formats)
                )
            }));
        }
        let rates = self.rates_within(q.rates).ok_or_else(|| {
            Refusal::invalid(format!(
                "HW_PARAM_QUERY: no allowed rate in {}..={} Hz",
                q.rates.min, q.rates.max
            ))
        })?;
        let channels = intersect(q.channels, self.channels).ok_or_else(|| {
            Refusal::invalid(format!(
                "HW_PARAM_QUERY: channels {}..={} outside {}..={}",
                q.channels.min, q.channels.max, self.channels.min, self.channels.max
            ))
        })?;
        // Frame size bounds over what is still possible.
        let sizes = formats_in_mask(formats)
            .into_iter()
            .filter_map(|f| f.bytes_per_sample());
        let (min_sample, max_sample) =
            sizes.fold((u32::MAX, 0), |(lo, hi), b| (lo.min(b), hi.max(b)));
        let min_frame = min_sample.saturating_mul(channels.min).max(1);
        let max_frame = max_sample.saturating_mul(channels.max).max(1);
        let buffer_frames_max = self.buffer_bytes_max / min_frame;
        let period_frames_min = self.period_bytes_min.div_ceil(max_frame).max(1);
        let space_period = Interval {
            min: period_frames_min,
            max: buffer_frames_max / self.periods_min,
        };
        let space_buffer = Interval {
            min: period_frames_min.saturating_mul(self.periods_min),
            max: buffer_frames_max,
        };
        let mut period = intersect(q.period, space_period);
        let mut buffer = intersect(q.buffer, space_buffer);
        // Buffer and period constrain each other through periods_min.
        if let (Some(p), Some(b)) = (period, buffer) {
            period = intersect(
                p,
                Interval {
                    min: 0,
                    max: b.max / self.periods_min,
                },
            );
            buffer = intersect(
                b,
                Interval {
                    min: p.min.saturating_mul(self.periods_min),
                    max: u32::MAX,
                },
            );
        }
        let (Some(period), Some(buffer)) = (period, buffer) else {
            return Err(Refusal::invalid(format!(
                "HW_PARAM_QUERY: no allowed buffer {}..={} / period {}..={} frames \
                 (buffer at most {} octets, period at least {} octets, {} periods)",
                q.buffer.min,
                q.buffer.max,
                q.period.min,
                q.period.max,
                self.buffer_bytes_max,
                self.period_bytes_min,
                self.periods_min
            )));
        };
        Ok(HwParams {
            formats,
            rates,
            channels,
            buffer,
            period,
        })
    }

    /// Validates an OPEN against the space.
    pub fn check_open(&self, open: &Open) -> Result<OpenParams, Refusal> {
        let format = open.pcm_format;
        if !pvgate_audio::is_supported(format) {
            return Err(Refusal::invalid(format!(
                "OPEN: format {} is compressed or framed; pvgate carries linear and companded PCM only",
                format.xenstore_name()
            )));
        }
        if self.formats & format.mask_bit() == 0 {
            return Err(Refusal::invalid(format!(
                "OPEN: format {} is not allowed on this stream (allowed: {})",
                format.xenstore_name(),
                names(self.formats)
            )));
        }
        if !self.allows_rate(open.pcm_rate) {
            return Err(Refusal::invalid(format!(
                "OPEN: rate {} Hz is not allowed on this stream",
                open.pcm_rate
            )));
        }
        let channels = u32::from(open.pcm_channels);
        if !(self.channels.min..=self.channels.max).contains(&channels) {
            return Err(Refusal::invalid(format!(
                "OPEN: {channels} channels outside {}..={}",
                self.channels.min, self.channels.max
            )));
        }
        let sample = format.bytes_per_sample().unwrap_or(1);
        let frame_bytes = sample * channels;
        if open.buffer_sz > self.buffer_bytes_max {
            return Err(Refusal::invalid(format!(
                "OPEN: buffer of {} octets exceeds {}",
                open.buffer_sz, self.buffer_bytes_max
            )));
        }
        for (what, v) in [("buffer_sz", open.buffer_sz), ("period_sz", open.period_sz)] {
            if v % frame_bytes != 0 {
                return Err(Refusal::invalid(format!(
                    "OPEN: {what} {v} is not a whole number of {frame_bytes}-octet frames"
                )));
            }
        }
        if open.period_sz != 0 {
            if open.period_sz < self.period_bytes_min {
                return Err(Refusal::invalid(format!(
                    "OPEN: period of {} octets is below the minimum {}",
                    open.period_sz, self.period_bytes_min
                )));
            }
            if u64::from(open.period_sz) * u64::from(self.periods_min) > u64::from(open.buffer_sz) {
                return Err(Refusal::invalid(format!(
                    "OPEN: buffer of {} octets holds fewer than {} periods of {}",
                    open.buffer_sz, self.periods_min, open.period_sz
                )));
            }
        }
        Ok(OpenParams {
            format,
            rate: open.pcm_rate,
            channels,
            frame_bytes,
            buffer_sz: open.buffer_sz,
            period_sz: open.period_sz,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvgate_protocol::sndif::mask_of;

    fn space() -> StreamSpace {
        let mut hw = PcmHw::linux_default();
        hw.formats = mask_of([PcmFormat::S16Le, PcmFormat::F32Le, PcmFormat::Mpeg]);
        hw.rates = RateSet::List(vec![44100, 48000]);
        hw.rate_min = 44100;
        StreamSpace::new(&hw, &StreamLimits::default())
    }

    fn iv(min: u32, max: u32) -> Interval {
        Interval { min, max }
    }

    #[test]
    fn a_wide_query_is_narrowed_to_the_stream() {
        let s = space();
        let q = HwParams {
            formats: u64::MAX,
            rates: iv(1, 400_000),
            channels: iv(1, 64),
            buffer: iv(1, u32::MAX),
            period: iv(1, u32::MAX),
        };
        let a = s.refine(&q).unwrap();
        assert_eq!(a.formats, mask_of([PcmFormat::S16Le, PcmFormat::F32Le]));
        assert_eq!(a.rates, iv(44100, 48000));
        assert_eq!(a.channels, iv(1, 2));
        // 64 KiB of mono S16 at most; 64 octets of stereo F32 at least.
        assert_eq!(a.buffer.max, 32768);
        assert_eq!(a.period, iv(8, 16384));
        assert_eq!(a.buffer.min, 16);
    }

    #[test]
    fn compressed_only_is_refused_by_name() {
        let s = space();
        let q = HwParams {
            formats: mask_of([PcmFormat::Mpeg]),
            rates: iv(44100, 48000),
            channels: iv(2, 2),
            buffer: iv(1, 10000),
            period: iv(1, 10000),
        };
        let e = s.refine(&q).unwrap_err();
        assert_eq!(e.status, super::super::requests::EINVAL);
        assert!(e.reason.contains("mpeg"), "{}", e.reason);
    }

    #[test]
    fn rates_between_listed_ones_are_refused() {
        let s = space();
        let mut q = HwParams {
            formats: u64::MAX,
            rates: iv(45000, 47000),
            channels: iv(1, 2),
            buffer: iv(1, u32::MAX),
            period: iv(1, u32::MAX),
        };
        assert!(s.refine(&q).is_err());
        q.rates = iv(48000, 48000);
        assert_eq!(s.refine(&q).unwrap().rates, iv(48000, 48000));
    }

    #[test]
    fn period_and_buffer_constrain_each_other() {
        let s = space();
        let q = HwParams {
            formats: mask_of([PcmFormat::S16Le]),
            rates: iv(48000, 48000),
            channels: iv(2, 2),
            buffer: iv(1000, 1000),
            period: iv(600, 600),
        };
        assert!(
            s.refine(&q).is_err(),
            "1000 frames cannot hold two periods of 600"
        );
    }

    #[test]
    fn open_is_checked_against_the_space() {
        let s = space();
        let ok = Open {
            pcm_rate: 48000,
            pcm_format: PcmFormat::S16Le,
            pcm_channels: 2,
            buffer_sz: 16384,
            gref_directory: 5,
            period_sz: 4096,
        };
        assert_eq!(s.check_open(&ok).unwrap().frame_bytes, 4);
        let bad = |f: fn(&mut Open)| {
            let mut o = ok;
            f(&mut o);
            s.check_open(&o).unwrap_err().reason
        };
        assert!(bad(|o| o.pcm_format = PcmFormat::Mpeg).contains("compressed"));
        assert!(bad(|o| o.pcm_format = PcmFormat::U8).contains("not allowed"));
        assert!(bad(|o| o.pcm_rate = 44000).contains("rate"));
        assert!(bad(|o| o.pcm_channels = 3).contains("channels"));
        assert!(bad(|o| o.buffer_sz = 1 << 17).contains("exceeds"));
        assert!(bad(|o| o.period_sz = 4094).contains("whole number"));
        assert!(bad(|o| o.period_sz = 16384).contains("fewer than 2 periods"));
        assert!(bad(|o| o.period_sz = 32).contains("minimum"));
    }

    /// A policy's rate list narrows a continuous range to those rates and a
    /// listed one to the common rates; nothing in common allows no rate.
    #[test]
    fn a_rate_list_from_the_limits_narrows_the_stream() {
        let mut hw = PcmHw::linux_default(); // 5512..=48000 continuous
        hw.formats = mask_of([PcmFormat::S16Le]);
        let limits = |rates: &[u32]| StreamLimits {
            rates: Some(rates.to_vec()),
            channels_max: 1,
            ..StreamLimits::default()
        };
        let s = StreamSpace::new(&hw, &limits(&[16000, 96000]));
        assert!(s.allows_rate(16000));
        assert!(!s.allows_rate(48000) && !s.allows_rate(22050));
        let q = HwParams {
            formats: u64::MAX,
            rates: iv(1, 400_000),
            channels: iv(1, 8),
            buffer: iv(1, u32::MAX),
            period: iv(1, u32::MAX),
        };
        let a = s.refine(&q).unwrap();
        assert_eq!((a.rates, a.channels), (iv(16000, 16000), iv(1, 1)));
        let mut stereo48 = q;
        stereo48.rates = iv(48000, 48000);
        assert!(s.refine(&stereo48).is_err());

        hw.rates = RateSet::List(vec![44100, 48000]);
        let s = StreamSpace::new(&hw, &limits(&[48000, 16000]));
        assert!(s.allows_rate(48000) && !s.allows_rate(16000) && !s.allows_rate(44100));
        let s = StreamSpace::new(&hw, &limits(&[16000]));
        assert!(s.rate_min > s.rate_max);
        assert!(s.refine(&q).is_err());
    }
}
