"""BusCover's fast path (a run of on-time fixes straight into the engine's columns, no
late plan) gives exactly what the row path the single process uses gives.

The reference is a LiveCover fed as the server feeds it: every event a row with its id
and ``late`` flag, planned (``plan_late``) then added. Both are driven by the same
messages: runs of fixes on time, runs mixing on-time and late events, duplicates (the
same row at two sequences), ties in time, a duty change in the middle of a run, a scan,
a fix without accuracy, and watermarks between runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import load_site
from coverwatch.server.buscover import BusCover, LateEvents
from coverwatch.server.live import LiveCover

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_900_000_000 * US_PER_S
SPOTS = [(1.0, 2.0), (18.0, 8.0), (20.0, 25.0), (100.0, 20.0), (138.0, 62.0), (150.0, 110.0)]
OFFICERS = ["A1", "A2", "A3", "U1"]


@dataclass(frozen=True)
class Msg:
    seq: int
    key: str | None
    data: dict[str, Any]


def _fix(rng: random.Random, t: int, officer: str) -> dict[str, Any]:
    x, y = rng.choice(SPOTS)
    row: dict[str, Any] = {"t_us": t, "kind": "fix", "officer": officer,
                           "x": x + rng.uniform(-3, 3), "y": y + rng.uniform(-3, 3),
                           "accuracy": rng.choice([3.0, 5.0, None]),
                           "device": f"p-{officer}", "received_us": t + 1000}
    if rng.random() < 0.05:
        row["raw"] = {"kind": "scan"}
    return row


def _runs(seed: int) -> list[tuple[list[dict[str, Any]], int]]:
    """(a run of events, the watermark after it), with late and duplicated events."""
    rng = random.Random(seed)
    runs: list[tuple[list[dict[str, Any]], int]] = []
    sent: list[dict[str, Any]] = []
    for step in range(40):
        lo = T0 + step * 5 * US_PER_S
        run = [_fix(rng, lo + rng.choice([0, 0, rng.randrange(5 * US_PER_S)]), o)
               for o in OFFICERS for _ in range(3)]
        if step == 0:
            run += [{"t_us": lo, "kind": "flag", "flag": "open-hours", "on": True},
                    {"t_us": lo, "kind": "gate", "post": "main-gate", "open": True}]
        if step == 0 or rng.random() < 0.3:  # a duty change mid-run
            run.insert(rng.randrange(len(run) + 1),
                       {"t_us": lo + 1, "kind": "duty", "officer": rng.choice(OFFICERS),
                        "on": step == 0 or rng.random() < 0.7, "capabilities": "armed"})
        if step and rng.random() < 0.4:  # late: before this run's horizon
            run.insert(rng.randrange(len(run) + 1), _fix(rng, lo - 3 * US_PER_S, "A2"))
        if step and rng.random() < 0.2:
            run.insert(rng.randrange(len(run) + 1),
                       {"t_us": lo - US_PER_S, "kind": "duty", "officer": "A3",
                        "on": rng.random() < 0.5, "capabilities": "armed"})
        if sent and rng.random() < 0.3:  # a duplicate, delivered again
            run.append(dict(rng.choice(sent)))
        run.sort(key=lambda r: r["t_us"]) if rng.random() < 0.5 else None
        sent += run
        runs.append((run, lo + 5 * US_PER_S))
    return runs


def _drive(seed: int) -> tuple[list[Any], list[Any], LiveCover, LiveCover]:
    site = load_site(YARD)
    bus = BusCover(site, secret=b"s", lateness_us=0)
    fast = bus.live.add_fix_columns
    calls = [0]

    def counted(ids: Any, rows: Any) -> None:
        calls[0] += 1
        fast(ids, rows)

    bus.live.add_fix_columns = counted  # type: ignore[method-assign]
    ref = LiveCover(site, lateness_us=0, start_horizon=-(2**62))
    rng = random.Random(seed + 1)
    seq = 0
    got: list[Any] = []
    want: list[Any] = []
    for run, horizon in _runs(seed):
        # The run in messages of a few events each (items of one message share a seq).
        messages: list[Msg] = []
        i = 0
        while i < len(run):
            seq += 1
            n = rng.randint(1, 6)
            messages += [Msg(seq, f"k{seq}.{j}", r) for j, r in enumerate(run[i:i + n])]
            i += n
        # Taken a message at a time and as a whole run (as a worker groups them).
        groups = [messages] if rng.random() < 0.3 else \
            [[m for m in messages if m.seq == s] for s in sorted({m.seq for m in messages})]
        for group in groups:
            got += bus.take(group)
            rows = [{**m.data, "id": m.seq, "late": ref.is_late(int(m.data["t_us"]))}
                    for m in group]
            ref.plan_late(rows)
            ref.add(rows)
            late = tuple(m.key or "" for m, r in zip(group, rows, strict=True) if r["late"])
            applied = tuple((m.key or "", int(r["applied_us"]))
                            for m, r in zip(group, rows, strict=True)
                            if r["applied_us"] is not None)
            want += [LateEvents(late, applied)] if late else []
            assert bus.live.positions() == ref.positions()  # the newest fix of a tie too
        seq += 1
        got += bus.advance(horizon)
        want += ref.advance_to(horizon)
    assert calls[0] > 20  # the fast path ran
    return got, want, bus.live, ref


def test_the_fast_path_equals_the_row_path() -> None:
    for seed in range(6):
        got, want, live, ref = _drive(seed)
        assert got == want
        assert any(isinstance(o, LateEvents) for o in got)  # the late path ran too
        assert any(not isinstance(o, LateEvents) for o in got)  # and changes came
        assert live.lapses() == ref.lapses()
        assert live.positions() == ref.positions()
        assert live.gates() == ref.gates() and live.flags() == ref.flags()
        assert live.on_duty() == ref.on_duty()
        assert live.max_id == ref.max_id
        assert live.registry.names == ref.registry.names
        assert live.cover_states() == ref.cover_states()
        assert live.late.summary(live.horizon) == ref.late.summary(ref.horizon)
