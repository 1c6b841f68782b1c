// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Connection statistics. Both transports keep cumulative counters; rates()
// turns two samples into the numbers shown in the overlay and reported to
// the gateway (`stats` message). Pure, usable from Node.

/**
 * Cumulative counters of a WebRTC peer connection from its getStats()
 * report (anything iterable over stat objects, or a Map).
 */
export function rtcCounters(report, now) {
  const c = {
    t: now,
    bytes: 0,
    frames: 0,
    decodeSec: 0,
    packetsLost: 0,
    packetsReceived: 0,
    jbDelaySec: 0,
    jbEmitted: 0,
    rttMs: null,
    width: 0,
    height: 0,
    framesDropped: 0,
  };
  const all = [...(report.values ? report.values() : report)];
  let pairId = null;
  for (const s of all) {
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  }
  for (const s of all) {
    if (s.type === "inbound-rtp") {
      c.bytes += s.bytesReceived || 0;
      c.packetsLost += Math.max(0, s.packetsLost || 0);
      c.packetsReceived += s.packetsReceived || 0;
      if (s.kind === "video" || s.mediaType === "video") {
        c.frames += s.framesDecoded || 0;
        c.decodeSec += s.totalDecodeTime || 0;
        c.jbDelaySec += s.jitterBufferDelay || 0;
        c.jbEmitted += s.jitterBufferEmittedCount || 0;
        c.framesDropped += s.framesDropped || 0;
        c.width = s.frameWidth || c.width;
        c.height = s.frameHeight || c.height;
      }
    } else if (s.type === "candidate-pair") {
      const selected = pairId ? s.id === pairId : s.nominated && s.state === "succeeded";
      if (selected && typeof s.currentRoundTripTime === "number") {
        c.rttMs = s.currentRoundTripTime * 1000;
      }
    }
  }
  return c;
}

/**
 * Rates between two counter samples (`prev` may be null: rates are then 0).
 * WebSocket counters carry latencySumMs/latencyCount (arrival → present per
 * frame) instead of jitter-buffer numbers. Estimated end-to-end latency:
 * WebRTC jitter-buffer delay + decode + RTT/2; WebSocket arrival→present +
 * RTT/2 (the gateway's encode time is not known here).
 */
export function rates(prev, cur) {
  const out = {
    fps: 0,
    bitrate_bps: 0,
    rtt_ms: cur.rttMs ?? undefined,
    loss: 0,
    decode_ms: undefined,
    latency_ms: undefined,
    width: cur.width || undefined,
    height: cur.height || undefined,
    framesDecoded: cur.frames,
  };
  if (!prev) return out;
  const dt = (cur.t - prev.t) / 1000;
  if (!(dt > 0)) return out;
  const dFrames = cur.frames - prev.frames;
  out.fps = round(dFrames / dt, 1);
  out.bitrate_bps = Math.max(0, Math.round(((cur.bytes - prev.bytes) * 8) / dt));
  const lost = Math.max(0, cur.packetsLost - prev.packetsLost);
  const got = Math.max(0, cur.packetsReceived - prev.packetsReceived);
  out.loss = lost + got > 0 ? round(lost / (lost + got), 4) : 0;
  if (dFrames > 0) out.decode_ms = round(((cur.decodeSec - prev.decodeSec) * 1000) / dFrames, 2);
  const halfRtt = (cur.rttMs ?? 0) / 2;
  const dEmitted = (cur.jbEmitted ?? 0) - (prev.jbEmitted ?? 0);
  const dLatN = (cur.latencyCount ?? 0) - (prev.latencyCount ?? 0);
  if (dEmitted > 0) {
    const jb = ((cur.jbDelaySec - prev.jbDelaySec) * 1000) / dEmitted;
    out.latency_ms = round(jb + (out.decode_ms ?? 0) + halfRtt, 1);
  } else if (dLatN > 0) {
    const present = (cur.latencySumMs - prev.latencySumMs) / dLatN;
    out.latency_ms = round(present + halfRtt, 1);
  }
  if (out.rtt_ms !== undefined) out.rtt_ms = round(out.rtt_ms, 1);
  return out;
}

/** The subset of rates() that the `stats` message carries. */
export function report(r) {
  const msg = { type: "stats" };
  for (const k of ["fps", "decode_ms", "rtt_ms", "loss", "bitrate_bps", "latency_ms"]) {
    if (typeof r[k] === "number" && Number.isFinite(r[k])) msg[k] = r[k];
  }
  return msg;
}

/** Lines for the overlay. */
export function formatStats(r, extra = {}) {
  const ms = (v) => (typeof v === "number" ? `${v.toFixed(1)} ms` : "–");
  const lines = [];
  if (extra.transport) lines.push(`transport  ${extra.transport}${extra.codec ? ` · ${extra.codec}` : ""}`);
  if (r.width && r.height) lines.push(`size       ${r.width}×${r.height}`);
  lines.push(`fps        ${(r.fps ?? 0).toFixed(1)}`);
  lines.push(`bitrate    ${formatBitrate(r.bitrate_bps ?? 0)}`);
  lines.push(`rtt        ${ms(r.rtt_ms)}`);
  lines.push(`loss       ${((r.loss ?? 0) * 100).toFixed(2)} %`);
  lines.push(`decode     ${ms(r.decode_ms)}`);
  lines.push(`latency    ${ms(r.latency_ms)} (est.)`);
  if (typeof r.framesDecoded === "number") lines.push(`frames     ${r.framesDecoded}`);
  return lines.join("\n");
}

export function formatBitrate(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kbit/s`;
  return `${bps} bit/s`;
}

function round(v, digits) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
