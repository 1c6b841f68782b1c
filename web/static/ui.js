// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// The viewer page's controls: connection state, messages, the unmute,
// microphone, stats and fullscreen buttons. DOM only; no protocol here.

const STATE_WORDS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  failed: "Disconnected",
};

export class ViewerUi {
  constructor(doc) {
    const $ = (id) => doc.getElementById(id);
    this.doc = doc;
    this.screen = $("screen");
    this.video = $("video");
    this.canvas = $("canvas");
    this.audio = $("audio");
    this.stateEl = $("state");
    this.title = $("title");
    this.back = $("back");
    this.message = $("message");
    this.unmuteBtn = $("unmute");
    this.muteBtn = $("mute");
    this.micBtn = $("mic");
    this.keyboardBtn = $("keyboard");
    this.softkb = $("softkb");
    this.statsBtn = $("stats-toggle");
    this.statsEl = $("stats");
    this.fullscreenBtn = $("fullscreen");
    this.roleEl = $("role");
    this.statsBtn.addEventListener("click", () => this.toggleStats());
    this.fullscreenBtn.addEventListener("click", () => this.toggleFullscreen());
    doc.addEventListener("fullscreenchange", () => this.onFullscreenChange());
    // After a click on a control, keys go to the guest again, not to the
    // button (Space or Enter would press it a second time).
    for (const b of doc.querySelectorAll(".bar button")) {
      if (b === this.keyboardBtn) continue; // it focuses the text field instead
      b.addEventListener("click", () => this.screen.focus({ preventScroll: true }));
    }
  }

  setState(state, detail) {
    this.stateEl.dataset.state = state;
    this.stateEl.textContent = STATE_WORDS[state] ?? state;
    this.stateEl.title = detail || "";
    this.doc.body.dataset.state = state;
    if (state === "connected") this.hideMessage();
    else if (state === "reconnecting") this.showMessage(`Reconnecting: ${detail}`);
    else if (state === "connecting") this.showMessage("Connecting…");
  }

  showMessage(text, action = null) {
    this.message.replaceChildren();
    const p = this.doc.createElement("p");
    p.textContent = text;
    this.message.append(p);
    if (action) {
      const b = this.doc.createElement("button");
      b.type = "button";
      b.textContent = action.label;
      b.addEventListener("click", action.run);
      this.message.append(b);
    }
    this.message.hidden = false;
  }

  hideMessage() {
    this.message.hidden = true;
  }

  /** Show the video element (WebRTC) or the canvas (WebSocket transport). */
  useSurface(which) {
    this.video.hidden = which !== "video";
    this.canvas.hidden = which !== "canvas";
  }

  surface() {
    return this.canvas.hidden ? this.video : this.canvas;
  }

  setUnmuteVisible(visible) {
    this.unmuteBtn.hidden = !visible;
  }

  setMuted(muted) {
    this.muteBtn.textContent = muted ? "Sound off" : "Sound on";
    this.muteBtn.setAttribute("aria-pressed", String(muted));
  }

  setMic(available, on, busy = false) {
    this.micBtn.hidden = !available;
    this.micBtn.textContent = busy ? "Mic…" : on ? "Mic on" : "Mic off";
    this.micBtn.setAttribute("aria-pressed", String(on));
  }

  setRole(role) {
    this.roleEl.hidden = role !== "view";
    this.screen.classList.toggle("control", role === "control");
    // Phones and tablets have no keys to capture: offer their on-screen keyboard.
    const touch = globalThis.matchMedia?.("(pointer: coarse)").matches ?? false;
    this.keyboardBtn.hidden = !(touch && role === "control");
  }

  toggleStats(show = this.statsEl.hidden) {
    this.statsEl.hidden = !show;
    this.statsBtn.setAttribute("aria-pressed", String(show));
  }

  setStats(text) {
    this.statsEl.textContent = text;
  }

  async toggleFullscreen() {
    if (this.doc.fullscreenElement) {
      await this.doc.exitFullscreen().catch(() => {});
      return;
    }
    try {
      await this.screen.requestFullscreen({ navigationUI: "hide" });
    } catch {
      // iOS Safari: only a video element can go fullscreen
      this.video.webkitEnterFullscreen?.();
    }
  }

  onFullscreenChange() {
    const full = !!this.doc.fullscreenElement;
    this.fullscreenBtn.setAttribute("aria-pressed", String(full));
    // In fullscreen the Keyboard Lock API lets Escape, Alt+Tab etc. reach the guest.
    const kb = globalThis.navigator?.keyboard;
    if (full) kb?.lock?.().catch(() => {});
    else kb?.unlock?.();
    this.screen.focus({ preventScroll: true });
  }
}
