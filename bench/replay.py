"""Replay benchmark: fixes/s of the cover engine and of `coverwatch replay`.

Generates a synthetic, FICTIONAL site (point posts, one cover rule each, mixed
capabilities) and officers fixing at 1 Hz - most dwelling near their post with
GPS jitter, about a fifth roaming the site - and measures, in one run:

  (a) the engine alone on fixes already in memory (fed in slices as a replay does),
  (b) the brute-force reference evaluator (tests/reference.py) on the first few
      seconds, and the engine's per-fix speed-up over it (both results must agree),
  (c) `coverwatch replay` end to end, as a subprocess, from JSONL and from Parquet.

With --day it instead writes a 24 h Parquet file (streamed in row groups) and
replays it, reporting throughput and the child's peak RSS.

    .venv/bin/python bench/replay.py                 # default run, < 2 minutes
    .venv/bin/python bench/replay.py --day           # 86.4 M fixes; needs ~2 GB of disk
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from coverwatch.domain.events import (
    ControlEvent,
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
)
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import replay_sorted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference

__all__ = ["Crowd", "main", "site_yaml"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "coverwatch"
T0_S = int(datetime(2026, 3, 22, 6, 0, tzinfo=UTC).timestamp())
CAPABILITIES = (None, "armed", None, "medic", "armed")
GRID_M = 100.0
ROAM_SPEED_MPS = 1.4
F64 = npt.NDArray[np.float64]

TARGET_ENGINE = 5_000_000
TARGET_RATIO = 50.0
TARGET_JSONL = 500_000
TARGET_PARQUET = 2_000_000


# --------------------------------------------------------------------------
# The synthetic site and crowd


def _post_xy(i: int, columns: int) -> tuple[float, float]:
    return (i % columns) * GRID_M, (i // columns) * GRID_M


def site_yaml(posts: int) -> str:
    """A fictional site: ``posts`` point posts on a 100 m grid, one rule each."""
    columns = max(1, int(np.ceil(np.sqrt(posts * 2))))
    lines = [
        "# A FICTIONAL benchmark site; it models no real place.",
        "site: bench-grid",
        "name: Benchmark Grid (fictional)",
        "stale_after_s: 30",
        "flags: {open-hours: false}",
        "posts:",
    ]
    for i in range(posts):
        x, y = _post_xy(i, columns)
        within = 15 + 5 * (i % 3)
        lines += [
            f"  - id: p{i:04d}",
            f"    at: [{x:g}, {y:g}]",
            "    rules:",
            "      - id: cover",
            f"        need: {1 + (i % 4 == 0)}",
            f"        within_m: {within}",
            f"        release_m: {within + 5}",
            f"        grace_s: {20 * (i % 4)}",
        ]
        cap = CAPABILITIES[i % len(CAPABILITIES)]
        if cap is not None:
            lines.append(f"        capability: {cap}")
        if i % 2:
            lines.append("        when: open-hours")
    return "\n".join(lines) + "\n"


def officer_name(k: int) -> str:
    return f"o{k:04d}"


def officer_capabilities(k: int) -> list[str]:
    return [c for c, every in (("armed", 3), ("medic", 5)) if k % every == 0]


class Crowd:
    """Officers moving at 1 Hz: dwellers jitter near their post, roamers wander."""

    def __init__(self, officers: int, posts: int, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        columns = max(1, int(np.ceil(np.sqrt(posts * 2))))
        rows = (posts + columns - 1) // columns
        self.bounds = (-50.0, -50.0, (columns - 1) * GRID_M + 50, (rows - 1) * GRID_M + 50)
        home = np.arange(officers) % posts
        hx = np.array([_post_xy(int(i), columns)[0] for i in home])
        hy = np.array([_post_xy(int(i), columns)[1] for i in home])
        # Where each dweller stands: mostly close, some at the edge of the radius.
        r = self.rng.uniform(0, 25, officers)
        a = self.rng.uniform(0, 2 * np.pi, officers)
        self.anchor_x = hx + r * np.cos(a)
        self.anchor_y = hy + r * np.sin(a)
        self.roaming = self.rng.random(officers) < 0.2
        self.x = self.anchor_x.copy()
        self.y = self.anchor_y.copy()
        self.heading = self.rng.uniform(0, 2 * np.pi, officers)
        self.accuracy = np.round(self.rng.uniform(2, 10, officers), 1)

    def seconds(self, n: int) -> tuple[F64, F64, F64]:
        """The next ``n`` seconds of fixes: x, y, accuracy, each (n, officers), in cm steps."""
        k = len(self.x)
        xs = np.empty((n, k))
        ys = np.empty((n, k))
        roam = self.roaming
        lo_x, lo_y, hi_x, hi_y = self.bounds
        for s in range(n):
            self.heading[roam] += self.rng.normal(0, 0.3, int(roam.sum()))
            self.x[roam] += ROAM_SPEED_MPS * np.cos(self.heading[roam])
            self.y[roam] += ROAM_SPEED_MPS * np.sin(self.heading[roam])
            out = (self.x < lo_x) | (self.x > hi_x) | (self.y < lo_y) | (self.y > hi_y)
            self.heading[out] += np.pi  # turn back at the fence
            np.clip(self.x, lo_x, hi_x, out=self.x)
            np.clip(self.y, lo_y, hi_y, out=self.y)
            xs[s] = self.x
            ys[s] = self.y
        jitter = ~roam
        xs[:, jitter] = self.anchor_x[jitter] + self.rng.normal(0, 4, (n, int(jitter.sum())))
        ys[:, jitter] = self.anchor_y[jitter] + self.rng.normal(0, 4, (n, int(jitter.sum())))
        # Whole centimetres: JSONL text and Parquet doubles then hold the same values.
        xs = np.rint(xs * 100) / 100
        ys = np.rint(ys * 100) / 100
        acc = np.broadcast_to(self.accuracy, (n, k)).copy()
        return xs, ys, acc


def control_events(officers: int, seconds: int) -> list[dict[str, object]]:
    """Open hours on at the start, a 60 s closure mid-run, and everyone on duty."""
    out: list[dict[str, object]] = [{"t": T0_S, "kind": "flag", "flag": "open-hours", "on": True}]
    out += [
        {"t": T0_S, "kind": "duty", "officer": officer_name(k), "on": True,
         "capabilities": officer_capabilities(k)}
        for k in range(officers)
    ]  # fmt: skip
    if seconds > 120:
        mid = T0_S + seconds // 2
        out.append({"t": mid, "kind": "flag", "flag": "open-hours", "on": False})
        out.append({"t": mid + 60, "kind": "flag", "flag": "open-hours", "on": True})
    return out


def _control_objects(records: list[dict[str, object]]) -> list[ControlEvent]:
    """The control records as engine events; officer ints in first-seen order, seq = line."""
    events: list[ControlEvent] = []
    for seq, rec in enumerate(records, 1):
        t = int(rec["t"]) * US_PER_S  # type: ignore[call-overload]
        if rec["kind"] == "flag":
            events.append(FlagEvent(t, str(rec["flag"]), bool(rec["on"]), seq))
        else:
            k = int(str(rec["officer"])[1:])
            caps = frozenset(rec["capabilities"])  # type: ignore[call-overload]
            events.append(DutyEvent(t, k, bool(rec["on"]), caps, seq))
    return events


@dataclass
class Scenario:
    """One synthetic run held in memory: control records and fix grids."""

    officers: int
    seconds: int
    control: list[dict[str, object]]
    x: F64
    y: F64
    accuracy: F64

    @property
    def fixes(self) -> int:
        return self.officers * self.seconds

    def fix_columns(self, seconds: int | None = None) -> FixColumns:
        """Fixes of the first ``seconds`` in file order; seq continues after the control lines."""
        n = self.seconds if seconds is None else seconds
        k = self.officers
        t = np.repeat((T0_S + np.arange(n, dtype=np.int64)) * US_PER_S, k)
        officer = np.tile(np.arange(k, dtype=np.int32), n)
        seq = len(self.control) + 1 + np.arange(n * k, dtype=np.int64)
        return FixColumns(
            t, officer, self.x[:n].ravel(), self.y[:n].ravel(), self.accuracy[:n].ravel(), seq
        )


def make_scenario(officers: int, posts: int, seconds: int) -> Scenario:
    crowd = Crowd(officers, posts)
    x, y, acc = crowd.seconds(seconds)
    return Scenario(officers, seconds, control_events(officers, seconds), x, y, acc)


# --------------------------------------------------------------------------
# Files


def _iso(t_s: int) -> str:
    return str(format_time(t_s * US_PER_S))


def write_jsonl(sc: Scenario, path: Path) -> None:
    import orjson

    # In time order, as a recorded stream is: each second's control events, then its fixes.
    by_second: dict[int, list[dict[str, object]]] = {}
    for rec in sc.control:
        by_second.setdefault(int(rec["t"]) - T0_S, []).append(rec)  # type: ignore[call-overload]
    with path.open("wb") as f:
        names = [officer_name(k) for k in range(sc.officers)]
        for s in range(sc.seconds):
            for rec in by_second.get(s, ()):
                f.write(orjson.dumps({**rec, "t": _iso(int(rec["t"]))}) + b"\n")  # type: ignore[call-overload]
            ts = _iso(T0_S + s)
            rows = zip(names, sc.x[s].tolist(), sc.y[s].tolist(), sc.accuracy[s].tolist(),
                       strict=True)  # fmt: skip
            f.write("".join(
                f'{{"t":"{ts}","kind":"fix","officer":"{n}","x":{x},"y":{y},"accuracy_m":{a}}}\n'
                for n, x, y, a in rows
            ).encode())  # fmt: skip


PARQUET_SCHEMA = pa.schema([
    ("t", pa.timestamp("us", "UTC")), ("kind", pa.string()), ("officer", pa.string()),
    ("x", pa.float64()), ("y", pa.float64()), ("accuracy_m", pa.float64()),
    ("flag", pa.string()), ("on", pa.bool_()), ("capabilities", pa.list_(pa.string())),
])  # fmt: skip


def _control_table(control: list[dict[str, object]]) -> pa.Table:
    cols: dict[str, list[object]] = {name: [] for name in PARQUET_SCHEMA.names}
    for rec in control:
        for name in PARQUET_SCHEMA.names:
            value = rec.get(name)
            cols[name].append(int(value) * US_PER_S if name == "t" else value)  # type: ignore[call-overload]
    return pa.table(cols, schema=PARQUET_SCHEMA)


def _fix_table(first_s: int, x: F64, y: F64, acc: F64, names: pa.Array) -> pa.Table:
    n, k = x.shape
    t = np.repeat((T0_S + first_s + np.arange(n, dtype=np.int64)) * US_PER_S, k)
    officer = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(k, dtype=np.int32), n)), names
    ).dictionary_decode()
    rows = n * k
    kind = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, np.int32)), pa.array(["fix"])
    ).dictionary_decode()
    return pa.table([
        pa.array(t, PARQUET_SCHEMA.field("t").type), kind, officer,
        pa.array(x.ravel()), pa.array(y.ravel()), pa.array(acc.ravel()),
        pa.nulls(rows, pa.string()), pa.nulls(rows, pa.bool_()),
        pa.nulls(rows, pa.list_(pa.string())),
    ], schema=PARQUET_SCHEMA)  # fmt: skip


def write_parquet(sc: Scenario, path: Path) -> None:
    """In time order: each second's control rows go before that second's fixes."""
    names = pa.array([officer_name(k) for k in range(sc.officers)])
    starts = sorted({int(r["t"]) - T0_S for r in sc.control})  # type: ignore[call-overload]
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as w:
        bounds = [*starts, sc.seconds]
        if bounds[0] != 0:
            bounds.insert(0, 0)
        for lo, hi in itertools.pairwise(bounds):
            rows = [r for r in sc.control if int(r["t"]) - T0_S == lo]  # type: ignore[call-overload]
            if rows:
                w.write_table(_control_table(rows))
            if hi > lo:
                w.write_table(_fix_table(lo, sc.x[lo:hi], sc.y[lo:hi], sc.accuracy[lo:hi], names),
                              row_group_size=1 << 20)


# --------------------------------------------------------------------------
# Measurements


@dataclass
class Figure:
    what: str
    fixes: int
    seconds: float
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.fixes / self.seconds if self.seconds > 0 else float("inf")


def _engine_run(site: Site, fixes: FixColumns, control: list[ControlEvent]) -> tuple[float, int]:
    t = time.perf_counter()
    result = replay_sorted(site, [EventBatch(fixes, control)])
    return time.perf_counter() - t, len(result.lapses)


def run_cli(args: list[str]) -> tuple[float, int, int]:
    """Run `coverwatch` with ``args``; returns (wall seconds, exit code, peak RSS in MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(SCRIPT), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        print(f"  coverwatch {' '.join(args)} failed ({proc.returncode}):\n{err}", file=sys.stderr)
    return wall, proc.returncode, usage.ru_maxrss // 1024


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _table(figures: list[Figure]) -> None:
    print(f"\n{'measurement':<44} {'fixes':>11} {'time s':>8} {'fixes/s':>12} "
          f"{'target':>16} {'':>4}  note")  # fmt: skip
    for f in figures:
        verdict = "" if f.ok is None else ("PASS" if f.ok else "MISS")
        fixes, rate = (f"{f.fixes:,}", f"{f.rate:,.0f}") if f.fixes else ("-", "-")
        secs = f"{f.seconds:.2f}" if f.fixes or not f.note else "-"
        print(f"{f.what:<44} {fixes:>11} {secs:>8} {rate:>12} "
              f"{f.target:>16} {verdict:>4}  {f.note}")  # fmt: skip


def bench(officers: int, posts: int, seconds: int, ref_seconds: int, workdir: Path) -> None:
    print(f"coverwatch replay benchmark: {posts} posts, {officers} officers, {seconds} s at 1 Hz "
          f"= {officers * seconds:,} fixes; {os.cpu_count()} CPUs; {_load()}")  # fmt: skip
    site_path = workdir / "site.yaml"
    site_path.write_text(site_yaml(posts))
    site = load_site(site_path)
    t = time.perf_counter()
    sc = make_scenario(officers, posts, seconds)
    print(f"  generated in {time.perf_counter() - t:.1f} s")
    control = _control_objects(sc.control)
    figures: list[Figure] = []

    # (a) The engine alone, fixes in memory; best of three.
    fixes = sc.fix_columns()
    best = min(_engine_run(site, fixes, control)[0] for _ in range(3))
    lapses = _engine_run(site, fixes, control)[1]
    engine = Figure("(a) engine alone, in memory (best of 3)", sc.fixes, best,
                    f">= {TARGET_ENGINE / 1e6:g} M/s", sc.fixes / best >= TARGET_ENGINE,
                    f"{lapses:,} lapses")  # fmt: skip
    figures.append(engine)

    # (b) The brute-force reference on the first few seconds, and the engine on the same.
    sub = sc.fix_columns(ref_seconds)
    head = [e for e in control if e.t < T0_S * US_PER_S + ref_seconds * US_PER_S]
    ref_events: list[reference.Event] = [
        reference.Fix(int(sub.t[i]), int(sub.officer[i]), float(sub.x[i]), float(sub.y[i]),
                      float(sub.accuracy[i]), int(sub.seq[i]))
        for i in range(len(sub))
    ]  # fmt: skip
    ref_events += head
    t = time.perf_counter()
    ref = reference.evaluate_reference(site, ref_events)
    ref_time = time.perf_counter() - t
    mine = replay_sorted(site, [EventBatch(sub, head)])
    agree = ref.lapses == mine.lapses
    ref_fig = Figure(f"(b) reference evaluator, first {ref_seconds} s", len(sub), ref_time,
                     note=f"{len(ref.lapses)} lapses; engine agrees: {'yes' if agree else 'NO'}")
    figures.append(ref_fig)
    ratio = engine.rate / ref_fig.rate
    figures.append(Figure("    engine (a) / reference (b), per fix", 0, 1.0,
                          f">= {TARGET_RATIO:g}x", ratio >= TARGET_RATIO and agree,
                          f"{ratio:,.0f}x"))  # fmt: skip

    # (c) The CLI end to end from JSONL and Parquet; startup measured on an empty file.
    empty = workdir / "empty.jsonl"
    empty.write_text("")
    startup = min(run_cli(["replay", str(site_path), str(empty)])[0] for _ in range(2))
    for fmt, target in (("jsonl", TARGET_JSONL), ("parquet", TARGET_PARQUET)):
        path = workdir / f"events.{fmt}"
        t = time.perf_counter()
        (write_jsonl if fmt == "jsonl" else write_parquet)(sc, path)
        written = time.perf_counter() - t
        out = workdir / f"lapses-{fmt}.jsonl"
        # Best of three, as for the engine: one run can lose a second to the scheduler.
        runs = [run_cli(["replay", str(site_path), str(path), "--json", str(out)])
                for _ in range(3)]
        wall = min(r[0] for r in runs)
        code = max(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        spread = f"runs {', '.join(f'{r[0]:.2f}' for r in runs)} s; "
        same = out.exists() and out.read_bytes() == (workdir / "lapses-jsonl.jsonl").read_bytes()
        steady = sc.fixes / max(wall - startup, 1e-9)
        note = (f"best of 3 ({spread}{steady:,.0f}/s less start-up; "
                f"{path.stat().st_size / 2**20:,.0f} MiB file "
                f"(written in {written:.1f} s); peak RSS {rss:,} MiB; exit {code})")  # fmt: skip
        if fmt == "parquet":
            note += f"; same --json as JSONL: {'yes' if same else 'NO'}"
        figures.append(Figure(f"(c) coverwatch replay, {fmt.upper()}, end to end", sc.fixes,
                              wall, f">= {target / 1e6:g} M/s", code == 0 and
                              sc.fixes / wall >= target, note))  # fmt: skip
    figures.append(Figure("    CLI start-up (empty file), included above", 0, startup))
    _table(figures)
    print(f"\n{_load()}")


def _day_chunks(officers: int, posts: int, seconds: int, step: int) -> Iterator[pa.Table]:
    """Rows in time order: each second's control rows go before that second's fixes.

    A chunk of fixes ends where a control event falls inside it, so the mid-run
    flag rows are written at their time, not after the chunk that holds it.
    """
    crowd = Crowd(officers, posts)
    names = pa.array([officer_name(k) for k in range(officers)])
    later = sorted(control_events(officers, seconds), key=lambda r: int(r["t"]))  # type: ignore[call-overload]
    cuts = sorted({int(r["t"]) - T0_S for r in later})  # type: ignore[call-overload]
    first = 0
    while first < seconds:
        due = [r for r in later if int(r["t"]) - T0_S <= first]  # type: ignore[call-overload]
        if due:
            yield _control_table(due)
            later = later[len(due):]
        n = min(step, seconds - first)
        n = min([n, *(c - first for c in cuts if first < c < first + n)])
        x, y, acc = crowd.seconds(n)
        yield _fix_table(first, x, y, acc, names)
        first += n


def day(officers: int, posts: int, seconds: int, workdir: Path, keep: bool) -> None:
    fixes = officers * seconds
    print(f"coverwatch day replay: {posts} posts, {officers} officers, {seconds} s at 1 Hz "
          f"= {fixes:,} fixes; {os.cpu_count()} CPUs; {_load()}")  # fmt: skip
    free = shutil.disk_usage(workdir).free
    print(f"  free disk in {workdir}: {free / 2**30:.1f} GiB")
    site_path = workdir / "site.yaml"
    site_path.write_text(site_yaml(posts))
    path = workdir / "day.parquet"
    t = time.perf_counter()
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as w:
        for table in _day_chunks(officers, posts, seconds, 600):
            w.write_table(table, row_group_size=1 << 20)
    written = time.perf_counter() - t
    size = path.stat().st_size
    print(f"  wrote {size / 2**30:.2f} GiB in {written:.0f} s; {_load()}")
    out = workdir / "day-lapses.jsonl"
    wall, code, rss = run_cli(["replay", str(site_path), str(path), "--json", str(out)])
    lapses = sum(1 for _ in out.open()) if out.exists() else 0
    _table([Figure("(d) coverwatch replay, 24 h PARQUET", fixes, wall,
                   f">= {TARGET_PARQUET / 1e6:g} M/s", code == 0 and fixes / wall >= TARGET_PARQUET,
                   f"peak RSS {rss:,} MiB, exit {code}, {lapses:,} lapses")])  # fmt: skip
    print(f"\n{_load()}")
    if not keep:
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--officers", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=None,
                        help="length of the run (default 3600; 86400 with --day)")
    parser.add_argument("--ref-seconds", type=int, default=3,
                        help="seconds of input for the reference evaluator (it is slow)")
    parser.add_argument("--day", action="store_true",
                        help="only the 24 h streaming Parquet replay, with peak RSS")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write the event files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    seconds = args.seconds or (86_400 if args.day else 3600)
    tmp = Path(tempfile.mkdtemp(prefix="coverwatch-bench-", dir=args.workdir))
    try:
        if args.day:
            day(args.officers, args.posts, seconds, tmp, args.keep)
        else:
            bench(args.officers, args.posts, seconds, args.ref_seconds, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
