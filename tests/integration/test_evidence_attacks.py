"""The examination's attack table (issue 23), re-walked as a whole.

``ATTACKS`` lists every attack of the issue (its opening bullets and deliverable 7) with
the tests that run it and assert it is detected and named: most live beside the feature
they test and are only pointed to here (``test_the_table_points_at_tests_that_exist``
keeps the pointers true); the ones no test ran before are below: positions edited in the
database before export, a re-signed pack altering the roster or the orders or thinning
them, or removing ``deliveries.json``, and an alert opened before the audit segment
dropped from a pack (``test_evidence_open_alerts``).
"""

from __future__ import annotations

import importlib
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from alertkit import raise_alerts
from tamperkit import as_owner
from test_evidence_segment import _resigned

from coverwatch.domain.briefing import Shift
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence import standalone
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack, verify_pack
from coverwatch.evidence.standalone import check_pack
from coverwatch.storage import DeliveryRecord, Store, open_store
from coverwatch.storage.briefing import OrdersVersion
from coverwatch.storage.tables import events
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_800_000_000 * US_PER_S
H = 3600 * US_PER_S

# attack -> the tests (module::function) that run it and assert it is named.
ATTACKS: dict[str, list[str]] = {
    "site id changed so that verify skips the anchors of 'another site'": [
        "test_audit_anchors::test_changed_site_id_does_not_hide_a_wiped_log",
        "test_audit_anchors::test_anchors_of_another_site_are_named_not_silently_skipped",
        "test_transparency_log::test_cli_verify_refuses_without_heads_and_names_heads_it_does_not_check",
    ],
    "the anchor file's or heads file's last line deleted, an old one replayed": [
        "test_transparency_log::test_a_deleted_head_is_named",
        "test_transparency_log::test_a_removed_newest_head_is_named",
        "test_transparency_log::test_a_replayed_head_is_named",
        "test_transparency_log::test_cli_anchor_makes_a_head_and_verify_names_a_lost_one",
        "test_audit_anchors::test_edited_anchor_is_named",
    ],
    "a forged append or a recomputed tail after the last anchor or head": [
        "test_audit_anchors::test_recomputed_chain_is_named",
        "test_audit_anchors::test_forged_append_after_the_last_anchor_is_named",
        "test_unsealed_heads::test_a_head_over_an_entry_whose_mac_fails_is_refused",
        "test_transparency_log::test_a_rewritten_log_is_named_even_with_leaf_hashes_recomputed",
        "test_evidence_segment::test_a_later_entry_rewritten_with_its_tail_is_named",
    ],
    "a wiped or truncated log, and verify without heads": [
        "test_audit_anchors::test_wiped_log_is_named",
        "test_audit_anchors::test_truncated_tail_is_named",
        "test_transparency_log::test_a_truncated_log_is_named",
        "test_transparency_log::test_a_wiped_audit_table_is_one_finding_naming_the_count",
        "test_audit_anchors::test_verify_refuses_to_call_an_unanchored_log_sound",
    ],
    "whoever runs the server rewrites the chain and re-signs (caught by witnesses, TSA)": [
        "test_standalone_verifier::test_a_rewritten_tree_head_fails_its_consistency_and_the_witnesses",
        "test_head_timestamps::test_a_head_time_stamped_by_an_authority_verifies",
    ],
    "positions edited in the database before export": [
        "test_evidence_attacks::test_positions_edited_in_the_database_before_export_are_named",
        "test_standalone_verifier::test_each_tamper_is_caught_and_named",
    ],
    "alerts, deliveries or rule versions edited in the database": [
        "test_tlog_records::test_verify_names_a_record_changed_in_the_database_since_it_was_logged",
    ],
    "back-dated flag events posted through the API (no audit entry), alerts not cross-checked": [
        "test_evidence_pack::test_lapse_alerts_removed_or_back_dated_flags_are_named",
    ],
    "a re-signed pack replacing the PDF": [
        "test_evidence_pack::test_the_pdf_is_rendered_from_the_pack_and_a_replaced_one_is_named",
    ],
    "a re-signed pack dropping audit entries (middle, start, end)": [
        "test_standalone_verifier::test_each_tamper_is_caught_and_named",
        "test_evidence_segment::test_a_re_signed_pack_without_the_acknowledgement_is_named",
        "test_evidence_segment::test_a_segment_cut_at_its_start_names_the_raising",
        "test_evidence_segment::test_a_segment_cut_at_its_end_is_named",
        "test_evidence_segment::test_a_segment_cut_at_its_start_is_named",
    ],
    "a re-signed pack altering or thinning the roster, orders or acknowledgements": [
        "test_evidence_attacks::test_a_re_signed_pack_altering_the_roster_or_orders_is_named",
    ],
    "a re-signed pack altering notes (an alert's acknowledgement or close note)": [
        "test_evidence_attacks::test_a_re_signed_pack_altering_a_note_is_named",
    ],
    "a re-signed pack removing lapse alerts, or an alert opened before its segment": [
        "test_evidence_pack::test_lapse_alerts_removed_or_back_dated_flags_are_named",
        "test_evidence_open_alerts::test_an_early_sos_dropped_from_a_re_signed_pack_is_named",
    ],
    "a re-signed pack removing deliveries.json": [
        "test_evidence_attacks::test_a_re_signed_pack_without_deliveries_is_named",
    ],
    "purged history inventing lapses": [
        "test_evidence_pack::test_purged_history_invents_no_lapse_and_is_named",
        "test_evidence_pack::test_purge_inside_a_window_cuts_lapses_at_its_edge",
    ],
    "replay --pack re-deriving the lapses from the pack's own events, versions, state": [
        "test_standalone_verifier::test_replay_pack_re_derives_the_reports_lapses",
    ],
    "the audit segment chosen by wall clock (historic data has none)": [
        "test_evidence_segment::test_a_pack_over_historic_data_carries_the_entries_about_it",
    ],
    "files readable by others; the audit and log tables writable on PostgreSQL": [
        "test_private_files::test_data_keys_and_anchor_files_are_private",
        "test_append_only::test_postgresql_refuses_changes_to_audit_log_and_purges",
        "test_append_only::test_a_server_role_without_delete_purges_only_through_the_function",
    ],
}


