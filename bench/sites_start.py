"""Start of one ``coverwatch serve`` over many sites (the embedded SQLite store): wall and
CPU time until it answers ``/healthz``, a first start and a restart, code trees interleaved.

For each count of sites it writes that many quiet fictional sites (bench/idle.py's), then
for each tree in turn starts ``serve`` on a fresh data directory, stops it, starts it again
(the restart: every site has its stored versions, orders and checkpoint), and prints the
seconds until ready and the server's CPU seconds by then. Compare rows of one run: the
machine is shared (the load average is printed).

    PYTHONPATH=src .venv/bin/python bench/sites_start.py --sites 100,1000 \\
        --src src,/path/to/base/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from idle import _cpu_s, _free_port, _ready, write_sites  # bench/ is the script's directory

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]


def start_once(sites: list[Path], data: Path, src: Path) -> tuple[float, float]:
    """Seconds until ``/healthz`` answers and the server's CPU seconds by then."""
    port = _free_port()
    cmd = [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
           *(a for s in sites for a in ("--site", str(s))), "--data-dir", str(data),
           "--port", str(port)]
    log = data / "serve.log"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(src)})
    try:
        _ready(proc, f"http://127.0.0.1:{port}", log)
        return time.monotonic() - t0, _cpu_s(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="100,1000")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="code trees, comma-separated, started in turn")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cw-sites-start-"))
    srcs = [Path(p).resolve() for p in args.src.split(",")]
    print(f"serve start (SQLite), files in {work}")
    print(f"{'code':<28} {'sites':>6} {'first s':>8} {'CPU s':>7} {'restart s':>10} "
          f"{'CPU s':>7} {'load':>5}", flush=True)
    for count in (int(c) for c in args.sites.split(",")):
        sites = write_sites(work / f"sites-{count}", count)
        for src in srcs:
            data = work / f"data-{count}-{uuid.uuid4().hex[:6]}"
            first = start_once(sites, data, src)
            again = start_once(sites, data, src)
            print(f"{str(src)[-28:]:<28} {count:>6} {first[0]:>8.1f} {first[1]:>7.1f} "
                  f"{again[0]:>10.1f} {again[1]:>7.1f} {os.getloadavg()[0]:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
