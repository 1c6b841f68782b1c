// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Keyboard, pointer, wheel and touch on the screen element → the input
// messages of web/PROTOCOL.md. The pure parts (KeyTracker, buttonName) load in
// Node; attachInput() needs a DOM and is called only by the viewer.

import { linuxKeyCode } from "./keymap.js";
import { contentRect, toGuest } from "./geometry.js";
import { WheelAccumulator } from "./wheel.js";

/** MouseEvent.button → the protocol's button names. */
const BUTTONS = ["left", "middle", "right", "side", "extra"];

export function buttonName(button) {
  return BUTTONS[button];
}

/**
 * Which keys are down, so that each physical press gives one `down` (the
 * guest autorepeats by itself) and one `up`.
 */
export class KeyTracker {
  constructor() {
    this.down = new Set();
  }

  /**
   * One keydown/keyup. Returns { mapped, msg }: `mapped` says the key is
   * the guest's (the browser must not act on it), `msg` is what to send or
   * null (repeats, and releases of keys pressed before we had focus).
   */
  key(code, down, repeat = false) {
    const linux = linuxKeyCode(code);
    if (linux === undefined) return { mapped: false, msg: null };
    if (down) {
      if (repeat || this.down.has(linux)) return { mapped: true, msg: null };
      this.down.add(linux);
      return { mapped: true, msg: { type: "key", code: linux, down: true } };
    }
    if (!this.down.delete(linux)) return { mapped: true, msg: null };
    return { mapped: true, msg: { type: "key", code: linux, down: false } };
  }

  /** Forget every pressed key (the guest is told with one `release`). */
  releaseAll() {
    const any = this.down.size > 0;
    this.down.clear();
    return any;
  }
}

/**
 * Capture input on `target` (a focusable element holding the picture).
 * opts: send(msg), isControl() → bool, surface() → the element showing the
 * picture (video or canvas), guestSize() → {width, height}.
 * Returns a function that detaches every listener.
 */
export function attachInput(target, opts) {
  const { send, isControl, surface, guestSize } = opts;
  const keys = new KeyTracker();
  const wheel = new WheelAccumulator();
  const buttons = new Set();
  const touches = new Set();
  let last = null; // last position sent, to drop repeats

  function map(clientX, clientY) {
    const el = surface();
    const { width: gw, height: gh } = guestSize();
    if (!el || !(gw > 0 && gh > 0)) return null;
    const box = el.getBoundingClientRect();
    // What the element shows: its own picture size when it has one.
    const sw = el.videoWidth || el.width || gw;
    const sh = el.videoHeight || el.height || gh;
    const rect = contentRect(box.width, box.height, sw, sh);
    return toGuest(clientX - box.left, clientY - box.top, rect, gw, gh);
  }

  function moveTo(p) {
    if (last && last.x === p.x && last.y === p.y) return;
    last = { x: p.x, y: p.y };
    send({ type: "move", x: p.x, y: p.y });
  }

  function release() {
    const any = keys.releaseAll() || buttons.size > 0 || touches.size > 0;
    buttons.clear();
    touches.clear();
    wheel.reset();
    if (any && isControl()) send({ type: "release" });
  }

  // Controls drawn over the picture (unmute, messages) are the page's, not the guest's.
  const overlay = (e) => !!(e.target && e.target.closest && e.target.closest("button, .message"));

  const on = [];
  const listen = (el, type, fn, options) => {
    el.addEventListener(type, fn, options);
    on.push(() => el.removeEventListener(type, fn, options));
  };

  listen(target, "keydown", (e) => {
    if (!isControl()) return;
    const { mapped, msg } = keys.key(e.code, true, e.repeat);
    if (!mapped) return;
    e.preventDefault();
    e.stopPropagation();
    if (msg) send(msg);
  });
  listen(target, "keyup", (e) => {
    if (!isControl()) return;
    const { mapped, msg } = keys.key(e.code, false);
    if (!mapped) return;
    e.preventDefault();
    e.stopPropagation();
    if (msg) send(msg);
  });

  listen(target, "pointerdown", (e) => {
    if (e.pointerType === "touch" || overlay(e)) return;
    target.focus({ preventScroll: true });
    if (!isControl()) return;
    const name = buttonName(e.button);
    const p = map(e.clientX, e.clientY);
    if (!name || !p || !p.inside) return;
    e.preventDefault();
    try {
      target.setPointerCapture(e.pointerId);
    } catch {
      // not capturable (synthetic event): drags still work inside the picture
    }
    moveTo(p);
    buttons.add(name);
    send({ type: "button", button: name, down: true, x: p.x, y: p.y });
  });
  listen(target, "pointermove", (e) => {
    if (e.pointerType === "touch" || !isControl()) return;
    if (buttons.size === 0 && overlay(e)) return;
    const p = map(e.clientX, e.clientY);
    if (!p || (!p.inside && buttons.size === 0)) return;
    moveTo(p);
  });
  const up = (e) => {
    if (e.pointerType === "touch" || !isControl()) return;
    const name = buttonName(e.button);
    if (!name || !buttons.delete(name)) return;
    const p = map(e.clientX, e.clientY) || last || { x: 0, y: 0 };
    e.preventDefault();
    send({ type: "button", button: name, down: false, x: p.x, y: p.y });
  };
  listen(target, "pointerup", up);
  listen(target, "pointercancel", () => {
    if (buttons.size) release();
  });
  // Right clicks go to the guest, not to the browser's menu; middle clicks
  // must not start the browser's autoscroll.
  listen(target, "contextmenu", (e) => e.preventDefault());
  listen(target, "mousedown", (e) => {
    if (e.button === 1) e.preventDefault();
  });

  listen(
    target,
    "wheel",
    (e) => {
      if (!isControl()) return;
      e.preventDefault();
      const p = map(e.clientX, e.clientY);
      if (p && p.inside) moveTo(p);
      const dy = wheel.push(e.deltaY, e.deltaMode);
      if (dy !== 0) send({ type: "wheel", dy });
    },
    { passive: false },
  );

  const touch = (phase) => (e) => {
    if (!isControl() || (phase === "start" && overlay(e))) return;
    e.preventDefault();
    target.focus({ preventScroll: true });
    for (const t of e.changedTouches) {
      const p = map(t.clientX, t.clientY);
      if (!p) continue;
      if (phase === "start") {
        if (!p.inside) continue;
        touches.add(t.identifier);
      } else if (!touches.has(t.identifier)) {
        continue;
      }
      if (phase === "end" || phase === "cancel") touches.delete(t.identifier);
      send({ type: "touch", id: t.identifier, phase, x: p.x, y: p.y });
    }
  };
  listen(target, "touchstart", touch("start"), { passive: false });
  listen(target, "touchmove", touch("move"), { passive: false });
  listen(target, "touchend", touch("end"), { passive: false });
  listen(target, "touchcancel", touch("cancel"), { passive: false });

  // Losing focus loses the key-ups: tell the guest to let go of everything.
  listen(target, "blur", release);
  listen(window, "blur", release);
  listen(document, "visibilitychange", () => {
    if (document.visibilityState === "hidden") release();
  });

  return () => {
    release();
    for (const off of on.splice(0)) off();
  };
}
