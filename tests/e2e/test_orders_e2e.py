"""Post orders in a real browser: an officer on a phone reads and acknowledges the
orders of the post they are rostered to, and the supervisor's "unbriefed" alert clears.

A real ``coverwatch serve`` runs on the fictional Harbour Yard (server start-up
helpers from ``test_dashboard``). Screenshots go to ``artifacts/screenshots/``.
Without ``/usr/bin/chromium`` this skips with the reason; under ``CI=true`` it fails.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import (
    DESKTOP,
    PASSWORD,
    PHONE,
    SCRIPT,
    SHOTS,
    SITE,
    Server,
    _cli,
    _login,
    _need_chromium,
    _now,
    chromium,
    serving,
)

from serverkit import YARD

__all__: list[str] = []


def _iso(offset_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("orders")
    data_dir = tmp / "data"
    pw = {"COVERWATCH_PASSWORD": PASSWORD}
    for name, roles in (("sup", "supervisor"), ("U1", "officer")):
        _cli("users", "add", name, "--roles", roles, data_dir=data_dir, env=pw)
    token = _cli("devices", "add", "phone-u1", "--officer", "U1", data_dir=data_dir).strip()
    # The example without its escalation (nobody here has a contact): serverkit.YARD.
    with serving(tmp, YARD, data_dir) as base:
        yield Server(base, token, data_dir)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    with chromium() as b:
        yield b


def _shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_officer_acknowledges_orders_and_unbriefed_alert_clears(
    server: Server, browser: Any
) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as c:
        login = c.post("/api/v1/login", json={"username": "sup", "password": PASSWORD})
        assert login.status_code == 200, login.text
        r = c.post("/api/v1/roster", headers={"X-CSRF-Token": login.json()["csrf_token"],
                                              "Content-Type": "text/csv"},
                   content="officer,post,start,end\n"
                           f"U1,service-gate,{_iso(-60)},{_iso(8 * 3600)}\n")
        assert r.status_code == 200, r.text
    # U1 books on duty from their phone without having read the orders.
    r = httpx.post(server.base + "/api/v1/events", timeout=60,
                   headers={"Authorization": f"Bearer {server.device_token}"},
                   json=[{"t": _now(), "kind": "duty", "on": True, "capabilities": []}])
    assert r.status_code == 200, r.text

    sup = _login(browser, server, "sup", "/control", DESKTOP)
    sup.wait_for_url(re.compile(r"/control$"))
    card = sup.locator(".alert-card", has_text="orders:U1")
    card.wait_for()
    assert "OPEN" in card.locator(".badge").inner_text()
    assert "U1 on duty without acknowledging the current orders" in card.inner_text()
    row = sup.locator('#briefing-body tr[data-officer="U1"]')
    row.and_(sup.locator('[data-acknowledged="false"]')).wait_for()
    _shoot(sup, "orders-unbriefed-control.png")

    officer = _login(browser, server, "U1", "/duty", PHONE)
    officer.wait_for_url(re.compile(r"/duty$"))
    orders = officer.locator('.orders-card[data-post="service-gate"]')
    orders.wait_for()
    text = orders.inner_text()
    assert "At least 1 officer must be within 10 m of Service Gate" in text
    assert "Open the service gate only for deliveries" in text
    assert "You have not acknowledged these orders yet." in text
    _shoot(officer, "orders-officer-phone.png")
    orders.get_by_role("button", name="I have read and understood these orders").click()
    orders.locator(".acked").wait_for()
    assert "You acknowledged these orders" in orders.inner_text()
    _shoot(officer, "orders-officer-acknowledged.png")

    # The supervisor's alert resolves (it stays on the board until a supervisor closes it).
    card.locator(".badge", has_text="Resolved").wait_for()
    assert "U1 acknowledged the current orders" in card.inner_text()
    row.and_(sup.locator('[data-acknowledged="true"]')).wait_for()
    _shoot(sup, "orders-briefed-control.png")


def test_roster_cli_refuses_an_unqualified_officer_then_imports(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("officer,post,start,end\n"
                      "U1,main-gate,2030-01-01T08:00:00Z,2030-01-01T20:00:00Z\n", "utf-8")
    quals = tmp_path / "quals.csv"
    quals.write_text("officer,qualification,valid_until\nU1,armed,2030-01-31\n", "utf-8")
    data_dir = tmp_path / "data"
    args = [str(SCRIPT), "roster", "import", str(roster), "--site", str(SITE),
            "--data-dir", str(data_dir)]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "U1 is not qualified armed" in " ".join(refused.stderr.split())
    _cli("qualifications", "import", str(quals), data_dir=data_dir)
    assert "1 shifts imported" in _cli("roster", "import", str(roster), "--site", str(SITE),
                                       data_dir=data_dir)
