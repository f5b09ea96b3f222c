"""Alerts that reach people and say truthfully whether they did, end to end:
real SMTP (aiosmtpd via Apprise mailto://), a real HTTP receiver for json:// and
signed webhooks, and a receiver that refuses (the failure path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from coverwatch.notify.notifier import SIGNATURE_HEADER, verify_signature
from receivers import HttpReceiver, Mailbox, http_receiver, mailbox
from serverkit import Caller, Kit, base_settings, running_server, write_site


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    with mailbox() as box:
        yield box


@pytest.fixture
def web() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


def _kit(tmp_path: Path, escalation: str) -> Any:
    site = write_site(tmp_path, extra=escalation)
    return running_server(base_settings(site, tmp_path / "data", notify_retries=0,
                                        notify_timeout_s=5.0))


def _fix(kit: Kit, officer: str, x: float, y: float) -> dict[str, Any]:
    return {"t": kit.clock.iso(), "kind": "fix", "officer": officer, "x": x, "y": y}


def _raise_lapse(kit: Kit) -> dict[str, Any]:
    """A1 holds the gate, A2 stands 100 m off; A1 walks away; the alert is raised."""
    ingest = kit.api_token("gateway", "ingest")
    r = kit.post_events(ingest, [
        {"t": kit.clock.iso(), "kind": "duty", "officer": "A1", "on": True},
        {"t": kit.clock.iso(), "kind": "duty", "officer": "A2", "on": True},
        _fix(kit, "A1", 0, 0), _fix(kit, "A2", 100, 0)])
    assert r.status_code == 200, r.text
    kit.advance(5)
    kit.post_events(ingest, [_fix(kit, "A1", 200, 0), _fix(kit, "A2", 100, 0)])
    kit.advance(13)  # grace 10 s + lateness 2 s: the alert is raised and level 0 sent
    lapses = [a for a in _alerts(kit) if a["kind"] == "lapse"]
    assert len(lapses) == 1
    return lapses[0]


def _alerts(kit: Kit) -> list[dict[str, Any]]:
    sup = kit.user("watcher", "supervisor")
    r = kit.request(sup, "GET", "/api/v1/alerts")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["alerts"]
    return out


def _alert(kit: Kit, alert_id: str) -> dict[str, Any]:
    sup = kit.user("watcher", "supervisor")
    r = kit.request(sup, "GET", f"/api/v1/alerts/{alert_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _set_contacts(kit: Kit, admin: Caller, user: str, *urls: str) -> None:
    r = kit.request(admin, "PATCH", f"/api/v1/users/{user}", json={"contacts": list(urls)})
    assert r.status_code == 200, r.text


def test_level_reached_by_mail_json_and_signed_webhook_and_the_alert_says_so(
    tmp_path: Path, smtp: Mailbox, web: HttpReceiver
) -> None:
    escalation = f"""escalation:
  - after_s: 0
    notify: [supervisor, "signed+http://{web.base}/hook"]
"""
    with _kit(tmp_path, escalation) as kit:
        admin = kit.user("al", "admin")
        kit.user("sam", "supervisor")
        kit.user("kim", "supervisor")
        _set_contacts(kit, admin, "sam", smtp.url("sam@example.org"))
        _set_contacts(kit, admin, "kim", f"json://{web.base}/kim")
        kit.settle()
        alert = _raise_lapse(kit)
        got = _alert(kit, alert["id"])
        text = orjson.dumps(got).decode()
        assert len(smtp.to("sam@example.org")) == 1
        mail = smtp.to("sam@example.org")[0]
        assert "LAPSE" in str(mail["Subject"])
        assert sorted(web.paths()) == ["/hook", "/kim"]
        for path, body, headers in web.requests:
            if path == "/hook":
                assert verify_signature(b"test-secret", body, headers[SIGNATURE_HEADER])
        [level] = got["notified"]
        assert level["level"] == 0 and level["ok"] is True
        by_person = {d["person"]: d for d in level["deliveries"]}
        assert by_person["sam"]["outcome"] == "delivered"
        assert by_person["sam"]["channel"] == "mailto"
        assert by_person["kim"]["channel"] == "json"
        assert by_person[None]["target"].startswith("signed+http://")
        assert "sam@example.org" not in text  # addresses are shown redacted
        assert got["reached_level"] == 0
        # Who to send: A2, 100 m away in a straight line (the site has no walkways), then A1.
        first, second = got["nearest"]
        assert (first["officer"], first["via"], first["distance_m"]) == \
            ("A2", "straight line", 100.0)
        assert (second["officer"], second["distance_m"]) == ("A1", 200.0)
        actions = [e.action for e in kit.svc.store.audit_entries(0, 1000)
                   if e.subject == f"alert:{alert['id']}"]
        assert actions.count("notification.delivered") == 3
        metrics = kit.request(admin, "GET", "/metrics").text
        assert 'coverwatch_notifications_total{outcome="delivered"} 3.0' in metrics
        assert "coverwatch_ready 1.0" in metrics


def test_level_nobody_could_reach_fails_over_at_once_and_raises_notification_failure(
    tmp_path: Path, smtp: Mailbox, web: HttpReceiver
) -> None:
    escalation = """escalation:
  - after_s: 0
    notify: [user:jo]
  - after_s: 600
    notify: [supervisor]
