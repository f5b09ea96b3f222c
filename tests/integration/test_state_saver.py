"""Sites' state saved together (server/statesaver.py): the saves of one turn of the event
loop are one transaction, a value never goes back, and a failure reaches every caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event

from coverwatch.server.statesaver import save_state
from coverwatch.storage import open_store


def test_a_hundred_sites_saves_of_one_turn_are_one_commit(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    sites = [store.for_site(f"s{n:03d}") for n in range(100)]

    async def run() -> None:
        await asyncio.gather(*(save_state(s, "live.horizon_us", "7") for s in sites))
        # Two values of one site in one turn: the later one is what stays.
        await asyncio.gather(*(save_state(s, "live.horizon_us", str(v))
                               for s in sites[:3] for v in (8, 9)))
    try:
        asyncio.run(run())
        assert len(commits) == 2
        assert [s.get_state("live.horizon_us") for s in sites[:4]] == ["9", "9", "9", "7"]
        assert all(s.get_state("live.horizon_us") == "7" for s in sites[3:])
    finally:
        store.close()


def test_a_failed_save_reaches_every_site_that_waited_on_it(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    sites = [store.for_site(f"s{n}") for n in range(3)]

    def broken(_conn: object) -> None:
        raise RuntimeError("disk full")

    event.listen(store.engine, "commit", broken)

    async def run() -> list[BaseException | None]:
        return await asyncio.gather(*(save_state(s, "k", "v") for s in sites),
                                    return_exceptions=True)
    try:
        outcomes = asyncio.run(run())
        assert [type(o) for o in outcomes] == [RuntimeError] * 3
        event.remove(store.engine, "commit", broken)
        asyncio.run(save_state(sites[0], "k", "again"))  # the saver is usable after it
        assert sites[0].get_state("k") == "again"
    finally:
        store.close()


def test_a_fenced_store_saves_alone(tmp_path: Path) -> None:
    """Distributed mode: each owner's write is conditional on its own lease."""
    store = open_store(None, tmp_path)
    fenced = store.for_site("owned")
    checked: list[str] = []
    fenced.fence_check = lambda _conn: checked.append("owned")
    try:
        asyncio.run(save_state(fenced, "k", "v"))
        assert checked == ["owned"] and fenced.get_state("k") == "v"
    finally:
        store.close()
