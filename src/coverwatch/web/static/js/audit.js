// The audit log for auditors and admins: entries named in words, details as fields, times in
// the site's time zone, filters, chain verification against the anchors, evidence packs.

import { api, me, logout, sitePath, el, setTimeZone, siteTimeZone } from "./common.js";

const $ = (id) => document.getElementById(id);
let entries = [];
let after = 0;
let site = { posts: [] };
let stampFmt;

const postName = (id) => (site.posts.find((p) => p.id === id) || {}).name || id;

// "2026-12-01 14:32:05" in the site's time zone.
function stamp(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  return stampFmt.format(new Date(ms)).replace(",", "");
}

// What the entry is about, in words; and the words it can be filtered by.
function subjectOf(e) {
  const [kind, ...rest] = e.subject.split(":");
  const id = rest.join(":");
  const d = e.details || {};
  const tags = new Set([kind]);
  let words;
  if (kind === "alert") {
    tags.add("post"); tags.add("rule");
    words = d.post ? `${d.kind || "lapse"} alert: post ${postName(d.post)}, rule ${d.rule}` : `alert ${id}`;
  } else if (kind === "orders") {
    tags.add("post"); words = `orders of post ${postName(id)}`;
    if (d.officer) { tags.add("officer"); words += `, officer ${d.officer}`; }
  } else if (kind === "user") words = `user ${id}`;
  else if (kind === "device") { words = `device ${id}`; if (d.officer) { tags.add("officer"); words += ` (officer ${d.officer})`; } }
  else if (kind === "site") words = `site ${id}`;
  else if (kind === "hold") words = `legal hold ${id}`;
  else if (kind === "roster") { tags.add("officer"); words = "roster"; }
  else words = e.subject;
  if (d.officer) tags.add("officer");
  return { words, tags };
}

// Details as "field: value" pairs; epoch µs/ms fields and ISO stamps shown as site time.
function fieldValue(key, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && /(_us|_at|^at_us|lapse_start|alert_at)$/.test(key) && v > 1e14) return stamp(v / 1000);
  if (typeof v === "number" && /_ms$/.test(key)) return stamp(v);
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return stamp(Date.parse(v));
  if (key === "post") return postName(v);
  if (typeof v === "object") return JSON.stringify(v).slice(0, 200);
  return String(v);
}

// What happened, in words a person reads; the fields stay behind the details toggle.
function whatOf(e) {
  const d = e.details || {};
  const about = d.post ? ` – ${postName(d.post)}${d.rule ? ` / ${d.rule}` : ""}` : "";
  const level = (n) => `level ${Number(n) + 1}`;
  const due = /^alert\.level-due\.(\d+)$/.exec(e.action);
  if (due) return `Escalation ${level(due[1])} due${about}`;
  switch (e.action) {
    case "alert.raised": return `Alert raised${about}${d.need ? ` (cover ${d.count ?? 0} of ${d.need})` : ""}`;
    case "alert.acknowledged": return `Alert acknowledged${about}${d.acknowledgement_note ? `: “${d.acknowledgement_note}”` : ""}`;
    case "alert.resolved": return `Cover restored, alert resolved${about}`;
    case "alert.closed": return `Alert closed${about}`;
    case "alert.dispatched": return `Officer ${d.officer ?? ""} sent${about}`;
    case "notification.delivered": return `Notified ${d.person ?? d.target ?? "someone"}${d.target && d.person ? ` (${d.target})` : ""}${d.level !== undefined ? `, ${level(d.level)}` : ""}`;
    case "notification.failed": return `Could not notify ${d.person ?? d.target ?? "someone"}${d.error ? `: ${d.error}` : ""}`;
    case "site.loaded": return "Site file loaded";
    case "orders.issued": return `Orders issued for ${(d.versions || []).length} post(s)`;
    default: {
      const words = e.action.replace(/[._-]/g, " ");
      return words.charAt(0).toUpperCase() + words.slice(1);
    }
  }
}

const HIDDEN = new Set(["id", "priority"]);
function details(e) {
  const d = e.details || {};
  const keys = Object.keys(d).filter((k) => !HIDDEN.has(k) && d[k] !== null && d[k] !== "" && d[k] !== undefined);
  return el("details", {}, el("summary", {}, `entry #${e.id}`),
    el("dl", { class: "fields" }, el("dt", {}, "action"), el("dd", {}, e.action),
      ...keys.flatMap((k) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, fieldValue(k, d[k]))])));
}

