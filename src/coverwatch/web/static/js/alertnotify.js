// Alert cards, the parts about people: who was notified per escalation level and
// whether it worked, who to send (nearest officers) and dispatches; cards for the
// server's own alerts (system, notification-failure); the urgency order.
// Kept apart from control.js so other alert kinds can add their own parts.

import { api, formatDuration, formatTime, el, AuthError } from "./common.js";
import { alarmOrder, liveAlarm } from "./alarms.js";

const CHANNEL = {
  mailto: "mail", mailtos: "mail", json: "webhook", jsons: "webhook", "signed+http": "signed webhook",
  "signed+https": "signed webhook", ntfy: "ntfy", ntfys: "ntfy", gotify: "Gotify", gotifys: "Gotify",
  tgram: "Telegram", matrix: "Matrix", matrixs: "Matrix", slack: "Slack", sms: "SMS",
};

function channelWord(d) {
  if (!d.channel) return "no address";
  return CHANNEL[d.channel] ?? d.channel;
}

function targetWord(t) {
  return t.replace(/^role:/, "").replace(/^user:/, "");
}

// "notified supervisor (mail) ✓ sam" / "could not notify jo (webhook) ✗ HTTP 403"
export function deliveryLine(d) {
  const who = targetWord(d.target.split(", ")[0]);
  const ok = d.outcome === "delivered";
  const person = d.person && d.person !== who ? ` ${d.person}` : "";
  const text = ok ? `notified ${who} (${channelWord(d)}) ✓${person}`
    : `could not notify ${who}${person ? ` (${person.trim()})` : ""} (${channelWord(d)}) ✗ ${d.outcome}${d.error ? `: ${d.error}` : ""}`;
  return el("li", { class: ok ? "delivered" : "failed", title: `${d.address ?? "no address"} · ${d.at}` }, text);
}

// The escalation line, honest: "escalated" only for a level someone was reached at.
export function escalationFacts(a, levels) {
  const out = [];
  const of = levels ? ` of ${levels}` : "";
  if (a.kind === "system" || a.kind === "notification-failure") {
    // Sent once to supervisors and admins, never escalated.
  } else if (a.reached_level !== null && a.reached_level !== undefined) {
    out.push(el("li", { class: "esc ok" }, `Escalated: level ${a.reached_level + 1}${of}`));
  } else if (a.escalated_level >= 0 && (a.notified ?? []).length) {
    out.push(el("li", { class: "esc failed" }, `NOT escalated: nobody reached (level ${a.escalated_level + 1}${of} tried)`));
  } else if (a.escalated_level >= 0) {
    out.push(el("li", { class: "esc pending" }, `Level ${a.escalated_level + 1}${of}: sending…`));
  } else {
    out.push(el("li", { class: "esc" }, levels ? "Not escalated yet" : "No escalation set in the site file"));
  }
  for (const lv of a.notified ?? []) {
    const label = a.kind === "system" || a.kind === "notification-failure" ? "Sent: " : `Level ${lv.level + 1}: `;
    out.push(el("li", { class: "notified" }, el("span", { class: "muted" }, label),
      el("ul", { class: "deliveries" }, lv.deliveries.map(deliveryLine))));
  }
  return out;
}

// Who to send: the nearest officers who would count, each with a Send button.
export function nearestBlock(a, { canAct, postName, onSent, noteOf }) {
  const items = (a.nearest ?? []).slice(0, 3);
  const sent = a.dispatches ?? [];
  const deliveries = a.dispatch_deliveries ?? [];
  const parts = [];
  for (const d of sent) {
    const got = deliveries.filter((x) => x.person === d.officer);
    const mark = got.some((x) => x.outcome === "delivered") ? ` ✓ (${channelWord(got.find((x) => x.outcome === "delivered"))})`
      : got.length ? ` ✗ not delivered: ${got[0].error ?? ""}` : " (sending…)";
    parts.push(el("li", { class: "dispatched" }, `Sent ${d.officer} at ${formatTime(Date.parse(d.at))} by ${d.by}${mark}`));
  }
  if (!items.length) {
    if (a.kind === "lapse" && (a.state === "open" || a.state === "acknowledged")) {
      parts.push(el("li", { class: "muted" }, "Nobody on duty nearby would count for this rule."));
    }
    return parts.length ? el("ul", { class: "nearest" }, parts) : null;
  }
  for (const c of items) {
    const where = c.now_at.length ? `at ${c.now_at.map((p) => postName(p.split("/")[0])).join(", ")}` : c.rostered ?? "free";
    // Sent already: the button says so (and when) instead of offering to send again.
    const already = sent.find((d) => d.officer === c.officer);
    const btn = el("button", { type: "button", class: already ? "send sent" : "send", "data-officer": c.officer, hidden: !canAct, disabled: already ? true : null },
      already ? `Sent ✓ ${formatTime(Date.parse(already.at))}` : `Send ${c.officer}`);
    const marks = (c.marks ?? []).map((m) => el("span", { class: "mark" }, ` ⚠ ${m}`));
    const err = el("span", { class: "error" });
    btn.addEventListener("click", async () => {
      btn.disabled = true; err.textContent = "";
      try {
        await api(`/api/v1/alerts/${encodeURIComponent(a.id)}/dispatch`, { method: "POST", body: { officer: c.officer, note: noteOf() } });
        btn.textContent = "Sent ✓"; btn.classList.add("sent");
        onSent(c.officer);
      } catch (e) {
        if (!(e instanceof AuthError)) err.textContent = e.message;
        btn.disabled = false;
      }
    });
    parts.push(el("li", { class: "candidate", "data-officer": c.officer },
      el("b", {}, c.officer), ` ${formatDuration(c.travel_s)} away (${Math.round(c.distance_m)} m${c.via === "walkways" ? " on walkways" : ""}), ${where} `, ...marks, btn, err));
  }
  return el("ul", { class: "nearest", "aria-label": "Nearest officers who would count" }, parts);
}

// Facts for alerts about the server itself.
export function directFacts(a, v) {
  const ended = a.resolved_at_ms !== null && a.resolved_at_ms <= v.nowMs;
  const title = a.kind === "notification-failure" ? "Nobody could be told" : "Server problem";
  return {
    shortFor: a.detail || title,
    coverNow: ended ? `Cleared ${formatTime(a.resolved_at_ms)}` : title,
    esc: null, ack: a.acknowledged_by ? `Acknowledged by ${a.acknowledged_by}` : null, lapsedNow: !ended,
  };
}

const KIND_RANK = { sos: 0, fall: 1, lapse: 2, "notification-failure": 3, "device-silent": 4, system: 5 };

// Most urgent first: live alarms (SOS, fall) in the banner's order, then by state, kind,
// escalation level and time without cover; ties by id (stable).
export function urgency(x, y) {
  const alarm = (a) => (liveAlarm(a) ? 0 : 1);
  if (alarm(x) !== alarm(y)) return alarm(x) - alarm(y);
  if (!alarm(x)) return alarmOrder(x, y);
  const state = (a) => (a.state === "open" ? 0 : a.state === "acknowledged" ? 1 : 2);
  return state(x) - state(y)
    || (KIND_RANK[x.kind] ?? 6) - (KIND_RANK[y.kind] ?? 6)
    || (y.escalated_level ?? -1) - (x.escalated_level ?? -1)
    || x.lapse_start_ms - y.lapse_start_ms
    || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
}
