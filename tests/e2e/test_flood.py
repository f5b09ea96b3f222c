"""An alarm flood end to end: after a gap every post lapses at once from stale data;
the control room gets one incident and each person one message per level (issue 21:
68 lapse alerts had made 211 notifications)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receivers import HttpReceiver, http_receiver
from serverkit import FakeClock, Kit, base_settings, running_server, wait_until

POSTS = 20


def _site(directory: Path, web: HttpReceiver) -> Path:
    posts = "".join(f"""  - id: p{i:02d}
    name: Post {i:02d}
    at: [{i * 100}, 0]
    rules:
      - id: cover
        need: 1
        within_m: 25
        grace_s: 10
""" for i in range(POSTS))
    text = f"""site: flood-quay
name: Flood Quay (fictional)
stale_after_s: 30
timezone: UTC
posts:
{posts}escalation:
  - after_s: 0
    notify: [supervisor]
  - after_s: 60
    notify: [supervisor]
"""
    path = directory / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def web() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


def _reachable(kit: Kit, admin: Any, name: str, role: str, web: HttpReceiver) -> Any:
    """A user of ``role`` whose contact is the test's web receiver (``/<name>``)."""
    user = kit.user(name, role)
    r = kit.request(admin, "PATCH", f"/api/v1/users/{name}",
                    json={"contacts": [f"json://{web.base}/{name}"]})
    assert r.status_code == 200, r.text
    return user


def _alerts(kit: Kit) -> list[dict[str, Any]]:
    r = kit.request(kit.user("watcher", "supervisor"), "GET", "/api/v1/alerts")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["alerts"]
    return out


def test_outage_makes_one_incident_and_one_message_per_level_per_person(
    tmp_path: Path, web: HttpReceiver
) -> None:
    site = _site(tmp_path, web)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        admin = kit.user("al", "admin")
        _reachable(kit, admin, "sam", "supervisor", web)
        ingest = kit.api_token("gateway", "ingest")
        events = [e for i in range(POSTS) for e in (
            {"t": kit.clock.iso(), "kind": "duty", "officer": f"O{i:02d}", "on": True},
            {"t": kit.clock.iso(), "kind": "fix", "officer": f"O{i:02d}", "x": i * 100, "y": 0})]
        assert kit.post_events(ingest, events).status_code == 200
        kit.advance(1)
        assert [a for a in _alerts(kit) if a["kind"] == "lapse"] == []
        # Nothing arrives for 60 s (the server or the network was out): every fix is stale.
        kit.advance(60)
        lapses = [a for a in _alerts(kit) if a["kind"] == "lapse"]
        assert len(lapses) == POSTS
        incidents = {a["incident"]["id"] for a in lapses}
        assert len(incidents) == 1
        incident = lapses[0]["incident"]
        assert incident["cause"] == "outage" and len(incident["members"]) == POSTS
        assert "stale data" in incident["detail"]
        assert web.paths() == ["/sam"]  # one message for level 1, not 20
        # Every member's card says who was told (the incident's message).
        assert all(a["reached_level"] == 0 for a in lapses)
        kit.advance(61)
        assert web.paths() == ["/sam", "/sam"]  # level 2: once more, for the incident
        assert [a for a in _alerts(kit) if a["kind"] == "notification-failure"] == []
        # One acknowledgement for the whole incident (each member audited as its own).
        sam = kit.user("sam", "supervisor")
        r = kit.request(sam, "GET", "/api/v1/incidents")
        assert [i["id"] for i in r.json()["incidents"]] == [incident["id"]]
        r = kit.request(sam, "POST", f"/api/v1/incidents/{incident['id']}/acknowledge",
                        json={"note": "network outage, checking"})
        assert r.status_code == 200, r.text
        assert len(r.json()["acknowledged"]) == POSTS
        assert all(a["acknowledged_by"] == "sam" for a in _alerts(kit) if a["kind"] == "lapse")
        r = kit.request(sam, "POST", "/api/v1/incidents/incident-nope/acknowledge", json={})
        assert r.status_code == 404


