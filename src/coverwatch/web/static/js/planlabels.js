// Label placement on the live plan (plan.js), run at every render and zoom. No two labels
// overlap or touch, and no label covers a marker (posts' centres, gate bars, officers,
// alarms, lapsed posts' numbers). By priority (alarms, lapsed posts, posts in grace, other
// posts, officers) each label takes the first free place beside its marker, else a free
// place further off with a leader line to its marker, else its short form (a post's name,
// an alarm's number as in the SOS banner), else it hides ("crowded") until its marker is
// hovered or tapped or a zoom makes room. Officers whose markers touch share one label.
// Boxes are kept in a grid of cells, so each test looks at its neighbours only: the cost
// grows with the number of labels and markers, not with its square.

import { svg } from "./common.js";

const CELL = 64;  // px, a grid cell
const GAP_X = 5, GAP_Y = 2;  // px kept free between two labels (their white halos touch otherwise)
const MARK_GAP = 2;  // px kept free between a label and a marker
const JOIN = 15;  // px between two officers' markers' centres that share one label
const GROUP_NAMES = 4;  // a larger group of officers reads "n officers"
const NEAR = [14, 30];  // px from the marker to a label with a leader line
const FAR = [14, 30, 55, 90, 130];  // the same for an alarm or a looked-at label
const CROWD = 16;  // px of a leader line from its marker that may cross other markers

const meets = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
const grow = (b, x, y) => ({ left: b.left - x, right: b.right + x, top: b.top - y, bottom: b.bottom + y });

// Boxes in a grid of cells: is a box free of every other, and which does it meet.
class Boxes {
  constructor() { this.cells = new Map(); }
  *keys(b) {
    for (let i = Math.floor(b.left / CELL); i <= Math.floor(b.right / CELL); i++) {
      for (let j = Math.floor(b.top / CELL); j <= Math.floor(b.bottom / CELL); j++) yield (i + 4096) * 8192 + j + 4096;
    }
  }
  add(b, it = null) {
    const entry = { b, it };
    for (const k of this.keys(b)) { const c = this.cells.get(k); if (c) c.push(entry); else this.cells.set(k, [entry]); }
    return entry;
  }
  remove(entry) {
    for (const k of this.keys(entry.b)) { const c = this.cells.get(k); const i = c?.indexOf(entry) ?? -1; if (i >= 0) c.splice(i, 1); }
  }
  hits(b) {
    const out = new Set();
    for (const k of this.keys(b)) for (const e of this.cells.get(k) ?? []) if (meets(e.b, b)) out.add(e);
    return out;
  }
  free(b) {
    for (const k of this.keys(b)) for (const e of this.cells.get(k) ?? []) if (meets(e.b, b)) return false;
    return true;
  }
  // Does the segment cross a box (Liang–Barsky clipping) but those tagged `own`, for a
  // leader line.
  crossed([x1, y1, x2, y2], own = null) {
    const span = { left: Math.min(x1, x2), right: Math.max(x1, x2), top: Math.min(y1, y2), bottom: Math.max(y1, y2) };
    for (const k of this.keys(span)) {
      for (const e of this.cells.get(k) ?? []) if (!own?.includes(e.it) && clips(x1, y1, x2, y2, e.b)) return true;
    }
    return false;
  }
}

function clips(x1, y1, x2, y2, b) {
  let t0 = 0, t1 = 1;
  const dx = x2 - x1, dy = y2 - y1;
  for (const [p, q] of [[-dx, x1 - b.left], [dx, b.right - x1], [-dy, y1 - b.top], [dy, b.bottom - y1]]) {
    if (p === 0) { if (q <= 0) return false; continue; }
    const r = q / p;
    if (p < 0) { if (r > t1) return false; if (r > t0) t0 = r; } else { if (r < t0) return false; if (r < t1) t1 = r; }
  }
  return t0 < t1;
}

