"""Shared setup for the control room's flood tests in a browser (issue 21): a grid site
written as YAML, a real server with a supervisor, a logged-in /control page, and the
checks those tests share (drawn on top, labels apart, fits the width).

Screenshots go to ``artifacts/screenshots/`` or to ``$COVERWATCH_SHOTS`` when set.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_dashboard import PASSWORD, SHOTS, _cli, _need_chromium, serving

__all__ = ["WAIT_MS", "alarms_unnamed", "control_page", "grid_plan", "grid_site", "label_clashes",
           "labels_made_way", "serve_site", "shot", "sideways_overflow", "visible_on_top"]

WAIT_MS = 60_000


def grid_site(site_id: str, name: str, cols: int, rows: int, dx: float, dy: float,
              need: int = 1, post_id: str = "p{i}-{j}", post_name: str = "Post {i}-{j}") -> str:
    """A site file of ``cols`` x ``rows`` posts ``dx`` by ``dy`` metres apart, each with
    one cover rule (``need`` officers within 25 m, no grace)."""
    lines = [f"site: {site_id}", f"name: {name}", "timezone: UTC", "stale_after_s: 900",
             "posts:"]
    for j in range(rows):
        for i in range(cols):
            n = j * cols + i
            lines += [f"  - id: {post_id.format(i=i, j=j, n=n)}",
                      f"    name: {post_name.format(i=i, j=j, n=n)}",
                      f"    at: [{i * dx}, {j * dy}]", "    rules:",
                      f"      - {{id: cover, need: {need}, within_m: 25, grace_s: 0}}"]
    return "\n".join(lines) + "\n"


def grid_plan(cols: int, rows: int, dx: float, dy: float) -> tuple[str, str]:
    """A drawn estate plan for a ``grid_site`` (streets between the posts, a building in
    each block, 1 px a metre, 100 m of margin): its site-file section (append to the
    site) and its SVG, to be written beside the site as ``estate-plan.svg``."""
    w, h = (cols - 1) * dx + 200, (rows - 1) * dy + 200

    def px(x: float, y: float) -> tuple[float, float]:
        return x + 100, h - 100 - y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:g}" height="{h:g}">',
             f'<rect width="{w:g}" height="{h:g}" fill="#efeadf"/>']
    for i in range(cols + 1):  # streets halfway between the posts
        u = px((i - 0.5) * dx, 0)[0]
        parts.append(f'<rect x="{u - 6:g}" y="0" width="12" height="{h:g}" fill="#d6cfbf"/>')
    for j in range(rows + 1):
        v = px(0, (j - 0.5) * dy)[1]
        parts.append(f'<rect x="0" y="{v - 6:g}" width="{w:g}" height="12" fill="#d6cfbf"/>')
    for i in range(cols):
        for j in range(rows):
            u, v = px(i * dx + 35, j * dy + 75)
            parts.append(f'<rect x="{u:g}" y="{v:g}" width="{dx - 80:g}" height="{dy - 110:g}" '
                         'fill="#cfc6b4" stroke="#8a7f70" stroke-width="2"/>')
    parts.append("</svg>")
    far = ((cols - 1) * dx, (rows - 1) * dy)
    section = ("background:\n  image: estate-plan.svg\n  points:\n"
               f"    - {{pixel: [100, {h - 100:g}], site: [0, 0]}}\n"
               f"    - {{pixel: [{far[0] + 100:g}, 100], site: [{far[0]:g}, {far[1]:g}]}}\n")
    return section, "\n".join(parts) + "\n"


@contextlib.contextmanager
def serve_site(tmp_path_factory: pytest.TempPathFactory, name: str, site_text: str,
               files: dict[str, str] | None = None, *, notify: str | None = None,
               procs: list[Any] | None = None) -> Iterator[str]:
    """A real server for one site with the supervisor ``sup``; yields its base URL.
    ``files`` are written beside the site file (a plan image it names); ``notify`` is
    sup's contact; the server's process is appended to ``procs``."""
    _need_chromium()
    tmp = tmp_path_factory.mktemp(name)
    data_dir = tmp / "data"
    site = tmp / "site.yaml"
    site.write_text(site_text, "utf-8")
    for file_name, text in (files or {}).items():
        (tmp / file_name).write_text(text, "utf-8")
    _cli("users", "add", "sup", "--roles", "supervisor",
         *(("--notify", notify) if notify else ()), data_dir=data_dir,
         env={"COVERWATCH_PASSWORD": PASSWORD})
    with serving(tmp, site, data_dir, procs) as url:
        yield url


def control_page(browser: Any, base: str, viewport: tuple[int, int]) -> Any:
    """The supervisor's /control page at ``viewport``, logged in."""
    page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}
                               ).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/control")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#username", "sup")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/control$"))
    return page


