// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// The guest list (/): GET /api/guests with the page's token, one card per
// display with a live thumbnail (refreshed every 2 s), name, resolution and
// viewers, linking to the viewer.

import { tokenFrom, withQuery, explainStatus, basePath } from "./common.js";

const token = tokenFrom(location.search);
const base = basePath(location.pathname);
const listEl = document.getElementById("guest-list");
const msgEl = document.getElementById("list-message");
const stateEl = document.getElementById("list-state");

const THUMB_MS = 2000;
const LIST_MS = 5000;

function setState(state, text) {
  stateEl.dataset.state = state;
  stateEl.textContent = text;
}

function notice(text) {
  msgEl.textContent = text;
  msgEl.hidden = !text;
}

/** One card per display (a guest without displays still gets one). */
function cards(guests) {
  const out = [];
  for (const g of guests) {
    const displays = g.displays && g.displays.length ? g.displays : [null];
    for (const d of displays) out.push({ g, d });
  }
  return out;
}

function card({ g, d }) {
  const index = d ? d.index : 0;
  const key = `${g.domid}/${index}`;
  let li = listEl.querySelector(`li[data-key="${key}"]`);
  if (!li) {
    li = document.createElement("li");
    li.className = "guest";
    li.dataset.key = key;
    const a = document.createElement("a");
    a.className = "guest-link";
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const img = document.createElement("img");
    img.alt = "";
    img.decoding = "async";
    img.addEventListener("load", () => thumb.classList.remove("empty"));
    img.addEventListener("error", () => thumb.classList.add("empty"));
    const empty = document.createElement("span");
    empty.className = "no-picture";
    empty.textContent = "no picture yet";
    thumb.append(img, empty);
    const info = document.createElement("div");
    info.className = "info";
    const name = document.createElement("span");
    name.className = "name";
    const meta = document.createElement("span");
    meta.className = "meta";
    info.append(name, meta);
    a.append(thumb, info);
    li.append(a);
    thumb.classList.add("empty");
  }
  const a = li.querySelector("a");
  a.href = withQuery(`${base}view/${g.domid}`, { display: index || undefined, token });
  const label = g.name || `dom${g.domid}`;
  li.querySelector(".name").textContent = index ? `${label} · display ${index}` : label;
  const bits = [`dom${g.domid}`];
  if (d && d.width && d.height) bits.push(`${d.width}×${d.height}`);
  if (!d) bits.push("no display");
  if (typeof g.viewers === "number") bits.push(g.viewers === 1 ? "1 viewer" : `${g.viewers} viewers`);
  if (g.tenant) bits.push(g.tenant);
  li.querySelector(".meta").textContent = bits.join(" · ");
  li.dataset.thumb = d
    ? `${base}api/guests/${g.domid}/displays/${index}/thumbnail.jpg`
    : "";
  return li;
}

function refreshThumbs() {
  const t = Date.now();
  for (const li of listEl.querySelectorAll("li.guest")) {
    const src = li.dataset.thumb;
    if (!src) continue;
    const img = li.querySelector("img");
    img.src = withQuery(src, { token, t });
  }
}

async function load() {
  let rsp;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    rsp = await fetch(`${base}api/guests`, { headers, cache: "no-store" });
  } catch {
    setState("reconnecting", "Offline");
    notice(`Cannot reach the gateway at ${location.host}. Is pvgate running? ` +
      `This page retries every ${LIST_MS / 1000} s.`);
    return;
  }
  if (!rsp.ok) {
    setState("failed", `Error ${rsp.status}`);
    notice(explainStatus(rsp.status, "the guest list"));
    return;
  }
  let guests;
  try {
    guests = await rsp.json();
  } catch {
    setState("failed", "Bad answer");
    notice("The gateway's answer was not a guest list. Is this address a pvgate gateway?");
    return;
  }
  setState("connected", guests.length === 1 ? "1 guest" : `${guests.length} guests`);
  notice(guests.length ? "" : "No guests yet. They appear here as soon as a guest's display, " +
    "sound or input device connects to this gateway.");
  const wanted = cards(guests).map(card);
  const fresh = wanted.some((li) => !li.isConnected);
  listEl.replaceChildren(...wanted);
  if (fresh) refreshThumbs();
}

load();
setInterval(load, LIST_MS);
setInterval(refreshThumbs, THUMB_MS);
