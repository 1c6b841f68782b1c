// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Binary frames of the WebSocket transport (web/PROTOCOL.md): a 12-byte
// big-endian header — kind, flags, reserved, 64-bit timestamp in µs — then
// the payload. Pure functions, usable from Node.

export const HEADER_LEN = 12;
export const KIND_VIDEO = 1;
export const KIND_AUDIO = 2;
export const KIND_MIC = 3;
export const FLAG_KEYFRAME = 1;

/**
 * Split a binary frame. `buf` is an ArrayBuffer or a typed array view.
 * Returns null when it is too short to hold a header.
 */
export function parseFrame(buf) {
  const bytes = buf instanceof ArrayBuffer
    ? new Uint8Array(buf)
    : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (bytes.byteLength < HEADER_LEN) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_LEN);
  const kind = dv.getUint8(0);
  const flags = dv.getUint8(1);
  // µs since some origin: well inside Number's exact range (2^53 µs ≈ 285 years).
  const timestamp = Number(dv.getBigUint64(4, false));
  return {
    kind,
    flags,
    keyframe: (flags & FLAG_KEYFRAME) !== 0,
    timestamp,
    payload: bytes.subarray(HEADER_LEN),
  };
}

/** Build a binary frame (used for the microphone, kind 3). */
export function buildFrame(kind, flags, timestampUs, payload) {
  const out = new Uint8Array(HEADER_LEN + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, kind);
  dv.setUint8(1, flags);
  dv.setUint16(2, 0, false);
  dv.setBigUint64(4, BigInt(Math.max(0, Math.round(timestampUs))), false);
  out.set(payload instanceof Uint8Array ? payload : new Uint8Array(payload), HEADER_LEN);
  return out.buffer;
}

/** The NAL units of an H.264 Annex B access unit, as subarrays without start codes. */
export function annexbNals(au) {
  const nals = [];
  let i = 0;
  let start = -1;
  const n = au.length;
  while (i + 2 < n) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1) {
      if (start >= 0) {
        // A 4-byte start code leaves one zero at the end of the previous NAL.
        let end = i;
        if (end > start && au[end - 1] === 0) end--;
        nals.push(au.subarray(start, end));
      }
      i += 3;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0 && start < n) nals.push(au.subarray(start));
  return nals;
}

/**
 * The WebCodecs codec string (`avc1.PPCCLL`) of the first SPS in an Annex B
 * access unit, or null when it has none. profile_idc, the constraint flags
 * and level_idc are the three bytes after the NAL header.
 */
export function h264CodecString(au) {
  for (const nal of annexbNals(au)) {
    if ((nal[0] & 0x1f) === 7 && nal.length >= 4) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(nal[1])}${hex(nal[2])}${hex(nal[3])}`;
    }
  }
  return null;
}

/** True when an Annex B access unit holds an IDR slice (NAL type 5). */
export function h264HasIdr(au) {
  return annexbNals(au).some((nal) => (nal[0] & 0x1f) === 5);
}

/** True when a VP8 frame is a keyframe (bit 0 of the first byte is 0). */
export function vp8IsKeyframe(frame) {
  return frame.length > 0 && (frame[0] & 1) === 0;
}
