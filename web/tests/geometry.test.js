// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { contentRect, toGuest } from "../static/geometry.js";

test("a 16:9 picture in a tall box is letterboxed top and bottom", () => {
  const r = contentRect(1280, 1000, 1280, 720);
  assert.deepEqual(r, { x: 0, y: 140, width: 1280, height: 720 });
});

test("a 16:9 picture in a wide box is pillarboxed left and right", () => {
  const r = contentRect(2000, 720, 1280, 720);
  assert.deepEqual(r, { x: 360, y: 0, width: 1280, height: 720 });
});

test("points map to guest pixels, scaled, letterbox excluded", () => {
  // 1920×1080 guest shown in a 960×700 box: 960×540 at y = 80.
  const r = contentRect(960, 700, 1920, 1080);
  assert.deepEqual(r, { x: 0, y: 80, width: 960, height: 540 });
  assert.deepEqual(toGuest(0, 80, r, 1920, 1080), { x: 0, y: 0, inside: true });
  assert.deepEqual(toGuest(480, 350, r, 1920, 1080), { x: 960, y: 540, inside: true });
  assert.deepEqual(toGuest(959.9, 619.9, r, 1920, 1080), { x: 1919, y: 1079, inside: true });
});

test("points in the bars are outside and clamped to the display's edge", () => {
  const r = contentRect(960, 700, 1920, 1080);
  assert.deepEqual(toGuest(100, 10, r, 1920, 1080), { x: 200, y: 0, inside: false });
  assert.deepEqual(toGuest(100, 690, r, 1920, 1080), { x: 200, y: 1079, inside: false });
  assert.deepEqual(toGuest(-5, 300, r, 1920, 1080), { x: 0, y: 440, inside: false });
  assert.deepEqual(toGuest(960, 300, r, 1920, 1080), { x: 1919, y: 440, inside: false });
});

test("a picture shown smaller than the guest (phone) still maps to guest pixels", () => {
  const r = contentRect(390, 600, 1280, 720);
  const p = toGuest(r.x + r.width / 4, r.y + r.height / 2, r, 1280, 720);
  assert.deepEqual(p, { x: 320, y: 360, inside: true });
});

test("an empty box or picture does not divide by zero", () => {
  assert.deepEqual(contentRect(0, 0, 1280, 720), { x: 0, y: 0, width: 0, height: 0 });
  assert.deepEqual(contentRect(100, 50, 0, 0), { x: 0, y: 0, width: 100, height: 50 });
});
