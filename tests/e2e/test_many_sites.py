"""One deployment, two sites: each its own engine, alerts and devices; roles per site; the
site-scoped routes; the all-sites board; a second site added to a single-site store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.storage import open_store, verify_audit
from coverwatch.storage.sites import DEPLOYMENT, default_owner, key_for_site, site_store
from serverkit import PASSWORD, FakeClock, Kit, base_settings, running_server, write_site


def _sites(tmp: Path) -> tuple[Path, Path]:
    (tmp / "north").mkdir()
    (tmp / "south").mkdir()
    return write_site(tmp / "north", "north-yard"), write_site(tmp / "south", "south-quay")


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    north, south = _sites(tmp_path)
    settings = base_settings(north, tmp_path / "data", more_sites=(south,))
    with running_server(settings, FakeClock()) as k:
        yield k


def _login(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def _services(kit: Kit, site: str):  # type: ignore[no-untyped-def]
    return kit.app.state.sites[site]


def _people(kit: Kit) -> None:
    store = kit.app.state.site_unit.store
    store.create_user("control", PASSWORD, ["supervisor"])  # deployment-wide
    store.create_user("south-super", PASSWORD, [], site_roles_only=True)
    store.set_site_roles("south-super", _services(kit, "south-quay").store.site, ["supervisor"])
    store.create_user("boss", PASSWORD, ["admin"])


def test_each_site_has_its_own_store_key_and_engine(kit: Kit) -> None:
    north, south = _services(kit, "north-yard"), _services(kit, "south-quay")
    assert (north.store.site, south.store.site) == ("north-yard", "south-quay")
    assert north.live is not south.live and north.book is not south.book


def test_a_site_supervisor_sees_nothing_of_another_site(kit: Kit) -> None:
    _people(kit)
    c = kit.client
    _login(c, "south-super")
    assert c.get("/api/v1/sites/south-quay/cover").status_code == 200
    r = c.get("/api/v1/sites/north-yard/cover")
    assert r.status_code == 403 and "north-yard" in r.text
    assert c.get("/api/v1/sites/north-yard/alerts").status_code == 403
    board = c.get("/api/v1/sites").json()["sites"]
    assert [s["id"] for s in board] == ["south-quay"]
    me = c.get("/api/v1/me").json()
    assert me["roles"] == [] and me["sites"] == {"south-quay": ["supervisor"]}
    # Not an admin anywhere: people are not theirs to change.
    assert c.get("/api/v1/sites/south-quay/users").status_code == 403


def test_plain_routes_need_a_site_when_there_are_several(kit: Kit) -> None:
    _people(kit)
    c = kit.client
    _login(c, "control")
    r = c.get("/api/v1/cover")
    assert r.status_code == 404
    assert "/api/v1/sites/{site}/" in r.json()["detail"]
    assert c.get("/api/v1/sites/nowhere/cover").status_code == 404
    board = c.get("/api/v1/sites").json()["sites"]
    assert {s["id"] for s in board} == {"north-yard", "south-quay"}
    assert all(s["control_room"] == f"/control?site={s['id']}" for s in board)


def test_a_device_reports_to_its_own_site_only(kit: Kit) -> None:
    south = _services(kit, "south-quay")
    _, token = south.store.create_device("phone-s1", "S1")
    auth = {"Authorization": f"Bearer {token}"}
    t = format_time(kit.clock() - US_PER_S)
    fix = [{"t": t, "kind": "fix", "x": 1.0, "y": 1.0, "accuracy_m": 5}]
    # No site in the path: the device's own site.
    r = kit.client.post("/api/v1/events", json=fix, headers=auth)
    assert r.status_code == 200, r.text
    assert [e["officer"] for e in south.store.events_since(0, limit=10)] == ["S1"]
    assert _services(kit, "north-yard").store.events_since(0, limit=10) == []
    # Naming the other site does not move it there.
    r = kit.client.post("/api/v1/sites/north-yard/events", json=fix, headers=auth)
    assert r.status_code == 403
    # OsmAnd carries no site at all: the device's token decides.
    r = kit.client.get("/osmand", params={"id": token, "lat": "51.5", "lon": "-0.12",
                                          "timestamp": str(kit.clock() // US_PER_S)})
    assert r.status_code == 200, r.text
    assert len(south.store.events_since(0, limit=10)) == 2


def test_site_roles_are_given_by_a_deployment_admin_and_audited_at_the_site(kit: Kit) -> None:
    _people(kit)
    c = kit.client
    csrf = _login(c, "boss")
    r = c.post("/api/v1/users", headers=csrf, json={
        "username": "north-super", "password": PASSWORD + "!", "sites": {
            "north-yard": ["supervisor"]}})
    assert r.status_code == 201, r.text
    r = c.patch("/api/v1/users/north-super", headers=csrf, json={"sites": {"nowhere": ["admin"]}})
    assert r.status_code == 422 and "nowhere" in r.text
    users = {u["username"]: u for u in c.get("/api/v1/users").json()["users"]}
    assert users["north-super"]["sites"] == {"north-yard": ["supervisor"]}
    assert users["north-super"]["roles"] == []
    north = _services(kit, "north-yard")
    actions = [e.action for e in north.store.audit_entries(limit=1000)]
    assert "user.site-roles" in actions
    south_actions = [e.action for e in _services(kit, "south-quay").store.audit_entries(limit=1000)]
    assert "user.site-roles" not in south_actions
    # Logins and users are deployment-wide: the deployment's own chain, which verifies.
    chain = kit.app.state.deployment_store
    assert chain.site == DEPLOYMENT
    deployment = [(e.action, e.subject) for e in chain.audit_entries(limit=1000)]
    assert ("user.created", "user:north-super") in deployment
    assert ("login.ok", "user:boss") in deployment
    assert "user.created" not in actions and verify_audit(chain).ok


def test_metrics_are_labelled_by_site(kit: Kit) -> None:
    _people(kit)
    c = kit.client
    _login(c, "boss")
    text = c.get("/metrics").text
    assert 'coverwatch_alerts_open{site="north-yard"}' in text
    assert 'coverwatch_alerts_open{site="south-quay"}' in text


def test_a_second_site_leaves_the_first_sites_history_where_it_is(tmp_path: Path) -> None:
    north, south = _sites(tmp_path)
    data = tmp_path / "data"
    with running_server(base_settings(north, data), FakeClock()) as k:
        assert k.app.state.site_unit.store.site == "default"  # single site: as before
        _, token = k.app.state.site_unit.store.create_device("phone-n1", "N1")
    with running_server(base_settings(north, data, more_sites=(south,)), FakeClock()) as k:
        sites = k.app.state.sites
        assert sites["north-yard"].store.site == "default"  # the first site keeps its rows
        assert sites["south-quay"].store.site == "south-quay"
        r = k.client.get("/api/v1/sites/north-yard/cover",
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403  # a device reads nothing; but it is north's device:
        assert [d.site for d in sites["north-yard"].store.list_devices()] == ["default"]
    store = open_store(None, data)
    try:
        assert default_owner(store) == "north-yard"
        assert key_for_site(store, "north-yard") == "default"
        assert key_for_site(store, "south-quay") == "south-quay"
        # The audit chains stay apart and each verifies.
        for key in ("default", "south-quay"):
            assert verify_audit(site_store(store, key)).ok
    finally:
        store.close()


def test_two_sites_with_one_id_are_refused(tmp_path: Path) -> None:
    north, _ = _sites(tmp_path)
    twin = tmp_path / "twin.yaml"
    twin.write_text(north.read_text(encoding="utf-8"), encoding="utf-8")
    from coverwatch.errors import SiteFileError

    with pytest.raises(SiteFileError, match="north-yard"), \
            running_server(base_settings(north, tmp_path / "d", more_sites=(twin,))):
        pass


def test_the_deployment_chain_is_anchored_like_a_sites(tmp_path: Path) -> None:
    import orjson

    from serverkit import wait_until

    north, south = _sites(tmp_path)
    settings = base_settings(north, tmp_path / "data", more_sites=(south,),
                             anchor_every_s=0.1)
    with running_server(settings, FakeClock()) as kit:
        _people(kit)
        _login(kit.client, "boss")  # a deployment-wide action: the deployment's chain
        anchors = tmp_path / "data" / "keys" / "anchors.jsonl"

        def named() -> set[str]:
            if not anchors.exists():
                return set()
            return {orjson.loads(line)["site"] for line in anchors.read_text().splitlines()}

        wait_until(lambda: DEPLOYMENT in named(), what="an anchor of the deployment chain")
    store = open_store(None, tmp_path / "data")
    try:
        from coverwatch.evidence.anchors import verify_anchored

        result = verify_anchored(site_store(store, DEPLOYMENT), anchors,
                                 keyring=store.audit_keyring, trusted=None, site=DEPLOYMENT)
        assert result.ok and result.anchors >= 1, result.findings
    finally:
        store.close()


def test_an_officers_own_pages_need_no_site_name(kit: Kit) -> None:
    south = _services(kit, "south-quay")
    south.store.create_device("phone-s2", "S2")
    kit.app.state.site_unit.store.create_user("S2", PASSWORD, ["officer"])
    c = kit.client
    _login(c, "S2")
    r = c.get("/api/v1/me/duty")  # the site of their device
    assert r.status_code == 200, r.text
    assert r.json()["officer"] == "S2"
    assert c.get("/api/v1/sites/north-yard/me/duty").status_code == 200  # named: as asked
    assert c.get("/api/v1/sites/north-yard/cover").status_code == 403
