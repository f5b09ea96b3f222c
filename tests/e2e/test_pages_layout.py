"""Every page of the two-site demo in a real browser at 1366x768, 1920x1080 and 390x844
(the sign-in page, the all-sites board and its "which site?" form, and each site's control
room, audit, people and planning pages; an officer's duty page): no console error, no
sideways scrolling, no cut-off chip, no empty box, no two labels on the plan touching and
no label covering a marker not its own (posts', officers' and alarms' labels; posts'
centres, gate bars, officers, alarms; over several renders, wherever the mouse rests);
pages opened without ``?site=`` ask which site; every link keeps it.

Runs the real `coverwatch demo` (both example sites, its simulator, its inbox) and signs
in as its admin (every page) and its officer (``/duty``). Screenshots go to
``artifacts/screenshots/pages-*.png`` (or ``$COVERWATCH_SHOTS``). Uses the helpers of
test_dashboard.py (which skip without ``/usr/bin/chromium`` and fail under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from floodkit import label_clashes, shot
from test_dashboard import SCRIPT, WAIT_MS, _free_port, _need_chromium, chromium

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
SITES = ("harbour-yard", "quay-depot")
SIZES = {"1366x768": (1366, 768), "1920x1080": (1920, 1080), "390x844": (390, 844)}
PAGES = ("/control", "/audit", "/people", "/planning")
# Every page: no sideways scrolling of the document (the plan pans inside its own box).
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
CUT_CHIPS = """Array.from(document.querySelectorAll('.chip'))
  .filter((c) => c.offsetWidth > 0 && c.scrollWidth > c.clientWidth + 1)
  .map((c) => c.textContent)"""
# Boxes drawn with a background or a border but holding nothing (an empty "Lapsed:" box).
EMPTY_BOXES = """Array.from(document.querySelectorAll('body *')).filter((el) => {
  const r = el.getBoundingClientRect();
  const cs = getComputedStyle(el);
  // Colour keys and dots (a legend's swatches) are small by design, not boxes.
  if (r.width < 20 || r.height < 20 || cs.visibility === 'hidden') return false;
  const filled = !['rgba(0, 0, 0, 0)', 'transparent'].includes(cs.backgroundColor);
  const bordered = ['Top', 'Right', 'Bottom', 'Left'].filter(
    (side) => parseFloat(cs[`border${side}Width`]) > 0).length >= 3;
  if (!filled && !bordered) return false;
  const things = 'img,svg,canvas,input,select,textarea,button,iframe,video,hr,progress';
  if (el.matches(things) || el.querySelector(things)) return false;
  return !(el.innerText || '').trim();
}).map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
  + (typeof el.className === 'string' && el.className.trim()
     ? '.' + el.className.trim().split(/\\s+/).join('.') : ''))"""

LOGS: list[Path] = []  # the demo's console output


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    log = (tmp / "demo.log").open("w")
    LOGS.append(tmp / "demo.log")
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--site", str(ROOT / "examples/yard/site.yaml"),
         "--site", str(ROOT / "examples/quay/site.yaml"), "--data-dir", str(tmp / "data"),
         "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "demo.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the demo did not become ready"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _signed_in(browser: Any, base: str, user: str, password: str, size: tuple[int, int]
               ) -> tuple[Any, list[str]]:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(sites|control|duty)"))
    return page, errors


def _ready(page: Any, path: str) -> None:
    """Wait until the page shows data, not its empty shell."""
    if path == "/control":
        page.locator("#officers-body tr").first.wait_for()
        page.locator("#summary .chip").first.wait_for()
    elif path == "/audit":
        page.locator("#audit-body tr").first.wait_for()
        page.locator("#site-name").filter(has_text=re.compile(r"\w")).wait_for()
    elif path == "/people":
        page.locator("#people-body tr").first.wait_for()
    elif path == "/planning":
        page.locator("#user").filter(has_text=re.compile(r"\w")).wait_for()
    elif path.startswith("/sites"):
        page.locator("#sites-body tr").nth(1).wait_for()
    elif path == "/duty":
        page.locator("#user").filter(has_text=re.compile(r"\w")).wait_for()
        # The duty, the orders and the tour rounds each come from their own request.
        page.locator("#duty-facts dt").first.wait_for()
        page.locator("#orders-scope").filter(has_text=re.compile(r"\w")).wait_for()
        page.wait_for_function("""() => document.getElementById('tours').hidden
            || document.getElementById('tour-progress').children.length > 0""")


def _check(page: Any, errors: list[str], name: str) -> None:
    page.wait_for_timeout(500)  # let a refresh land
    shot(page, f"pages-{name}.png")
    assert page.evaluate(OVERFLOW) <= 0, f"{name}: the page scrolls sideways"
    assert not errors, f"{name}: console errors {errors}"
    assert page.evaluate(CUT_CHIPS) == [], f"{name}: a chip is cut off"
    assert page.evaluate(EMPTY_BOXES) == [], f"{name}: empty boxes"


def _lapse_alerted() -> str:
    """Wait until the demo's first lapse is alerted (the pages then show lapses, alerts and a
    filled "Lapsed:" box); the demo's console output."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        text = LOGS[-1].read_text()
        if ">> " in text and "to supervisor: LAPSE Main Gate" in text:
            return text
        time.sleep(2)
    pytest.fail("no notification reached the demo inbox:\n" + LOGS[-1].read_text())


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_of_both_sites_fits_without_errors(demo: str, size: str) -> None:
    _lapse_alerted()
    with chromium() as browser:
        login = browser.new_page(viewport={"width": SIZES[size][0], "height": SIZES[size][1]})
        login_errors: list[str] = []
        login.on("console", lambda m: login_errors.append(m.text) if m.type == "error" else None)
        login.on("pageerror", lambda e: login_errors.append(str(e)))
        login.goto(demo + "/login")
        login.locator("#username").wait_for()
        _check(login, login_errors, f"login-{size}")
        login.close()
        page, errors = _signed_in(browser, demo, "admin", "demo-admin-pass", SIZES[size])
        _ready(page, "/sites")
        _check(page, errors, f"sites-{size}")
        # The page that asks which site (a page opened without ?site=).
        page.goto(demo + "/control")
        page.wait_for_url(re.compile(r"/sites\?page=/control$"))
        _ready(page, "/sites")
        _check(page, errors, f"sites-which-{size}")
        for site in SITES:
            for path in PAGES:
                page.goto(f"{demo}{path}?site={site}")
                _ready(page, path)
                _check(page, errors, f"{path.strip('/')}-{site}-{size}")
                # Every link to a page about one site keeps this site.
                for href in page.eval_on_selector_all(
                        "a[href^='/control'], a[href^='/audit'], a[href^='/people'], "
                        "a[href^='/planning']", "as => as.map((a) => a.getAttribute('href'))"):
                    assert f"site={site}" in href, f"{path}?site={site}: link {href}"
                if path == "/control":
                    # Labels are placed again at every render (each second): in none of
                    # several do two labels touch or a label cover another's marker.
                    for _ in range(4):
                        clashes = label_clashes(page)
                        assert clashes == [], f"{site} {size}: labels clash: {clashes}"
                        page.wait_for_timeout(700)
        page.close()
        duty, errors = _signed_in(browser, demo, "U1", "demo-officer-u1", SIZES[size])
        _ready(duty, "/duty")
        _check(duty, errors, f"duty-{size}")


