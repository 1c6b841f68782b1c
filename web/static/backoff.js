// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Reconnection delays: 0.5 s, 1 s, 2 s, 4 s, 8 s, then 10 s, until reset()
// (after a connection that stayed up). Pure, usable from Node.

export class Backoff {
  constructor({ initialMs = 500, maxMs = 10000, factor = 2 } = {}) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.attempts = 0;
  }

  /** The delay before the next attempt, in ms; each call counts an attempt. */
  next() {
    const delay = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempts);
    this.attempts++;
    return delay;
  }

  /** Start again from the initial delay. */
  reset() {
    this.attempts = 0;
  }
}
