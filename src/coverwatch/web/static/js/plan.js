// The live site plan: SVG in site metres (+y is north, so y is flipped),
// posts coloured by their worst rule, gates, walkways, officers. Pan with a
// drag, zoom with the wheel or the +/- buttons.

import { svg, el, formatDuration, STATE_WORDS, worst } from "./common.js";
import { Background, attribution } from "./planbackground.js";
import { placeLabels } from "./planlabels.js";

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
    this.gBackground = svg("g", { class: "background" });
    this.gStatic = svg("g", { class: "static" });
    this.gPosts = svg("g", { class: "posts" });
    this.gOfficers = svg("g", { class: "officers" });
    this.root.append(this.gBackground, this.gStatic, this.gPosts, this.gOfficers);
    this.background = new Background(this.gBackground, site.background);
    if (site.background) this.root.classList.add("has-background");
    const zoom = el("div", { class: "zoom" },
      el("button", { type: "button", "aria-label": "Zoom in", title: "Zoom in (+)", onclick: () => this.zoom(0.8) }, "+"),
      el("button", { type: "button", "aria-label": "Zoom out", title: "Zoom out (−)", onclick: () => this.zoom(1.25) }, "−"),
      el("button", { type: "button", "aria-label": "Reset view", title: "Whole site (0)", onclick: () => this.reset() }, "⤢"));
    host.append(this.root, zoom);
    const credit = attribution(site.background);
    if (credit) host.append(el("div", { class: "plan-attribution" }, credit));
    host.tabIndex = 0;
    host.addEventListener("keydown", (e) => this.key(e));
    this.drawStatic();
    this.apply();
    this.bindPointer();
    this.bindPeek();
  }

  apply() {
    const v = this.view;
    this.root.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    // Labels and markers keep their on-screen size whatever the zoom.
    const px = Math.max(v.w / Math.max(this.root.clientWidth || 800, 1), v.h / Math.max(this.root.clientHeight || 500, 1));
    this.root.style.setProperty("--u", `${px}px`);
    this.unit = px;
    this.background?.update(v, px);
    this.placeLabels?.();
  }

  zoom(f, cx, cy) {
    const v = this.view;
    cx ??= v.x + v.w / 2; cy ??= v.y + v.h / 2;
    const w = Math.min(Math.max(v.w * f, 5), this.home.w * 8);
    const k = w / v.w;
    this.view = { x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k, w, h: v.h * k };
    this.apply();
    if (this.postEls) this.applyDetail();
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
  // Updates what changed (post states, labels, officer positions) instead of redrawing.
  render(state) {
    if (!this.postEls) this.buildPosts();
    const byPost = new Map();
    for (const r of state.rules) {
      if (!byPost.has(r.post)) byPost.set(r.post, []);
      byPost.get(r.post).push(r);
    }
    for (const p of this.site.posts) this.updatePost(p, byPost.get(p.id) ?? [], state);
    this.updateOfficers(state.officers);
    this.applyDetail();
  }

  // Posts are built once; problems (lapsed, in grace) and gates are drawn above officers.
  buildPosts() {
    this.postEls = new Map();
    this.gAboveMarks = svg("g", { class: "above-marks" });
    this.gAbove = svg("g", { class: "above" });
    this.root.append(this.gAboveMarks, this.gAbove);
    if (this.gAlarms) this.root.append(this.gAlarms);  // alarms stay on top of everything
    for (const p of this.site.posts) {
      const g = svg("g", { class: "post", "data-post": p.id });
      let lx, ly, cx, cy;
      if (p.area) {
        g.append(svg("polygon", { class: "area", points: p.area.map(([x, y]) => `${x},${-y}`).join(" ") }));
        lx = p.area.reduce((a, q) => a + q[0], 0) / p.area.length;
        ly = -Math.max(...p.area.map((q) => q[1]));
        cx = lx; cy = -p.area.reduce((a, q) => a + q[1], 0) / p.area.length;
      } else {
        const [x, y] = p.at;
        const radii = [...new Set(p.rules.map((r) => r.within_m).filter((m) => m !== null))].sort((a, b) => b - a);
        for (const m of radii) g.append(svg("circle", { class: "within", cx: x, cy: -y, r: m }));
        g.append(svg("circle", { class: "centre", cx: x, cy: -y }));
        lx = x; ly = -y - (radii[0] ?? 0); cx = x; cy = -y;
      }
      const title = svg("title", {});
      g.append(title);
      const label = svg("text", { class: "post-label", x: lx, y: ly, "data-post": p.id });
      let gate = null;
      if (p.gate) {
        const [gx, gy] = p.at ?? p.area[0];
        gate = svg("g", { class: "gate closed", transform: `translate(${gx},${-gy})`, "data-gate": p.id }, svg("rect", { class: "gate-mark" }));
        this.gAbove.append(gate);  // a gate bar is never hidden under officer dots
      }
      this.gPosts.append(g);
      const mark = g.querySelector(".within, .area") ?? g.querySelector(".centre");
      const centre = g.querySelector(".centre") ?? mark;
      this.postEls.set(p.id, { g, label, title, gate, lx, ly, cx, cy, mark, centre, key: null });
    }
  }

  // Lapsed posts carry the number of their entry in the list of lapsed posts above the
  // plan (the legend), so each is known without its label: on a phone at whole-site zoom
  // most labels find no room and show only on a tap.
  number(numbers) {
    if (!this.postEls) this.buildPosts();
    for (const [id, e] of this.postEls) {
      const n = numbers.get(id);
      if (!n) { e.num?.remove(); e.num = null; continue; }
      if (!e.num) {
        e.num = svg("g", { class: "lapse-num", transform: `translate(${e.cx},${e.cy})`, "aria-hidden": "true" },
          svg("circle", {}), svg("text", { dy: "0.36em" }));
        e.g.append(e.num);
      }
      const text = e.num.lastChild;
      if (text.textContent !== String(n)) text.textContent = String(n);
    }
  }

  updatePost(p, rules, state) {
    const e = this.postEls.get(p.id);
    const st = worst(rules.map((r) => r.state));
    const worstRule = rules.find((r) => r.state === st);
    let line2 = STATE_WORDS[st];
    if (worstRule && (st === "lapsed" || st === "grace")) {
      line2 += ` · ${worstRule.rule} ${worstRule.count}/${worstRule.need}`;
      const since = lapseStartMs(worstRule);
      if (since !== null) line2 += ` · ${formatDuration(Math.max(0, state.nowMs - since) / 1000)}`;
    } else if (worstRule && st === "covered") line2 += ` · ${worstRule.count}/${worstRule.need}`;
    const open = p.gate ? !!state.gates[p.id] : null;
    const lines = [p.name, line2, p.gate ? (open ? "gate OPEN" : "gate closed") : null].filter(Boolean);
    const key = `${st}|${lines.join("|")}`;
    if (e.key === key) return;
    const problem = st === "lapsed" || st === "grace";
    e.g.setAttribute("class", `post state-${st}`);
    e.g.setAttribute("data-state", st);
    e.label.setAttribute("class", `post-label state-${st}${problem ? " problem" : ""}`);
    e.label.replaceChildren(...lines.map((line, i) => svg("tspan", { x: e.lx, dy: i === 0 ? `${-(lines.length - 0.3)}em` : "1.1em", class: i === 1 ? "state-word" : null }, line)));
    e.title.textContent = `${p.name}: ${rules.map((r) => `${r.rule} ${STATE_WORDS[r.state]} ${r.count}/${r.need}`).join("; ")}`;
    // Lapsed and in-grace posts and their labels go above the officers; the others stay below.
    (problem ? this.gAboveMarks : this.gPosts).append(e.g);
    (problem ? this.gAbove : e.g).append(e.label);
    if (e.gate) e.gate.setAttribute("class", `gate ${open ? "open" : "closed"}`);
    e.key = key;
  }

  // One marker per officer, moved in place; labels only when zoomed in enough to read them.
  updateOfficers(officers) {
    this.officerEls ??= new Map();
    const seen = new Set();
    for (const o of officers) {
      if (o.x === null || o.x === undefined || !o.on_duty) continue;
      seen.add(o.officer);
      let e = this.officerEls.get(o.officer);
      if (!e) {
        const marker = svg("circle", { class: "marker", cx: 0, cy: 0, "data-officer": o.officer });
        const text = svg("text", { class: "officer-label", dx: "0.75em", dy: "0.35em" });
        const title = svg("title", {});
        const g = svg("g", { class: "officer", "data-officer": o.officer }, marker, text, title);
        this.gOfficers.append(g);
        e = { g, text, title, marker, key: null, x: 0, y: 0 };
        this.officerEls.set(o.officer, e);
      }
      e.x = o.x; e.y = o.y;
      Object.assign(e, { name: o.officer, caps: o.capabilities, stale: !!o.stale });
      e.g.setAttribute("transform", `translate(${o.x},${-o.y})`);
      const armed = o.capabilities.includes("armed");
      const where = (o.counts_for ?? []).map((c) => c.post)[0];
      // The officer's name is the short form of the label (planlabels.js).
      const label = o.stale ? ` NO SIGNAL ${formatDuration(o.last_fix_age_s ?? 0)}`
        : `${o.capabilities.length ? " " + o.capabilities.join(", ") : ""}${where ? " @" + where : ""}`;
      Object.assign(e, { armed, where });
      const key = `${o.stale}|${armed}|${label}`;
      if (e.key === key) continue;
      e.g.setAttribute("class", `officer ${o.stale ? "stale" : "fresh"}${armed ? " armed" : ""}`);
      e.text.replaceChildren(svg("tspan", {}, o.officer), ...(label ? [svg("tspan", {}, label)] : []));
      e.title.textContent = `${o.officer}${o.capabilities.length ? " (" + o.capabilities.join(", ") + ")" : ""}${o.stale ? " – stale: no fix for " + formatDuration(o.last_fix_age_s ?? 0) : ""}`;
      e.key = key;
    }
    for (const [name, e] of this.officerEls) if (!seen.has(name)) { e.g.remove(); this.officerEls.delete(name); }
  }

  // Labels by level of detail: officer names when few are in view or when zoomed in;
  // post names when zoomed in or the site is small; problems always.
  applyDetail() {
    const v = this.view;
    let inView = 0;
    for (const e of this.officerEls?.values() ?? []) {
      if (e.x >= v.x && e.x <= v.x + v.w && -e.y >= v.y && -e.y <= v.y + v.h) inView++;
    }
    const zoomedIn = (this.unit || 1) < 0.35;
    this.root.classList.toggle("officer-names", inView <= 40 || zoomedIn);
    this.root.classList.toggle("post-names", this.site.posts.length <= 20 || zoomedIn || (this.unit || 1) < 1.2);
    this.placeLabels();
  }

  // No label covers another or a marker (planlabels.js).
  placeLabels() { placeLabels(this); }

  // A crowded or shortened label shows in full while its marker is under the pointer,
  // placed early (others may then be crowded in turn), with a leader line if need be; the
  // labels it would cover where no place is free hide while it shows ("made-way"). A
  // mouse leaving the marker ends it; a tap's lasts until another tap.
  bindPeek() {
    const labelOf = (node) => {
      const g = node?.closest?.("[data-post], [data-officer], .alarm-marker");
      if (!g || !this.root.contains(g)) return null;
      if (g.classList.contains("alarm-marker")) return g.querySelector(".alarm-label");
      if (g.dataset.officer) { const e = this.officerEls?.get(g.dataset.officer); return e?.group ?? e?.text ?? null; }
      return this.postEls?.get(g.dataset.post)?.label ?? null;
    };
    const peek = (t) => {
      if (t === this.peek) return;
      this.peek = t;
      this.placeLabels();
    };
    this.root.addEventListener("pointerover", (ev) => {
      const t = labelOf(ev.target);
      if (t && (t.classList.contains("crowded") || t.classList.contains("compact"))) peek(t);
    });
    // Onto another label is not away: the labels move when a peek starts or ends, and one
    // that came under a still pointer must not end the peek that moved it there.
    this.root.addEventListener("pointerout", (ev) => {
      if (ev.pointerType === "touch" || !this.peek || ev.relatedTarget?.closest?.(".post-label, .officer-label, .alarm-label")) return;
      if (labelOf(ev.relatedTarget) !== this.peek) peek(null);
    });
    this.root.addEventListener("pointerdown", (ev) => { if (ev.pointerType === "touch" && !labelOf(ev.target)) peek(null); });
  }

  // Centre the plan on a point (site metres) and mark it for a moment.
  showPoint(x, y, span = 120) {
    const r = this.root.getBoundingClientRect();
    const aspect = r.width && r.height ? r.height / r.width : 0.6;
    this.view = { x: x - span / 2, y: -y - (span * aspect) / 2, w: span, h: span * aspect };
    this.apply();
    this.applyDetail();
    this.marker?.remove();
    this.marker = svg("circle", { class: "find-ring", cx: x, cy: -y });
    this.gAbove.append(this.marker);
    setTimeout(() => this.marker?.remove(), 4000);
  }

  showPost(id) {
    const e = this.postEls?.get(id);
    if (e) this.showPoint(e.cx, -e.cy);
    return !!e;
  }

  showOfficer(name) {
    const e = this.officerEls?.get(name);
    if (e) this.showPoint(e.x, e.y, 80);
    return !!e;
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
