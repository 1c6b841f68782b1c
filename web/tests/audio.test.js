// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { scheduleChunk, TARGET_DELAY, MIN_DELAY, MAX_DELAY } from "../static/audio.js";

const CHUNK = 0.02; // one 20 ms Opus frame
const close = (a, b) => Math.abs(a - b) < 1e-9;

test("the WebSocket scheduler starts at its target delay, and again after an underrun", () => {
  let { at, nextTime } = scheduleChunk(0, 5, CHUNK);
  assert.ok(close(at, 5 + TARGET_DELAY), `${at}`);
  assert.ok(close(nextTime, 5 + TARGET_DELAY + CHUNK));
  // Chunks arriving in real time follow on seamlessly.
  const next = scheduleChunk(nextTime, 5.02, CHUNK);
  assert.ok(close(next.at, nextTime));
  // The guest paused: what is left is under the floor, so restart at the target.
  const late = scheduleChunk(next.nextTime, 9, CHUNK);
  assert.ok(close(late.at, 9 + TARGET_DELAY));
  assert.ok(TARGET_DELAY > MIN_DELAY && TARGET_DELAY + CHUNK <= MAX_DELAY);
});

test("a burst after a stall never queues more than MAX_DELAY ahead: the excess is dropped", () => {
  let nextTime = 0;
  const now = 1;
  const played = [];
  // 30 frames (600 ms) arrive at once.
  for (let i = 0; i < 30; i++) {
    const r = scheduleChunk(nextTime, now, CHUNK);
    nextTime = r.nextTime;
    if (r.at !== null) played.push(r.at);
  }
  assert.ok(nextTime - now <= MAX_DELAY + 1e-9, `${nextTime - now}`);
  assert.ok(played.length < 30);
  assert.ok(played.every((t) => t - now <= MAX_DELAY));
  // Scheduled back to back from the target, no overlaps.
  for (let i = 1; i < played.length; i++) assert.ok(close(played[i] - played[i - 1], CHUNK));
});
