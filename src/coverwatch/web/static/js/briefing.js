// The control room's "Orders briefing" panel: per post and per shift, who has and
// has not acknowledged the post's current orders (GET /api/v1/orders/status).

import { api, el, formatTime, AuthError } from "./common.js";

function row(post, cells) {
  return el("tr", { "data-post": post.post }, cells);
}

function render(status) {
  const rows = [];
  for (const p of status.posts) {
    const head = [el("td", {}, p.name), el("td", {}, p.version)];
    if (!p.shifts.length) {
      const by = p.acknowledged_by.length ? `read by ${p.acknowledged_by.join(", ")}` : "nobody rostered";
      rows.push(row(p, [...head, el("td", { class: "muted", colspan: 3 }, `No shift rostered (${by})`)]));
      continue;
    }
    for (const s of p.shifts) {
      const ack = s.acknowledged
        ? el("td", { class: "yes" }, `Yes, ${formatTime(Date.parse(s.acknowledged_at))}`)
        : el("td", { class: "no" }, s.acknowledged_version ? `NO (read ${s.acknowledged_version} only)` : "NO");
      rows.push(el("tr", { "data-post": p.post, "data-officer": s.officer, "data-acknowledged": String(s.acknowledged) },
        ...head, el("td", {}, s.officer),
        el("td", {}, `${formatTime(Date.parse(s.start))} – ${formatTime(Date.parse(s.end))}`), ack));
    }
  }
  document.getElementById("briefing-body").replaceChildren(...rows);
}

async function loop() {
  try {
    render(await api("/api/v1/orders/status"));
  } catch (e) {
    if (e instanceof AuthError) return;
    document.getElementById("briefing-body").replaceChildren(
      el("tr", {}, el("td", { class: "error", colspan: 5 }, `Cannot load the briefing status: ${e.message}`)));
  }
  setTimeout(loop, 10000);
}

loop();
