"""A late state event (duty, gate, flag) is applied live when it arrives; a late fix is not.

The issue-19 finding: on a loaded machine the demo's opening flag, gate and duty
events arrived seconds after their timestamps, were stored as late and never
reached live evaluation, so the control room showed nobody on duty and no lapse
while Replay showed the main gate lapsed. Here the same story runs through the
real server on a fake clock, on SQLite and PostgreSQL (``migrated``).
"""

from __future__ import annotations

from typing import Any

from conftest import Database
from coverwatch.domain.time import US_PER_S, format_time
from serverkit import YARD, Caller, FakeClock, Kit, base_settings, running_server


def _fix(kit: Kit, phone: Caller) -> None:
    r = kit.post_events(phone, [{"t": kit.clock.iso(), "kind": "fix", "x": 1.0, "y": 2.0,
                                 "accuracy_m": 3}])
    assert r.status_code == 200 and r.json()["late"] == 0, r.text


def _states(kit: Kit) -> dict[tuple[str, str], str]:
    return {(c["post"], c["rule"]): c["state"] for c in kit.svc.live.cover_states()}


def _opening_arrives_late(kit: Kit) -> tuple[Caller, int, int]:
    """A1's phone reports at the main gate; the duty booking, the opening flag and the
    gate opening all arrive 8 s after their time. Returns (phone, their time, horizon)."""
    phone, _ = kit.device("phone-a1", "A1")
    ingest = kit.api_token("gateway", "ingest")
    for _ in range(4):
        _fix(kit, phone)
        kit.advance(5)
    assert not {o.officer: o for o in kit.svc.live.officers()}["A1"].on_duty
    t = kit.clock() - 8 * US_PER_S
    horizon = kit.svc.live.horizon
    assert t < horizon
    r = kit.post_events(phone, [{"t": format_time(t), "kind": "duty", "officer": "A1",
                                 "on": True, "capabilities": ["armed"]}])
    assert r.status_code == 200 and r.json()["late"] == 1, r.text
    r = kit.post_events(ingest, [
        {"t": format_time(t), "kind": "flag", "flag": "open-hours", "on": True},
        {"t": format_time(t), "kind": "gate", "post": "main-gate", "open": True}])
    assert r.status_code == 200 and r.json()["late"] == 2, r.text
    for _ in range(3):
        _fix(kit, phone)
        kit.advance(5)
    return phone, t, horizon


def test_late_duty_gate_and_flag_take_effect_live_at_arrival(migrated: Database) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    with running_server(settings, clock) as kit:
        phone, t, horizon = _opening_arrives_late(kit)
        a1 = {o.officer: o for o in kit.svc.live.officers()}["A1"]
        assert a1.on_duty and a1.capabilities == ("armed",)
        assert kit.svc.live.gates()["main-gate"] and kit.svc.live.flags()["open-hours"]
        states = _states(kit)
        # The open gate is staffed by A1; armed cover needs two armed officers.
        assert states[("main-gate", "open-gate-staffed")] == "covered"
        assert states[("main-gate", "armed-cover")] in ("grace", "lapsed")
        # Applied at the horizon when they arrived, marked so, their own time kept.
        late = [e for e in kit.svc.store.events_since(0) if e["late"]]
        assert sorted(e["kind"] for e in late) == ["duty", "flag", "gate"]
        assert {(e["t_us"], e["applied_us"]) for e in late} == {(t, horizon)}
        # Past the grace, the lapse raises its alert (it never did before).
        for _ in range(14):
            _fix(kit, phone)
            kit.advance(5)
        assert any(a.rule == "armed-cover" for a in kit.svc.book.alerts())
        lapses = [(lp.post, lp.rule, lp.start) for lp in kit.svc.live.lapses()]
        officers = kit.svc.live.officers()
    # A restart rebuilds the same live state: the applied time is stored.
    with running_server(settings, clock) as kit:
        assert [(lp.post, lp.rule, lp.start) for lp in kit.svc.live.lapses()] == lapses
        assert kit.svc.live.officers() == officers
        assert kit.svc.live.gates()["main-gate"]


def test_a_late_event_older_than_what_is_known_is_not_applied(migrated: Database) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    with running_server(settings, clock) as kit:
        phone, _ = kit.device("phone-a1", "A1")
        r = kit.post_events(phone, [{"t": kit.clock.iso(), "kind": "duty", "officer": "A1",
                                     "on": True}])
        assert r.json()["late"] == 0
        for _ in range(3):
            _fix(kit, phone)
            kit.advance(5)
        # A booking-off stamped before the booking-on arrives late: it is history only.
        r = kit.post_events(phone, [{"t": kit.clock.iso(-20), "kind": "duty",
                                     "officer": "A1", "on": False}])
        assert r.json()["late"] == 1
        kit.advance(5)
        assert {o.officer: o for o in kit.svc.live.officers()}["A1"].on_duty
        off = [e for e in kit.svc.store.events_since(0) if e["late"]]
        assert [(e["on"], e["applied_us"]) for e in off] == [(False, None)]
        summary = kit.svc.live.late.summary(kit.clock())
        assert summary["count"] == 1 and summary["applied"] == 0


def test_late_fix_is_counted_but_never_applied(migrated: Database) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    with running_server(settings, clock) as kit:
        phone, _ = kit.device("phone-a1", "A1")
        ingest = kit.api_token("gateway", "ingest")
        kit.post_events(ingest, [{"t": kit.clock.iso(), "kind": "duty", "officer": "A2",
                                  "on": True}])
        kit.advance(5)
        r = kit.post_events(phone, [{"t": kit.clock.iso(-9), "kind": "fix", "x": 1.0,
                                     "y": 2.0, "accuracy_m": 3}])
        assert r.json()["late"] == 1
        kit.advance(5)
        # An old position is not a current one: no cover from it, no position on the plan.
        assert "A1" not in {o.officer for o in kit.svc.live.officers()}
        assert "A1" not in kit.svc.live.positions()


def _late_of(kit: Kit, path: str, caller: Caller) -> Any:
    r = kit.request(caller, "GET", path)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_api_shows_late_arrivals_per_device_and_per_site(migrated: Database) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, migrated.data_dir / "data", db_url=migrated.url)
    with running_server(settings, clock) as kit:
        _opening_arrives_late(kit)
        sup = kit.user("sam", "supervisor")
        late = _late_of(kit, "/api/v1/cover", sup)["late"]
        assert late["count"] == 3 and late["applied"] == 3
        devices = {d["device"]: d for d in late["devices"]}
        assert devices["phone-a1"]["count"] == 1 and devices["phone-a1"]["max_lag_s"] == 8.0
        assert devices["(http)"]["count"] == 2
        # Both senders are 8 s behind; the device is named as such, a token by its source.
        assert late["text"] in ("3 late in the last 10 min, device phone-a1 up to 8 s; "
                                "3 state changes applied late",
                                "3 late in the last 10 min, sender (http) up to 8 s; "
                                "3 state changes applied late")
        applied = {a["kind"]: a for a in late["applied_late"]}
        assert applied["duty"]["live"] == "applied late"
        assert applied["duty"]["time"] < applied["duty"]["applied"] < applied["duty"]["received"]
        board = _late_of(kit, "/api/v1/sites", sup)["sites"][0]["late"]
        assert board["count"] == 3 and board["devices"] == late["devices"]
        # Ten minutes on, they are no longer "lately"; the totals keep them.
        kit.clock.advance(601)
        late = _late_of(kit, "/api/v1/cover", sup)["late"]
        assert late["count"] == 0 and late["total"] == 3 and late["text"] == ""
