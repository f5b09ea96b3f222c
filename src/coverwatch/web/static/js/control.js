// The control room: live plan, alerts, cover timeline, officers and replay.
// Live data comes from the server's feed (SSE) plus periodic refreshes; in
// replay the same views show the state at a chosen past moment, computed by
// the server from stored events with the same engine.

import { api, me, logout, site, sitePath, pageLink, formatDuration, formatTime, setTimeZone, siteTimeZone, el, beep, STATE_WORDS, worst, AuthError } from "./common.js";
import { Plan } from "./plan.js";
import { Timeline } from "./timeline.js";
import { escalationFacts, nearestBlock, directFacts, urgency } from "./alertnotify.js";
import { setupEnrol } from "./enrol.js";
import { isAlarm, alarmTitle, alarmFacts, renderSosBanner, drawAlarmMarkers, deviceCell } from "./alarms.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["open", "acknowledged", "resolved"]);

const app = {
  who: null, site: null, canAct: false, mode: "live",
  live: { cover: null, plan: null, board: null },
  replay: { t: null, data: null, period: 3600e3, playing: null },
  knownAlerts: null, sound: localStorage.getItem("cw.sound") === "on",
  postNames: new Map(),
};

function postName(id) { return app.postNames.get(id) ?? id; }

function view() {
  if (app.mode === "replay" && app.replay.data) {
    const d = app.replay.data;
    return { nowMs: d.t_ms, rules: d.rules, officers: d.officers, gates: d.gates, alerts: d.alerts, replay: true };
  }
  const { cover, plan, board } = app.live;
  if (!cover || !plan || !board) return null;
  return { nowMs: plan.horizon_ms, rules: cover.rules, officers: plan.officers, gates: plan.gates, alerts: board.alerts, late: cover.late, replay: false };
}

function render() {
  const v = view();
  if (!v) return;
  drawAlarmMarkers(app.plan, v.alerts);  // before the plan's render, which places every label
  if (!v.replay) renderSosBanner($("sos-banner"), v.alerts, app.sound);
  renderProblems(v);
  fitPlan();
  app.plan.render(v);
  renderSummary(v);
  renderAlerts(v);
  renderHistory(v);
  renderOfficers(v);
}

// On a control-room screen the plan ends at the window's bottom edge, however much the SOS
// banner and the list of lapsed posts above it take (at least 320 px). On a narrow screen
// the page scrolls and the plan is as tall as the site's shape needs, no emptier.
function fitPlan() {
  const host = $("plan");
  let px;
  if (innerWidth <= 1000) {
    const home = app.plan.home;
    px = Math.min(innerHeight - 190, host.clientWidth * (home.h / home.w) + 40);
  } else px = innerHeight - (host.getBoundingClientRect().top + scrollY) - 10;
  const h = `${Math.max(320, Math.floor(px))}px`;
  if (host.style.height !== h) host.style.height = h;
}

// -- problems list and finding things on the plan ---------------------------------

// Lapsed posts (then those in grace), each a button that shows it on the plan.
function renderProblems(v) {
  const byPost = new Map();
  for (const r of v.rules) byPost.set(r.post, [...(byPost.get(r.post) ?? []), r]);
  const items = [];
  for (const [post, rules] of byPost) {
    const st = worst(rules.map((r) => r.state));
    if (st !== "lapsed" && st !== "grace") continue;
    const since = Math.min(...rules.filter((r) => r.state === st).map((r) => r.lapse_start_ms ?? Infinity));
    items.push({ post, st, since });
  }
  items.sort((a, b) => (a.st === "lapsed" ? 0 : 1) - (b.st === "lapsed" ? 0 : 1) || a.since - b.since || (a.post < b.post ? -1 : 1));
  const key = items.map((i) => `${i.post}:${i.st}`).join(",");
  const box = $("problems");
  if (box._key === key) return;
  box._key = key;
  // Each group under its own word: a post only in grace is never listed as lapsed.
  const group = (st, word) => {
    const mine = items.filter((i) => i.st === st);
    return mine.length ? [el("strong", {}, word), ...mine.map((i) => el("button", {
      type: "button", class: st === "lapsed" ? "lapsed-link" : "grace-link", "data-problem-post": i.post, "data-problem": st,
      title: `Show ${postName(i.post)} on the plan`, onclick: () => app.plan.showPost(i.post) }, postName(i.post)))] : [];
  };
  box.replaceChildren(...group("lapsed", "Lapsed:"), ...group("grace", "In grace:"));
}

