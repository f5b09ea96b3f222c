// The live site plan: SVG in site metres (+y is north, so y is flipped),
// posts coloured by their worst rule, gates, walkways, officers. Pan with a
// drag, zoom with the wheel or the +/- buttons.

import { svg, el, formatDuration, STATE_WORDS, worst } from "./common.js";

export class Plan {
  constructor(host, site) {
    this.site = site;
    this.host = host;
    const b = bounds(site);
    this.home = { x: b.x0 - b.pad, y: -b.y1 - b.pad, w: b.x1 - b.x0 + 2 * b.pad, h: b.y1 - b.y0 + 2 * b.pad };
    this.view = { ...this.home };
    this.root = svg("svg", {
      class: "plan-svg", role: "img", "aria-label": `Site plan of ${site.name}`,
      preserveAspectRatio: "xMidYMid meet",
    });
    this.gStatic = svg("g", { class: "static" });
    this.gPosts = svg("g", { class: "posts" });
    this.gOfficers = svg("g", { class: "officers" });
    this.root.append(this.gStatic, this.gPosts, this.gOfficers);
    const zoom = el("div", { class: "zoom" },
      el("button", { type: "button", "aria-label": "Zoom in", title: "Zoom in (+)", onclick: () => this.zoom(0.8) }, "+"),
      el("button", { type: "button", "aria-label": "Zoom out", title: "Zoom out (−)", onclick: () => this.zoom(1.25) }, "−"),
      el("button", { type: "button", "aria-label": "Reset view", title: "Whole site (0)", onclick: () => this.reset() }, "⤢"));
    host.append(this.root, zoom);
    host.tabIndex = 0;
    host.addEventListener("keydown", (e) => this.key(e));
    this.drawStatic();
    this.apply();
    this.bindPointer();
  }

  apply() {
    const v = this.view;
    this.root.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    // Labels and markers keep their on-screen size whatever the zoom.
    const px = Math.max(v.w / Math.max(this.root.clientWidth || 800, 1), v.h / Math.max(this.root.clientHeight || 500, 1));
    this.root.style.setProperty("--u", `${px}px`);
    this.unit = px;
  }

  zoom(f, cx, cy) {
    const v = this.view;
    cx ??= v.x + v.w / 2; cy ??= v.y + v.h / 2;
    const w = Math.min(Math.max(v.w * f, 5), this.home.w * 8);
    const k = w / v.w;
    this.view = { x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k, w, h: v.h * k };
    this.apply();
  }

  pan(dx, dy) { this.view.x += dx; this.view.y += dy; this.apply(); }
  reset() { this.view = { ...this.home }; this.apply(); }

  key(e) {
    const step = this.view.w * 0.1;
    const acts = { "+": () => this.zoom(0.8), "=": () => this.zoom(0.8), "-": () => this.zoom(1.25), "0": () => this.reset(),
      ArrowLeft: () => this.pan(-step, 0), ArrowRight: () => this.pan(step, 0), ArrowUp: () => this.pan(0, -step), ArrowDown: () => this.pan(0, step) };
    if (acts[e.key]) { acts[e.key](); e.preventDefault(); }
  }

  toSite(clientX, clientY) {
    const r = this.root.getBoundingClientRect();
    const v = this.view;
    const s = Math.max(v.w / r.width, v.h / r.height);
    const ox = (r.width * s - v.w) / 2, oy = (r.height * s - v.h) / 2;
    return [v.x - ox + (clientX - r.left) * s, v.y - oy + (clientY - r.top) * s, s];
  }

