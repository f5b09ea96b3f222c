"""The distributed owner's check of silent devices reads every owned site's devices' newest
reports in one query a second, not one query per site per second (issue 26, idle cost).

``last_reports_of_sites`` must answer, for each site, exactly what that site's store's
``last_device_reports`` answers; ``ClusterWorker.device_reports`` must read all the owned
sites at once and then serve the other sites of the same second from that read.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from conftest import Database
from coverwatch.server.clusterworker import ClusterWorker
from coverwatch.storage import open_store
from coverwatch.storage.devicereports import last_reports_of_sites

SITES = ["north", "south", "east"]


def _report(device: str, t: int, battery: float) -> dict[str, Any]:
    return {"device": device, "officer": f"{device}-officer", "t_us": t, "battery": battery,
            "source": "device"}


def _fill(migrated: Database) -> dict[str, Any]:
    stores = {s: open_store(migrated.url, migrated.data_dir, site=s) for s in SITES}
    for n, (site, store) in enumerate(stores.items()):
        for t in range(3):  # three reports of two devices each; the newest one counts
            store.append_events([], reports=[_report(f"{site}-a", 1_000_000 * t, 50.0 + t),
                                             _report(f"{site}-b", 1_000_000 * t + n, 10.0)])
    return stores


def test_one_query_answers_each_site_as_its_own_store_does(migrated: Database) -> None:
    stores = _fill(migrated)
    try:
        engine = stores["north"].engine
        got = last_reports_of_sites(engine, [*SITES, "nowhere"])
        for site, store in stores.items():
            assert got[site] == store.last_device_reports()
            assert set(got[site]) == {f"{site}-a", f"{site}-b"}
            assert got[site][f"{site}-a"]["battery"] == 52.0
        assert got["nowhere"] == {}
        assert last_reports_of_sites(engine, []) == {}
    finally:
        for store in stores.values():
            store.close()


def test_the_owner_reads_all_its_sites_once_a_second(migrated: Database,
                                                     monkeypatch: Any) -> None:
    stores = _fill(migrated)
    calls: list[set[str]] = []
    real = last_reports_of_sites

    def counted(engine: Any, sites: Any) -> Any:
        calls.append(set(sites))
        return real(engine, sites)

    monkeypatch.setattr("coverwatch.server.clusterworker.last_reports_of_sites", counted)
    try:
        # The batching needs the owned runs, the sites' stores and the engine only.
        cw: Any = ClusterWorker.__new__(ClusterWorker)
        cw.sites = {s: SimpleNamespace(store=stores[s]) for s in SITES}
        cw.worker = SimpleNamespace(runs={s: object() for s in SITES})
        cw.engine = stores["north"].engine
        cw._reports, cw._reports_at, cw._reports_lock = {}, -(1 << 62), asyncio.Lock()

        async def second(now: int) -> dict[str, Any]:
            return {s: await cw.device_reports(s, now) for s in SITES}

        first = asyncio.run(second(10_000_000))
        assert calls == [set(SITES)]  # one read for the three sites
        assert first == {s: stores[s].last_device_reports() for s in SITES}
        asyncio.run(second(10_500_000))
        assert len(calls) == 1  # the same second: nothing read again
        asyncio.run(second(11_000_000))
        assert len(calls) == 2  # a second later: one read again
    finally:
        for store in stores.values():
            store.close()
