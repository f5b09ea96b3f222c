// An officer's own page: their duty as the server sees it, and (later) orders.

import { api, me, logout, formatDuration, el } from "./common.js";

const $ = (id) => document.getElementById(id);

async function refresh() {
  const d = await api("/api/v1/me/duty");
  const state = !d.on_duty ? "Off duty" : d.stale ? "On duty – NO SIGNAL from your device" : "On duty";
  $("duty-state").textContent = state;
  $("duty-state").className = `big ${d.on_duty && d.stale ? "warn" : ""}`;
  const counts = d.counts_for.map((c) => `${c.post} · ${c.rule}`).join("; ");
  $("duty-facts").replaceChildren(
    el("dt", {}, "Capabilities"), el("dd", {}, d.capabilities.join(", ") || "none"),
    el("dt", {}, "Last position"), el("dd", {}, d.last_fix_age_s === null || d.last_fix_age_s === undefined ? "none received" : `${formatDuration(d.last_fix_age_s)} ago`),
    el("dt", {}, "You count for"), el("dd", {}, counts || "no rule right now"));
}

async function main() {
  const who = await me();
  $("user").textContent = who.name;
  $("logout").addEventListener("click", logout);
  const loop = async () => {
    try { await refresh(); } catch (e) { $("duty-state").textContent = `Cannot load your duty: ${e.message}`; }
    setTimeout(loop, 5000);
  };
  loop();
}

main();
