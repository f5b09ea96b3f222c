"""The control-room dashboard in a real browser (Playwright + Debian's Chromium).

A real ``coverwatch serve`` runs as a subprocess on a free port with a tmp data
directory and the fictional Harbour Yard (a copy whose main-gate staffing rule
has a 3 s grace, so a lapse becomes an alert quickly). Users and a device are
created beforehand with the CLI. The simulated officer's fixes go through the
HTTP API with the device token.

Screenshots are saved to ``artifacts/screenshots/`` at 1366×768 (control room)
and phone size (officer page).

Without ``/usr/bin/chromium`` these tests skip with the reason; under
``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "yard" / "site.yaml"
SCRIPT = Path(sys.executable).parent / "coverwatch"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
PASSWORD = "e2e-password-123"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 120_000  # generous: a loaded machine, a cold cache


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (required under CI=true)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(SCRIPT), *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@dataclass
class Server:
    base: str
    device_token: str
    data_dir: Path


@contextlib.contextmanager
def serving(tmp: Path, site: Path | list[Path], data_dir: Path,
            procs: list[subprocess.Popen[bytes]] | None = None) -> Iterator[str]:
    """A real `coverwatch serve` (one site or several) on a free port; yields its base URL
    once ready (its process is appended to ``procs``, for a test that pauses it)."""
    port = _free_port()
    log = (tmp / "server.log").open("w")
    sites = [site] if isinstance(site, Path) else site
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", *(a for s in sites for a in ("--site", str(s))),
         "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port), "--lateness-s", "1",
         "--public-url", f"http://127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    if procs is not None:
        procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()
            try:
                if httpx.get(base + "/readyz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("dashboard")
    data_dir = tmp / "data"
    doc = yaml.safe_load(SITE.read_text("utf-8"))
    for post in doc["posts"]:
        if post["id"] == "main-gate":
            for rule in post["rules"]:
                if rule["id"] == "open-gate-staffed":
                    rule["grace_s"] = 3
    # Nobody here has a contact: without this the example's escalation would add
    # "notification failure" cards beside the lapse these tests follow.
    doc.pop("escalation", None)
    site = tmp / "site.yaml"
    site.write_text(yaml.safe_dump(doc), "utf-8")
    # The file names the yard's plan image, relative to itself.
    (tmp / "yard-plan.svg").write_bytes((SITE.parent / "yard-plan.svg").read_bytes())
    pw = {"COVERWATCH_PASSWORD": PASSWORD}
    for name, roles in (("sup", "supervisor"), ("U1", "officer"), ("aud", "auditor"),
                        ("adm", "admin")):
        _cli("users", "add", name, "--roles", roles, data_dir=data_dir, env=pw)
    token = _cli("devices", "add", "phone-u1", "--officer", "U1", data_dir=data_dir).strip()
    assert token.startswith("cwd_"), token
    with serving(tmp, site, data_dir) as base:
        yield Server(base, token, data_dir)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    with chromium() as b:
        yield b


def _login(browser: Any, server: Server, user: str, path: str, viewport: dict[str, int]) -> Any:
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.base + path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    return page


def _device_post(server: Server, events: list[dict[str, Any]]) -> None:
    r = httpx.post(server.base + "/api/v1/events", json=events, timeout=60,
                   headers={"Authorization": f"Bearer {server.device_token}"})
    assert r.status_code == 200, r.text


def _supervisor_post(server: Server, events: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as c:
        login = c.post("/api/v1/login", json={"username": "sup", "password": PASSWORD})
        assert login.status_code == 200, login.text
        # Times are taken after the login: argon2 on a busy machine can outlast the lateness.
        events = [{**e, "t": _now()} for e in events]
        r = c.post("/api/v1/events", json=events,
                   headers={"X-CSRF-Token": login.json()["csrf_token"]})
        assert r.status_code == 200, r.text


def test_pages_need_a_session(server: Server) -> None:
    for path in ("/", "/control", "/duty", "/audit"):
        r = httpx.get(server.base + path, follow_redirects=False, timeout=60)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/login?next={path}"
    assert httpx.get(server.base + "/login", timeout=60).status_code == 200
    assert httpx.get(server.base + "/static/js/control.js", timeout=60).status_code == 200
    assert httpx.get(server.base + "/api/v1/site", timeout=60).status_code == 401


def test_supervisor_sees_lapse_and_acknowledges_it(server: Server, browser: Any) -> None:
    # The main gate opens and U1 stands at it.
    _supervisor_post(server, [{"t": _now(), "kind": "gate", "post": "main-gate", "open": True}])
    _device_post(server, [{"t": _now(), "kind": "duty", "on": True, "capabilities": []},
                          {"t": _now(), "kind": "fix", "x": 1.0, "y": 1.0, "accuracy_m": 2}])
    page = _login(browser, server, "sup", "/control", DESKTOP)
    page.wait_for_url(re.compile(r"/control$"))
    gate = page.locator('[data-post="main-gate"]')
    gate.and_(page.locator('[data-state="covered"]')).wait_for()
    page.locator('.officer .marker[data-officer="U1"]').wait_for()
    assert page.locator("#mode").inner_text().startswith("LIVE")

    # U1 walks away: the gate's staffing rule lapses, then alerts after its 3 s grace.
    _device_post(server, [{"t": _now(), "kind": "fix", "x": 120.0, "y": 20.0, "accuracy_m": 2}])
    gate.and_(page.locator('[data-state="lapsed"]')).wait_for()
    card = page.locator(".alert-card", has_text="Main Gate")
    card.wait_for()
    assert "OPEN" in card.locator(".badge").inner_text()
    assert "open-gate-staffed" in card.inner_text()
    assert re.search(r"Cover short for \d+ s", card.inner_text())
    assert "Cover now 0 of 1 needed" in card.inner_text()
    page.locator("#banner").wait_for()
    assert "NEW ALERT" in page.locator("#banner").inner_text()
    page.wait_for_function("document.title.startsWith('(1) ')")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "control-lapsed-1366x768.png"))

    card.get_by_role("button", name="Add note").click()
    card.locator("textarea").fill("Sent U2 to the main gate")
    card.get_by_role("button", name="Acknowledge").click()
    card.locator(".badge", has_text="Acknowledged").wait_for()
    assert "Acknowledged by sup" in card.inner_text()
    assert "Sent U2 to the main gate" in card.inner_text()
    page.wait_for_function("!document.title.startsWith('(')")
    page.screenshot(path=str(SHOTS / "control-acknowledged-1366x768.png"))

    # The timeline strip answers "who counted then"; replay shows a past moment.
    strip = page.locator('.tl-row[data-post="main-gate"][data-rule="open-gate-staffed"] .tl-strip')
    strip.wait_for()
    strip.click(position={"x": 2, "y": 10})
    page.locator("#moment h3").wait_for()
    assert re.search(r"Counted: U1|Nobody counted", page.locator("#moment").inner_text())
    page.click("#replay-toggle")
    page.locator("#mode", has_text="REPLAY").wait_for()
    page.locator("#replay-slider").wait_for()
    page.screenshot(path=str(SHOTS / "control-replay-1366x768.png"), full_page=True)
    page.click("#replay-toggle")
    page.locator("#mode", has_text="LIVE").wait_for()

    # The acknowledgement is in the audit log, with the user and the note.
    audit = _login(browser, server, "aud", "/audit", DESKTOP)
    audit.wait_for_url(re.compile(r"/audit$"))
    audit.fill("#filter", "alert.acknowledged")
    row = audit.locator('tr[data-action="alert.acknowledged"]')
    row.wait_for()
    assert "sup" in row.inner_text()
    assert "Sent U2 to the main gate" in row.inner_text()
    audit.click("#verify")
    audit.locator("#verify-result", has_text="Chain intact").wait_for()
    audit.screenshot(path=str(SHOTS / "audit-1366x768.png"))


def test_officer_sees_own_duty_but_not_supervisor_pages(server: Server, browser: Any) -> None:
    _device_post(server, [{"t": _now(), "kind": "duty", "on": True, "capabilities": []}])
    page = _login(browser, server, "U1", "/", PHONE)
    page.wait_for_url(re.compile(r"/duty$"))
    page.locator("#duty-state", has_text="On duty").wait_for()
    # Not rostered: the orders of every post, to read and acknowledge.
    page.locator('.orders-card[data-post="main-gate"]').wait_for()
    assert "You are not rostered to a post" in page.inner_text("#orders-scope")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "officer-duty-phone.png"), full_page=True)
    for path in ("/control", "/audit"):
        response = page.goto(server.base + path)
        assert response is not None and response.status == 403, path
        assert "Not allowed" in page.inner_text("h1")
    # The data behind the pages is refused too.
    for api in ("/api/v1/cover", "/api/v1/plan", "/api/v1/timeline", "/api/v1/alerts/board"):
        response = page.goto(server.base + api)
        assert response is not None and response.status == 403, api


def test_device_sos_reaches_the_supervisor_with_the_position(server: Server, browser: Any) -> None:
    page = _login(browser, server, "sup", "/control", DESKTOP)
    page.wait_for_url(re.compile(r"/control$"))
    page.locator("#alert-list").wait_for()
    # U1's phone sends an SOS with its fix (the batch form of Traccar Client's alarm=sos).
    _device_post(server, [{"t": _now(), "kind": "duty", "on": True, "capabilities": []},
                          {"t": _now(), "kind": "fix", "x": 40.0, "y": 30.0, "accuracy_m": 6,
                           "alarm": "sos"}])
    banner = page.locator("#sos-banner")
    banner.locator(".sos-line").wait_for()
    assert "SOS U1" in banner.inner_text()
    # Where in words (nearest post, accuracy, age); site metres only as a detail.
    assert re.search(r"(\d+ m [NESW]{1,2} of |at ).+\(±6 m, ", banner.inner_text())
    assert "site (40, 30) m" in banner.inner_text()
    card = page.locator(".alert-card", has_text="SOS · officer U1")
    card.wait_for()
    assert "OPEN" in card.locator(".badge").inner_text()
    assert "Last known position " in card.inner_text()
    assert "site (40, 30) m" in card.inner_text()
    assert re.search(r"sent .+, arrived .+", card.inner_text())
    page.locator(".alarm-marker .alarm-label", has_text="SOS U1").wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "control-sos-1366x768.png"))

    # Compact cards: the note box opens on demand.
    card.get_by_role("button", name="Add note").click()
    card.locator("textarea").fill("Called U1, response car sent")
    card.get_by_role("button", name="Acknowledge").click()
    card.locator(".badge", has_text="Acknowledged").wait_for()
    # A person closes an SOS; nothing else ends it.
    if not card.locator("textarea").is_visible():
        card.get_by_role("button", name="Add note").click()
    card.locator("textarea").fill("U1 safe, false alarm")
    card.get_by_role("button", name="Close").click()
    page.locator(".alert-card", has_text="SOS · officer U1").wait_for(state="detached")
    banner.wait_for(state="hidden")

    audit = _login(browser, server, "aud", "/audit", DESKTOP)
    audit.wait_for_url(re.compile(r"/audit$"))
    audit.fill("#filter", "alert.acknowledged")
    row = audit.locator('tr[data-action="alert.acknowledged"]', has_text="response car sent")
    row.wait_for()
    assert "sup" in row.inner_text()


def test_admin_enrols_a_phone_with_a_qr_code(server: Server, browser: Any) -> None:
    page = _login(browser, server, "adm", "/control", DESKTOP)
    page.wait_for_url(re.compile(r"/control$"))
    page.click("#enrol summary")
    page.fill("#enrol-name", "phone-u9")
    page.fill("#enrol-officer", "U9")
    page.click("#enrol-add")
    link = page.locator("#enrol-result .enrol-link")
    link.wait_for()
    assert re.search(r"/osmand\?id=cwd_[^&]+&interval=5&distance=0&stop_detection=false",
                     link.inner_text())
    page.locator("#enrol-result img.enrol-qr").wait_for()
    assert "lat={0}&lon={1}" in page.inner_text("#enrol-result")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#enrol").screenshot(path=str(SHOTS / "control-enrol.png"))
    # The identifier in the link is the device's credential.
    token = link.inner_text().split("id=")[1].split("&")[0]
    r = httpx.get(server.base + "/osmand", params={"id": token, "batt": "80"}, timeout=60)
    assert r.status_code == 200, r.text