"""
    with _kit(tmp_path, escalation) as kit:
        admin = kit.user("al", "admin")
        sup = kit.user("sam", "supervisor")
        kit.user("jo", "officer")
        _set_contacts(kit, admin, "jo", f"json://{web.base}/refuse/jo")
        _set_contacts(kit, admin, "sam", smtp.url("sam@example.org"))
        _set_contacts(kit, admin, "al", smtp.url("al@example.org"))
        kit.settle()
        alert = _raise_lapse(kit)
        got = _alert(kit, alert["id"])
        failed, reached = got["notified"]
        assert failed["level"] == 0 and failed["ok"] is False
        assert failed["deliveries"][0]["outcome"] == "failed"
        assert failed["deliveries"][0]["error"]
        # Level 1 at once, not 600 s later.
        assert reached["level"] == 1 and reached["ok"] is True
        assert got["escalated_level"] == 1 and got["reached_level"] == 1
        assert web.paths() == ["/refuse/jo"]
        [failure] = [a for a in _alerts(kit) if a["kind"] == "notification-failure"]
        assert failure["about"] == alert["id"] and failure["state"] == "open"
        assert "level 1" in failure["detail"] and "user:jo" in failure["detail"]
        assert failure["notified"][0]["ok"] is True
        assert any("NOTIFICATION-FAILURE" in str(m["Subject"])
                   for m in smtp.to("al@example.org"))
        # Someone owns the lapse: the failure is settled.
        r = kit.request(sup, "POST", f"/api/v1/alerts/{alert['id']}/acknowledge",
                        json={"note": "on my way"})
        assert r.status_code == 200, r.text
        [failure] = [a for a in _alerts(kit) if a["kind"] == "notification-failure"]
        assert failure["state"] == "resolved"


def test_a_notification_failure_that_reaches_nobody_is_not_raised_again(
    tmp_path: Path, web: HttpReceiver
) -> None:
    escalation = """escalation:
  - after_s: 0
    notify: [user:jo]
"""
    with _kit(tmp_path, escalation) as kit:
        admin = kit.user("al", "admin")
        kit.user("sam", "supervisor")  # no contact
        kit.user("jo", "officer")
        _set_contacts(kit, admin, "jo", f"json://{web.base}/refuse/jo")
        kit.settle()
        alert = _raise_lapse(kit)
        for _ in range(3):
            kit.advance(30)
        got = _alert(kit, alert["id"])
        assert [lv["ok"] for lv in got["notified"]] == [False]
        assert got["reached_level"] is None
        failures = [a for a in _alerts(kit) if a["kind"] == "notification-failure"]
        assert len(failures) == 1
        [level] = failures[0]["notified"]
        assert level["ok"] is False
        assert {d["person"] for d in level["deliveries"]} == {"al", "sam"}


def test_a_target_that_reaches_nobody_raises_a_system_alert_until_it_does(
    tmp_path: Path, smtp: Mailbox
) -> None:
    escalation = """escalation:
  - after_s: 0
    notify: [supervisor]
