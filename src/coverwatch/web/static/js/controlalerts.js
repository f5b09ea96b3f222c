// The control room's alert list: one line per alert in a flood (opening on demand),
// whole cards when there are few, acknowledge and close, new-alert notice, history.

import { api, formatDuration, formatTime, el, beep, AuthError } from "./common.js";
import { escalationFacts, nearestBlock, directFacts, urgency } from "./alertnotify.js";
import { isAlarm, alarmTitle, alarmFacts, shortPosition } from "./alarms.js";
import { $, app, hooks, postName, view, announce } from "./controlstate.js";

const ACTIVE = new Set(["open", "acknowledged", "resolved"]);

// The one count of alerts needing action, for the header and the panel alike.
export function needingAction(alerts) {
  return alerts.filter((a) => a.state === "open" || (a.state === "resolved" && !a.acknowledged_by)).length;
}

const cards = new Map();

const DIRECT = new Set(["system", "notification-failure"]);

function alertFacts(a, v) {
  if (a.kind === "unbriefed") return unbriefedFacts(a, v);
  if (isAlarm(a)) return alarmFacts(a, v);
  if (DIRECT.has(a.kind)) return directFacts(a, v);
  const cov = v.rules.find((r) => r.post === a.post && r.rule === a.rule);
  const shortFor = a.resolved_at_ms !== null && a.resolved_at_ms <= v.nowMs
    ? `Cover was short for ${formatDuration((a.resolved_at_ms - a.lapse_start_ms) / 1000)} (restored ${formatTime(a.resolved_at_ms)})`
    : `Cover short for ${formatDuration((v.nowMs - a.lapse_start_ms) / 1000)}`;
  const restored = a.resolved_at_ms !== null && a.resolved_at_ms <= v.nowMs;
  // A resolved alert speaks of its own lapse, not of whatever the rule does now.
  const coverNow = restored ? `Cover restored (${a.need} needed)` : cov ? `Cover now ${cov.count} of ${cov.need} needed` : `Need ${a.need}`;
  const levels = app.site.escalation_levels;
  const esc = a.escalated_level >= 0 ? `Escalated: level ${a.escalated_level + 1}${levels ? " of " + levels : ""}` : "Not escalated";
  const ack = a.acknowledged_by ? `Acknowledged by ${a.acknowledged_by} ${formatTime(a.acknowledged_at_ms)}${a.acknowledgement_note ? ": “" + a.acknowledgement_note + "”" : ""}` : null;
  return { shortFor, coverNow, esc, ack, lapsedNow: cov?.state === "lapsed" };
}

// An officer on duty at the post without having acknowledged its current orders.
function unbriefedFacts(a, v) {
  const officer = a.rule.replace(/^orders:/, "");
  const ended = a.resolved_at_ms !== null && a.resolved_at_ms <= v.nowMs;
  const shortFor = ended
    ? `${officer} acknowledged the current orders (unbriefed for ${formatDuration((a.resolved_at_ms - a.lapse_start_ms) / 1000)})`
    : `${officer} on duty without acknowledging the current orders for ${formatDuration((v.nowMs - a.lapse_start_ms) / 1000)}`;
  const levels = app.site.escalation_levels;
  const esc = a.escalated_level >= 0 ? `Escalated: level ${a.escalated_level + 1}${levels ? " of " + levels : ""}` : "Not escalated";
  const ack = a.acknowledged_by ? `Acknowledged by ${a.acknowledged_by} ${formatTime(a.acknowledged_at_ms)}${a.acknowledgement_note ? ": “" + a.acknowledgement_note + "”" : ""}` : null;
  return { shortFor, coverNow: "Unbriefed officer", esc, ack, lapsedNow: !ended };
}

function stateLabel(a) {
  if (a.state === "resolved" && !a.acknowledged_by) return "Resolved – not acknowledged";
  return { open: "OPEN", acknowledged: "Acknowledged", resolved: "Resolved", closed: "Closed" }[a.state] ?? a.state;
}

function cardTitle(a) {
  if (a.kind === "system") return "Server";
  if (a.kind === "notification-failure") return "Notification failure";
  return postName(a.post);
}

function cardSubtitle(a) {
  return a.kind === "notification-failure" ? `${postName(a.post)} · ${a.rule}` : a.rule;
}

