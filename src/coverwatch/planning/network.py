"""The walkway network: a graph of walkable segments, distances along it, and
snapping of positions to it.

Built from a site's walkways (polylines joined where they share a point after
rounding to 1 mm), one-way walkways and barriers (which cut walkways where they
cross or touch them). Every point post gets an *access* vertex: the walkway
point nearest to it (the segment there is split), so travel to a post always
ends at a vertex and a fix on the same segment needs no special case.

Travel from a position to a post (docs/semantics.md, "Reach"):

    snap   = distance to the nearest walkway point (ties: every tied segment)
    path   = shortest distance from that point to the post's access vertex,
             plus the access leg (access vertex to the post)
    travel = min over tied segments of (snap + path), in metres

:class:`ReachField` precomputes, per post, the distance from every vertex
(reverse Dijkstra with heapq), and a grid of segments, so evaluating many
positions at once is numpy work with no graph search.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from coverwatch.domain.grid import BoxGrid
from coverwatch.domain.site import Site

__all__ = [
    "MM",
    "ReachField",
    "SegmentGrid",
    "WalkwayNetwork",
    "build_network",
    "snap_pairs",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

#: Walkway points are rounded to this many metres before they are joined.
MM = 0.001
#: Radius of the fine segment grid (metres).
FINE_RADIUS_M = 6.0


@dataclass(frozen=True, slots=True)
class WalkwayNetwork:
    """Vertices and segments of the walkway graph, as arrays.

    Segment ``s`` runs from vertex ``seg_a[s]`` to ``seg_b[s]``; ``seg_fwd``
    says it may be walked a→b, ``seg_bwd`` b→a. ``seg_walkway`` is the index of
    the walkway it came from. ``access[post_id]`` is the post's access vertex
    and ``leg[post_id]`` the straight distance from it to the post.
    """

    node_x: F64
    node_y: F64
    seg_a: I64
    seg_b: I64
    seg_fwd: BOOL
    seg_bwd: BOOL
    seg_walkway: I64
    seg_len: F64
    access: dict[str, int]
    leg: dict[str, float]

    @property
    def n_nodes(self) -> int:
        return len(self.node_x)

    @property
    def n_segments(self) -> int:
        return len(self.seg_a)

    def segment_geometry(self) -> tuple[F64, F64, F64, F64, F64]:
        """(ax, ay, ex, ey, len2) per segment: start point, direction, squared length."""
        ax = self.node_x[self.seg_a]
        ay = self.node_y[self.seg_a]
        ex = self.node_x[self.seg_b] - ax
        ey = self.node_y[self.seg_b] - ay
        return ax, ay, ex, ey, ex * ex + ey * ey

    def edges(self) -> list[tuple[int, int, float]]:
        """Directed edges (from, to, metres) in segment order, a→b before b→a."""
        out: list[tuple[int, int, float]] = []
        for s in range(self.n_segments):
            a, b, w = int(self.seg_a[s]), int(self.seg_b[s]), float(self.seg_len[s])
            if self.seg_fwd[s]:
                out.append((a, b, w))
            if self.seg_bwd[s]:
                out.append((b, a, w))
        return out

    def distances_to(self, target: int, start: float = 0.0) -> F64:
        """Shortest distance from every vertex to ``target`` (inf if it cannot get
        there), with ``start`` added at the target: Dijkstra on the reversed edges."""
        return self._dijkstra([(target, start)], reverse=True)

    def distances_from(self, sources: Sequence[tuple[int, float]]) -> F64:
        """Shortest distance from the nearest of several (vertex, start distance)
        sources to every vertex, along the walkways' directions."""
        return self._dijkstra(sources, reverse=False)

    def _dijkstra(self, sources: Sequence[tuple[int, float]], *, reverse: bool) -> F64:
        adjacent: list[list[tuple[int, float]]] = [[] for _ in range(self.n_nodes)]
        for u, v, w in self.edges():
            if reverse:
                adjacent[v].append((u, w))
            else:
                adjacent[u].append((v, w))
        dist = [math.inf] * self.n_nodes
        heap: list[tuple[float, int]] = []
        for node, d0 in sources:
            if d0 < dist[node]:
                dist[node] = d0
                heapq.heappush(heap, (d0, node))
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adjacent[u]:
                nd = d + w
                if nd < dist[v]:
                    dist[v] = nd
                    heapq.heappush(heap, (nd, v))
        return np.asarray(dist, np.float64)


def _key(x: float, y: float) -> tuple[int, int]:
    return round(x / MM), round(y / MM)


