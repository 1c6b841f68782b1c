// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Sound out: WebRTC's remote audio track through an <audio> element, or the
// WebSocket transport's decoded Opus scheduled on Web Audio with a small
// jitter buffer. Both feed an AnalyserNode (audioPeak for tests). Browsers
// block sound until the user interacts with the page; `blocked` says so and
// unlock() (from a click) lifts it.

/**
 * Jitter buffer of the WebSocket transport, seconds of audio scheduled ahead
 * of the output: aim, floor and ceiling. Every millisecond here is latency
 * the viewer hears, on top of the context's own output latency.
 */
export const TARGET_DELAY = 0.06;
export const MIN_DELAY = 0.015;
export const MAX_DELAY = 0.12;

/**
 * Where to play the next decoded chunk of `duration` seconds, given where
 * the previous one ends (`nextTime`) and the context's time (`now`). Pure.
 * Returns { at, nextTime } (at null: drop the chunk). Starting, and after an
 * underrun (less than MIN_DELAY left), playback (re)starts at TARGET_DELAY
 * ahead; a chunk that would end beyond MAX_DELAY ahead (a burst after a
 * stall) is dropped instead of queued, so the delay cannot stay high.
 */
export function scheduleChunk(nextTime, now, duration) {
  if (nextTime < now + MIN_DELAY) {
    return { at: now + TARGET_DELAY, nextTime: now + TARGET_DELAY + duration };
  }
  if (nextTime + duration > now + MAX_DELAY) {
    return { at: null, nextTime };
  }
  return { at: nextTime, nextTime: nextTime + duration };
}

/** Strongest bin of `spectrum` (dB per bin) between loHz and hiHz. Pure. */
export function peakIn(spectrum, sampleRate, fftSize, loHz, hiHz) {
  const binHz = sampleRate / fftSize;
  const lo = Math.max(1, Math.floor(loHz / binHz));
  const hi = Math.min(spectrum.length - 2, Math.ceil(hiHz / binHz));
  let best = -1;
  for (let i = lo; i <= hi; i++) {
    if (best < 0 || spectrum[i] > spectrum[best]) best = i;
  }
  if (best < 0 || !Number.isFinite(spectrum[best])) return { freq: null, db: null };
  // Parabolic interpolation between the neighbours refines the frequency.
  const a = spectrum[best - 1];
  const b = spectrum[best];
  const c = spectrum[best + 1];
  let offset = 0;
  const den = a - 2 * b + c;
  if (Number.isFinite(a) && Number.isFinite(c) && den !== 0) offset = (0.5 * (a - c)) / den;
  return { freq: (best + offset) * binHz, db: b };
}

export class AudioOut {
  /** el: the <audio> element; onBlocked(bool) tells the page to show "click to unmute". */
  constructor(el, onBlocked) {
    this.el = el;
    this.onBlocked = onBlocked;
    this.ctx = null;
    this.muted = false;
    this.elementBlocked = false;
    this.streamSource = null;
    this.nextTime = 0;
    /** Chunks dropped because the jitter buffer was over its ceiling. */
    this.droppedChunks = 0;
  }

  /** The shared AudioContext (48 kHz: Opus's rate, no resampling). */
  context() {
    if (this.ctx) return this.ctx;
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    try {
      this.ctx = new Ctx({ sampleRate: 48000, latencyHint: "interactive" });
    } catch {
      this.ctx = new Ctx();
    }
    const ctx = this.ctx;
    // Sources → input → master (mute) → speakers; input → analyser, so that
    // muting the page does not deafen audioPeak().
    this.input = ctx.createGain();
    this.master = ctx.createGain();
    this.master.gain.value = this.muted ? 0 : 1;
    this.input.connect(this.master);
    this.master.connect(ctx.destination);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 8192;
    this.analyser.smoothingTimeConstant = 0.5;
    // The analyser is a side branch; a silent sink keeps it processing.
    const sink = ctx.createGain();
    sink.gain.value = 0;
    this.analyser.connect(sink);
    sink.connect(ctx.destination);
    this.input.connect(this.analyser);
    ctx.onstatechange = () => this.report();
    this.report();
    return ctx;
  }

  get blocked() {
    return (this.ctx !== null && this.ctx.state === "suspended") || this.elementBlocked;
  }

