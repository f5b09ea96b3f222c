"""A large site in the control room: 60 posts over 1.5 x 1 km and 300 officers. Every
lapsed post must be listed (a link to its place on the plan) and visible on the plan,
not hidden under officers or other labels. Screenshots at 1366x768 and 1920x1080.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from floodkit import control_page, crowd_events, grid_site, serve_site, shot, visible_on_top
from test_alert_delivery_browser import Sender
from test_dashboard import _now, chromium

__all__: list[str] = []

COLS, ROWS = 10, 6
LAPSED = {(1, 1), (4, 2), (7, 4), (9, 0), (0, 5), (5, 5), (3, 3), (8, 2)}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = grid_site("big-estate", "Big Estate (fictional)", COLS, ROWS, 160, 190, need=2)
    with serve_site(tmp_path_factory, "large", site) as url:
        yield url


@pytest.mark.parametrize("viewport", [(1366, 768), (1920, 1080)])
def test_every_lapsed_post_is_listed_and_visible(base: str, viewport: tuple[int, int]) -> None:
    sender = Sender(base)
    sender.post(crowd_events(_now(), COLS, ROWS, 160, 190, LAPSED, armed=True))
    with chromium() as browser:
        page = control_page(browser, base, viewport)
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
            assert visible_on_top(page, sel), f"{post} is hidden on the plan"
        # The header stays on one line and its count matches the panel's.
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["height"] < 60
        shot(page, f"control-large-{viewport[0]}x{viewport[1]}.png")
        # A listed post is a link to its place: the plan centres on it.
        page.click('#problems button[data-problem-post="p7-4"]')
        assert visible_on_top(page, '.post-label.problem[data-post="p7-4"]')
        page.fill("#find", "O150")
        page.press("#find", "Enter")
        page.locator(".find-ring").wait_for()
        assert page.locator("#officers-body tr").count() == 1
        shot(page, f"control-large-find-{viewport[0]}x{viewport[1]}.png")
