"""The lean OsmAnd path (issue 25): a device seen before is found without a query, and
its token is checked inside the commit that stores its fix. A revoke, a rotation or a new
officer committed by another process takes effect on the very next upload; an SOS still
raises its alert before the reply; the FastAPI route answers the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coverwatch.domain.time import US_PER_S
from coverwatch.storage import Store, open_store
from serverkit import Kit, base_settings, running_server, write_site


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    site = write_site(tmp_path)
    with running_server(base_settings(site, tmp_path / "data")) as k:
        yield k


@pytest.fixture
def other_process(tmp_path: Path, kit: Kit) -> Iterator[Store]:
    """The same database through a store of its own, as the CLI or another process has."""
    store = open_store(None, tmp_path / "data")
    yield store
    store.close()


def _fix(kit: Kit, token: str, *, dt_s: int = 0, **more: str) -> Any:
    t = kit.clock() // US_PER_S + dt_s
    return kit.request(None, "GET", "/osmand", params={
        "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(t), "accuracy": "5",
        **more})


def _fixes(kit: Kit) -> list[dict[str, Any]]:
    return [e for e in kit.svc.store.events_since(0, limit=1000) if e["kind"] == "fix"]


def _tokens(kit: Kit) -> Any:
    from coverwatch.api.osmand_path import OsmAndPath

    app: Any = kit.app.middleware_stack
    while not isinstance(app, OsmAndPath):
        app = app.app
    return app.tokens


def test_a_seen_device_is_found_without_a_lookup(kit: Kit) -> None:
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    assert len(_tokens(kit)) == 1  # kept for the next upload
    calls: list[str] = []
    lookup = kit.svc.store.device_for_token

    def counted(t: str) -> Any:
        calls.append(t)
        return lookup(t)

    kit.svc.store.device_for_token = counted  # type: ignore[method-assign]
    r = _fix(kit, token, dt_s=1)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert calls == []
    assert len(_fixes(kit)) == 2


def test_a_revoke_by_another_process_refuses_the_next_upload(kit: Kit,
                                                             other_process: Store) -> None:
    _, token = kit.device("phone-a1", "A1")
    _, other = kit.device("phone-b1", "B1")
    assert _fix(kit, token).status_code == 200
    assert _fix(kit, other).status_code == 200
    other_process.deactivate_device("phone-a1")  # as `coverwatch devices revoke` does
    r = _fix(kit, token, dt_s=1)
    assert r.status_code == 401, r.text
    assert r.json()["detail"].startswith("unknown device")
    assert _fix(kit, other, dt_s=1).status_code == 200  # the others go on
    assert [e["officer"] for e in _fixes(kit)] == ["A1", "B1", "B1"]
    assert len(_tokens(kit)) == 1  # the revoked one is forgotten


def test_an_empty_upload_from_a_revoked_device_is_refused(kit: Kit,
                                                          other_process: Store) -> None:
    # Nothing to commit means nothing checks the token there: it is looked up instead.
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    other_process.deactivate_device("phone-a1")
    r = kit.request(None, "POST", f"/osmand?id={token}", json=[])
    assert r.status_code == 401, r.text


def test_a_rotated_token_is_refused_and_the_new_one_works(kit: Kit,
                                                          other_process: Store) -> None:
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    new = other_process.rotate_device_token("phone-a1")
    assert _fix(kit, token, dt_s=1).status_code == 401
    r = _fix(kit, new, dt_s=2)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_a_device_given_to_another_officer_reports_for_them(kit: Kit,
                                                            other_process: Store) -> None:
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    other_process.set_device_officer("phone-a1", "B2")
    r = _fix(kit, token, dt_s=1)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert [e["officer"] for e in _fixes(kit)] == ["A1", "B2"]


def test_a_device_without_an_officer_is_refused_each_time(kit: Kit,
                                                          other_process: Store) -> None:
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    other_process.set_device_officer("phone-a1", None)
    assert _fix(kit, token, dt_s=1).status_code == 403
    other_process.set_device_officer("phone-a1", "A1")
    assert _fix(kit, token, dt_s=2).status_code == 200


def test_an_sos_from_a_seen_device_raises_its_alert_before_the_reply(kit: Kit) -> None:
    _, token = kit.device("phone-a1", "A1")
    assert _fix(kit, token).status_code == 200
    r = _fix(kit, token, dt_s=1, alarm="sos")
    assert r.status_code == 200, r.text
    assert [a.kind for a in kit.svc.book.alerts()] == ["sos"]


def test_errors_keep_the_problem_body(kit: Kit) -> None:
    r = kit.request(None, "GET", "/osmand", params={"lat": "51.5"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 401 and body["detail"].startswith("missing id")
    _, token = kit.device("phone-a1", "A1")
    bad = kit.request(None, "POST", f"/osmand?id={token}", content=b"{nope",
                      headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"].startswith(
        "invalid JSON")
    # Another method still reaches the routes (405 with the methods allowed).
    assert kit.request(None, "PUT", "/osmand").status_code == 405


def test_the_route_and_the_lean_path_answer_alike(tmp_path: Path, kit: Kit) -> None:
    from fastapi import FastAPI

    from coverwatch.api.device_routes import router

    _, token = kit.device("phone-a1", "A1")
    lean = _fix(kit, token)
    plain = FastAPI()
    plain.include_router(router)
    plain.state.site_unit = kit.svc
    from fastapi.testclient import TestClient

    with TestClient(plain) as client:  # no lifespan of its own: the kit's unit serves it
        t = kit.clock() // US_PER_S + 1
        routed = client.get("/osmand", params={
            "id": token, "lat": "51.5", "lon": "-0.12", "timestamp": str(t), "accuracy": "5"})
    assert routed.status_code == lean.status_code == 200
    assert routed.json().keys() == lean.json().keys()
    assert routed.json()["readings"][0].keys() == lean.json()["readings"][0].keys()
