"""Generate the fictional Harbour Yard scenario (roving-patrol.jsonl).

Two armed officers, A1 and A2, believe their duty is a roving patrol of the
yard. They walk a loop that passes the main gate only briefly, so for most of
the hour the main gate has no armed cover. An unarmed officer, U1, staffs the
open main gate; a service officer, S1, opens and closes the service gate.
Deterministic: the same file every run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from coverwatch.cli.demo import loop_point

START = datetime(2026, 3, 22, 13, 0, 0, tzinfo=UTC)
STEP_S = 5
DURATION_S = 108 * 60
# The armed pair walk the demo's patrol loop (it passes the main gate once) at
# 0.6 m/s, a slow "roving" stroll.
point_on_loop = loop_point


def stamp(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def events() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"t": stamp(0), "kind": "flag", "flag": "open-hours", "on": True},
        {"t": stamp(0), "kind": "gate", "post": "main-gate", "open": True},
        {"t": stamp(0), "kind": "duty", "officer": "A1", "on": True, "capabilities": ["armed"]},
        {"t": stamp(0), "kind": "duty", "officer": "A2", "on": True, "capabilities": ["armed"]},
        {"t": stamp(0), "kind": "duty", "officer": "U1", "on": True, "capabilities": []},
        {"t": stamp(0), "kind": "duty", "officer": "S1", "on": True, "capabilities": []},
        {"t": stamp(1200), "kind": "gate", "post": "service-gate", "open": True},
        {"t": stamp(2400), "kind": "gate", "post": "service-gate", "open": False},
    ]
    for s in range(0, DURATION_S + 1, STEP_S):
        # Both armed officers walk the loop together, starting at the gate.
        ax, ay = point_on_loop(0.6 * s)
        out.append({"t": stamp(s), "kind": "fix", "officer": "A1",
                    "x": round(ax, 1), "y": round(ay, 1), "accuracy_m": 4})
        out.append({"t": stamp(s), "kind": "fix", "officer": "A2",
                    "x": round(ax + 2, 1), "y": round(ay - 1, 1), "accuracy_m": 5})
        out.append({"t": stamp(s), "kind": "fix", "officer": "U1",
                    "x": 2.0, "y": 1.5, "accuracy_m": 3})
        # S1 stands at the service gate while it is open, otherwise in the store.
        sx, sy = ((141.0, 58.0) if 1200 <= s < 2400 else (80.0, 100.0))
        out.append({"t": stamp(s), "kind": "fix", "officer": "S1",
                    "x": sx, "y": sy, "accuracy_m": 3})
    out.append({"t": stamp(DURATION_S), "kind": "flag", "flag": "open-hours", "on": False})
    out.append({"t": stamp(DURATION_S), "kind": "gate", "post": "main-gate", "open": False})
    return out


def main() -> None:
    here = Path(__file__).parent
    with open(here / "roving-patrol.jsonl", "w") as f:
        for ev in events():
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