def test_an_incident_is_the_same_after_a_restart(tmp_path: Path, web: HttpReceiver) -> None:
    site = _site(tmp_path, web)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    clock = FakeClock()
    with running_server(settings, clock) as kit:
        admin = kit.user("al", "admin")
        sam = _reachable(kit, admin, "sam", "supervisor", web)
        ingest = kit.api_token("gateway", "ingest")
        assert kit.post_events(ingest, [e for i in range(POSTS) for e in (
            {"t": kit.clock.iso(), "kind": "duty", "officer": f"O{i:02d}", "on": True},
            {"t": kit.clock.iso(), "kind": "fix", "officer": f"O{i:02d}", "x": i * 100,
             "y": 0})]).status_code == 200
        kit.advance(1)
        kit.advance(60)  # an outage: every fix is stale, every post lapses at once
        (before,) = kit.request(sam, "GET", "/api/v1/incidents").json()["incidents"]
        assert before["cause"] == "outage" and len(before["members"]) == POSTS
        members = sorted(before["members"])
        half = members[: POSTS // 2]
        for alert_id in half:
            r = kit.request(sam, "POST", f"/api/v1/alerts/{alert_id}/acknowledge",
                            json={"note": "outage"})
            assert r.status_code == 200, r.text
    clock.advance(1)
    with running_server(settings, clock) as kit:  # a new app on the same database
        sam = kit.user("sam", "supervisor")
        (after,) = kit.request(sam, "GET", "/api/v1/incidents").json()["incidents"]
        assert after == before
        lapses = [a for a in _alerts(kit) if a["kind"] == "lapse"]
        assert sorted(a["id"] for a in lapses) == members
        assert all(a["incident"] == before for a in lapses)
        assert sorted(a["id"] for a in lapses if a["acknowledged_by"] == "sam") == half
        # Still one incident: level 2 (due for the half nobody took) is one message for
        # it, and acknowledging the incident takes that half.
        assert web.paths() == ["/sam"]
        kit.advance(60)
        assert web.paths() == ["/sam", "/sam"]
        r = kit.request(sam, "POST", f"/api/v1/incidents/{before['id']}/acknowledge", json={})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["acknowledged"]) == sorted(set(members) - set(half))


def test_a_shelved_post_is_not_notified_needs_a_reason_and_is_audited(
    tmp_path: Path, web: HttpReceiver
) -> None:
    site = _site(tmp_path, web)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        admin = kit.user("al", "admin")
        sam = _reachable(kit, admin, "sam", "supervisor", web)
        r = kit.request(sam, "POST", "/api/v1/posts/p03/shelve", json={"minutes": 30})
        assert r.status_code == 422, r.text
        r = kit.request(sam, "POST", "/api/v1/posts/p03/shelve",
                        json={"minutes": 30, "reason": ""})
        assert r.status_code == 422, r.text
        r = kit.request(sam, "POST", "/api/v1/posts/nowhere/shelve",
                        json={"minutes": 30, "reason": "works"})
        assert r.status_code == 404, r.text
        r = kit.request(sam, "POST", "/api/v1/posts/p03/shelve",
                        json={"minutes": 30, "reason": "barrier works, post closed"})
        assert r.status_code == 200, r.text
        ingest = kit.api_token("gateway", "ingest")
        t = kit.clock.iso()
        assert kit.post_events(ingest, [
            {"t": t, "kind": "duty", "officer": "O3", "on": True},
            {"t": t, "kind": "fix", "officer": "O3", "x": 300, "y": 0}]).status_code == 200
        kit.advance(5)
        kit.post_events(ingest, [{"t": kit.clock.iso(), "kind": "fix", "officer": "O3",
                                  "x": 900, "y": 500}])
        kit.advance(15)
        shelved = [a for a in _alerts(kit) if a["post"] == "p03"]
        assert len(shelved) == 1 and shelved[0]["shelved"]["by"] == "sam"
        assert shelved[0]["shelved"]["reason"] == "barrier works, post closed"
        # Held: the post is shelved (the other 19 posts, empty, make one incident).
        assert shelved[0]["notified"] == [] and shelved[0]["incident"] is None
        assert all(b"Post 03" not in body for _, body, _ in web.requests)
        assert web.paths() == ["/sam"]
        audit = [e for e in kit.svc.store.audit_entries(0, 1000) if e.action == "alert.shelved"]
        assert [(e.actor, e.subject) for e in audit] == [("sam", "post:p03")]
        # Shelves are stored: a restart keeps them.
        kit.svc.outbox.load()
        assert kit.svc.outbox.shelves.holding("x", "lapse", "p03", kit.clock()) is not None
        r = kit.request(sam, "DELETE", "/api/v1/posts/p03/shelve")
        assert r.status_code == 200, r.text
        assert next(a for a in _alerts(kit) if a["post"] == "p03")["shelved"] is None
        # The shelf delayed the notice, it did not drop it: the post is still lapsed and
        # nobody has taken it, so the level held back goes out now.
        wait_until(lambda: any(b"Post 03" in body for _, body, _ in web.requests),
                   what="the held level of Post 03")
        assert next(a for a in _alerts(kit) if a["post"] == "p03")["notified"]


