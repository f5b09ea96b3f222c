// What the control room's parts share: the page's state (live data, replay), the
// view of it that every part draws, and the hooks by which a part asks for a redraw
// or a refresh (set by control.js, so no part imports another's caller).

export const $ = (id) => document.getElementById(id);

export const app = {
  who: null, site: null, canAct: false, mode: "live",
  live: { cover: null, plan: null, board: null },
  replay: { t: null, data: null, period: 3600e3, playing: null },
  knownAlerts: null, sound: localStorage.getItem("cw.sound") === "on",
  postNames: new Map(),
};

export const hooks = { render: () => {}, refreshAlerts: async () => {} };

export function postName(id) { return app.postNames.get(id) ?? id; }

export function view() {
  if (app.mode === "replay" && app.replay.data) {
    const d = app.replay.data;
    return { nowMs: d.t_ms, rules: d.rules, officers: d.officers, gates: d.gates, alerts: d.alerts, replay: true };
  }
  const { cover, plan, board } = app.live;
  if (!cover || !plan || !board) return null;
  return { nowMs: plan.horizon_ms, rules: cover.rules, officers: plan.officers, gates: plan.gates, alerts: board.alerts, late: cover.late, replay: false };
}

export function announce(text) { $("sr-status").textContent = text; }
