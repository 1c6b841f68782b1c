// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// One viewer's connection to the gateway: the session WebSocket (signalling,
// and media for the WebSocket transport), the choice of transport with the
// fall back from WebRTC to WebSocket, and reconnection with backoff.
// web/PROTOCOL.md is the contract.

import { Backoff } from "./backoff.js";
import { rates, report } from "./stats.js";

/** How long WebRTC may take to connect before the WebSocket transport is used. */
export const RTC_CONNECT_TIMEOUT_MS = 5000;
/** A connection that stayed up this long resets the backoff. */
export const GOOD_CONNECTION_MS = 3000;

/**
 * opts:
 *  url(): the session WebSocket URL
 *  check(): Promise<number|null>, the HTTP status of the guest's API URL (to
 *           tell a refused token from a network error), null if unreachable
 *  display, forced ("webrtc"|"websocket"|null)
 *  codecs(transport): Promise<string[]>
 *  wantMic(): bool, audio: bool
 *  makeMedia(transport, welcome, session): the media object of the transport
 *  on: { state(state, detail), welcome(w), message(msg), error(text, fatal),
 *        stats(r), transport(name) }
 */
export class Session {
  constructor(opts) {
    this.opts = opts;
    this.backoff = new Backoff();
    this.state = "connecting";
    this.welcome = null;
    this.media = null;
    this.ws = null;
    this.epoch = 0;
    this.timers = new Set();
    this.rttMs = null;
    this.preferWebSocket =
      opts.forced === "websocket" ||
      (opts.forced !== "webrtc" && typeof globalThis.RTCPeerConnection !== "function");
    this.prevCounters = null;
    this.statsTick = 0;
  }

  start() {
    this.connect();
    this.every(1000, () => this.collectStats());
    this.every(2000, () => this.sendText({ type: "ping", t: performance.now() }));
  }

  /** The transport to ask for in `hello`. */
  transport() {
    if (this.opts.forced) return this.opts.forced;
    return this.preferWebSocket ? "websocket" : "webrtc";
  }

  setState(state, detail = "") {
    this.state = state;
    this.opts.on.state(state, detail);
  }