function setupFind() {
  const input = $("find");
  const list = $("find-list");
  const fill = () => {
    const officers = (app.live.plan?.officers ?? []).map((o) => o.officer);
    const key = officers.join(",");
    if (list._key === key) return;
    list._key = key;
    list.replaceChildren(...app.site.posts.map((p) => el("option", { value: p.name }, `post ${p.id}`)),
      ...officers.map((o) => el("option", { value: o }, "officer")));
  };
  const go = () => {
    fill();
    const q = input.value.trim().toLowerCase();
    if (!q) return;
    const post = app.site.posts.find((p) => p.id.toLowerCase() === q || p.name.toLowerCase() === q)
      ?? app.site.posts.find((p) => p.name.toLowerCase().includes(q));
    const officer = (app.live.plan?.officers ?? []).find((o) => o.officer.toLowerCase() === q);
    const found = officer ? app.plan.showOfficer(officer.officer) : post ? app.plan.showPost(post.id) : false;
    $("find-msg").textContent = found ? "" : officer ? `${officer.officer} has no position` : `Nothing called “${input.value.trim()}”`;
    render();
  };
  input.addEventListener("focus", fill);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  input.addEventListener("input", () => { app.officerFilter = input.value.trim().toLowerCase(); renderOfficers(view() ?? { officers: [] }); });
  $("find-go").addEventListener("click", go);
}

// -- header summary and title --------------------------------------------------

function renderSummary(v) {
  const byPost = new Map();
  for (const r of v.rules) byPost.set(r.post, [...(byPost.get(r.post) ?? []), r.state]);
  const counts = { lapsed: 0, grace: 0, covered: 0, inactive: 0 };
  for (const states of byPost.values()) counts[worst(states)]++;
  const needAction = needingAction(v.alerts);
  const stale = v.officers.filter((o) => o.on_duty && o.stale).length;
  const parts = [];
  const chip = (cls, text) => el("span", { class: `chip ${cls}`, title: text }, text);
  // Short words: at 1366 px every chip must still be read (the full text is its title).
  parts.push(counts.lapsed ? chip("state-lapsed", `${counts.lapsed} LAPSED`) : chip("state-covered", "No post lapsed"));
  if (counts.grace) parts.push(chip("state-grace", `${counts.grace} in grace`));
  // Open alerts and resolved-but-unacknowledged ones shown apart (a flood's resolved
  // lapses must not read as work still burning); an incident counts once.
  const open = v.alerts.filter((a) => a.state === "open" && !a.shelved).length;
  const shelved = v.alerts.filter((a) => a.state !== "closed" && a.shelved).length;
  const toAck = v.alerts.filter((a) => a.state === "resolved" && !a.acknowledged_by).length;
  const incidents = new Set(v.alerts.filter((a) => a.incident && a.state !== "closed").map((a) => a.incident.id)).size;
  parts.push(chip(open ? "alert-chip" : "calm", open ? `${open} open` : "No open alert"));
  if (toAck) parts.push(chip("ack-chip", `${toAck} resolved, unacknowledged`));
  if (incidents) parts.push(chip("alert-chip", `${incidents} incident${incidents > 1 ? "s" : ""}`));
  if (shelved) parts.push(chip("stale-chip", `${shelved} shelved`));
  if (stale) parts.push(chip("stale-chip", `${stale} no signal`));
  if (v.late?.count) parts.push(lateChip(v.late));
  $("summary").replaceChildren(...parts);
  const mode = $("mode");
  mode.textContent = v.replay ? `REPLAY ${formatTime(v.nowMs)}` : `LIVE ${formatTime(v.nowMs)}`;
  mode.className = v.replay ? "mode replay" : "mode live";
  document.title = `${open ? `(${open}) ` : ""}${v.replay ? "Replay – " : ""}${app.site.name} – coverwatch`;
}

