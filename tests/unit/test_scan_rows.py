"""Stored rows to engine batches (server/live.py ``batch_from_rows``): a fix stored
from a checkpoint scan gets the site's walking speed as its growth, whether the row
carries its raw record (live, evidence packs) or only the store's ``scan_raw`` text
(reports/history.py via ``engine_rows``); every other fix gets 0."""

from __future__ import annotations

from typing import Any

import orjson

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.storedrows import batch_from_rows


def _fix(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "kind": "fix", "t_us": 1_000_000 * i, "officer": "P1", "x": 25.0,
            "y": 0.0, "accuracy": 1.0, **extra}


def test_scans_get_the_walking_speed_and_other_fixes_none() -> None:
    scan = {"t": "2030-01-01T08:00:00Z", "kind": "scan", "officer": "P1", "checkpoint": "tag"}
    rows = [
        _fix(1, raw=scan),                                   # live / evidence: decoded raw
        _fix(2, scan_raw=orjson.dumps(scan).decode()),       # history: engine_rows
        _fix(3, raw={"kind": "fix", "note": '"kind":"scan"'}),  # an ordinary fix
        _fix(4, scan_raw=None),
        _fix(5),
    ]
    batch = batch_from_rows(rows, OfficerRegistry(), scan_growth=1.5)
    assert batch.fixes.growth.tolist() == [1.5, 1.5, 0.0, 0.0, 0.0]


def test_without_scans_every_growth_is_zero() -> None:
    batch = batch_from_rows([_fix(1), _fix(2)], OfficerRegistry(), scan_growth=2.0)
    assert batch.fixes.growth.tolist() == [0.0, 0.0]
