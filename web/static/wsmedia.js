// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// The WebSocket transport: binary frames (12-byte header, see wire.js)
// decoded with WebCodecs — video to a canvas, Opus to Web Audio — and the
// microphone encoded to Opus and sent back as kind-3 frames.

import {
  parseFrame, buildFrame, h264CodecString, KIND_VIDEO, KIND_AUDIO, KIND_MIC,
} from "./wire.js";

/** Video codecs WebCodecs decodes here, in the protocol's names. */
export async function wsCodecs() {
  if (typeof globalThis.VideoDecoder !== "function") return [];
  const out = [];
  for (const [name, codec] of [["h264", "avc1.42e01f"], ["vp8", "vp8"]]) {
    try {
      const cfg = { codec, optimizeForLatency: true };
      if (name === "h264") cfg.avc = { format: "annexb" };
      if ((await VideoDecoder.isConfigSupported(cfg)).supported) out.push(name);
    } catch {
      // not supported
    }
  }
  return out;
}

const KEYFRAME_REQUEST_INTERVAL_MS = 500;
/** More frames than this waiting in the decoder: we are behind, start over. */
const MAX_DECODE_QUEUE = 8;

export class WsMedia {
  /** env: { canvas, audio (AudioOut), onFrame(meta), onError(text) } */
  constructor(session, welcome, env) {
    this.session = session;
    this.welcome = welcome;
    this.env = env;
    this.closed = false;
    this.codec = welcome.video?.codec === "vp8" ? "vp8" : "h264";
    this.vdec = null;
    this.vconfig = null;
    this.needKey = true;
    this.lastKeyRequest = -Infinity;
    this.lastPts = -Infinity;
    this.inflight = new Map(); // pts → {arrived, submitted}
    this.ctx2d = null;
    this.bytes = 0;
    this.frames = 0;
    this.decodeSec = 0;
    this.latencySumMs = 0;
    this.latencyCount = 0;
    this.adec = null;
    this.mic = null;
    if (welcome.audio && typeof globalThis.AudioDecoder === "function") this.makeAudioDecoder();
    session.mediaConnected();
  }

  onBinary(buf) {
    if (this.closed) return;
    const f = parseFrame(buf);
    if (!f) return;
    this.bytes += buf.byteLength;
    if (f.kind === KIND_VIDEO) this.onVideo(f, performance.now());
    else if (f.kind === KIND_AUDIO) this.onAudio(f);
  }

  requestKeyframe() {
    const now = performance.now();
    if (now - this.lastKeyRequest < KEYFRAME_REQUEST_INTERVAL_MS) return;
    this.lastKeyRequest = now;
    this.session.sendText({ type: "keyframe" });
  }

  /** Start over at the next keyframe (decoder error, gap, size change). */
  resync() {
    this.needKey = true;
    this.inflight.clear();
    if (this.vdec && this.vdec.state !== "closed") {
      try {
        this.vdec.close();
      } catch {
        // closed
      }
    }
    this.vdec = null;
    this.requestKeyframe();
  }

  onVideo(f, arrived) {
    if (f.timestamp <= this.lastPts && !f.keyframe) {
      // Time went backwards without a keyframe: frames are missing or reordered.
      this.resync();
    }
    if (this.needKey && !f.keyframe) {
      this.requestKeyframe();
      return;
    }
    if (f.keyframe) {
      const codec = this.codec === "vp8" ? "vp8" : (h264CodecString(f.payload) || "avc1.42e01f");
      if (!this.vdec || this.vdec.state === "closed" || codec !== this.vconfig) {
        if (!this.makeVideoDecoder(codec)) return;
      }
      this.needKey = false;
    }
    if (this.vdec.decodeQueueSize > MAX_DECODE_QUEUE) {
      this.resync();
      return;
    }
    this.lastPts = f.timestamp;
    this.inflight.set(f.timestamp, { arrived, submitted: performance.now() });
    try {
      this.vdec.decode(new EncodedVideoChunk({
        type: f.keyframe ? "key" : "delta",
        timestamp: f.timestamp,
        data: f.payload,
      }));
    } catch (e) {
      this.env.onError(`video decode: ${e.message}`);
      this.resync();
    }
  }

  makeVideoDecoder(codec) {
    if (this.vdec && this.vdec.state !== "closed") {
      try {
        this.vdec.close();
      } catch {
        // closed
      }
    }
    const cfg = { codec, optimizeForLatency: true };
    if (this.codec === "h264") cfg.avc = { format: "annexb" };
    try {
      this.vdec = new VideoDecoder({
        output: (frame) => this.onDecoded(frame),
        error: (e) => {
          if (this.closed) return;
          this.env.onError(`video decoder: ${e.message}`);
          this.resync();
        },
      });
      this.vdec.configure(cfg);
      this.vconfig = codec;
      return true;
    } catch (e) {
      this.env.onError(`cannot decode ${codec}: ${e.message}`);
      this.vdec = null;
      return false;
    }
  }