def shot(page: Any, name: str, **kwargs: Any) -> Path:
    """Save a screenshot as ``name`` (PNG) and return its path."""
    folder = Path(os.environ.get("COVERWATCH_SHOTS") or SHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), **kwargs)
    return path


def visible_on_top(page: Any, selector: str, above: str = "") -> bool:
    """The element is drawn and nothing else is on top of the middle of it (but what
    matches ``above``, e.g. an SOS marker that is meant to be above everything)."""
    return bool(page.evaluate("""([sel, above]) => {
        const e = document.querySelector(sel);
        if (!e) return false;
        const b = e.getBoundingClientRect();
        if (b.width < 2 || b.height < 2) return false;
        const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
        return hit !== null && (hit === e || e.contains(hit)
                                || (above !== '' && hit.closest(above) !== null));
    }""", [selector, above]))


# What the plan shows, as the eye sees it: the labels and markers drawn, each with the
# posts, officers or alarms it belongs to ("post:p1", "officer:U1", "alarm:<id>").
_PLAN_DRAWN = """() => {
    const plan = document.querySelector('#plan svg');
    const shown = (e) => {
        for (let n = e; n && n !== plan; n = n.parentNode) {
            const cs = getComputedStyle(n);
            if (cs.display === 'none' || cs.visibility === 'hidden') return false;
        }
        return true;
    };
    const owners = (e) => {
        if (e.dataset.officers) return e.dataset.officers.split(' ').map((o) => 'officer:' + o);
        const g = e.closest('[data-post], [data-gate], [data-officer], .alarm-marker');
        if (!g) return [];
        if (g.classList.contains('alarm-marker')) return ['alarm:' + g.dataset.alert];
        if (g.dataset.officer) return ['officer:' + g.dataset.officer];
        return ['post:' + (g.dataset.post ?? g.dataset.gate)];
    };
    const rect = (e) => {
        const b = e.getBoundingClientRect();
        return { left: b.left, right: b.right, top: b.top, bottom: b.bottom,
                 w: b.width, h: b.height };
    };
    const labels = [...plan.querySelectorAll('.post-label, .officer-label, .alarm-label')]
        .filter(shown).map((e) => ({ text: e.textContent, owners: owners(e), b: rect(e),
                                     peek: e.classList.contains('peek') }))
        .filter(({ b }) => b.w > 1 && b.h > 1);
    // A ring wider than a marker (an alarm's accuracy) counts by its middle only.
    const marks = [...plan.querySelectorAll(
        '.post .centre, .gate-mark, .lapse-num circle, .officer .marker, .alarm-ring')]
        .filter(shown).map((e) => {
            let b = rect(e);
            if (b.w > 24) {
                const x = (b.left + b.right) / 2, y = (b.top + b.bottom) / 2;
                b = { left: x - 6, right: x + 6, top: y - 6, bottom: y + 6, w: 12, h: 12 };
            }
            return { what: owners(e)[0] + ' ' + e.getAttribute('class'), owners: owners(e), b };
        }).filter(({ b }) => b.w > 0.5);
    const hidden = [...plan.querySelectorAll('.made-way')].map((e) => e.textContent);
    return { labels, marks, hidden };
}"""


