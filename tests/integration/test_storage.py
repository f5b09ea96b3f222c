"""The live store against real SQLite and PostgreSQL: idempotent event append,
durability, migrations, alert records, server state, credentials and the audit chain."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from tamperkit import as_owner

from coverwatch.domain.alerts import Alert, AlertState, alert_id_for
from coverwatch.errors import StoreError
from coverwatch.storage import (
    TOKEN_ROLES,
    AuditHead,
    DuplicateNameError,
    InvalidAlertRecordError,
    InvalidEventError,
    InvalidRolesError,
    NotFoundError,
    Store,
    audit_head,
    csrf_matches,
    head_revision,
    open_store,
    record_login,
    record_site_reload,
    verify_audit,
)
from coverwatch.storage.audit import entry_hash
from coverwatch.storage.base import normalise_url
from coverwatch.storage.store import event_digest, event_key
from coverwatch.storage.tables import api_tokens, audit, devices, metadata, users

if TYPE_CHECKING:
    from conftest import Database

T0 = 1_700_000_000_000_000  # an event time in microseconds
S = 1_000_000

# Cheap argon2 parameters keep the tests quick; the hash is still argon2id.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def fix(officer: str, t_us: int, x: float = 1.0, y: float = 2.0, **extra: object) -> dict:
    return {
        "kind": "fix", "officer": officer, "t_us": t_us, "x": x, "y": y, "accuracy": 5.0,
        "source": "http", **extra,
    }  # fmt: skip


def history(officer: str, n: int, start: int = 0) -> list[dict]:
    return [fix(officer, T0 + (start + i) * S, x=float(start + i)) for i in range(n)]


# -- migrations and connection settings ----------------------------------------


def test_fresh_sqlite_migrates_itself_on_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = open_store(None, data_dir)
    try:
        assert (data_dir / "coverwatch.db").exists()
        assert store.schema_revision() == head_revision()
        names = set(inspect(store.engine).get_table_names())
        assert {
            "events", "users", "devices", "api_tokens", "sessions", "alerts", "server_state",
            "audit",
        } <= names  # fmt: skip
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        store.close()


def test_migrated_schema_matches_table_definitions(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_unmigrated_database_is_refused_without_migrate(database: Database) -> None:
    with pytest.raises(StoreError, match="coverwatch db upgrade"):
        open_store(database.url, database.data_dir, migrate=False)


def test_reopening_a_migrated_database_is_a_no_op(migrated: Database) -> None:
    first = migrated.open()
    first.append_events(history("A1", 3))
    first.close()
    again = open_store(migrated.url, migrated.data_dir, migrate=True)
    try:
        assert again.count_events() == 3
        assert again.schema_revision() == head_revision()
    finally:
        again.close()


def test_postgresql_urls_use_psycopg_3() -> None:
    assert normalise_url("postgresql://u@db:5432/cw").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@db/cw").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@db/cw").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:////tmp/x.db").drivername == "sqlite"


# -- events ------------------------------------------------------------------------


def test_resent_history_is_not_stored_twice(store: Store) -> None:
    first = store.append_events(history("A1", 10))
    assert (first.inserted, first.duplicates) == (10, 0)
    assert len(first.ids) == 10 and first.ids == sorted(first.ids)

    # The device re-sends its last 4 fixes along with 3 new ones.
    again = store.append_events(history("A1", 7, start=6))
    assert (again.inserted, again.duplicates) == (3, 4)
    assert len(again.ids) == 3 and min(again.ids) > max(first.ids)

    assert store.count_events() == 13
    stored = store.events_since(0, limit=100)
    assert [e["t_us"] for e in stored] == [T0 + i * S for i in range(13)]


def test_duplicates_inside_one_batch_are_counted(store: Store) -> None:
    rows = [fix("A1", T0), fix("A1", T0), fix("B2", T0)]
    result = store.append_events(rows)
    assert (result.inserted, result.duplicates) == (2, 1)


def test_two_different_fixes_of_one_officer_at_one_time_are_both_kept(store: Store) -> None:
    # A phone and a radio of the same officer, the same second: neither is a duplicate,
    # and they keep the order they were committed in (their ids).
    phone = fix("A1", T0, x=300.0, device="phone")
    radio = fix("A1", T0, x=1.0, device="radio")
    result = store.append_events([phone, radio])
    assert (result.inserted, result.duplicates) == (2, 0)
    assert [e["x"] for e in store.events_since(0)] == [300.0, 1.0]
    # The same fix from the same device again is the same event.
    assert store.append_events([radio]).duplicates == 1
    # ...and from another device, or with other content, it is not.
    assert store.append_events([{**radio, "device": "phone"}]).inserted == 1
    assert store.append_events([{**radio, "x": 1.5}]).inserted == 1


def test_append_returns_the_stored_input_rows_in_id_order(store: Store) -> None:
    store.append_events([fix("A1", T0)])
    batch = [
        fix("B2", T0, x=1.0),
        fix("A1", T0),  # already stored
        fix("C3", T0, x=3.0),
        fix("B2", T0, x=1.0),  # repeats the first row of this batch
        {"kind": "gate", "post": "north", "t_us": T0, "open": True, "source": "mqtt",
         "late": True},
    ]  # fmt: skip
    originals = [dict(r) for r in batch]
    result = store.append_events(batch)

    assert (result.inserted, result.duplicates) == (3, 2)
    assert [r["id"] for r in result.rows] == result.ids == sorted(result.ids)
    assert [{k: v for k, v in r.items() if k != "id"} for r in result.rows] == [
        originals[0], originals[2], originals[4],
    ]  # fmt: skip
    assert batch == originals  # the caller's dicts are copied, not changed
    by_id = {e["id"]: e for e in store.events_since(0)}
    assert [(by_id[r["id"]]["kind"], by_id[r["id"]]["x"]) for r in result.rows] == [
        ("fix", 1.0), ("fix", 3.0), ("gate", None),
    ]  # fmt: skip


def test_append_maps_rows_back_across_chunks(store: Store) -> None:
    # More rows than one SQLite statement takes, with repeats spread through the batch.
    rows = history("A1", 1200)
    batch = rows + rows[::7] + history("B2", 300)
    result = store.append_events(batch)
    assert (result.inserted, result.duplicates) == (1500, len(rows[::7]))
    assert [(r["officer"], r["t_us"], r["x"]) for r in result.rows] == [
        (r["officer"], r["t_us"], r["x"]) for r in rows + history("B2", 300)
    ]
    stored = {e["id"]: (e["officer"], e["t_us"]) for e in store.events_since(0, limit=5000)}
    assert {r["id"]: (r["officer"], r["t_us"]) for r in result.rows} == stored


def test_a_late_state_event_keeps_when_it_was_applied_live(store: Store) -> None:
    """Issue 19: the horizon a late duty/gate/flag event took effect at is stored with it
    (single process: at append; distributed: when the owner marks it late)."""
    gate = {"kind": "gate", "post": "north", "t_us": T0, "open": True, "source": "http",
            "late": True, "applied_us": T0 + 5 * S}
    store.append_events([gate, fix("A1", T0 + S),
                         {**gate, "post": "south", "late": False, "applied_us": None}])
    rows = {(e["kind"], e["post"]): e for e in store.events_since(0)}
    assert rows[("gate", "north")]["applied_us"] == T0 + 5 * S
    assert rows[("gate", "south")]["applied_us"] is None
    fix_key, south_key = rows[("fix", None)]["key"], rows[("gate", "south")]["key"]
    assert store.mark_late([fix_key, south_key], {south_key: T0 + 9 * S}) == 2
    rows = {(e["kind"], e["post"]): e for e in store.events_since(0)}
    assert (rows[("gate", "south")]["late"], rows[("gate", "south")]["applied_us"]) == (
        True, T0 + 9 * S)
    assert (rows[("fix", None)]["late"], rows[("fix", None)]["applied_us"]) == (True, None)


def test_events_since_can_skip_late_events(store: Store) -> None:
    store.append_events(
        [fix("A1", T0), fix("A1", T0 + S, late=True), fix("A1", T0 + 2 * S, late=False)]
    )
    store.append_events(
        [{"kind": "duty", "officer": "A1", "t_us": T0, "on": True, "capabilities": ["armed"],
          "source": "http"}]
    )  # fmt: skip
    every = store.events_since(0)
    on_time = store.events_since(0, include_late=False)
    assert [e["late"] for e in every] == [False, True, False, False]
    assert [e["id"] for e in on_time] == [every[i]["id"] for i in (0, 2, 3)]
    assert store.events_since(every[0]["id"], limit=1, include_late=False) == [every[2]]
    needed = {"id", "kind", "t_us", "officer", "x", "y", "accuracy", "post", "flag", "on",
              "open", "capabilities", "late"}  # fmt: skip
    assert all(needed <= e.keys() for e in on_time)
    assert on_time[-1]["capabilities"] == "armed"


def test_identity_depends_on_kind_and_its_subject(store: Store) -> None:
    rows = [
        fix("A1", T0),
        {"kind": "duty", "officer": "A1", "t_us": T0, "on": True,
         "capabilities": ["armed", "first-aid"], "source": "http"},
        {"kind": "gate", "post": "north", "t_us": T0, "open": True, "source": "mqtt"},
        {"kind": "gate", "post": "south", "t_us": T0, "open": False, "source": "mqtt"},
        {"kind": "flag", "flag": "storm", "t_us": T0, "on": True, "source": "http"},
    ]  # fmt: skip
    assert store.append_events(rows).inserted == 5
    assert store.append_events(rows).duplicates == 5
    by_key = {e["key"].rsplit("|", 2)[0]: e for e in store.events_since(0)}
    assert set(by_key) == {
        f"fix|A1|{T0}", f"duty|A1|{T0}", f"gate|north|{T0}", f"gate|south|{T0}",
        f"flag|storm|{T0}",
    }  # fmt: skip
    duty = by_key[f"duty|A1|{T0}"]
    assert duty["on"] is True and duty["capabilities"] == "armed,first-aid"
    assert by_key[f"gate|south|{T0}"]["open"] is False
    assert duty["key"] == event_key("duty", "A1", T0, None, event_digest(rows[1]))


def test_event_fields_round_trip(store: Store) -> None:
    raw = {"lat": 51.5, "lon": -0.12, "batt": 88, "tags": ["a", "b"], "text": "tab\tnl\n\\ é"}
    store.append_events(
        [fix("A1", T0, device="phone-7", received_us=T0 + 5, late=True, raw=raw, source="osmand")]
    )
    (event,) = store.events_since(0)
    assert event["device"] == "phone-7"
    assert event["source"] == "osmand"
    assert event["received_us"] == T0 + 5
    assert event["late"] is True
    assert event["raw"] == raw
    assert (event["x"], event["y"], event["accuracy"]) == (1.0, 2.0, 5.0)


@pytest.mark.parametrize(
    "row",
    [
        {"kind": "teleport", "officer": "A1", "t_us": T0, "source": "http"},
        {"kind": "fix", "t_us": T0, "x": 1.0, "y": 1.0, "source": "http"},
        {"kind": "fix", "officer": "A1", "t_us": 1.5, "source": "http"},
        {"kind": "gate", "officer": "A1", "t_us": T0, "open": True, "source": "http"},
        {"kind": "fix", "officer": "A1", "t_us": T0},
    ],
)
def test_invalid_event_rows_are_refused_whole(store: Store, row: dict) -> None:
    with pytest.raises(InvalidEventError):
        store.append_events([fix("B2", T0), row])
    assert store.count_events() == 0


def test_a_failed_append_stores_nothing_and_the_store_recovers(store: Store) -> None:
    with pytest.raises(StoreError, match="could not store 2 events"):
        store.append_events([fix("A1", T0), fix("A1", T0 + S, x=object())])
    assert store.count_events() == 0
    assert store.append_events(history("A1", 3)).inserted == 3
    assert store.count_events() == 3


def test_events_since_pages_in_id_order(store: Store) -> None:
    store.append_events(history("A1", 5))
    store.append_events(history("B2", 5))
    first = store.events_since(0, limit=4)
    rest = store.events_since(first[-1]["id"], limit=100)
    ids = [e["id"] for e in first + rest]
    assert ids == sorted(ids) and len(ids) == 10
    assert store.max_event_id() == ids[-1]
    assert store.events_since(ids[-1]) == []


def test_events_between_orders_by_time_then_id(store: Store) -> None:
    # Stored out of time order, as late fixes arrive.
    store.append_events([fix("A1", T0 + 3 * S), fix("B2", T0 + 1 * S)])
    store.append_events([fix("C3", T0 + 1 * S), fix("A1", T0 + 2 * S), fix("A1", T0 + 9 * S)])
    got = store.events_between(T0 + 1 * S, T0 + 9 * S)
    assert [(e["t_us"], e["officer"]) for e in got] == [
        (T0 + 1 * S, "B2"), (T0 + 1 * S, "C3"), (T0 + 2 * S, "A1"), (T0 + 3 * S, "A1"),
    ]  # fmt: skip


def test_empty_store_and_empty_append(store: Store) -> None:
    assert store.max_event_id() == 0
    assert store.count_events() == 0
    result = store.append_events([])
    assert (result.inserted, result.duplicates, result.ids, result.rows) == (0, 0, [], [])


def test_events_are_durable_across_close_and_reopen(migrated: Database) -> None:
    first = migrated.open()
    result = first.append_events(history("A1", 50))
    first.close()

    reopened = migrated.open()
    try:
        assert reopened.count_events() == 50
        assert reopened.max_event_id() == max(result.ids)
        assert reopened.append_events(history("A1", 50)).duplicates == 50
        later = reopened.append_events([fix("A1", T0 + 1000 * S)])
        assert later.ids[0] > max(result.ids)
    finally:
        reopened.close()


# -- alerts ------------------------------------------------------------------------


def raised(post: str = "north-gate", rule: str = "two-armed", lapse_start: int = T0,
           alert_at: int = T0 + 60 * S, kind: str = "lapse") -> Alert:  # fmt: skip
    """A freshly raised domain alert."""
    return Alert(
        id=alert_id_for(kind, post, rule, lapse_start), kind=kind, post=post, rule=rule,
        lapse_start=lapse_start, alert_at=alert_at, count=1, need=2,
    )  # fmt: skip


def test_alert_record_round_trips_through_the_domain(store: Store) -> None:
    alert = raised()
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    alert.acknowledge("sam", "on my way", T0 + 90 * S)
    alert.resolve(T0 + 200 * S)
    store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")

    stored = store.get_alert_record(alert.id)
    assert stored == alert.to_record()
    assert stored is not None and Alert.from_record(stored) == alert
    assert [Alert.from_record(r) for r in store.load_alerts()] == [alert]
    assert store.get_alert_record("lapse-0000000000000000") is None


def test_recording_the_same_alert_again_keeps_one_row(store: Store) -> None:
    alert = raised()
    for _ in range(3):  # a restarted server re-derives and re-saves the same alert
        store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    alert.escalated_level = 1
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.escalated.1")
    assert store.load_alerts() == [alert.to_record()]
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT id, state, lapse_start_us FROM alerts")).one()
    assert tuple(row) == (alert.id, "open", T0)


def test_each_alert_event_is_a_chained_audit_entry(store: Store) -> None:
    store.append_audit("admin", "site.loaded", "site:yard")
    alert = raised()
    first = store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    alert.acknowledge("sam", "on it", T0 + 90 * S)
    second = store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")

    entries = store.audit_entries()
    assert entries[1:] == [first, second]
    assert (second.actor, second.action, second.subject) == (
        "sam", "alert.acknowledged", f"alert:{alert.id}",
    )  # fmt: skip
    assert second.details == alert.to_record()
    assert second.prev_hash == first.hash and first.prev_hash == entries[0].hash
    assert verify_audit(store).ok


def test_load_alerts_orders_by_alert_time_then_id(store: Store) -> None:
    late = raised("south", alert_at=T0 + 90 * S)
    early = raised("north", alert_at=T0 + 10 * S)
    also_early = raised("east", kind="unbriefed", alert_at=T0 + 10 * S)
    for a in (late, early, also_early):
        store.record_alert_event(a.to_record(), actor="engine", action="alert.raised")
    expected = [*sorted([early, also_early], key=lambda a: a.id), late]
    assert [r["id"] for r in store.load_alerts()] == [a.id for a in expected]


@pytest.mark.parametrize(
    "change",
    [
        {"state": "snoozed"},  # not a state of the domain's lifecycle
        {"state": "closed"},  # closed without closer, resolution or acknowledgement
        {"id": "lapse-0123456789abcdef"},  # not the id of the record's key
        {"lapse_start": "soon"},
    ],
)
def test_bad_alert_records_are_refused_and_nothing_is_written(store: Store, change: dict) -> None:
    record = raised().to_record() | change
    with pytest.raises(InvalidAlertRecordError):
        store.record_alert_event(record, actor="engine", action="alert.raised")
    assert store.load_alerts() == []
    assert store.audit_entries() == []


def test_a_refused_audit_entry_leaves_the_alert_unsaved(store: Store) -> None:
    alert = raised()
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    _, token = store.create_device("phone-7", "A1")
    alert.acknowledge("sam", token, T0 + 90 * S)  # a token pasted into the note
    with pytest.raises(StoreError, match="token"):
        store.record_alert_event(alert.to_record(), actor="sam", action="alert.acknowledged")
    stored = store.get_alert_record(alert.id)
    assert stored is not None and stored["state"] == "open"
    assert len(store.audit_entries()) == 1


def test_raw_sql_does_not_bypass_alert_uniqueness(store: Store) -> None:
    alert = raised()
    store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alerts (id, kind, post, rule, lapse_start_us, alert_at_us, state,"
                " record, updated_us)"
                " VALUES ('other', 'lapse', 'north-gate', 'two-armed', :t, :t, 'open', '{}', :t)"
            ),
            {"t": T0},
        )


def test_alert_states_are_the_domains(store: Store) -> None:
    alert = raised()
    alert.resolve(T0 + 70 * S)
    alert.close("lee", "relief arrived", T0 + 80 * S)
    store.record_alert_event(alert.to_record(), actor="lee", action="alert.closed")
    (record,) = store.load_alerts()
    assert Alert.from_record(record).state is AlertState.CLOSED


# -- server state --------------------------------------------------------------------


def test_server_state_is_upserted_and_durable(migrated: Database) -> None:
    first = migrated.open()
    assert first.get_state("horizon") is None
    first.set_state("horizon", "1")
    first.set_state("horizon", str(T0))
    first.set_state("other", "x")
    first.close()
    again = migrated.open()
    try:
        assert again.get_state("horizon") == str(T0)
        assert again.get_state("other") == "x"
    finally:
        again.close()


# -- users, devices, tokens, sessions -------------------------------------------------------


def test_passwords_are_stored_as_argon2_and_verified(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    user = store.create_user("sam", "correct horse", ["supervisor", "officer"])
    assert user.roles == {"supervisor", "officer"} and user.active
    with store.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored

    assert store.verify_password("sam", "correct horse") == user
    assert store.verify_password("sam", "wrong") is None
    assert store.verify_password("nobody", "correct horse") is None


def test_password_is_rehashed_when_parameters_change(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    store.create_user("sam", "correct horse", ["officer"])
    with store.engine.connect() as conn:
        old = conn.execute(select(users.c.password_hash)).scalar_one()
    store.password_hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    assert store.verify_password("sam", "correct horse") is not None
    with store.engine.connect() as conn:
        new = conn.execute(select(users.c.password_hash)).scalar_one()
    assert new != old and "t=2" in new
    assert store.verify_password("sam", "correct horse") is not None


def test_user_roles_deactivation_and_duplicates(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    store.create_user("sam", "pw-1", ["officer"])
    with pytest.raises(DuplicateNameError):
        store.create_user("sam", "pw-2", ["admin"])
    with pytest.raises(InvalidRolesError):
        store.create_user("kim", "pw", ["root"])
    assert store.set_roles("sam", ["auditor"]).roles == {"auditor"}
    assert store.deactivate_user("sam").active is False
    assert store.verify_password("sam", "pw-1") is None
    with pytest.raises(NotFoundError, match="no user") as info:
        store.set_roles("ghost", ["officer"])
    assert isinstance(info.value, LookupError)


def test_ingest_is_a_token_only_role(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    assert "ingest" in TOKEN_ROLES
    gate, _ = store.create_api_token("gate-sensors", ["ingest"])
    assert gate.roles == {"ingest"}
    with pytest.raises(InvalidRolesError, match="token-only role"):
        store.create_user("kim", "pw", ["officer", "ingest"])
    assert store.get_user("kim") is None
    store.create_user("sam", "pw", ["officer"])
    with pytest.raises(InvalidRolesError, match="token-only role"):
        store.set_roles("sam", ["ingest"])
    user = store.get_user("sam")
    assert user is not None and user.roles == {"officer"}
    with pytest.raises(InvalidRolesError, match="unknown role"):
        store.create_api_token("bridge", ["root"])


def test_notification_urls_resolve_roles_and_users(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    store.create_user("sam", "pw", ["supervisor"])
    store.set_contacts("sam", ["mailto://sam@example.org"])
    store.create_user("lee", "pw", ["supervisor", "admin"])
    store.create_user("kim", "pw", ["officer"])
    store.set_contacts("kim", ["json://kim.example.org/hook"])
    store.create_user("ann", "pw", ["supervisor"])
    store.set_contacts("ann", ["signed+https://ann.example/h"])
    assert store.notification_urls("role:supervisor") == [
        "signed+https://ann.example/h", "mailto://sam@example.org",
    ]  # fmt: skip
    assert [(r.person, r.urls) for r in store.reach("role:supervisor")] == [
        ("ann", ("signed+https://ann.example/h",)), ("lee", ()),
        ("sam", ("mailto://sam@example.org",)),
    ]  # fmt: skip
    assert store.contacts_of("lee") == []
    assert store.add_contact("lee", "slack://T/B/C") == ["slack://T/B/C"]
    assert store.add_contact("lee", "ntfy://topic") == ["slack://T/B/C", "ntfy://topic"]
    assert store.add_contact("lee", "ntfy://topic") == ["slack://T/B/C", "ntfy://topic"]
    store.deactivate_user("ann")
    assert store.notification_urls("role:supervisor") == [
        "slack://T/B/C", "ntfy://topic", "mailto://sam@example.org",
    ]  # fmt: skip
    assert store.notification_urls("user:kim") == ["json://kim.example.org/hook"]
    assert store.notification_urls("user:ann") == []  # deactivated
    assert store.notification_urls("user:ghost") == []
    assert store.notification_urls("role:auditor") == []
    assert store.notification_urls("mailto://x@example.org") == []
    assert store.notification_urls("role:") == []
    assert store.set_contacts("kim", []) == []
    assert store.notification_urls("user:kim") == []
    assert store.contacts_by_user() == {"ann": ["signed+https://ann.example/h"],
                                        "lee": ["slack://T/B/C", "ntfy://topic"],
                                        "sam": ["mailto://sam@example.org"]}
    with pytest.raises(NotFoundError):
        store.set_contacts("ghost", ["mailto://g@example.org"])


def test_deliveries_and_dispatches_are_stored_and_audited(store: Store) -> None:
    from coverwatch.storage import DeliveryRecord

    store.record_deliveries([
        DeliveryRecord("lapse-1", 0, "escalation", "role:supervisor", "sam",
                       "mailto://***@example.org", True, None, 1, 10),
        DeliveryRecord("lapse-1", 0, "escalation", "user:jo", None, None, False,
                       "no contact", 0, 11),
        DeliveryRecord("lapse-2", 1, "escalation", "role:admin", "al", "json://h/x", True,
                       None, 1, 12),
    ])
    got = store.load_deliveries(["lapse-1"])
    assert [(d.target, d.ok, d.error) for d in got] == [
        ("role:supervisor", True, None), ("user:jo", False, "no contact")]
    assert len(store.load_deliveries()) == 3
    sent = store.record_dispatch("lapse-1", "A7", "gate", "Go to Gate", "sam", 20)
    assert sent["officer"] == "A7"
    assert [d["message"] for d in store.dispatches_for_officer("A7")] == ["Go to Gate"]
    assert store.dispatches_for_officer("A7", since_us=21) == []
    assert [d["officer"] for d in store.dispatches_for("lapse-1")] == ["A7"]
    actions = [(e.action, e.subject) for e in store.audit_entries(0, 100)]
    assert actions == [
        ("notification.delivered", "alert:lapse-1"), ("notification.failed", "alert:lapse-1"),
        ("notification.delivered", "alert:lapse-2"), ("alert.dispatched", "alert:lapse-1"),
    ]
    assert verify_audit(store).ok


def test_device_token_is_shown_once_and_stored_hashed(store: Store) -> None:
    device, token = store.create_device("phone-7", "A1")
    assert device.officer == "A1" and len(token) >= 40
    with store.engine.connect() as conn:
        stored = conn.execute(select(devices.c.token_hash)).scalar_one()
    assert stored == hashlib.sha256(token.encode()).hexdigest() and token not in stored

    assert store.device_for_token(token) == device
    assert store.device_for_token(token + "x") is None
    with pytest.raises(DuplicateNameError):
        store.create_device("phone-7", "B2")

    new_token = store.rotate_device_token("phone-7")
    assert store.device_for_token(token) is None
    assert store.device_for_token(new_token) is not None
    store.deactivate_device("phone-7")
    assert store.device_for_token(new_token) is None


def test_api_token_lookup_and_revocation(store: Store) -> None:
    api, token = store.create_api_token("bridge", ["officer"])
    assert store.api_token_for(token) == api and api.roles == {"officer"}
    with store.engine.connect() as conn:
        assert token not in conn.execute(select(api_tokens.c.token_hash)).scalar_one()
    store.revoke_api_token("bridge")
    assert store.api_token_for(token) is None


def test_sessions_expire_and_end(store: Store) -> None:
    store.password_hasher = FAST_HASHER
    user = store.create_user("sam", "pw", ["supervisor"])
    new = store.create_session(user.id, now_us=T0, ttl_us=3600 * S)
    info = store.session_for(new.token, now_us=T0 + 10 * S)
    assert info is not None and info.user.username == "sam"
    assert csrf_matches(info.csrf_token, new.csrf_token)
    assert not csrf_matches(info.csrf_token, new.csrf_token + "x")
    assert not csrf_matches(info.csrf_token, None)
    assert store.session_for(new.token, now_us=T0 + 3600 * S) is None  # expired
    assert store.session_for("cws_forged", now_us=T0) is None

    assert store.delete_session(new.token)
    assert store.session_for(new.token, now_us=T0 + 10 * S) is None

    other = store.create_session(user.id, now_us=T0, ttl_us=3600 * S)
    store.deactivate_user("sam")
    assert store.session_for(other.token, now_us=T0 + 1) is None

    store.create_session(user.id, now_us=T0, ttl_us=S)
    assert store.delete_expired_sessions(now_us=T0 + 2 * S) == 1


# -- audit ---------------------------------------------------------------------------


def _fill_audit(store: Store, n: int) -> None:
    for i in range(n):
        store.append_audit("sam", "alert.acknowledged", f"alert:{i}", {"note": f"n{i}", "i": i})


def test_audit_chain_verifies(store: Store) -> None:
    assert verify_audit(store).ok  # empty chain
    _fill_audit(store, 5)
    result = verify_audit(store)
    assert (result.ok, result.entries, result.first_bad_id) == (True, 5, None)
    entries = store.audit_entries()
    assert entries[0].prev_hash == "0" * 64
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]


def test_edited_audit_entry_is_detected_with_its_id(store: Store) -> None:
    _fill_audit(store, 6)
    with as_owner(store) as conn:
        conn.execute(update(audit).where(audit.c.id == 4).values(actor="mallory"))
    result = verify_audit(store)
    assert not result.ok and result.first_bad_id == 4 and "edited" in result.reason


def test_edited_and_rehashed_entry_breaks_the_next_link(store: Store) -> None:
    _fill_audit(store, 6)
    # The forger edits entry 3 and recomputes its hash, but cannot touch entry 4's link.
    (e3,) = store.audit_entries(after_id=2, limit=1)
    forged = entry_hash(e3.id, e3.at, "mallory", e3.action, e3.subject, e3.details, e3.prev_hash)
    with as_owner(store) as conn:
        conn.execute(update(audit).where(audit.c.id == 3).values(actor="mallory", hash=forged))
    result = verify_audit(store)
    assert not result.ok and result.first_bad_id == 4 and "prev_hash" in result.reason


def test_deleted_audit_entry_is_detected(store: Store) -> None:
    _fill_audit(store, 6)
    with as_owner(store) as conn:
        conn.execute(audit.delete().where(audit.c.id == 3))
    result = verify_audit(store)
    assert not result.ok and result.first_bad_id == 4 and "3 missing" in result.reason


def test_deleted_and_renumbered_entry_is_detected(store: Store) -> None:
    _fill_audit(store, 6)
    with as_owner(store) as conn:
        conn.execute(audit.delete().where(audit.c.id == 3))
        for i in (4, 5, 6):
            conn.execute(update(audit).where(audit.c.id == i).values(id=i - 1))
    result = verify_audit(store)
    assert not result.ok and result.first_bad_id == 3


def test_truncated_audit_tail_is_detected_against_a_head(store: Store) -> None:
    _fill_audit(store, 6)
    head = audit_head(store)
    assert head == AuditHead(6, store.audit_entries(after_id=5)[0].hash)
    with as_owner(store) as conn:
        conn.execute(audit.delete().where(audit.c.id >= 5))
    assert verify_audit(store).ok  # a shorter chain is self-consistent...
    result = verify_audit(store, expect_head=head)
    assert not result.ok and "tail" in result.reason  # ...but not against the recorded head


def test_audit_refuses_secrets(store: Store) -> None:
    with pytest.raises(StoreError, match="secret"):
        store.append_audit("sam", "user.create", "user:kim", {"password": "hunter2"})
    with pytest.raises(StoreError, match="secret"):
        store.append_audit("sam", "device.create", "device:x", {"extra": {"api_token": "a"}})
    _, token = store.create_device("phone-7", "A1")
    with pytest.raises(StoreError, match="token"):
        store.append_audit("sam", "device.create", "device:phone-7", {"note": token})
    assert store.audit_entries() == []


def test_concurrent_audit_appends_do_not_fork_the_chain(store: Store, second_store: Store) -> None:
    # Two stores = two engines, so only the database lock keeps the chain straight.
    errors: list[BaseException] = []

    def worker(s: Store, name: str) -> None:
        try:
            for i in range(15):
                s.append_audit(name, "site.reload", "site:yard", {"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(s, f"w{k}"))
        for k, s in enumerate([store, second_store, store, second_store])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = verify_audit(store)
    assert (result.ok, result.entries) == (True, 60)


def test_record_helpers_write_the_expected_actions(store: Store) -> None:
    record_login(store, "sam", True, remote="127.0.0.1")
    record_login(store, "sam", False, reason="bad password")
    record_site_reload(store, "admin", "yard", True, {"sha256": "ab" * 32})
    store.record_login_attempt("kim", False, "10.0.0.9")
    store.audit_change("admin", "user.created", "kim", {"roles": ["officer"]})
    got = [(e.actor, e.action, e.subject, e.details) for e in store.audit_entries()]
    assert got == [
        ("sam", "login.ok", "user:sam", {"remote": "127.0.0.1"}),
        ("sam", "login.failed", "user:sam", {"reason": "bad password"}),
        ("admin", "site.reload", "site:yard", {"sha256": "ab" * 32}),
        ("kim", "login.failed", "user:kim", {"remote": "10.0.0.9"}),
        ("admin", "user.created", "kim", {"roles": ["officer"]}),
    ]  # fmt: skip
    assert verify_audit(store).ok


def test_audit_entry_as_dict_is_json_friendly(store: Store) -> None:
    entry = store.audit_change("admin", "device.created", "phone-7", {"officer": "A1"})
    as_dict = entry.as_dict()
    assert as_dict == {
        "id": 1, "at": entry.at, "actor": "admin", "action": "device.created",
        "subject": "phone-7", "details": {"officer": "A1"}, "prev_hash": "0" * 64,
        "hash": entry.hash, "mac": entry.mac,
    }  # fmt: skip
    assert entry.mac is not None and entry.mac.startswith("k")  # sealed by the store's key
    assert orjson.loads(orjson.dumps(as_dict)) == as_dict
    assert store.audit_entries()[0].as_dict() == as_dict


def test_audit_survives_reopen(migrated: Database) -> None:
    first = migrated.open()
    _fill_audit(first, 3)
    first.close()
    again = migrated.open()
    try:
        again.append_audit("sam", "logout", "user:sam")
        result = verify_audit(again)
        assert (result.ok, result.entries) == (True, 4)
    finally:
        again.close()


def test_a_supervisor_of_this_site_only_is_reached_by_the_role(store: Store) -> None:
    """``role:supervisor`` reaches a site-only supervisor here, never one of another site."""
    store.password_hasher = FAST_HASHER
    store.create_user("here", "pw", [], site_roles_only=True)
    store.set_site_roles("here", store.site, ["supervisor"])
    store.set_contacts("here", ["mailto://here@example.org"])
    store.create_user("there", "pw", [], site_roles_only=True)
    store.set_site_roles("there", "elsewhere", ["supervisor"])
    store.set_contacts("there", ["mailto://there@example.org"])
    store.create_user("both", "pw", ["supervisor"])
    assert [r.person for r in store.reach("role:supervisor")] == ["both", "here"]
    assert store.notification_urls("role:supervisor") == ["mailto://here@example.org"]
    assert store.reach("role:admin") == []
