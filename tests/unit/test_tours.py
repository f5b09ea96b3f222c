"""Checkpoints and tours: the site file's sections, scans as records, rounds,
and tour alerts with the lapse lifecycle and escalation."""

from __future__ import annotations

from pathlib import Path

import pytest

from coverwatch.domain.alertbook import AlertBook
from coverwatch.domain.alerts import AlertState, EscalationLevel, EscalationPolicy
from coverwatch.domain.records import EventRecordError, RecordRules, check_record
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.domain.tours import (
    TOUR_ALERT_KIND,
    Scan,
    Tour,
    TourStop,
    apply_tour_alerts,
    round_alerts,
    round_starts,
    round_status,
)
from coverwatch.errors import SiteFileError
from coverwatch.formats.sitefile import load_site, load_site_text

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
S = US_PER_S
T0 = parse_time("2026-03-22T13:00:00Z")

BASE = """site: s
posts:
  - {id: gate, at: [0, 0], rules: [{id: r, need: 1, within_m: 5}]}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(SiteFileError) as e:
        load_site_text(text, "site.yaml")
    return [str(p) for p in e.value.problems]


def test_the_example_declares_checkpoints_and_a_tour() -> None:
    site = load_site(YARD)
    kinds = {c.id: (c.kind, c.accuracy_m, c.post) for c in site.checkpoints}
    assert kinds["store-west-door"] == ("nfc", 1.0, "store")
    assert kinds["north-beacon"] == ("ble", 8.0, None)
    (tour,) = site.tours
    assert tour.ordered and tour.every_s == 3600
    assert tour.stops[0].checkpoint == "store-west-door"


def test_bad_checkpoints_and_tours_are_located() -> None:
    problems = _problems(BASE + """checkpoints:
  - {id: a, at: [1, 1], kind: rfid}
  - {id: b, at: [1, 1], kind: qr, post: gat}
tours:
  - id: t
    every_s: 3600
    from: "25:00"
    stops:
      - {checkpoint: bb, within_s: 60}
      - {checkpoint: b, within_s: 0}
