"""The control room in an alarm flood (issue 21): 30 posts lapse at once; every alert is
one line that opens on demand, at least 12 are visible at 1366x768, the header counts
open alerts and the incident. Screenshots at 1366x768, 1920x1080 and 390x844. Four SOS
pressed at posts: the list's SOS lines in the banner's order, each saying where in words
("at Post 03 (±5 m, …)"), and a tick rewrites only each line's duration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from floodkit import control_page, grid_site, serve_site, shot
from test_alert_delivery_browser import Sender
from test_dashboard import _now, chromium

__all__: list[str] = []

POSTS = 30


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = grid_site("flood-estate", "Flood Estate (fictional)", 10, 3, 150, 200,
                     post_id="p{n:02d}", post_name="Post {n:02d}")
    with serve_site(tmp_path_factory, "flood", site) as url:
        yield url


def _events() -> list[dict[str, Any]]:
    """One officer per post, each 200 m away from it: every post lapses at once."""
    t = _now()
    return [e for i in range(POSTS) for e in (
        {"t": t, "kind": "duty", "officer": f"O{i:02d}", "on": True},
        {"t": t, "kind": "fix", "officer": f"O{i:02d}", "x": (i % 10) * 150 + 75,
         "y": (i // 10) * 200 + 100})]


@pytest.mark.parametrize("viewport", [(1366, 768), (1920, 1080), (390, 844)])
def test_a_flood_is_one_line_per_alert(base: str, viewport: tuple[int, int]) -> None:
    Sender(base).post(_events())
    with chromium() as browser:
        page = control_page(browser, base, viewport)
        page.wait_for_function("(n) => document.querySelectorAll('.alert-card').length >= n",
                               arg=POSTS)
        assert page.locator(".alert-card.open").count() == 0  # a flood: one line each
        page.locator("#summary", has_text="open").wait_for()
        name = f"control-flood-{viewport[0]}x{viewport[1]}.png"
        if viewport == (1366, 768):
            page.locator("#alert-list").scroll_into_view_if_needed()
            shown = page.evaluate("""() => [...document.querySelectorAll('.alert-card')]
                .filter((c) => { const b = c.getBoundingClientRect();
                                 return b.top >= 0 && b.bottom <= innerHeight; }).length""")
            shot(page, name)
            assert shown >= 12, f"only {shown} alerts visible at 1366x768"
            # One line opens on demand and folds again.
            first = page.locator(".alert-card .line").first
            first.click()
            page.locator(".alert-card.open").wait_for()
            first.click()
            page.wait_for_function("() => !document.querySelector('.alert-card.open')")
        else:
            shot(page, name)


SOS_AT = {"S1": 3, "S2": 5, "S3": 7, "S4": 9}  # officer: the post they press SOS at


_WATCH = """() => {
    window._lineChanges = [];
    window._heads = [...document.querySelectorAll('.alert-card .line .l-head')];
    const seen = new MutationObserver((rs) => { for (const r of rs) {
        const n = r.target.nodeType === 1 ? r.target : r.target.parentElement;
        if (!n.closest('.l-dur')) window._lineChanges.push(n.className || n.nodeName);
    } });
    for (const line of document.querySelectorAll('.alert-card .line'))
        seen.observe(line, { subtree: true, childList: true, characterData: true });
    window._seen = seen;
    return window._heads.length;
}"""


def test_sos_lines_in_the_banners_order_say_where(base: str) -> None:
    sender = Sender(base)
    sender.post(_events())  # the flood (when this test runs alone)
    t = _now()
    # Four officers press SOS at the same instant, each 2 m from a post ("at" the post).
    sender.post([e for officer, n in SOS_AT.items() for e in (
        {"t": t, "kind": "duty", "officer": officer, "on": True},
        {"t": t, "kind": "fix", "officer": officer, "x": (n % 10) * 150 + 2,
         "y": (n // 10) * 200 + 1, "accuracy_m": 5, "alarm": "sos"})])
    with chromium() as browser:
        page = control_page(browser, base, (1366, 768))
        page.wait_for_function("(n) => document.querySelectorAll('#sos-banner .sos-line')"
                               ".length >= n", arg=len(SOS_AT))
        page.wait_for_function("(n) => document.querySelectorAll('.alert-card').length >= n",
                               arg=POSTS + len(SOS_AT) - 1)
        banner = page.eval_on_selector_all("#sos-banner .sos-line",
                                           "ls => ls.map(l => l.dataset.alert)")
        cards = page.eval_on_selector_all(
            "#alert-list .alert-card", "cs => cs.filter(c => c.querySelector('.alarm-title'))"
            ".map(c => c.dataset.alert)")
        assert cards == banner  # one order: time sent, then officer
        lines = page.eval_on_selector_all(
            "#alert-list .alert-card", "cs => cs.filter(c => c.querySelector('.alarm-title'))"
            ".map(c => c.querySelector('.line').textContent)")
        for officer, line in zip(sorted(SOS_AT), lines, strict=True):
            assert line.startswith(f"at Post {SOS_AT[officer]:02d} (±5 m"), line
        # The list updates only what changed: the seconds tick in each line's duration.
        assert page.evaluate(_WATCH) >= POSTS
        page.wait_for_timeout(3500)
        assert page.evaluate("() => window._lineChanges") == []
        assert page.evaluate("() => window._heads.filter((n) => !n.isConnected).length") == 0
        shot(page, "control-flood-sos-1366x768.png")
