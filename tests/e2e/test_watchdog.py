"""The watched watcher: a stopped ticker, a lagging engine and a store that cannot
commit raise system alerts and flip /readyz; a notifier that reaches nobody does
not; the heartbeat goes out only while the server is healthy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coverwatch.server.watchdog import should_beat, watch_once
from receivers import HttpReceiver, http_receiver
from serverkit import Kit, base_settings, running_server, wait_until, write_site


def _system(kit: Kit) -> dict[str, str]:
    return {a.rule: a.state.value for a in kit.svc.book.alerts() if a.kind == "system"}


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    site = write_site(tmp_path)
    with running_server(base_settings(site, tmp_path / "data", watch_s=3600.0)) as k:
        # The background ticker's first tick (then it sleeps an hour): nothing may race the test.
        wait_until(lambda: k.svc.health.ticks >= 1, what="the first tick")
        yield k


def test_a_store_that_cannot_commit_flips_readyz_and_raises_a_system_alert(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kit.client.get("/readyz").status_code == 200

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(kit.svc.store, "set_state", broken)
    kit.call(watch_once, kit.svc)
    r = kit.client.get("/readyz")
    assert r.status_code == 503 and "store-commit" in r.text
    assert _system(kit) == {"store-commit": "open"}
    [alert] = [a for a in kit.svc.book.alerts() if a.rule == "store-commit"]
    assert "disk full" in alert.detail
    monkeypatch.undo()
    kit.call(watch_once, kit.svc)
    assert kit.client.get("/readyz").status_code == 200
    assert _system(kit) == {"store-commit": "resolved"}


def test_a_stopped_ticker_flips_readyz_until_it_ticks_again(kit: Kit) -> None:
    kit.svc.health.last_tick = time.monotonic() - 100_000  # tests tick hourly by hand
    assert not should_beat(kit.svc)
    kit.call(watch_once, kit.svc)
    r = kit.client.get("/readyz")
    assert r.status_code == 503 and "ticker-stopped" in r.text
    assert _system(kit) == {"ticker-stopped": "open"}
    kit.tick()
    assert should_beat(kit.svc)
    kit.call(watch_once, kit.svc)
    assert kit.client.get("/readyz").status_code == 200
    assert _system(kit) == {"ticker-stopped": "resolved"}


def test_an_engine_that_falls_behind_flips_readyz(kit: Kit) -> None:
    kit.tick()
    kit.clock.advance(120)  # the wall clock moves on; the horizon does not (no tick)
    kit.call(watch_once, kit.svc)
    r = kit.client.get("/readyz")
    assert r.status_code == 503 and "engine-lag" in r.text
    kit.tick()
    kit.call(watch_once, kit.svc)
    assert kit.client.get("/readyz").status_code == 200
    assert _system(kit)["engine-lag"] == "resolved"


def test_a_notifier_that_reaches_nobody_does_not_flip_readyz(tmp_path: Path) -> None:
    escalation = """escalation:
  - after_s: 0
    notify: [supervisor]
"""
    site = write_site(tmp_path, extra=escalation)
    with running_server(base_settings(site, tmp_path / "data", watch_s=3600.0)) as kit:
        assert "target:role:supervisor" in _system(kit)  # reaches nobody
        kit.call(watch_once, kit.svc)
        assert kit.client.get("/readyz").status_code == 200


@pytest.fixture
def pings() -> Iterator[HttpReceiver]:
    with http_receiver() as receiver:
        yield receiver


def test_heartbeat_pings_while_healthy_and_stops_when_the_store_fails(
    tmp_path: Path, pings: HttpReceiver
) -> None:
    site = write_site(tmp_path)
    settings = base_settings(site, tmp_path / "data", watch_s=3600.0,
                             heartbeat_url=f"http://{pings.base}/ping/tok123", heartbeat_s=0.05)
    with running_server(settings) as kit:
        wait_until(lambda: len(pings.requests) >= 2, what="heartbeats")
        kit.svc.health.committed(False, "disk full")
        assert not should_beat(kit.svc)
        time.sleep(0.2)  # let a ping already on its way land
        seen = len(pings.requests)
        time.sleep(0.5)  # ten heartbeat periods: none may go out while unhealthy
        assert len(pings.requests) == seen
        kit.svc.health.committed(True)
        wait_until(lambda: len(pings.requests) > seen, what="heartbeats to resume")
