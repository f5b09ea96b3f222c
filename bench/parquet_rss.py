"""Peak RSS of `coverwatch replay` on Parquet files of growing length (issue 25).

Writes FICTIONAL day files with bench/replay.py's ``_day_chunks`` (1 000 officers at
1 Hz, 200 posts; ``--hours``, default 1 and 24) and runs ``coverwatch replay SITE FILE
--json OUT`` on each, in a fresh process, for this tree and (``--baseline-src DIR``)
another, printing peak RSS (``/usr/bin/time``'s maximum resident set) and each file's
peak against the shortest file's. Target: the longest within 10 % of the shortest.

    .venv/bin/python bench/parquet_rss.py --baseline-src /work/main/src
    .venv/bin/python bench/parquet_rss.py --hours 1 4 12 --workdir /tmp/cwpq
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import PARQUET_SCHEMA, _day_chunks, site_yaml

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _peak_kib(src: Path, site: Path, events: Path, out: Path) -> int:
    """Peak RSS in KiB of one replay (resource usage of the waited-for child)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [PY, "-c", "from coverwatch.cli import main; main()", "replay", str(site),
         str(events), "--json", str(out)],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(src)},
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise RuntimeError("peak RSS not measurable: an earlier child peaked higher")
    return after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, nargs="+", default=[1, 24])
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work: Path = args.workdir or Path(tempfile.mkdtemp(prefix="cw-pqrss-"))
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site.yaml"
    site.write_text(site_yaml(200))
    trees = {"this tree": ROOT / "src"}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    print(f"{os.cpu_count()} CPUs; {_load()}")
    peaks: dict[str, list[int]] = {name: [] for name in trees}
    for hours in sorted(args.hours):
        path = work / f"h{hours}.parquet"
        if not path.exists():
            with pq.ParquetWriter(path, PARQUET_SCHEMA) as w:
                for table in _day_chunks(1000, 200, 3600 * hours, 600):
                    w.write_table(table, row_group_size=1 << 20)
        outs: set[bytes] = set()
        for name, src in trees.items():
            out = work / f"out-{hours}-{len(outs)}.jsonl"
            # ru_maxrss of children is a running maximum: run each replay in its own
            # measuring process so an earlier, larger child cannot hide this one.
            peak = int(subprocess.run(
                [PY, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import parquet_rss as m;"
                 " print(m._peak_kib(*map(m.Path, sys.argv[2:])))",
                 str(Path(__file__).resolve().parent), str(src), str(site), str(path), str(out)],
                check=True, capture_output=True, text=True).stdout)  # fmt: skip
            peaks[name].append(peak)
            outs.add(out.read_bytes())
        row = ", ".join(f"{name} {p[-1] / 1024:.0f} MiB ({p[-1] / p[0] - 1:+.1%} on "
                        f"{min(args.hours)} h)" for name, p in peaks.items())
        print(f"{hours:>3} h, {3_600_000 * hours:,} fixes: {row}; outputs "
              f"{'identical' if len(outs) == 1 else 'DIFFER'}; {_load()}", flush=True)
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