  bindPointer() {
    this.root.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [x, y] = this.toSite(e.clientX, e.clientY);
      this.zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, x, y);
    }, { passive: false });
    let drag = null;
    this.root.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, s: this.toSite(e.clientX, e.clientY)[2] };
      this.root.setPointerCapture(e.pointerId);
      this.root.classList.add("dragging");
    });
    this.root.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.pan(-(e.clientX - drag.x) * drag.s, -(e.clientY - drag.y) * drag.s);
      drag.x = e.clientX; drag.y = e.clientY;
    });
    const end = () => { drag = null; this.root.classList.remove("dragging"); };
    this.root.addEventListener("pointerup", end);
    this.root.addEventListener("pointercancel", end);
    new ResizeObserver(() => this.apply()).observe(this.root);
  }

  drawStatic() {
    const g = this.gStatic;
    g.replaceChildren();
    for (const w of this.site.walkways) {
      g.append(svg("polyline", { class: "walkway", points: w.points.map(([x, y]) => `${x},${-y}`).join(" ") }));
    }
    for (const b of this.site.barriers) {
      if (b.points.length === 1) {
        const [x, y] = b.points[0];
        g.append(svg("circle", { class: "barrier", cx: x, cy: -y, r: 1.5 }));
      } else {
        g.append(svg("polyline", { class: "barrier", points: b.points.map(([x, y]) => `${x},${-y}`).join(" ") },
          svg("title", {}, `Barrier ${b.id}`)));
      }
    }
  }

  // state: {rules: [{post, rule, state, count, need, lapse_start_ms}], officers, gates, nowMs}
  render(state) {
    const byPost = new Map();
    for (const r of state.rules) {
      if (!byPost.has(r.post)) byPost.set(r.post, []);
      byPost.get(r.post).push(r);
    }
    this.gPosts.replaceChildren();
    const labels = [];
    for (const p of this.site.posts) {
      const rules = byPost.get(p.id) ?? [];
      const st = worst(rules.map((r) => r.state));
      const g = svg("g", { class: `post state-${st}`, "data-post": p.id, "data-state": st });
      let lx, ly;
      if (p.area) {
        g.append(svg("polygon", { class: "area", points: p.area.map(([x, y]) => `${x},${-y}`).join(" ") }));
        lx = p.area.reduce((a, q) => a + q[0], 0) / p.area.length;
        ly = -Math.max(...p.area.map((q) => q[1]));
      } else {
        const [x, y] = p.at;
        const radii = [...new Set(p.rules.map((r) => r.within_m).filter((m) => m !== null))].sort((a, b) => b - a);
        for (const m of radii) g.append(svg("circle", { class: "within", cx: x, cy: -y, r: m }));
        g.append(svg("circle", { class: "centre", cx: x, cy: -y }));
        lx = x; ly = -y - (radii[0] ?? 0);
      }
      if (p.gate) {
        const open = !!state.gates[p.id];
        const [gx, gy] = p.at ?? p.area[0];
        g.append(svg("g", { class: `gate ${open ? "open" : "closed"}`, transform: `translate(${gx},${-gy})` },
          svg("rect", { class: "gate-mark" })));
      }
      // The label: name, then the state in words (colour is never the only cue).
      const worstRule = rules.find((r) => r.state === st);
      let line2 = STATE_WORDS[st];
      if (worstRule && (st === "lapsed" || st === "grace")) {
        line2 += ` · ${worstRule.rule} ${worstRule.count}/${worstRule.need}`;
        const since = lapseStartMs(worstRule);
        if (since !== null) line2 += ` · ${formatDuration(Math.max(0, state.nowMs - since) / 1000)}`;
      } else if (worstRule && st === "covered") line2 += ` · ${worstRule.count}/${worstRule.need}`;
      const gateWord = p.gate ? (state.gates[p.id] ? "gate OPEN" : "gate closed") : null;
      labels.push({ g, lx, ly, lines: [p.name, line2, gateWord].filter(Boolean), st });
      g.append(svg("title", {}, `${p.name}: ${rules.map((r) => `${r.rule} ${STATE_WORDS[r.state]} ${r.count}/${r.need}`).join("; ")}`));
      this.gPosts.append(g);
    }
    for (const { g, lx, ly, lines, st } of labels) {
      const t = svg("text", { class: `post-label state-${st}`, x: lx, y: ly });
      lines.forEach((line, i) => t.append(svg("tspan", { x: lx, dy: i === 0 ? `${-(lines.length - 0.3)}em` : "1.1em", class: i === 1 ? "state-word" : null }, line)));
      g.append(t);
    }
    this.gOfficers.replaceChildren();
    // Officers closer than a marker's width share one label ("A1, A2 armed").
    const near = 30 * (this.unit || 1);
    const groups = [];
    for (const o of state.officers) {
      if (o.x === null || !o.on_duty) continue;
      const g = groups.find((q) => q.stale === o.stale && Math.hypot(q.x - o.x, q.y - o.y) < near);
      if (g) g.members.push(o); else groups.push({ x: o.x, y: o.y, stale: o.stale, members: [o] });
    }
    for (const grp of groups) {
      const names = grp.members.map((o) => o.officer).join(", ");
      const capsets = [...new Set(grp.members.map((o) => o.capabilities.join(", ")))];
      const caps = capsets.length === 1 ? capsets[0] : "";
      const armed = grp.members.some((o) => o.capabilities.includes("armed"));
      const age = Math.max(...grp.members.map((o) => o.last_fix_age_s ?? 0));
      // Mixed capabilities: each officer with their own ("S1 · A3 armed").
      const mixed = grp.members.map((o) => o.officer + (o.capabilities.length ? " " + o.capabilities.join(", ") : "")).join(" · ");
      const label = grp.stale ? `${names} (no signal ${formatDuration(age)})`
        : capsets.length === 1 ? `${names}${caps ? " " + caps : ""}` : mixed;
      const g = svg("g", { class: `officer ${grp.stale ? "stale" : "fresh"}${armed ? " armed" : ""}`,
        "data-officer": names, transform: `translate(${grp.x},${-grp.y})` });
      for (const o of grp.members) {
        g.append(svg("circle", { class: "marker", cx: o.x - grp.x, cy: grp.y - o.y, "data-officer": o.officer }));
      }
      g.append(svg("text", { class: "officer-label", dx: "0.75em", dy: "0.35em" }, label),
        svg("title", {}, grp.members.map((o) => `${o.officer}${o.capabilities.length ? " (" + o.capabilities.join(", ") + ")" : ""}${o.stale ? " – stale: no fix for " + formatDuration(o.last_fix_age_s ?? 0) : ""}`).join("\n")));
      this.gOfficers.append(g);
    }
  }
}

export function lapseStartMs(rule) {
  if (rule.lapse_start_ms !== undefined && rule.lapse_start_ms !== null) return rule.lapse_start_ms;
  return rule.lapse_start ? Date.parse(rule.lapse_start) : null;
}

function bounds(site) {
  const xs = [], ys = [];
  const add = (x, y, r = 0) => { xs.push(x - r, x + r); ys.push(y - r, y + r); };
  for (const p of site.posts) {
    if (p.at) {
      const r = Math.max(0, ...p.rules.map((q) => q.within_m ?? 0));
      add(p.at[0], p.at[1], r);
    } else for (const [x, y] of p.area) add(x, y);
  }
  for (const w of site.walkways) for (const [x, y] of w.points) add(x, y);
  for (const b of site.barriers) for (const [x, y] of b.points) add(x, y);
  if (!xs.length) add(0, 0, 50);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = Math.max(x1 - x0, y1 - y0) * 0.12 + 5;
  return { x0, x1, y0, y1, pad };
}
