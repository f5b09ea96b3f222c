"""BusCover's fast path (a run of on-time fixes straight into the engine's columns, no
late plan) gives exactly what the row path the single process uses gives.

The reference is a LiveCover fed as the server feeds it: every event a row with its id
and ``late`` flag, planned (``plan_late``) then added. Both are driven by the same
messages: runs of fixes on time, runs mixing on-time and late events, duplicates (the
same row at two sequences), ties in time, a duty change in the middle of a run, a scan,
a fix without accuracy, and watermarks between runs.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coverwatch.bus import BusMessage
from coverwatch.bus.log import EventChunk
from coverwatch.bus.siterun import SiteRun
from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import load_site
from coverwatch.server.buscover import BusCover, LateEvents, pickle_state
from coverwatch.server.live import LiveCover, Position
from coverwatch.server.watermark import DeviceClock

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
    fast = bus.live.add_fix_rows
    calls = [0]

    def counted(ids: Any, rows: Any) -> None:
        calls[0] += 1
        fast(ids, rows)

    bus.live.add_fix_rows = counted  # type: ignore[method-assign]
    ref = LiveCover(site, lateness_us=0, start_horizon=-(2**62))
    clock = DeviceClock(0, 0)  # noted event by event, as the worker did before columns
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
            for m in group:
                d, r = m.data.get("device"), m.data.get("received_us")
                if m.data["kind"] == "fix" and d and isinstance(r, int):
                    clock.note(str(d), int(m.data["t_us"]), r)
            assert bus.devices.seen == clock.seen
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


def test_a_checkpoint_holds_positions_as_before() -> None:
    # The fast path keeps an officer's newest fix as values until asked; a checkpoint
    # (read by any version of the worker) holds (t, id, Position) as before.
    _, _, live, ref = _drive(7)
    del live.add_fix_rows  # the test's counter
    assert any(len(v) == 5 for v in live._positions.values())  # values kept, not made
    held = live.__getstate__()["_positions"]  # what the checkpoint's pickle holds
    assert held and all(len(v) == 3 and isinstance(v[2], Position) for v in held.values())
    restored = pickle.loads(pickle_state(live))
    assert restored.positions() == ref.positions() == live.positions()


class _ItemsOnly:
    """A BusCover seen without take_columns: the worker then hands it items."""

    def __init__(self, cover: BusCover) -> None:
        self.cover = cover
        self.coalesce_watermarks = True

    def take(self, events: Any) -> Any:
        assert all(isinstance(m, BusMessage) for m in events)
        return self.cover.take(events)

    def advance(self, horizon_us: int) -> Any:
        return self.cover.advance(horizon_us)

    def control(self, data: Any) -> Any:
        return self.cover.control(data)


def _site_run(evaluator: Any) -> SiteRun:
    run = SiteRun("yard", 1, None, None, lambda s, st: evaluator, None,  # type: ignore[arg-type]
                  lambda s: True, 1.0, 100)
    run.evaluator = evaluator
    return run


def test_chunks_as_columns_equal_their_items() -> None:
    # The same stream, in messages of several events (EventChunk) and single ones, with
    # watermarks between: applied as columns and as items, every output and the state
    # after every batch agree.
    site = load_site(YARD)
    columns, items = BusCover(site, secret=b"s", lateness_us=0), \
        BusCover(site, secret=b"s", lateness_us=0)
    by_columns, by_items = _site_run(columns), _site_run(_ItemsOnly(items))
    rng = random.Random(3)
    seq = 0
    stream: list[BusMessage | EventChunk] = []
    for run, horizon in _runs(11):
        i = 0
        while i < len(run):
            seq += 1
            n = rng.randint(1, 9)
            part = run[i:i + n]
            if n == 1 and rng.random() < 0.5:
                stream.append(BusMessage("yard", seq, "event", f"k{seq}", part[0]))
            else:
                stream.append(EventChunk("yard", seq, tuple(f"k{seq}.{j}" for j in
                                                            range(len(part))), tuple(part)))
            i += n
        seq += 1
        stream.append(BusMessage("yard", seq, "watermark", None, {"horizon_us": horizon}))
    got = want = 0
    lo = 0
    while lo < len(stream):
        hi = lo + rng.randint(1, 6)
        a, b = by_columns._apply(stream[lo:hi]), by_items._apply(stream[lo:hi])
        assert a == b
        got, want = got + len(a), want + len(b)
        assert columns.live.positions() == items.live.positions()
        assert columns.devices.seen == items.devices.seen
        lo = hi
    assert got > 0 and by_columns.taken == by_items.taken > 0
    assert by_columns.seq == by_items.seq == seq
    assert columns.live.lapses() == items.live.lapses()
    assert columns.snapshot() == items.snapshot()
