"""An alert raised before a pack's audit segment, still open in its window and never changed
since, has no entry in the segment: the pack's tree head signs the open alerts
(``open_alerts``) and the pack carries them (``open-alerts.json``), so an insider who
re-signs the pack without it is named by both verifiers (issue 23)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from alertkit import raise_alerts
from test_evidence_segment import _resigned

from coverwatch.clock import wall_clock_us
from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack, verify_pack
from coverwatch.evidence.standalone import check_pack
from coverwatch.storage import audit as audit_module
from coverwatch.storage import open_store
from coverwatch.storage.versions import SiteVersion, save_versions

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
H = 3600 * US_PER_S


def _rows(t0: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    rows: list[dict[str, Any]] = [
        {"kind": "duty", "t_us": t0, "officer": f"O{i}", "on": True,
         "capabilities": "armed" if i % 2 else "", "source": "test"} for i in range(5)]
    rows += [{"kind": "flag", "t_us": t0, "flag": "open-hours", "on": True, "source": "test"}]
    rows += [{"kind": "fix", "t_us": t0 + rng.randrange(0, 4 * 3600) * US_PER_S,
              "officer": f"O{rng.randrange(5)}", "x": rng.uniform(-60, 60),
              "y": rng.uniform(-60, 60), "accuracy": 5.0, "source": "test"}
             for _ in range(300)]
    return rows


@pytest.fixture
def early_sos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An SOS raised (and recorded) two hours before the window, never acknowledged; an
    audit entry an hour before the window, so the pack's segment starts after the SOS."""
    t0 = wall_clock_us() - 10 * H
    since, until = t0 + H, t0 + 3 * H
    store = open_store(None, tmp_path / "data")
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    save_versions(store, versions)
    sos = Alert(id=alert_id_for("sos", "O1", "sos", t0 - 2 * H), kind="sos", post="O1",
                rule="sos", lapse_start=t0 - 2 * H, alert_at=t0 - 2 * H, count=0, need=1)
    with monkeypatch.context() as m:  # recorded when it was raised
        m.setattr(audit_module, "_wall_clock_iso", lambda: format_time(t0 - 2 * H))
        store.record_alert_event(sos.to_record(), actor="device", action="alert.raised")
    store.append_audit("ann", "user.created", "user:zed", {}, at=format_time(t0 - H))
    store.append_events(_rows(t0))
    raise_alerts(store, versions, t0 + 4 * H)
    key_path = tmp_path / "data" / "keys" / "audit.key"
    data = export_pack(store, versions, load_signing_key(key_path), site="yard",
                       since=since, until=until)
    store.close()
    return {"data": data, "key": key_path, "sos": sos.id}


def _without_alert(alert_id: str, *, listed_too: bool) -> Any:
    """An edit dropping the alert from alerts.json with its proof (and, if ``listed_too``,
    from open-alerts.json)."""
    def edit(files: dict[str, bytes]) -> None:
        alerts = orjson.loads(files["alerts.json"])
        n = next(i for i, a in enumerate(alerts) if a["id"] == alert_id)
        proofs = orjson.loads(files["proofs.json"])
        shifted = {str(i - (i > n)): p for i, p in
                   ((int(k), v) for k, v in proofs["alerts"].items()) if i != n}
        proofs["alerts"] = shifted
        files["alerts.json"] = orjson.dumps(alerts[:n] + alerts[n + 1:])
        files["proofs.json"] = orjson.dumps(proofs)
        if listed_too and "open-alerts.json" in files:
            live = [a for a in orjson.loads(files["open-alerts.json"]) if a["id"] != alert_id]
            files["open-alerts.json"] = orjson.dumps(live)
    return edit


def _both(data: bytes, key_path: Path) -> list[tuple[bool, list[str]]]:
    trusted = load_signing_key(key_path).trusted
    return [(c.ok, c.problems) for c in (verify_pack(data, trusted), check_pack(data, trusted))]


def test_an_alert_open_since_before_the_segment_is_in_the_pack(
    early_sos: dict[str, Any],
) -> None:
    import io
    import zipfile

    z = zipfile.ZipFile(io.BytesIO(early_sos["data"]))
    entries = [orjson.loads(x) for x in z.read("audit.jsonl").splitlines() if x]
    assert not any(e["subject"] == f"alert:{early_sos['sos']}" for e in entries)
    assert early_sos["sos"] in {a["id"] for a in orjson.loads(z.read("alerts.json"))}
    assert [a["id"] for a in orjson.loads(z.read("open-alerts.json"))
            if a["kind"] == "sos"] == [early_sos["sos"]]
    for ok, problems in _both(early_sos["data"], early_sos["key"]):
        assert ok, problems


@pytest.mark.parametrize("listed_too", [False, True])
def test_an_early_sos_dropped_from_a_re_signed_pack_is_named(
    early_sos: dict[str, Any], listed_too: bool,
) -> None:
    bad = _resigned(early_sos["data"], early_sos["key"],
                    _without_alert(early_sos["sos"], listed_too=listed_too))
    for ok, problems in _both(bad, early_sos["key"]):
        assert not ok
        text = "\n".join(problems)
        if listed_too:
            assert "open-alerts.json: is not the list of open alerts the tree head signs" \
                in text, problems
        else:
            assert f"alerts.json: lacks alert {early_sos['sos']} (sos at O1" in text, problems
