"""`replay --json`'s lines (reports/replay.py lapse_lines) against lapse_record, one by one."""

from __future__ import annotations

import random

import orjson

from coverwatch.engine import Lapse
from coverwatch.reports.replay import lapse_lines, lapse_record


def test_lapse_lines_are_lapse_record_as_json() -> None:
    rng = random.Random(25)
    base = 1_774_159_200_000_000
    times = [base + rng.randrange(0, 3_600) * 1_000_000 for _ in range(50)]
    times += [base + rng.randrange(0, 10**12), -62_135_596_800_000_000, 0, 1]
    lapses = [
        Lapse(f"p{i % 7}", rng.choice(["cover", "armed cover", "é"]), rng.choice(times),
              rng.choice([None, *times]), rng.choice([None, *times]), rng.randrange(0, 4))
        for i in range(2_000)
    ]
    want = b"".join(orjson.dumps(lapse_record(lp)) + b"\n" for lp in lapses)
    # Twice: the second time every time comes from the memo.
    assert lapse_lines(lapses) == want
    assert lapse_lines(lapses) == want
    assert lapse_lines([]) == b""
