// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KEYMAP, ISO_105, linuxKeyCode } from "../static/keymap.js";

test("every key of a 105-key ISO keyboard is mapped, once", () => {
  assert.equal(ISO_105.length, 105);
  assert.equal(new Set(ISO_105).size, 105);
  for (const code of ISO_105) assert.ok(linuxKeyCode(code) > 0, `${code} is not mapped`);
});

test("the keys that differ between layouts map to their own codes", () => {
  assert.equal(linuxKeyCode("KeyA"), 30);
  assert.equal(linuxKeyCode("IntlBackslash"), 86); // KEY_102ND
  assert.equal(linuxKeyCode("Backslash"), 43);
  assert.equal(linuxKeyCode("IntlRo"), 89);
  assert.equal(linuxKeyCode("IntlYen"), 124);
  assert.equal(linuxKeyCode("ContextMenu"), 127); // KEY_COMPOSE
  assert.equal(linuxKeyCode("MetaLeft"), 125);
  assert.equal(linuxKeyCode("AltRight"), 100);
  assert.equal(linuxKeyCode("F24"), 194);
  assert.equal(linuxKeyCode("NumpadEnter"), 96);
});

test("unknown codes are not mapped (and prototype names are not codes)", () => {
  assert.equal(linuxKeyCode("Fn"), undefined);
  assert.equal(linuxKeyCode(""), undefined);
  assert.equal(linuxKeyCode("toString"), undefined);
  assert.equal(linuxKeyCode("__proto__"), undefined);
});

test("each entry names its KEY_ constant; numbers are distinct apart from aliases", () => {
  const byNumber = new Map();
  for (const [code, [num, name]] of Object.entries(KEYMAP)) {
    assert.ok(Number.isInteger(num) && num > 0 && num < 0x300, code);
    assert.match(name, /^KEY_[0-9A-Z_]+$/, code);
    const prev = byNumber.get(num);
    if (prev) assert.equal(prev, name, `${code}: ${num} is both ${prev} and ${name}`);
    byNumber.set(num, name);
  }
});