function render() {
  const f = $("filter").value.trim().toLowerCase();
  const who = $("filter-actor").value.trim().toLowerCase();
  const kind = $("filter-subject").value;
  const text = $("filter-text").value.trim().toLowerCase();
  const rows = entries.filter((e) => {
    const s = subjectOf(e);
    if (f && !e.action.toLowerCase().includes(f) && !e.subject.toLowerCase().includes(f)) return false;
    if (who && !e.actor.toLowerCase().includes(who)) return false;
    if (kind && !s.tags.has(kind)) return false;
    if (text && !(s.words + " " + JSON.stringify(e.details)).toLowerCase().includes(text)) return false;
    return true;
  });
  $("audit-body").replaceChildren(...rows.slice().reverse().map((e) => {
    const s = subjectOf(e);
    return el("tr", { "data-action": e.action }, el("td", { class: "when" }, stamp(Date.parse(e.at))),
      el("td", {}, e.actor), el("td", { class: "what" }, whatOf(e)), el("td", { title: e.subject }, s.words),
      el("td", { class: "details" }, details(e)));
  }));
}

async function load() {
  for (;;) {
    const page = await api(`/api/v1/audit?after=${after}&limit=1000`);
    entries.push(...page.entries);
    if (page.entries.length) after = page.entries[page.entries.length - 1].id;
    if (page.entries.length < 1000) break;
  }
  render();
}

async function verify() {
  const r = await api("/api/v1/audit/anchored");
  const last = r.last_anchor ? ` Last anchor ${stamp(Date.parse(r.last_anchor.at))} at entry ${r.last_anchor.head_id} (${r.last_anchor.key_id}).` : " No anchor yet.";
  $("verify-result").textContent = r.ok
    ? `Chain intact: ${r.entries} entries${r.mac_checked ? ", every MAC valid" : ""}, ${r.anchors} anchor(s).${last}`
    : `TAMPERED: ${r.findings.map((x) => `${x.kind}: ${x.message}`).join("; ")}.${last}`;
}

// A wall-clock time typed in the site's zone, as a UTC ISO string.
function zonedToIso(local) {
  const guess = Date.parse(local + "Z");
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone: siteTimeZone(), year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
    .formatToParts(new Date(guess)).map((p) => [p.type, p.value]));
  const shown = Date.parse(`${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}Z`);
  return new Date(guess - (shown - guess)).toISOString();
}

function download(ev) {
  ev.preventDefault();
  const q = new URLSearchParams({ since: zonedToIso($("ev-since").value), until: zonedToIso($("ev-until").value) });
  if ($("ev-post").value) q.set("post", $("ev-post").value);
  $("ev-result").textContent = "Preparing the pack…";
  const a = el("a", { href: sitePath(`/api/v1/evidence?${q}`), download: "" });
  document.body.append(a);
  a.click();
  a.remove();
  $("ev-result").textContent = "Download started.";
}

async function main() {
  const who = await me();
  $("user").textContent = `${who.name} (${who.roles.join(", ")})`;
  $("logout").addEventListener("click", logout);
  try { site = await api("/api/v1/site"); } catch (e) { /* names stay ids */ }
  if (site.name) {
    $("site-name").textContent = site.name;
    document.title = `Audit log – ${site.name} – coverwatch`;
  }
  setTimeZone(site.timezone || "UTC");
  stampFmt = new Intl.DateTimeFormat("en-CA", { timeZone: siteTimeZone(), year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  $("tz-note").textContent = siteTimeZone();
  $("tz-head").textContent = siteTimeZone();
  for (const p of site.posts) $("ev-post").append(el("option", { value: p.id }, p.name || p.id));
  for (const id of ["filter", "filter-actor", "filter-text"]) $(id).addEventListener("input", render);
  $("filter-subject").addEventListener("change", render);
  $("more").addEventListener("click", load);
  $("verify").addEventListener("click", verify);
  $("anchor").addEventListener("click", async () => { await api("/api/v1/audit/anchor", { method: "POST" }); await verify(); });
  $("evidence-form").addEventListener("submit", download);
  await load();
}

main();
