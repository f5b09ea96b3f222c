"""LiveCover's late path without a server: which late state events are applied live
(the newest about their officer, gate or flag, ties going to the later arrival), at
the horizon, and that late fixes never are (docs/semantics.md, "Late state events")."""

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
            "received_us": T0 + 30 * US_PER_S}
    return base | kw


def _live() -> LiveCover:
    live = LiveCover(load_site(YARD), lateness_us=0, start_horizon=T0)
    live.add([_row(1, 0, "fix", officer="A1", x=1.0, y=2.0, accuracy=3.0),
              _row(2, 10, "duty", officer="A1", on=True, capabilities="armed")])
    live.advance_to(T0 + 20 * US_PER_S)
    return live


def test_only_the_newest_late_state_event_is_applied_at_the_horizon() -> None:
    live = _live()
    group = [_row(3, 12, "duty", officer="A1", on=False),   # newer than the booking-on
             _row(4, 11, "duty", officer="A1", on=True),    # older than row 3: superseded
             _row(5, 10, "duty", officer="A1", on=True),    # older than what is known
             _row(6, 15, "gate", post="main-gate", open=True),
             _row(7, 15, "gate", post="main-gate", open=False),  # a tie: the later arrival
             _row(8, 14, "fix", officer="A1", x=1.0, y=2.0, accuracy=3.0)]
    for r in group:
        r["late"] = live.is_late(r["t_us"])
    assert all(r["late"] for r in group)
    live.plan_late(group)
    h = T0 + 20 * US_PER_S
    assert [r["applied_us"] for r in group] == [h, None, None, h, h, None]
    live.add(group)
    live.advance_to(h + US_PER_S)
    a1 = {o.officer: o for o in live.officers()}["A1"]
    assert not a1.on_duty and a1.last_fix_us == T0  # the late fix is not a position
    assert live.gates()["main-gate"] is False
    summary = live.late.summary(T0 + 40 * US_PER_S)
    assert (summary["count"], summary["applied"]) == (6, 3)
    assert [a["live"] for a in summary["applied_late"]] == ["applied late"] * 3


def test_an_on_time_event_arriving_after_a_late_one_still_wins_when_newer() -> None:
    live = _live()
    late = [_row(3, 15, "flag", flag="open-hours", on=True)]
    late[0]["late"] = True
    live.plan_late(late)
    live.add(late)
    h = live.horizon
    on_time = [_row(4, 20, "flag", flag="open-hours", on=False, late=False)]
    live.plan_late(on_time)
    assert on_time[0]["applied_us"] is None
    live.add(on_time)
    live.advance_to(h + US_PER_S)
    assert live.flags()["open-hours"] is False
    states = {(r["post"], r["rule"]): r["state"] for r in live.cover_states()}
    assert states[("main-gate", "armed-cover")] == "inactive"
