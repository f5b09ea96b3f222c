"""Every kind of record is a leaf of the site's transparency log, appended in the
transaction that stores it (issue 23, deliverable 1): alert transitions, deliveries and
rule versions beside events, device reports and audit entries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.storage import Store
from coverwatch.storage.deliveries import DeliveryRecord
from coverwatch.storage.events import ReportAlert
from coverwatch.storage.tables import tlog_leaves
from coverwatch.storage.tlog import leaf_bytes, record_digest
from coverwatch.storage.versions import VERSIONS_KEY, SiteVersion, load_versions, save_versions

T0 = 1_700_000_000_000_000
S = 1_000_000


def _leaves(store: Store, kind: str) -> list[tuple[str, dict[str, object]]]:
    with store.reading() as conn:
        rows = conn.execute(select(tlog_leaves.c.ref, tlog_leaves.c.leaf).where(
            tlog_leaves.c.site == store.site, tlog_leaves.c.kind == kind)
            .order_by(tlog_leaves.c.idx)).all()
    return [(str(ref), orjson.loads(leaf)) for ref, leaf in rows]


def _alert() -> Alert:
    return Alert(id=alert_id_for("lapse", "gate", "two", T0), kind="lapse", post="gate",
                 rule="two", lapse_start=T0, alert_at=T0 + 60 * S, count=1, need=2)


def test_each_alert_transition_is_a_leaf_naming_the_record_as_saved(store: Store) -> None:
    alert = _alert()
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    alert.acknowledge("sam", "on my way", T0 + 90 * S)
    store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")
    leaves = _leaves(store, "alert")
    assert [ref for ref, _ in leaves] == [alert.id, alert.id]
    saved = store.get_alert_record(alert.id)
    # The last leaf is the record as stored; an examiner recomputes it from the pack.
    expected = hashlib.sha256(orjson.dumps(saved, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert leaves[-1][1] == {"hash": expected, "kind": "alert", "ref": alert.id}
    assert leaves[0][1]["hash"] != expected


def test_a_delivery_is_a_leaf_of_what_packs_carry(store: Store) -> None:
    d = DeliveryRecord("lapse-1", 0, "escalation", "role:sup", "sam", "mailto:s***",
                       True, None, 1, T0)
    store.record_deliveries([d])
    assert _leaves(store, "delivery") == [
        ("lapse-1", {"hash": record_digest(d.to_json()), "kind": "delivery", "ref": "lapse-1"})]


def test_rule_versions_are_logged_once_each_with_the_state(store: Store) -> None:
    one, two = SiteVersion(T0, "site: a\n"), SiteVersion(T0 + S, "site: b\n")
    save_versions(store, [one])
    save_versions(store, [one])  # saved again: not logged again
    save_versions(store, [one, two])
    assert load_versions(store) == [one, two]
    leaves = _leaves(store, "rule-version")
    assert [ref for ref, _ in leaves] == [str(T0), str(T0 + S)]
    assert leaves[1][1]["hash"] == record_digest({"effective_us": two.effective_us,
                                                  "source": two.source})
    # A version replaced under the same time is a new leaf (the log keeps both).
    save_versions(store, [one, SiteVersion(T0 + S, "site: c\n")])
    assert len(_leaves(store, "rule-version")) == 3
    assert leaf_bytes("x", "1", {"hash": "h"}) == b'{"hash":"h","kind":"x","ref":"1"}'


def test_a_record_and_its_leaf_commit_together_or_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import coverwatch.storage.alerts as alerts_module
    import coverwatch.storage.deliveries as deliveries_module
    import coverwatch.storage.versions as versions_module

    def broken(*_a: object, **_k: object) -> int:
        raise RuntimeError("disk full")

    for module in (alerts_module, deliveries_module, versions_module):
        monkeypatch.setattr(module, "append_record_leaf", broken)
    with pytest.raises(RuntimeError):
        store.record_alert_event(_alert().to_record(), actor="engine", action="alert.raised")
    with pytest.raises(RuntimeError):
        store.record_deliveries([DeliveryRecord("a", 0, "escalation", "t", None, None, True,
                                                None, 1, T0)])
    with pytest.raises(RuntimeError):
        save_versions(store, [SiteVersion(T0, "site: a\n")])
    assert store.load_alerts() == [] and store.load_deliveries() == []
    assert load_versions(store) == [] and store.audit_entries() == []


def test_device_reports_and_an_sos_alert_are_leaves_of_one_commit(store: Store) -> None:
    report = {"device": "ph1", "officer": "o1", "t_us": T0, "alarm": "sos", "raw": {"a": 1}}
    sos = Alert(id=alert_id_for("sos", "o1", "sos", T0), kind="sos", post="o1", rule="sos",
                lapse_start=T0, alert_at=T0, count=0, need=1)
    store.append_events([], reports=[report], alerts=[ReportAlert(0, sos.to_record())])
    (_ref, leaf), = _leaves(store, "device-report")
    assert leaf["kind"] == "device-report" and str(leaf["key"]).startswith("ph1|")
    assert [r for r, _ in _leaves(store, "alert")] == [sos.id]


@pytest.mark.parametrize("edit", ["alert", "delivery", "rule-version"])
def test_verify_names_a_record_changed_in_the_database_since_it_was_logged(
    store: Store, tmp_path: Path, edit: str,
) -> None:
    from sqlalchemy import update

    from coverwatch.evidence.keys import load_signing_key
    from coverwatch.evidence.treeheads import head_now, verify_tree_heads
    from coverwatch.storage.tables import alerts, deliveries

    alert = _alert()
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    store.record_deliveries([DeliveryRecord(alert.id, 0, "escalation", "role:sup", "sam",
                                            None, False, "timeout", 1, T0)])
    save_versions(store, [SiteVersion(T0, "site: a\n")])
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    head_now(store, key, "yard", heads)

    def kinds() -> list[str]:
        found = verify_tree_heads(store, heads, trusted=key.trusted, site="yard").findings
        return [f.kind for f in found]

    assert kinds() == []
    with store._write() as conn:
        if edit == "alert":  # the acknowledgement that never was
            record = {**alert.to_record(), "acknowledged_by": "sam"}
            conn.execute(update(alerts).values(record=orjson.dumps(
                record, option=orjson.OPT_SORT_KEYS).decode()))
        elif edit == "delivery":
            conn.execute(update(deliveries).values(outcome="delivered", error=None))
    if edit == "rule-version":
        from coverwatch.storage.versions import VERSIONS_KEY
        store.set_state(VERSIONS_KEY, orjson.dumps(
            [{"effective_us": T0, "source": "site: weakened\n"}]).decode())
    assert kinds() == ["record-mismatch"]


def test_saving_the_same_versions_again_reads_no_leaf_but_unlogged_ones_are_logged(
        store: Store) -> None:
    """A restart saves the versions again: it must not scan the leaves (one per stored
    event, so start-up would grow with history), yet versions stored without their
    leaves (a store from before the log) are still logged."""
    from sqlalchemy import event

    one = SiteVersion(T0, "site: a\n")
    store.set_state(VERSIONS_KEY, orjson.dumps([{"effective_us": T0, "source": "site: a\n"}])
                    .decode())  # as a store from before the log had it
    save_versions(store, [one])
    assert [ref for ref, _ in _leaves(store, "rule-version")] == [str(T0)]
    statements: list[str] = []

    def seen(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        save_versions(store, [one])
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert statements and not any("tlog_leaves" in s for s in statements), statements
    assert len(_leaves(store, "rule-version")) == 1
