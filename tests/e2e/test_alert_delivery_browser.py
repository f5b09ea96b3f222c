"""A lapse alerts people and the control room says truthfully that it did, in a
real browser: the card shows "notified supervisor (mail) ✓" only once the SMTP
server (aiosmtpd, in this test) holds the message; the supervisor sends the
nearest armed officer, whose /duty page shows the instruction; all of it is in
the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import (
    DESKTOP,
    PASSWORD,
    PHONE,
    SHOTS,
    _cli,
    _need_chromium,
    _now,
    chromium,
    serving,
)

from receivers import Mailbox, mailbox

__all__: list[str] = []

SITE = """\
site: delivery-yard
name: Delivery Yard (fictional)
timezone: UTC
stale_after_s: 60
speeds_mps: {armed: 4.0, default: 3.0}
posts:
  - id: main-gate
    name: Main Gate
    at: [0, 0]
    rules:
      - id: armed-cover
        need: 1
        capability: armed
        within_m: 15
        grace_s: 3
walkways:
  - id: lane
    points: [[0, 0], [0, 40], [60, 40]]
escalation:
  - after_s: 0
    notify: [supervisor]
"""
WAIT_MS = 120_000  # generous: a loaded machine, a cold cache


@pytest.fixture(scope="module")
def smtp() -> Iterator[Mailbox]:
    with mailbox() as box:
        yield box


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, smtp: Mailbox) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("delivery")
    data_dir = tmp / "data"
    site = tmp / "site.yaml"
    site.write_text(SITE, "utf-8")
    pw = {"COVERWATCH_PASSWORD": PASSWORD}
    _cli("users", "add", "sup", "--roles", "supervisor", "--notify",
         smtp.url("sup@example.org"), data_dir=data_dir, env=pw)
    for name, roles in (("A7", "officer"), ("aud", "auditor")):
        _cli("users", "add", name, "--roles", roles, data_dir=data_dir, env=pw)
    with serving(tmp, site, data_dir) as url:
        yield url


class Sender:
    """The supervisor's session, logged in once: event times are taken when sent, so a
    slow login (argon2 on a busy machine) cannot make them late."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=60)
        login = self.client.post("/api/v1/login", json={"username": "sup", "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.csrf = login.json()["csrf_token"]

    def post(self, events: list[dict[str, Any]]) -> None:
        r = self.client.post("/api/v1/events", json=events, headers={"X-CSRF-Token": self.csrf})
        assert r.status_code == 200, r.text
        assert r.json()["late"] == 0, r.text


def _login(browser: Any, base: str, user: str, path: str, viewport: dict[str, int]) -> Any:
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    return page


def _fix(officer: str, x: float, y: float) -> dict[str, Any]:
    return {"t": _now(), "kind": "fix", "officer": officer, "x": x, "y": y, "accuracy_m": 2}


def test_alert_reaches_the_supervisor_who_sends_the_nearest_armed_officer(
    base: str, smtp: Mailbox, tmp_path: Path
) -> None:
    sender = Sender(base)
    duty = [{"t": _now(), "kind": "duty", "officer": o, "on": True, "capabilities": caps}
            for o, caps in (("U1", ["armed"]), ("A7", ["armed"]), ("B2", []))]
    # U1 holds the gate; A7 (armed) is up the lane; B2 is closer but not armed.
    sender.post([*duty, _fix("U1", 1, 1), _fix("A7", 60, 40), _fix("B2", 5, 20)])
    with chromium() as browser:
        page = _login(browser, base, "sup", "/control", DESKTOP)
        page.wait_for_url(re.compile(r"/control$"))
        page.locator('[data-post="main-gate"][data-state="covered"]').wait_for()
        assert smtp.messages == []

        sender.post([_fix("U1", 200, 150), _fix("A7", 60, 40), _fix("B2", 5, 20)])
        card = page.locator(".alert-card", has_text="Main Gate")
        card.wait_for()
        card.locator("li.delivered", has_text="notified supervisor (mail) ✓").wait_for()
        # The tick is shown only once the mail is in the SMTP server's hands.
        [mail] = smtp.to("sup@example.org")
        assert "Main Gate" in str(mail["Subject"])
        assert "Escalated: level 1 of 1" in card.inner_text()
        first = card.locator("li.candidate").first
        assert first.get_attribute("data-officer") == "A7"
        assert "on walkways" in first.inner_text()
        assert card.locator('li.candidate[data-officer="B2"]').count() == 0  # not armed
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "control-notified-1366x768.png"))

        card.get_by_role("button", name="Add note").click()
        card.locator("textarea").fill("North side, by the barrier")
        card.get_by_role("button", name="Send A7").click()
        card.locator("li.dispatched", has_text="Sent A7").wait_for()
        # The Send button now shows the sent state and cannot send twice.
        sent = card.locator('li.candidate[data-officer="A7"] button.send.sent')
        sent.wait_for()
        assert sent.is_disabled() and "Sent ✓" in sent.inner_text()

        officer = _login(browser, base, "A7", "/duty", PHONE)
        officer.wait_for_url(re.compile(r"/duty$"))
        instruction = officer.locator("#instruction-list li.instruction").first
        instruction.wait_for()
        text = instruction.inner_text()
        assert "Go to Main Gate now" in text and "North side, by the barrier" in text
        officer.screenshot(path=str(SHOTS / "duty-dispatched-phone.png"))

        audit = _login(browser, base, "aud", "/audit", DESKTOP)
        audit.wait_for_url(re.compile(r"/audit$"))
        for action in ("alert.raised", "alert.level-due.0", "notification.delivered",
                       "alert.dispatched"):
            audit.fill("#filter", action)
            audit.locator(f'tr[data-action="{action}"]').first.wait_for()
        audit.fill("#filter", "alert.dispatched")
        assert "A7" in audit.locator('tr[data-action="alert.dispatched"]').first.inner_text()
        audit.click("#verify")
        audit.locator("#verify-result", has_text="Chain intact").wait_for()
