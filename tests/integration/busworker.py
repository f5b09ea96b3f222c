"""A worker process for the takeover test: ``python busworker.py URL PREFIX ID SITES OUT``.

It runs :class:`coverwatch.bus.Worker` with the reference evaluator over the
given sites (comma-separated) and appends every output to ``OUT`` as a JSON
line ``{"worker", "site", "epoch", "seq", "output"}``, flushed at once so a
SIGKILL loses nothing written. It stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from coverwatch.bus import BusNames, EventTally, Worker, WorkerSettings, connect


async def main(url: str, prefix: str, worker_id: str, sites: list[str], out: str) -> None:
    nc = await connect(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with open(out, "ab", buffering=0) as f:

        async def sink(site: str, epoch: int, seq: int, outputs: Sequence[Any]) -> None:
            for o in outputs:
                f.write(orjson.dumps({"worker": worker_id, "site": site, "epoch": epoch,
                                      "seq": seq, "output": o}) + b"\n")

        settings = WorkerSettings(lease_s=4.0, renew_s=0.5, checkpoint_s=0.5,
                                  watermark_s=0.5, deadman_s=30.0)
        worker = Worker(nc, sites=lambda: sites, factory=EventTally, names=BusNames(prefix),
                        sink=sink, settings=settings, worker_id=worker_id)
        await worker.start()
        print("ready", flush=True)
        await worker.run(stop)
    await nc.close()


if __name__ == "__main__":
    url, prefix, wid, sites, out = sys.argv[1:6]
    asyncio.run(main(url, prefix, wid, sites.split(","), out))