""")
    joined = "\n".join(problems)
    assert "site.yaml:5:" in joined and "checkpoints[0].kind" in joined and "'rfid'" in joined
    assert "checkpoints[1].post" in joined and "unknown post 'gat'" in joined
    assert "tours[0].from" in joined and "HH:MM" in joined
    assert "tours[0].stops[0].checkpoint" in joined and "did you mean 'b'" in joined
    assert "tours[0].stops[1].within_s" in joined


def test_a_scan_is_an_exact_fix_at_the_checkpoint() -> None:
    rules = RecordRules.of(load_site(YARD))
    rec = check_record({"kind": "scan", "t": 1000, "officer": "p1",
                        "checkpoint": "service-gate-qr"}, rules)
    assert (rec.kind, rec.x, rec.y, rec.accuracy, rec.name) == \
        ("fix", 140.0, 62.0, 3.0, "service-gate-qr")
    with pytest.raises(EventRecordError, match="not declared") as e:
        check_record({"kind": "scan", "t": 1, "officer": "p1", "checkpoint": "nope"}, rules)
    assert e.value.field == "checkpoint"
    with pytest.raises(EventRecordError, match="takes its position") as e:
        check_record({"kind": "scan", "t": 1, "officer": "p1", "checkpoint": "north-beacon",
                      "x": 3, "y": 4}, rules)
    assert e.value.field == "x"
    with pytest.raises(EventRecordError, match="missing officer"):
        check_record({"kind": "scan", "t": 1, "checkpoint": "north-beacon"}, rules)
    with pytest.raises(EventRecordError, match="fix, gate, flag, scan"):
        check_record({"kind": "scna", "t": 1}, rules)


ROUND = Tour("r", (TourStop("a", 600), TourStop("b", 300), TourStop("c", 300)), 3600)


def test_ordered_round_chains_due_times_and_counts_scans_in_order() -> None:
    scans = [Scan(T0 + 100 * S, "p1", "b"),       # before a: out of order, does not count
             Scan(T0 + 200 * S, "p1", "a"),
             Scan(T0 + 400 * S, "p1", "b")]
    st = round_status(ROUND, T0, T0 + 3600 * S, scans, T0 + 450 * S)
    a, b, c = st.stops
    assert (a.scanned_at, a.due_by, a.late) == (T0 + 200 * S, T0 + 600 * S, False)
    assert (b.scanned_at, b.due_by) == (T0 + 400 * S, T0 + 500 * S)
    assert (c.due_by, c.missed) == (T0 + 700 * S, False)
    assert st.next_stop == c and st.officers == ("p1",)
    # Nothing by c's due time: missed, the round goes on.
    later = round_status(ROUND, T0, T0 + 3600 * S, scans, T0 + 701 * S)
    assert later.stops[2].missed
    assert round_alerts(later, {})[0].rule == "tour:r:c"


def test_an_ordered_stop_after_a_miss_is_due_from_the_missed_due_time() -> None:
    st = round_status(ROUND, T0, T0 + 3600 * S, [], T0 + 1201 * S)
    assert [s.missed for s in st.stops] == [True, True, True]
    assert [s.due_by for s in st.stops] == [T0 + 600 * S, T0 + 900 * S, T0 + 1200 * S]
    st = round_status(ROUND, T0, T0 + 3600 * S, [], T0 + 10 * S)
    assert [s.due_by for s in st.stops] == [T0 + 600 * S, None, None]


def test_the_next_stop_is_one_that_can_still_be_made() -> None:
    """/duty said "Next: a by 06:10" with a already listed as missed: a missed stop is
    never the next one; when every remaining stop is missed there is none."""
    st = round_status(ROUND, T0, T0 + 3600 * S, [], T0 + 601 * S)  # a missed at 600 s
    assert st.stops[0].missed and st.next_stop == st.stops[1]
    assert st.next_stop.due_by == T0 + 900 * S
    assert round_status(ROUND, T0, T0 + 3600 * S, [], T0 + 1201 * S).next_stop is None
    unordered = Tour("u", ROUND.stops, 3600, ordered=False)  # b and c due at 300 s
    st = round_status(unordered, T0, T0 + 3600 * S, [], T0 + 301 * S)
    assert st.next_stop == st.stops[0]


def test_unordered_round_due_from_the_round_start() -> None:
    tour = Tour("u", ROUND.stops, 3600, ordered=False)
    st = round_status(tour, T0, T0 + 3600 * S, [Scan(T0 + 100 * S, "p2", "c")], T0 + 350 * S)
    assert [s.due_by for s in st.stops] == [T0 + 600 * S, T0 + 300 * S, T0 + 300 * S]
    assert [s.missed for s in st.stops] == [False, True, False]
    assert st.stops[2].scanned_at == T0 + 100 * S


def test_rounds_follow_local_midnight_across_the_clock_change() -> None:
    tour = Tour("n", (TourStop("a", 60),), 6 * 3600, from_s=3600)
    # Europe/London springs forward at 01:00 UTC on 2026-03-29.
    day = parse_time("2026-03-29T00:00:00Z")
    starts = round_starts(tour, "Europe/London", day, day + 24 * 3600 * S)
    # The day before's last round runs until this day's first: it overlaps.
    assert starts[0] == parse_time("2026-03-28T19:00:00Z")
    # every_s is elapsed time from the day's anchor (01:00 local).
    assert starts[1:3] == [parse_time("2026-03-29T01:00:00Z"), parse_time("2026-03-29T07:00:00Z")]
    nxt = round_starts(tour, "Europe/London", parse_time("2026-03-30T00:00:00Z"),
                       parse_time("2026-03-30T02:00:00Z"))
    assert parse_time("2026-03-30T00:00:00Z") in nxt  # 01:00 BST


def test_tour_alerts_have_the_lapse_lifecycle_and_escalate() -> None:
    policy = EscalationPolicy((EscalationLevel(60, ("role:supervisor",)),))
    book = AlertBook(policy)
    st = round_status(ROUND, T0, T0 + 3600 * S, [], T0 + 601 * S)
    (alert,) = apply_tour_alerts(book, round_alerts(st, {}))
    assert alert.kind == TOUR_ALERT_KIND and alert.state == AlertState.OPEN
    assert alert.lapse_start == T0 + 600 * S
    assert alert.details is not None and alert.details["checkpoint"] == "a"
    steps = book.tick(T0 + 700 * S)
    assert [s.targets for s in steps] == [("role:supervisor",)]
    # Applying again (the next tick) raises nothing new; the late scan resolves it.
    st = round_status(ROUND, T0, T0 + 3600 * S, [Scan(T0 + 800 * S, "p1", "a")], T0 + 801 * S)
    again = apply_tour_alerts(book, round_alerts(st, {}))
    assert again[0].id == alert.id and len(book) == 1
    assert again[0].state == AlertState.RESOLVED and again[0].resolved_at == T0 + 800 * S
    # A stop never scanned resolves at the round's end, once it is over.
    st = round_status(ROUND, T0, T0 + 3600 * S, [Scan(T0 + 800 * S, "p1", "a")],
                      T0 + 3600 * S)
    alerts = apply_tour_alerts(book, round_alerts(st, {}))
    assert {a.state for a in alerts} == {AlertState.RESOLVED}
    assert max(a.resolved_at or 0 for a in alerts) == T0 + 3600 * S


def test_a_scan_in_an_event_file_is_a_fix_at_the_checkpoint(tmp_path: Path) -> None:
    from coverwatch.domain.events import OfficerRegistry
    from coverwatch.formats.eventfiles import read_events

    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"t": "2026-03-22T13:00:00Z", "kind": "duty", "officer": "P1", "on": true}\n'
        '{"t": "2026-03-22T13:00:10Z", "kind": "scan", "officer": "P1", '
        '"checkpoint": "store-west-door"}\n')
    fixes = [b.fixes for b in read_events(events, load_site(YARD), OfficerRegistry())
             if len(b.fixes)]
    (batch,) = fixes
    assert (float(batch.x[0]), float(batch.y[0]), float(batch.accuracy[0])) == (60.0, 105.0, 1.0)
    assert int(batch.t[0]) == parse_time("2026-03-22T13:00:10Z")


def test_a_geojson_export_keeps_checkpoints_and_tours() -> None:
    import json

    from coverwatch.domain.site import LatLon
    from coverwatch.formats.geojson import site_from_geojson, site_to_geojson

    source = YARD.read_text("utf-8")
    site = load_site(YARD)
    data = site_to_geojson(source, site, origin=LatLon(51.5, -0.1))
    _, again = site_from_geojson(json.dumps(data).encode(), "yard.geojson")
    assert again.checkpoints == site.checkpoints and again.tours == site.tours
