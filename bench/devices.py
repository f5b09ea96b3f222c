"""Phone latency benchmark: upload delays and alert latency under the device watermark.

Runs the real server app (store, live engine, ticker step, OsmAnd route) on a
fake clock that advances in 0.1 s steps, with simulated phones posting OsmAnd
readings over HTTP every second, each with a steady upload delay (receive time
minus the reading's time). Two officers stand at a post whose rule needs one of
them (grace 10 s); at a set moment one walks away and the other's phone is off,
so the rule lapses. Reported per scenario:

  upload delay   per device, as the server logged it (median / p95 / max, seconds);
  late           readings stored late (behind the horizon, not used live) once each phone
                 has uploaded for 15 s: want 0 up to 10 s of delay (a phone's first uploads,
                 before the server knows it, can be late when its delay exceeds 2 s);
  alert latency  wall-clock time from lapse start + grace to the alert, seconds:
                 want <= 3 s when every phone uploads within 1 s, <= 11 s otherwise.

    .venv/bin/python bench/devices.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from coverwatch.domain.time import US_PER_S  # noqa: E402
from serverkit import FakeClock, base_settings, running_server, write_site  # noqa: E402

STEP_S = 0.1
# Degrees per site metre near the origin (51.5 N): moves of a few metres.
LAT_PER_M = 1 / 111_200
LON_PER_M = 1 / 69_200

SCENARIOS = {
    "all phones within 1 s": {"stayer": 0.8, "leaver": 0.5},
    "one phone 3 s behind": {"stayer": 3.0, "leaver": 0.5},
    "one phone 8 s behind": {"stayer": 8.0, "leaver": 0.5},
    "one phone 10 s behind": {"stayer": 10.0, "leaver": 0.5},
    "one phone 12 s behind (over the cap)": {"stayer": 12.0, "leaver": 0.5},
}


def run(name: str, delays: dict[str, float]) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp())
    site = write_site(tmp, extra="default_accuracy_m: 5\n")
    clock = FakeClock()
    with running_server(base_settings(site, tmp / "data"), clock) as kit:
        tokens = {}
        for who, officer in (("stayer", "S1"), ("leaver", "L1")):
            _, tokens[who] = kit.device(f"phone-{who}", officer)
        sup = kit.api_token("sup", "supervisor", "ingest")
        kit.post_events(sup, [{"t": clock.iso(), "kind": "duty", "officer": o, "on": True}
                              for o in ("S1", "L1")])
        start = clock()
        leave_at = start + 60 * US_PER_S
        # The stayer goes off duty at 40 s: L1 alone counts, until leaving at 60 s.
        stayer_off_at: int | None = start + 40 * US_PER_S
        # Readings sent every second; each arrives `delay` later (a queue of pending uploads).
        pending: list[tuple[int, str, int, float]] = []
        late = 0
        alert_wall: int | None = None
        next_reading = {w: start for w in delays}
        while clock() < start + 150 * US_PER_S and alert_wall is None:
            now = clock()
            if stayer_off_at is not None and now >= stayer_off_at:
                kit.post_events(sup, [{"t": clock.iso(), "kind": "duty", "officer": "S1",
                                       "on": False}])
                stayer_off_at = None
            for who, delay in delays.items():
                if next_reading[who] <= now:
                    t = next_reading[who]
                    away = 100.0 if who == "leaver" and t >= leave_at else 0.0
                    pending.append((t + round(delay * US_PER_S), who, t, away))
                    next_reading[who] = t + US_PER_S
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, who, t, away = item
                r = kit.request(None, "GET", "/osmand", params={
                    "id": tokens[who], "lat": str(51.5 + away * LAT_PER_M), "lon": "-0.12",
                    "timestamp": str(t / US_PER_S), "accuracy": "5"})
                if t >= start + 15 * US_PER_S:  # a device's first uploads may be late
                    late += r.json()["late"]
            kit.tick()
            if any(a.kind == "lapse" for a in kit.svc.book.alerts()):
                alert_wall = clock()
            clock.advance(STEP_S)
        delays_seen = kit.svc.watch.delays()
    due = leave_at + 10 * US_PER_S  # lapse start (L1 leaves) + grace
    return {
        "scenario": name,
        "delays": {d: (v["median_s"], v["p95_s"], v["max_s"]) for d, v in delays_seen.items()},
        "late": late,
        "alert_latency_s": None if alert_wall is None else (alert_wall - due) / US_PER_S,
    }


def main() -> None:
    print(f"{'scenario':40} {'upload delay median/p95/max (s)':44} {'late':>5} "
          f"{'alert latency (s)':>18}")
    for name, delays in SCENARIOS.items():
        out = run(name, delays)
        shown = "; ".join(f"{d.removeprefix('phone-')} {a:.1f}/{b:.1f}/{c:.1f}"
                          for d, (a, b, c) in sorted(out["delays"].items()))  # type: ignore[attr-defined]
        latency = out["alert_latency_s"]
        print(f"{name:40} {shown:44} {out['late']:>5} "
              f"{'none' if latency is None else f'{latency:.1f}':>18}")


if __name__ == "__main__":
    main()
