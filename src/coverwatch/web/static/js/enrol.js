// Admin: enrol a phone (or give it a new token) and show the link and QR code
// that configure Traccar Client, plus the OsmAnd URL template. Shown once: the
// server keeps only the token's hash.

import { api, el, AuthError } from "./common.js";

const $ = (id) => document.getElementById(id);

function show(result) {
  const out = $("enrol-result");
  const e = result.enrolment;
  if (!e) {
    out.replaceChildren(el("p", {}, `Device ${result.name}: identifier `, el("code", {}, result.token)),
      el("p", { class: "muted" }, result.note ?? ""));
    return;
  }
  const img = el("img", { class: "enrol-qr", alt: `QR code configuring Traccar Client for ${result.name}`,
    src: `data:image/svg+xml;base64,${btoa(e.qr_svg)}` });
  out.replaceChildren(
    el("p", {}, el("strong", {}, `Device ${result.name} for officer ${result.officer ?? "–"}`),
      " – shown once: scan it in Traccar Client now."),
    img,
    el("p", {}, "Traccar Client link: ", el("a", { href: e.traccar_link, class: "enrol-link" }, e.traccar_link)),
    el("p", {}, "OsmAnd online tracking URL: ", el("code", {}, e.osmand_url)));
}

async function enrol(rotate) {
  $("enrol-error").textContent = "";
  const name = $("enrol-name").value.trim();
  const officer = $("enrol-officer").value.trim();
  try {
    const result = rotate
      ? await api(`/api/v1/devices/${encodeURIComponent(name)}/rotate`, { method: "POST" })
      : await api("/api/v1/devices", { method: "POST", body: { name, officer } });
    show(result);
  } catch (e) {
    if (!(e instanceof AuthError)) $("enrol-error").textContent = `Could not ${rotate ? "rotate" : "enrol"}: ${e.message}`;
  }
}

export function setupEnrol(who) {
  if (!who.roles.includes("admin")) return;
  $("enrol").hidden = false;
  $("enrol-add").addEventListener("click", () => enrol(false));
  $("enrol-rotate").addEventListener("click", () => enrol(true));
}
