"""Saving the sites' small state values together: every site's ticker saves its live
horizon each second, and with a hundred sites in one process that was a hundred commits
(each an fsync) a second, most of an idle server's time. Saves made in the same turn of
the event loop, and while the previous save is being written, go in one transaction.

Only for stores without an owner's fence (one process): in distributed mode each write
is conditional on its own site's lease, so the caller saves per site as before."""

from __future__ import annotations

import asyncio
import weakref

from sqlalchemy import Engine

from coverwatch.storage import Store

__all__ = ["save_state"]


class _Saver:
    """The values waiting for the next transaction, and that transaction's outcome."""

    def __init__(self, store: Store) -> None:
        self.store = store  # any store of the engine: the rows name their sites
        self.waiting: dict[tuple[str, str], str] = {}
        self.done: asyncio.Future[None] | None = None
        self.writing = asyncio.Lock()  # one transaction at a time: a value never goes back

    async def save(self, site: str, key: str, value: str) -> None:
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._write(self.done))
        done = self.done
        self.waiting[(site, key)] = value
        await asyncio.shield(done)

    async def _write(self, done: asyncio.Future[None]) -> None:
        await asyncio.sleep(0)  # the other sites' ticks of this turn join
        async with self.writing:
            values, self.waiting, self.done = self.waiting, {}, None
            try:
                await asyncio.to_thread(self.store.set_states_of_sites, values)
            except Exception as e:  # each caller's health records it, as for its own save
                done.set_exception(e)
                done.exception()  # retrieved: a caller cancelled meanwhile must not log it
            else:
                done.set_result(None)


_savers: weakref.WeakKeyDictionary[Engine, dict[asyncio.AbstractEventLoop, _Saver]] = \
    weakref.WeakKeyDictionary()


async def save_state(store: Store, key: str, value: str) -> None:
    """Save ``value`` under ``key`` for ``store``'s site, durably, with other sites' saves
    of the moment; raises what the write raised."""
    if store.fence_check is not None:
        await asyncio.to_thread(store.set_state, key, value)
        return
    loop = asyncio.get_running_loop()
    by_loop = _savers.setdefault(store.engine, {})
    saver = by_loop.get(loop)
    if saver is None:
        for old in [lp for lp in by_loop if lp.is_closed()]:
            del by_loop[old]
        saver = by_loop[loop] = _Saver(store)
    await saver.save(store.site, key, value)
