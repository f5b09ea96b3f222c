"""The live server and `coverwatch replay` give identical lapses for the same events.

A generated shift on the example site (officers leaving and returning, going
silent, duty changes with capabilities, gate and flag toggles, many equal
timestamps) is sent to the server over HTTP in small batches, each window's
events shuffled and split over two requests (out of order, within the allowed
lateness), with the fake clock moved on between windows so the watermark
passes them. The same events, in the order the server received them, are then
replayed from a file with ``until = horizon - 1 µs``. Both stores: SQLite and
PostgreSQL.

With events arriving late, live and replay differ in exactly the one place
docs/semantics.md names: a late state event applied live counts from the horizon
it arrived at, and late fixes are not evaluated live; reports stay exact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import Database
from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.eventfiles import read_events, sorted_events
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record, replay_sorted
from serverkit import YARD, FakeClock, Kit, base_settings, running_server

WINDOW_S = 10
SHIFT_S = 1800

# Where officers stand on the Harbour Yard (site metres).
SPOTS = {
    "main-gate": (1.0, 2.0),
    "near-gate": (18.0, 8.0),
    "lane": (20.0, 25.0),
    "cross": (100.0, 20.0),
    "store": (80.0, 100.0),
    "service-gate": (138.0, 62.0),
    "far": (150.0, 110.0),
}
OFFICERS = {"A1": ["armed"], "A2": ["armed"], "A3": ["armed"], "U1": [], "S1": []}


def generate_shift(t0: int, seed: int) -> list[dict[str, Any]]:
    """A shift's events in time order (ties in a fixed order)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [
        {"t": t0, "kind": "flag", "flag": "open-hours", "on": True},
        {"t": t0, "kind": "gate", "post": "main-gate", "open": True},
    ]
    where = {o: rng.choice(["main-gate", "main-gate", "near-gate", "store"]) for o in OFFICERS}
    on_duty = {o: True for o in OFFICERS}
    for officer, caps in OFFICERS.items():
        events.append({"t": t0, "kind": "duty", "officer": officer, "on": True,
                       "capabilities": caps})
    for step in range(0, SHIFT_S, 5):
        t = t0 + step * US_PER_S
        if step and rng.random() < 0.04:
            events.append({"t": t, "kind": "flag", "flag": "open-hours",
                           "on": rng.random() < 0.7})
        if step and rng.random() < 0.05:
            events.append({"t": t, "kind": "gate", "post": rng.choice(["main-gate",
                                                                      "service-gate"]),
                           "open": rng.random() < 0.6})
        for officer, caps in OFFICERS.items():
            if step and rng.random() < 0.01:
                on_duty[officer] = not on_duty[officer]
                events.append({"t": t, "kind": "duty", "officer": officer,
                               "on": on_duty[officer], "capabilities": caps})
            if rng.random() < 0.12:
                where[officer] = rng.choice(list(SPOTS))
            if rng.random() < 0.06:
                continue  # the device misses a report; long gaps make it stale
            x, y = SPOTS[where[officer]]
            # Mostly on the 5 s grid (equal timestamps), sometimes a little off it.
            jitter = 0 if rng.random() < 0.8 else rng.randrange(1, 4_000_000)
            events.append({"t": t + jitter, "kind": "fix", "officer": officer,
                           "x": x + rng.uniform(-3, 3), "y": y + rng.uniform(-3, 3),
                           "accuracy_m": rng.choice([3, 5, 8])})
    events.sort(key=lambda e: e["t"])
    return events


def _wire(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "t": format_time(event["t"])}


