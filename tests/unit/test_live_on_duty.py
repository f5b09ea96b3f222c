"""``LiveCover.on_duty`` (what the briefing and silent-device checks ask five times a
second) says exactly what ``officers()`` says about duty (issue 25: the views cost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import load_site
from coverwatch.server.live import LiveCover

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
T0 = 1_900_000_000 * US_PER_S


def _row(i: int, t_s: float, kind: str, **kw: Any) -> dict[str, Any]:
    base = {"id": i, "t_us": T0 + round(t_s * US_PER_S), "kind": kind, "officer": None,
            "x": None, "y": None, "accuracy": None, "post": None, "flag": None, "on": None,
            "open": None, "capabilities": None, "device": "phone", "source": "http",
            "received_us": T0}
    return base | kw


def _duty(live: LiveCover) -> set[str]:
    return {o.officer for o in live.officers() if o.on_duty}


def test_on_duty_is_what_the_officer_views_say() -> None:
    live = LiveCover(load_site(YARD), lateness_us=0, start_horizon=T0)
    assert live.on_duty() == _duty(live) == set()
    live.add([_row(1, 0, "fix", officer="A1", x=1.0, y=2.0, accuracy=3.0),
              _row(2, 1, "duty", officer="A1", on=True),
              _row(3, 1, "duty", officer="B2", on=True),
              _row(4, 2, "fix", officer="C3", x=5.0, y=5.0, accuracy=3.0),
              _row(5, 3, "duty", officer="B2", on=False),
              _row(6, 3, "duty", officer="D4", on=True)])
    live.advance_to(T0 + 10 * US_PER_S)
    assert live.on_duty() == _duty(live) == {"A1", "D4"}
