// The control room: live plan, alerts, cover timeline, officers and replay.
// Live data comes from the server's feed (SSE) plus periodic refreshes; in
// replay the same views show the state at a chosen past moment, computed by
// the server from stored events with the same engine. The alert list is in
// controlalerts.js, replay in controlreplay.js, shared state in controlstate.js.

import { api, me, logout, site, sitePath, pageLink, formatDuration, formatTime, setTimeZone, siteTimeZone, el, beep, worst, AuthError } from "./common.js";
import { Plan } from "./plan.js";
import { Timeline } from "./timeline.js";
import { setupEnrol } from "./enrol.js";
import { renderSosBanner, drawAlarmMarkers, deviceCell } from "./alarms.js";
import { $, app, hooks, postName, view } from "./controlstate.js";
import { needingAction, renderAlerts, renderHistory } from "./controlalerts.js";
import { setupReplay, replayAt, whoCounted } from "./controlreplay.js";


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
  // Lapsed posts are numbered here and on the plan: this list is the plan's legend.
  const numbers = new Map(items.filter((i) => i.st === "lapsed").map((i, k) => [i.post, k + 1]));
  app.plan.number(numbers);
  // Each group under its own word: a post only in grace is never listed as lapsed.
  const group = (st, word) => {
    const mine = items.filter((i) => i.st === st);
    return mine.length ? [el("strong", {}, word), ...mine.map((i) => el("button", {
      type: "button", class: st === "lapsed" ? "lapsed-link" : "grace-link", "data-problem-post": i.post, "data-problem": st,
      "data-number": numbers.get(i.post) ?? null,
      title: `Show ${postName(i.post)} on the plan`, onclick: () => app.plan.showPost(i.post) },
    numbers.has(i.post) ? el("span", { class: "num" }, String(numbers.get(i.post))) : null, postName(i.post)))] : [];
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

// On a phone the header's tools fold into a menu (two header lines at most): the button
// opens it under the header; a choice, Escape or a tap elsewhere closes it.
function setupToolsMenu() {
  const toggle = $("tools-toggle"), top = toggle.closest("header");
  const show = (open) => { top.classList.toggle("tools-open", open); toggle.setAttribute("aria-expanded", String(open)); };
  toggle.addEventListener("click", () => show(!top.classList.contains("tools-open")));
  $("tools").addEventListener("click", (e) => { if (e.target.closest("a, button")) show(false); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && top.classList.contains("tools-open")) { show(false); toggle.focus(); } });
  document.addEventListener("click", (e) => { if (!top.contains(e.target)) show(false); });
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
  hooks.render = render;
  hooks.refreshAlerts = refreshAlerts;
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
  app.plan.onNumbered = (on) => $("problems").classList.toggle("numbered", on);
  app.timeline = new Timeline($("timeline"), app.site, (ms, row) => {
    if (app.mode === "replay") { $("replay-slider").value = String(Math.floor(ms / 1000)); replayAt(ms); }
    whoCounted(ms, row);
  });
  $("logout").addEventListener("click", logout);
  setupToolsMenu();
  const soundBtn = $("sound");
  const showSound = () => { soundBtn.textContent = app.sound ? "Sound on" : "Sound off"; soundBtn.setAttribute("aria-pressed", String(app.sound)); };
  showSound();
  soundBtn.addEventListener("click", () => { app.sound = !app.sound; localStorage.setItem("cw.sound", app.sound ? "on" : "off"); showSound(); if (app.sound) beep(); });
  $("history-filter").addEventListener("change", render);
  setupFind();
  $("tl-hours").addEventListener("change", () => refreshTimeline().catch(() => {}));
  setupReplay();
  every(2000, refreshLive);
  every(3000, refreshAlerts);
  every(10000, refreshTimeline);
  // Durations in the header and cards tick between refreshes.
  setInterval(() => { if (app.mode === "live" && app.live.plan) { app.live.plan.horizon_ms += 1000; render(); } }, 1000);
  connectFeed();
}

main().catch((e) => { if (!(e instanceof AuthError)) { $("conn").textContent = `Could not start: ${e.message}`; } });