  report() {
    this.onBlocked(this.blocked);
  }

  /** WebRTC: play a remote audio stream. */
  attachStream(stream) {
    const ctx = this.context();
    this.detach();
    this.el.srcObject = stream;
    this.el.muted = this.muted;
    this.playElement();
    // Chrome only feeds a remote stream into Web Audio while an element
    // plays it; the element plays, the analyser listens.
    this.streamSource = ctx.createMediaStreamSource(stream);
    this.streamSource.connect(this.analyser);
  }

  detach() {
    if (this.streamSource) {
      this.streamSource.disconnect();
      this.streamSource = null;
    }
    if (this.el.srcObject) this.el.srcObject = null;
    this.elementBlocked = false;
  }

  playElement() {
    const p = this.el.play();
    if (p && p.then) {
      p.then(() => {
        this.elementBlocked = false;
        this.report();
      }, (e) => {
        this.elementBlocked = e && e.name === "NotAllowedError";
        this.report();
      });
    }
  }

  /** WebSocket transport: schedule one decoded AudioData (closes it). */
  playAudioData(data) {
    const ctx = this.context();
    const n = data.numberOfFrames;
    const channels = data.numberOfChannels;
    const buffer = ctx.createBuffer(channels, n, data.sampleRate);
    for (let ch = 0; ch < channels; ch++) {
      const plane = new Float32Array(n);
      data.copyTo(plane, { planeIndex: ch, format: "f32-planar" });
      buffer.copyToChannel(plane, ch);
    }
    data.close();
    if (ctx.state !== "running") return; // blocked: drop rather than pile up
    const { at, nextTime } = scheduleChunk(this.nextTime, ctx.currentTime, buffer.duration);
    this.nextTime = nextTime;
    if (at === null) {
      this.droppedChunks++;
      return;
    }
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(this.input);
    src.start(at);
  }

  /** From a user gesture: let sound play. */
  unlock() {
    const ctx = this.context();
    if (ctx.state === "suspended") ctx.resume().then(() => this.report(), () => {});
    if (this.el.srcObject) this.playElement();
  }

  setMuted(muted) {
    this.muted = muted;
    this.el.muted = muted;
    if (this.master) this.master.gain.value = muted ? 0 : 1;
  }

  /**
   * Watch the received sound for `durationMs` and resolve with the onsets
   * heard: the output time (ms on the page's wall clock, like Date.now())
   * of each first sample above `threshold` after at least `quietMs` of
   * silence. For the audio latency benchmark (the guest's wall-clock ticks).
   */
  onsets(durationMs, threshold = 0.05, quietMs = 200) {
    if (!this.analyser) return Promise.resolve([]);
    const ctx = this.ctx;
    const analyser = this.analyser;
    const rate = ctx.sampleRate;
    const buf = new Float32Array(analyser.fftSize);
    const found = [];
    let scannedUntil = -Infinity; // context time of the last sample looked at
    let lastLoud = -Infinity;
    const scan = () => {
      analyser.getFloatTimeDomainData(buf);
      // The analyser holds the newest fftSize samples, ending where the
      // graph is now.
      const end = ctx.currentTime;
      const stamp = ctx.getOutputTimestamp();
      for (let i = 0; i < buf.length; i++) {
        const t = end - (buf.length - i) / rate;
        if (t <= scannedUntil) continue;
        if (Math.abs(buf[i]) >= threshold) {
          if ((t - lastLoud) * 1000 >= quietMs) {
            // Context time → the moment the output device plays it.
            found.push(performance.timeOrigin + stamp.performanceTime + (t - stamp.contextTime) * 1000);
          }
          lastLoud = t;
        }
      }
      scannedUntil = end - 1 / rate;
    };
    return new Promise((resolve) => {
      const timer = setInterval(scan, 10);
      setTimeout(() => {
        clearInterval(timer);
        resolve(found);
      }, durationMs);
    });
  }

  /** Strongest frequency of the received sound between loHz and hiHz. */
  peak(loHz, hiHz) {
    if (!this.analyser) return { freq: null, db: null };
    const spectrum = new Float32Array(this.analyser.frequencyBinCount);
    this.analyser.getFloatFrequencyData(spectrum);
    return peakIn(spectrum, this.ctx.sampleRate, this.analyser.fftSize, loHz, hiHz);
  }
}
