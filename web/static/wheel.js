// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Wheel events → whole notches for the guest (kbdif carries a wheel as
// notches). Browsers report wheel movement in pixels, lines or pages
// (WheelEvent.deltaMode) and touchpads in many small steps; the remainder
// is kept until it makes a notch. Pure, usable from Node.

export const DOM_DELTA_PIXEL = 0;
export const DOM_DELTA_LINE = 1;
export const DOM_DELTA_PAGE = 2;

/** What one notch of a mouse wheel gives in each delta mode. */
export const PIXELS_PER_NOTCH = 100;
export const LINES_PER_NOTCH = 3;
export const PAGES_PER_NOTCH = 1;
/** The protocol's bound on one message. */
export const MAX_NOTCHES = 10;

export class WheelAccumulator {
  constructor() {
    this.acc = 0; // in notches, fractional
  }

  /**
   * Add one wheel event's deltaY (positive = down/towards the user) and
   * return the whole notches to send now (0 when none; ±MAX_NOTCHES at most).
   */
  push(deltaY, deltaMode = DOM_DELTA_PIXEL) {
    if (!Number.isFinite(deltaY) || deltaY === 0) return 0;
    const per = deltaMode === DOM_DELTA_LINE ? LINES_PER_NOTCH
      : deltaMode === DOM_DELTA_PAGE ? PAGES_PER_NOTCH
      : PIXELS_PER_NOTCH;
    const notches = deltaY / per;
    // A change of direction drops what was left over the other way.
    if (Math.sign(notches) !== Math.sign(this.acc)) this.acc = 0;
    this.acc += notches;
    // A hair of tolerance so that 1/3 + 1/3 + 1/3 lines is one notch.
    const whole = Math.trunc(this.acc + Math.sign(this.acc) * 1e-9);
    if (whole === 0) return 0;
    this.acc -= whole;
    return Math.max(-MAX_NOTCHES, Math.min(MAX_NOTCHES, whole));
  }

  reset() {
    this.acc = 0;
  }
}
