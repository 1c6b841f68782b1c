// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// A stand-in gateway for working on the web client without Xen or the Rust
// build: serves web/, a fake guest list and thumbnail, and the session
// WebSocket with the WebSocket transport only (web/PROTOCOL.md), streaming
// ffmpeg's test pattern (H.264 or VP8) and a 440 Hz Opus tone. Input and
// other client messages are printed. Node only, no packages; needs ffmpeg.
//
//   node web/tests/mock-gateway.mjs [port]      then open /view/5?token=t
//
// Not a test (node --test does not pick it up); the real tests are the
// *.test.js files here and the browser tests in tests/browser.

import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PORT = Number(process.argv[2] || 8098);
const TMP = fs.mkdtempSync("/tmp/pvgate-mock-");
const W = 640;
const H = 360;

function ffmpeg(args) {
  execFileSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", ...args]);
}
const src = ["-f", "lavfi", "-i", `testsrc2=size=${W}x${H}:rate=30`, "-t", "10"];
ffmpeg([...src, "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-g", "30",
  "-x264-params", "aud=1:repeat-headers=1", "-bsf:v", "h264_mp4toannexb", "-f", "h264", `${TMP}/v.h264`]);
ffmpeg([...src, "-c:v", "libvpx", "-deadline", "realtime", "-g", "30", "-f", "ivf", `${TMP}/v.ivf`]);
ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "10", "-ac", "2",
  "-c:a", "libopus", "-frame_duration", "20", "-f", "ogg", `${TMP}/a.ogg`]);
ffmpeg([...src.slice(0, 4), "-frames:v", "1", "-vf", "scale=320:180", `${TMP}/thumb.jpg`]);

/** H.264 access units, split at access unit delimiters (NAL type 9). */
function h264Units(buf) {
  const starts = [];
  for (let i = 0; i + 4 < buf.length; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 0 && buf[i + 3] === 1 && (buf[i + 4] & 0x1f) === 9) {
      starts.push(i);
    }
  }
  return starts.map((s, k) => {
    const au = buf.subarray(s, starts[k + 1] ?? buf.length);
    let key = false;
    for (let i = 0; i + 3 < au.length; i++) {
      if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1 && (au[i + 3] & 0x1f) === 5) key = true;
    }
    return { data: au, key };
  });
}

function ivfFrames(buf) {
  const out = [];
  let off = buf.readUInt16LE(6);
  while (off + 12 <= buf.length) {
    const size = buf.readUInt32LE(off);
    const data = buf.subarray(off + 12, off + 12 + size);
    out.push({ data, key: (data[0] & 1) === 0 });
    off += 12 + size;
  }
  return out;
}

function oggPackets(buf) {
  const packets = [];
  let off = 0;
  let cur = [];
  while (off + 27 <= buf.length && buf.toString("latin1", off, off + 4) === "OggS") {
    const nseg = buf[off + 26];
    const table = buf.subarray(off + 27, off + 27 + nseg);
    let p = off + 27 + nseg;
    for (const len of table) {
      cur.push(buf.subarray(p, p + len));
      p += len;
      if (len < 255) {
        packets.push(Buffer.concat(cur));
        cur = [];
      }
    }
    off = p;
  }
  return packets.slice(2); // OpusHead, OpusTags
}

const video = { h264: h264Units(fs.readFileSync(`${TMP}/v.h264`)), vp8: ivfFrames(fs.readFileSync(`${TMP}/v.ivf`)) };
const audio = oggPackets(fs.readFileSync(`${TMP}/a.ogg`));
const thumb = fs.readFileSync(`${TMP}/thumb.jpg`);
fs.rmSync(TMP, { recursive: true, force: true }); // all in memory now

const guest = {
  domid: 5, name: "guest5", tenant: "demo",
  displays: [{ index: 0, device: 0, connector: 0, width: W, height: H }],
  sound: [{ device: 0, stream: 0, direction: "playback", open: true }],
  input: true, viewers: 0,
};

const TYPES = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml" };

function file(res, rel) {
  const p = path.join(WEB, rel);
  if (!p.startsWith(WEB) || !fs.existsSync(p)) {
    res.writeHead(404).end("not found\n");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[path.extname(p).slice(1)] || "application/octet-stream", "cache-control": "no-cache" });
  res.end(fs.readFileSync(p));
}

