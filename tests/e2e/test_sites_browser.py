"""The all-sites board in a browser: a control-room supervisor sees every site, worst
first; a supervisor of one site sees only theirs and goes from the board into its
control room, whose every call is that site's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_dashboard import (  # the dashboard's browser and helpers
    PASSWORD,
    ROOT,
    SHOTS,
    WAIT_MS,
    _cli,
    _need_chromium,
    chromium,
    serving,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

YARD = ROOT / "examples" / "yard" / "site.yaml"
QUAY = ROOT / "examples" / "quay" / "site.yaml"
DESKTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("sites")
    data = tmp / "data"
    pw = {"COVERWATCH_PASSWORD": PASSWORD}
    _cli("users", "add", "control", "--roles", "supervisor", data_dir=data, env=pw)
    _cli("--site", "quay-depot", "users", "add", "quay-sup", "--roles", "supervisor",
         data_dir=data, env=pw)
    with serving(tmp, [YARD, QUAY], data) as url:
        yield url


def _login(browser: Any, base: str, user: str) -> Any:
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    return page


def test_control_room_sees_every_site(base: str) -> None:
    with chromium() as browser:
        page = _login(browser, base, "control")
        page.wait_for_url(re.compile(r"/sites$"))
        page.locator("#sites-body tr").nth(1).wait_for()
        names = page.locator("#sites-body tr td:first-child a").all_inner_texts()
        assert sorted(names) == ["Harbour Yard (fictional)", "Quay Depot (fictional)"]
        page.screenshot(path=str(SHOTS / "sites-board-1366x768.png"), full_page=True)


def test_a_site_supervisor_sees_only_their_site_and_enters_it(base: str) -> None:
    with chromium() as browser:
        page = _login(browser, base, "quay-sup")
        page.wait_for_url(re.compile(r"/sites$"))
        page.locator("#sites-body tr").first.wait_for()
        assert page.locator("#sites-body tr").count() == 1
        page.click("text=Quay Depot (fictional)")
        page.wait_for_url(re.compile(r"/control\?site=quay-depot$"))
        page.locator("#site-name", has_text="Quay Depot").wait_for()
        assert page.locator("#sites-link").is_visible()
        page.screenshot(path=str(SHOTS / "sites-control-quay-1366x768.png"))
        page.goto(base + "/control?site=harbour-yard")
        assert "Not allowed" in page.inner_text("body")
        assert "at harbour-yard" in page.inner_text("body")


def test_the_board_names_the_node_evaluating_each_site(base: str) -> None:
    """Distributed mode: the board shows each site's owner beside its lag. The real
    answer is taken and the first site given an owner, as a worker's board would get."""
    with chromium() as browser:
        page = _login(browser, base, "control")
        page.wait_for_url(re.compile(r"/sites$"))

        def owned(route: Any) -> None:
            answer = route.fetch()
            body = answer.json()
            body["sites"][0]["owner"] = "worker-7f3a"
            route.fulfill(response=answer, json=body)

        page.route("**/api/v1/sites", owned)
        page.reload()
        engine = page.locator("#sites-body tr").first.locator("td").last
        engine.locator(".owner").wait_for()
        assert engine.locator(".owner").inner_text() == "evaluated by worker-7f3a"
        assert "s behind" in engine.inner_text() or "NOT READY" in engine.inner_text()
        # A site with no owner named (one process) shows no owner line.
        assert page.locator("#sites-body tr").nth(1).locator(".owner").count() == 0
        for width, height in ((1366, 768), (1920, 1080), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=str(SHOTS / f"sites-board-owner-{width}x{height}.png"),
                            full_page=True)
