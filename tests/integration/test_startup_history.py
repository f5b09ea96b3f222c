"""A start reads the alerts the live server needs, not the stored history (issue 25).

Resumed from its checkpoint, the server holds every alert not closed and the newest
closed ones (the control room's history); older closed alerts stay in the store, read
when a page asks for them, and are never raised again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coverwatch.domain.alerts import Alert, AlertState, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.server.handlers import startup
from coverwatch.storage import open_store
from serverkit import YARD, FakeClock, Kit, base_settings, running_server

DAY = 24 * 3600 * US_PER_S


def _closed(post: str, rule: str, at: int) -> Alert:
    alert = Alert(id=alert_id_for("lapse", post, rule, at), kind="lapse", post=post,
                  rule=rule, lapse_start=at, alert_at=at + 60 * US_PER_S, count=0, need=1)
    alert.acknowledge("sam", "on it", at + 120 * US_PER_S)
    alert.resolve(at + 300 * US_PER_S)
    alert.close("sam", "done", at + 400 * US_PER_S)
    return alert


def _lapse(kit: Kit) -> None:
    phone, _ = kit.device("phone-a1", "A1")
    ingest = kit.api_token("gateway", "ingest")
    now = format_time(kit.clock())
    r = kit.post_events(ingest, [
        {"t": now, "kind": "duty", "officer": "A1", "on": True, "capabilities": ["armed"]},
        {"t": now, "kind": "flag", "flag": "open-hours", "on": True},
        {"t": now, "kind": "gate", "post": "main-gate", "open": True}])
    assert r.status_code == 200, r.text
    for i in range(30):  # A1 walks off after 100 s: a lapse, an alert still open
        r = kit.post_events(phone, [{"t": kit.clock.iso(), "kind": "fix",
                                     "x": 1.0 if i < 20 else 400.0, "y": 2.0,
                                     "accuracy_m": 3}])
        assert r.status_code == 200, r.text
        kit.advance(5)


def test_a_start_holds_open_and_recent_alerts_and_reads_older_closed_ones_on_demand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "HELD_ALERTS", 3, raising=False)
    clock = FakeClock()
    settings = base_settings(YARD, tmp_path / "data")
    with running_server(settings, clock) as kit:
        _lapse(kit)
        live = next(a for a in kit.svc.book.alerts() if a.kind == "lapse")
        post, rule = live.post, live.rule
        sam = kit.user("sam", "supervisor")
        r = kit.request(sam, "POST", f"/api/v1/alerts/{live.id}/acknowledge",
                        json={"note": "going"})
        assert r.status_code == 200, r.text
        assert kit.svc.last_checkpoint  # the ticker saved one
    # Weeks of closed history before it, and one closed alert of yesterday.
    store = open_store(None, settings.data_dir)
    old = [_closed(post, rule, live.lapse_start - d * DAY) for d in range(30, 8, -1)]
    recent = _closed(post, rule, live.lapse_start - DAY)
    for alert in [*old, recent]:
        store.record_alert_event(alert.to_record(), actor="test", action="alert.closed")
    store.close()
    clock.advance(1)
    with running_server(settings, clock) as kit:
        held = {a.id for a in kit.svc.book.alerts()}
        closed = {a.id for a in kit.svc.book.alerts() if a.state is AlertState.CLOSED}
        assert live.id in held and len(closed) <= 3, "the start read the closed history"
        assert old[0].id not in held
        again = kit.svc.book.get(live.id)
        assert again.acknowledged_by == "sam" and again.state.value == "acknowledged"
        sam = kit.user("sam2", "supervisor")
        listed = kit.request(sam, "GET", "/api/v1/alerts").json()["alerts"]
        assert {a.id for a in old} <= {a["id"] for a in listed}
        assert [a["alert_at"] for a in listed] == sorted(a["alert_at"] for a in listed)
        r = kit.request(sam, "GET", f"/api/v1/alerts/{old[0].id}")
        assert r.status_code == 200 and r.json()["state"] == "closed", r.text
        # The engine finding an old lapse again does not raise its alert a second time.
        assert kit.svc.book.find(post, rule, old[1].lapse_start) is not None
        assert kit.svc.book.on_alert(post, rule, old[1].lapse_start, old[1].alert_at, 0, 1) \
            .state.value == "closed"


def test_a_long_floods_incident_with_a_member_still_open_is_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incident that began before the held alerts' bound keeps its open member: after a
    restart the member is still in it, so its next level is told with the incident."""
    monkeypatch.setattr(startup, "HELD_ALERTS", 3, raising=False)
    clock = FakeClock()
    settings = base_settings(YARD, tmp_path / "data")
    with running_server(settings, clock) as kit:
        _lapse(kit)
        live = next(a for a in kit.svc.book.alerts() if a.kind == "lapse")
        post, rule = live.post, live.rule
        assert kit.svc.last_checkpoint
    store = open_store(None, settings.data_dir)
    old = [_closed(post, rule, live.lapse_start - d * DAY) for d in range(30, 8, -1)]
    for alert in old:
        store.record_alert_event(alert.to_record(), actor="test", action="alert.closed")
    started = old[0].lapse_start
    store.save_incidents([{"id": "inc-long", "started": started, "cause": "flood",
                           "members": [old[0].id, old[1].id, live.id], "posts": [post],
                           "told": [1], "latest": live.alert_at},
                          {"id": "inc-old", "started": started, "cause": "flood",
                           "members": [old[2].id, old[3].id, old[4].id], "posts": [post],
                           "told": [1], "latest": old[4].alert_at}])
    store.close()
    clock.advance(1)
    with running_server(settings, clock) as kit:
        incident = kit.svc.outbox.incidents.incident_of(live.id)
        assert incident is not None and incident.id == "inc-long"
        held = {i.id for i in kit.svc.outbox.incidents.incidents()}
        assert "inc-old" not in held  # every member closed, long ago: left in the store
