"""A worker process for the takeover tests.

``python busworker.py URL PREFIX ID SITES OUT [SITE_FILE CLOCK_FILE]``

It runs :class:`coverwatch.bus.Worker` over the given sites (comma-separated)
and appends every output to ``OUT`` as a JSON line ``{"worker", "site",
"epoch", "seq", "output"}`` (and ``{"worker", "site", "epoch",
"resumed_after"}`` when it starts on a site), unbuffered, so a SIGKILL loses nothing written.
Without a site file the evaluator is the reference tally; with one it is the
live cover engine (``server/buscover.py``) on that site, and the worker's
clock is the number in ``CLOCK_FILE`` (µs), which the test moves. SIGTERM
stops it cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from coverwatch.bus import BusNames, EventTally, Worker, WorkerSettings, connect
from coverwatch.bus.evaluator import SiteEvaluator
from coverwatch.clock import wall_clock_us
from coverwatch.formats.sitefile import load_site
from coverwatch.server.buscover import BusCover

SECRET = b"test deployment secret"
LATENESS_US = 2_000_000


def _default(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    raise TypeError


async def main(argv: list[str]) -> None:
    url, prefix, worker_id, sites, out = argv[:5]
    factory: Callable[[str, bytes | None], SiteEvaluator] = EventTally
    clock: Callable[[], int] = wall_clock_us
    if len(argv) > 5:
        site = load_site(argv[5])
        clock_file = Path(argv[6])

        def cover(_: str, state: bytes | None) -> SiteEvaluator:
            return BusCover(site, secret=SECRET, lateness_us=LATENESS_US, state=state)

        def file_clock() -> int:
            return int(clock_file.read_text())

        factory, clock = cover, file_clock
    nc = await connect(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with open(out, "ab", buffering=0) as f:

        async def sink(site: str, epoch: int, seq: int, outputs: Sequence[Any]) -> None:
            for o in outputs:
                f.write(orjson.dumps({"worker": worker_id, "site": site, "epoch": epoch,
                                      "seq": seq, "output": o}, default=_default) + b"\n")

        settings = WorkerSettings(lease_s=4.0, renew_s=0.5, checkpoint_s=0.5,
                                  watermark_s=0.5, lateness_s=LATENESS_US / 1e6,
                                  deadman_s=30.0)
        def on_run(site: str, epoch: int, seq: int) -> None:
            f.write(orjson.dumps({"worker": worker_id, "site": site, "epoch": epoch,
                                  "resumed_after": seq}) + b"\n")

        worker = Worker(nc, sites=lambda: sites.split(","), factory=factory,
                        names=BusNames(prefix), sink=sink, settings=settings,
                        worker_id=worker_id, clock_us=clock, on_run=on_run,
                        lease_url=url)
        await worker.start()
        print("ready", flush=True)
        await worker.run(stop)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