def test_the_table_points_at_tests_that_exist() -> None:
    for attack, tests in ATTACKS.items():
        assert tests, attack
        for ref in tests:
            module, _, name = ref.partition("::")
            assert callable(getattr(importlib.import_module(module), name, None)), \
                f"{attack}: {ref} is not a test"


# -- the attacks no test ran before ----------------------------------------------------


def _fill(store: Store) -> list[SiteVersion]:
    rng = random.Random(5)
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    rows: list[dict[str, Any]] = [
        {"kind": "duty", "t_us": T0, "officer": f"O{i}", "on": True,
         "capabilities": "armed" if i % 2 else "", "source": "test"} for i in range(4)]
    rows += [{"kind": "flag", "t_us": T0, "flag": "open-hours", "on": True, "source": "test"}]
    rows += [{"kind": "fix", "t_us": T0 + rng.randrange(0, 3 * 3600) * US_PER_S,
              "officer": f"O{rng.randrange(4)}", "x": rng.uniform(-60, 60),
              "y": rng.uniform(-60, 60), "accuracy": 5.0, "source": "test"}
             for _ in range(300)]
    store.append_events(rows)
    raise_alerts(store, versions, T0 + 3 * H)
    store.add_shifts([Shift(0, f"O{i}", T0 + i * H, T0 + (i + 2) * H, post="main-gate")
                      for i in range(3)], actor="ann")
    store.record_orders_versions([OrdersVersion("main-gate", "v1", T0, "Stay at the gate.",
                                                None)], actor="ann")
    store.record_acknowledgement("O1", "main-gate", "v1", at_us=T0 + H // 2, via="device")
    store.record_acknowledgement("O2", "main-gate", "v1", at_us=T0 + H, via="device")
    return versions


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Any]:
    store = open_store(None, tmp_path / "data")
    versions = _fill(store)
    alert = next(a for a in store.load_alerts() if T0 + H <= a["alert_at"] <= T0 + 2 * H)
    store.record_deliveries([DeliveryRecord(alert["id"], 0, "escalation", "role:supervisor",
                                            "sam", "mailto://sam@example.org", True, None, 1,
                                            T0 + 2 * H)])
    key = tmp_path / "data" / "keys" / "audit.key"
    data = export_pack(store, versions, load_signing_key(key), site="yard",
                       since=T0 + H, until=T0 + 2 * H)
    yield {"data": data, "key": key, "store": store, "versions": versions,
           "alert": alert["id"]}
    store.close()


def _both(data: bytes, key: Path) -> list[list[str]]:
    trusted = load_signing_key(key).trusted
    return [verify_pack(data, trusted).problems, check_pack(data, trusted).problems]


def test_the_honest_pack_verifies_with_its_roster_and_orders_proved(
    made: dict[str, Any],
) -> None:
    trusted = load_signing_key(made["key"]).trusted
    for check in (verify_pack(made["data"], trusted), check_pack(made["data"], trusted)):
        assert check.ok, check.problems
        assert any(n.startswith("roster.json (2 shift(s)) and orders.json (1 version(s), "
                                "2 acknowledgement(s)) are the tree head's record")
                   for n in check.notes), check.notes


def _json_edit(member: str, change: Callable[[Any], Any]) -> Callable[[dict[str, bytes]], None]:
    def edit(files: dict[str, bytes]) -> None:
        files[member] = orjson.dumps(change(orjson.loads(files[member])))
    return edit


