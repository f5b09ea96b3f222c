"""A run of watermarks is one advance for an evaluator that says so (the cover engine).

A new owner re-reads a quiet site's watermarks since its checkpoint; the cover engine's
``advance(a); advance(b)`` equals ``advance(max(a, b))``, so the worker advances once per run
of consecutive watermarks, to the largest horizon (a lower one from an older owner changes
nothing), and still consumes up to the last message. An evaluator that does not say so
(``EventTally``, whose outputs are per watermark) gets every watermark as before. And the
live cover engine gives the same cover changes either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from coverwatch.bus import BusMessage, EventTally
from coverwatch.bus.worker import SiteRun
from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import load_site_text
from coverwatch.server.buscover import BusCover

SITE = """\
site: quay
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25, grace_s: 5}
"""


class Counting(EventTally):
    coalesce_watermarks = True

    def __init__(self, site: str, state: bytes | None = None) -> None:
        super().__init__(site, state)
        self.advances: list[int] = []

    def advance(self, horizon_us: int) -> Sequence[Any]:
        self.advances.append(horizon_us)
        return super().advance(horizon_us)


def _msg(seq: int, kind: str, data: Mapping[str, Any]) -> BusMessage:
    return BusMessage("quay", seq, kind, f"k{seq}" if kind == "event" else None,  # type: ignore[arg-type]
                      data)


def _run(evaluator: Any) -> SiteRun:
    run = SiteRun("quay", 1, None, None, lambda s, st: evaluator, None,  # type: ignore[arg-type]
                  lambda s: True, 1.0, 100)
    run.evaluator = evaluator
    return run


def _stream() -> list[BusMessage]:
    t = 1_000 * US_PER_S
    out = [_msg(1, "event", {"kind": "duty", "t_us": t, "officer": "A", "on": True,
                             "capabilities": []}),
           _msg(2, "event", {"kind": "fix", "t_us": t, "officer": "A", "x": 0.0, "y": 0.0,
                             "accuracy": 5.0})]
    seq = 3
    for s in range(1, 6):  # five quiet seconds, one older owner's lower watermark among them
        out.append(_msg(seq, "watermark", {"horizon_us": t + s * US_PER_S}))
        seq += 1
        if s == 3:
            out.append(_msg(seq, "watermark", {"horizon_us": t}))
            seq += 1
    out.append(_msg(seq, "event", {"kind": "fix", "t_us": t + 40 * US_PER_S, "officer": "A",
                                   "x": 500.0, "y": 0.0, "accuracy": 5.0}))
    for s in (41, 50, 60):  # A left at 40 s: the grace runs out in these
        seq += 1
        out.append(_msg(seq, "watermark", {"horizon_us": t + s * US_PER_S}))
    return out


def test_a_run_of_watermarks_is_one_advance_to_the_largest() -> None:
    stream = _stream()
    counting = Counting("quay")
    run = _run(counting)
    run._apply(stream)
    t = 1_000 * US_PER_S
    assert counting.advances == [t + 5 * US_PER_S, t + 60 * US_PER_S]
    assert run.seq == stream[-1].seq and run.taken == 3
    plain = EventTally("quay")
    seen: list[Any] = []
    run = _run(plain)
    seen += run._apply(stream)
    assert len([o for o in seen if o[0] != "control"]) == 8  # each watermark that moved it


def test_the_cover_engine_gives_the_same_changes_either_way() -> None:
    site = load_site_text(SITE, "<quay>")
    stream = _stream()
    together = _run(BusCover(site, secret=b"k" * 32))
    one_by_one = _run(BusCover(site, secret=b"k" * 32))
    changes = together._apply(stream)
    singly: list[Any] = []
    for m in stream:
        singly += one_by_one._apply([m])
    assert changes == singly and changes  # the lapse at A's leaving, in both
    assert together.evaluator is not None and one_by_one.evaluator is not None
    assert together.evaluator.live.horizon == one_by_one.evaluator.live.horizon
