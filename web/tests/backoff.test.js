// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../static/backoff.js";

test("delays double from 0.5 s up to 10 s", () => {
  const b = new Backoff();
  const got = Array.from({ length: 8 }, () => b.next());
  assert.deepEqual(got, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
});

test("reset starts again from 0.5 s", () => {
  const b = new Backoff();
  b.next();
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 500);
  assert.equal(b.attempts, 1);
});

test("many attempts stay at the ceiling", () => {
  const b = new Backoff();
  for (let i = 0; i < 2000; i++) b.next();
  assert.equal(b.next(), 10000);
});