  onDecoded(frame) {
    if (this.closed) {
      frame.close();
      return;
    }
    const decodedAt = performance.now();
    const canvas = this.env.canvas;
    const w = frame.displayWidth;
    const h = frame.displayHeight;
    if (canvas.width !== w || canvas.height !== h || !this.ctx2d) {
      canvas.width = w;
      canvas.height = h;
      this.ctx2d = canvas.getContext("2d", { alpha: false });
    }
    this.ctx2d.drawImage(frame, 0, 0, w, h);
    const presented = performance.now();
    const pts = frame.timestamp;
    frame.close();
    const t = this.inflight.get(pts);
    this.inflight.delete(pts);
    // Frames the decoder dropped never come out: forget anything older.
    for (const k of this.inflight.keys()) {
      if (k < pts) this.inflight.delete(k);
    }
    this.frames++;
    if (t) {
      this.decodeSec += (decodedAt - t.submitted) / 1000;
      this.latencySumMs += presented - t.arrived;
      this.latencyCount++;
    }
    this.env.onFrame({
      presentedAt: performance.timeOrigin + presented,
      arrivedAt: t ? performance.timeOrigin + t.arrived : undefined,
      decodeMs: t ? decodedAt - t.submitted : undefined,
      pts,
      width: w,
      height: h,
    });
  }

  makeAudioDecoder() {
    const a = this.welcome.audio;
    try {
      this.adec = new AudioDecoder({
        output: (data) => {
          if (this.closed) data.close();
          else this.env.audio.playAudioData(data);
        },
        error: (e) => {
          if (this.closed) return;
          this.env.onError(`audio decoder: ${e.message}`);
          this.adec = null;
          this.makeAudioDecoder();
        },
      });
      this.adec.configure({
        codec: "opus",
        sampleRate: a.rate || 48000,
        numberOfChannels: a.channels || 2,
      });
    } catch (e) {
      this.env.onError(`cannot decode Opus: ${e.message}`);
      this.adec = null;
    }
  }

  onAudio(f) {
    if (!this.adec || this.adec.state !== "configured") return;
    try {
      this.adec.decode(new EncodedAudioChunk({ type: "key", timestamp: f.timestamp, data: f.payload }));
    } catch (e) {
      this.env.onError(`audio decode: ${e.message}`);
    }
  }

  /** Switch the microphone on (a track) or off (null). */
  async setMicTrack(track) {
    if (this.mic) {
      this.mic.stop();
      this.mic = null;
    }
    if (track && this.welcome.mic) {
      this.mic = new MicEncoder(track, this.env.audio.context(), (packet, ts) => {
        this.session.sendBinary(buildFrame(KIND_MIC, 0, ts, packet));
      }, (text) => this.env.onError(text));
    }
  }

  async counters() {
    return {
      t: performance.now(),
      bytes: this.bytes,
      frames: this.frames,
      decodeSec: this.decodeSec,
      packetsLost: 0,
      packetsReceived: 0,
      latencySumMs: this.latencySumMs,
      latencyCount: this.latencyCount,
      rttMs: null,
      width: this.env.canvas.width,
      height: this.env.canvas.height,
    };
  }

  grabCanvas() {
    return this.frames > 0 ? this.env.canvas : null;
  }

  close() {
    this.closed = true;
    for (const d of [this.vdec, this.adec]) {
      if (d && d.state !== "closed") {
        try {
          d.close();
        } catch {
          // closed
        }
      }
    }
    if (this.mic) this.mic.stop();
    this.mic = null;
  }
}

/**
 * Microphone → Opus with WebCodecs' AudioEncoder. The track is read through
 * a 48 kHz AudioContext (which resamples whatever the device gives).
 */
export class MicEncoder {
  constructor(track, ctx, onPacket, onError) {
    this.ctx = ctx;
    this.samples = 0;
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        const buf = new Uint8Array(chunk.byteLength);
        chunk.copyTo(buf);
        onPacket(buf, chunk.timestamp);
      },
      error: (e) => onError(`microphone encoder: ${e.message}`),
    });
    this.encoder.configure({
      codec: "opus",
      sampleRate: ctx.sampleRate,
      numberOfChannels: 1,
      bitrate: 64000,
      opus: { frameDuration: 20000 },
    });
    this.source = ctx.createMediaStreamSource(new MediaStream([track]));
    // ScriptProcessor runs everywhere WebCodecs does; 1024 frames ≈ 21 ms.
    this.proc = ctx.createScriptProcessor(1024, 1, 1);
    this.proc.onaudioprocess = (e) => {
      if (this.encoder.state !== "configured") return;
      const pcm = new Float32Array(e.inputBuffer.getChannelData(0));
      const data = new AudioData({
        format: "f32-planar",
        sampleRate: ctx.sampleRate,
        numberOfFrames: pcm.length,
        numberOfChannels: 1,
        timestamp: Math.round((this.samples * 1e6) / ctx.sampleRate),
        data: pcm,
      });
      this.samples += pcm.length;
      this.encoder.encode(data);
      data.close();
    };
    this.source.connect(this.proc);
    this.proc.connect(ctx.destination); // outputs silence; keeps it running
  }

  stop() {
    try {
      this.proc.disconnect();
      this.source.disconnect();
    } catch {
      // disconnected
    }
    if (this.encoder.state !== "closed") this.encoder.close();
  }
}
