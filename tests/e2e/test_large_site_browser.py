"""A large site in the control room: 60 posts over 1.5 x 1 km and 300 officers. Every
lapsed post must be listed (a link to its place on the plan) and visible on the plan,
not hidden under officers or other labels. Screenshots at 1366x768 and 1920x1080.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_alert_delivery_browser import Sender
from test_dashboard import PASSWORD, SHOTS, _cli, _need_chromium, _now, chromium, serving

__all__: list[str] = []

COLS, ROWS = 10, 6
LAPSED = {(1, 1), (4, 2), (7, 4), (9, 0), (0, 5), (5, 5), (3, 3), (8, 2)}
WAIT_MS = 60_000


def _site() -> str:
    lines = ["site: big-estate", "name: Big Estate (fictional)", "timezone: UTC",
             "stale_after_s: 900", "posts:"]
    for i in range(COLS):
        for j in range(ROWS):
            lines += [f"  - id: p{i}-{j}", f"    name: Post {i}-{j}",
                      f"    at: [{i * 160}, {j * 190}]", "    rules:",
                      "      - {id: cover, need: 2, within_m: 25, grace_s: 0}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("large")
    data_dir = tmp / "data"
    site = tmp / "site.yaml"
    site.write_text(_site(), "utf-8")
    _cli("users", "add", "sup", "--roles", "supervisor", data_dir=data_dir,
         env={"COVERWATCH_PASSWORD": PASSWORD})
    with serving(tmp, site, data_dir) as url:
        yield url


def _events() -> list[dict[str, Any]]:
    """Five officers per post; at a lapsed post four of them are 60 m away (one stays)."""
    t = _now()
    out: list[dict[str, Any]] = []
    n = 0
    for i in range(COLS):
        for j in range(ROWS):
            for k in range(5):
                n += 1
                name = f"O{n:03d}"
                away = (i, j) in LAPSED and k > 0
                x = i * 160 + (60 if away else 3 * k - 6)
                y = j * 190 + (40 if away else 2 * k - 4)
                caps = ["armed"] if k == 0 else []
                out += [{"t": t, "kind": "duty", "officer": name, "on": True, "capabilities": caps},
                        {"t": t, "kind": "fix", "officer": name, "x": x, "y": y}]
    return out


def _visible_on_top(page: Any, selector: str) -> bool:
    """The element is drawn and nothing else is on top of the middle of it."""
    return bool(page.evaluate("""(sel) => {
        const e = document.querySelector(sel);
        if (!e) return false;
        const b = e.getBoundingClientRect();
        if (b.width < 2 || b.height < 2) return false;
        const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
        return hit !== null && (hit === e || e.contains(hit));
    }""", selector))


@pytest.mark.parametrize("viewport", [(1366, 768), (1920, 1080)])
def test_every_lapsed_post_is_listed_and_visible(base: str, viewport: tuple[int, int]) -> None:
    sender = Sender(base)
    sender.post(_events())
    with chromium() as browser:
        size = {"width": viewport[0], "height": viewport[1]}
        page = browser.new_context(viewport=size).new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(base + "/control")
        page.wait_for_url(re.compile(r"/login\?next="))
        page.fill("#username", "sup")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/control$"))
        expected = {f"p{i}-{j}" for i, j in LAPSED}
        page.wait_for_function(
            "(n) => document.querySelectorAll('#problems button[data-problem=lapsed]').length >= n",
            arg=len(expected))
        listed = set(page.eval_on_selector_all("#problems button[data-problem=lapsed]",
                                               "bs => bs.map(b => b.dataset.problemPost)"))
        assert listed == expected
        # Every lapsed post's label is on the plan, on top of officers and other posts.
        for post in sorted(expected):
            sel = f'.post-label.problem[data-post="{post}"]'
            page.locator(sel).wait_for()
            assert _visible_on_top(page, sel), f"{post} is hidden on the plan"
        # The header stays on one line and its count matches the panel's.
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["height"] < 60
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"control-large-{viewport[0]}x{viewport[1]}.png"))
        # A listed post is a link to its place: the plan centres on it.
        page.click('#problems button[data-problem-post="p7-4"]')
        assert _visible_on_top(page, '.post-label.problem[data-post="p7-4"]')
        page.fill("#find", "O150")
        page.press("#find", "Enter")
        page.locator(".find-ring").wait_for()
        assert page.locator("#officers-body tr").count() == 1
        page.screenshot(path=str(SHOTS / f"control-large-find-{viewport[0]}x{viewport[1]}.png"))
