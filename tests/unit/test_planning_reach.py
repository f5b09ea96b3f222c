"""Reach along walkways: the vectorised distance fields against brute force.

The brute force is ``reference.brute_travel`` (shared with the property
tests): it snaps each position to every segment, keeps the nearest (all ties),
and runs a heapq Dijkstra for every query, exactly as docs/semantics.md
("Reach") describes.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import DutyEvent, EventBatch, FixColumns
from coverwatch.domain.site import Barrier, Post, Rule, Site, Walkway
from coverwatch.engine import evaluate
from coverwatch.planning.network import ReachField, build_network
from coverwatch.planning.response import distinct_positions, travel_matrix
from reference import brute_travel

INF = math.inf


def yard_site(*, one_way: bool = False, barrier: bool = False) -> Site:
    walkways = (
        Walkway("a", ((0.0, 0.0), (20.0, 0.0), (20.0, 10.0), (20.0, 20.0))),
        Walkway("b", ((20.0, 20.0), (0.0, 20.0), (0.0, 10.0), (0.0, 0.0)), one_way=one_way),
        Walkway("c", ((0.0, 10.0), (20.0, 10.0))),
    )
    barriers = (Barrier("fence", ((10.0, 5.0), (10.0, 15.0))),) if barrier else ()
    rule = Rule("reach", 1, INF, INF, reach_s=5.0)
    posts = (Post("gate", "Gate", (rule,), at=(3.0, 1.0)),
             Post("door", "Door", (rule,), at=(20.0, 13.0)))
    return Site("s", "S", posts, walkways=walkways, barriers=barriers)


def test_post_access_splits_the_segment_and_leg_is_straight() -> None:
    net = build_network(yard_site())
    gate = net.access["gate"]
    assert (net.node_x[gate], net.node_y[gate]) == (3.0, 0.0)
    assert net.leg["gate"] == 1.0


def test_one_way_walkway_only_walked_forwards() -> None:
    net = build_network(yard_site(one_way=True))
    field = ReachField(net, ["gate", "door"], 100.0)
    # On walkway b (one-way from (20, 20) to (0, 0)): from (5, 20) you must go on west.
    got = field.travel_m(np.array([5.0]), np.array([20.0]), np.array([0]), np.array([0]))
    assert got[0] == 5.0 + 20.0 + 3.0 + 1.0
    assert got[0] == brute_travel(net, "gate", 5.0, 20.0)


def test_barrier_cuts_the_crossing_walkway() -> None:
    open_net = build_network(yard_site())
    cut_net = build_network(yard_site(barrier=True))
    for net, expected in ((open_net, 11.0 + 10.0 + 3.0 + 1.0), (cut_net, 9.0 + 10.0 + 17.0 + 1.0)):
        assert brute_travel(net, "gate", 11.0, 10.0) == expected
    field = ReachField(cut_net, ["gate"], 100.0)
    got = field.travel_m(np.array([11.0]), np.array([10.0]), np.array([0]), np.array([0]))
    assert got[0] == 37.0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10, 40), st.integers(-10, 40)), min_size=1, max_size=12),
    st.booleans(),
    st.booleans(),
    st.sampled_from([3.0, 8.0, 60.0]),
)
def test_distance_fields_match_brute_force(
    points: list[tuple[int, int]], one_way: bool, barrier: bool, radius: float
) -> None:
    site = yard_site(one_way=one_way, barrier=barrier)
    net = build_network(site)
    field = ReachField(net, ["gate", "door"], radius)
    xs = np.array([float(p[0]) for p in points])
    ys = np.array([float(p[1]) for p in points])
    n = len(points)
    pair_pos = np.repeat(np.arange(n), 2)
    pair_target = np.tile(np.array([0, 1]), n)
    got = field.travel_m(xs, ys, pair_pos, pair_target)
    for k in range(2 * n):
        x, y = float(xs[pair_pos[k]]), float(ys[pair_pos[k]])
        expected = brute_travel(net, field.targets[int(pair_target[k])], x, y)
        # Farther than the radius from every walkway: "inf" (never within reach).
        if math.isfinite(got[k]) or expected <= radius:
            assert got[k] == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 25), st.integers(-5, 25),
                          st.sampled_from([0.0, 1.0, 3.0])), min_size=1, max_size=10),
       st.sampled_from([None, "armed"]))
def test_engine_reach_membership_matches_brute_force(
    fixes: list[tuple[int, int, float]], capability: str | None
) -> None:
    # One officer, a fix every 10 s, stale after 5 s: each fix stands alone.
    from types import MappingProxyType

    base = yard_site(barrier=True)
    rule = Rule("reach", 1, INF, INF, capability=capability, reach_s=5.0)
    site = Site("s", "S", (Post("gate", "Gate", (rule,), at=(3.0, 1.0)),),
                stale_after_s=5.0, walkways=base.walkways, barriers=base.barriers,
                speeds_mps=MappingProxyType({"armed": 4.0, "default": 3.0}))
    net = build_network(site)
    t0 = 1_700_000_000_000_000
    rows = [(t0 + k * 10_000_000, 0, float(x), float(y), acc, k)
            for k, (x, y, acc) in enumerate(fixes)]
    duty = DutyEvent(t0, 0, True, frozenset({"armed"}), -1)
    result = evaluate(site, EventBatch(FixColumns.from_rows(rows), [duty]),
                      end=t0 + len(fixes) * 10_000_000)
    speed = site.speed_for(capability)
    for k, (x, y, acc) in enumerate(fixes):
        t = t0 + k * 10_000_000
        travel = (brute_travel(net, "gate", float(x), float(y)) + acc) / speed
        lapsed = any(lp.start <= t and (lp.end is None or t < lp.end) for lp in result.lapses)
        assert lapsed == (not travel <= 5.0), (k, x, y, acc, travel)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-40, 60), st.integers(-40, 60)), min_size=1, max_size=12),
    st.lists(st.integers(0, 11), max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_travel_matrix_matches_brute_force(
    points: list[tuple[int, int]], repeats: list[int], one_way: bool, barrier: bool
) -> None:
    # Repeated positions (held posts) are computed once; far ones use every segment.
    net = build_network(yard_site(one_way=one_way, barrier=barrier))
    field = ReachField(net, ["gate", "door"], 25.0)
    pts = points + [points[k % len(points)] for k in repeats]
    xs = np.array([float(p[0]) for p in pts])
    ys = np.array([float(p[1]) for p in pts])
    got = travel_matrix(field, xs, ys)
    assert got.shape == (len(pts), 2)
    for i, (x, y) in enumerate(pts):
        for j, post in enumerate(field.targets):
            assert got[i, j] == brute_travel(net, post, float(x), float(y))


def test_distinct_positions_inverse_rebuilds_the_input() -> None:
    xs = np.array([1.0, 2.0, 1.0, 1.0, 3.0])
    ys = np.array([5.0, 5.0, 5.0, 4.0, 5.0])
    ux, uy, inverse = distinct_positions(xs, ys)
    assert len(ux) == 4
    assert (ux[inverse] == xs).all() and (uy[inverse] == ys).all()
