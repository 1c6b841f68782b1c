// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  WheelAccumulator, DOM_DELTA_PIXEL, DOM_DELTA_LINE, DOM_DELTA_PAGE, MAX_NOTCHES,
} from "../static/wheel.js";

test("a mouse notch in pixels is one notch, down positive", () => {
  const w = new WheelAccumulator();
  assert.equal(w.push(100, DOM_DELTA_PIXEL), 1);
  assert.equal(w.push(-100, DOM_DELTA_PIXEL), -1);
});

test("touchpad steps accumulate until they make a notch", () => {
  const w = new WheelAccumulator();
  const sent = [4, 30, 30, 30, 30, 30, 30].map((d) => w.push(d));
  assert.deepEqual(sent, [0, 0, 0, 0, 1, 0, 0]); // 124 px: one notch, 24 kept
});

test("lines: three lines are a notch (Firefox), including thirds", () => {
  const w = new WheelAccumulator();
  assert.equal(w.push(3, DOM_DELTA_LINE), 1);
  assert.equal(w.push(1, DOM_DELTA_LINE), 0);
  assert.equal(w.push(1, DOM_DELTA_LINE), 0);
  assert.equal(w.push(1, DOM_DELTA_LINE), 1);
  assert.equal(w.push(-6, DOM_DELTA_LINE), -2);
});

test("pages count as a notch each", () => {
  const w = new WheelAccumulator();
  assert.equal(w.push(1, DOM_DELTA_PAGE), 1);
  assert.equal(w.push(-2, DOM_DELTA_PAGE), -2);
});

test("a change of direction drops the remainder", () => {
  const w = new WheelAccumulator();
  assert.equal(w.push(90), 0);
  assert.equal(w.push(-20), 0);
  assert.equal(w.push(-80), -1);
});

test("a huge fling is clamped to the protocol's bound", () => {
  const w = new WheelAccumulator();
  assert.equal(w.push(5000), MAX_NOTCHES);
  assert.equal(w.push(-5000), -MAX_NOTCHES);
  assert.equal(w.push(0), 0);
  assert.equal(w.push(NaN), 0);
});
