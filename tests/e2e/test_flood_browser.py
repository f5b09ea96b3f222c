"""The control room in an alarm flood (issue 21): 30 posts lapse at once; every alert is
one line that opens on demand, at least 12 are visible at 1366x768, the header counts
open alerts and the incident. Screenshots at 1366x768, 1920x1080 and 390x844."""

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
