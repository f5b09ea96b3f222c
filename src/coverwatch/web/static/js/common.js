// Shared helpers: API calls with the session's CSRF token, formatting of
// times (in the site's time zone) and durations, the optional alert beep.

let csrf = null;

// A page about one site of several carries ?site=<id>; its API calls, feed and links
// go to that site's routes (/api/v1/sites/<id>/…).
export const site = new URLSearchParams(location.search).get("site");
export function sitePath(path) {
  if (!site || !path.startsWith("/api/v1/")) return path;
  return `/api/v1/sites/${encodeURIComponent(site)}/${path.slice("/api/v1/".length)}`;
}
// A link to another page about the same site.
export function pageLink(path) {
  if (!site || /[?&]site=/.test(path)) return path;
  return `${path}${path.includes("?") ? "&" : "?"}site=${encodeURIComponent(site)}`;
}
// Every link of the page to another page about one site keeps this page's site
// (module scripts run once the document is parsed).
const SITE_PAGES = /^\/(control|audit|people|planning)(\?|$)/;
for (const a of document.querySelectorAll("a[href^='/']")) {
  const href = a.getAttribute("href");
  if (SITE_PAGES.test(href)) a.setAttribute("href", pageLink(href));
}

export class AuthError extends Error {}

// Fetch JSON from the API; a lost session sends the browser to the login page.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (csrf === null) await me();
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = csrf || "";
  }
  const res = await fetch(sitePath(path), {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new AuthError("session expired");
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const d = data.detail;
    const msg = typeof d === "string" ? d : JSON.stringify(d ?? res.statusText);
    throw new Error(`${res.status}: ${msg}`);
  }
  return data;
}

export async function me() {
  const who = await api("/api/v1/me");
  csrf = who.csrf_token ?? null;
  return who;
}

export async function logout() {
  try { await api("/api/v1/logout", { method: "POST" }); } catch (e) { /* already out */ }
  location.assign("/login");
}

// The same wording as coverwatch.domain.alerts.format_duration (rounds down).
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const total = Math.floor(seconds);
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  let parts;
  if (days) parts = [[days, "d"], [hours, "h"]];
  else if (hours) parts = [[hours, "h"], [minutes, "min"]];
  else if (minutes) parts = [[minutes, "min"], [secs, "s"]];
  else return `${secs} s`;
  let text = `${parts[0][0]} ${parts[0][1]}`;
  if (parts[1][0]) text += ` ${parts[1][0]} ${parts[1][1]}`;
  return text;
}

let timeZone = "UTC";
let clockFmt, dateFmt, dayKeyFmt;
export function setTimeZone(tz) {
  timeZone = tz || "UTC";
  clockFmt = new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  dateFmt = new Intl.DateTimeFormat("en-GB", { timeZone, day: "numeric", month: "short" });
  dayKeyFmt = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" });
}
setTimeZone("UTC");
export function siteTimeZone() { return timeZone; }

// "14:32:05", or "3 Mar 14:32:05" when not today (site time zone).
export function formatTime(ms, { now = Date.now(), short = false } = {}) {
  if (ms === null || ms === undefined) return "–";
  const d = new Date(ms);
  let text = clockFmt.format(d);
  if (short) text = text.slice(0, 5);
  if (dayKeyFmt.format(d) !== dayKeyFmt.format(new Date(now))) text = `${dateFmt.format(d)} ${text}`;
  return text;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

let audio = null;
// A short two-tone beep (WebAudio); the caller decides whether sound is on.
export function beep() {
  try {
    audio = audio || new AudioContext();
    const t = audio.currentTime;
    for (const [i, f] of [[0, 880], [1, 660]]) {
      const o = audio.createOscillator();
      const g = audio.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, t + i * 0.25);
      g.gain.exponentialRampToValueAtTime(0.3, t + i * 0.25 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.25 + 0.22);
      o.connect(g).connect(audio.destination);
      o.start(t + i * 0.25);
      o.stop(t + i * 0.25 + 0.24);
    }
  } catch (e) { /* no audio device: the visual announcement remains */ }
}

export const STATE_WORDS = { covered: "Covered", grace: "In grace", lapsed: "LAPSED", inactive: "Not required now" };
const RANK = { inactive: 0, covered: 1, grace: 2, lapsed: 3 };
export function worst(states) {
  let w = null;
  for (const s of states) if (w === null || RANK[s] > RANK[w]) w = s;
  return w ?? "inactive";
}
