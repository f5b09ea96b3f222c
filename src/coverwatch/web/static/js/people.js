// Admins: each user's contacts (redacted), adding or clearing them, and which
// escalation targets reach nobody.

import { api, me, logout, el, AuthError } from "./common.js";
import { loadDeadLetters } from "./deadletters.js";

const $ = (id) => document.getElementById(id);

function row(u) {
  const input = el("input", { type: "text", placeholder: "mailto://user:pass@host?to=…", "aria-label": `New contact for ${u.username}`, size: 34 });
  const err = el("p", { class: "error", role: "alert" });
  const add = el("button", { type: "button", class: "primary" }, "Add");
  const clear = el("button", { type: "button", hidden: !u.contacts.length }, "Remove all");
  add.addEventListener("click", () => change(u.username, { add_contact: input.value.trim() }, err));
  clear.addEventListener("click", () => change(u.username, { contacts: [] }, err));
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") add.click(); });
  return el("tr", { "data-user": u.username, class: u.active ? null : "muted" },
    el("th", { scope: "row" }, u.username, u.active ? "" : " (inactive)"),
    el("td", {}, u.roles.join(", ") || "–"),
    el("td", { class: "contacts" }, u.contacts.length ? el("ul", {}, u.contacts.map((c) => el("li", {}, el("code", {}, c)))) : el("span", { class: "warn" }, "no contact: cannot be notified")),
    el("td", {}, el("div", { class: "buttons" }, input, add, clear), err));
}

async function change(user, body, err) {
  err.textContent = "";
  try {
    await api(`/api/v1/users/${encodeURIComponent(user)}`, { method: "PATCH", body });
    await load();
  } catch (e) {
    if (e instanceof AuthError) return;
    const m = /^\d+: (.*)$/.exec(e.message);
    let text = m ? m[1] : e.message;
    try { const d = JSON.parse(text); text = Array.isArray(d) ? d.map((x) => x.message).join("; ") : text; } catch (_) { /* plain text */ }
    err.textContent = text;
  }
}

async function load() {
  const d = await api("/api/v1/users");
  $("people-body").replaceChildren(...d.users.map(row));
  const board = await api("/api/v1/alerts?state=open,acknowledged");
  const problems = board.alerts.filter((a) => a.kind === "system" && a.rule.startsWith("target:"));
  $("targets").textContent = problems.length ? problems.map((a) => a.detail).join(" ") : "Every escalation target reaches someone with a contact.";
  $("targets").className = problems.length ? "warn" : "ok";
}

async function main() {
  const who = await me();
  $("user").textContent = who.name;
  $("logout").addEventListener("click", logout);
  await load();
  await loadDeadLetters();
}

main().catch((e) => { if (!(e instanceof AuthError)) $("targets").textContent = `Could not load: ${e.message}`; });
