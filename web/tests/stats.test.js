// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rtcCounters, rates, report, formatStats } from "../static/stats.js";
import { peakIn } from "../static/audio.js";
import { viewerParams, withQuery, sessionUrl, explainStatus, basePath } from "../static/common.js";

function rtcReport(n) {
  return new Map([
    ["T", { type: "transport", selectedCandidatePairId: "P" }],
    ["P", { id: "P", type: "candidate-pair", currentRoundTripTime: 0.004 }],
    ["Q", { id: "Q", type: "candidate-pair", currentRoundTripTime: 0.5 }],
    ["V", {
      type: "inbound-rtp", kind: "video", bytesReceived: 100000 * n, framesDecoded: 30 * n,
      packetsReceived: 99 * n, packetsLost: n, totalDecodeTime: 0.06 * n,
      jitterBufferDelay: 0.6 * n, jitterBufferEmittedCount: 30 * n, frameWidth: 1280, frameHeight: 720,
    }],
    ["A", { type: "inbound-rtp", kind: "audio", bytesReceived: 2000 * n, packetsReceived: 50 * n, packetsLost: 0 }],
  ]);
}

test("WebRTC rates: fps, bitrate, loss, decode, RTT and estimated latency", () => {
  const a = rtcCounters(rtcReport(1), 1000);
  const b = rtcCounters(rtcReport(2), 2000);
  const r = rates(a, b);
  assert.equal(r.fps, 30);
  assert.equal(r.bitrate_bps, 102000 * 8);
  assert.equal(r.rtt_ms, 4);
  assert.equal(r.loss, 0.0067); // 1/150, to 4 digits
  assert.equal(r.decode_ms, 2);
  assert.equal(r.latency_ms, 20 + 2 + 2); // jitter buffer + decode + RTT/2
  assert.equal(r.width, 1280);
  const msg = report(r);
  assert.equal(msg.type, "stats");
  assert.deepEqual(Object.keys(msg).sort(),
    ["bitrate_bps", "decode_ms", "fps", "latency_ms", "loss", "rtt_ms", "type"]);
  assert.match(formatStats(r, { transport: "webrtc", codec: "h264" }), /fps\s+30\.0/);
});

test("WebSocket rates: latency is arrival to present plus RTT/2", () => {
  const a = { t: 0, bytes: 0, frames: 0, decodeSec: 0, packetsLost: 0, packetsReceived: 0,
    latencySumMs: 0, latencyCount: 0, rttMs: 10 };
  const b = { ...a, t: 2000, bytes: 250000, frames: 60, decodeSec: 0.18, latencySumMs: 300,
    latencyCount: 60 };
  const r = rates(a, b);
  assert.equal(r.fps, 30);
  assert.equal(r.bitrate_bps, 1000000);
  assert.equal(r.decode_ms, 3);
  assert.equal(r.latency_ms, 10);
  assert.equal(r.loss, 0);
});

test("the first sample has no rates and the report leaves unknowns out", () => {
  const r = rates(null, { t: 0, bytes: 0, frames: 0, rttMs: null });
  assert.equal(r.fps, 0);
  assert.deepEqual(report(r), { type: "stats", fps: 0, loss: 0, bitrate_bps: 0 });
});

test("audio peak: strongest bin in the band, refined between bins", () => {
  const fft = 8192;
  const rate = 48000;
  const spectrum = new Float32Array(fft / 2).fill(-120);
  const bin = 440 / (rate / fft); // 75.09
  spectrum[75] = -20;
  spectrum[76] = -40;
  spectrum[74] = -42;
  spectrum[113] = -10; // 660 Hz, outside the band asked
  const p = peakIn(spectrum, rate, fft, 400, 500);
  assert.ok(Math.abs(p.freq - 440) < 3, `peak at ${p.freq}`);
  assert.equal(p.db, -20);
  assert.ok(Math.abs(bin - 75) < 1);
  assert.deepEqual(peakIn(new Float32Array(16).fill(-Infinity), rate, 32, 0, 24000), { freq: null, db: null });
});

test("viewer parameters come from the URL", () => {
  const p = viewerParams({ pathname: "/view/7", search: "?token=abc&display=1&transport=websocket&codec=vp8" });
  assert.deepEqual(p, { domid: 7, token: "abc", display: 1, transport: "websocket", codec: "vp8",
    mic: false, stats: false });
  const d = viewerParams({ pathname: "/view/3", search: "?transport=carrier-pigeon&display=-2" });
  assert.equal(d.transport, null);
  assert.equal(d.display, 0);
  assert.equal(d.token, "");
});

test("URLs carry the token, escaped", () => {
  assert.equal(withQuery("/view/5", { token: "a b&c" }), "/view/5?token=a+b%26c");
  assert.equal(withQuery("/x?y=1", { token: "" }), "/x?y=1");
  assert.equal(sessionUrl({ protocol: "https:", host: "h:1" }, 5, "t"), "wss://h:1/api/guests/5/session?token=t");
  assert.equal(sessionUrl({ protocol: "http:", host: "h" }, 5, ""), "ws://h/api/guests/5/session");
  assert.equal(sessionUrl({ protocol: "http:", host: "h", pathname: "/gw/view/5" }, 5, ""), "ws://h/gw/api/guests/5/session");
  assert.match(explainStatus(401), /token/);
  assert.match(explainStatus(403, "guest 5"), /not allowed to open guest 5/);
});

test("the gateway's root path, also behind a proxy that adds a prefix", () => {
  assert.equal(basePath("/"), "/");
  assert.equal(basePath("/view/5"), "/");
  assert.equal(basePath("/pvgate/view/12"), "/pvgate/");
  assert.equal(basePath("/pvgate/"), "/pvgate/");
  assert.equal(basePath("/pvgate/index.html"), "/pvgate/");
});
