"""One upkeep task steps every site (server/upkeep.py): each of many sites' lapses are
raised and escalated at the same event times, level by level, as by a ticker of its own.

Two servers over the same eight sites on fake clocks moved in the same steps: in one the
upkeep ticks every site by itself (every 10 ms of wall time); in the other nothing ticks
but the test, which steps every site's ticker by hand after each move of the clock (what
a task per site did). Each site lapses and escalates at its own instants, so a site the
upkeep skipped, or stepped late, or too early, differs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.server.handlers import ingest, tick
from coverwatch.server.handlers.tick import quiet_tick
from coverwatch.server.happenings import LevelsDue
from coverwatch.server.unit import SiteUnit
from receivers import HttpReceiver, http_receiver
from serverkit import FakeClock, Kit, base_settings, running_server, write_site

SITES = 8
STEPS_S = 100  # one-second moves of the clock


def _escalation(web: HttpReceiver) -> str:
    return f"""escalation:
  - after_s: 0
    notify: ["json://{web.base}/level0"]
  - after_s: 20
    notify: ["json://{web.base}/level1"]
  - after_s: 45
    notify: ["json://{web.base}/level2"]
"""


def _row(kind: str, t: int, officer: str, **cols: Any) -> dict[str, Any]:
    row = {"kind": kind, "t_us": t, "officer": officer, "x": None, "y": None,
           "accuracy": None, "post": None, "flag": None, "on": None, "open": None,
           "capabilities": None}
    row.update(cols)
    raw = {"t": format_time(t), "kind": kind, "officer": officer,
           **{k: v for k, v in cols.items() if v is not None}}
    return {**row, "raw": raw}


@contextlib.contextmanager
def _server(tmp: Path, web: HttpReceiver, tick_s: float) -> Iterator[Kit]:
    paths = []
    for i in range(SITES):
        (tmp / f"s{i}").mkdir(parents=True)
        paths.append(write_site(tmp / f"s{i}", f"depot-{i}", _escalation(web)))
    settings = base_settings(paths[0], tmp / "data", more_sites=tuple(paths[1:]),
                             tick_s=tick_s, notify_retries=0)
    with running_server(settings, FakeClock()) as kit:
        yield kit


def _units(kit: Kit) -> list[SiteUnit]:
    return [kit.app.state.sites[f"depot-{i}"] for i in range(SITES)]


def _run(kit: Kit, by_hand: bool) -> dict[str, Any]:
    """Officer A<i> holds site i's gate, then walks off at 5 + 3i s: each site's lapse
    and escalation levels fall at their own instants. Returns, per site, the levels
    recorded due (alert, level, due at, escalated at) and the alerts' records."""
    units = _units(kit)
    levels: dict[str, list[tuple[str, int, int, int]]] = {u.site.id: [] for u in units}
    for u in units:
        def heard(h: LevelsDue, site: str = u.site.id) -> None:
            levels[site].extend((s.alert_id, s.level, s.due_at, s.at) for s in h.steps)
        u.subscribers.subscribe(LevelsDue, heard)
    _walk_off(kit, units)
    for _ in range(STEPS_S):
        kit.clock.advance(1.0)
        if by_hand:  # a ticker per site: each steps once the clock has moved
            for u in units:
                kit.call(tick, u)
        else:
            kit.call(_ticked_since_now, units)
        for u in units:
            kit.call(u.outbox.drain)
    return {u.site.id: (levels[u.site.id], sorted(
        (a.to_record() for a in u.book.alerts()), key=lambda r: r["id"])) for u in units}


def _walk_off(kit: Kit, units: list[SiteUnit]) -> None:
    t0 = kit.clock()
    for i, u in enumerate(units):
        officer = f"A{i}"
        rows = [_row("duty", t0, officer, on=True, capabilities=[]),
                _row("fix", t0, officer, x=0.0, y=0.0, accuracy=1.0)]
        for s in range(1, 5 + 3 * i):  # on the gate until they walk off
            rows.append(_row("fix", t0 + s * US_PER_S, officer, x=0.0, y=0.0, accuracy=1.0))
        rows.append(_row("fix", t0 + (5 + 3 * i) * US_PER_S, officer, x=300.0, y=0.0,
                         accuracy=1.0))
        kit.call(_ingest, u, rows)


async def _ingest(unit: SiteUnit, rows: list[dict[str, Any]]) -> None:
    await ingest(unit, rows, source="test")


async def _ticked_since_now(units: list[SiteUnit]) -> None:
    """Until every site's ticker has completed a tick begun after this call (two ticks
    completed: the first may have begun before): a site never ticked fails here."""
    before = {id(u): u.health.ticks for u in units}
    for _ in range(3000):  # 30 s at 10 ms
        late = [u.site.id for u in units if u.health.ticks < before[id(u)] + 2]
        if not late:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never ticked by the upkeep: {late}")


def test_many_sites_lapse_and_escalate_at_the_same_instants_as_a_ticker_each(
        tmp_path: Path) -> None:
    with http_receiver() as web:
        with _server(tmp_path / "upkeep", web, tick_s=0.01) as kit:
            upkept = _run(kit, by_hand=False)
        with _server(tmp_path / "by-hand", web, tick_s=3600.0) as kit:
            by_hand = _run(kit, by_hand=True)
    for site in by_hand:
        levels, alerts = by_hand[site]
        # Each site lapsed and went through all three levels, at instants of its own.
        assert [lv for _, lv, _, _ in levels] == [0, 1, 2], (site, levels)
        assert [a["kind"] for a in alerts] == ["lapse"], (site, alerts)
    starts = {by_hand[s][1][0]["lapse_start"] for s in by_hand}
    assert len(starts) == SITES
    assert upkept == by_hand


async def _quiet(unit: SiteUnit) -> bool:
    return quiet_tick(unit)


def test_a_tick_the_upkeep_skips_is_one_that_would_do_nothing(tmp_path: Path) -> None:
    """On a node that does not evaluate, quiet_tick lets the upkeep skip a site's tick:
    at every instant it says so, a full tick there escalates nothing; at the instants a
    level falls due it does not say so."""
    with http_receiver() as web, _server(tmp_path, web, tick_s=3600.0) as kit:
        units = _units(kit)
        levels: list[tuple[str, int]] = []
        for u in units:
            u.subscribers.subscribe(LevelsDue, lambda h: levels.extend(
                (s.alert_id, s.level) for s in h.steps))
        _walk_off(kit, units)
        for _ in range(40):  # every site lapses, its alert raised (this node evaluates)
            kit.clock.advance(1.0)
            for u in units:
                kit.call(tick, u)
        for u in units:  # from now on as a node of the distributed mode: it escalates only
            u.settings = replace(u.settings, bus_url="nats://127.0.0.1:9")
        said = {True: 0, False: 0}
        for _ in range(60):
            kit.clock.advance(1.0)
            for u in units:
                quiet, before = kit.call(_quiet, u), len(levels)
                kit.call(tick, u)
                said[quiet] += 1
                if quiet:
                    assert len(levels) == before, (u.site.id, levels[before:])
        assert said[True] and said[False] >= SITES * 2  # levels 1 and 2 of every site
        assert sorted(lv for _, lv in levels) == [0] * SITES + [1] * SITES + [2] * SITES
