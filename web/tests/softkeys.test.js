// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { keyForChar, textToKeyMessages, tap } from "../static/softkeys.js";

test("letters, digits and symbols map to US-layout keys", () => {
  assert.deepEqual(keyForChar("a"), { code: "KeyA", shift: false });
  assert.deepEqual(keyForChar("Q"), { code: "KeyQ", shift: true });
  assert.deepEqual(keyForChar("7"), { code: "Digit7", shift: false });
  assert.deepEqual(keyForChar("?"), { code: "Slash", shift: true });
  assert.deepEqual(keyForChar(" "), { code: "Space", shift: false });
  assert.equal(keyForChar("é"), null);
});

test("text becomes presses and releases, Shift around capitals", () => {
  const msgs = textToKeyMessages("Hi!é");
  const codes = msgs.map((m) => `${m.code}${m.down ? "v" : "^"}`).join(" ");
  assert.equal(codes, "42v 35v 35^ 42^ 23v 23^ 42v 2v 2^ 42^");
  assert.deepEqual(tap("Backspace"), [
    { type: "key", code: 14, down: true }, { type: "key", code: 14, down: false }]);
});
