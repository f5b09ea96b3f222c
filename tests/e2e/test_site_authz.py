"""Per-site authorisation for every state-changing route (issue 19, deliverable 5).

A two-site deployment; an admin and a supervisor of the south site only. Every
state-changing route the app serves (read from its route table, so a new route
cannot be missed) is called in its site-scoped form for the *north* site, and
each must answer 403 for want of a role there. And the finding itself (F6): a
qualification written by south's admin never makes a north officer armed at
north, not even after a restart (the table had no site column).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_authz_matrix import BODIES, PATH_VALUES, app_routes

from coverwatch.domain.briefing import Shift
from coverwatch.domain.time import US_PER_S
from coverwatch.settings import Settings
from serverkit import PASSWORD, Caller, FakeClock, Kit, base_settings, running_server, write_site

NORTH, SOUTH = "north-yard", "south-quay"
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
# State-changing routes no person's site role decides, with the reason.
NOT_BY_SITE_ROLE = {
    ("POST", "/api/v1/login"): "anyone may try to log in",
    ("POST", "/api/v1/logout"): "ends the caller's own session, whatever the path names",
    ("POST", "/osmand"): "a device's token only (the protocol's id), never a person",
    ("POST", "/owntracks"): "a device's token only (HTTP Basic), never a person",
}


def _settings(tmp: Path) -> Settings:
    """Two sites, north and south, in one deployment whose store is under ``tmp``."""
    (tmp / "north").mkdir()
    (tmp / "south").mkdir()
    north, south = write_site(tmp / "north", NORTH), write_site(tmp / "south", SOUTH)
    return base_settings(north, tmp / "data", more_sites=(south,))


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with running_server(_settings(tmp_path), FakeClock()) as k:
        yield k


def _site_user(kit: Kit, name: str, role: str) -> Caller:
    """A fresh session of a user who holds ``role`` at the south site only."""
    store = kit.app.state.site_unit.store
    user = store.get_user(name)
    if user is None:
        user = store.create_user(name, PASSWORD, [], site_roles_only=True)
        store.set_site_roles(name, kit.app.state.sites[SOUTH].store.site, [role])
    session = store.create_session(user.id, now_us=kit.clock(), ttl_us=3600 * US_PER_S)
    return Caller(name, cookie=session.token, csrf=session.csrf_token)


def test_every_state_changing_route_refuses_another_sites_admin_and_supervisor(
        kit: Kit) -> None:
    routes = sorted(r for r in app_routes(kit.app) if r[0] in STATE_CHANGING)
    assert len(routes) >= 25, routes  # the table was read
    walked: list[str] = []
    failures: list[str] = []
    for method, template in routes:
        if (method, template) in NOT_BY_SITE_ROLE:
            continue
        assert template.startswith("/api/v1/"), f"{method} {template}: not site-scoped"
        path = f"/api/v1/sites/{NORTH}/" + template.removeprefix("/api/v1/").format(
            **PATH_VALUES)
        kwargs = dict(BODIES.get((method, template), {}))
        for name, role in (("south-admin", "admin"), ("south-super", "supervisor")):
            r = kit.request(_site_user(kit, name, role), method, path, **kwargs)
            detail = r.json().get("detail", "") if r.headers.get("content-type", "").endswith(
                "json") else r.text[:200]
            # A 403 for want of a role there, not for a missing CSRF token or the like.
            if r.status_code != 403 or "needs one of the roles" not in detail:
                failures.append(f"{method} {path} as {role} of {SOUTH}: {r.status_code} "
                                f"{detail!r}")
        walked.append(f"{method} {template}")
    assert not failures, "\n".join(failures)
    assert len(walked) == len(routes) - len(NOT_BY_SITE_ROLE)


def test_a_qualification_written_at_one_site_never_counts_at_another(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with running_server(settings, FakeClock()) as kit:
        admin = _site_user(kit, "south-admin", "admin")
        body = {"qualification": "armed", "valid_until": "2031-01-01"}
        r = kit.request(admin, "POST", f"/api/v1/sites/{SOUTH}/officers/N1/qualifications",
                        json=body)
        assert r.status_code == 200, r.text  # south's own record of N1: allowed
        r = kit.request(admin, "POST", f"/api/v1/sites/{NORTH}/officers/N1/qualifications",
                        json=body)
        assert r.status_code == 403
        csv = {"Content-Type": "text/csv"}
        r = kit.request(admin, "POST", f"/api/v1/sites/{NORTH}/qualifications", headers=csv,
                        content=b"officer,qualification,valid_until\nN1,armed,2031-01-01\n")
        assert r.status_code == 403
        sites = kit.app.state.sites
        assert [q.officer for q in sites[SOUTH].briefing.qualifications] == ["N1"]
        assert sites[NORTH].briefing.qualifications == []
    # After a restart each site loads only its own records.
    with running_server(settings, FakeClock()) as kit:
        sites = kit.app.state.sites
        assert sites[NORTH].briefing.qualifications == []
        assert [q.officer for q in sites[SOUTH].briefing.qualifications] == ["N1"]
        boss = kit.user("boss", "admin")  # a deployment admin reads each site's own
        north = kit.request(boss, "GET", f"/api/v1/sites/{NORTH}/officers/N1/qualifications")
        assert north.json()["qualifications"] == []
        south = kit.request(boss, "GET", f"/api/v1/sites/{SOUTH}/officers/N1/qualifications")
        assert [q["qualification"] for q in south.json()["qualifications"]] == ["armed"]


def test_another_sites_objects_cannot_be_reached_through_ones_own_site(kit: Kit) -> None:
    north = kit.app.state.sites[NORTH].store
    (shift,) = north.add_shifts([Shift(0, "N1", kit.clock(), kit.clock() + 3600 * US_PER_S,
                                       None, "perimeter")], actor="north-admin")
    north.create_device("phone-n1", "N1")
    hold = north.add_hold(0, 10 * US_PER_S, "inquest request 17", "north-auditor")
    admin = _site_user(kit, "south-admin", "admin")
    south = f"/api/v1/sites/{SOUTH}"
    for method, path in (("DELETE", f"{south}/roster/shifts/{shift.id}"),
                         ("DELETE", f"{south}/devices/phone-n1"),
                         ("POST", f"{south}/devices/phone-n1/rotate"),
                         ("POST", f"{south}/holds/{hold.id}/release")):
        r = kit.request(admin, method, path)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert [s.id for s in north.list_shifts()] == [shift.id]
    assert [d.name for d in north.list_devices() if d.active] == ["phone-n1"]
    assert [h.id for h in north.holds()] == [hold.id]