"""
    with _kit(tmp_path, escalation) as kit:
        [system] = [a for a in _alerts(kit) if a["kind"] == "system"]
        assert system["rule"] == "target:role:supervisor"
        assert "reaches nobody" in system["detail"]
        admin = kit.user("al", "admin")
        kit.user("sam", "supervisor")
        _set_contacts(kit, admin, "sam", smtp.url("sam@example.org"))
        kit.settle()
        states = [a["state"] for a in _alerts(kit) if a["kind"] == "system"]
        assert states == ["resolved"]


def test_dispatch_reaches_the_officer_and_their_duty_page(
    tmp_path: Path, web: HttpReceiver
) -> None:
    with _kit(tmp_path, "") as kit:
        admin = kit.user("al", "admin")
        sup = kit.user("sam", "supervisor")
        a2 = kit.user("A2", "officer")
        _set_contacts(kit, admin, "A2", f"json://{web.base}/a2")
        alert = _raise_lapse(kit)
        assert alert["nearest"][0]["officer"] == "A2"
        path = f"/api/v1/alerts/{alert['id']}/dispatch"
        assert kit.request(sup, "POST", path, json={"officer": "nobody-here"}).status_code == 422
        assert kit.request(sup, "POST", "/api/v1/alerts/lapse-00/dispatch",
                           json={"officer": "A2"}).status_code == 404
        r = kit.request(sup, "POST", path, json={"officer": "A2", "note": "north door"})
        assert r.status_code == 201, r.text
        assert r.json()["message"].startswith("Go to gate now")
        kit.settle()
        assert web.paths() == ["/a2"]
        assert b"north door" in web.requests[0][1]
        got = _alert(kit, alert["id"])
        assert [d["officer"] for d in got["dispatches"]] == ["A2"]
        assert [d["outcome"] for d in got["dispatch_deliveries"]] == ["delivered"]
        mine = kit.request(a2, "GET", "/api/v1/me/dispatches").json()["dispatches"]
        assert [d["post"] for d in mine] == ["gate"] and "north door" in mine[0]["message"]
        actions = [e.action for e in kit.svc.store.audit_entries(0, 1000)
                   if e.subject == f"alert:{alert['id']}"]
        assert actions[-2:] == ["alert.dispatched", "notification.delivered"]
        ingest = kit.api_token("gateway2", "ingest")
        kit.post_events(ingest, [_fix(kit, "A2", 0, 0)])
        kit.advance(5)
        r = kit.request(sup, "POST", path, json={"officer": "A2"})
        assert r.status_code == 409 and "cover is back" in r.text


def test_contacts_are_checked_on_entry_and_listed_redacted(tmp_path: Path) -> None:
    with _kit(tmp_path, "") as kit:
        admin = kit.user("al", "admin")
        r = kit.request(admin, "POST", "/api/v1/users", json={
            "username": "lee", "password": "a long enough password", "roles": ["supervisor"],
            "contacts": ["nosuch://token123/abc"]})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contacts"
        assert "token123" not in r.text
        r = kit.request(admin, "POST", "/api/v1/users", json={
            "username": "lee", "password": "a long enough password", "roles": ["supervisor"],
            "contacts": ["mailto://lee:s3cretpw@mail.example.org?to=lee@example.org"]})
        assert r.status_code == 201, r.text
        r = kit.request(admin, "PATCH", "/api/v1/users/lee",
                        json={"add_contact": "ntfy://ntfy.example.org/lee-alerts-8271"})
        assert r.status_code == 200, r.text
        assert len(r.json()["contacts"]) == 2
        r = kit.request(admin, "PATCH", "/api/v1/users/lee", json={"add_contact": "bogus"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "add_contact"
        listed = kit.request(admin, "GET", "/api/v1/users").text
        assert "s3cretpw" not in listed and "lee@example.org" not in listed
        assert "mailto://***@mail.example.org" in listed
        assert kit.svc.store.contacts_of("lee")[0].startswith("mailto://lee:s3cretpw@")
        audit = orjson.dumps([e.details for e in kit.svc.store.audit_entries(0, 1000)])
        assert b"s3cretpw" not in audit


def test_a_level_the_server_died_sending_is_sent_after_restart_and_only_once(
    tmp_path: Path, web: HttpReceiver
) -> None:
    from sqlalchemy import delete

    from coverwatch.storage.tables import deliveries
    from serverkit import FakeClock

    escalation = f"""escalation:
  - after_s: 0
    notify: ["json://{web.base}/duty-desk"]
"""
    site = write_site(tmp_path, extra=escalation)
    settings = base_settings(site, tmp_path / "data", notify_retries=0, notify_timeout_s=5.0)
    with running_server(settings) as kit:
        alert = _raise_lapse(kit)
        assert web.paths() == ["/duty-desk"]
        # As if the server died after recording the level as due, before the delivery.
        with kit.svc.store.engine.begin() as conn:
            conn.execute(delete(deliveries))
    clock = FakeClock()
    clock.advance(120)
    with running_server(settings, clock) as kit:
        kit.settle()
        assert web.paths() == ["/duty-desk", "/duty-desk"]  # sent again, once
        [level] = _alert(kit, alert["id"])["notified"]
        assert level["level"] == 0 and level["ok"] is True
    with running_server(settings, clock) as kit:
        kit.settle()
        assert web.paths() == ["/duty-desk", "/duty-desk"]  # recorded: never again
