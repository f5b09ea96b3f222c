// The control room's Tours panel: each round running now (and the one just ended),
// its next checkpoint and due time, what was missed, and who scanned.

import { api, el, AuthError } from "./common.js";

const $ = (id) => document.getElementById(id);

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }) : "–";
}

async function refresh() {
  const d = await api("/api/v1/tours");
  const names = Object.fromEntries(d.checkpoints.map((c) => [c.id, c.name]));
  const tours = Object.fromEntries((d.tours || []).map((t) => [t.id, t.name]));
  $("tours-panel").hidden = d.rounds.length === 0;
  $("tours-body").replaceChildren(...d.rounds.slice().reverse().map((r) => {
    const over = r.over;
    const next = over ? null : r.next;
    return el("tr", { "data-tour": r.tour },
    el("td", {}, `${tours[r.tour] || r.tour} · ${time(r.start)}–${time(r.end)}`),
    el("td", {}, next ? names[next.checkpoint] || next.checkpoint : over ? "round over"
      : !r.stops.some((s) => !s.scanned_at) ? "✓ all scanned"
      : r.judged === false ? "not judged (began before the tours were watched)" : "the rest missed"),
    el("td", {}, next && next.due_by ? time(next.due_by) : "–"),
    el("td", { class: r.missed.length ? "error" : "" }, r.missed.map((c) => names[c] || c).join(", ") || "none"),
    el("td", {}, r.officers.join(", ") || "nobody yet"));
  }));
}

const loop = async () => {
  try { await refresh(); } catch (e) { if (e instanceof AuthError) return; }
  setTimeout(loop, 10000);
};
loop();