function makeCard(a) {
  const note = el("textarea", { rows: 1, maxlength: 2000, placeholder: "Note (what you did, who you sent)", "aria-label": "Note" });
  // Compact cards: the note box opens on demand (a typed note keeps it open).
  const noteBtn = el("button", { type: "button", class: "note-toggle", "aria-expanded": "false" }, "Add note");
  noteBtn.addEventListener("click", () => {
    const card = noteBtn.closest(".alert-card");
    card._noteOpen = !card._noteOpen;
    noteBtn.setAttribute("aria-expanded", String(card._noteOpen));
    note.hidden = !card._noteOpen;
    if (card._noteOpen) note.focus();
  });
  const ackBtn = el("button", { type: "button", class: "primary", onclick: () => act(a.id, "acknowledge", note, card) }, "Acknowledge");
  const closeBtn = el("button", { type: "button", onclick: () => act(a.id, "close", note, card) }, "Close");
  const err = el("p", { class: "error", role: "alert" });
  const line = el("button", { type: "button", class: "line", "aria-expanded": "true", title: "Open or fold this alert" },
    el("span", { class: "l-head" }), el("span", { class: "l-dur" }), el("span", { class: "l-tail" }));
  line.addEventListener("click", () => { card._open = !card.classList.contains("open"); const v = view(); if (v) renderAlerts(v); });
  const card = el("article", { class: "alert-card", "data-alert": a.id, tabindex: "-1" },
    el("header", {}, isAlarm(a) ? el("h3", { class: "alarm-title" }, alarmTitle(a))
      : el("h3", {}, cardTitle(a), el("span", { class: "rule" }, ` · ${cardSubtitle(a)}`)), line, el("span", { class: "badge" })),
    el("ul", { class: "facts" }),
    el("div", { class: "who-to-send" }),
    el("div", { class: "actions" }, note, el("div", { class: "buttons" }, ackBtn, closeBtn, noteBtn)), err);
  card._parts = { note, ackBtn, closeBtn, noteBtn, err, line };
  return card;
}

// One line per alert: where (in words: an alarm's or silent device's position relative to
// the nearest post, or "position unknown"; a lapse's post is its title already), since,
// who is told. Three parts, so a tick rewrites only the duration's text.
function lineParts(a, v) {
  const where = isAlarm(a) ? shortPosition(a) : a.where && "distance_m" in a.where ? a.where.text : "";
  const told = [...new Set((a.notified ?? []).flatMap((lv) => lv.deliveries).filter((d) => d.outcome === "delivered").map((d) => d.person ?? d.channel))];
  const tail = [told.length ? `told ${told.join(", ")}` : "nobody told yet"];
  if (a.incident) tail.push(`incident of ${a.incident.members.length}`);
  if (a.shelved) tail.push(`shelved until ${formatTime(a.shelved.until_ms)}`);
  return [[where, `since ${formatTime(a.lapse_start_ms)}`].filter(Boolean).join(" · ") + " (",
    lineDuration(Math.max(0, v.nowMs - a.lapse_start_ms) / 1000), `) · ${tail.join(" · ")}`];
}

// Seconds only in the first minute; then whole minutes, so a line changes once a minute.
function lineDuration(s) { return formatDuration(s < 60 ? s : Math.floor(s / 60) * 60); }

// Set a property only when it differs: an unchanged card gets no DOM writes at all.
function put(node, prop, value) { if (node[prop] !== value) node[prop] = value; }
function putAttr(node, name, value) { if (node.getAttribute(name) !== value) node.setAttribute(name, value); }

function updateCard(card, a, v, compact) {
  const open = card._open ?? !compact;
  put(card, "className", `alert-card st-${a.state}${a.state === "resolved" && !a.acknowledged_by ? " needs-ack" : ""}${open ? " open" : ""}`);
  put(card.querySelector(".badge"), "textContent", stateLabel(a));
  const { line } = card._parts;
  lineParts(a, v).forEach((text, i) => put(line.children[i], "textContent", text));
  putAttr(line, "aria-expanded", String(open));
  if (!open) return;  // a folded card's details are not redrawn (only what is seen changes)
  updateFacts(card, a, v);
  const { ackBtn, closeBtn, note } = card._parts;
  const canAck = !v.replay && app.canAct && (a.state === "open" || (a.state === "resolved" && !a.acknowledged_by));
  // A device alarm has no automatic end: a person closes it.
  const canClose = !v.replay && app.canAct && (a.state === "resolved" || (isAlarm(a) && a.state === "acknowledged"));
  put(ackBtn, "hidden", !canAck);
  put(closeBtn, "hidden", !canClose);
  const { noteBtn } = card._parts;
  put(noteBtn, "hidden", !(canAck || canClose));
  put(note, "hidden", noteBtn.hidden || !(card._noteOpen || note.value));
  put(closeBtn, "title", canClose ? "" : "An alert can be closed once cover is restored");
  updateWhoToSend(card, a, v);
}

