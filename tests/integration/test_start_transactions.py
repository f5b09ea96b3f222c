"""A start of many sites costs transactions per batch of sites, not per site: the store's
reads and the start's own records (store keys, every table a site's state is rebuilt
from, ``site.loaded``) are made for all the sites of a batch at once (issue 26)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from coverwatch.bootstrap import create_app
from serverkit import FakeClock, base_settings

QUIET_SITE = """\
site: {site_id}
name: Depot {n} (fictional)
origin: {{lat: 51.5, lon: -0.12}}
timezone: UTC
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {{id: cover, need: 1, within_m: 25, grace_s: 10}}
"""


async def _idle(*_: Any) -> None:
    return None


@pytest.fixture(autouse=True)
def _no_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the start itself is counted: its background tasks' rounds (ticks, the
    watchdog, tours, the briefing's steps) are each site's work after the start."""
    from coverwatch.server.upkeep import Upkeep

    # One task steps them all (server/upkeep.py): it never starts.
    monkeypatch.setattr(Upkeep, "run", lambda self: _idle())


@contextlib.contextmanager
def _counting() -> Iterator[dict[str, int]]:
    counts = {"transactions": 0, "statements": 0}

    def began(_conn: Any) -> None:
        counts["transactions"] += 1

    def executed(*_: Any) -> None:
        counts["statements"] += 1

    event.listen(Engine, "begin", began)
    event.listen(Engine, "before_cursor_execute", executed)
    try:
        yield counts
    finally:
        event.remove(Engine, "begin", began)
        event.remove(Engine, "before_cursor_execute", executed)


def _start_cost(tmp: Path, count: int) -> dict[str, int]:
    """Transactions and statements of a restart of ``count`` sites (SQLite, one process)."""
    paths = []
    for n in range(count):
        path = tmp / f"depot-{n:03d}.yaml"
        path.write_text(QUIET_SITE.format(site_id=f"depot-{n:03d}", n=n), encoding="utf-8")
        paths.append(path)
    settings = replace(base_settings(paths[0], tmp / "data", more_sites=tuple(paths[1:])),
                       anchor_every_s=0, purge_every_s=0)
    clock = FakeClock()
    with TestClient(create_app(settings, clock=clock)):
        pass  # the first start writes each site's first records (versions, orders)
    clock.advance(60)
    with _counting() as counts, TestClient(create_app(settings, clock=clock)):
        pass
    return counts


def test_a_start_of_many_sites_costs_no_transactions_per_site(tmp_path: Path) -> None:
    (tmp_path / "few").mkdir()
    (tmp_path / "many").mkdir()
    few, many = _start_cost(tmp_path / "few", 4), _start_cost(tmp_path / "many", 40)
    # Ten times the sites, the same transactions (site by site, the 36 more sites' start
    # took some 700 more); statements: only each site's own audit entry (site.loaded,
    # four statements on its chain, in the batch's one transaction), where they were ~30.
    assert many["transactions"] - few["transactions"] <= 2, (few, many)
    assert (many["statements"] - few["statements"]) / 36 <= 5, (few, many)