def _cuts(
    a: tuple[float, float],
    b: tuple[float, float],
    barriers: Sequence[Sequence[tuple[float, float]]],
) -> list[float]:
    """Parameters in [0, 1] where barriers cross or touch segment a-b."""
    ax, ay = a
    ex, ey = b[0] - ax, b[1] - ay
    len2 = ex * ex + ey * ey
    length = math.sqrt(len2)
    out: list[float] = []
    for pts in barriers:
        if len(pts) == 1:
            px, py = pts[0][0] - ax, pts[0][1] - ay
            u = min(max((px * ex + py * ey) / len2, 0.0), 1.0)
            if math.hypot(px - u * ex, py - u * ey) <= MM:
                out.append(u)
            continue
        for (cx, cy), (dx, dy) in pairwise(pts):
            fx, fy = dx - cx, dy - cy
            den = ex * fy - ey * fx
            qx, qy = cx - ax, cy - ay
            if abs(den) <= 1e-12 * length * math.hypot(fx, fy):
                continue  # parallel: a barrier along a walkway does not cut it
            u = (qx * fy - qy * fx) / den
            v = (qx * ey - qy * ex) / den
            tol_u = MM / length
            tol_v = MM / max(math.hypot(fx, fy), MM)
            if -tol_u <= u <= 1 + tol_u and -tol_v <= v <= 1 + tol_v:
                out.append(min(max(u, 0.0), 1.0))
    return sorted(set(out))


def build_network(site: Site) -> WalkwayNetwork:
    """The walkway graph of a site (empty if it has no walkways); see the module docstring."""
    barriers = [b.points for b in site.barriers]
    keys: dict[object, int] = {}
    xs: list[float] = []
    ys: list[float] = []

    def node(key: object, x: float, y: float) -> int:
        idx = keys.get(key)
        if idx is None:
            idx = len(xs)
            keys[key] = idx
            xs.append(x)
            ys.append(y)
        return idx

    def joined(x: float, y: float) -> int:
        kx, ky = _key(x, y)
        return node(("j", kx, ky), kx * MM, ky * MM)

    # Segments as (a, b, fwd, bwd, walkway).
    segs: list[tuple[int, int, bool, bool, int]] = []
    private = 0
    for w_index, walkway in enumerate(site.walkways):
        pts = [_key(x, y) for x, y in walkway.points]
        for (k0, k1) in pairwise(pts):
            if k0 == k1:
                continue
            a = (k0[0] * MM, k0[1] * MM)
            b = (k1[0] * MM, k1[1] * MM)
            cuts = _cuts(a, b, barriers) if barriers else []
            # Pieces between cut parameters; ends at a cut are private vertices.
            bounds = sorted({0.0, 1.0, *cuts})
            for p0, p1 in pairwise(bounds):
                ends: list[int] = []
                for p in (p0, p1):
                    x = a[0] + p * (b[0] - a[0])
                    y = a[1] + p * (b[1] - a[1])
                    if p in cuts:
                        kx, ky = _key(x, y)
                        private += 1
                        ends.append(node(("c", private), kx * MM, ky * MM))
                    else:
                        ends.append(joined(x, y))
                if (xs[ends[0]], ys[ends[0]]) != (xs[ends[1]], ys[ends[1]]):
                    segs.append((ends[0], ends[1], True, not walkway.one_way, w_index))

    access: dict[str, int] = {}
    leg: dict[str, float] = {}
    placed = [p for p in site.posts if p.at is not None] if segs else []
    nearest = _nearest_points(placed, segs, xs, ys)
    # Interior attachment points per segment: (u along it, node), to split it below.
    splits: dict[int, list[tuple[float, int]]] = {}
    for post, (s, u) in zip(placed, nearest, strict=True):
        assert post.at is not None
        px, py = post.at
        sa, sb = segs[s][0], segs[s][1]
        ax, ay = xs[sa], ys[sa]
        qx = ax + u * (xs[sb] - ax)
        qy = ay + u * (ys[sb] - ay)
        kq = _key(qx, qy)
        if kq == _key(xs[sa], ys[sa]):
            target = sa
        elif kq == _key(xs[sb], ys[sb]):
            target = sb
        else:
            target = joined(qx, qy)
            splits.setdefault(s, []).append((u, target))
        access[post.id] = target
        dx, dy = px - xs[target], py - ys[target]
        leg[post.id] = math.sqrt(dx * dx + dy * dy)
    if splits:
        pieces: list[tuple[int, int, bool, bool, int]] = []
        for s, (sa, sb, fwd, bwd, w_index) in enumerate(segs):
            inner = [t for _, t in sorted(splits.get(s, []))]
            ends = [sa, *dict.fromkeys(inner).keys(), sb]  # each vertex once, in order
            pieces.extend((a, b, fwd, bwd, w_index) for a, b in pairwise(ends) if a != b)
        segs = pieces

    node_x = np.asarray(xs, np.float64)
    node_y = np.asarray(ys, np.float64)
    seg_a = np.asarray([int(s[0]) for s in segs], np.int64)
    seg_b = np.asarray([int(s[1]) for s in segs], np.int64)
    dx_seg = node_x[seg_b] - node_x[seg_a] if segs else np.empty(0)
    dy_seg = node_y[seg_b] - node_y[seg_a] if segs else np.empty(0)
    return WalkwayNetwork(
        node_x=node_x,
        node_y=node_y,
        seg_a=seg_a,
        seg_b=seg_b,
        seg_fwd=np.asarray([bool(s[2]) for s in segs], bool),
        seg_bwd=np.asarray([bool(s[3]) for s in segs], bool),
        seg_walkway=np.asarray([int(s[4]) for s in segs], np.int64),
        seg_len=np.sqrt(dx_seg * dx_seg + dy_seg * dy_seg),
        access=access,
        leg=leg,
    )


