// Replay in the control room: the state at a chosen past moment (evaluated by the
// server from stored events), the slider and its controls, and who counted at a moment
// picked on the timeline.

import { api, formatTime, el, STATE_WORDS, AuthError } from "./common.js";
import { $, app, hooks, postName, announce } from "./controlstate.js";

// -- who counted at a moment (timeline click) --------------------------------------------

export async function whoCounted(ms, row) {
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
export function replayAt(ms) {
  app.replay.t = ms;
  $("replay-time").textContent = formatTime(ms);
  app.timeline.setCursor(ms);
  clearTimeout(replayTimer);
  replayTimer = setTimeout(async () => {
    try {
      const d = await api(`/api/v1/cover/at?t=${encodeURIComponent(new Date(ms).toISOString())}`);
      if (app.mode === "replay" && app.replay.t === ms) { app.replay.data = d; hooks.render(); }
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

export function startReplay(ms) {
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

export function stopReplay() {
  app.mode = "live";
  app.replay.data = null;
  clearInterval(app.replay.playing); app.replay.playing = null;
  $("replay-play").textContent = "Play";
  document.body.classList.remove("replaying");
  $("replay-bar").hidden = true;
  $("replay-toggle").textContent = "Replay";
  $("replay-toggle").setAttribute("aria-pressed", "false");
  app.timeline.setCursor(null);
  hooks.render();
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

// The replay bar's controls.
export function setupReplay() {
  $("replay-toggle").addEventListener("click", () => (app.mode === "replay" ? stopReplay() : startReplay()));
  $("replay-slider").addEventListener("input", (e) => replayAt(Number(e.target.value) * 1000));
  $("replay-period").addEventListener("change", (e) => { app.replay.period = Number(e.target.value) * 1000; setupSlider(); });
  $("replay-play").addEventListener("click", togglePlay);
  $("replay-back").addEventListener("click", () => { const s = $("replay-slider"); s.value = String(Number(s.value) - 60); replayAt(Number(s.value) * 1000); });
  $("replay-fwd").addEventListener("click", () => { const s = $("replay-slider"); s.value = String(Number(s.value) + 60); replayAt(Number(s.value) * 1000); });
}
