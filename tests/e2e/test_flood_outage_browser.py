"""The control room after a server outage, at three screen sizes (issue 21, point 8): the
60-post site with 300 officers and four SOS; the server stops (SIGSTOP) while every
officer's last fix goes stale and comes back 20 s later, so every post lapses at once
and the lapses are raised late, from stale data. At 1366x768, 1920x1080 and 390x844 the
page shows one incident naming its 60 members and why (stale data after an outage), the
header counts, the SOS lines first, every lapsed post listed, the plan's labels apart and
clear of markers, every SOS told apart on it, and on a phone no sideways scrolling; each
person got one message for the incident, none per lapse. The open alert cards update
only what changed (point 2). Screenshots of each."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from floodkit import (
    alarms_unnamed,
    control_page,
    crowd_events,
    grid_site,
    label_clashes,
    serve_site,
    shot,
    sideways_overflow,
)
from test_alert_delivery_browser import Sender
from test_dashboard import _now, chromium

from receivers import HttpReceiver, http_receiver

__all__: list[str] = []

COLS, ROWS, DX, DY = 10, 6, 160, 190
POSTS = {f"p{i}-{j}" for i in range(COLS) for j in range(ROWS)}
SOS = ("O001", "O101", "O202", "O296")
STALE_S = 30  # the site's stale_after_s: fixes older than this do not count
OUT_S = 20  # how long after the fixes went stale the server comes back (10 s is "late")
ESCALATION = "escalation:\n  - after_s: 0\n    notify: [supervisor]\n" \
             "  - after_s: 900\n    notify: [supervisor]\n"


@dataclass
class Outage:
    base: str
    sender: Sender
    web: HttpReceiver

    def alerts(self) -> list[dict[str, Any]]:
        r = self.sender.client.get("/api/v1/alerts")
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()["alerts"]
        return out


def _until(cond: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    site = grid_site("flood-outage", "Flood Outage Estate (fictional)", COLS, ROWS, DX, DY,
                     need=2).replace("stale_after_s: 900", f"stale_after_s: {STALE_S}")
    procs: list[Any] = []
    with http_receiver() as web, serve_site(tmp_path_factory, "outage", site + ESCALATION,
                                            notify=f"json://{web.base}/sup",
                                            procs=procs) as url:
        sender = Sender(url)
        sent = time.monotonic()
        sender.post(crowd_events(_now(), COLS, ROWS, DX, DY, set(), accuracy_m=8, sos=SOS))

        def all_covered() -> bool:
            rules = sender.client.get("/api/v1/cover").json()["rules"]
            return len(rules) == len(POSTS) and all(r["state"] == "covered" for r in rules)
        _until(all_covered, "every post covered before the outage",
               sent + STALE_S - 5 - time.monotonic())
        # The outage: the server stops before any fix goes stale and comes back well after.
        (server,) = procs
        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(max(0.0, sent + STALE_S + OUT_S - time.monotonic()))
        finally:
            os.kill(server.pid, signal.SIGCONT)
        out = Outage(url, sender, web)
        _until(lambda: len([a for a in out.alerts() if a["kind"] == "lapse"
                            and a["incident"]]) == len(POSTS), "60 lapses in an incident")
        _until(lambda: any(b"INCIDENT" in body for _, body, _ in web.requests),
               "the incident's message")
        yield out


def test_an_outage_is_one_incident_told_once(outage: Outage) -> None:
    lapses = [a for a in outage.alerts() if a["kind"] == "lapse"]
    assert {a["post"] for a in lapses} == POSTS
    (incident,) = {a["incident"]["id"]: a["incident"] for a in lapses}.values()
    assert incident["cause"] == "outage" and len(incident["members"]) == len(POSTS)
    assert "stale data" in incident["detail"]
    time.sleep(2)  # a straggler would be sent by now
    titles = [json.loads(body)["title"] for _, body, _ in outage.web.requests if body]
    assert {p for p, _, _ in outage.web.requests} == {"/sup"}
    # One message for the incident at level 1, none per lapse; each SOS on its own.
    assert [t for t in titles if t.startswith("INCIDENT")] == [
        f"INCIDENT: {len(POSTS)} alerts at {len(POSTS)} posts (outage)"]
    assert [t for t in titles if t.startswith("LAPSE")] == []
    assert {t for t in titles if t.startswith("SOS")} == {f"SOS from officer {o}" for o in SOS}


def _chips(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#summary .chip", "cs => cs.map(c => c.textContent)"))


def _top(page: Any, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not drawn"
    return float(box["y"])


@pytest.mark.parametrize("viewport", [(1366, 768), (1920, 1080), (390, 844)])
def test_the_board_after_an_outage(outage: Outage, viewport: tuple[int, int]) -> None:
    with chromium() as browser:
        page = control_page(browser, outage.base, viewport)
        page.wait_for_function(
            "(n) => document.querySelectorAll('#problems button[data-problem=lapsed]').length >= n",
            arg=len(POSTS))
        page.wait_for_function("(n) => document.querySelectorAll('#sos-banner .sos-line')"
                               ".length >= n", arg=len(SOS))
        page.locator("#incidents .incident").wait_for()
        if page.locator("#banner").is_visible():
            page.locator("#banner button.dismiss").click()
        page.wait_for_timeout(1500)  # a second render, with every alert known
        size = f"{viewport[0]}x{viewport[1]}"
        shot(page, f"control-outage-{size}.png")
        # One incident, naming its member count and why its lapses are consequential.
        (line,) = page.eval_on_selector_all("#incidents .incident",
                                            "ps => ps.map(p => p.innerText)")
        assert f"INCIDENT: {len(POSTS)} alerts at {len(POSTS)} posts" in line
        assert "from stale data after an outage" in line
        members = page.eval_on_selector_all(
            "#alert-list .alert-card .line", "ls => ls.map(l => l.textContent)")
        assert len([m for m in members if f"incident of {len(POSTS)}" in m]) == len(POSTS)
        # The header counts: every post lapsed, one incident, the open alerts (60 lapses,
        # four SOS and at most the server's own alert that it had stopped).
        chips = _chips(page)
        assert f"{len(POSTS)} LAPSED" in chips and "1 incident" in chips, chips
        (open_chip,) = [c for c in chips if c.endswith(" open")]
        assert len(POSTS) + len(SOS) <= int(open_chip.split()[0]) <= len(POSTS) + len(SOS) + 1
        waiting = int(page.locator("#alert-count").inner_text())
        assert len(POSTS) + len(SOS) <= waiting <= len(POSTS) + len(SOS) + 2
        # The SOS lines first: above the lapsed posts and the plan, and first in the list.
        order = page.eval_on_selector_all("#sos-banner .sos-line strong",
                                          "ss => ss.map(s => s.textContent)")
        assert order == [f"SOS {o}" for o in sorted(SOS)]
        assert _top(page, "#sos-banner") < _top(page, "#problems") < _top(page, "#plan")
        firsts = page.eval_on_selector_all(
            "#alert-list .alert-card", "cs => cs.slice(0, 4).map(c => c.querySelector("
            "'h3').classList.contains('alarm-title'))")
        assert firsts == [True] * len(SOS)
        assert page.locator("#sos-banner .sos-line").last.bounding_box()["y"] < viewport[1]
        # Every lapsed post listed.
        listed = set(page.eval_on_selector_all("#problems button[data-problem=lapsed]",
                                               "bs => bs.map(b => b.dataset.problemPost)"))
        assert listed == POSTS
        # On the plan no two labels touch (the top row once ran together: "Post 0-5Post
        # 2-5…") and none covers another's marker; every SOS is told apart, by name or by
        # its number in the banner.
        assert label_clashes(page) == []
        assert alarms_unnamed(page) == []
        if viewport[0] < 1000:
            assert sideways_overflow(page) == 0
            page.locator("#plan").evaluate("e => e.scrollIntoView()")
            shot(page, f"control-outage-{size}-plan.png")
            page.locator("#alerts").evaluate("e => e.scrollIntoView()")
            shot(page, f"control-outage-{size}-alerts.png")
            assert sideways_overflow(page) == 0


_MARK = """([sos, lapse]) => {
    const card = (id) => document.querySelector(`.alert-card[data-alert="${CSS.escape(id)}"]`);
    const s = card(sos), l = card(lapse);
    window._marked = {
        sos: [...s.querySelectorAll('.facts > li, .who-to-send *, .actions *')],
        lapse: [...l.querySelectorAll('.facts > li:not(.short), .who-to-send *, .actions *')],
        short: l.querySelector('.facts > li.short'),
        shortText: l.querySelector('.facts > li.short').textContent,
    };
    window._changes = 0;
    window._observer = new MutationObserver((rs) => { window._changes += rs.length; });
    for (const part of s.querySelectorAll('.facts, .who-to-send, .actions'))
        window._observer.observe(part, { subtree: true, childList: true, attributes: true,
                                         characterData: true });
    return window._marked.sos.length + ' ' + window._marked.lapse.length;
}"""

_KEPT = """(which) => window._marked[which].filter((n) => !n.isConnected).length"""


def test_open_cards_update_only_what_changed(outage: Outage) -> None:
    alerts = outage.alerts()
    sos = next(a["id"] for a in alerts if a["kind"] == "sos" and a["rule"] == "officer:O001")
    lapse = next(a["id"] for a in alerts if a["kind"] == "lapse" and a["post"] == "p0-0")
    with chromium() as browser:
        page = control_page(browser, outage.base, (1366, 768))
        page.locator("#incidents .incident").wait_for()
        for alert_id in (sos, lapse):
            card = page.locator(f'.alert-card[data-alert="{alert_id}"]')
            card.locator(".line").click()
            card.locator(".facts > li.short").wait_for()
        assert page.locator(".alert-card.open").count() == 2
        counts = page.evaluate(_MARK, [sos, lapse])
        assert all(int(n) >= 4 for n in counts.split()), counts
        lapse_card = page.locator(f'.alert-card[data-alert="{lapse}"]')
        assert "stale data" in lapse_card.locator(".facts > li.incident-of").inner_text()
        page.wait_for_timeout(4000)  # four renders and at least one refresh of the board
        # The SOS card did not change: not one node of its details was written.
        assert page.evaluate("() => window._changes") == 0
        assert page.evaluate(_KEPT, "sos") == 0
        # The lapse card's time without cover ticks; only that line was replaced.
        assert page.evaluate(_KEPT, "lapse") == 0
        assert page.evaluate("() => !window._marked.short.isConnected")
        short = lapse_card.locator(".facts > li.short").inner_text()
        assert short != page.evaluate("() => window._marked.shortText")
        assert re.match(r"Cover short for \d", short), short
        # A change to the lapse (acknowledged): its card shows it, its other lines stay.
        r = outage.sender.client.post(f"/api/v1/alerts/{lapse}/acknowledge",
                                      json={"note": "outage, checking"},
                                      headers={"X-CSRF-Token": outage.sender.csrf})
        assert r.status_code == 200, r.text
        lapse_card.locator(".facts > li.ack").wait_for()
        assert "Acknowledged by sup" in lapse_card.locator(".facts > li.ack").inner_text()
        assert lapse_card.locator(".badge").inner_text() == "Acknowledged"
        kept = page.evaluate("""() => window._marked.lapse.filter((n) => n.isConnected
            && n.matches('.facts > li')).length""")
        assert kept >= 3  # cover now, escalation, raised, incident: not redrawn
        assert page.evaluate(_KEPT, "sos") == 0
        shot(page, "control-outage-open-cards-1366x768.png")
