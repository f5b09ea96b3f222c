"""`coverwatch replay` from JSONL against the parsers alone, as ratios in one run.

Writes a FICTIONAL 1 M-line JSONL file (bench/replay.py's grid site and crowd:
1 000 officers x 1 000 s at 1 Hz, ISO times) and measures, interleaved, best of
``--rounds``:

  * ``coverwatch replay SITE FILE --json OUT``, the whole process (this tree's
    code, and with ``--baseline-src DIR`` another tree's, e.g. /work/main/src);
  * pyarrow's JSON reader alone on the same file, in a fresh process (imports
    included, as for the CLI) and timed inside that process (read only);
  * ``json.loads`` and ``orjson.loads`` per line, timed inside a process (the loop
    alone), and ``orjson.loads`` per line as a whole process (start-up included, as
    for the CLI and pyarrow's whole process).

``--cpu`` times every whole process by its CPU time (user + system, ``os.wait4``),
and the loops inside a process by ``time.process_time``, instead of the wall clock: on
a shared, loaded machine the wall clock is mostly the other jobs. Pin it to one core
(``taskset -c 1``) to compare like with like (pyarrow's reader then has one core for
its threads, as the replay has).

The targets (issue 25): replay <= 1.3x pyarrow's JSON reader, and below
``orjson.loads`` per line. Both outputs (this tree and baseline) must agree.

    .venv/bin/python bench/replay_jsonl.py --baseline-src /work/main/src
    taskset -c 1 .venv/bin/python bench/replay_jsonl.py --seconds 1000
    taskset -c 1 .venv/bin/python bench/replay_jsonl.py --cpu --rounds 6 --baseline-src DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import make_scenario, site_yaml, write_jsonl

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

_TIMED = {
    "pyarrow read_json (in process)": (
        "import time, pyarrow as pa, pyarrow.json as pj\n"
        "t = time.perf_counter(); pj.read_json(pa.OSFile({p!r}))\n"
        "print(time.perf_counter() - t)"
    ),
    "json.loads per line (in process)": (
        "import time, json\n"
        "t = time.perf_counter()\n"
        "with open({p!r}, 'rb') as f:\n"
        "    for line in f: json.loads(line)\n"
        "print(time.perf_counter() - t)"
    ),
    "orjson.loads per line (in process)": (
        "import time, orjson\n"
        "t = time.perf_counter()\n"
        "with open({p!r}, 'rb') as f:\n"
        "    for line in f: orjson.loads(line)\n"
        "print(time.perf_counter() - t)"
    ),
}
# msgspec (not a dependency: evaluated as the JSONL parser, bench/README.md "Sixth
# round"), timed when importable: decoding to structs of the fix fields, and taking
# the columns out of them, in 13 MiB blocks as a replay reads.
_MSGSPEC = {
    "msgspec decode_lines (in process)": (
        "import time, msgspec\n"
        "class L(msgspec.Struct, gc=False):\n"
        "    t: int | float | str | None = None\n"
        "    kind: str | None = None\n"
        "    officer: str | None = None\n"
        "    x: float | None = None\n"
        "    y: float | None = None\n"
        "    accuracy_m: float | None = None\n"
        "d = msgspec.json.Decoder(L); f = open({p!r}, 'rb'); cols = {cols}\n"
        "t = time.perf_counter()\n"
        "while b := f.read(13 << 20):\n"
        "    b += f.readline(); rows = d.decode_lines(b)\n"
        "    if cols: c = [[getattr(r, k) for r in rows] for k in L.__struct_fields__]\n"
        "print(time.perf_counter() - t)"
    ),
}
_PROCESS = "import pyarrow as pa, pyarrow.json as pj; pj.read_json(pa.OSFile({p!r}))"
_ORJSON_PROCESS = (
    "import orjson\n"
    "with open({p!r}, 'rb') as f:\n"
    "    for line in f: orjson.loads(line)"
)
_CPU = False  # set by --cpu: whole processes timed by their CPU time, not the wall clock


def _wall(cmd: list[str], env: dict[str, str] | None = None, out: Path | None = None) -> float:
    sink = subprocess.DEVNULL if out is None else out.open("wb")
    try:
        return _timed(cmd, env, sink)
    finally:
        if out is not None:
            sink.close()  # type: ignore[union-attr]


def _timed(cmd: list[str], env: dict[str, str] | None, sink: Any) -> float:
    if _CPU:
        child = subprocess.Popen(cmd, env=env, stdout=sink)
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise subprocess.CalledProcessError(status, cmd)
        return usage.ru_utime + usage.ru_stime
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=sink)
    return time.perf_counter() - t


def _inner(code: str) -> float:
    if _CPU:  # the loop's own CPU time (pyarrow's reader: all its threads')
        code = code.replace("time.perf_counter()", "time.process_time()")
    out = subprocess.run([PY, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--officers", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another tree's src/ to run the same replay with, interleaved")
    parser.add_argument("--cpu", action="store_true",
                        help="time whole processes by CPU time (user + system), not wall")
    args = parser.parse_args()
    global _CPU
    _CPU = args.cpu

    work = Path(tempfile.mkdtemp(prefix="cw-jsonl-"))
    site = work / "site.yaml"
    site.write_text(site_yaml(args.posts))
    events = work / "events.jsonl"
    write_jsonl(make_scenario(args.officers, args.posts, args.seconds), events)
    lines = sum(1 for _ in events.open("rb"))
    print(f"{lines:,} lines, {events.stat().st_size / 2**20:.0f} MiB; {os.cpu_count()} CPUs; "
          f"{_load()}")
    trees = {"replay (this tree)": ROOT / "src"}
    if args.baseline_src is not None:
        trees["replay (baseline)"] = args.baseline_src.resolve()
    cli = [PY, "-c", "from coverwatch.cli import main; main()", "replay", str(site), str(events)]
    times: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        # The first process of a pair runs slower on a loaded machine: alternate the order.
        order = list(trees.items())
        for name, src in order[::-1] if round_no % 2 else order:
            env = {**os.environ, "PYTHONPATH": str(src)}
            out = work / f"out-{len(times)}-{name[8:12]}.jsonl"
            stdout = work / f"stdout-{len(times)}-{name[8:12]}.txt"
            times.setdefault(name, []).append(_wall([*cli, "--json", str(out)], env, stdout))
        times.setdefault("pyarrow read_json (whole process)", []).append(
            _wall([PY, "-c", _PROCESS.format(p=str(events))]))
        times.setdefault("orjson.loads per line (whole process)", []).append(
            _wall([PY, "-c", _ORJSON_PROCESS.format(p=str(events))]))
        for name, code in _TIMED.items():
            times.setdefault(name, []).append(_inner(code.format(p=str(events))))
        if find_spec("msgspec") is not None:
            for name, code in _MSGSPEC.items():
                for cols, label in ((False, name), (True, name[:-1] + ", + columns)")):
                    times.setdefault(label, []).append(
                        _inner(code.format(p=str(events), cols=cols)))
    outs = {p.read_bytes() for p in work.glob("out-*.jsonl")}
    stdouts = {p.read_bytes() for p in work.glob("stdout-*.txt")}
    best = {k: min(v) for k, v in times.items()}
    mid = {k: statistics.median(v) for k, v in times.items()}
    mine, mine_mid = best["replay (this tree)"], mid["replay (this tree)"]
    print(f"\n{'measure (whole processes: ' + ('CPU' if _CPU else 'wall') + ')':<40} "
          f"{'best s':>7} {'median s':>8} {'replay / it':>12} {'(medians)':>9}  runs")
    for name, runs in times.items():
        print(f"{name:<40} {best[name]:>7.2f} {mid[name]:>8.2f} {mine / best[name]:>11.2f}x "
              f"{mine_mid / mid[name]:>8.2f}x  " + ", ".join(f"{r:.2f}" for r in runs))
    if "replay (baseline)" in times:
        base, base_mid = best["replay (baseline)"], mid["replay (baseline)"]
        for name in ("pyarrow read_json (whole process)", "orjson.loads per line (whole process)"):
            print(f"baseline replay / {name}: {base / best[name]:.2f}x best, "
                  f"{base_mid / mid[name]:.2f}x median")
    print(f"\noutputs identical across trees and runs: {'yes' if len(outs) == 1 else 'NO'}")
    print(f"stdout identical across trees and runs: {'yes' if len(stdouts) == 1 else 'NO'}")
    print(_load())
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
