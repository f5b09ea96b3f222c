"""Distributed mode: SIGTERM to a worker that owns many sites (issue 26).

A worker owns 40 quiet sites; a second worker starts beside it; the first gets SIGTERM.
It must exit having released every lease it held (none of them left to expire: at the
moment it has exited, no site's lease names it), within the bounds of its shutdown
(``bus/worker.py``: runs stopped together, their last checkpoints waited for
``handover_s`` in all, the leases released together; it logs when a bound is hit), and
the other worker must own every site soon after. The times are printed (bench/idle.py --term
measures them at 1 000 sites).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from clusterkit import ServeProcess, postgres_schema
from natskit import NATS_URL, cleanup, need_nats, unique_names

from coverwatch.bus import BusNames, connect, open_bucket

SITES = 40

QUIET_SITE = """\
site: {site_id}
name: Quiet Depot {n} (fictional)
origin: {{lat: 51.5, lon: -0.12}}
timezone: UTC
flags: {{open-hours: false}}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {{id: cover, need: 1, within_m: 25, grace_s: 10, when: open-hours}}
"""


async def _owners(names: BusNames) -> dict[str, str]:
    """Each site lease's owner, as the leases bucket holds them now."""
    nc = await connect(NATS_URL)
    try:
        kv = await open_bucket(nc.jetstream(), names.leases)
        try:
            keys = [k for k in await kv.keys() if k.startswith("site.")]
        except Exception:  # no keys at all
            return {}
        out = {}
        for key in keys:
            try:
                entry = await kv.get(key)
            except Exception:  # deleted meanwhile
                continue
            if entry.value:
                out[key[5:]] = str(orjson.loads(entry.value)["owner"])
        return out
    finally:
        await nc.close()


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def _stopped_at_exit(procs: list[ServeProcess]) -> Iterator[None]:
    """Stop the servers before their schema is dropped (a worker still writing made
    ``DROP SCHEMA … CASCADE`` deadlock with it)."""
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def test_sigterm_to_a_worker_of_many_sites_releases_them_all(tmp_path: Path) -> None:
    need_nats()
    names = unique_names()
    paths = []
    for n in range(SITES):
        path = tmp_path / "sites" / f"quiet-{n:03d}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(QUIET_SITE.format(site_id=f"quiet-{n:03d}", n=n), encoding="utf-8")
        paths.append(path)
    more = [a for p in paths[1:] for a in ("--site", str(p))]
    data = tmp_path / "data"
    procs: list[ServeProcess] = []
    try:
        with postgres_schema(data) as db, _stopped_at_exit(procs):
            first = ServeProcess(paths[0], data, db, names, "worker", tmp_path / "first.log",
                                 *more).start()
            procs.append(first)
            assert _wait(lambda: len(asyncio.run(_owners(names))) == SITES, 120), \
                "the first worker never owned every site"
            (mine,) = set(asyncio.run(_owners(names)).values())
            procs.append(ServeProcess(paths[0], data, db, names, "worker",
                                      tmp_path / "other.log", *more).start())
            held = sum(1 for o in asyncio.run(_owners(names)).values() if o == mine)
            assert first.proc is not None
            start = time.monotonic()
            first.proc.send_signal(signal.SIGTERM)
            first.proc.wait(60)
            stopped = time.monotonic() - start
            left = [s for s, o in asyncio.run(_owners(names)).items() if o == mine]
            assert not left, f"{len(left)} leases left to expire: {left[:5]}"
            log = first.log.read_text(errors="replace")
            assert "not all" not in log, log[-3000:]  # the shutdown's bounds were not hit

            def all_moved() -> bool:
                owners = asyncio.run(_owners(names))
                return len(owners) == SITES and mine not in owners.values()

            assert _wait(all_moved, 60), "the other worker did not take every site"
            taken = time.monotonic() - start
            print(f"SIGTERM to a worker of {held} of {SITES} sites: stopped after "
                  f"{stopped:.2f} s, every site owned by the other after {taken:.2f} s")
    finally:
        for p in procs:
            p.stop()
        asyncio.run(cleanup(NATS_URL, names))
