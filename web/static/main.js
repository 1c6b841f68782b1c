// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// The viewer page (/view/{domid}): wires the session, the transports, sound,
// microphone, input and the controls together, and exposes window.pvgate
// for tests and benchmarks.

import { viewerParams, sessionUrl, withQuery, explainStatus, basePath } from "./common.js";
import { Session } from "./session.js";
import { RtcMedia, rtcCodecs } from "./webrtc.js";
import { WsMedia, wsCodecs } from "./wsmedia.js";
import { AudioOut } from "./audio.js";
import { attachInput } from "./input.js";
import { formatStats } from "./stats.js";
import { ViewerUi } from "./ui.js";
import { textToKeyMessages, tap } from "./softkeys.js";

const params = viewerParams(location);
const base = basePath(location.pathname);
const ui = new ViewerUi(document);
ui.back.href = withQuery(base, { token: params.token });

let guest = { width: 0, height: 0 };
let muted = false;
let micTrack = null;
let micWanted = params.mic;
let session = null;

/** The page's state for tests and benchmarks (see web/README.md). */
const pv = {
  state: "connecting",
  transport: null,
  role: null,
  codec: null,
  welcome: null,
  stats: {},
  framesDecoded: 0,
  errors: [],
  lastFrame: null,
  grabFrame,
  audioPeak,
  audioOnsets,
  send,
  disconnect,
};
window.pvgate = pv;

function recordError(text) {
  pv.errors.push(String(text));
  if (pv.errors.length > 200) pv.errors.shift();
  console.warn("pvgate:", text);
}

const audio = new AudioOut(ui.audio, (blocked) => ui.setUnmuteVisible(blocked && !muted));

function onFrame(meta) {
  pv.framesDecoded++;
  pv.lastFrame = meta;
}

/** The current video frame at guest size: {width, height, data: base64 RGBA}. */
function grabFrame() {
  const media = session && session.media;
  const c = media && media.grabCanvas ? media.grabCanvas() : null;
  if (!c) return null;
  const img = c.getContext("2d").getImageData(0, 0, c.width, c.height);
  return {
    width: c.width,
    height: c.height,
    data: base64(img.data),
    presentedAt: pv.lastFrame ? pv.lastFrame.presentedAt : undefined,
  };
}

function base64(bytes) {
  let s = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(s);
}

/** The strongest frequency of the received sound in [loHz, hiHz]: {freq, db}. */
function audioPeak(loHz, hiHz) {
  return audio.peak(loHz, hiHz);
}

/** Onsets of sound after silence over `ms`, as wall-clock ms at the output. */
function audioOnsets(ms) {
  return audio.onsets(ms);
}

/** Send a raw input message (data channel, or the WebSocket). */
function send(msg) {
  return session ? session.sendInput(msg) : false;
}

/** Drop the transport as a network failure would; the page reconnects. */
function disconnect() {
  if (session) session.disconnect();
}

async function codecs(transport) {
  let list = transport === "webrtc" ? rtcCodecs() : await wsCodecs();
  if (params.codec) list = list.includes(params.codec) ? [params.codec] : [];
  return list;
}

async function check() {
  try {
    const headers = params.token ? { Authorization: `Bearer ${params.token}` } : {};
    const rsp = await fetch(`${base}api/guests/${params.domid}`, { headers, cache: "no-store" });
    return rsp.status;
  } catch {
    return null;
  }
}

function makeMedia(transport, welcome, s) {
  if (transport === "websocket") {
    if (typeof globalThis.VideoDecoder !== "function") {
      s.fail("This browser cannot play the WebSocket stream (it lacks WebCodecs). " +
        "Use a current Chrome, Edge or Firefox, or a network that lets WebRTC through.");
      return null;
    }
    ui.useSurface("canvas");
    const m = new WsMedia(s, welcome, { canvas: ui.canvas, audio, onFrame, onError: recordError });
    if (micTrack && welcome.mic) m.setMicTrack(micTrack);
    return m;
  }
  ui.useSurface("video");
  return new RtcMedia(s, welcome, {
    video: ui.video,
    audio,
    micTrack: () => micTrack,
    onFrame,
    onError: recordError,
  });
}

async function setMic(on) {
  micWanted = on;
  const media = session && session.media;
  if (!on) {
    if (media && media.setMicTrack) await media.setMicTrack(null);
    if (micTrack) micTrack.stop();
    micTrack = null;
    ui.setMic(!!pv.welcome?.mic, false);
    return;
  }
  if (!micTrack) {
    ui.setMic(true, false, true);
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      micTrack = stream.getAudioTracks()[0];
    } catch (e) {
      micWanted = false;
      ui.setMic(true, false);
      const why = e.name === "NotAllowedError"
        ? "The microphone was not allowed. Allow it in the browser's site settings and click Mic again."
        : `No microphone: ${e.message}`;
      recordError(why);
      flash(why);
      return;
    }
  }
  const current = session && session.media;
  if (current && current.setMicTrack) await current.setMicTrack(micTrack);
  ui.setMic(true, true);
}

let flashTimer = 0;
function flash(text) {
  if (pv.state !== "connected") return;
  ui.showMessage(text);
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    if (pv.state === "connected") ui.hideMessage();
  }, 6000);
}

