"""A shift of thousands of officers coming on duty at once does no per-officer queries
(issue 25): the SQL statements the server runs while N officers come on duty (by the
roster, by a supervisor's batch, or by their devices reporting in their shifts), are
found unbriefed, and go off duty again, do not grow with N (counted with a SQLAlchemy
event listener), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event

from conftest import Database
from coverwatch.server.briefing import Briefing
from coverwatch.storage import Store
from serverkit import YARD, Kit, base_settings, copy_yard_plan, running_server

SHIFT_S = 20
# A list of bound parameters (an IN list of officers): one statement however long.
_PARAMS = re.compile(r"\((?:\?|%\(\w+\)s|%s)(?:, (?:\?|%\(\w+\)s|%s))*\)")


def _kit(migrated: Database, tmp_path: Path, extra: str = "") -> Iterator[Kit]:
    site = tmp_path / "site.yaml"
    site.write_text(YARD.read_text("utf-8") + extra, "utf-8")
    copy_yard_plan(site)
    # No anchoring in the background: the counts are the shift's.
    settings = base_settings(site, migrated.data_dir, db_url=migrated.url, anchor_every_s=0)
    with running_server(settings) as k:
        _briefing(k).step_s = 3600.0  # stepped by hand: no background step in the count
        k.call(_briefing(k).step)  # whatever the first step does, before counting
        yield k


@pytest.fixture
def kit(migrated: Database, tmp_path: Path) -> Iterator[Kit]:
    yield from _kit(migrated, tmp_path)


@pytest.fixture
def device_kit(migrated: Database, tmp_path: Path) -> Iterator[Kit]:
    yield from _kit(migrated, tmp_path, "duty_from_devices: true\n")


def _briefing(kit: Kit) -> Briefing:
    b: Briefing = kit.svc.briefing
    return b


def _statements(kit: Kit, run: Callable[[], Any]) -> Counter[str]:
    """The SQL statements run while ``run()`` runs, by their text (numbers dropped)."""
    seen: Counter[str] = Counter()

    def note(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen[_PARAMS.sub("(...)", " ".join(sql.split()))] += 1

    engine = kit.svc.store.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def _roster(kit: Kit, officers: list[str]) -> None:
    sup = kit.user("sup", "supervisor")
    csv = "officer,post,start,end\n" + "".join(
        f"{o},service-gate,{kit.clock.iso(1)},{kit.clock.iso(SHIFT_S)}\n" for o in officers)
    r = kit.request(sup, "POST", "/api/v1/roster", content=csv,
                    headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text


def _unbriefed(kit: Kit, prefix: str) -> dict[str, str]:
    return {a.rule: a.state.value for a in kit.svc.book.alerts()
            if a.kind == "unbriefed" and a.rule.startswith(f"orders:{prefix}")}


def _same(few: Counter[str], many: Counter[str]) -> None:
    """No statement runs more often for 40 officers than for 3 (give or take the odd
    background write, such as a live checkpoint: a per-officer query would add 37)."""
    grew = {sql: (few[sql], many[sql]) for sql in few.keys() | many.keys()
            if many[sql] > few[sql] + 2}
    assert not grew, "\n".join(f"{a} -> {b}: {sql[:160]}" for sql, (a, b) in grew.items())


def _shift_by_roster(kit: Kit, prefix: str, n: int) -> Counter[str]:
    officers = [f"{prefix}{i}" for i in range(n)]
    _roster(kit, officers)
    b = _briefing(kit)

    def shift() -> None:
        kit.clock.advance(1)
        kit.call(b.step)  # the roster puts them all on duty
        kit.advance(5)  # the horizon passes it
        kit.call(b.step)  # none has acknowledged the orders: unbriefed
        assert sorted(_unbriefed(kit, prefix)) == sorted(f"orders:{o}" for o in officers)
        kit.clock.advance(SHIFT_S - 6)
        kit.call(b.step)  # the roster takes them off
        kit.advance(5)
        kit.call(b.step)  # the alerts resolve
        assert set(_unbriefed(kit, prefix).values()) == {"resolved"}

    return _statements(kit, shift)


def test_a_rostered_shift_of_many_coming_on_and_off_duty(kit: Kit) -> None:
    few = _shift_by_roster(kit, "A", 3)
    many = _shift_by_roster(kit, "B", 40)
    _same(few, many)


def _shift_by_batch(kit: Kit, prefix: str, n: int) -> Counter[str]:
    sup = kit.api_token(f"load-{prefix}", "ingest")
    b = _briefing(kit)

    def duty(on: bool) -> None:
        r = kit.post_events(sup, [{"t": kit.clock.iso(), "kind": "duty", "officer": f"{prefix}{i}",
                                   "on": on} for i in range(n)])
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == n
        kit.advance(5)
        kit.call(b.step)

    def shift() -> None:
        duty(True)
        assert len(kit.svc.shown.officers()) >= n
        duty(False)

    return _statements(kit, shift)


def test_a_batch_putting_many_on_and_off_duty(kit: Kit) -> None:
    few = _shift_by_batch(kit, "A", 3)
    many = _shift_by_batch(kit, "B", 40)
    _same(few, many)


def _shift_by_devices(kit: Kit, prefix: str, n: int) -> Counter[str]:
    officers = [f"{prefix}{i}" for i in range(n)]
    _roster(kit, officers)
    b = _briefing(kit)

    def shift() -> None:
        kit.advance(2)
        fixes = [{"kind": "fix", "officer": o, "t_us": kit.clock(), "device": f"phone-{o}",
                  "x": 0.0, "y": 0.0} for o in officers]
        kit.call(b.duty_from_devices, fixes + fixes)  # each device's fix, twice
        kit.advance(5)
        kit.call(b.step)

    seen = _statements(kit, shift)
    duty = [r for r in kit.svc.store.events_since(0) if r["kind"] == "duty"
            and r["officer"].startswith(prefix)]
    assert sorted((r["officer"], r["on"], r["source"], r["device"]) for r in duty) == sorted(
        (o, True, "device-in-shift", f"phone-{o}") for o in officers)
    return seen


def test_a_shift_of_many_devices_reporting_in(device_kit: Kit) -> None:
    few = _shift_by_devices(device_kit, "A", 3)
    many = _shift_by_devices(device_kit, "B", 40)
    _same(few, many)


def test_the_batched_duty_questions_answer_as_one_by_one(store: Store) -> None:
    """duty_since_many and last_duty_events agree with duty_since and last_duty_event on
    random duty histories (on, off, unknown, late, late and applied, ties in time)."""
    rnd = random.Random(25)
    rows = []
    for i in range(400):
        t = rnd.randrange(0, 40) * 1_000_000
        late = rnd.random() < 0.2
        rows.append({"kind": "duty", "t_us": t, "officer": f"O{rnd.randrange(12)}",
                     "on": rnd.choice([True, True, False, None]), "source": "test",
                     "late": late, "device": f"d{i}",
                     "applied_us": t + rnd.randrange(1, 9) * 1_000_000
                     if late and rnd.random() < 0.5 else None})
    store.append_events(rows)
    officers = [f"O{i}" for i in range(14)]
    for until in (0, 5_000_000, 17_000_000, 30_000_000, 60_000_000):
        one_by_one = {o: s for o in officers
                      if (s := store.duty_since(o, until)) is not None}
        assert store.duty_since_many(officers, until) == one_by_one
        untils = {o: until + k * 1_000_000 for k, o in enumerate(officers)}
        last = {o: e for o, u in untils.items()
                if (e := store.last_duty_event(o, u)) is not None}
        assert store.last_duty_events(untils) == last


def test_alerts_stored_together_are_audited_and_logged_as_one_by_one(store: Store) -> None:
    """record_alert_events: per change an audit entry, its leaf and the record's leaf, in
    order and chained, as record_alert_event writes them (a raise and a resolve of one
    alert in the same call included)."""
    from sqlalchemy import select

    from coverwatch.domain.alerts import Alert, alert_id_for
    from coverwatch.domain.merkle import leaf_hash
    from coverwatch.storage.audit import verify_audit
    from coverwatch.storage.tables import alerts, tlog_leaves
    from coverwatch.storage.tlog import record_digest

    t0 = 1_700_000_000_000_000

    def alert(rule: str) -> Alert:
        return Alert(id=alert_id_for("unbriefed", "gate", rule, t0), kind="unbriefed",
                     post="gate", rule=rule, lapse_start=t0, alert_at=t0, count=0, need=1)

    first = alert("orders:A")
    store.record_alert_event(first.to_record(), actor="briefing", action="alert.raised")
    b, c = alert("orders:B"), alert("orders:C")
    raised = [(b.to_record(), "alert.raised"), (c.to_record(), "alert.raised")]
    c.resolve(t0 + 5)
    changes = [*raised, (c.to_record(), "alert.resolved")]
    entries = store.record_alert_events(changes, actor="briefing")
    assert [(e.action, e.subject) for e in entries] == [
        ("alert.raised", f"alert:{b.id}"), ("alert.raised", f"alert:{c.id}"),
        ("alert.resolved", f"alert:{c.id}")]
    assert verify_audit(store).ok
    with store.reading() as conn:
        leaves = conn.execute(select(tlog_leaves).where(tlog_leaves.c.site == store.site)
                              .order_by(tlog_leaves.c.idx)).all()
        states = dict(conn.execute(select(alerts.c.id, alerts.c.state).where(
            alerts.c.site == store.site)).all())
    assert [r.idx for r in leaves] == list(range(len(leaves)))
    assert all(r.hash == leaf_hash(r.leaf.encode()).hex() for r in leaves)
    tail = [(r.kind, r.ref) for r in leaves[-6:]]
    assert tail == [("audit", str(entries[0].id)), ("alert", b.id),
                    ("audit", str(entries[1].id)), ("alert", c.id),
                    ("audit", str(entries[2].id)), ("alert", c.id)]
    assert orjson.loads(leaves[-1].leaf)["hash"] == record_digest(c.to_record())
    assert orjson.loads(leaves[-6].leaf)["hash"] == entries[0].hash
    assert states == {first.id: "open", b.id: "open", c.id: "resolved"}