// Where a label may go, as the top-left corners of its box (screen pixels), best first:
// a post's or alarm's above, below, right, left, then the corners; an officer's beside its
// marker, right then left, level then a line up or down.
function near(kind, m, w, h) {
  const cx = (m.left + m.right) / 2, cy = (m.top + m.bottom) / 2;
  if (kind === "officer") {
    const out = [];
    for (const k of [0, -1, 1, -2, 2]) out.push([m.right + 3, cy - h / 2 + k * h], [m.left - 3 - w, cy - h / 2 + k * h]);
    return out;
  }
  return [[cx - w / 2, m.top - h - 1], [cx - w / 2, m.bottom + 1], [m.right + 3, cy - h / 2], [m.left - 3 - w, cy - h / 2],
    [cx + 2, m.top - h - 1], [cx - 2 - w, m.top - h - 1], [cx + 2, m.bottom + 1], [cx - 2 - w, m.bottom + 1]];
}

// Further off in eight directions, d pixels from the marker's box: joined by a leader line.
function off(m, w, h, d) {
  const cx = (m.left + m.right) / 2, cy = (m.top + m.bottom) / 2, e = d * 0.7;
  return [[cx - w / 2, m.top - h - d], [m.right + d, cy - h / 2], [cx - w / 2, m.bottom + d], [m.left - d - w, cy - h / 2],
    [m.right + e, m.top - h - e], [m.left - e - w, m.top - h - e], [m.right + e, m.bottom + e], [m.left - e - w, m.bottom + e]];
}

// The leader from the marker's edge to the nearest point of the label's box.
function leader(m, b) {
  const cx = (m.left + m.right) / 2, cy = (m.top + m.bottom) / 2;
  const px = Math.max(b.left, Math.min(cx, b.right)), py = Math.max(b.top, Math.min(cy, b.bottom));
  const d = Math.hypot(px - cx, py - cy) || 1, r = Math.min(m.right - m.left, m.bottom - m.top) / 2;
  return [cx + ((px - cx) * r) / d, cy + ((py - cy) * r) / d, px, py];
}

// The part of a line beyond its first `d` pixels: a leader may leave its marker through
// the markers crowded round it (officers at their post), not cross any further off.
function beyond([x1, y1, x2, y2], d) {
  const n = Math.hypot(x2 - x1, y2 - y1), k = Math.min(d / (n || 1), 1);
  return [x1 + (x2 - x1) * k, y1 + (y2 - y1) * k, x2, y2];
}

// Screen position of a point in the SVG's coordinates (the inverse of Plan.toSite), so
// officers are grouped without asking the browser for a layout.
function screenOf(plan, box) {
  const v = plan.view, s = Math.max(v.w / box.width, v.h / box.height);
  const ox = (box.width * s - v.w) / 2, oy = (box.height * s - v.h) / 2;
  return (x, y) => [box.left + (x - v.x + ox) / s, box.top + (y - v.y + oy) / s];
}

// The SVG's coordinates of a screen position (Plan.toSite, from a box already measured).
function siteOf(plan, box) {
  const v = plan.view, s = Math.max(v.w / box.width, v.h / box.height);
  const ox = (box.width * s - v.w) / 2, oy = (box.height * s - v.h) / 2;
  return (x, y) => [v.x - ox + (x - box.left) * s, v.y - oy + (y - box.top) * s];
}

// Officers whose markers (nearly) touch, as groups of two or more (a union of near pairs,
// found through a grid of JOIN-sized cells).
function clusters(officers, at) {
  const pos = officers.map((e) => at(e.x, -e.y));
  const parent = officers.map((_, i) => i);
  const root = (i) => { while (parent[i] !== i) i = parent[i] = parent[parent[i]]; return i; };
  const cells = new Map();
  pos.forEach(([x, y], i) => {
    const cx = Math.floor(x / JOIN), cy = Math.floor(y / JOIN);
    for (let a = cx - 1; a <= cx + 1; a++) for (let b = cy - 1; b <= cy + 1; b++) {
      for (const k of cells.get(`${a},${b}`) ?? []) {
        if (Math.hypot(pos[k][0] - x, pos[k][1] - y) < JOIN) parent[root(i)] = root(k);
      }
    }
    const key = `${cx},${cy}`;
    if (cells.has(key)) cells.get(key).push(i); else cells.set(key, [i]);
  });
  const groups = new Map();
  officers.forEach((e, i) => { const r = root(i); if (!groups.has(r)) groups.set(r, []); groups.get(r).push(e); });
  return [...groups.values()].filter((g) => g.length > 1);
}

const same = (xs) => (xs.every((x) => x === xs[0]) ? xs[0] : undefined);

