"""Pages about one site in a deployment of several: opened without ``?site=`` they go to
the user's only site or ask which (they used to load empty, show raw 404 text, or say
"Could not start: 404"); and the board counts alerts to act on as the control room does
(it said "Alerts open 0" beside "2 needing action") and sorts what needs a person first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coverwatch.domain.alerts import Alert, AlertState
from serverkit import PASSWORD, FakeClock, Kit, base_settings, running_server, write_site


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    (tmp_path / "a").mkdir()
    (tmp_path / "z").mkdir()
    first = write_site(tmp_path / "a", "a-yard")
    second = write_site(tmp_path / "z", "z-quay")
    with running_server(base_settings(first, tmp_path / "data", more_sites=(second,)),
                        FakeClock()) as k:
        store = k.app.state.site_unit.store
        store.create_user("control", PASSWORD, ["supervisor"])
        store.create_user("boss", PASSWORD, ["admin"])
        store.create_user("z-super", PASSWORD, [], site_roles_only=True)
        store.set_site_roles("z-super", k.app.state.sites["z-quay"].store.site, ["supervisor"])
        yield k


def _login(kit: Kit, user: str) -> None:
    r = kit.client.post("/api/v1/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("user", "path", "goes_to"), [
    ("control", "/control", "/sites?page=/control"),
    ("control", "/planning", "/sites?page=/planning"),
    ("boss", "/audit", "/sites?page=/audit"),
    ("boss", "/people", "/sites?page=/people"),
    ("z-super", "/control", "/control?site=z-quay"),  # their only site
    ("z-super", "/planning", "/planning?site=z-quay"),
])
def test_a_page_opened_without_a_site_chooses_or_asks(kit: Kit, user: str, path: str,
                                                      goes_to: str) -> None:
    _login(kit, user)
    r = kit.client.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == goes_to
    named = kit.client.get(f"{path}?site=z-quay", follow_redirects=False)
    assert named.status_code == 200


def test_the_board_counts_alerts_to_act_on_like_the_control_room(kit: Kit) -> None:
    # Resolved before anyone acknowledged it: the control room lists it to act on (close).
    book = kit.app.state.sites["z-quay"].book
    book._alerts["x"] = Alert("x", "lapse", "gate", "cover", 1, 2, 0, 1,
                              state=AlertState.RESOLVED, resolved_at=3)
    _login(kit, "control")
    board = kit.client.get("/api/v1/sites").json()["sites"]
    assert [s["id"] for s in board] == ["z-quay", "a-yard"]  # what needs a person first
    quay = board[0]
    assert quay["alerts_to_act_on"] == 1 and quay["alerts_open"] == 0
    assert quay["alerts_resolved_unacknowledged"] == 1  # shown apart from open ones
    assert board[1]["alerts_to_act_on"] == 0


def test_the_board_names_lapsed_posts(tmp_path: Path) -> None:
    """The board listed lapsed posts by id ("gate"); it has their names, ids as detail."""
    site = write_site(tmp_path, "a-yard")
    named = site.read_text().replace("  - id: gate\n", "  - id: gate\n    name: Main Gate\n")
    site.write_text(named)
    with running_server(base_settings(site, tmp_path / "data"), FakeClock()) as k:
        k.svc.store.create_user("control", PASSWORD, ["supervisor"])
        _, token = k.svc.store.create_device("phone-a1", "A1")
        far = [{"t": k.clock.iso(), "kind": "fix", "x": 500.0, "y": 0.0, "accuracy_m": 5}]
        r = k.client.post("/api/v1/events", json=far, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        k.advance(60)  # nobody at the gate: lapsed after its 10 s grace
        _login(k, "control")
        (board,) = k.client.get("/api/v1/sites").json()["sites"]
        assert board["posts_lapsed"] == ["gate"], board
        assert board["post_names"] == {"gate": "Main Gate"}
        script = k.client.get("/static/js/sites.js").text
    assert "post_names" in script and "posts_lapsed.join" not in script