def label_clashes(page: Any, *, markers: bool = True) -> list[str]:
    """What keeps the plan's labels from being read, as texts: two labels drawn whose boxes
    come within a pixel of each other ("a / b"), and (``markers``) a label whose box covers
    a marker that is not its own (a post's centre or gate bar, a lapsed post's number, an
    officer, an alarm): "label > marker"."""
    drawn = page.evaluate(_PLAN_DRAWN)
    labels, out = drawn["labels"], []

    def meet(a: dict[str, float], b: dict[str, float], gap: float) -> bool:
        return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > -gap
                and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > -gap)
    for i, a in enumerate(labels):
        out += [f"{a['text']} / {b['text']}" for b in labels[i + 1:] if meet(a["b"], b["b"], 1)]
        if markers:
            out += [f"{a['text']} > {m['what']}" for m in drawn["marks"]
                    if not set(m["owners"]) & set(a["owners"]) and meet(a["b"], m["b"], -0.5)]
    return out


def labels_made_way(page: Any) -> list[str]:
    """Labels hidden while a looked-at label is shown where they were (none had room)."""
    return list(page.evaluate(_PLAN_DRAWN)["hidden"])


def alarms_unnamed(page: Any) -> list[str]:
    """Alarms (SOS, fall) on the plan that cannot be told apart: each must show its label,
    with the officer's name or its number (S1, F2) as on its line of the SOS banner."""
    return list(page.evaluate("""() => {
        const vis = (e) => e !== null && getComputedStyle(e).display !== 'none'
                           && e.getBoundingClientRect().width > 1;
        return [...document.querySelectorAll('#plan .alarm-marker')].flatMap((g) => {
            const t = g.querySelector('.alarm-label'), id = g.dataset.alert;
            if (!vis(t) || t.classList.contains('crowded')) return [id + ': no label'];
            if (vis(t.querySelector('.name'))) return [];
            const num = t.querySelector('.num');
            if (!vis(num)) return [id + ': neither name nor number'];
            const line = document.querySelector(
                `#sos-banner .sos-line[data-alert="${CSS.escape(id)}"] .num`);
            if (!vis(line) || line.textContent !== num.textContent)
                return [id + ': number ' + num.textContent + ' is not on its banner line'];
            return [];
        });
    }"""))


def sideways_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the window (0: no sideways scrolling)."""
    return int(page.evaluate(
        "() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"))


def crowd_events(t: str, cols: int, rows: int, dx: float, dy: float,
                 lapsed: set[tuple[int, int]], *, armed: bool = False,
                 accuracy_m: float | None = None, sos: tuple[str, ...] = ()
                 ) -> list[dict[str, Any]]:
    """Five officers per post of a ``grid_site``; at a lapsed post four of them are 60 m
    away (one stays). ``armed``: the one who stays carries "armed"; ``sos``: these officers
    press SOS where they stand."""
    out: list[dict[str, Any]] = []
    n = 0
    for i in range(cols):
        for j in range(rows):
            for k in range(5):
                n += 1
                name = f"O{n:03d}"
                away = (i, j) in lapsed and k > 0
                x = i * dx + (60 if away else 3 * k - 6)
                y = j * dy + (40 if away else 2 * k - 4)
                duty: dict[str, Any] = {"t": t, "kind": "duty", "officer": name, "on": True}
                if armed:
                    duty["capabilities"] = ["armed"] if k == 0 else []
                fix: dict[str, Any] = {"t": t, "kind": "fix", "officer": name, "x": x, "y": y}
                if accuracy_m is not None:
                    fix["accuracy_m"] = accuracy_m
                if name in sos:
                    fix["alarm"] = "sos"
                out += [duty, fix]
    return out
