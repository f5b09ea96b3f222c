"""Response analysis of a simulated plan: how long until 1, 2, ... capable
officers could reach each post, along the walkways.

Monte Carlo: ``samples`` attack moments are drawn uniformly from the shift
[start, end) with a seeded generator (the same seed gives the same figures).
At each moment every officer is where their latest simulated fix puts them,
and their travel time to a post is the reach travel time of
docs/semantics.md: (snap + path + accuracy) / speed, at the speed for the
capability asked about. Officers off shift, or without the capability, never
arrive (infinite time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coverwatch.domain.site import Site
from coverwatch.planning.network import ReachField, snap_pairs
from coverwatch.planning.simulate import Plan, Simulation

__all__ = [
    "ArrivalStats",
    "Reach",
    "distinct_positions",
    "nearest_all",
    "reach_at",
    "response_analysis",
    "travel_columns",
    "travel_matrix",
    "worst_response_raster",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_CHUNK = 200_000


@dataclass(frozen=True, slots=True)
class ArrivalStats:
    """Time (s) until the ``k``-th officer with ``capability`` (None: anyone)
    could arrive at ``post``, over the sampled attack moments."""

    post: str
    capability: str | None
    k: int
    median_s: float
    p90_s: float
    worst_s: float
    under_threshold: float
    samples: int
    reach_s: float | None = None
    under_reach: float | None = None


@dataclass(frozen=True, slots=True)
class Reach:
    """At one instant, who could reach ``post`` and in how many seconds (sorted)."""

    post: str
    officers: list[tuple[str, float]]


def nearest_all(field: ReachField, x: F64, y: F64) -> tuple[I64, I64, F64, F64, F64]:
    """Like :meth:`ReachField.nearest`, but every position gets its nearest
    segments however far they are (positions beyond the grid radius are
    measured against every segment)."""
    pi, seg, snap, ta, tb = field.nearest(x, y)
    found = np.zeros(len(x), bool)
    found[pi] = True
    missing = np.flatnonzero(~found)
    n_seg = field.net.n_segments
    if len(missing) == 0 or n_seg == 0:
        return pi, seg, snap, ta, tb
    parts = [(pi, seg, snap, ta, tb)]
    per = max(1, _CHUNK // n_seg)
    for lo in range(0, len(missing), per):
        m = missing[lo:lo + per]
        mp = np.repeat(m, n_seg)
        ms = np.tile(np.arange(n_seg, dtype=np.int64), len(m))
        s, a, b = snap_pairs(field.net, x[mp], y[mp], ms)
        best = np.minimum.reduceat(s, np.arange(0, len(mp), n_seg))
        tie = s == np.repeat(best, n_seg)
        parts.append((mp[tie], ms[tie], s[tie], a[tie], b[tie]))
    cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    order = np.argsort(cat[0], kind="stable")
    return (cat[0][order].astype(np.int64), cat[1][order].astype(np.int64),
            cat[2][order], cat[3][order], cat[4][order])


def distinct_positions(x: F64, y: F64) -> tuple[F64, F64, I64]:
    """(xs, ys, inverse): the distinct positions, and for each position its index
    among them. Travel is a function of position alone, so it is computed once
    per distinct position (officers holding posts repeat theirs at every moment)."""
    n = len(x)
    if n == 0:
        return x, y, np.empty(0, np.int64)
    order = np.lexsort((y, x))
    sx, sy = x[order], y[order]
    new = np.empty(n, bool)
    new[0] = True
    np.logical_or(sx[1:] != sx[:-1], sy[1:] != sy[:-1], out=new[1:])
    group = np.cumsum(new) - 1
    inverse = np.empty(n, np.int64)
    inverse[order] = group
    return sx[new], sy[new], inverse


def travel_columns(field: ReachField, x: F64, y: F64) -> F64:
    """Travel distance (snap + path, m) from each position to each target, as
    (targets, n): one contiguous row per target."""
    n = len(x)
    out = np.full((len(field.targets), n), np.inf)
    if n == 0 or field.net.n_segments == 0:
        return out
    net = field.net
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        pi, seg, snap, ta, tb = nearest_all(field, x[lo:hi], y[lo:hi])
        if len(pi) == 0:
            continue
        first = np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])
        rows = lo + pi[first]
        single = len(first) == len(pi)  # no ties: reduceat would be the identity
        a, b = net.seg_a[seg], net.seg_b[seg]
        bwd, fwd = net.seg_bwd[seg], net.seg_fwd[seg]
        for j in range(len(field.targets)):
            d = field.dist[j]
            via_a = np.where(bwd, ta + d[a], np.inf)
            via_b = np.where(fwd, tb + d[b], np.inf)
            value = snap + np.minimum(via_a, via_b)
            out[j, rows] = value if single else np.minimum.reduceat(value, first)
    return out


def travel_matrix(field: ReachField, x: F64, y: F64) -> F64:
    """Travel distance (snap + path, m) from each position to each target: (n, targets)."""
    ux, uy, inverse = distinct_positions(x, y)
    return travel_columns(field, ux, uy).T[inverse]


def _classes(site: Site, post_id: str) -> dict[str | None, tuple[int, float | None]]:
    """Capabilities the post's rules ask for (None: anyone), with the largest
    need and the smallest reach_s of those rules."""
    classes: dict[str | None, tuple[int, float | None]] = {}
    for rule in site.post(post_id).rules:
        need, reach = classes.get(rule.capability, (0, None))
        if rule.reach_s is not None:
            reach = rule.reach_s if reach is None else min(reach, rule.reach_s)
        classes[rule.capability] = (max(need, rule.need), reach)
    return classes


def response_analysis(
    site: Site,
    plan: Plan,
    sim: Simulation,
    field: ReachField,
    *,
    samples: int = 10_000,
    seed: int = 0,
    threshold_s: float = 82.0,
) -> list[ArrivalStats]:
    """Arrival-time statistics for every post in ``field.targets`` that has rules."""
    rng = np.random.default_rng(seed)
    span = max(plan.end - plan.start, 1)
    moments = plan.start + rng.integers(0, span, samples, dtype=np.int64)
    cols = sim.index_at(moments)
    n_off = len(plan.officers)
    x = sim.x[:, cols].T.ravel()  # sample-major: (samples, officers)
    y = sim.y[:, cols].T.ravel()
    on = sim.on[:, cols].T
    ux, uy, inverse = distinct_positions(x, y)
    columns = travel_columns(field, ux, uy)
    out: list[ArrivalStats] = []
    for j, post_id in enumerate(field.targets):
        dist = (columns[j] + plan.accuracy_m)[inverse].reshape(samples, n_off)
        for capability, (need, reach) in _classes(site, post_id).items():
            able = np.array([capability is None or capability in o.capabilities
                             for o in plan.officers], bool)
            seconds = dist / site.speed_for(capability)
            seconds = np.where(on & able[None, :], seconds, np.inf)
            kmax = min(max(need, 1), n_off)
            if kmax == 0:
                continue
            first_k = np.sort(np.partition(seconds, kmax - 1, axis=1)[:, :kmax], axis=1) \
                if kmax < n_off else np.sort(seconds, axis=1)
            for k in range(1, max(need, 1) + 1):
                col = first_k[:, k - 1] if k <= kmax else np.full(samples, np.inf)
                out.append(ArrivalStats(
                    post=post_id,
                    capability=capability,
                    k=k,
                    median_s=float(np.quantile(col, 0.5, method="inverted_cdf")),
                    p90_s=float(np.quantile(col, 0.9, method="inverted_cdf")),
                    worst_s=float(col.max()),
                    under_threshold=float(np.mean(col <= threshold_s)),
                    samples=samples,
                    reach_s=reach,
                    under_reach=None if reach is None else float(np.mean(col <= reach)),
                ))
    return out


def reach_at(site: Site, plan: Plan, sim: Simulation, field: ReachField, t: int) -> list[Reach]:
    """Who (on shift at ``t``) could reach each target post, and in how many seconds
    at their own fastest capability speed, nearest first."""
    col = sim.index_at(np.array([t], np.int64))[0]
    x = sim.x[:, col]
    y = sim.y[:, col]
    dist = travel_matrix(field, x, y) + plan.accuracy_m
    out: list[Reach] = []
    for j, post_id in enumerate(field.targets):
        rows: list[tuple[str, float]] = []
        for i, officer in enumerate(plan.officers):
            if not sim.on[i, col]:
                continue
            speed = max([site.speed_for(None)]
                        + [site.speed_for(c) for c in officer.capabilities])
            rows.append((officer.id, float(dist[i, j] / speed)))
        rows.sort(key=lambda r: (r[1], r[0]))
        out.append(Reach(post_id, rows))
    return out


def worst_response_raster(
    site: Site,
    plan: Plan,
    sim: Simulation,
    field: ReachField,
    capability: str | None,
    *,
    bbox: tuple[float, float, float, float],
    cell_m: float = 2.0,
    moments: int = 720,
) -> tuple[F64, F64, F64]:
    """Worst, over ``moments`` evenly spaced instants of the shift, of the time (s)
    for the nearest on-shift officer with ``capability`` to reach each raster
    cell along the walkways. Returns (cell centres x, y, seconds[y, x]).

    An officer reaches a cell through a walkway vertex (approximate for an
    officer on the cell's own segment), then to the cell's nearest walkway
    point and across to the cell.
    """
    net = field.net
    x0, y0, x1, y1 = bbox
    gx = np.arange(x0 + cell_m / 2, x1, cell_m)
    gy = np.arange(y0 + cell_m / 2, y1, cell_m)
    mx, my = np.meshgrid(gx, gy)
    worst = np.full(mx.size, -np.inf)
    if net.n_segments == 0:
        return gx, gy, np.full(mx.shape, np.inf)
    ci, cseg, csnap, cta, ctb = nearest_all(field, mx.ravel(), my.ravel())
    cfirst = np.flatnonzero(np.r_[True, ci[1:] != ci[:-1]])
    ca, cb = net.seg_a[cseg], net.seg_b[cseg]
    cfwd, cbwd = net.seg_fwd[cseg], net.seg_bwd[cseg]
    able = np.array([capability is None or capability in o.capabilities
                     for o in plan.officers], bool)
    speed = site.speed_for(capability)
    count = max(1, min(moments, sim.n_steps))
    cols = np.unique(np.linspace(0, sim.n_steps - 1, count).round().astype(np.int64))
    for col in cols:
        who = np.flatnonzero(sim.on[:, col] & able)
        if len(who) == 0:
            worst[:] = np.inf
            break
        oi, oseg, osnap, ota, otb = nearest_all(field, sim.x[who, col], sim.y[who, col])
        sources: list[tuple[int, float]] = []
        for k in range(len(oi)):
            s = int(oseg[k])
            if net.seg_bwd[s]:
                sources.append((int(net.seg_a[s]), float(osnap[k] + ota[k])))
            if net.seg_fwd[s]:
                sources.append((int(net.seg_b[s]), float(osnap[k] + otb[k])))
        d = net.distances_from(sources)
        via_a = np.where(cfwd, d[ca] + cta, np.inf)
        via_b = np.where(cbwd, d[cb] + ctb, np.inf)
        value = np.minimum.reduceat(csnap + np.minimum(via_a, via_b), cfirst)
        np.maximum(worst, value, out=worst)
    seconds = (worst + plan.accuracy_m) / speed
    return gx, gy, seconds.reshape(mx.shape)

