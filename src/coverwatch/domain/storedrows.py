"""Stored event rows (the store's column names) as an engine batch: how a replay of
the store, the live engine's start-up and the evidence window read what was kept."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from coverwatch.domain.events import (
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
    GateEvent,
    OfficerRegistry,
)

__all__ = ["batch_from_rows"]


def batch_from_rows(rows: Iterable[Mapping[str, Any]], registry: OfficerRegistry, *,
                    scan_growth: float) -> EventBatch:
    """Convert stored event rows (the store's column names) into an engine batch.

    ``seq`` is the row id, so ties at the same time keep arrival order. A fix
    stored from a scan (its raw record says ``kind: scan``) gets ``scan_growth``
    (the site's ``scan_walk_mps``) as its growth, as the file readers give it.
    """
    # Columns filled directly (no tuple per fix, no transpose): the live engine's
    # hand-off of every stored batch (issue 25).
    t_col: list[int] = []
    officer_col: list[int] = []
    x_col: list[float] = []
    y_col: list[float] = []
    acc_col: list[float] = []
    seq_col: list[int] = []
    growth: list[float] = []
    control: list[DutyEvent | GateEvent | FlagEvent] = []
    known = registry.get
    intern = registry.intern
    for r in rows:
        kind = r["kind"]
        seq = int(r["id"])
        t = int(r["t_us"])
        if kind == "fix":
            name = r["officer"]
            officer = known(name)
            t_col.append(t)
            officer_col.append(intern(name) if officer is None else officer)
            x_col.append(float(r["x"]))
            y_col.append(float(r["y"]))
            acc_col.append(float(r["accuracy"] or 0.0))
            seq_col.append(seq)
            raw = r.get("raw")
            scan = raw.get("kind") == "scan" if type(raw) is dict else _is_scan(r)
            growth.append(scan_growth if scan else 0.0)
        elif kind == "duty":
            caps = r.get("capabilities") or ()
            if isinstance(caps, str):
                caps = caps.replace(";", ",").split(",")
            capset = frozenset(c for c in caps if c)
            control.append(DutyEvent(t, registry.intern(r["officer"]), bool(r["on"]), capset, seq))
        elif kind == "gate":
            control.append(GateEvent(t, r["post"], bool(r["open"]), seq))
        elif kind == "flag":
            control.append(FlagEvent(t, r["flag"], bool(r["on"]), seq))
    if not t_col:
        return EventBatch(FixColumns.empty(), control)
    fixes = FixColumns(
        np.array(t_col, np.int64), np.array(officer_col, np.int32),
        np.array(x_col, np.float64), np.array(y_col, np.float64),
        np.array(acc_col, np.float64), np.array(seq_col, np.int64),
        np.array(growth, np.float64) if any(growth) else np.zeros(len(t_col), np.float64))
    return EventBatch(fixes, control)


def _is_scan(row: Mapping[str, Any]) -> bool:
    """A stored fix made from a checkpoint scan: its raw record says ``kind: scan``
    (``scan_raw``: the raw text, as the store's engine rows give it for scans only)."""
    raw = row.get("raw")
    if raw is None and row.get("scan_raw"):
        raw = json.loads(row["scan_raw"])
    return isinstance(raw, dict) and raw.get("kind") == "scan"
