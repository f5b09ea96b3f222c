// The audit log for auditors and admins: entries, a filter, chain verification.

import { api, me, logout, el } from "./common.js";

const $ = (id) => document.getElementById(id);
let entries = [];
let after = 0;

function render() {
  const f = $("filter").value.trim().toLowerCase();
  const rows = entries.filter((e) => !f || e.action.toLowerCase().includes(f) || e.subject.toLowerCase().includes(f));
  $("audit-body").replaceChildren(...rows.slice().reverse().map((e) => {
    const d = e.details || {};
    const note = d.acknowledgement_note || d.close_note;
    const short = note ? `note: “${note}”` : JSON.stringify(d).slice(0, 160);
    return el("tr", { "data-action": e.action }, el("td", {}, e.id), el("td", {}, e.at), el("td", {}, e.actor),
      el("td", {}, e.action), el("td", {}, e.subject), el("td", { class: "details" }, short));
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

async function main() {
  const who = await me();
  $("user").textContent = `${who.name} (${who.roles.join(", ")})`;
  $("logout").addEventListener("click", logout);
  $("filter").addEventListener("input", render);
  $("more").addEventListener("click", load);
  $("verify").addEventListener("click", async () => {
    const r = await api("/api/v1/audit/verify");
    $("verify-result").textContent = r.ok ? `Chain intact: ${r.entries} entries.` : `BROKEN at entry ${r.first_bad_id}: ${r.reason}`;
  });
  await load();
}

main();
