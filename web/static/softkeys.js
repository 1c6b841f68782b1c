// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Text typed on a phone's on-screen keyboard → key presses for the guest.
// Soft keyboards send text, not physical keys, so the text is typed on a
// US layout (the guest should use one for this to give the same characters).
// Pure, usable from Node.

import { linuxKeyCode } from "./keymap.js";

const SHIFTED = {
  "!": "Digit1", "@": "Digit2", "#": "Digit3", $: "Digit4", "%": "Digit5", "^": "Digit6",
  "&": "Digit7", "*": "Digit8", "(": "Digit9", ")": "Digit0", _: "Minus", "+": "Equal",
  "{": "BracketLeft", "}": "BracketRight", "|": "Backslash", ":": "Semicolon", '"': "Quote",
  "~": "Backquote", "<": "Comma", ">": "Period", "?": "Slash",
};
const PLAIN = {
  " ": "Space", "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight",
  "\\": "Backslash", ";": "Semicolon", "'": "Quote", "`": "Backquote", ",": "Comma",
  ".": "Period", "/": "Slash", "\n": "Enter", "\t": "Tab",
};

/** The key (KeyboardEvent.code) and Shift state that type `ch` on a US layout, or null. */
export function keyForChar(ch) {
  if (/^[a-z]$/.test(ch)) return { code: `Key${ch.toUpperCase()}`, shift: false };
  if (/^[A-Z]$/.test(ch)) return { code: `Key${ch}`, shift: true };
  if (/^[0-9]$/.test(ch)) return { code: `Digit${ch}`, shift: false };
  if (PLAIN[ch]) return { code: PLAIN[ch], shift: false };
  if (SHIFTED[ch]) return { code: SHIFTED[ch], shift: true };
  return null;
}

/** The `key` messages that type `text` (characters with no key are skipped). */
export function textToKeyMessages(text) {
  const shift = linuxKeyCode("ShiftLeft");
  const out = [];
  for (const ch of text) {
    const k = keyForChar(ch);
    if (!k) continue;
    const code = linuxKeyCode(k.code);
    if (k.shift) out.push({ type: "key", code: shift, down: true });
    out.push({ type: "key", code, down: true }, { type: "key", code, down: false });
    if (k.shift) out.push({ type: "key", code: shift, down: false });
  }
  return out;
}

/** A tap of one named key (Backspace, Enter, …). */
export function tap(code) {
  const n = linuxKeyCode(code);
  return [{ type: "key", code: n, down: true }, { type: "key", code: n, down: false }];
}