def feed_live(kit: Kit, events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Send the events window by window; returns them in the order they were sent."""
    rng = random.Random(seed)
    ingest = kit.api_token("gateway", "ingest")
    t0 = events[0]["t"]
    sent: list[dict[str, Any]] = []
    i = 0
    for end in range(t0 + WINDOW_S * US_PER_S, t0 + (SHIFT_S + 2 * WINDOW_S) * US_PER_S,
                     WINDOW_S * US_PER_S):
        window = []
        while i < len(events) and events[i]["t"] < end:
            window.append(events[i])
            i += 1
        kit.clock.now = end  # every event of the window is now in the past
        rng.shuffle(window)
        cut = rng.randrange(len(window) + 1)
        # The later half first: the earlier half then arrives out of order.
        for part in (sorted(window[:cut], key=lambda e: -e["t"]), window[cut:]):
            if part:
                r = kit.post_events(ingest, [_wire(e) for e in part])
                assert r.status_code == 200, r.text
                assert r.json()["late"] == 0 and r.json()["duplicates"] == 0
                sent.extend(part)
        kit.tick()
    assert i == len(events)
    return sent


def replay_lapses(site_path: Path, sent: list[dict[str, Any]], until: int,
                  tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "sent.jsonl"
    path.write_bytes(b"".join(orjson.dumps(_wire(e)) + b"\n" for e in sent))
    site = load_site(site_path)
    reader = read_events(path, site, OfficerRegistry())
    result = replay_sorted(site, sorted_events(reader), until=until)
    return [lapse_record(lp) for lp in result.lapses]


def _live_lapses(kit: Kit) -> list[dict[str, Any]]:
    return [lapse_record(lp) for lp in kit.svc.live.lapses(include_open=True)]


@pytest.mark.parametrize("seed", [7, 21])
def test_live_lapses_equal_replay(tmp_path: Path, seed: int, migrated: Database) -> None:
    """``migrated`` (tests/integration/conftest.py) runs this on SQLite and PostgreSQL."""
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    events = generate_shift(clock() + US_PER_S, seed)
    with running_server(settings, clock) as kit:
        sent = feed_live(kit, events, seed)
        # Then a minute with no events at all: silence must count the same.
        kit.clock.now += 60 * US_PER_S
        kit.tick()
        horizon = kit.svc.live.horizon
        live = _live_lapses(kit)
        sup = kit.user("sam", "supervisor")
        over_http = kit.request(sup, "GET", "/api/v1/lapses").json()
        # Lapse alerts only: the yard's hourly tour raises tour alerts of its own.
        alerts = [a for a in kit.svc.book.alerts() if a.kind == "lapse"]
    assert over_http["lapses"] == live
    assert horizon == clock() - 2 * US_PER_S
    replayed = replay_lapses(YARD, sent, horizon - 1, tmp_path)
    # The stream is rich enough to mean something: lapses, alerts, one still open.
    assert len(live) >= 5
    assert any(lp["alert_at"] for lp in live)
    assert live == replayed
    # Every lapse that passed its grace raised exactly one alert.
    alerted = sorted((lp["post"], lp["rule"], lp["start"]) for lp in live if lp["alert_at"])
    assert sorted((a.post, a.rule, format_time(a.lapse_start)) for a in alerts) == alerted


# -- late events: the one documented difference (docs/semantics.md, "Late state events") --


def feed_live_late(kit: Kit, events: list[dict[str, Any]], seed: int) -> int:
    """As :func:`feed_live`, but some events are held back 1 to 30 windows and so
    arrive behind the horizon (up to five minutes): about a third of the duty, gate
    and flag events, a few fixes. Returns how many arrived late."""
    rng = random.Random(seed + 1)
    ingest = kit.api_token("gateway", "ingest")
    t0 = events[0]["t"]
    held: list[tuple[int, dict[str, Any]]] = []  # (window end it arrives after, event)
    late = i = 0
    step = WINDOW_S * US_PER_S
    for end in range(t0 + step, t0 + SHIFT_S * US_PER_S + 32 * step, step):
        on_time = []
        while i < len(events) and events[i]["t"] < end:
            e = events[i]
            odds = 0.02 if e["kind"] == "fix" else 0.35
            if e["t"] > t0 and rng.random() < odds:
                held.append((end + rng.choice([1, 2, 12, 30]) * step, e))
            else:
                on_time.append(e)
            i += 1
        kit.clock.now = end
        rng.shuffle(on_time)
        if on_time:
            r = kit.post_events(ingest, [_wire(e) for e in on_time])
            assert r.status_code == 200 and r.json()["late"] == 0, r.text
        kit.tick()
        arriving = [e for due, e in held if due <= end]
        held = [(due, e) for due, e in held if due > end]
        if arriving:  # a window after their time: behind the horizon
            r = kit.post_events(ingest, [_wire(e) for e in arriving])
            assert r.status_code == 200 and r.json()["late"] == len(arriving), r.text
            late += len(arriving)
    assert i == len(events) and not held
    return late


def _event_of(row: dict[str, Any], t: int) -> dict[str, Any]:
    """A stored event as an input record at time ``t``."""
    kind = row["kind"]
    if kind == "fix":
        return {"t": t, "kind": kind, "officer": row["officer"], "x": row["x"], "y": row["y"],
                "accuracy_m": row["accuracy"]}
    if kind == "duty":
        caps = [c for c in (row["capabilities"] or "").split(",") if c]
        return {"t": t, "kind": kind, "officer": row["officer"], "on": row["on"],
                "capabilities": caps}
    if kind == "gate":
        return {"t": t, "kind": kind, "post": row["post"], "open": row["open"]}
    return {"t": t, "kind": kind, "flag": row["flag"], "on": row["on"]}


@pytest.mark.parametrize("seed", [7, 21])
def test_live_equals_replay_except_where_late_state_is_applied(
        tmp_path: Path, seed: int, migrated: Database) -> None:
    """Live evaluation equals a replay of the stored events in arrival order in which each
    late state event that was applied is moved to the horizon it was applied at, and late
    fixes and superseded late state events are left out; that is the only difference.
    Reports (recomputed from the store) equal a replay of every event at its own time."""
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    events = generate_shift(clock() + US_PER_S, seed)
    with running_server(settings, clock) as kit:
        late = feed_live_late(kit, events, seed)
        kit.clock.now += 60 * US_PER_S
        kit.tick()
        horizon = kit.svc.live.horizon
        live = _live_lapses(kit)
        sup = kit.user("sam", "supervisor")
        report = kit.request(sup, "GET", "/api/v1/report").json()
        stored = kit.svc.store.events_since(0, limit=1_000_000)
    assert len(stored) == len(events)
    late_rows = [r for r in stored if r["late"]]
    applied = [r for r in late_rows if r["applied_us"] is not None]
    # The mix means something: applied and superseded state events, late fixes.
    assert len(late_rows) == late and len(applied) >= 5
    assert any(r["kind"] != "fix" and r["applied_us"] is None for r in late_rows)
    assert any(r["kind"] == "fix" for r in late_rows)
    assert all(r["kind"] != "fix" and r["t_us"] < r["applied_us"] <= r["received_us"]
               for r in applied)
    as_live = [_event_of(r, r["t_us"] if not r["late"] else r["applied_us"])
               for r in stored if not r["late"] or r["applied_us"] is not None]
    assert live == replay_lapses(YARD, as_live, horizon - 1, tmp_path)
    in_event_time = [_event_of(r, r["t_us"]) for r in stored]
    exact = replay_lapses(YARD, in_event_time, horizon - 1, tmp_path)
    # Nothing was purged, so no lapse is cut at a purge's edge.
    assert not any(lapse.pop("purged_edge") for lapse in report["lapses"])
    assert report["lapses"] == exact
    assert len(live) >= 5 and live != exact  # the late events did change the live picture
