// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseFrame, buildFrame, h264CodecString, h264HasIdr, annexbNals, vp8IsKeyframe,
  HEADER_LEN, KIND_VIDEO, KIND_MIC,
} from "../static/wire.js";

test("a header is parsed big-endian", () => {
  const bytes = new Uint8Array([1, 1, 0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0xaa, 0xbb]);
  const f = parseFrame(bytes.buffer);
  assert.equal(f.kind, KIND_VIDEO);
  assert.equal(f.keyframe, true);
  assert.equal(f.timestamp, 0x010203040506);
  assert.deepEqual([...f.payload], [0xaa, 0xbb]);
});

test("flags other than keyframe are not a keyframe; short frames are refused", () => {
  const f = parseFrame(new Uint8Array([2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]));
  assert.equal(f.kind, 2);
  assert.equal(f.keyframe, false);
  assert.equal(f.timestamp, 7);
  assert.equal(f.payload.length, 0);
  assert.equal(parseFrame(new Uint8Array(HEADER_LEN - 1).buffer), null);
});

test("a view into a larger buffer is parsed at its offset", () => {
  const big = new Uint8Array(40);
  big.set([3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9], 20);
  const f = parseFrame(big.subarray(20, 33));
  assert.equal(f.kind, KIND_MIC);
  assert.equal(f.timestamp, 256);
  assert.deepEqual([...f.payload], [9]);
});

test("buildFrame and parseFrame round-trip", () => {
  const buf = buildFrame(KIND_MIC, 0, 123456789012, new Uint8Array([1, 2, 3]));
  const f = parseFrame(buf);
  assert.equal(f.kind, KIND_MIC);
  assert.equal(f.flags, 0);
  assert.equal(f.timestamp, 123456789012);
  assert.deepEqual([...f.payload], [1, 2, 3]);
  assert.deepEqual([...new Uint8Array(buf, 2, 2)], [0, 0]);
});

test("the codec string comes from the SPS of an Annex B access unit", () => {
  const au = new Uint8Array([
    0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28, 0xac, // SPS: High, level 4.0
    0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80, // PPS
    0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
  ]);
  assert.equal(h264CodecString(au), "avc1.640028");
  assert.equal(h264HasIdr(au), true);
  const nals = annexbNals(au);
  assert.equal(nals.length, 3);
  assert.deepEqual([...nals[1]], [0x68, 0xee, 0x3c, 0x80]);
  const delta = new Uint8Array([0, 0, 0, 1, 0x41, 0x9a, 0x00]);
  assert.equal(h264CodecString(delta), null);
  assert.equal(h264HasIdr(delta), false);
});

test("VP8 keyframes have bit 0 of the frame tag clear", () => {
  assert.equal(vp8IsKeyframe(new Uint8Array([0x50, 0x42, 0x00])), true);
  assert.equal(vp8IsKeyframe(new Uint8Array([0x31, 0x0a, 0x00])), false);
  assert.equal(vp8IsKeyframe(new Uint8Array([])), false);
});
