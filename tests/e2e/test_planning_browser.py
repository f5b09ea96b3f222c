"""The planning page in a real browser (Playwright + Debian's Chromium).

A supervisor signs in, opens ``/planning`` from the control room, pastes the
fictional yard's roving-patrol plan, checks it and sees it flagged with both
pictures; then loads the fixed-post plan through the file input and sees it
pass. The screenshot goes to ``artifacts/screenshots/planning-1366x768.png``.
Uses the real server and the helpers of test_dashboard.py (which skip
without ``/usr/bin/chromium`` and fail under ``CI=true``).
"""

from __future__ import annotations

import re
from typing import Any

import test_dashboard as dash

__all__: list[str] = []

# The dashboard tests' module fixtures: a real `coverwatch serve` and Chromium.
server = dash.server
browser = dash.browser

PLANS = dash.ROOT / "examples" / "yard"


def test_supervisor_checks_plans_on_the_planning_page(server: dash.Server, browser: Any) -> None:
    page = dash._login(browser, server, "sup", "/control", dash.DESKTOP)
    page.wait_for_url(re.compile(r"/control$"))
    page.get_by_role("link", name="Plan check").click()
    page.wait_for_url(re.compile(r"/planning$"))
    page.locator("#user", has_text="sup").wait_for()

    page.fill("#plan-text", (PLANS / "plan-roving.yaml").read_text("utf-8"))
    page.fill("#samples", "2000")
    page.get_by_role("button", name="Check plan").click()
    verdict = page.locator("#verdict.flagged")
    verdict.wait_for()
    text = verdict.inner_text()
    assert "FLAGGED" in text
    assert re.search(r"Plan would leave Main Gate / armed-\S+ unmet: 12 alerts, longest gap", text)
    for pic in ("#pic-site", "#pic-timeline"):
        assert page.locator(pic).get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function(
        "['pic-site', 'pic-timeline'].every(id => document.getElementById(id).naturalWidth > 0)")
    assert page.locator('#rules-body tr.unmet[data-rule="main-gate/armed-cover"]').count() == 1
    dash.SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(dash.SHOTS / "planning-1366x768.png"))
    page.screenshot(path=str(dash.SHOTS / "planning-full-1366.png"), full_page=True)

    # A problem in the plan is listed with its line, and nothing is shown as checked.
    page.fill("#plan-text", "plan: x\nstart: 2026-03-22T13:00:00Z\nhours: 1\nofficers:\n"
                            "  - id: a1\n    post: main-gat\n")
    page.get_by_role("button", name="Check plan").click()
    problems = page.locator("#problems")
    problems.wait_for()
    assert "line 6" in problems.inner_text()
    assert "main-gat" in problems.inner_text()
    assert page.locator("#verdict").is_hidden()

    # The corrected plan, loaded from a file, passes.
    page.set_input_files("#plan-file", str(PLANS / "plan-fixed.yaml"))
    page.wait_for_function("document.getElementById('plan-text').value.includes('fixed-armed-post')")
    page.get_by_role("button", name="Check plan").click()
    page.locator("#verdict.passes").wait_for()
    assert "Plan passes" in page.locator("#verdict").inner_text()
    assert page.locator("#problems").is_hidden()
    # The fixed plan names patrol targets: the page shows the patrol game.
    game = page.locator("#game")
    game.wait_for()
    text = page.locator("#game-text").inner_text()
    fixed, randomised = (float(x) for x in re.findall(
        r"payoff is ([\d.]+) against the fixed routes .* and ([\d.]+) against randomised", text)[0])
    assert randomised < fixed
    page.wait_for_function("document.getElementById('pic-game').naturalWidth > 0")
    for size in ({"width": 1366, "height": 768}, {"width": 1920, "height": 1080}, dash.PHONE):
        page.set_viewport_size(size)
        game.scroll_into_view_if_needed()
        name = f"planning-game-{size['width']}x{size['height']}.png"
        page.screenshot(path=str(dash.SHOTS / name))
