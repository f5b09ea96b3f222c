"""The cover engine alone at three site sizes, this tree against a baseline tree, in one run.

bench/replay.py's FICTIONAL grid site and crowd at 1 000 officers / 200 posts,
10 000 / 2 000 and 50 000 / 5 000, everyone on duty at the start and a 60 s
closure of open hours mid-run. Each measurement is a fresh process (the tree's
code first on ``PYTHONPATH``) that builds the scenario, then times
``replay_sorted`` over fixes already in memory (engine construction, the grid
and every window included), best of two in the process. Trees alternate, runs
repeat ``--rounds`` times; both trees' lapses must be identical.

    .venv/bin/python bench/engine.py --baseline-src /work/main/src
    taskset -c 1 .venv/bin/python bench/engine.py --baseline-src /work/main/src --rounds 3
    taskset -c 1 .venv/bin/python bench/engine.py --baseline-src /work/main/src --cpu  # when busy
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coverwatch.domain.events import ControlEvent, DutyEvent, FixColumns, FlagEvent
from coverwatch.domain.site import Site
from coverwatch.domain.time import seconds_to_us

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1_000, 200, 1_200), (10_000, 2_000, 180), (50_000, 5_000, 40))


def build_kernel() -> ctypes.CDLL:
    """Compile bench/cover_kernel.c (once per source version) and load it."""
    source = Path(__file__).resolve().parent / "cover_kernel.c"
    # No fused multiply-add: distances must round exactly as numpy's do. No errno: sqrt is
    # the instruction, not a call into libm (the flags the engine's own pass is built with).
    flags = ["-O2", "-ffp-contract=off", "-fno-math-errno"]
    tag = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"cw-cover-kernel-{tag}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.so")
        subprocess.run(["gcc", *flags, "-shared", "-fPIC", "-o", str(tmp), str(source), "-lm"],
                       check=True)
        tmp.replace(lib)
    return ctypes.CDLL(str(lib))


def run_kernel(kernel: ctypes.CDLL, site: Site, fixes: FixColumns, control: list[ControlEvent],
               clock: Callable[[], float] = time.perf_counter,
               ) -> tuple[float, list[tuple[object, ...]]]:
    """The kernel on the scenario: (seconds, lapses as (post, rule, start, end, alert, min))."""
    pairs = site.rules()
    caps = sorted({r.capability for _, r in pairs if r.capability is not None})
    col = {c: i + 1 for i, c in enumerate(caps)}
    duty = [e for e in control if isinstance(e, DutyEvent)]
    flags = sorted((e for e in control if isinstance(e, FlagEvent)), key=lambda e: (e.t, e.seq))
    assert all(e.flag == "open-hours" for e in flags)
    n_off = int(fixes.officer.max()) + 1
    officer_caps = np.zeros((n_off, len(caps) + 1), np.uint8)
    for ev in duty:
        officer_caps[ev.officer] = 0
        officer_caps[ev.officer, 0] = ev.on
        for c in ev.capabilities:
            if c in col:
                officer_caps[ev.officer, col[c]] = ev.on
    assert all(p.at is not None for p, _ in pairs)
    f64 = {
        "px": [p.at[0] for p, _ in pairs if p.at], "py": [p.at[1] for p, _ in pairs if p.at],
        "within": [r.within_m for _, r in pairs], "release": [r.release_m for _, r in pairs],
    }
    arr = {k: np.ascontiguousarray(v, np.float64) for k, v in f64.items()}
    need = np.array([r.need for _, r in pairs], np.int64)
    grace = np.array([seconds_to_us(r.grace_s) for _, r in pairs], np.int64)
    cap_col = np.array([0 if r.capability is None else col[r.capability] for _, r in pairs],
                       np.int32)
    when = np.array([r.when == "open-hours" for _, r in pairs], np.uint8)
    flag_t = np.array([e.t for e in flags], np.int64)
    flag_v = np.array([e.on for e in flags], np.uint8)
    times = [int(fixes.t.min()), int(fixes.t.max()), *(e.t for e in control)]
    start, end = min(times), max(times)
    out = [np.empty(1 << 22, np.int64) for _ in range(5)]
    t_, off_ = np.ascontiguousarray(fixes.t), np.ascontiguousarray(fixes.officer, np.int32)
    x_, y_ = np.ascontiguousarray(fixes.x), np.ascontiguousarray(fixes.y)
    acc_ = np.ascontiguousarray(fixes.accuracy)
    p = ctypes.c_void_p
    kernel.cover_kernel.restype = ctypes.c_int64
    args = [
        ctypes.c_int64(len(fixes)), p(t_.ctypes.data), p(off_.ctypes.data), p(x_.ctypes.data),
        p(y_.ctypes.data), p(acc_.ctypes.data), ctypes.c_int64(len(pairs)),
        p(arr["px"].ctypes.data), p(arr["py"].ctypes.data), p(arr["within"].ctypes.data),
        p(arr["release"].ctypes.data), p(need.ctypes.data), p(grace.ctypes.data),
        p(cap_col.ctypes.data), p(when.ctypes.data), ctypes.c_int64(n_off),
        ctypes.c_int64(len(caps) + 1), p(officer_caps.ctypes.data), ctypes.c_int64(len(flags)),
        p(flag_t.ctypes.data), p(flag_v.ctypes.data), ctypes.c_uint8(site.flags["open-hours"]),
        ctypes.c_int64(start), ctypes.c_int64(end),
        ctypes.c_int64(seconds_to_us(site.stale_after_s)), ctypes.c_int64(len(out[0])),
        *(p(o.ctypes.data) for o in out),
    ]
    t0 = clock()
    n = kernel.cover_kernel(*args)
    took = clock() - t0
    if n < 0:
        raise RuntimeError("the kernel failed (memory, memberships or output)")
    none = np.iinfo(np.int64).min
    rows = []
    for r, s, e, a, m in zip(*(o[:n].tolist() for o in out), strict=True):
        post, rule = pairs[r]
        rows.append((post.id, rule.id, s, None if e == none else e, None if a == none else a, m))
    rows.sort(key=lambda row: (row[2], row[0], row[1]))
    return took, rows


def worker(officers: int, posts: int, seconds: int, cpu: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from replay import _control_objects, make_scenario, site_yaml

    from coverwatch.domain.events import EventBatch
    from coverwatch.formats.sitefile import load_site
    from coverwatch.reports.replay import replay_sorted

    with tempfile.TemporaryDirectory(prefix="cw-engine-") as tmp:
        site_path = Path(tmp) / "site.yaml"
        site_path.write_text(site_yaml(posts))
        site = load_site(site_path)
    sc = make_scenario(officers, posts, seconds)
    fixes, control = sc.fix_columns(), _control_objects(sc.control)
    best = kernel_best = float("inf")
    kernel = build_kernel()
    # CPU time (--cpu) is the process's own: on a machine shared with other jobs the
    # wall clock also counts the time others had the core.
    clock = time.process_time if cpu else time.perf_counter
    for _ in range(2):
        t = clock()
        result = replay_sorted(site, [EventBatch(fixes, control)])
        best = min(best, clock() - t)
        took, rows = run_kernel(kernel, site, fixes, control, clock)
        kernel_best = min(kernel_best, took)
    mine = [(lp.post, lp.rule, lp.start, lp.end, lp.alert_at, lp.min_cover)
            for lp in result.lapses]
    digest = hashlib.sha256(repr(mine).encode()).hexdigest()[:12]
    same = "same" if rows == mine else "DIFFERENT"
    print(f"{len(fixes) / best} {len(result.lapses)} {digest} {len(fixes) / kernel_best} {same}")


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, type=int, metavar=("OFFICERS", "POSTS", "SECONDS"))
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu", action="store_true",
                        help="time in process CPU seconds, not wall seconds (a busy machine)")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, cpu=args.cpu)
        return
    trees = {"this tree": ROOT / "src"}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    print(f"engine alone; {os.cpu_count()} CPUs; {'CPU' if args.cpu else 'wall'} time; "
          f"{_load()}")
    for officers, posts, seconds in SIZES:
        rates: dict[str, list[float]] = {name: [] for name in trees}
        kernels: dict[str, list[float]] = {name: [] for name in trees}
        digests: set[str] = set()
        agree = True
        for _ in range(args.rounds):
            for name, src in trees.items():
                env = {**os.environ, "PYTHONPATH": str(src)}
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", str(officers), str(posts),
                     str(seconds), *(["--cpu"] if args.cpu else [])], env=env, check=True,
                    capture_output=True, text=True,
                ).stdout.split()
                rates[name].append(float(out[0]))
                digests.add(f"{out[1]} lapses {out[2]}")
                kernels[name].append(float(out[3]))
                agree = agree and out[4] == "same"
        print(f"{officers:>6} officers / {posts:>5} posts, {officers * seconds:>10,} fixes "
              f"({next(iter(digests))}); kernel and engine agree: {'yes' if agree else 'NO'}; "
              f"both trees agree: {'yes' if len(digests) == 1 else 'NO'}")
        for name in trees:
            # Each run's engine against the kernel run in the same process, just after it.
            ratios = [e / k for e, k in zip(rates[name], kernels[name], strict=True)]
            print(f"    {name:<10} engine {max(rates[name]) / 1e6:6.2f} M/s, C kernel "
                  f"{max(kernels[name]) / 1e6:6.2f} M/s; engine / kernel {max(ratios):.2f} "
                  f"(runs {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
        if "baseline" in rates:
            print(f"    this tree / baseline, engine: "
                  f"{max(rates['this tree']) / max(rates['baseline']):.2f}x")
    print(_load())


if __name__ == "__main__":
    main()
