// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Small helpers shared by the guest list and the viewer. Pure, usable from Node.

/** The viewer token of a page URL (`?token=`), or "" when there is none. */
export function tokenFrom(search) {
  return new URLSearchParams(search).get("token") || "";
}

/** `path` with `?token=` (and any other query fields) appended. */
export function withQuery(path, fields) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  if (!s) return path;
  return path + (path.includes("?") ? "&" : "?") + s;
}

/**
 * The gateway's root path as this page sees it: "/" normally, "/prefix/"
 * behind a reverse proxy that serves the gateway under a path.
 */
export function basePath(pathname) {
  const m = /^(.*\/)view\/\d+\/?$/.exec(pathname);
  if (m) return m[1];
  return pathname.endsWith("/") ? pathname : pathname.replace(/[^/]*$/, "");
}

/** The session WebSocket URL of a guest, from the page's location. */
export function sessionUrl(location, domid, token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = basePath(location.pathname ?? "/");
  return withQuery(`${scheme}//${location.host}${base}api/guests/${domid}/session`, { token });
}

/** What to tell the user about an HTTP status from the gateway's API. */
export function explainStatus(status, what = "this page") {
  switch (status) {
    case 401:
      return "This link has no valid viewer token. Open the URL that `pvgate demo` printed, " +
        "or ask your administrator for a link that ends in ?token=…";
    case 403:
      return `Your token is not allowed to open ${what}. Ask your administrator for a token of ` +
        "the tenant that owns it (or one with the control role to type and click).";
    case 404:
      return `${what[0].toUpperCase()}${what.slice(1)} is not served by this gateway ` +
        "(the guest may be shut down or not started yet).";
    default:
      return `The gateway answered ${status} for ${what}. Try again in a moment; if it keeps ` +
        "failing, the gateway's log says why.";
  }
}

/** The viewer page's parameters. */
export function viewerParams(location) {
  const q = new URLSearchParams(location.search);
  const m = /\/view\/(\d+)/.exec(location.pathname);
  const transport = q.get("transport");
  const codec = q.get("codec");
  return {
    domid: m ? Number(m[1]) : Number(q.get("domid") ?? NaN),
    token: q.get("token") || "",
    display: Math.max(0, parseInt(q.get("display") ?? "0", 10) || 0),
    transport: transport === "webrtc" || transport === "websocket" ? transport : null,
    codec: codec === "h264" || codec === "vp8" ? codec : null,
    mic: q.get("mic") === "1",
    stats: q.get("stats") === "1",
  };
}