// One label for officers standing together: "U1, U2 @main-gate", "A1, A2 (armed)",
// "D1, D2 NO SIGNAL", or "6 officers @gate" for more than GROUP_NAMES.
export function groupText(members) {
  const where = same(members.map((m) => m.where ?? ""));
  if (members.length > GROUP_NAMES) return `${members.length} officers${where ? " @" + where : ""}`;
  const fresh = members.filter((m) => !m.stale), stale = members.filter((m) => m.stale);
  const parts = [];
  if (fresh.length) {
    const caps = same(fresh.map((m) => m.caps.join(", "))), at = same(fresh.map((m) => m.where ?? ""));
    const each = fresh.map((m) => m.name + (caps === undefined && m.caps.length ? ` (${m.caps.join(", ")})` : "")
      + (at === undefined && m.where ? " @" + m.where : ""));
    parts.push(each.join(", ") + (caps ? ` (${caps})` : "") + (at ? " @" + at : ""));
  }
  if (stale.length) parts.push(`${stale.map((m) => m.name).join(", ")} NO SIGNAL`);
  return parts.join(" · ");
}

// Group labels, one per set of officers, kept between placements (a peek holds to one).
function groupLabels(plan, groups) {
  plan.groupEls ??= new Map();
  plan.gGroups ??= plan.gOfficers.appendChild(svg("g", { class: "officer-groups" }));
  const keep = new Set();
  const out = [];
  for (const members of groups) {
    const key = members.map((m) => m.name).sort().join(" ");
    keep.add(key);
    let t = plan.groupEls.get(key);
    if (!t) {
      t = svg("text", { class: "officer-label group-label", dx: "0.75em", dy: "0.35em", "data-officers": key });
      plan.gGroups.append(t);
      plan.groupEls.set(key, t);
    }
    const text = groupText(members), [first] = members;
    if (t.dataset.text !== text) {
      t.dataset.text = text;
      t.replaceChildren(svg("tspan", { class: "full" }, text), svg("tspan", { class: "short" }, `${members.length} officers`));
    }
    t.setAttribute("x", first.x);
    t.setAttribute("y", -first.y);
    t.classList.toggle("armed", members.every((m) => m.armed));
    t.classList.toggle("stale", members.every((m) => m.stale));
    for (const m of members) { m.text.classList.add("grouped"); m.group = t; }
    out.push({ t, members });
  }
  for (const [key, t] of plan.groupEls) if (!keep.has(key)) { t.remove(); plan.groupEls.delete(key); }
  return out;
}