def _set(rows: list[dict[str, Any]], **values: Any) -> list[dict[str, Any]]:
    return [{**rows[0], **values}, *rows[1:]]


@pytest.mark.parametrize(("edit", "named"), [
    (_json_edit("roster.json", lambda r: _set(r, officer="O9")),
     "roster.json: carries shift {\"end\""),
    (_json_edit("roster.json", lambda r: r[1:]), "roster.json: lacks shift"),
    (_json_edit("orders.json", lambda o: {**o, "versions": [
        {**o["versions"][0], "text": "A short patrol of the yard."}]}),
     "orders.json: carries orders version"),
    (_json_edit("orders.json", lambda o: {**o, "acknowledgements": o["acknowledgements"][:1]}),
     "orders.json: lacks acknowledgement"),
    # The insider edits the signed record too: its digest no longer matches the head's.
    (lambda files: [_json_edit(m, lambda r: _set(r, officer="O9"))(files)
                    for m in ("roster.json",)] and _json_edit(
        "briefing.json", lambda b: {**b, "roster": _set(b["roster"], officer="O9")})(files),
     "briefing.json: is not the roster and orders record the tree head signs"),
])
def test_a_re_signed_pack_altering_the_roster_or_orders_is_named(
    made: dict[str, Any], edit: Callable[[dict[str, bytes]], None], named: str,
) -> None:
    bad = _resigned(made["data"], made["key"], edit)
    for problems in _both(bad, made["key"]):
        assert any(p.startswith(named) for p in problems), problems


def test_a_re_signed_pack_altering_a_note_is_named(made: dict[str, Any]) -> None:
    # Notes are in the alert records, which their leaves prove.
    def edit(files: dict[str, bytes]) -> None:
        alerts = orjson.loads(files["alerts.json"])
        alerts[0]["acknowledgement_note"] = "all fine, officer on post"
        files["alerts.json"] = orjson.dumps(alerts)

    for problems in _both(_resigned(made["data"], made["key"], edit), made["key"]):
        assert any(p.startswith("alerts.json: alert 1 (") and "inclusion proof fails" in p
                   for p in problems), problems


def test_a_re_signed_pack_without_deliveries_is_named(made: dict[str, Any]) -> None:
    def without(files: dict[str, bytes]) -> None:
        del files["deliveries.json"]
        proofs = orjson.loads(files["proofs.json"])
        proofs.pop("deliveries")
        files["proofs.json"] = orjson.dumps(proofs)

    def emptied(files: dict[str, bytes]) -> None:
        files["deliveries.json"] = b"[]"
        proofs = orjson.loads(files["proofs.json"])
        proofs["deliveries"] = {}
        files["proofs.json"] = orjson.dumps(proofs)

    for edit, named in ((without, "deliveries.json: missing"),
                        (emptied, "deliveries.json: audit entry")):
        for problems in _both(_resigned(made["data"], made["key"], edit), made["key"]):
            assert any(p.startswith(named) and ("records a delivery that is missing" in p
                                                or edit is without)
                       for p in problems), (named, problems)


def test_positions_edited_in_the_database_before_export_are_named(
    made: dict[str, Any],
) -> None:
    """An insider moves positions in the database (170 fixes in the examination), then
    exports: each moved fix says other than its key, or (key recomputed too) is not the
    event its leaf logged."""
    store, key = made["store"], made["key"]
    with store.reading() as conn:
        fixes = [dict(r._mapping) for r in conn.execute(events.select().where(
            events.c.kind == "fix", events.c.t_us >= T0 + H, events.c.t_us <= T0 + 2 * H))]
    moved, rekeyed = fixes[:5], fixes[5:10]
    with as_owner(store) as conn:
        for r in moved:  # the position changed, the stored key left
            conn.execute(events.update().where(events.c.id == r["id"]).values(x=r["x"] + 40))
        for r in rekeyed:  # and the key made to agree with the new position
            row = {**{k: v for k, v in r.items() if v is not None}, "x": r["x"] + 40}
            conn.execute(events.update().where(events.c.id == r["id"]).values(
                x=row["x"], key=standalone.event_key(row)))
    data = export_pack(store, made["versions"], load_signing_key(key), site="yard",
                       since=T0 + H, until=T0 + 2 * H)
    for problems in _both(data, key):
        text = "\n".join(problems)
        assert f"events.jsonl: event {moved[0]['id']} says other than its stored key" in text
        assert "is not in the log as leaf" in text  # the re-keyed ones: their leaves differ


def test_a_pack_members_list_is_complete(made: dict[str, Any]) -> None:
    names = set(zipfile.ZipFile(io.BytesIO(made["data"])).namelist())
    assert {"open-alerts.json", "briefing.json", "deliveries.json", "roster.json",
            "orders.json"} <= names
    assert format_time(T0)  # the window's times are ISO 8601
