// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// The WebRTC transport: the gateway offers (one video, one audio m-line and
// the `input` data channel), the page answers, ICE trickles both ways over
// the session WebSocket. The microphone is the audio track of the answer.

import { rtcCounters } from "./stats.js";

/** Video codecs this browser receives over WebRTC, in the protocol's names. */
export function rtcCodecs() {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.("video");
  if (!caps) return ["h264", "vp8"];
  const have = new Set(caps.codecs.map((c) => c.mimeType.toLowerCase()));
  return ["h264", "vp8"].filter((c) => have.has(`video/${c}`));
}

export class RtcMedia {
  /**
   * env: { video (HTMLVideoElement), audio (AudioOut), micTrack() → track|null,
   *        onFrame(meta), onError(text) }
   */
  constructor(session, welcome, env) {
    this.session = session;
    this.welcome = welcome;
    this.env = env;
    this.closed = false;
    this.pendingIce = [];
    this.haveRemote = false;
    this.channel = null;
    this.frames = 0;
    this.audioTransceiver = null;
    this.disconnectTimer = 0;
    const iceServers = (welcome.ice_servers || []).map((s) => {
      const o = { urls: s.urls };
      if (s.username) o.username = s.username;
      if (s.credential) o.credential = s.credential;
      return o;
    });
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      session.sendText(c
        ? { type: "ice", candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }
        : { type: "ice", candidate: null, sdpMid: null, sdpMLineIndex: null });
    };
    pc.ontrack = (e) => this.onTrack(e);
    pc.ondatachannel = (e) => {
      if (e.channel.label === "input") this.channel = e.channel;
    };
    pc.onconnectionstatechange = () => this.onConnectionState();
  }

  onTrack(e) {
    if (this.closed) return;
    const track = e.track;
    try {
      // A remote desktop wants the frame now, not smooth playout.
      if ("jitterBufferTarget" in e.receiver) e.receiver.jitterBufferTarget = 0;
      // Chrome's older knob: render as soon as decoded (minimum playout delay 0).
      if ("playoutDelayHint" in e.receiver) e.receiver.playoutDelayHint = 0;
    } catch {
      // not supported
    }
    if (track.kind === "video") {
      const video = this.env.video;
      video.srcObject = new MediaStream([track]);
      video.muted = true;
      video.play().catch(() => {});
      this.watchFrames(video);
    } else if (track.kind === "audio") {
      this.env.audio.attachStream(new MediaStream([track]));
    }
  }

  watchFrames(video) {
    if (typeof video.requestVideoFrameCallback !== "function") return;
    const cb = (now, md) => {
      if (this.closed) return;
      this.frames++;
      this.env.onFrame({
        presentedAt: performance.timeOrigin + now,
        expectedDisplayAt: md.expectedDisplayTime != null
          ? performance.timeOrigin + md.expectedDisplayTime : undefined,
        receivedAt: md.receiveTime != null ? performance.timeOrigin + md.receiveTime : undefined,
        width: md.width,
        height: md.height,
        rtpTimestamp: md.rtpTimestamp,
        mediaTime: md.mediaTime,
        presentedFrames: md.presentedFrames,
        processingMs: md.processingDuration != null ? md.processingDuration * 1000 : undefined,
      });
      video.requestVideoFrameCallback(cb);
    };
    video.requestVideoFrameCallback(cb);
  }

  onConnectionState() {
    if (this.closed) return;
    const s = this.pc.connectionState;
    clearTimeout(this.disconnectTimer);
    if (s === "connected") {
      this.session.mediaConnected();
    } else if (s === "failed") {
      this.session.mediaFailed("the WebRTC connection failed");
    } else if (s === "disconnected") {
      // Often comes back by itself (ICE restarts its checks).
      this.disconnectTimer = setTimeout(() => {
        if (!this.closed && this.pc.connectionState === "disconnected") {
          this.session.mediaFailed("the WebRTC connection was lost");
        }
      }, 4000);
    }
  }

  async onSignal(msg) {
    if (this.closed) return;
    try {
      if (msg.type === "offer") {
        await this.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        this.haveRemote = true;
        if (this.welcome.mic) {
          this.audioTransceiver = this.pc.getTransceivers().find(
            (t) => t.receiver.track && t.receiver.track.kind === "audio",
          ) || null;
          if (this.audioTransceiver) {
            this.audioTransceiver.direction = "sendrecv";
            const mic = this.env.micTrack();
            if (mic) await this.audioTransceiver.sender.replaceTrack(mic);
          }
        }
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.session.sendText({ type: "answer", sdp: this.pc.localDescription.sdp });
        for (const c of this.pendingIce.splice(0)) await this.addIce(c);
      } else if (msg.type === "ice") {
        if (!msg.candidate) return; // end of candidates: nothing to do
        if (!this.haveRemote) this.pendingIce.push(msg);
        else await this.addIce(msg);
      }
    } catch (e) {
      if (!this.closed) this.env.onError(`WebRTC negotiation: ${e.message}`);
    }
  }

  async addIce(msg) {
    try {
      await this.pc.addIceCandidate({
        candidate: msg.candidate,
        sdpMid: msg.sdpMid ?? null,
        sdpMLineIndex: msg.sdpMLineIndex ?? null,
      });
    } catch (e) {
      if (!this.closed) this.env.onError(`ICE candidate refused: ${e.message}`);
    }
  }

  /** Input over the data channel; false when it is not open. */
  sendInput(msg) {
    if (this.channel && this.channel.readyState === "open") {
      this.channel.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  /** Switch the microphone on (a track) or off (null). */
  async setMicTrack(track) {
    if (this.audioTransceiver) await this.audioTransceiver.sender.replaceTrack(track);
  }

  async counters() {
    const c = rtcCounters(await this.pc.getStats(), performance.now());
    c.frames = Math.max(c.frames, this.frames);
    return c;
  }

  /** The picture now shown, at its own (the guest's) size. */
  grabCanvas() {
    const v = this.env.video;
    if (!v.videoWidth) return null;
    const c = document.createElement("canvas");
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    c.getContext("2d").drawImage(v, 0, 0);
    return c;
  }

  close() {
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    try {
      this.pc.close();
    } catch {
      // closed
    }
    this.env.audio.detach();
  }
}