// Place every label of the plan (see the top of this file). Sets on the plan's root
// "numbered" (a lapsed post's label found no room: lapsed posts show their numbers) and
// "alarms-numbered" (an alarm's label shows its number, as its line in the SOS banner).
export function placeLabels(plan) {
  if (!plan.postEls) return;
  const box = plan.root.getBoundingClientRect();
  if (!box.width || !box.height) return;
  const u = plan.unit || 1;
  // The alarms' markers are drawn anew at each render: a peek at one holds to its alert.
  const gone = plan.peek && !plan.peek.isConnected && plan.peek.parentNode?.dataset?.alert;
  if (gone) plan.peek = plan.gAlarms?.querySelector(`[data-alert="${CSS.escape(gone)}"] .alarm-label`) ?? null;
  const officers = plan.root.classList.contains("officer-names") ? [...(plan.officerEls?.values() ?? [])] : [];
  for (const e of plan.officerEls?.values() ?? []) { e.text.classList.remove("grouped"); e.group = null; }
  const at = screenOf(plan, box);
  const groups = groupLabels(plan, clusters(officers.filter((e) => {
    const [x, y] = at(e.x, -e.y);
    return x > box.left && x < box.right && y > box.top && y < box.bottom;
  }), at));
  const items = [];
  for (const a of plan.gAlarms?.querySelectorAll(".alarm-marker") ?? []) {
    const t = a.querySelector(".alarm-label");
    if (t) items.push({ t, rank: 0, marks: [a.querySelector(".alarm-ring")], kind: "alarm", compactable: !!t.querySelector(".num"), own: [a] });
  }
  for (const e of plan.postEls.values()) {
    const st = e.g.getAttribute("data-state");
    const rank = st === "lapsed" ? 1 : st === "grace" ? 2 : 3;
    items.push({ t: e.label, rank, marks: [e.mark], kind: "post", compactable: true, own: [e] });
  }
  for (const e of officers) if (!e.group) items.push({ t: e.text, rank: 4, marks: [e.marker], kind: "officer", compactable: true, own: [e] });
  for (const g of groups) items.push({ t: g.t, rank: 4, marks: g.members.map((m) => m.marker), kind: "officer", compactable: true, own: g.members });
  // A label being looked at (hovered or tapped) is placed early, so the later ones avoid
  // it; its class is set here again, as a post's new state rewrites the label's classes.
  for (const it of items) {
    it.t.removeAttribute("transform");
    it.t.classList.remove("crowded", "compact", "made-way");
    it.peek = it.t === plan.peek;
    it.t.classList.toggle("peek", it.peek);
  }
  // Measure everything first, then write: one layout for the full labels, one for the short.
  for (const it of items) {
    it.r = it.t.getBoundingClientRect();
    const ms = it.marks.map((m) => m.getBoundingClientRect()).filter((m) => m.width);
    it.m = ms.length ? ms.reduce((a, b) => ({ left: Math.min(a.left, b.left), right: Math.max(a.right, b.right), top: Math.min(a.top, b.top), bottom: Math.max(a.bottom, b.bottom) })) : null;
  }
  // A label whose marker is out of view hides without a search (zoomed in on a large site).
  for (const it of items) if (it.m && !meets(it.m, box)) it.m = null;
  const short = items.filter((it) => it.compactable && it.r.width && it.m);
  for (const it of short) it.t.classList.add("compact");
  for (const it of short) it.rc = it.t.getBoundingClientRect();
  for (const it of short) it.t.classList.remove("compact");
  const marks = new Boxes();
  for (const [b, tag] of markerBoxes(plan, box)) marks.add(grow(b, MARK_GAP, MARK_GAP), tag);
  const inside = (b) => b.left >= box.left && b.right <= box.right && b.top >= box.top && b.bottom <= box.bottom;
  // A looked-at label goes before its peers, but an ordinary one after the SOS and
  // lapsed labels: hovering a post hides a lapsed post's name only where nothing else works.
  const order = (it) => (!it.peek ? it.rank : it.rank <= 1 ? it.rank - 0.5 : 1.5);
  items.sort((a, b) => order(a) - order(b));
  // Greedy, best first; when a lapsed post's label finds no place, try again with every
  // problem label short (names only), which leaves room for more of them.
  const place = (shortFirst) => {
    const labels = new Boxes();
    const out = new Map(), madeWay = new Set();
    // Beside the marker first, in full or short, then further off with a leader line that
    // crosses no label; `strict`: no label covers a marker and no leader crosses one,
    // `lines`: a leader may cross markers, `over`: a label may cover them.
    const find = (it, forms, mode = "strict") => {
      const fits = (b) => inside(b) && labels.free(grow(b, GAP_X, GAP_Y)) && (mode === "over" || marks.free(b));
      for (const d of [0, ...(it.rank === 0 || it.peek ? FAR : NEAR)]) {
        for (const [r, compact] of forms) {
          for (const [left, top] of d ? off(it.m, r.width, r.height, d) : near(it.kind, it.m, r.width, r.height)) {
            const b = { left, top, right: left + r.width, bottom: top + r.height };
            if (!fits(b)) continue;
            if (!d) return { b, r, compact };
            const line = leader(it.m, b);
            if (!labels.crossed(line) && (mode !== "strict" || !marks.crossed(beyond(line, CROWD), it.own))) return { b, r, compact, line };
          }
        }
      }
      return null;
    };
    for (const it of items) {
      if (!it.r.width) continue;  // not drawn at this level of detail
      if (!it.m) { out.set(it, null); continue; }  // no marker to stand by: hidden
      const forms = !it.rc || it.peek ? [[it.r, false]]
        : shortFirst && (it.rank === 1 || it.rank === 2) ? [[it.rc, true]] : [[it.r, false], [it.rc, true]];
      let chosen = find(it, forms);
      // An alarm is named or numbered on the plan, a looked-at label shown, with a leader
      // across markers or over one if no place is free of them; a looked-at label with no
      // place free of labels either hides those it would cover while it shows ("made-way").
      if (!chosen && (it.rank === 0 || it.peek)) {
        const last = it.rank === 0 && it.rc ? [[it.rc, true]] : forms;
        chosen = find(it, last, "lines") ?? find(it, last, "over");
      }
      if (!chosen && it.peek) {
        const [left, top] = near(it.kind, it.m, it.r.width, it.r.height)[0];
        const l = Math.max(box.left, Math.min(left, box.right - it.r.width)), t = Math.max(box.top, Math.min(top, box.bottom - it.r.height));
        chosen = { b: { left: l, top: t, right: l + it.r.width, bottom: t + it.r.height }, r: it.r, compact: false };
        for (const e of labels.hits(grow(chosen.b, GAP_X, GAP_Y))) { labels.remove(e); out.set(e.it, null); madeWay.add(e.it); }
      }
      if (chosen) labels.add(chosen.b, it);
      out.set(it, chosen);
    }
    return { out, madeWay, lost: [...out].filter(([it, c]) => !c && it.rank === 1).length };
  };
  let best = place(false);
  if (best.lost) { const again = place(true); if (again.lost < best.lost) best = again; }
  const lines = [];
  for (const [it, chosen] of best.out) {
    if (!chosen) { it.t.classList.add("crowded"); if (best.madeWay.has(it)) it.t.classList.add("made-way"); continue; }
    if (chosen.compact) it.t.classList.add("compact");
    const dx = (chosen.b.left - chosen.r.left) * u, dy = (chosen.b.top - chosen.r.top) * u;
    if (Math.abs(dx) > 1e-9 || Math.abs(dy) > 1e-9) it.t.setAttribute("transform", `translate(${dx},${dy})`);
    if (chosen.line) lines.push(chosen.line);
  }
  const toSvg = siteOf(plan, box);
  drawLeaders(plan, lines.map(([x1, y1, x2, y2]) => [...toSvg(x1, y1), ...toSvg(x2, y2)]));
  // Where a lapsed post's label finds no room, every lapsed post shows its number (and
  // the list above the plan its legend); where all fit, the names say enough.
  const numbered = [...best.out].some(([it, chosen]) => !chosen && it.rank === 1);
  if (numbered !== plan.root.classList.contains("numbered")) {
    plan.root.classList.toggle("numbered", numbered);
    plan.onNumbered?.(numbered);
  }
  plan.root.classList.toggle("alarms-numbered", [...best.out].some(([it, chosen]) => it.rank === 0 && (!chosen || chosen.compact)));
}

