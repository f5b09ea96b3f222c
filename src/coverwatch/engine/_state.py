"""The engine's state at its horizon as plain JSON-friendly values, and back.

A report restarts from a saved state instead of the first stored event, and an
evidence pack carries the state at its start so that the window can be re-run
exactly. The state is everything the engine carries across windows (see
``_cover``): each officer's last fix, duty and memberships, flags, gates, each
rule's open lapse and count, and the running totals. Events not yet evaluated
are not part of it: take it only when nothing at or after the horizon is queued.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coverwatch.domain.site import Site
from coverwatch.engine._cover import CoverEngine
from coverwatch.engine._members import INF
from coverwatch.engine.results import RuleStats
from coverwatch.errors import OutOfOrderError

__all__ = ["STATE_VERSION", "engine_conditions", "engine_positions", "engine_state",
           "restore_engine"]

STATE_VERSION = 1


def _stats_out(st: RuleStats) -> dict[str, Any]:
    return {"post": st.post, "rule": st.rule, "need": st.need, "active_us": st.active_us,
            "covered_us": st.covered_us, "lapses": st.lapses, "alerts": st.alerts,
            "longest_lapse_us": st.longest_lapse_us}


def _stats_in(d: dict[str, Any]) -> RuleStats:
    return RuleStats(str(d["post"]), str(d["rule"]), int(d["need"]), int(d["active_us"]),
                     int(d["covered_us"]), int(d["lapses"]), int(d["alerts"]),
                     int(d["longest_lapse_us"]))


def engine_state(engine: CoverEngine, officers: list[str]) -> dict[str, Any]:
    """The state of ``engine`` at its horizon; ``officers`` are the registry's names in order.

    Closed lapses are not included (they are results, not state).
    """
    e = engine
    if e._closed:
        raise OutOfOrderError("a closed engine has no state to carry on from")
    if any(len(f) for f in e._pending_fixes) or e._pending_control:
        raise OutOfOrderError("events at or after the horizon are queued; take the state first")
    n = e._n_off
    rules = []
    for i, (post, rule) in enumerate(e._pairs):
        rules.append({
            "post": post.id, "rule": rule.id, "deficit": bool(e._deficit[i]),
            "lapse_start": e._lapse_start[i], "lapse_min": int(e._lapse_min[i]),
            "alerted": bool(e._lapse_alerted[i]), "count": int(e._count_at_h[i]),
        })
    n_rules = max(e._n_rules, 1)
    return {
        "v": STATE_VERSION,
        "horizon": e._h,
        "officers": list(officers),
        "capacity": n,
        "last_t": [int(t) for t in e._last_t[:n]],
        "last_xya": [[float(v) for v in row] for row in e._last_xya[:n]],
        "on": [bool(v) for v in e._on[:n]],
        "capabilities": [sorted(c) for c in e._capsets[:n]],
        "memberships": [[int(k) // n_rules, int(k) % n_rules] for k in e._carry],
        # Growing scans: each fix's growth (m/s) and when each membership ends (null: never).
        "last_growth": [float(v) for v in e._last_g[:n]],
        "membership_ends": [None if int(v) >= INF else int(v) for v in e._carry_end],
        "flags": dict(sorted(e._flags.items())),
        "gates": dict(sorted(e._gates.items())),
        "rules": rules,
        "stats": [_stats_out(s) for s in e.stats],
        "retired_stats": [_stats_out(s) for s in e.retired_stats],
    }


def restore_engine(site: Site, state: dict[str, Any], *, timeline: bool = False) -> CoverEngine:
    """A fresh engine for ``site`` carrying on from ``state`` (from :func:`engine_state`).

    ``site`` must be the rules the state was taken under (matched by post and rule ids).
    """
    if state.get("v") != STATE_VERSION:
        raise ValueError(f"unknown engine state version {state.get('v')!r}")
    e = CoverEngine(site, int(state["horizon"]), timeline=timeline)
    pairs = [(p.id, r.id) for p, r in e._pairs]
    if pairs != [(r["post"], r["rule"]) for r in state["rules"]]:
        raise ValueError("the engine state was taken under other rules than this site's")
    n = int(state["capacity"])
    if n:
        e._grow_officers(n)
        e._last_t[:n] = np.asarray(state["last_t"], np.int64)
        e._last_xya[:n] = np.asarray(state["last_xya"], np.float64).reshape(n, 3)
        if "last_growth" in state:  # absent from states saved before scans grew
            e._last_g[:n] = np.asarray(state["last_growth"], np.float64)
        e._on[:n] = np.asarray(state["on"], bool)
        for o, caps in enumerate(state["capabilities"]):
            capset = frozenset(str(c) for c in caps)
            e._capsets[o] = capset
            for c in capset:
                col = e._cap_col.get(c)
                if col is not None:
                    e._caps[o, col] = True
    n_rules = max(e._n_rules, 1)
    keys = [int(o) * n_rules + int(r) for o, r in state["memberships"]]
    ends = state.get("membership_ends") or [None] * len(keys)
    carry_end = np.asarray([INF if v is None else int(v) for v in ends], np.int64)
    by_key = np.argsort(np.asarray(keys, np.int64), kind="stable")
    e._carry = np.asarray(keys, np.int64)[by_key]
    e._carry_end = carry_end[by_key]
    e._flags.update({str(k): bool(v) for k, v in state["flags"].items()})
    e._gates.update({str(k): bool(v) for k, v in state["gates"].items()})
    e._active = np.array([e._rule_active(i) for i in range(e._n_rules)], bool)
    for i, r in enumerate(state["rules"]):
        e._deficit[i] = bool(r["deficit"])
        e._lapse_start[i] = None if r["lapse_start"] is None else int(r["lapse_start"])
        e._lapse_min[i] = int(r["lapse_min"])
        e._lapse_alerted[i] = bool(r["alerted"])
        e._count_at_h[i] = int(r["count"])
    e.stats = [_stats_in(s) for s in state["stats"]]
    e.retired_stats = [_stats_in(s) for s in state["retired_stats"]]
    return e


def engine_positions(engine: CoverEngine) -> dict[int, tuple[int, float, float, float]]:
    """Each officer's latest evaluated fix: officer index -> (t, x, y, accuracy)."""
    out = {}
    for o in range(engine._n_off):
        t = engine.officer_last_fix(o)
        if t is not None:
            x, y, acc = (float(v) for v in engine._last_xya[o])
            out[o] = (t, x, y, acc)
    return out


def engine_conditions(engine: CoverEngine) -> tuple[dict[str, bool], dict[str, bool]]:
    """(gates, flags) at the horizon."""
    return dict(engine._gates), dict(engine._flags)