// An open card's facts: skipped while the alert's signature (what the facts show) is
// unchanged; otherwise only the lines that differ are replaced (in a flood, a lapse's
// ticking "short for" line, not its deliveries).
function updateFacts(card, a, v) {
  const f = alertFacts(a, v);
  const levels = app.site.escalation_levels;
  const sig = JSON.stringify([f, a.kind, a.state, a.notified, a.reached_level, a.escalated_level,
    a.alert_at_ms, a.lapse_start_ms, a.incident?.id, a.incident?.members.length, levels]);
  if (card._factsSig === sig) return;
  card._factsSig = sig;
  patchChildren(card.querySelector(".facts"), [
    el("li", { class: "short" }, f.shortFor),
    el("li", {}, f.coverNow), ...escalationFacts(a, levels),
    // Only a lapse has a lapse start; an alarm's or the server's alert has just its time.
    el("li", { class: "muted" }, !["sos", "fall", "device-silent", "system", "notification-failure"].includes(a.kind)
      ? `Raised ${formatTime(a.alert_at_ms)}, lapse began ${formatTime(a.lapse_start_ms)}`
      : `Raised ${formatTime(a.alert_at_ms)}`),
    ...(a.incident ? [el("li", { class: "incident-of" }, `One of ${a.incident.members.length} alerts of an incident (${a.incident.cause}): ${a.incident.detail}`)] : []),
    ...(f.ack ? [el("li", { class: "ack" }, f.ack)] : [])]);
}

// Make host's children equal to ``fresh``, keeping every old child equal to its fresh
// counterpart (in order) and replacing only the others.
function patchChildren(host, fresh) {
  const old = [...host.children];
  const kept = new Set();
  let at = 0;
  const wanted = fresh.map((node) => {
    for (let k = at; k < old.length; k++) {
      if (old[k].isEqualNode(node)) { at = k + 1; kept.add(old[k]); return old[k]; }
    }
    return node;
  });
  for (const o of old) if (!kept.has(o)) o.remove();
  wanted.forEach((node, i) => { if (host.children[i] !== node) host.insertBefore(node, host.children[i] ?? null); });
}

// Redrawn only when its data changes, so a Send button is never swapped under the pointer.
function updateWhoToSend(card, a, v) {
  const canAct = !v.replay && app.canAct;
  const key = JSON.stringify([a.nearest, a.dispatches, a.dispatch_deliveries, canAct, a.state]);
  if (card._whoKey === key) return;
  card._whoKey = key;
  const block = nearestBlock(a, {
    canAct, postName, noteOf: () => card._parts.note.value.trim(),
    onSent: (officer) => { announce(`${officer} sent to ${postName(a.post)}.`); hooks.refreshAlerts().catch(() => {}); },
  });
  card.querySelector(".who-to-send").replaceChildren(...(block ? [block] : []));
}

const CAUSE_WORDS = {
  outage: "from stale data after an outage (consequential)",
  "flag-switch": "all began at one instant (a flag switch or a site change)",
  "signal-loss": "no officer counts at any of them (loss of signal?)",
  flood: "many alerts at once",
};

// One line per incident above the list: how many alerts at how many posts, the cause in
// words (an outage's lapses come from stale data), and one acknowledgement for them all.
function renderIncidents(v) {
  const host = $("incidents");
  const byId = new Map();
  for (const a of v.alerts) {
    if (!a.incident || !ACTIVE.has(a.state)) continue;
    const entry = byId.get(a.incident.id) ?? { incident: a.incident, waiting: 0 };
    if (a.state === "open" || (a.state === "resolved" && !a.acknowledged_by)) entry.waiting++;
    byId.set(a.incident.id, entry);
  }
  const canAct = !v.replay && app.canAct;
  const key = JSON.stringify([...byId.values()].map(({ incident: i, waiting }) => [i.id, i.cause, i.members.length, i.posts.length, waiting]).concat([canAct]));
  if (host._key === key) return;
  host._key = key;
  host.replaceChildren(...[...byId.values()].map(({ incident: i, waiting }) => {
    const n = i.members.length, p = i.posts.length;
    const err = el("span", { class: "error", role: "alert" });
    const ack = el("button", { type: "button", class: "primary", hidden: !(canAct && waiting) }, `Acknowledge all ${waiting}`);
    ack.addEventListener("click", async () => {
      ack.disabled = true; err.textContent = "";
      try {
        await api(`/api/v1/incidents/${encodeURIComponent(i.id)}/acknowledge`, { method: "POST", body: {} });
        announce(`Incident of ${n} alerts acknowledged.`);
        await hooks.refreshAlerts();
      } catch (e) {
        if (!(e instanceof AuthError)) err.textContent = `Could not acknowledge: ${e.message}`;
        ack.disabled = false;
      }
    });
    // Short words (two lines at most in the 400 px panel); the server's full words in the title.
    return el("p", { class: `incident cause-${i.cause}`, "data-incident": i.id, "data-members": String(n),
      title: `${i.detail}. One message per level for the whole incident; its members are marked “incident of ${n}”.` },
      el("strong", {}, `INCIDENT: ${n} alert${n === 1 ? "" : "s"} at ${p} post${p === 1 ? "" : "s"}`),
      ` – ${CAUSE_WORDS[i.cause] ?? i.detail} `, ack, err);
  }));
  host.hidden = byId.size === 0;
}