  async connect() {
    const epoch = ++this.epoch;
    const transport = this.transport();
    let codecs;
    try {
      codecs = await this.opts.codecs(transport);
    } catch {
      codecs = ["h264", "vp8"];
    }
    if (epoch !== this.epoch) return;
    if (codecs.length === 0) {
      if (transport === "webrtc" && !this.opts.forced) {
        this.preferWebSocket = true;
        return this.connect();
      }
      return this.fail(`This browser cannot decode H.264 or VP8 over ${transport}.`);
    }
    let ws;
    try {
      ws = new WebSocket(this.opts.url());
    } catch (e) {
      return this.fail(`Cannot open the session: ${e.message}`);
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({
        type: "hello",
        transport,
        display: this.opts.display,
        codecs,
        audio: this.opts.audio !== false,
        mic: this.opts.wantMic(),
      }));
    };
    ws.onmessage = (ev) => {
      if (epoch !== this.epoch) return;
      if (typeof ev.data === "string") {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        this.onText(msg, epoch);
      } else if (this.media && this.media.onBinary) {
        this.media.onBinary(ev.data);
      }
    };
    ws.onclose = (ev) => {
      if (epoch !== this.epoch) return;
      const why = ev.reason ? `: ${ev.reason}` : "";
      this.dropped(opened ? `the connection closed${why}` : null);
    };
  }

  onText(msg, epoch) {
    switch (msg.type) {
      case "welcome": {
        this.welcome = msg;
        this.opts.on.welcome(msg);
        const transport = msg.transport === "websocket" ? "websocket" : "webrtc";
        this.opts.on.transport(transport);
        this.prevCounters = null;
        this.media = this.opts.makeMedia(transport, msg, this);
        if (transport === "webrtc" && !this.opts.forced) {
          this.later(RTC_CONNECT_TIMEOUT_MS, () => {
            if (epoch !== this.epoch || this.state === "connected") return;
            // WebRTC did not get through (UDP blocked, no TURN): use the
            // WebSocket from now on, at once.
            this.preferWebSocket = true;
            this.teardown();
            this.connect();
          });
        }
        break;
      }
      case "offer":
      case "ice":
        if (this.media && this.media.onSignal) this.media.onSignal(msg);
        break;
      case "pong":
        if (typeof msg.t === "number") this.rttMs = performance.now() - msg.t;
        break;
      case "error":
        this.opts.on.error(String(msg.message ?? "error"), !!msg.fatal);
        if (msg.fatal) this.fail(String(msg.message ?? "The gateway ended the session."));
        break;
      default:
        break;
    }
    this.opts.on.message(msg);
  }

  /** Called by the media object when media flows. */
  mediaConnected() {
    if (this.state === "connected") return;
    this.setState("connected");
    const epoch = this.epoch;
    this.later(GOOD_CONNECTION_MS, () => {
      if (epoch === this.epoch && this.state === "connected") this.backoff.reset();
    });
  }

  /** Called by the media object when its transport broke. */
  mediaFailed(reason) {
    this.dropped(reason);
  }

  async dropped(reason) {
    if (this.state === "failed") return;
    this.teardown();
    const epoch = this.epoch;
    if (reason === null) {
      // The WebSocket never opened: a refused token looks like a network
      // error to the page, so ask the API what it thinks.
      const status = await this.opts.check();
      if (epoch !== this.epoch || this.state === "failed") return;
      if (status === 401 || status === 403) return this.fail(null, status);
      reason = status === 404 ? "the guest is not running (waiting for it)"
        : status === null ? "the gateway is not reachable"
        : "the session could not be opened";
    }
    const delay = this.backoff.next();
    this.setState("reconnecting", `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.later(delay, () => {
      if (epoch === this.epoch) this.connect();
    });
  }

  fail(message, status = null) {
    this.teardown();
    this.setState("failed", message ?? "");
    this.opts.on.error(message ?? `the gateway refused the session (HTTP ${status})`, true, status);
  }

  /** From "failed": try again now. */
  retry() {
    this.teardown();
    this.backoff.reset();
    this.setState("connecting");
    this.connect();
  }

  /** Drop the transport as a network failure would (tests, reconnect). */
  disconnect() {
    this.dropped("disconnected");
  }

  teardown() {
    this.epoch++;
    for (const t of this.timers) {
      if (t.once) clearTimeout(t.id);
    }
    for (const t of [...this.timers]) if (t.once) this.timers.delete(t);
    if (this.media) {
      try {
        this.media.close();
      } catch {
        // already closed
      }
      this.media = null;
    }
    if (this.ws) {
      const ws = this.ws;
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
      this.ws = null;
    }
  }

  /** Send a JSON message on the session WebSocket. */
  sendText(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  sendBinary(buf) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(buf);
      return true;
    }
    return false;
  }

  /** An input message: the data channel when it is open, else the WebSocket. */
  sendInput(msg) {
    if (this.media && this.media.sendInput && this.media.sendInput(msg)) return true;
    return this.sendText(msg);
  }

  async collectStats() {
    const media = this.media;
    if (!media || this.state !== "connected") return;
    let counters;
    try {
      counters = await media.counters();
    } catch {
      return;
    }
    if (media !== this.media) return;
    if (counters.rttMs == null && this.rttMs != null) counters.rttMs = this.rttMs;
    const first = this.prevCounters === null;
    const r = rates(this.prevCounters, counters);
    this.prevCounters = counters;
    this.opts.on.stats(r);
    // Rates need two samples; the first one after (re)connecting has none.
    if (!first && ++this.statsTick % 2 === 0) this.sendText(report(r));
  }

  later(ms, fn) {
    const t = { once: true, id: 0 };
    t.id = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  every(ms, fn) {
    const t = { once: false, id: setInterval(fn, ms) };
    this.timers.add(t);
  }
}
