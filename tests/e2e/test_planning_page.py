"""The dashboard's planning page over HTTP: ``POST /api/v1/plan/check`` on the
fictional Harbour Yard distinguishes the two example plans, returns both
pictures as PNG data URLs, and answers invalid plans with 422 naming the line.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from serverkit import REPO, YARD, Caller, Kit, base_settings, running_server

__all__: list[str] = []

ROVING = (REPO / "examples" / "yard" / "plan-roving.yaml").read_text("utf-8")
FIXED = (REPO / "examples" / "yard" / "plan-fixed.yaml").read_text("utf-8")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PREFIX = "data:image/png;base64,"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    with running_server(base_settings(YARD, tmp_path_factory.mktemp("planning"))) as k:
        yield k


def _check(kit: Kit, caller: Caller, **body: Any) -> Any:
    body.setdefault("samples", 2000)
    return kit.request(caller, "POST", "/api/v1/plan/check", json=body)


def _png(url: str) -> bytes:
    assert url.startswith(PREFIX), url[:40]
    data = base64.b64decode(url[len(PREFIX):], validate=True)
    assert data.startswith(PNG_MAGIC)
    return data


def test_roving_plan_is_flagged_with_pictures(kit: Kit) -> None:
    r = _check(kit, kit.user("sup", "supervisor"), plan=ROVING)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["verdict"] == "flagged"
    assert out["alerts"] > 0
    assert out["headline"].startswith("Plan would leave Main Gate / armed-")
    assert "unmet:" in out["headline"] and "longest gap" in out["headline"]
    rules = {(s["post"], s["rule"]): s for s in out["rules"]}
    armed = rules[("main-gate", "armed-cover")]
    assert armed["alerts"] == 12
    assert armed["longest_gap"] == "8 min 32 s"
    assert armed["cover_pct"] < 50
    assert rules[("main-gate", "open-gate-staffed")]["alerts"] == 0
    rows = out["response"]["rows"]
    assert out["response"]["samples"] == 2000
    first_armed = next(a for a in rows if a["post"] == "main-gate" and a["k"] == 1
                       and a["capability"] == "armed")
    assert first_armed["under_reach"] < 1.0  # the rule's reach_s is missed at times
    for key in ("median", "p90", "worst", "under_threshold"):
        assert key in first_armed
    site_png = _png(out["pictures"]["site_plan"])
    timeline_png = _png(out["pictures"]["timeline"])
    assert site_png != timeline_png


def test_fixed_plan_passes(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    import coverwatch.reports.planpictures as pictures

    drawn: list[tuple[str | None, bool]] = []

    def spy(ax: Any, background: Any, bbox: Any) -> bool:
        done = draw_background(ax, background, bbox)
        drawn.append((background.image if background else None, done))
        return done
    draw_background = pictures.draw_background
    monkeypatch.setattr(pictures, "draw_background", spy)
    r = _check(kit, kit.user("root", "admin"), plan=FIXED, seed=3, threshold_s=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["verdict"] == "passes"
    assert out["alerts"] == 0
    assert out["unmet"] == []
    assert out["headline"].startswith("Plan passes")
    assert out["options"] == {"hz": 1.0, "samples": 2000, "seed": 3, "threshold_s": 60.0}
    assert all(s["alerts"] == 0 for s in out["rules"])
    _png(out["pictures"]["site_plan"])
    _png(out["pictures"]["timeline"])
    # The site plan picture is drawn over the site's plan image, as the control room is.
    assert drawn == [("yard-plan.svg", True)]


def test_the_patrol_game_is_shown_for_a_plan_with_targets(kit: Kit) -> None:
    """The planning page shows what ``coverwatch plan randomise`` reports: the attacker's
    best expected payoff against the fixed routes and against randomised patrols."""
    sup = kit.user("sup", "supervisor")
    game = _check(kit, sup, plan=FIXED, seed=3, samples=0).json()["patrol_game"]
    assert game is not None and "error" not in game, game
    assert game["randomised"] and game["seed"] == 3 and game["days"] == 10
    assert game["game_payoff"] < game["fixed_payoff"]
    _png(game["picture"])
    # A flagged plan is not randomised (fix it first); a plan without targets has no game.
    assert _check(kit, sup, plan=ROVING, samples=0).json()["patrol_game"] is None
    plain = FIXED.split("\n# The patrol game")[0]
    assert "targets:" not in plain
    out = _check(kit, sup, plan=plain, seed=3, samples=0).json()
    assert out["verdict"] == "passes" and out["patrol_game"] is None


def test_invalid_yaml_names_the_line(kit: Kit) -> None:
    broken = ROVING.replace("      speed_mps: 1.0\n", "      speed_mps: [fast\n", 1)
    line = broken.splitlines().index("      speed_mps: [fast") + 1
    r = _check(kit, kit.user("sup", "supervisor"), plan=broken)
    assert r.status_code == 422, r.text
    problems = r.json()["errors"]
    assert problems
    assert problems[0]["path"] == "plan.yaml"
    assert problems[0]["line"] in (line, line + 1)  # the YAML parser may stop on the next line


def test_invalid_plan_field_names_line_and_field(kit: Kit) -> None:
    bad = ROVING.replace("speed_mps: 1.0", "speed_mps: -2", 1)
    line = bad.splitlines().index("      speed_mps: -2") + 1
    r = _check(kit, kit.user("sup", "supervisor"), plan=bad)
    assert r.status_code == 422, r.text
    problems = r.json()["errors"]
    assert [(p["line"], p["field"]) for p in problems] == \
        [(line, "officers[0].patrol.speed_mps")]


def test_limits_are_422_not_500(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    # 4 officers for 2 hours at 10 Hz is 288 004 fixes: fine; 400 hours is not.
    long_plan = ROVING.replace("hours: 2", "hours: 400")
    r = _check(kit, sup, plan=long_plan, hz=10)
    assert r.status_code == 422, r.text
    assert "fixes" in r.json()["detail"]
    assert _check(kit, sup, plan=ROVING, samples=20_001).status_code == 422
    assert _check(kit, sup, plan="", samples=10).status_code == 422
    r = _check(kit, sup, plan="just a string")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["line"]


def test_auditor_may_open_the_page_but_not_check(kit: Kit) -> None:
    aud = kit.user("aud", "auditor")
    page = kit.request(aud, "GET", "/planning")
    assert page.status_code == 200
    assert 'src="/static/js/planning.js"' in page.text
    assert _check(kit, aud, plan=FIXED).status_code == 403
    control = kit.request(aud, "GET", "/control")
    assert 'href="/planning"' in control.text