// Events arriving behind the horizon (GET /api/v1/cover "late"): the chip says how many
// and how late; its title names each device and each state change applied late.
function lateChip(late) {
  const worst = Math.max(...late.devices.map((d) => d.max_lag_s));
  const at = (iso) => formatTime(Date.parse(iso));
  const lines = [late.text,
    ...late.devices.map((d) => `${d.device}: ${d.count} late, up to ${d.max_lag_s} s (latest ${d.latest_lag_s} s)`),
    ...late.applied_late.map((a) => `${a.kind} ${a.subject} of ${at(a.time)} arrived ${at(a.received)}: applied late at ${at(a.applied)}`)];
  const words = `${late.count} late ≤${Math.round(worst)} s`;  // short: chips share the header
  return el("span", { class: "chip late-chip", title: lines.join("\n") }, words);
}

// -- alerts -----------------------------------------------------------------------

// The one count of alerts needing action, for the header and the panel alike.
function needingAction(alerts) {
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
  const line = el("button", { type: "button", class: "line", "aria-expanded": "true", title: "Open or fold this alert" });
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

// One line per alert: where, since, who is told (the kind and state are beside it).
function lineText(a, v) {
  const where = a.where?.text && !a.where.text.startsWith("at ") ? a.where.text : "";
  const since = `since ${formatTime(a.lapse_start_ms)} (${formatDuration(Math.max(0, v.nowMs - a.lapse_start_ms) / 1000)})`;
  const told = [...new Set((a.notified ?? []).flatMap((lv) => lv.deliveries).filter((d) => d.outcome === "delivered").map((d) => d.person ?? d.channel))];
  const parts = [where, since, told.length ? `told ${told.join(", ")}` : "nobody told yet"];
  if (a.incident) parts.push(`incident of ${a.incident.members.length}`);
  if (a.shelved) parts.push(`shelved until ${formatTime(a.shelved.until_ms)}`);
  return parts.filter(Boolean).join(" · ");
}

function updateCard(card, a, v, compact) {
  const open = card._open ?? !compact;
  card.className = `alert-card st-${a.state}${a.state === "resolved" && !a.acknowledged_by ? " needs-ack" : ""}${open ? " open" : ""}`;
  const badge = card.querySelector(".badge");
  if (badge.textContent !== stateLabel(a)) badge.textContent = stateLabel(a);
  const { line } = card._parts;
  const text = lineText(a, v);
  if (line.textContent !== text) line.textContent = text;
  line.setAttribute("aria-expanded", String(open));
  if (!open) return;  // a folded card's details are not redrawn (only what is seen changes)
  const f = alertFacts(a, v);
  card.querySelector(".facts").replaceChildren(
    el("li", { class: "short" }, f.shortFor),
    el("li", {}, f.coverNow), ...escalationFacts(a, app.site.escalation_levels),
    // Only a lapse has a lapse start; an alarm's or the server's alert has just its time.
    el("li", { class: "muted" }, !["sos", "fall", "device-silent", "system", "notification-failure"].includes(a.kind)
      ? `Raised ${formatTime(a.alert_at_ms)}, lapse began ${formatTime(a.lapse_start_ms)}`
      : `Raised ${formatTime(a.alert_at_ms)}`),
    ...(f.ack ? [el("li", { class: "ack" }, f.ack)] : []));
  const { ackBtn, closeBtn, note } = card._parts;
  const canAck = !v.replay && app.canAct && (a.state === "open" || (a.state === "resolved" && !a.acknowledged_by));
  // A device alarm has no automatic end: a person closes it.
  const canClose = !v.replay && app.canAct && (a.state === "resolved" || (isAlarm(a) && a.state === "acknowledged"));
  ackBtn.hidden = !canAck;
  closeBtn.hidden = !canClose;
  const { noteBtn } = card._parts;
  noteBtn.hidden = !(canAck || canClose);
  note.hidden = noteBtn.hidden || !(card._noteOpen || note.value);
  closeBtn.title = canClose ? "" : "An alert can be closed once cover is restored";
  updateWhoToSend(card, a, v);
}

// Redrawn only when its data changes, so a Send button is never swapped under the pointer.
function updateWhoToSend(card, a, v) {
  const canAct = !v.replay && app.canAct;
  const key = JSON.stringify([a.nearest, a.dispatches, a.dispatch_deliveries, canAct, a.state]);
  if (card._whoKey === key) return;
  card._whoKey = key;
  const block = nearestBlock(a, {
    canAct, postName, noteOf: () => card._parts.note.value.trim(),
    onSent: (officer) => { announce(`${officer} sent to ${postName(a.post)}.`); refreshAlerts().catch(() => {}); },
  });
  card.querySelector(".who-to-send").replaceChildren(...(block ? [block] : []));
}

async function act(id, what, note, card) {
  const { err } = card._parts;
  err.textContent = "";
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/${what}`, { method: "POST", body: { note: note.value.trim() } });
    note.value = "";
    await refreshAlerts();
    announce(`Alert ${what === "close" ? "closed" : "acknowledged"}.`);
  } catch (e) {
    if (!(e instanceof AuthError)) err.textContent = `Could not ${what}: ${e.message}`;
  } finally {
    for (const b of card.querySelectorAll("button")) b.disabled = false;
  }
}

function renderAlerts(v) {
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

function renderHistory(v) {
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

// -- officers ----------------------------------------------------------------------

function renderOfficers(v) {
  const f = app.officerFilter ?? "";
  const match = (o) => !f || o.officer.toLowerCase().includes(f) || o.counts_for.some((c) => c.post.toLowerCase().includes(f) || postName(c.post).toLowerCase().includes(f));
  const rows = v.officers.filter(match).sort((a, b) => (b.on_duty && b.stale) - (a.on_duty && a.stale) || a.officer.localeCompare(b.officer));
  // Rebuilt only when something shown changed (ages in 5 s steps), not every second.
  const key = f + "|" + rows.map((o) => `${o.officer}:${o.on_duty}:${o.stale}:${Math.floor((o.last_fix_age_s ?? -5) / 5)}:${o.counts_for.map((c) => c.post + c.rule).join()}:${o.devices.join()}`).join(";");
  if (app._officersKey === key) return;
  app._officersKey = key;
  $("officers-body").replaceChildren(...rows.map((o) => el("tr", { class: o.on_duty && o.stale ? "stale" : null, "data-officer": o.officer },
    el("th", { scope: "row" }, o.officer),
    el("td", {}, o.on_duty ? "On duty" : "Off duty"),
    el("td", {}, o.capabilities.join(", ") || "–"),
    el("td", {}, o.last_fix_age_s === null ? "never" : `${formatDuration(o.last_fix_age_s)} ago${o.stale ? " – STALE" : ""}`),
    deviceCell(o),
    el("td", {}, o.counts_for.map((c) => `${postName(c.post)} · ${c.rule}`).join("; ") || "–"))));
}

// -- who counted at a moment (timeline click) --------------------------------------------

async function whoCounted(ms, row) {
  const box = $("moment");
  box.replaceChildren(el("p", {}, `Evaluating ${formatTime(ms)}…`));
  try {
    const d = await api(`/api/v1/cover/at?t=${encodeURIComponent(new Date(ms).toISOString())}`);
    const r = d.rules.find((x) => x.post === row.post && x.rule === row.rule);
    const counted = d.officers.filter((o) => o.counts_for.some((c) => c.post === row.post && c.rule === row.rule));
    box.replaceChildren(
      el("h3", {}, `${postName(row.post)} · ${row.rule} at ${formatTime(ms)}`),
      el("p", {}, el("span", { class: `chip state-${r.state}` }, STATE_WORDS[r.state]), ` ${r.count} of ${r.need} needed`),
      el("p", {}, counted.length ? `Counted: ${counted.map((o) => `${o.officer}${o.capabilities.length ? " (" + o.capabilities.join(", ") + ")" : ""}`).join(", ")}` : "Nobody counted."),
      el("button", { type: "button", onclick: () => startReplay(ms) }, "Replay from this moment"));
  } catch (e) {
    if (!(e instanceof AuthError)) box.replaceChildren(el("p", { class: "error" }, `Could not evaluate: ${e.message}`));
  }
}

// -- replay ---------------------------------------------------------------------------

let replayTimer = null;
function replayAt(ms) {
  app.replay.t = ms;
  $("replay-time").textContent = formatTime(ms);
  app.timeline.setCursor(ms);
  clearTimeout(replayTimer);
  replayTimer = setTimeout(async () => {
    try {
      const d = await api(`/api/v1/cover/at?t=${encodeURIComponent(new Date(ms).toISOString())}`);
      if (app.mode === "replay" && app.replay.t === ms) { app.replay.data = d; render(); }
    } catch (e) { if (!(e instanceof AuthError)) announce(`Replay failed: ${e.message}`); }
  }, 120);
}

function setupSlider(startMs) {
  const end = app.live.plan?.horizon_ms ?? Date.now();
  const slider = $("replay-slider");
  // Nothing to replay before the first recorded moment.
  const first = app.timeline.data?.first_ms ?? end - app.replay.period;
  const from = Math.max(end - app.replay.period, Math.min(first, end - 60e3));
  if (startMs === undefined) {
    // Start where something happened: the latest alert's lapse, else 5 minutes ago.
    const alerts = app.live.board?.alerts ?? [];
    const latest = alerts.reduce((m, a) => Math.max(m, a.lapse_start_ms - 30e3), -Infinity);
    startMs = Math.max(from, latest > from ? latest : end - 300e3);
  }
  slider.min = String(Math.floor(from / 1000));
  slider.max = String(Math.floor(end / 1000));
  slider.value = String(Math.floor((startMs ?? from) / 1000));
  $("replay-from").textContent = formatTime(from);
  $("replay-to").textContent = formatTime(end);
  replayAt(Number(slider.value) * 1000);
}

function startReplay(ms) {
  app.mode = "replay";
  $("banner").hidden = true;
  document.body.classList.add("replaying");
  $("replay-bar").hidden = false;
  $("replay-toggle").textContent = "Back to live";
  $("replay-toggle").setAttribute("aria-pressed", "true");
  if (ms !== undefined) {
    const end = app.live.plan?.horizon_ms ?? Date.now();
    if (end - ms > app.replay.period) { app.replay.period = Math.min(end - ms + 60e3, 168 * 3600e3); }
  }
  setupSlider(ms);
  $("replay-slider").focus();
}

function stopReplay() {
  app.mode = "live";
  app.replay.data = null;
  clearInterval(app.replay.playing); app.replay.playing = null;
  $("replay-play").textContent = "Play";
  document.body.classList.remove("replaying");
  $("replay-bar").hidden = true;
  $("replay-toggle").textContent = "Replay";
  $("replay-toggle").setAttribute("aria-pressed", "false");
  app.timeline.setCursor(null);
  render();
}

function togglePlay() {
  if (app.replay.playing) { clearInterval(app.replay.playing); app.replay.playing = null; $("replay-play").textContent = "Play"; return; }
  $("replay-play").textContent = "Pause";
  app.replay.playing = setInterval(() => {
    const s = $("replay-slider");
    const next = Number(s.value) + Number($("replay-speed").value);
    if (next > Number(s.max)) { togglePlay(); return; }
    s.value = String(next);
    replayAt(next * 1000);
  }, 1000);
}

// -- data -----------------------------------------------------------------------------

async function refreshLive() {
  const [cover, plan] = await Promise.all([api("/api/v1/cover"), api("/api/v1/plan")]);
  app.live.cover = cover; app.live.plan = plan;
  if (app.mode === "live") render();
  $("conn").textContent = "";
}

async function refreshAlerts() {
  app.live.board = await api("/api/v1/alerts/board");
  if (app.mode === "live") render();
}

async function refreshTimeline() {
  const hours = Number($("tl-hours").value);
  app.timeline.render(await api(`/api/v1/timeline?hours=${hours}`));
}

function announce(text) { $("sr-status").textContent = text; }

function every(ms, fn) {
  const run = async () => {
    try { await fn(); } catch (e) { if (!(e instanceof AuthError)) $("conn").textContent = `Connection problem: ${e.message}`; }
    setTimeout(run, ms);
  };
  run();
}

function connectFeed() {
  let pending = null;
  const source = new EventSource(sitePath("/api/v1/feed"));
  source.onmessage = () => {
    // Any change: refresh now rather than at the next period.
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try { await Promise.all([refreshLive(), refreshAlerts()]); } catch (e) { /* the periodic refresh retries */ }
    }, 150);
  };
  source.onopen = () => { $("feed").textContent = "feed connected"; $("feed").className = "feed ok"; };
  source.onerror = () => { $("feed").textContent = "feed reconnecting…"; $("feed").className = "feed bad"; };
}

async function main() {
  app.who = await me();
  app.canAct = app.who.roles.some((r) => r === "supervisor" || r === "admin");
  app.site = await api("/api/v1/site");
  setTimeZone(app.site.timezone);
  app.postNames = new Map(app.site.posts.map((p) => [p.id, p.name]));
  $("site-name").textContent = app.site.name;
  $("site-name").title = app.site.name;
  $("tz").textContent = `times in ${siteTimeZone()}`;
  $("user").textContent = app.who.roles.length === 1 && app.who.roles[0] === app.who.name ? app.who.name : `${app.who.name} (${app.who.roles.join(", ")})`;
  if (app.who.roles.includes("auditor") || app.who.roles.includes("admin")) $("audit-link").hidden = false;
  if (app.who.roles.includes("admin")) $("people-link").hidden = false;
  // Today's daily activity report, for the site's local day.
  const today = new Intl.DateTimeFormat("en-CA", { timeZone: siteTimeZone(), year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
  $("daily-link").href = sitePath(`/api/v1/records/daily?date=${today}&format=pdf`);
  $("daily-csv-link").href = sitePath(`/api/v1/records/daily?date=${today}&format=csv`);
  for (const id of ["planning-link", "audit-link"]) $(id).href = pageLink($(id).getAttribute("href"));
  if (site) $("sites-link").hidden = false;
  if (!app.canAct) $("read-only").hidden = false;
  setupEnrol(app.who);
  app.plan = new Plan($("plan"), app.site);
  app.timeline = new Timeline($("timeline"), app.site, (ms, row) => {
    if (app.mode === "replay") { $("replay-slider").value = String(Math.floor(ms / 1000)); replayAt(ms); }
    whoCounted(ms, row);
  });
  $("logout").addEventListener("click", logout);
  const soundBtn = $("sound");
  const showSound = () => { soundBtn.textContent = app.sound ? "Sound on" : "Sound off"; soundBtn.setAttribute("aria-pressed", String(app.sound)); };
  showSound();
  soundBtn.addEventListener("click", () => { app.sound = !app.sound; localStorage.setItem("cw.sound", app.sound ? "on" : "off"); showSound(); if (app.sound) beep(); });
  $("history-filter").addEventListener("change", render);
  setupFind();
  $("tl-hours").addEventListener("change", () => refreshTimeline().catch(() => {}));
  $("replay-toggle").addEventListener("click", () => (app.mode === "replay" ? stopReplay() : startReplay()));
  $("replay-slider").addEventListener("input", (e) => replayAt(Number(e.target.value) * 1000));
  $("replay-period").addEventListener("change", (e) => { app.replay.period = Number(e.target.value) * 1000; setupSlider(); });
  $("replay-play").addEventListener("click", togglePlay);
  $("replay-back").addEventListener("click", () => { const s = $("replay-slider"); s.value = String(Number(s.value) - 60); replayAt(Number(s.value) * 1000); });
  $("replay-fwd").addEventListener("click", () => { const s = $("replay-slider"); s.value = String(Number(s.value) + 60); replayAt(Number(s.value) * 1000); });
  every(2000, refreshLive);
  every(3000, refreshAlerts);
  every(10000, refreshTimeline);
  // Durations in the header and cards tick between refreshes.
  setInterval(() => { if (app.mode === "live" && app.live.plan) { app.live.plan.horizon_ms += 1000; render(); } }, 1000);
  connectFeed();
}

main().catch((e) => { if (!(e instanceof AuthError)) { $("conn").textContent = `Could not start: ${e.message}`; } });