function authorised(req, url) {
  const token = url.searchParams.get("token") || (req.headers.authorization || "").replace(/^Bearer /, "");
  return token !== "" && token !== "bad";
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const p = url.pathname;
  if (p === "/") return file(res, "index.html");
  if (/^\/view\/\d+$/.test(p)) return file(res, "view.html");
  if (p.startsWith("/static/")) return file(res, p.slice(1));
  if (p.startsWith("/api/") && !authorised(req, url)) {
    res.writeHead(401, { "content-type": "application/json" }).end('{"error":"no token"}');
    return;
  }
  if (p === "/api/guests") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify([guest]));
  } else if (p === "/api/guests/5") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(guest));
  } else if (p === "/api/guests/5/displays/0/thumbnail.jpg") {
    res.writeHead(200, { "content-type": "image/jpeg", "cache-control": "no-store" }).end(thumb);
  } else {
    res.writeHead(404).end("not found\n");
  }
});

function wsFrame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
    : (() => {
      const b = Buffer.alloc(10);
      b[0] = 0x80 | opcode;
      b[1] = 127;
      b.writeBigUInt64BE(BigInt(n), 2);
      return b;
    })();
  return Buffer.concat([head, payload]);
}

function media(kind, flags, ts, data) {
  const h = Buffer.alloc(12);
  h[0] = kind;
  h[1] = flags;
  h.writeBigUInt64BE(BigInt(ts), 4);
  return Buffer.concat([h, data]);
}

server.on("upgrade", (req, socket) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/api/guests/5/session" || !authorised(req, url)) {
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
    return;
  }
  const accept = crypto.createHash("sha1")
    .update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.setNoDelay(true);
  const sendText = (o) => socket.write(wsFrame(1, Buffer.from(JSON.stringify(o))));
  const sendBin = (b) => socket.write(wsFrame(2, b));
  let timers = [];
  let frames = null;
  let vi = 0;
  let ai = 0;
  let wantKey = true;
  const t0 = Date.now();
  guest.viewers++;

  function onMessage(msg) {
    if (msg.type === "hello" && msg.transport === "webrtc" && process.env.MOCK_RTC_SILENT) {
      // A gateway whose WebRTC never connects: the page must fall back.
      sendText({ type: "welcome", session: "s", role: "control", guest, display: { index: 0, width: W, height: H },
        transport: "webrtc", video: { codec: "h264" }, audio: null, mic: false, ice_servers: [] });
      console.log("welcomed a WebRTC hello and will never offer");
    } else if (msg.type === "hello") {
      const codec = (msg.codecs || []).includes("h264") ? "h264" : "vp8";
      frames = video[codec];
      sendText({
        type: "welcome", session: crypto.randomUUID(), role: url.searchParams.get("token") === "view" ? "view" : "control",
        guest, display: { index: 0, width: W, height: H }, transport: "websocket", video: { codec },
        audio: { codec: "opus", rate: 48000, channels: 2 }, mic: true, ice_servers: [],
      });
      timers.push(setInterval(() => {
        if (wantKey) {
          while (!frames[vi % frames.length].key) vi++;
          wantKey = false;
        }
        const f = frames[vi++ % frames.length];
        sendBin(media(1, f.key ? 1 : 0, (Date.now() - t0) * 1000, f.data));
      }, 1000 / 30));
      timers.push(setInterval(() => {
        sendBin(media(2, 0, ai * 20000, audio[ai++ % audio.length]));
      }, 20));
    } else if (msg.type === "keyframe") {
      wantKey = true;
      console.log("client asked for a keyframe");
    } else if (msg.type === "ping") {
      sendText({ type: "pong", t: msg.t });
    } else {
      console.log("client:", JSON.stringify(msg));
    }
  }

  let buf = Buffer.alloc(0);
  let micFrames = 0;
  socket.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < data.length; i++) data[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);
      if (op === 1) onMessage(JSON.parse(data.toString()));
      else if (op === 2 && data[0] === 3 && ++micFrames % 50 === 1) console.log(`microphone: ${micFrames} Opus frames`);
      else if (op === 8) socket.end();
    }
  });
  const stop = () => {
    timers.forEach(clearInterval);
    timers = [];
    guest.viewers = Math.max(0, guest.viewers - 1);
  };
  socket.on("close", stop);
  socket.on("error", stop);
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`mock gateway: http://127.0.0.1:${PORT}/view/5?token=t  (list: /?token=t)`);
});
