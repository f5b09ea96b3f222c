// The officer's checkpoints on /duty: the tour rounds running now (next checkpoint,
// due by, missed), and scanning a checkpoint: a QR code with the phone's camera
// (BarcodeDetector, where the browser has it), an NFC tag (Web NFC, Android
// Chrome), or the code printed under the tag typed in. Each scan is sent at once
// and is an exact fix at the checkpoint (docs/tours.md).

import { api, el, AuthError } from "./common.js";

const $ = (id) => document.getElementById(id);
const PREFIX = "coverwatch-checkpoint:";
let names = {};
let tourNames = {};

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }) : "–";
}

// "coverwatch-checkpoint:<site>:<id>", or a bare id (typed, or an NFC text record).
export function parseCode(text) {
  const t = (text || "").trim();
  if (t.startsWith(PREFIX)) {
    const rest = t.slice(PREFIX.length);
    const i = rest.lastIndexOf(":");
    return i < 0 ? { checkpoint: rest } : { site: rest.slice(0, i), checkpoint: rest.slice(i + 1) };
  }
  if (/^[a-z0-9][a-z0-9-]{0,63}$/.test(t)) return { checkpoint: t };
  return null;
}

function stopText(s) {
  const name = names[s.checkpoint] || s.checkpoint;
  if (s.scanned_at) return `${name}: scanned ${time(s.scanned_at)}${s.late ? " (late)" : ""}${s.officer ? ` by ${s.officer}` : ""}`;
  if (s.missed) return `${name}: missed (due ${time(s.due_by)})`;
  return `${name}: ${s.due_by ? `due by ${time(s.due_by)}` : "after the one before"}`;
}

function roundCard(r) {
  // "Next" is a stop that can still be made on time (never one already missed).
  const left = r.stops.some((s) => !s.scanned_at);
  const next = r.next && !r.over
    ? el("p", { class: "big" }, `Next: ${names[r.next.checkpoint] || r.next.checkpoint}`,
      r.next.due_by ? el("span", { class: "muted" }, ` by ${time(r.next.due_by)}`) : null)
    : !left ? el("p", { class: "acked" }, "✓ Every checkpoint of this round is scanned.")
    : r.over ? el("p", { class: "muted" }, "This round is over.")
    : r.judged === false ? el("p", { class: "muted" }, "No checkpoint left to make on time.")
    : el("p", { class: "warn" }, "No checkpoint left to make on time: the rest are missed.");
  const unjudged = r.judged === false ? el("p", { class: "muted" },
    "Not judged: this round began before coverwatch watched the tours.") : null;
  const missed = r.missed.length
    ? el("p", { class: "warn" }, `Missed: ${r.missed.map((c) => names[c] || c).join(", ")}`) : null;
  const stops = r.stops.map((s) => el("li", {
    class: s.scanned_at ? (s.late ? "late" : "done") : s.missed ? "missed" : "" }, stopText(s)));
  return el("div", { class: "tour-round", "data-tour": r.tour },
    el("h3", {}, `${tourNames[r.tour] || r.tour}, round from ${time(r.start)}`), next, unjudged, missed,
    el("ol", { class: "tour-stops" }, stops));
}

async function refreshTours() {
  const d = await api("/api/v1/me/tours");
  names = Object.fromEntries(d.checkpoints.map((c) => [c.id, c.name]));
  tourNames = Object.fromEntries((d.tours || []).map((t) => [t.id, t.name]));
  const box = $("tour-progress");
  if (!d.checkpoints.length) {
    $("tours").hidden = true;
    return;
  }
  const now = d.rounds.filter((r) => new Date(r.end) > Date.now() - 60_000).slice(-3);
  box.replaceChildren(...now.map(roundCard));
  if (!now.length) box.replaceChildren(el("p", { class: "muted" }, "No tour round is running now."));
}

async function send(code) {
  $("scan-error").textContent = "";
  const parsed = parseCode(code);
  if (!parsed) {
    $("scan-error").textContent = "That is not a coverwatch checkpoint code.";
    return false;
  }
  try {
    const r = await api("/api/v1/me/scans", { method: "POST", body: parsed });
    $("scan-result").textContent = `✓ Scanned ${r.name} at ${time(r.at)}.`;
    refreshTours().catch(() => {});
    return true;
  } catch (e) {
    if (!(e instanceof AuthError)) $("scan-error").textContent = `Not recorded: ${e.message}`;
    return false;
  }
}

let stream = null;

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("scan-camera").hidden = true;
}

async function scanQr() {
  $("scan-error").textContent = "";
  if (!("BarcodeDetector" in window)) {
    $("scan-error").textContent = "This browser cannot read QR codes: type the code printed under the tag.";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (e) {
    $("scan-error").textContent = `No camera: ${e.message}. Type the code printed under the tag.`;
    return;
  }
  const video = $("scan-video");
  video.srcObject = stream;
  $("scan-camera").hidden = false;
  await video.play();
  const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  const look = async () => {
    if (!stream) return;
    try {
      const codes = await detector.detect(video);
      const hit = codes.find((c) => parseCode(c.rawValue));
      if (hit) {
        stopCamera();
        await send(hit.rawValue);
        return;
      }
    } catch (e) { /* a frame that is not ready: try the next */ }
    setTimeout(look, 250);
  };
  look();
}

async function readNfc() {
  $("scan-error").textContent = "";
  try {
    const reader = new window.NDEFReader();
    await reader.scan();
    $("scan-result").textContent = "Hold the phone to the tag…";
    reader.addEventListener("reading", ({ message }) => {
      const rec = message.records.find((r) => r.recordType === "text");
      if (rec) send(new TextDecoder(rec.encoding || "utf-8").decode(rec.data));
    }, { once: true });
  } catch (e) {
    $("scan-error").textContent = `Cannot read NFC: ${e.message}`;
  }
}

export function startScanning() {
  $("scan-qr").addEventListener("click", scanQr);
  $("scan-stop").addEventListener("click", stopCamera);
  if ("NDEFReader" in window) {
    $("scan-nfc").hidden = false;
    $("scan-nfc").addEventListener("click", readNfc);
  }
  $("scan-manual").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await send($("scan-code").value)) $("scan-code").value = "";
  });
  const loop = async () => {
    try { await refreshTours(); } catch (e) { /* shown on the next try */ }
    setTimeout(loop, 10000);
  };
  loop();
}