// Every marker a label must not cover, as screen boxes: posts' centres, gate bars and
// lapsed posts' numbers, officers in view, and alarms (a ring larger than a marker counts
// by its middle only: a label may lie inside a wide ring of accuracy).
function markerBoxes(plan, box) {
  const out = [];
  const add = (node, tag) => {
    const c = node?.getBoundingClientRect();
    if (!c?.width || !meets(c, box)) return;
    if (c.width > 24) {
      const x = (c.left + c.right) / 2, y = (c.top + c.bottom) / 2;
      out.push([{ left: x - 6, right: x + 6, top: y - 6, bottom: y + 6 }, tag]);
    } else out.push([c, tag]);
  };
  for (const e of plan.postEls.values()) {
    add(e.centre.classList.contains("centre") ? e.centre : null, e);
    add(e.gate?.firstChild, e);
    if (plan.root.classList.contains("numbered")) add(e.num?.firstChild, e);
  }
  for (const e of plan.officerEls?.values() ?? []) add(e.marker, e);
  for (const a of plan.gAlarms?.querySelectorAll(".alarm-marker") ?? []) add(a.querySelector(".alarm-ring"), a);
  return out;
}

// Leader lines (in the SVG's coordinates) from markers to labels placed away from them.
function drawLeaders(plan, lines) {
  if (!plan.gLeaders) { plan.gLeaders = svg("g", { class: "leaders", "aria-hidden": "true" }); plan.root.insertBefore(plan.gLeaders, plan.gAbove); }
  const g = plan.gLeaders;
  while (g.childElementCount > lines.length) g.lastChild.remove();
  while (g.childElementCount < lines.length) g.append(svg("line", { class: "leader" }));
  lines.forEach(([x1, y1, x2, y2], i) => {
    const l = g.children[i];
    l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
  });
}