def test_a_shelf_that_ends_sends_what_it_held_unless_someone_took_the_alert(
    tmp_path: Path, web: HttpReceiver
) -> None:
    site = _site(tmp_path, web)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        admin = kit.user("al", "admin")
        sam = _reachable(kit, admin, "sam", "supervisor", web)
        for post in ("p03", "p04"):
            r = kit.request(sam, "POST", f"/api/v1/posts/{post}/shelve",
                            json={"minutes": 1, "reason": "gate works"})
            assert r.status_code == 200, r.text
        ingest = kit.api_token("gateway", "ingest")
        t = kit.clock.iso()
        events: list[dict[str, Any]] = []
        for officer, x in (("O3", 300), ("O4", 400)):
            events += [{"t": t, "kind": "duty", "officer": officer, "on": True},
                       {"t": t, "kind": "fix", "officer": officer, "x": x, "y": 0}]
        assert kit.post_events(ingest, events).status_code == 200
        kit.advance(5)
        kit.post_events(ingest, [{"t": kit.clock.iso(), "kind": "fix", "officer": o,
                                  "x": 900, "y": 500} for o in ("O3", "O4")])
        kit.advance(15)
        held = {a["post"]: a for a in _alerts(kit) if a["post"] in ("p03", "p04")}
        assert set(held) == {"p03", "p04"} and all(not a["notified"] for a in held.values())
        r = kit.request(sam, "POST", f"/api/v1/alerts/{held['p04']['id']}/acknowledge",
                        json={"note": "known, gate works"})
        assert r.status_code == 200, r.text
        kit.advance(45)  # the shelves end (1 min after they were set)
        wait_until(lambda: any(b"Post 03" in body for _, body, _ in web.requests),
                   what="the held level of Post 03")
        kit.advance(1)
        assert not any(b"Post 04" in body for _, body, _ in web.requests)


def test_an_sos_message_says_where_in_words_and_the_level_as_on_screen(
    tmp_path: Path, web: HttpReceiver
) -> None:
    site = _site(tmp_path, web)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        admin = kit.user("al", "admin")
        _reachable(kit, admin, "sam", "supervisor", web)
        kit.settle()
        phone, _ = kit.device("phone-lea", "lea")
        r = kit.post_events(phone, [
            {"t": kit.clock.iso(), "kind": "duty", "on": True},
            {"t": kit.clock.iso(), "kind": "fix", "x": 512.7, "y": 12.7, "accuracy_m": 12,
             "alarm": "sos"}])
        assert r.status_code == 200, r.text
        wait_until(lambda: len([1 for _, b, _ in web.requests if b"SOS" in b]) == 2,
                   what="both SOS levels sent")
        (sos,) = [a for a in _alerts(kit) if a["kind"] == "sos"]
        assert sos["where"]["text"] == "18 m NE of Post 05 (±12 m, 0 s old)"
        assert sos["where"]["post"] == "p05"
        import json

        bodies = [json.loads(body)["message"].split("\n")[0] for _, body, _ in web.requests
                  if b"SOS" in body]
        # Every level of the SOS policy at once; each says where, levels counted from 1.
        assert sorted(bodies) == [
            f"SOS from officer lea (sent 08:00:00 UTC), 18 m NE of Post 05 (±12 m, 0 s old). "
            f"Level {n}." for n in (1, 2)]


def test_an_sos_told_to_someone_raises_no_notification_failure_for_a_level_that_failed(
    tmp_path: Path, web: HttpReceiver
) -> None:
    site = _site(tmp_path, web)
    text = site.read_text("utf-8").replace(
        "  - after_s: 60\n    notify: [supervisor]\n",
        "  - after_s: 60\n    notify: [user:jo]\n")
    site.write_text(text, "utf-8")
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        admin = kit.user("al", "admin")
        _reachable(kit, admin, "sam", "supervisor", web)
        kit.user("jo", "officer")
        kit.request(admin, "PATCH", "/api/v1/users/jo",
                    json={"contacts": [f"signed+http://{web.base}/refuse/jo"]})
        kit.settle()
        phone, _ = kit.device("phone-lea", "lea")
        assert kit.post_events(phone, [{"t": kit.clock.iso(), "kind": "fix", "x": 0, "y": 0,
                                        "alarm": "sos"}]).status_code == 200

        def sos() -> dict[str, Any]:
            kit.settle()
            return next(a for a in _alerts(kit) if a["kind"] == "sos")

        # The SOS's levels are sent in the background: wait for both receipts.
        wait_until(lambda: len(sos()["notified"]) == 2, what="both levels' receipts")
        levels = {lv["level"]: lv for lv in sos()["notified"]}
        assert levels[0]["ok"] is True and levels[1]["ok"] is False
        assert levels[1]["deliveries"][0]["outcome"] == "rejected"  # HTTP 403, told apart
        assert [a for a in _alerts(kit) if a["kind"] == "notification-failure"] == []
