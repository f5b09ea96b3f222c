"""Changing a running site's rules: classified, authorised, audited, in force from an instant."""

from __future__ import annotations

from pathlib import Path

from coverwatch.server.unit import SiteUnit
from coverwatch.storage import verify_audit
from serverkit import YARD, FakeClock, base_settings, copy_yard_plan, running_server

S = 1_000_000


def _lowered(text: str) -> str:
    # main-gate armed-cover: need 2 -> need 1 (weakens cover).
    head, tail = text.split("armed-cover", 1)
    return head + "armed-cover" + tail.replace("need: 2", "need: 1", 1)


def _site_copy(tmp_path: Path) -> Path:
    site = tmp_path / "site.yaml"
    site.write_text(YARD.read_text())
    return copy_yard_plan(site)


def test_weakening_needs_the_approver_and_a_reason(tmp_path: Path) -> None:
    site = _site_copy(tmp_path)
    clock = FakeClock()
    with running_server(base_settings(site, tmp_path / "data"), clock) as kit:
        admin = kit.user("boss", "admin")
        approver = kit.user("chief", "approver")
        weaker = _lowered(site.read_text())

        r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": weaker})
        assert r.status_code == 403
        assert "approver" in r.json()["detail"]
        r = kit.request(approver, "POST", "/api/v1/site/apply", json={"site": weaker})
        assert r.status_code == 422
        assert "reason" in r.json()["detail"]
        svc: SiteUnit = kit.svc
        assert svc.site.post("main-gate").rules[0].need == 2  # nothing changed yet

        r = kit.request(approver, "POST", "/api/v1/site/apply",
                        json={"site": weaker,
                              "reason": "Gate B closed for works, written order 17"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["changed"] and body["class"] == "weakening"
        assert body["approval"] == "approver"
        assert any(c["field"] == "need" for c in body["diff"]["changes"])
        assert svc.site.post("main-gate").rules[0].need == 1
        assert site.read_text() == weaker  # a restart keeps the change
        entries = [e for e in svc.store.audit_entries(0, 1000) if e.action == "site.applied"]
        assert len(entries) == 1
        assert entries[0].actor == "chief"
        assert entries[0].details["reason"].startswith("Gate B closed")
        assert entries[0].details["class"] == "weakening"
        assert verify_audit(svc.store).ok


def test_strengthening_needs_an_admin(tmp_path: Path) -> None:
    site = _site_copy(tmp_path)
    weaker = _lowered(site.read_text())
    site.write_text(weaker)
    stronger = YARD.read_text()  # need 1 -> need 2
    with running_server(base_settings(site, tmp_path / "data"), FakeClock()) as kit:
        supervisor = kit.user("sam", "supervisor")
        admin = kit.user("boss", "admin")
        r = kit.request(supervisor, "POST", "/api/v1/site/apply", json={"site": stronger})
        assert r.status_code == 403
        r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": stronger})
        assert r.status_code == 200, r.text
        assert r.json()["class"] == "strengthening"
        r = kit.request(admin, "POST", "/api/v1/site/apply", json={"site": stronger})
        assert r.json()["changed"] is False


def test_invalid_site_is_refused_with_its_problems(tmp_path: Path) -> None:
    site = _site_copy(tmp_path)
    with running_server(base_settings(site, tmp_path / "data"), FakeClock()) as kit:
        admin = kit.user("boss", "admin")
        r = kit.request(admin, "POST", "/api/v1/site/apply",
                        json={"site": site.read_text().replace("within_m: 25", "withn_m: 25")})
        assert r.status_code == 422
        assert "did you mean 'within_m'" in str(r.json()["errors"])


def test_rules_in_force_at_each_moment_survive_a_restart(tmp_path: Path) -> None:
    """Lapses before the change keep the old rule, after it the new one, across a restart."""
    site = _site_copy(tmp_path)
    clock = FakeClock()
    settings = base_settings(site, tmp_path / "data", recovery_s=0)
    with running_server(settings, clock) as kit:
        approver = kit.user("chief", "approver")
        ingest = kit.api_token("ctl", "ingest")
        a1, _ = kit.device("phone-a1", "A1")
        kit.post_events(ingest, [
            {"t": clock.iso(0), "kind": "flag", "flag": "open-hours", "on": True},
            {"t": clock.iso(0), "kind": "duty", "officer": "A1", "on": True,
             "capabilities": ["armed"]},
        ])
        for s in range(0, 40, 5):
            kit.post_events(a1, [{"t": clock.iso(s), "kind": "fix", "x": 1, "y": 1,
                                  "accuracy_m": 3}])
        clock.advance(20)
        kit.tick()
        r = kit.request(approver, "POST", "/api/v1/site/apply",
                        json={"site": _lowered(site.read_text()),
                              "reason": "Temporary single armed post, order 17"})
        assert r.status_code == 200, r.text
        clock.advance(30)
        kit.tick()
        before = kit.request(approver, "GET", "/api/v1/me")  # still logged in
        assert before.status_code == 200
        lapses = [lp for lp in kit.svc.live.lapses() if lp.rule == "armed-cover"]
    # One armed officer against need 2: a lapse from the start, ending when need drops to 1.
    assert len(lapses) == 1
    assert lapses[0].end is not None
    with running_server(settings, clock) as kit2:
        again = [lp for lp in kit2.svc.live.lapses() if lp.rule == "armed-cover"]
    assert again == lapses
