// The all-sites board: GET /api/v1/sites every 5 s; each row leads into that site's
// control room. A site is never shown as fine unless its engine is keeping up.
// Opened as /sites?page=/audit (a page about one site, opened without one), it asks
// which site, and each row leads to that page about the site chosen.
import { api, me, logout, el, AuthError } from "./common.js";

const $ = (id) => document.getElementById(id);
const PAGES = { "/control": "the control room", "/audit": "the audit log", "/people": "people and contacts", "/planning": "plan checking" };
const asked = new URLSearchParams(location.search).get("page");
const page = Object.hasOwn(PAGES, asked ?? "") ? asked : null;

function cell(text, cls) { return el("td", cls ? { class: cls } : {}, String(text)); }

// Lapsed posts by name; their ids underneath, as detail (the board showed only ids).
function lapsedCell(s) {
  const ids = s.posts_lapsed;
  if (!ids.length) return cell(s.rules_in_grace ? `0 (${s.rules_in_grace} in grace)` : "0");
  const names = ids.map((id) => s.post_names?.[id] || id);
  return el("td", { class: "bad posts-lapsed" }, `${ids.length}: ${names.join(", ")}`,
    el("div", { class: "muted" }, ids.join(", ")));
}

function row(s) {
  const lapsed = s.posts_lapsed.length;
  const act = s.alerts_to_act_on;
  const tr = el("tr", { class: s.alarms_open ? "sos" : lapsed ? "lapsed" : act || s.rules_in_grace ? "grace" : "" });
  const href = page ? `${page}?site=${encodeURIComponent(s.id)}` : s.control_room;
  const name = el("td", {}, el("a", { href }, s.name));
  name.append(el("div", { class: "muted" }, `${s.id} · ${s.posts} posts`));
  tr.append(name,
    cell(act ? `${act - s.alerts_resolved_unacknowledged} open${s.alerts_resolved_unacknowledged ? `, ${s.alerts_resolved_unacknowledged} resolved unacknowledged` : ""}${s.alerts_acknowledged ? ` (+${s.alerts_acknowledged} acknowledged)` : ""}`
      : s.alerts_acknowledged ? `0 (+${s.alerts_acknowledged} acknowledged)` : "0", act ? "bad" : ""),
    lapsedCell(s),
    cell(s.alarms_open, s.alarms_open ? "bad" : ""),
    cell(s.officers_on_duty),
    cell(s.officers_without_signal, s.officers_without_signal ? "bad" : ""),
    cell(s.ready ? `keeping up (${s.engine_lag_s} s behind)`
      : s.engine_lag_s === null ? "NOT READY: no cover evaluated yet (no owner)"
      : `NOT READY: cover not current (${s.engine_lag_s} s behind)`, s.ready ? "" : "bad"));
  // Distributed mode: the node evaluating the site, so an operator sees whose lag it is.
  if (s.owner) tr.lastChild.append(el("div", { class: "muted owner" }, `evaluated by ${s.owner}`));
  // Events arriving late, per device: the engine keeps up, but the field does not.
  if (s.late?.count) {
    const devices = s.late.devices.map((d) => `${d.device}: ${d.count} late, up to ${d.max_lag_s} s`).join("\n");
    tr.lastChild.append(el("div", { class: "late-line", title: devices }, s.late.text));
  }
  return tr;
}

async function refresh() {
  try {
    const d = await api("/api/v1/sites");
    $("sites-body").replaceChildren(...d.sites.map(row));
    $("status").textContent = d.sites.length ? "" : "You have no supervision role at any site.";
    $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  } catch (e) {
    if (e instanceof AuthError) return;
    $("status").textContent = `Could not load the sites: ${e.message}`;
  }
}

async function main() {
  if (page) {
    $("sites-h").replaceChildren(`Which site? Choose one for ${PAGES[page]} `,
      el("span", { class: "muted" }, "(what needs a person first)"));
    document.title = `Which site? – coverwatch`;
  }
  const who = await me();
  $("user").textContent = who.name;
  $("logout").addEventListener("click", logout);
  await refresh();
  setInterval(refresh, 5000);
}

main();
