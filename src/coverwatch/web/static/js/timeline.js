// The cover timeline: one strip per post and rule over the last N hours,
// coloured inactive / covered / lapsed, with alert marks. Clicking a strip
// (or pressing Enter on it; arrows move the moment) asks the server who
// counted at that moment.

import { svg, el, formatTime } from "./common.js";

const W = 1000; // strip width in SVG units (scaled to the page width)

export class Timeline {
  constructor(host, site, onPick) {
    this.host = host;
    this.site = site;
    this.onPick = onPick;
    this.data = null;
    this.cursorMs = null;
    this.names = new Map(site.posts.map((p) => [p.id, p.name]));
    this.graceMs = new Map(site.posts.flatMap((p) => p.rules.map((r) => [`${p.id}\u001f${r.id}`, (r.grace_s ?? 0) * 1000])));
  }

  // Problems first: lapsed now, then lapsed at some point in the window, then the rest
  // (file order within each group, so the order is stable).
  ordered(rules) {
    const rank = (r) => {
      const last = r.segments[r.segments.length - 1];
      if (last && last[2] === "lapsed") return 0;
      return r.segments.some((sg) => sg[2] === "lapsed") ? 1 : 2;
    };
    return rules.map((r, i) => [rank(r), i, r]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
  }

  // A lapsed segment split into its grace part (amber, as on the plan) and the alerted part.
  lapsedParts(r, segments) {
    const grace = this.graceMs.get(`${r.post}\u001f${r.rule}`) ?? 0;
    const out = [];
    let runStart = null;
    let prevEnd = null;
    for (const [s0, s1, state, count] of segments) {
      if (state !== "lapsed") { runStart = null; prevEnd = s1; out.push([s0, s1, state, count]); continue; }
      if (runStart === null || prevEnd !== s0) runStart = s0;
      prevEnd = s1;
      const graceEnd = runStart + grace;
      if (graceEnd > s0) out.push([s0, Math.min(s1, graceEnd), "grace", count]);
      if (graceEnd < s1) out.push([Math.max(s0, graceEnd), s1, "lapsed", count]);
    }
    return out;
  }

  setCursor(ms) { this.cursorMs = ms; this.drawCursors(); }

  render(data) {
    this.data = data;
    const { start_ms: t0, end_ms: t1 } = data;
    const span = Math.max(t1 - t0, 1);
    const x = (ms) => ((ms - t0) / span) * W;
    const rows = [];
    rows.push(el("div", { class: "tl-row tl-axis" }, el("div", { class: "tl-name" }, ""), this.axis(t0, t1, x)));
    for (const r of this.ordered(data.rules)) {
      const strip = svg("svg", { class: "tl-strip", viewBox: `0 0 ${W} 20`, preserveAspectRatio: "none",
        role: "button", tabindex: "0", "aria-label": `Cover timeline of ${this.names.get(r.post) ?? r.post}, ${r.rule}: click a moment to see who counted` });
      strip.append(svg("rect", { class: "tl-none", x: 0, y: 0, width: W, height: 20 }));
      for (const [s0, s1, state, count] of this.lapsedParts(r, r.segments)) {
        strip.append(svg("rect", { class: `tl-seg tl-${state}`, x: x(s0), y: 2, width: Math.max(x(s1) - x(s0), 0.5), height: 16 },
          svg("title", {}, `${formatTime(s0)}–${formatTime(s1)}: ${state === "grace" ? "short, in grace" : state}, ${count} of ${r.need}`)));
      }
      for (const a of data.alerts.filter((a) => a.post === r.post && a.rule === r.rule && a.alert_ms >= t0)) {
        strip.append(svg("rect", { class: "tl-alert", x: x(a.alert_ms) - 2, y: 0, width: 4, height: 20 },
          svg("title", {}, `Alert raised ${formatTime(a.alert_ms)}`)));
      }
      strip.append(svg("line", { class: "tl-cursor", x1: -10, x2: -10, y1: 0, y2: 20 }));
      const pick = (ms) => { this.cursorMs = Math.round(Math.min(Math.max(ms, t0), t1 - 1)); this.drawCursors(); this.onPick(this.cursorMs, r); };
      strip.addEventListener("click", (e) => {
        const b = strip.getBoundingClientRect();
        pick(t0 + ((e.clientX - b.left) / b.width) * span);
      });
      strip.addEventListener("keydown", (e) => {
        const step = span / 100;
        if (e.key === "Enter" || e.key === " ") pick(this.cursorMs ?? t1 - 1);
        else if (e.key === "ArrowLeft") pick((this.cursorMs ?? t1) - step);
        else if (e.key === "ArrowRight") pick((this.cursorMs ?? t1) + step);
        else return;
        e.preventDefault();
      });
      rows.push(el("div", { class: "tl-row", "data-post": r.post, "data-rule": r.rule },
        el("div", { class: "tl-name" }, el("b", {}, this.names.get(r.post) ?? r.post), " ", r.rule, el("span", { class: "muted" }, ` need ${r.need}`)),
        strip));
    }
    this.host.replaceChildren(...rows);
    this.drawCursors();
  }

  axis(t0, t1, x) {
    const s = svg("svg", { class: "tl-strip tl-ticks", viewBox: `0 0 ${W} 20`, preserveAspectRatio: "none", "aria-hidden": "true" });
    const span = t1 - t0;
    const steps = [10e3, 30e3, 60e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 14400e3, 21600e3];
    const step = steps.find((st) => span / st <= 8) ?? 43200e3;
    for (let t = Math.ceil(t0 / step) * step; t < t1; t += step) {
      s.append(svg("line", { x1: x(t), x2: x(t), y1: 14, y2: 20, class: "tick" }));
    }
    const labels = el("div", { class: "tl-labels" });
    for (let t = Math.ceil(t0 / step) * step; t < t1; t += step) {
      labels.append(el("span", { style: `left:${(x(t) / W) * 100}%` }, formatTime(t, { short: step >= 60e3 })));
    }
    return el("div", { class: "tl-axis-box" }, s, labels);
  }

  drawCursors() {
    if (!this.data) return;
    const { start_ms: t0, end_ms: t1 } = this.data;
    const pos = this.cursorMs === null ? -10 : ((this.cursorMs - t0) / Math.max(t1 - t0, 1)) * W;
    for (const line of this.host.querySelectorAll(".tl-cursor")) { line.setAttribute("x1", pos); line.setAttribute("x2", pos); }
  }
}
