"""Tours on the live server (SQLite and PostgreSQL, fake clock): scans through the
batch API count for the round, a late stop raises a ``tour`` alert that the late
scan resolves, and the progress API says what is next and what was missed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Database
from serverkit import YARD, Kit, base_settings, copy_yard_plan, running_server


@pytest.fixture
def kit(migrated: Database, tmp_path: Path) -> Iterator[Kit]:
    site = tmp_path / "site.yaml"
    site.write_text(YARD.read_text("utf-8"), "utf-8")
    copy_yard_plan(site)
    settings = base_settings(site, migrated.data_dir, db_url=migrated.url)
    with running_server(settings) as k:  # 2030-01-01T08:00:00Z: a yard round starts
        yield k


def step(kit: Kit) -> None:
    kit.call(kit.svc.tours.step)


def scan(kit: Kit, checkpoint: str, offset_s: float = 0.0) -> None:
    sup = kit.user("sup", "supervisor")
    r = kit.post_events(sup, [{"t": kit.clock.iso(offset_s), "kind": "scan", "officer": "P1",
                               "checkpoint": checkpoint}])
    assert r.status_code == 200, r.text


def current(kit: Kit) -> dict[str, Any]:
    """The round that started at 08:00 (the one before is listed too)."""
    rounds = kit.request(kit.user("sup", "supervisor"), "GET", "/api/v1/tours").json()["rounds"]
    assert [r["start"] for r in rounds] == ["2030-01-01T07:00:00Z", "2030-01-01T08:00:00Z"]
    assert rounds[0]["over"] is True and rounds[0]["next"] is None
    assert rounds[1]["over"] is False
    # The 07:00 round began before the tours were watched: not judged, nothing missed
    # (/duty listed each of its stops as missed, with no alert).
    assert rounds[0]["judged"] is False and rounds[0]["missed"] == []
    assert not any(s["missed"] for s in rounds[0]["stops"]) and rounds[1]["judged"] is True
    return dict(rounds[-1])


def tour_alerts(kit: Kit) -> list[dict[str, Any]]:
    sup = kit.user("sup", "supervisor")
    alerts = kit.request(sup, "GET", "/api/v1/alerts").json()["alerts"]
    return [a for a in alerts if a["kind"] == "tour"]


def test_scans_count_a_late_stop_alerts_and_the_late_scan_resolves_it(kit: Kit) -> None:
    kit.user("sup", "supervisor")
    kit.advance(1)
    step(kit)
    # The round running when the tours were first watched (07:00) is not judged.
    assert tour_alerts(kit) == []
    kit.advance(119)
    scan(kit, "store-west-door")          # 08:02, due by 08:10
    kit.advance(180)                       # 08:05
    step(kit)
    assert tour_alerts(kit) == []
    rnd = current(kit)
    assert rnd["tour"] == "yard-round"
    assert rnd["officers"] == ["P1"]
    assert rnd["next"] == {"checkpoint": "store-east-door", "due_by": "2030-01-01T08:07:00Z"}
    assert rnd["stops"][0]["scanned_at"] == "2030-01-01T08:02:00Z"

    kit.advance(240)                       # 08:09: the east door was due at 08:07
    step(kit)
    (alert,) = tour_alerts(kit)
    assert (alert["post"], alert["rule"], alert["state"]) == \
        ("store", "tour:yard-round:store-east-door", "open")
    rnd = current(kit)
    assert rnd["missed"] == ["store-east-door"]
    # "Next" is never a stop already missed (/duty said "Next: … by 08:07" at 08:09).
    assert rnd["next"] == {"checkpoint": "north-beacon", "due_by": "2030-01-01T08:12:00Z"}

    scan(kit, "store-east-door")           # late, at 08:09
    kit.advance(5)
    step(kit)
    (alert,) = tour_alerts(kit)
    assert alert["state"] == "resolved"
    rnd = current(kit)
    assert rnd["stops"][1]["late"] is True and rnd["missed"] == []
    # The scan is also an exact fix at the checkpoint: the officer's position.
    officer = kit.request(kit.user("P1", "officer"), "GET", "/api/v1/me/tours")
    assert officer.status_code == 200
    assert {c["id"] for c in officer.json()["checkpoints"]} >= {"store-east-door"}
    # The tour's name for the page's heading (it showed the id "yard-round").
    assert officer.json()["tours"] == [{"id": "yard-round", "name": "Yard round"}]


def test_a_scan_of_an_unknown_checkpoint_is_a_precise_4xx(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    r = kit.post_events(sup, [{"t": kit.clock.iso(), "kind": "scan", "officer": "P1",
                               "checkpoint": "store-door"}])
    assert r.status_code in (400, 422), r.text
    assert "checkpoint 'store-door' is not declared" in r.text


def test_a_restarted_watch_remembers_the_rounds_scans(kit: Kit) -> None:
    from coverwatch.server.wiring import tours_for

    kit.advance(1)
    step(kit)
    kit.advance(119)
    scan(kit, "store-west-door")           # 08:02
    kit.advance(60)
    step(kit)
    # Many fixes later (not scans), a new watch, as after a restart, reads only the
    # saved scans and the events stored since.
    sup = kit.user("sup", "supervisor")
    r = kit.post_events(sup, [{"t": kit.clock.iso(), "kind": "fix", "officer": "P2", "x": 1,
                               "y": 1, "accuracy_m": 3}])
    assert r.status_code == 200, r.text
    fresh = tours_for(kit.svc)
    kit.svc.tours = fresh
    kit.advance(300)                       # 08:08: the east door was due at 08:07
    step(kit)
    assert [s.checkpoint for s in fresh.scans] == ["store-west-door"]
    rnd = current(kit)
    assert rnd["stops"][0]["officer"] == "P1"
    assert rnd["missed"] == ["store-east-door"]
    assert [a["rule"] for a in tour_alerts(kit)] == ["tour:yard-round:store-east-door"]