async function act(id, what, note, card) {
  const { err } = card._parts;
  err.textContent = "";
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/${what}`, { method: "POST", body: { note: note.value.trim() } });
    note.value = "";
    await hooks.refreshAlerts();
    announce(`Alert ${what === "close" ? "closed" : "acknowledged"}.`);
  } catch (e) {
    if (!(e instanceof AuthError)) err.textContent = `Could not ${what}: ${e.message}`;
  } finally {
    for (const b of card.querySelectorAll("button")) b.disabled = false;
  }
}

export function renderAlerts(v) {
  const list = $("alert-list");
  // Most urgent first; resolved alerts nobody acknowledged go last, under their own heading.
  const active = v.alerts.filter((a) => ACTIVE.has(a.state)).sort(urgency);
  const ids = new Set(active.map((a) => a.id));
  for (const [id, card] of cards) if (!ids.has(id)) { card.remove(); cards.delete(id); }
  const order = [];
  // In a flood every alert is one line that opens on demand; a few alerts show whole.
  const compact = active.length > 6;
  for (const a of active) {
    let card = cards.get(a.id);
    if (!card) { card = makeCard(a); cards.set(a.id, card); }
    updateCard(card, a, v, compact);
    order.push(card);
  }
  const current = [...list.querySelectorAll(".alert-card")];
  const pointerIn = list.matches(":hover") && current.length === order.length;
  if (!pointerIn && (current.length !== order.length || current.some((c, i) => c !== order[i]))) {
    list.querySelector(".empty")?.remove();
    const split = order.findIndex((c) => c.classList.contains("st-resolved"));
    const heading = list.querySelector(".resolved-heading") ?? el("h3", { class: "resolved-heading" }, "Cover back – acknowledge or close");
    if (split >= 0) list.append(...order.slice(0, split), heading, ...order.slice(split));
    else { heading.remove(); list.append(...order); }
  }
  if (!active.length && !list.querySelector(".empty")) list.append(el("p", { class: "empty" }, v.replay ? "No alert was active at this moment." : "No alerts. Every alerted lapse has been closed."));
  if (active.length) list.querySelector(".empty")?.remove();
  $("alert-count").textContent = String(needingAction(v.alerts));
  renderIncidents(v);
  if (!v.replay) noticeNew(v.alerts);
}

function noticeNew(alerts) {
  const open = alerts.filter((a) => a.state === "open");
  if (app.knownAlerts === null) { app.knownAlerts = new Set(alerts.map((a) => a.id)); return; }
  const fresh = open.filter((a) => !app.knownAlerts.has(a.id));
  for (const a of alerts) app.knownAlerts.add(a.id);
  if (!fresh.length) return;
  const text = fresh.map((a) => (isAlarm(a) ? alarmTitle(a) : `${postName(a.post)} – ${a.rule}`)).join("; ");
  const banner = $("banner");
  banner.replaceChildren(el("strong", {}, "NEW ALERT: "), text, el("button", { type: "button", class: "dismiss", onclick: () => { banner.hidden = true; } }, "Dismiss"));
  banner.hidden = false;
  banner.classList.remove("flash"); void banner.offsetWidth; banner.classList.add("flash");
  for (const a of fresh) cards.get(a.id)?.classList.add("new");
  if (app.sound) beep();
}

export function renderHistory(v) {
  const filter = $("history-filter").value;
  const rows = v.alerts.filter((a) => filter === "all" || a.state === filter).sort((x, y) => y.alert_at_ms - x.alert_at_ms);
  const key = `${filter}|${Math.floor(v.nowMs / 10000)}|` + rows.slice(0, 200).map((a) => `${a.id}:${a.state}:${a.acknowledged_by}:${a.closed_by}`).join();
  if (app._historyKey === key) return;
  app._historyKey = key;
  $("history-body").replaceChildren(...rows.slice(0, 200).map((a) => el("tr", {},
    el("td", {}, formatTime(a.alert_at_ms)),
    el("td", {}, `${postName(a.post)} · ${a.rule}`),
    el("td", {}, formatDuration(((a.resolved_at_ms ?? v.nowMs) - a.lapse_start_ms) / 1000)),
    el("td", {}, stateLabel(a)),
    el("td", {}, a.acknowledged_by ? `${a.acknowledged_by}: ${a.acknowledgement_note || "–"}` : "–"),
    el("td", {}, a.closed_by ? `${a.closed_by}: ${a.close_note || "–"}` : "–"))));
  if (!rows.length) $("history-body").replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No alerts with this state.")));
}