function showStats(r) {
  ui.setStats(formatStats(r, { transport: pv.transport, codec: pv.codec }));
}

function start() {
  if (!Number.isFinite(params.domid)) {
    pv.state = "failed";
    ui.setState("failed", "no guest in the URL");
    ui.showMessage("This address names no guest. Open a guest from the guest list.");
    return;
  }
  document.title = `dom${params.domid} — pvgate`;
  ui.title.textContent = `dom${params.domid}`;
  ui.setMuted(false);
  ui.setMic(false, false);
  ui.toggleStats(params.stats);
  audio.context();

  session = new Session({
    url: () => sessionUrl(location, params.domid, params.token),
    check,
    display: params.display,
    forced: params.transport,
    codecs,
    wantMic: () => !!navigator.mediaDevices?.getUserMedia,
    audio: true,
    makeMedia,
    on: {
      state(state, detail) {
        pv.state = state;
        ui.setState(state, detail);
        if (state === "failed" && detail) {
          ui.showMessage(detail, { label: "Try again", run: () => session.retry() });
        }
      },
      welcome(w) {
        pv.welcome = w;
        pv.role = w.role ?? null;
        pv.codec = w.video?.codec ?? null;
        guest = { width: w.display?.width ?? 0, height: w.display?.height ?? 0 };
        const name = w.guest?.name || `dom${params.domid}`;
        ui.title.textContent = params.display ? `${name} · display ${params.display}` : name;
        document.title = `${name} — pvgate`;
        ui.setRole(pv.role);
        const micOk = !!w.mic && !!navigator.mediaDevices?.getUserMedia;
        ui.setMic(micOk, !!micTrack);
        if (micOk && micWanted && !micTrack) setMic(true);
      },
      transport(t) {
        pv.transport = t;
      },
      message(msg) {
        if (msg.type === "resolution" && msg.width > 0 && msg.height > 0) {
          guest = { width: msg.width, height: msg.height };
          if (pv.welcome?.display) {
            pv.welcome.display.width = msg.width;
            pv.welcome.display.height = msg.height;
          }
        }
      },
      error(text, fatal, status) {
        recordError(text);
        if (status === 401 || status === 403) {
          ui.showMessage(explainStatus(status, `guest ${params.domid}`), {
            label: "Try again",
            run: () => session.retry(),
          });
        } else if (!fatal) {
          flash(text);
        }
      },
      stats(r) {
        pv.stats = r;
        showStats(r);
      },
    },
  });
  session.start();

  attachInput(ui.screen, {
    send: (m) => session.sendInput(m),
    isControl: () => pv.role === "control",
    surface: () => ui.surface(),
    guestSize: () => guest,
  });
  ui.screen.focus({ preventScroll: true });

  // Any interaction is a gesture that may start the sound.
  const unlock = () => {
    if (audio.blocked && !muted) audio.unlock();
  };
  document.addEventListener("pointerdown", unlock, true);
  document.addEventListener("keydown", unlock, true);
  ui.unmuteBtn.addEventListener("click", () => {
    audio.unlock();
    ui.screen.focus({ preventScroll: true });
  });
  ui.muteBtn.addEventListener("click", () => {
    muted = !muted;
    audio.setMuted(muted);
    if (!muted) audio.unlock();
    ui.setMuted(muted);
    ui.setUnmuteVisible(audio.blocked && !muted);
  });
  ui.micBtn.addEventListener("click", () => setMic(!micTrack));

  // The on-screen keyboard of phones types text into a hidden field; it goes
  // to the guest as key presses. The field holds one invisible character so
  // that Backspace has something to delete (and fires an event) and is reset
  // after every change; words composed by an IME are sent when composed.
  const SENTINEL = "\u200b";
  const field = ui.softkb;
  const resetField = () => {
    field.value = SENTINEL;
    field.setSelectionRange(1, 1);
  };
  const typeText = (text) => {
    if (pv.role !== "control") return;
    for (const m of textToKeyMessages(text)) session.sendInput(m);
  };
  ui.keyboardBtn.addEventListener("click", () => {
    field.focus({ preventScroll: true });
    resetField();
  });
  field.addEventListener("focus", resetField);
  field.addEventListener("input", (e) => {
    if (e.isComposing) return;
    const v = field.value;
    if (!v.startsWith(SENTINEL)) {
      if (pv.role === "control") for (const m of tap("Backspace")) session.sendInput(m);
      typeText(v);
    } else {
      typeText(v.slice(SENTINEL.length));
    }
    resetField();
  });
  field.addEventListener("compositionend", () => {
    const v = field.value;
    typeText(v.startsWith(SENTINEL) ? v.slice(SENTINEL.length) : v);
    resetField();
  });
  field.addEventListener("keydown", (e) => {
    // Keys with a physical code are sent by the screen's own key handler.
    if (e.code && e.code !== "Unidentified" && e.key !== "Unidentified") return;
    if (e.key === "Enter") {
      e.preventDefault();
      if (pv.role === "control") for (const m of tap("Enter")) session.sendInput(m);
    }
  });
}

start();
