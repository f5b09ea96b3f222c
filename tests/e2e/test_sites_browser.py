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
