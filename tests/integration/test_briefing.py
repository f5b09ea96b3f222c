"""Orders acknowledgement, rosters, qualifications and the "unbriefed" alert, through
the real server API on SQLite and PostgreSQL (fake clock; the briefing step is run by hand).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Database
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site_document
from coverwatch.server.briefing import Briefing
from serverkit import (
    YARD,
    Caller,
    FakeClock,
    Kit,
    base_settings,
    copy_yard_plan,
    running_server,
)


@pytest.fixture
def kit(migrated: Database, tmp_path: Path) -> Iterator[Kit]:
    site = tmp_path / "site.yaml"
    site.write_text(YARD.read_text("utf-8"), "utf-8")
    copy_yard_plan(site)
    settings = base_settings(site, migrated.data_dir, db_url=migrated.url,
                             reacknowledge_within_s=60.0)
    with running_server(settings, FakeClock()) as k:
        yield k


def briefing(kit: Kit) -> Briefing:
    b: Briefing = kit.svc.briefing
    return b


def step(kit: Kit) -> None:
    kit.call(briefing(kit).step)


def on_duty(kit: Kit, officer: str, caps: list[str]) -> None:
    sup = kit.user("sup", "supervisor")
    r = kit.post_events(sup, [{"t": kit.clock.iso(), "kind": "duty", "officer": officer,
                               "on": True, "capabilities": caps}])
    assert r.status_code == 200, r.text


def unbriefed_alerts(kit: Kit, sup: Caller) -> list[dict[str, Any]]:
    alerts = kit.request(sup, "GET", "/api/v1/alerts").json()["alerts"]
    return [a for a in alerts if a["kind"] == "unbriefed"]


def version_of(kit: Kit, caller: Caller, post: str) -> str:
    posts = kit.request(caller, "GET", "/api/v1/orders").json()["posts"]
    return str(next(p["version"] for p in posts if p["post"] == post))


def roster_csv(*rows: tuple[str, str, str, str]) -> str:
    return "officer,post,start,end\n" + "".join(",".join(r) + "\n" for r in rows)


def test_unbriefed_officer_alert_clears_when_they_acknowledge(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    u1 = kit.user("U1", "officer")
    r = kit.request(sup, "POST", "/api/v1/roster", content=roster_csv(
        ("U1", "service-gate", kit.clock.iso(-60), kit.clock.iso(8 * 3600))),
        headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    duty_t = kit.clock()
    on_duty(kit, "U1", [])
    kit.advance(3)
    step(kit)
    (alert,) = unbriefed_alerts(kit, sup)
    assert (alert["post"], alert["rule"], alert["state"]) == ("service-gate", "orders:U1", "open")
    assert alert["lapse_start"] == duty_t

    mine = kit.request(u1, "GET", "/api/v1/me/orders").json()
    assert mine["rostered"] is True
    (orders,) = mine["posts"]
    assert orders["post"] == "service-gate" and orders["acknowledged"] is False
    assert "Open the service gate only" in orders["text"]

    r = kit.request(u1, "POST", "/api/v1/orders/service-gate/acknowledge",
                    json={"version": "000000000000"})
    assert r.status_code == 409
    assert r.json()["current_version"] == orders["version"]
    r = kit.request(u1, "POST", "/api/v1/orders/service-gate/acknowledge",
                    json={"version": orders["version"]})
    assert r.status_code == 200, r.text
    assert r.json()["via"] == "session"
    (alert,) = unbriefed_alerts(kit, sup)
    assert alert["state"] == "resolved"

    status = kit.request(sup, "GET", "/api/v1/orders/status").json()
    gate = next(p for p in status["posts"] if p["post"] == "service-gate")
    assert gate["acknowledged_by"] == ["U1"]
    assert [(s["officer"], s["acknowledged"]) for s in gate["shifts"]] == [("U1", True)]
    store = next(p for p in status["posts"] if p["post"] == "store")
    assert store["acknowledged_by"] == [] and store["shifts"] == []

    admin = kit.user("root", "admin")
    entries = kit.request(admin, "GET", "/api/v1/audit", params={"limit": 1000}).json()["entries"]
    acks = [e for e in entries if e["action"] == "orders.acknowledged"]
    assert [(e["actor"], e["details"]["via"], e["details"]["version"]) for e in acks] == [
        ("U1", "session", orders["version"])]
    assert any(e["action"] == "alert.resolved" and e["subject"] == f"alert:{alert['id']}"
               for e in entries)


def test_a_device_acknowledges_for_its_officer(kit: Kit) -> None:
    device, _ = kit.device("phone-u2", "U2")
    version = version_of(kit, kit.user("sup", "supervisor"), "store")
    r = kit.request(device, "POST", "/api/v1/orders/store/acknowledge", json={"version": version})
    assert r.status_code == 200, r.text
    assert (r.json()["officer"], r.json()["via"], r.json()["device"]) == (
        "U2", "device", "phone-u2")
    acks = kit.svc.store.acknowledgements("U2")
    assert [(a.post, a.version, a.device, a.user) for a in acks] == [
        ("store", version, "phone-u2", None)]
    r = kit.request(device, "POST", "/api/v1/orders/nowhere/acknowledge",
                    json={"version": version})
    assert r.status_code == 404


def test_rostering_needs_the_posts_qualifications_for_the_whole_shift(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    admin = kit.user("root", "admin")
    shift = {"officer": "U3", "post": "main-gate", "start": "2030-01-01T08:00:00Z",
             "end": "2030-01-01T20:00:00Z"}
    r = kit.request(sup, "POST", "/api/v1/roster/shifts", json=shift)
    assert r.status_code == 422
    (reason,) = [e["message"] for e in r.json()["errors"]]
    assert "U3 is not qualified armed" in reason and "hold no armed qualification" in reason

    r = kit.request(admin, "POST", "/api/v1/officers/U3/qualifications",
                    json={"qualification": "armed", "valid_until": "2030-01-01"})
    assert r.status_code == 200, r.text
    # Valid through 1 January in the site's zone (Europe/London, UTC in winter).
    assert r.json()["valid_until"] == "2030-01-02T00:00:00Z"
    r = kit.request(sup, "POST", "/api/v1/roster/shifts", json=shift)
    assert r.status_code == 201, r.text
    late = shift | {"start": "2030-01-01T20:00:00Z", "end": "2030-01-02T08:00:00Z"}
    r = kit.request(sup, "POST", "/api/v1/roster/shifts", json=late)
    assert r.status_code == 422
    assert "valid until 2030-01-02T00:00:00Z" in r.json()["errors"][0]["message"]
    # A patrol and an unarmed post need no qualification.
    r = kit.request(sup, "POST", "/api/v1/roster/shifts",
                    json={**late, "post": None, "patrol": "perimeter"})
    assert r.status_code == 201, r.text
    shifts = kit.request(sup, "GET", "/api/v1/roster/shifts").json()["shifts"]
    assert [(s["post"], s["patrol"]) for s in shifts] == [("main-gate", None),
                                                           (None, "perimeter")]
    r = kit.request(sup, "DELETE", f"/api/v1/roster/shifts/{shifts[1]['id']}")
    assert r.status_code == 200
    assert len(kit.request(sup, "GET", "/api/v1/roster/shifts").json()["shifts"]) == 1
    assert kit.request(sup, "DELETE", "/api/v1/roster/shifts/999999").status_code == 404
    # A CSV import is all or nothing, with each problem's line.
    r = kit.request(sup, "POST", "/api/v1/roster", headers={"Content-Type": "text/csv"},
                    content=roster_csv(("U9", "store", "2030-01-01T08:00:00Z",
                                        "2030-01-01T07:00:00Z")))
    assert r.status_code == 422
    assert r.json()["errors"][0]["message"].startswith("line 2:")
    assert len(briefing(kit).shifts) == 1


def test_governed_capabilities_count_only_while_qualified(kit: Kit) -> None:
    admin = kit.user("root", "admin")
    sup = kit.user("sup", "supervisor")
    r = kit.request(admin, "POST", "/api/v1/qualifications", headers={"Content-Type": "text/csv"},
                    content="officer,qualification,valid_until\n"
                            f"U3,armed,{kit.clock.iso(0.5)}\n")
    assert r.status_code == 200, r.text
    on_duty(kit, "U3", ["armed", "first-aid"])
    on_duty(kit, "U4", ["armed", "first-aid"])  # no armed record: armed does not count
    kit.advance(0.1)
    step(kit)  # U3's qualification expires within the look-ahead: capabilities re-stated
    kit.advance(3)
    officers = {o["officer"]: o for o in
                kit.request(sup, "GET", "/api/v1/officers").json()["officers"]}
    assert officers["U4"]["capabilities"] == ["first-aid"]
    assert officers["U3"]["capabilities"] == ["first-aid"]
    rows = [r for r in kit.svc.store.events_since(0) if r["officer"] == "U3"]
    assert [(r["source"], r["capabilities"]) for r in rows] == [
        ("http", "armed,first-aid"), ("qualifications", "first-aid")]
    # The stored raw record keeps what the device claimed.
    u4 = next(r for r in kit.svc.store.events_since(0) if r["officer"] == "U4")
    assert u4["raw"]["capabilities"] == ["armed", "first-aid"]


def test_an_officer_on_duty_after_the_expiry_was_first_seen_still_loses_it(kit: Kit) -> None:
    """The expiry is within the look-ahead before the officer comes on duty: the
    re-statement must still be made (it was once skipped for good)."""
    admin = kit.user("root", "admin")
    sup = kit.user("sup", "supervisor")
    r = kit.request(admin, "POST", "/api/v1/qualifications", headers={"Content-Type": "text/csv"},
                    content="officer,qualification,valid_until\n"
                            f"U6,armed,{kit.clock.iso(0.5)}\n")
    assert r.status_code == 200, r.text
    step(kit)  # nobody on duty with it yet: nothing to re-state
    on_duty(kit, "U6", ["armed"])
    kit.advance(0.1)
    step(kit)
    kit.advance(3)
    officers = {o["officer"]: o for o in
                kit.request(sup, "GET", "/api/v1/officers").json()["officers"]}
    assert officers["U6"]["capabilities"] == []
    rows = [r for r in kit.svc.store.events_since(0) if r["officer"] == "U6"]
    assert [r["source"] for r in rows] == ["http", "qualifications"]


def test_roster_start_and_end_put_the_officer_on_and_off_duty(kit: Kit) -> None:
    admin = kit.user("root", "admin")
    sup = kit.user("sup", "supervisor")
    kit.request(admin, "POST", "/api/v1/officers/U5/qualifications",
                json={"qualification": "armed", "valid_until": "2031-01-01"})
    r = kit.request(sup, "POST", "/api/v1/roster/shifts", json={
        "officer": "U5", "post": "main-gate", "start": kit.clock.iso(0.5),
        "end": kit.clock.iso(20)})
    assert r.status_code == 201, r.text
    step(kit)
    kit.advance(3)

    def u5() -> dict[str, Any] | None:
        officers = kit.request(sup, "GET", "/api/v1/officers").json()["officers"]
        return next((o for o in officers if o["officer"] == "U5"), None)

    assert (u5() or {}).get("on_duty") is True
    assert (u5() or {}).get("capabilities") == ["armed"]
    kit.advance(17)
    step(kit)
    kit.advance(3)
    assert (u5() or {}).get("on_duty") is False
    rows = [r for r in kit.svc.store.events_since(0) if r["officer"] == "U5"]
    assert [(r["source"], r["on"], r["t_us"] - rows[0]["t_us"]) for r in rows] == [
        ("roster", True, 0), ("roster", False, 19_500_000)]


def test_orders_changed_during_the_shift_must_be_reacknowledged(kit: Kit) -> None:
    sup = kit.user("sup", "supervisor")
    u1 = kit.user("U1", "officer")
    kit.request(sup, "POST", "/api/v1/roster/shifts", json={
        "officer": "U1", "post": "store", "start": kit.clock.iso(-60),
        "end": kit.clock.iso(8 * 3600)})
    old = version_of(kit, u1, "store")
    assert kit.request(u1, "POST", "/api/v1/orders/store/acknowledge",
                       json={"version": old}).status_code == 200
    on_duty(kit, "U1", [])
    kit.advance(3)
    step(kit)
    assert unbriefed_alerts(kit, sup) == []

    site = kit.settings.site_path
    site.write_text(site.read_text("utf-8").replace("grace_s: 300", "grace_s: 120"), "utf-8")
    # The briefing service follows whatever site the server runs (however it was
    # applied): swap it in directly, as a site apply does once the change is in force.
    kit.svc.doc = load_site_document(site)
    changed_at = kit.clock()
    step(kit)
    new = version_of(kit, u1, "store")
    assert new != old
    (orders,) = kit.request(u1, "GET", "/api/v1/me/orders").json()["posts"]
    assert orders["acknowledged"] is False and orders["acknowledged_version"] == old
    changes = orders["changes_since_acknowledged"]
    assert len(changes["what"]) == 1 and "any-cover" in changes["what"][0], changes
    assert [line.split("; ")[0][-33:] for line in changes["added"]] == [
        "an officer for no more than 2 min"]
    assert [line.split("; ")[0][-33:] for line in changes["removed"]] == [
        "an officer for no more than 5 min"]

    kit.advance(61)  # the watermark (now - 2 s lateness) is still within the 60 s
    step(kit)
    assert unbriefed_alerts(kit, sup) == []
    kit.advance(2)
    step(kit)
    (alert,) = unbriefed_alerts(kit, sup)
    assert alert["lapse_start"] == changed_at and alert["state"] == "open"
    assert alert["alert_at"] == changed_at + 60 * US_PER_S
    r = kit.request(u1, "POST", "/api/v1/orders/store/acknowledge", json={"version": new})
    assert r.status_code == 200, r.text
    (alert,) = unbriefed_alerts(kit, sup)
    assert alert["state"] == "resolved"
    assert format_time(alert["resolved_at"]) <= kit.clock.iso()


def test_a_late_duty_booking_is_applied_and_still_loses_an_expiring_qualification(
        kit: Kit) -> None:
    """Issue 19: a booking-on that arrives behind the horizon takes effect live when it
    arrives, and the qualification's expiry (which looks at the duty the live engine
    took) still re-states the officer's capabilities."""
    admin = kit.user("root", "admin")
    sup = kit.user("sup", "supervisor")
    r = kit.request(admin, "POST", "/api/v1/qualifications", headers={"Content-Type": "text/csv"},
                    content="officer,qualification,valid_until\n"
                            f"U7,armed,{kit.clock.iso(6)}\n")
    assert r.status_code == 200, r.text
    r = kit.post_events(sup, [{"t": kit.clock.iso(-8), "kind": "duty", "officer": "U7",
                               "on": True, "capabilities": ["armed"]}])
    assert r.status_code == 200 and r.json()["late"] == 1, r.text
    kit.advance(1)
    officers = {o["officer"]: o for o in
                kit.request(sup, "GET", "/api/v1/officers").json()["officers"]}
    assert officers["U7"]["on_duty"] and officers["U7"]["capabilities"] == ["armed"]
    kit.advance(4.5)
    step(kit)  # the expiry is within the look-ahead: capabilities re-stated
    kit.advance(3)
    officers = {o["officer"]: o for o in
                kit.request(sup, "GET", "/api/v1/officers").json()["officers"]}
    assert officers["U7"]["on_duty"] and officers["U7"]["capabilities"] == []
    rows = [r for r in kit.svc.store.events_since(0) if r["officer"] == "U7"]
    assert [(r["source"], r["late"], r["applied_us"] is not None) for r in rows] == [
        ("http", True, True), ("qualifications", False, False)]
