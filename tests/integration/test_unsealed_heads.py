"""The server never signs a tree head (nor an anchor) over audit entries whose MAC does
not verify: an entry written or rewritten without the audit key is refused by name, the
anchoring task raises a system alert, and the head is signed once the log is sound again
(issue 23)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.service import anchor_now, run_anchoring
from coverwatch.evidence.treeheads import UnsealedAudit, head_now
from coverwatch.settings import Settings
from coverwatch.storage import Store, open_store
from coverwatch.storage.tables import audit


def _forge(store: Store, entry_id: int) -> None:
    """Rewrite an entry's MAC as one without the key would (SQLite: no append-only trigger)."""
    with store.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.id == entry_id).values(mac="k0:" + "0" * 64))


def test_a_head_over_an_entry_whose_mac_fails_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(None, data)
    key = load_signing_key(data / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    store.append_audit("ann", "orders.changed", "post:a", {"n": 1})
    head_now(store, key, "yard", heads)
    forged = store.append_audit("ann", "orders.changed", "post:a", {"n": 2})
    _forge(store, forged.id)
    with pytest.raises(UnsealedAudit, match=rf"audit entry {forged.id} MAC"):
        head_now(store, key, "yard", heads)
    assert len(heads.read_text().splitlines()) == 1  # nothing signed
    settings = Settings(site_path=tmp_path / "site.yaml", data_dir=data,
                        anchor_file=tmp_path / "anchors.jsonl")
    with pytest.raises(UnsealedAudit):
        anchor_now(store, settings, "yard")
    assert not (tmp_path / "anchors.jsonl").exists()  # nor anchored
    store.close()
    r = CliRunner().invoke(app, ["audit", "head", "--data-dir", str(data), "--out", str(heads)])
    assert r.exit_code == 1 and "no tree head signed" in r.output, r.output


def test_the_anchoring_task_raises_a_system_alert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(None, data)
    settings = Settings(site_path=tmp_path / "site.yaml", data_dir=data,
                        anchor_file=tmp_path / "anchors.jsonl", anchor_every_s=0.05)
    store.append_audit("ann", "orders.changed", "post:a", {"n": 1})
    anchor_now(store, settings, "yard")
    _forge(store, store.append_audit("ann", "orders.changed", "post:a", {"n": 2}).id)
    raised: list[str] = []

    async def alert(detail: str) -> None:
        raised.append(detail)

    async def scenario() -> None:
        task = asyncio.create_task(run_anchoring(store, settings, "yard", on_refused=alert))
        for _ in range(400):
            if raised:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    store.close()
    assert raised and "MAC does not verify" in raised[0] and "entry 2" in raised[0]
