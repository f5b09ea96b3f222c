"""A worker's shutdown releases every lease, even when its caller stops waiting.

``server/cluster.py`` gives the worker's shutdown a few seconds, then cancels it. With a
thousand sites the release of the leases (one delete each, together) may still be under
way then; cancelled with it, the leases were left to expire and the next owner waited
6 s and a round. The release now goes on (shielded) and the caller can wait for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from coverwatch.bus import Worker, WorkerSettings


class _Leases:
    """The worker's lease table, each release taking a while (a busy NATS)."""

    def __init__(self, names: list[str]) -> None:
        self.revisions = {n: 1 for n in names}
        self.released: list[str] = []

    async def release(self, name: str) -> None:
        self.revisions.pop(name, None)
        await asyncio.sleep(0.2)
        self.released.append(name)

    async def leave(self) -> None:
        return None


class _View:
    async def stop(self) -> None:
        return None


class _Client:
    def jetstream(self) -> Any:
        return object()


def test_a_cancelled_shutdown_still_releases_every_lease() -> None:
    names = [f"site-{i:04d}" for i in range(1000)]

    async def scenario() -> _Leases:
        worker = Worker(_Client(), sites=lambda: names, factory=lambda *_: None,  # type: ignore[arg-type]
                        settings=WorkerSettings(handover_s=0.1))
        leases = _Leases(names)
        worker.leases = leases  # type: ignore[assignment]
        worker.view = _View()  # type: ignore[assignment]
        closing = asyncio.ensure_future(worker.close())
        await asyncio.sleep(0.05)  # the releases are in flight
        closing.cancel()  # the caller's bound ran out
        await asyncio.gather(closing, return_exceptions=True)
        released = getattr(worker, "released", None)  # what server/cluster.py waits for
        if released is not None:
            await asyncio.wait({released}, timeout=2.0)
        await asyncio.sleep(0.3)
        return leases

    leases = asyncio.run(scenario())
    assert sorted(leases.released) == names
