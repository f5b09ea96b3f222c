"""Writers of one process wait for each other in the process, not in SQLite's busy
handler (which sleeps up to 100 ms a try while the writer ahead commits: with a hundred
sites each saving its state every second, the sleeps were most of a server's time)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event

from coverwatch.storage import open_store

THREADS, WRITES = 8, 40


def _write_concurrently(tmp_path: Path) -> tuple[list[BaseException], list[str | None]]:
    store = open_store(None, tmp_path)
    # No busy wait at all: a writer that finds the database locked fails at once, so any
    # two writers of this process meeting inside SQLite show as an error.
    event.listen(store.engine, "connect",
                 lambda conn, _rec: conn.execute("PRAGMA busy_timeout = 0"))
    store.engine.dispose()
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def writer(n: int) -> None:
        site = store.for_site(f"site-{n}")
        start.wait()
        for k in range(WRITES):
            try:
                site.set_state("live.horizon_us", str(k))
            except Exception as e:  # every failure is the finding
                failures.append(e)
    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        last = [store.for_site(f"site-{n}").get_state("live.horizon_us") for n in range(THREADS)]
    finally:
        store.close()
    return failures, last


def test_writers_of_one_process_never_meet_inside_sqlite(tmp_path: Path) -> None:
    failures, last = _write_concurrently(tmp_path)
    assert not failures, f"{len(failures)} writes found the database locked: {failures[0]!r}"
    assert last == [str(WRITES - 1)] * THREADS
