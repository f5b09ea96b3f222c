// Admins: messages that could not be stored (dead letters), newest first, for this site.
// They were acknowledged so they never block a topic; they are kept here to be looked at.

import { api, el, formatTime, AuthError } from "./common.js";

function row(d) {
  const shown = d.payload.length > 160 ? `${d.payload.slice(0, 160)}…` : d.payload;
  return el("tr", {},
    el("td", {}, formatTime(Date.parse(d.received))),
    el("td", {}, d.source, d.topic ? el("br") : "", d.topic ? el("code", {}, d.topic) : ""),
    el("td", {}, d.reason),
    el("td", {}, el("code", { class: "payload", title: `${d.payload_bytes} bytes, sha256 ${d.sha256}` }, shown)));
}

export async function loadDeadLetters() {
  const status = document.getElementById("dead-status");
  const body = document.getElementById("dead-body");
  try {
    const d = await api("/api/v1/dead-letters?limit=50");
    body.replaceChildren(...d.dead_letters.map(row));
    status.textContent = d.total
      ? `${d.total} message${d.total === 1 ? "" : "s"} could not be stored (newest ${d.dead_letters.length} shown).`
      : "Every message received was stored.";
    status.className = d.total ? "warn" : "ok";
  } catch (e) {
    if (!(e instanceof AuthError)) status.textContent = `Could not load: ${e.message}`;
  }
}
