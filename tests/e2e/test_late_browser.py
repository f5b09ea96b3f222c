"""Late arrivals in the browser: a real `coverwatch serve`, a phone whose duty booking and
the yard's opening (flag, gate) arrive 15 s after their time. The control room's header
says events are arriving late (and from which device, in the chip's title), the
all-sites board says so under the site's engine state, and the late duty booking has
put the officer on duty (issue 19: it used to be lost to the watch)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from floodkit import control_page
from test_dashboard import (  # the dashboard's browser and helpers
    PASSWORD,
    ROOT,
    SHOTS,
    _cli,
    _need_chromium,
    chromium,
    serving,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

YARD = ROOT / "examples" / "yard" / "site.yaml"
SIZES = {"1366x768": {"width": 1366, "height": 768}, "1920x1080": {"width": 1920, "height": 1080},
         "390x844": {"width": 390, "height": 844}}


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_chromium()
    tmp: Path = tmp_path_factory.mktemp("late")
    data = tmp / "data"
    _cli("users", "add", "sup", "--roles", "supervisor", data_dir=data,
         env={"COVERWATCH_PASSWORD": PASSWORD})
    token = _cli("devices", "add", "phone-a1", "--officer", "A1", data_dir=data).strip()
    with serving(tmp, YARD, data) as url:
        phone = {"Authorization": f"Bearer {token}"}
        fix = {"kind": "fix", "x": 1.0, "y": 2.0, "accuracy_m": 3}
        r = httpx.post(url + "/api/v1/events", json=[{**fix, "t": _ago(0)}], headers=phone,
                       timeout=10)
        assert r.status_code == 200 and r.json()["late"] == 0, r.text
        # 15 s behind: the horizon (at most 10 s behind the clock) has passed them.
        r = httpx.post(url + "/api/v1/events", headers=phone, timeout=10, json=[
            {"t": _ago(15), "kind": "duty", "officer": "A1", "on": True,
             "capabilities": ["armed"]}])
        assert r.status_code == 200 and r.json()["late"] == 1, r.text
        with httpx.Client(base_url=url, timeout=10) as c:
            login = c.post("/api/v1/login", json={"username": "sup", "password": PASSWORD})
            assert login.status_code == 200, login.text
            r = c.post("/api/v1/events", headers={"X-CSRF-Token": login.json()["csrf_token"]},
                       json=[{"t": _ago(15), "kind": "flag", "flag": "open-hours", "on": True},
                             {"t": _ago(15), "kind": "gate", "post": "main-gate",
                              "open": True}])
            assert r.status_code == 200 and r.json()["late"] == 2, r.text
        r = httpx.post(url + "/api/v1/events", json=[{**fix, "t": _ago(0)}], headers=phone,
                       timeout=10)
        assert r.status_code == 200, r.text
        yield url


def test_the_control_room_and_the_board_show_late_arrivals(base: str) -> None:
    with chromium() as browser:
        for size, viewport in SIZES.items():
            page = control_page(browser, base, (viewport["width"], viewport["height"]))
            chip = page.locator("#summary .late-chip")
            chip.wait_for()
            assert re.fullmatch(r"3 late ≤(1[5-9]|2\d) s", chip.inner_text()), chip.inner_text()
            title = chip.get_attribute("title") or ""
            assert "3 state changes applied late" in title and "phone-a1: 1 late" in title
            assert "duty A1 of " in title and "applied late at" in title
            # The late booking put A1 on duty: the officers table says so.
            page.locator("#officers-body tr", has_text="A1").first.wait_for()
            page.screenshot(path=str(SHOTS / f"late-control-{size}.png"))
            page.goto(base + "/sites")
            line = page.locator("#sites-body .late-line")
            line.wait_for()
            assert line.inner_text().startswith("3 late in the last 10 min, ")
            assert "phone-a1: 1 late, up to 1" in (line.get_attribute("title") or "")
            page.screenshot(path=str(SHOTS / f"late-board-{size}.png"), full_page=True)
            page.context.close()