def _nearest_points(
    posts: Sequence[object], segs: Sequence[tuple[int, int, bool, bool, int]],
    xs: Sequence[float], ys: Sequence[float],
) -> list[tuple[int, float]]:
    """For each post, the nearest segment (the first of equals) and the parameter u of
    its nearest point there. Vectorised over segments, in chunks of posts: linear in
    posts for a given walkway network."""
    if not posts:
        return []
    node_x = np.asarray(xs, np.float64)
    node_y = np.asarray(ys, np.float64)
    a = np.asarray([sg[0] for sg in segs], np.int64)
    b = np.asarray([sg[1] for sg in segs], np.int64)
    ax, ay = node_x[a], node_y[a]
    ex, ey = node_x[b] - ax, node_y[b] - ay
    len2 = ex * ex + ey * ey
    at = np.asarray([p.at for p in posts], np.float64)  # type: ignore[attr-defined]
    out: list[tuple[int, float]] = []
    step = max(1, 2_000_000 // max(1, len(segs)))
    for lo in range(0, len(at), step):
        px = at[lo:lo + step, 0:1]
        py = at[lo:lo + step, 1:2]
        u = np.minimum(np.maximum(((px - ax) * ex + (py - ay) * ey) / len2, 0.0), 1.0)
        qx = px - ax - u * ex
        qy = py - ay - u * ey
        best = np.argmin(np.sqrt(qx * qx + qy * qy), axis=1)
        rows = np.arange(len(best))
        out.extend(zip(best.tolist(), u[rows, best].tolist(), strict=True))
    return out


class SegmentGrid:
    """Candidate (position, segment) pairs: every segment within ``radius`` of a
    position is a candidate (and some farther ones)."""

    def __init__(self, net: WalkwayNetwork, radius: float) -> None:
        self.radius = radius
        n = net.n_segments
        self._empty = n == 0
        if self._empty:
            return
        ax, ay = net.node_x[net.seg_a], net.node_y[net.seg_a]
        bx, by = net.node_x[net.seg_b], net.node_y[net.seg_b]
        boxes = np.column_stack((np.minimum(ax, bx) - radius, np.minimum(ay, by) - radius,
                                 np.maximum(ax, bx) + radius, np.maximum(ay, by) + radius))
        self._grid = BoxGrid(boxes, radius)

    def candidates(self, x: F64, y: F64) -> tuple[I64, I64]:
        """(position index, segment) pairs, position-major, segments ascending."""
        if self._empty:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return self._grid.candidates(x, y)


def snap_pairs(
    net: WalkwayNetwork, x: F64, y: F64, seg: I64
) -> tuple[F64, F64, F64]:
    """For (position, segment) pairs: (snap distance, distance along the segment
    to its start vertex, to its end vertex). Same operations as the reference."""
    ax, ay = net.node_x[net.seg_a[seg]], net.node_y[net.seg_a[seg]]
    ex = net.node_x[net.seg_b[seg]] - ax
    ey = net.node_y[net.seg_b[seg]] - ay
    len2 = ex * ex + ey * ey
    px = x - ax
    py = y - ay
    u = np.clip((px * ex + py * ey) / len2, 0.0, 1.0)
    qx = px - u * ex
    qy = py - u * ey
    snap = np.sqrt(qx * qx + qy * qy)
    length = net.seg_len[seg]
    to_a = u * length
    return snap, to_a, length - to_a


class ReachField:
    """Per-target distance fields over a walkway network, for fast travel distances.

    ``targets`` are post ids (point posts with an access vertex). ``radius``
    bounds the snap distances that matter: a position farther than that from
    every walkway gets travel ``inf``.
    """

    def __init__(self, net: WalkwayNetwork, targets: Sequence[str], radius: float) -> None:
        self.net = net
        self.targets = list(targets)
        self.index = {t: i for i, t in enumerate(self.targets)}
        n = net.n_nodes
        rows = [net.distances_to(net.access[t], net.leg[t]) if t in net.access
                else np.full(n, np.inf) for t in self.targets]
        self.dist = np.vstack(rows) if rows else np.empty((0, n))
        self.radius = radius
        # A fine grid answers positions on or near a walkway; the coarse one the rest.
        self.grids = [SegmentGrid(net, r) for r in sorted({min(radius, FINE_RADIUS_M), radius})]

    def nearest(self, x: F64, y: F64) -> tuple[I64, I64, F64, F64, F64]:
        """The nearest segments of each position (all tied ones), position-major:
        (position index, segment, snap, to start vertex, to end vertex). Positions
        whose nearest walkway is farther than ``radius`` may be missing.

        Searched with a fine grid first; positions with nothing near enough go
        on to the coarse one. A position's answer is taken from a grid only when
        its nearest snap is within that grid's radius, which makes it exact.
        """
        remaining = np.arange(len(x), dtype=np.int64)
        parts: list[tuple[I64, I64, F64, F64, F64]] = []
        for grid in self.grids:
            if len(remaining) == 0:
                break
            pi, seg = grid.candidates(x[remaining], y[remaining])
            if len(pi) == 0:
                continue
            snap, to_a, to_b = snap_pairs(self.net, x[remaining[pi]], y[remaining[pi]], seg)
            first = np.empty(len(pi), bool)
            first[0] = True
            np.not_equal(pi[1:], pi[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            best = np.minimum.reduceat(snap, starts)
            best_rep = np.repeat(best, np.diff(np.append(starts, len(pi))))
            tie = (snap == best_rep) & (snap <= grid.radius)
            parts.append((remaining[pi[tie]], seg[tie], snap[tie], to_a[tie], to_b[tie]))
            done = np.zeros(len(remaining), bool)
            done[pi[starts[best <= grid.radius]]] = True
            remaining = remaining[~done]
        if not parts:
            e = np.empty(0)
            return np.empty(0, np.int64), np.empty(0, np.int64), e, e, e
        cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
        if len(parts) > 1:
            order = np.argsort(cat[0], kind="stable")
            cat = [c[order] for c in cat]
        return (cat[0].astype(np.int64), cat[1].astype(np.int64), cat[2], cat[3], cat[4])

    def travel_m(self, x: F64, y: F64, pair_pos: I64, pair_target: I64) -> F64:
        """Travel distance (snap + path, metres) for (position, target) pairs.

        ``x``/``y`` are positions; ``pair_pos`` indexes them, ``pair_target``
        indexes ``targets``. Unreachable or too far: ``inf``.
        """
        out = np.full(len(pair_pos), np.inf)
        if len(pair_pos) == 0 or self.net.n_segments == 0:
            return out
        n = len(x)
        # A position equal to the one before it (an officer holding a post) is
        # snapped once: each pair is sent to the first of its run of equal positions.
        head = np.arange(n, dtype=np.int64)
        same = np.zeros(n, bool)
        np.logical_and(x[1:] == x[:-1], y[1:] == y[:-1], out=same[1:])
        head[same] = 0
        np.maximum.accumulate(head, out=head)
        pos = head[pair_pos]
        wanted = np.zeros(n, bool)
        wanted[pos] = True
        used = np.flatnonzero(wanted)
        slot = np.zeros(n, np.int64)
        slot[used] = np.arange(len(used))
        ti, tseg, tsnap, ta, tb = self.nearest(x[used], y[used])
        if len(ti) == 0:
            return out
        # Each used position's tied nearest segments are ti == its slot, contiguous.
        cnt = np.bincount(ti, minlength=len(used))
        first = np.cumsum(cnt) - cnt
        ps = slot[pos]
        pc = cnt[ps]
        pk = first[ps]
        net = self.net
        n_nodes = net.n_nodes
        flat = self.dist.ravel()
        base = pair_target * n_nodes
        # The minimum over tied segments, one tie rank at a time (most have one).
        for rank in range(int(pc.max())):
            m = np.flatnonzero(pc > rank) if rank else np.flatnonzero(pc)
            k = pk[m] + rank
            s = tseg[k]
            b0 = base[m]
            via_a = np.where(net.seg_bwd[s], ta[k] + flat[b0 + net.seg_a[s]], np.inf)
            via_b = np.where(net.seg_fwd[s], tb[k] + flat[b0 + net.seg_b[s]], np.inf)
            value = tsnap[k] + np.minimum(via_a, via_b)
            if rank:
                np.minimum(out[m], value, out=value)
            out[m] = value
        return out
