// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Where the guest's picture lies inside the element that shows it
// (object-fit: contain, so letterboxed or pillarboxed), and mapping a point of
// the element to guest display pixels. Pure functions, usable from Node.

/**
 * The rectangle a `srcW`×`srcH` picture occupies when scaled to fit a
 * `boxW`×`boxH` box keeping its aspect ratio and centred (object-fit: contain).
 * Coordinates are relative to the box.
 */
export function contentRect(boxW, boxH, srcW, srcH) {
  if (!(boxW > 0 && boxH > 0 && srcW > 0 && srcH > 0)) {
    return { x: 0, y: 0, width: Math.max(0, boxW), height: Math.max(0, boxH) };
  }
  const scale = Math.min(boxW / srcW, boxH / srcH);
  const width = srcW * scale;
  const height = srcH * scale;
  return { x: (boxW - width) / 2, y: (boxH - height) / 2, width, height };
}

/**
 * A point (`px`, `py`, relative to the box) in guest pixels of a
 * `guestW`×`guestH` display shown in `rect` (from contentRect). `inside` says
 * whether the point is on the picture; x and y are clamped to the display
 * either way (0 ≤ x < guestW), so a drag that leaves the picture ends at its
 * edge.
 */
export function toGuest(px, py, rect, guestW, guestH) {
  const u = (px - rect.x) / rect.width;
  const v = (py - rect.y) / rect.height;
  const inside = u >= 0 && u < 1 && v >= 0 && v < 1;
  const clamp = (n, max) => Math.min(Math.max(n, 0), max - 1);
  return {
    x: clamp(Math.floor(u * guestW), guestW),
    y: clamp(Math.floor(v * guestH), guestH),
    inside,
  };
}