def test_pages_opened_without_a_site_ask_which(demo: str) -> None:
    with chromium() as browser:
        page, errors = _signed_in(browser, demo, "admin", "demo-admin-pass", SIZES["1366x768"])
        for path in PAGES:
            page.goto(demo + path)
            page.wait_for_url(re.compile(rf"/sites\?page={path}$"))
            _ready(page, "/sites")
            assert "Which site?" in page.text_content("#sites-h")
            page.locator("#sites-body a", has_text="Quay Depot").click()
            page.wait_for_url(re.compile(rf"{path}\?site=quay-depot$"))
            _ready(page, path)
        assert not errors, errors
        # The audit page names its site and reads as words, details behind a toggle.
        page.goto(demo + "/audit?site=harbour-yard")
        _ready(page, "/audit")
        assert page.inner_text("#site-name") == "Harbour Yard (fictional)"
        assert "Site file loaded" in page.inner_text("#audit-body")
        assert page.locator("#audit-body details").first.is_visible()
        assert not page.locator("#audit-body details dl").first.is_visible()
        # A site supervisor of one site goes straight to it.
        quay, errors = _signed_in(browser, demo, "quay-supervisor", "demo-quay-super",
                                  SIZES["1366x768"])
        quay.goto(demo + "/control")
        quay.wait_for_url(re.compile(r"/control\?site=quay-depot$"))
        assert not errors, errors


def test_a_lapse_reaches_a_person_in_the_demo(demo: str) -> None:
    """The demo's armed pair leaves the main gate: after the 60 s grace the alert goes to
    the supervisors (the site file's escalation), whose contact is the demo's inbox."""
    text = _lapse_alerted()
    inbox = re.search(r"inbox: (http://127.0.0.1:\d+/)", text)
    assert inbox
    assert "LAPSE Main Gate" in httpx.get(inbox.group(1), timeout=30).text
