// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KeyTracker, buttonName } from "../static/input.js";

test("one down per physical press: repeats are dropped but still the guest's", () => {
  const k = new KeyTracker();
  assert.deepEqual(k.key("KeyA", true), { mapped: true, msg: { type: "key", code: 30, down: true } });
  assert.deepEqual(k.key("KeyA", true, true), { mapped: true, msg: null });
  assert.deepEqual(k.key("KeyA", true), { mapped: true, msg: null }); // repeat without the flag
  assert.deepEqual(k.key("KeyA", false), { mapped: true, msg: { type: "key", code: 30, down: false } });
});

test("a release of a key pressed before focus is not sent", () => {
  const k = new KeyTracker();
  assert.deepEqual(k.key("ShiftLeft", false), { mapped: true, msg: null });
});

test("unmapped keys are left to the browser", () => {
  const k = new KeyTracker();
  assert.deepEqual(k.key("Fn", true), { mapped: false, msg: null });
});

test("releaseAll forgets pressed keys", () => {
  const k = new KeyTracker();
  k.key("ControlLeft", true);
  k.key("AltLeft", true);
  assert.equal(k.releaseAll(), true);
  assert.equal(k.releaseAll(), false);
  assert.equal(k.key("ControlLeft", true).msg.down, true);
});

test("mouse buttons have the protocol's names", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(buttonName),
    ["left", "middle", "right", "side", "extra", undefined]);
});
