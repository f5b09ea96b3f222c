// An officer's own page: their duty as the server sees it, and the orders of the
// posts they are rostered to (all posts if none), to read and acknowledge.

import { api, me, logout, formatDuration, el, AuthError } from "./common.js";
import { startScanning } from "./scan.js";

const $ = (id) => document.getElementById(id);

async function refresh() {
  const d = await api("/api/v1/me/duty");
  const state = !d.on_duty ? "Off duty" : d.stale ? "On duty – NO SIGNAL from your device" : "On duty";
  $("duty-state").textContent = state;
  $("duty-state").className = `big ${d.on_duty && d.stale ? "warn" : ""}`;
  const counts = d.counts_for.map((c) => `${c.post_name || c.post} · ${c.rule}`).join("; ");
  $("duty-facts").replaceChildren(
    el("dt", {}, "Capabilities"), el("dd", {}, d.capabilities.join(", ") || "none"),
    el("dt", {}, "Last position"), el("dd", {}, d.last_fix_age_s === null || d.last_fix_age_s === undefined ? "none received" : `${formatDuration(d.last_fix_age_s)} ago`),
    el("dt", {}, "You count for"), el("dd", {}, counts || "no rule right now"));
  showBooking(d.on_duty);
}

// Book on or off duty from the phone (a duty event, source "session").
function showBooking(onDuty) {
  const btn = $("book-duty");
  btn.hidden = false;
  btn.textContent = onDuty ? "Book off duty" : "Book on duty";
  btn.dataset.on = onDuty ? "false" : "true";
}

async function bookDuty() {
  const btn = $("book-duty");
  btn.disabled = true;
  $("book-error").textContent = "";
  try {
    await api("/api/v1/me/duty", { method: "POST", body: { on: btn.dataset.on === "true" } });
    await refresh();
  } catch (e) {
    if (!(e instanceof AuthError)) $("book-error").textContent = `Could not book: ${e.message}`;
  } finally {
    btn.disabled = false;
  }
}

// -- orders ------------------------------------------------------------------------

let shown = null; // what is on screen, so a refresh does not disturb someone reading

function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" }) : "–";
}

function changesBox(p) {
  const c = p.changes_since_acknowledged;
  if (p.acknowledged || !p.acknowledged_version) return null;
  const items = [...c.what.map((w) => el("li", {}, w)),
    ...c.removed.map((t) => el("li", { class: "removed" }, el("del", {}, t))),
    ...c.added.map((t) => el("li", { class: "added" }, el("ins", {}, t)))];
  return el("div", { class: "changes", role: "note" },
    el("h4", {}, `Changed since you acknowledged version ${p.acknowledged_version}`),
    items.length ? el("ul", {}, items) : el("p", {}, "The orders changed."));
}

function orderCard(p) {
  const err = el("p", { class: "error", role: "alert" });
  const btn = el("button", { type: "button", class: "primary ack-orders" }, "I have read and understood these orders");
  btn.addEventListener("click", () => acknowledge(p, btn, err));
  const status = p.acknowledged
    ? el("p", { class: "acked" }, `✓ You acknowledged these orders (version ${p.version}) on ${when(p.acknowledged_at)}.`)
    : el("div", { class: "ack-box" }, el("p", { class: "warn" }, p.acknowledged_version ? "These orders have changed: read them again and acknowledge." : "You have not acknowledged these orders yet."), btn, err);
  const shifts = p.shifts.map((s) => `${when(s.start)} to ${when(s.end)}`).join("; ");
  return el("article", { class: "orders-card", "data-post": p.post, "data-version": p.version },
    el("h3", {}, p.name),
    el("p", { class: "muted" }, `Version ${p.version}, in force since ${when(p.since)}${shifts ? ` · Your shift: ${shifts}` : ""}`),
    changesBox(p),
    el("ol", { class: "orders-rules" }, p.rules.map((r) => el("li", {}, r))),
    p.general.length ? el("ul", { class: "orders-general" }, p.general.map((g) => el("li", {}, g))) : null,
    p.free_text ? el("p", { class: "orders-free" }, p.free_text) : null,
    status);
}

async function acknowledge(p, btn, err) {
  btn.disabled = true;
  err.textContent = "";
  try {
    await api(`/api/v1/orders/${encodeURIComponent(p.post)}/acknowledge`, { method: "POST", body: { version: p.version } });
    await refreshOrders(true);
  } catch (e) {
    if (e instanceof AuthError) return;
    err.textContent = e.message.startsWith("409")
      ? "These orders changed while you were reading. The new version is shown: please read it again."
      : `Could not record your acknowledgement: ${e.message}`;
    btn.disabled = false;
    if (e.message.startsWith("409")) setTimeout(() => refreshOrders(true), 1500);
  }
}

async function refreshOrders(force = false) {
  const d = await api("/api/v1/me/orders");
  const key = JSON.stringify(d.posts.map((p) => [p.post, p.version, p.acknowledged]));
  if (!force && key === shown) return;
  shown = key;
  $("orders-scope").textContent = d.rostered ? "The posts you are rostered to (now and in the next 24 hours)." : "You are not rostered to a post: these are the orders of every post.";
  $("orders").replaceChildren(...d.posts.map(orderCard));
}

// -- instructions: where a supervisor has sent this officer ---------------------------

async function refreshInstructions() {
  const d = await api("/api/v1/me/dispatches");
  const box = $("instructions");
  box.hidden = d.dispatches.length === 0;
  $("instruction-list").replaceChildren(...d.dispatches.map((x, i) => el("li", {
    class: `instruction${i === 0 && x.alert_state !== "resolved" && x.alert_state !== "closed" ? " current" : ""}`,
    "data-post": x.post },
  el("strong", {}, x.message), el("span", { class: "muted" }, ` ${when(x.at)}${x.alert_state === "resolved" || x.alert_state === "closed" ? " · cover restored" : ""}`))));
}

async function main() {
  const who = await me();
  $("user").textContent = who.name;
  $("logout").addEventListener("click", logout);
  $("book-duty").addEventListener("click", bookDuty);
  const loop = async () => {
    try { await refresh(); } catch (e) { $("duty-state").textContent = `Cannot load your duty: ${e.message}`; }
    setTimeout(loop, 5000);
  };
  loop();
  const instructionsLoop = async () => {
    try { await refreshInstructions(); } catch (e) { /* shown on the next try */ }
    setTimeout(instructionsLoop, 3000);
  };
  instructionsLoop();
  const ordersLoop = async () => {
    try { await refreshOrders(); } catch (e) { if (!(e instanceof AuthError)) $("orders-scope").textContent = `Cannot load your orders: ${e.message}`; }
    setTimeout(ordersLoop, 15000);
  };
  ordersLoop();
  startScanning();
}

main();
