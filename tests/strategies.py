"""Hypothesis strategies: small sites and event streams that hit the edge cases.

Everything is deliberately coarse so that boundaries happen often: positions
are mostly integer metres (so ``d == within`` and ``d == release`` occur, including
3-4-5 triangles), times are whole or half seconds in a short range and
``stale_after`` is 1-5 s (so fixes expire exactly at other events' times, and
several events share a time). Input order is shuffled; ``seq`` records the
order in which events were generated.

About half the sites have a small walkway network (a few polylines on the
integer grid, joined at shared points, now and then a one-way walkway or a
barrier) and per-capability speeds; rules of point posts there often carry
``reach_s`` (alone, or with ``within_m``/``release_m``), and fixes often sit on
or near walkway points, so travel times land exactly on ``reach_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from hypothesis import strategies as st

from coverwatch.domain.events import DutyEvent, FlagEvent, GateEvent
from coverwatch.domain.site import Barrier, Post, Rule, Site, Walkway
from coverwatch.domain.time import US_PER_S
from coverwatch.planning.network import build_network
from reference import Event, Fix, brute_travel

__all__ = [
    "CAPABILITIES",
    "FLAGS",
    "HALF_S",
    "T0",
    "Scenario",
    "event_lists",
    "polygons",
    "rules",
    "scenarios",
    "sites",
    "walkway_networks",
]

T0 = 1_700_000_000 * US_PER_S
HALF_S = US_PER_S // 2
FLAGS = ("open", "sitting")
CAPABILITIES = ("armed", "medic")
MAX_STEPS = 24  # times are T0 + k * 0.5 s, k in 0..MAX_STEPS

# Unit shapes (scaled, shifted, maybe reversed): convex and concave.
_SHAPES: dict[str, tuple[tuple[int, int], ...]] = {
    "square": ((0, 0), (1, 0), (1, 1), (0, 1)),
    "triangle": ((0, 0), (2, 0), (0, 2)),
    "rectangle": ((0, 0), (3, 0), (3, 1), (0, 1)),
    "L": ((0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)),
    "U": ((0, 0), (3, 0), (3, 2), (2, 2), (2, 1), (1, 1), (1, 2), (0, 2)),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site, its events in (shuffled) input order, and an optional explicit end."""

    site: Site
    events: list[Event]
    end: int | None


@st.composite
def polygons(draw: st.DrawFn) -> tuple[tuple[float, float], ...]:
    """A small polygon with integer vertices: convex or concave, either orientation."""
    shape = _SHAPES[draw(st.sampled_from(sorted(_SHAPES)))]
    scale = draw(st.integers(2, 8))
    ox = draw(st.integers(-10, 10))
    oy = draw(st.integers(-10, 10))
    pts = [(float(ox + scale * x), float(oy + scale * y)) for x, y in shape]
    if draw(st.booleans()):
        pts.reverse()
    k = draw(st.integers(0, len(pts) - 1))
    return tuple(pts[k:] + pts[:k])


_INF = float("inf")
# Steps between walkway points: axis-aligned, 3-4-5 and general diagonals.
_STEPS = st.sampled_from([(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (1, -1), (3, 4), (4, -3),
                          (-4, 3), (2, 1), (1, 2), (-2, 1)])
Point = tuple[float, float]


@st.composite
def walkway_networks(
    draw: st.DrawFn,
) -> tuple[tuple[Walkway, ...], tuple[Barrier, ...]]:
    """1-3 walkways of 2-4 integer points, each after the first starting (and
    sometimes ending) at a point of an earlier one; maybe one-way; maybe a barrier
    (a point or a short line) across or along a segment."""
    known: list[tuple[int, int]] = []
    segments: list[tuple[tuple[int, int], tuple[int, int]]] = []
    walkways: list[Walkway] = []
    for w in range(draw(st.integers(1, 3))):
        if known:
            pts = [draw(st.sampled_from(known))]
        else:
            pts = [(draw(st.integers(-10, 10)), draw(st.integers(-10, 10)))]
        for _ in range(draw(st.integers(1, 3))):
            dx, dy = draw(_STEPS)
            scale = draw(st.integers(1, 6))
            nxt = (pts[-1][0] + scale * dx, pts[-1][1] + scale * dy)
            if known and draw(st.integers(0, 4)) == 0:
                nxt = draw(st.sampled_from(known))  # close a loop / join an earlier walkway
            if nxt == pts[-1]:
                continue
            segments.append((pts[-1], nxt))
            pts.append(nxt)
        if len(pts) < 2:
            continue
        known.extend(p for p in pts if p not in known)
        walkways.append(Walkway(f"w{w}", tuple((float(x), float(y)) for x, y in pts),
                                one_way=draw(st.integers(0, 3)) == 0))
    if not walkways:
        walkways.append(Walkway("w", ((0.0, 0.0), (5.0, 0.0))))
        segments.append(((0, 0), (5, 0)))
    barriers: tuple[Barrier, ...] = ()
    if segments and draw(st.integers(0, 2)) == 0:
        (ax, ay), (bx, by) = draw(st.sampled_from(segments))
        mx, my = (ax + bx) / 2, (ay + by) / 2
        kind = draw(st.sampled_from(["point", "vertex", "line"]))
        if kind == "point":
            points: tuple[Point, ...] = ((mx, my),)
        elif kind == "vertex":
            points = ((float(ax), float(ay)),)
        else:
            dx, dy = draw(_STEPS)
            points = ((mx - dx, my - dy), (mx + dx, my + dy))
        barriers = (Barrier("b", points),)
    return tuple(walkways), barriers


@st.composite
def rules(draw: st.DrawFn, rule_id: str, gate: bool, reach: bool = False) -> Rule:
    """A rule with need 1-3, integer radii 0-20 (release >= within), grace 0-5 s.

    With ``reach`` (a point post on a site with walkways), often also ``reach_s``
    0-12 s in half seconds, and then sometimes no distance limit at all."""
    within: float = draw(st.integers(0, 20))
    release: float = within + draw(st.sampled_from([0, 0, 1, 2, 5, 10]))
    reach_s: float | None = None
    if reach and draw(st.integers(0, 2)):
        reach_s = draw(st.integers(0, 24)) / 2
        if draw(st.booleans()):
            within = release = _INF
    return Rule(
        id=rule_id,
        need=draw(st.sampled_from([1, 1, 1, 2, 2, 3])),
        within_m=float(within),
        release_m=float(release),
        grace_s=draw(st.integers(0, 10)) / 2,
        capability=draw(st.one_of(st.none(), st.none(), st.sampled_from(CAPABILITIES))),
        when=draw(st.one_of(st.none(), st.none(), st.sampled_from(FLAGS))),
        when_gate_open=gate and draw(st.booleans()),
        reach_s=reach_s,
    )


@st.composite
def sites(draw: st.DrawFn, point_only: bool = False) -> Site:
    """1-3 posts (points or polygons), 1-2 rules each, stale_after 1-5 s; about
    half the time walkways (maybe a barrier), speeds and reach rules. With
    ``point_only``, point posts without walkways (the engine's compiled pass)."""
    walkways: tuple[Walkway, ...] = ()
    barriers: tuple[Barrier, ...] = ()
    speeds: dict[str, float] = {"default": 3.0}
    if not point_only and draw(st.booleans()):
        walkways, barriers = draw(walkway_networks())
        speeds = {"default": draw(st.sampled_from([1.0, 2.0, 3.0]))}
        if draw(st.booleans()):
            speeds["armed"] = draw(st.sampled_from([0.5, 1.0, 4.0]))
    posts: list[Post] = []
    for i in range(draw(st.integers(1, 3))):
        gate = draw(st.booleans())
        point = point_only or draw(st.booleans())
        n_rules = draw(st.integers(1, 2))
        post_rules = tuple(draw(rules(f"r{j}", gate, reach=point and bool(walkways)))
                           for j in range(n_rules))
        if point:
            at = (float(draw(st.integers(-10, 10))), float(draw(st.integers(-10, 10))))
            near: int = draw(st.integers(0, 3))
            if walkways and near:
                # Near a walkway point, so that reach_s is met now and then.
                wx, wy = draw(st.sampled_from([p for w in walkways for p in w.points]))
                ox, oy = draw(st.sampled_from([(0, 0), (1, 0), (0, -2), (3, 4), (-4, 3)]))
                at = (wx + ox, wy + oy)
            posts.append(Post(f"p{i}", f"Post {i}", post_rules, at=at, gate=gate))
        else:
            posts.append(Post(f"p{i}", f"Post {i}", post_rules, area=draw(polygons()), gate=gate))
    return Site(
        id="s",
        name="Site",
        posts=tuple(posts),
        stale_after_s=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0, 5.0])),
        flags={f: draw(st.booleans()) for f in FLAGS},
        walkways=walkways,
        barriers=barriers,
        speeds_mps=MappingProxyType(speeds),
    )


def _times() -> st.SearchStrategy[int]:
    return st.integers(0, MAX_STEPS).map(lambda k: T0 + k * HALF_S)


@st.composite
def _fix(draw: st.DrawFn, site: Site, officers: int) -> Fix:
    # Near a random post most of the time, so officers are often in range;
    # on sites with walkways often on or next to a walkway point.
    post = draw(st.sampled_from(site.posts))
    cx, cy = post.at if post.at is not None else (post.area or ((0.0, 0.0),))[0]
    reach = draw(st.sampled_from([4, 12, 12, 22]))
    on_walkway: bool = draw(st.booleans())
    if site.walkways and on_walkway:
        cx, cy = draw(st.sampled_from([p for w in site.walkways for p in w.points]))
        reach = draw(st.sampled_from([0, 1, 3]))
    x = round(cx) + draw(st.integers(-reach, reach))
    y = round(cy) + draw(st.integers(-reach, reach))
    fx = fy = 0.0
    if draw(st.integers(0, 7)) == 0:
        # Off the grid now and then: general positions must agree too.
        fx = draw(st.floats(0.0, 1.0, exclude_max=True))
        fy = draw(st.floats(0.0, 1.0, exclude_max=True))
    return Fix(
        t=draw(_times()),
        officer=draw(st.integers(0, officers - 1)),
        x=x + fx,
        y=y + fy,
        accuracy=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        # Now and then a scan: its accuracy grows at a walking (or faster) speed.
        growth=draw(st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.75, 1.5, 4.0, 10.0, 2.7])),
    )


@st.composite
def _duty(draw: st.DrawFn, officers: int) -> DutyEvent:
    return DutyEvent(
        t=draw(_times()),
        officer=draw(st.integers(0, officers - 1)),
        on=draw(st.sampled_from([True, True, True, False])),
        capabilities=frozenset(draw(st.sets(st.sampled_from(CAPABILITIES)))),
    )


@st.composite
def event_lists(draw: st.DrawFn, site: Site, max_events: int = 60) -> list[Event]:
    """0-60 events for 1-4 officers, shuffled; ``seq`` is the generation order."""
    officers = draw(st.integers(1, 4))
    kinds = ["fix"] * 6 + ["duty"] * 3 + ["flag"]
    if site.gates:
        kinds.append("gate")
    generated: list[Event] = []
    # Usually a roster at the first instant, so that officers often count.
    if draw(st.integers(0, 3)):
        for officer in range(officers):
            caps = frozenset(draw(st.sets(st.sampled_from(CAPABILITIES))))
            generated.append(DutyEvent(T0, officer, True, caps, len(generated)))
    n = draw(st.integers(0, max_events - len(generated)))
    for seq in range(len(generated), len(generated) + n):
        kind = draw(st.sampled_from(kinds))
        ev: Event
        if kind == "fix":
            f = draw(_fix(site, officers))
            ev = Fix(f.t, f.officer, f.x, f.y, f.accuracy, seq, f.growth)
        elif kind == "duty":
            d = draw(_duty(officers))
            ev = DutyEvent(d.t, d.officer, d.on, d.capabilities, seq)
        elif kind == "flag":
            ev = FlagEvent(draw(_times()), draw(st.sampled_from(FLAGS)), draw(st.booleans()), seq)
        else:
            gate = draw(st.sampled_from(site.gates))
            ev = GateEvent(draw(_times()), gate, draw(st.booleans()), seq)
        generated.append(ev)
    return list(draw(st.permutations(generated)))


@st.composite
def _reach_on_the_boundary(draw: st.DrawFn, site: Site, events: list[Event]) -> Site:
    """Often set one reach rule's ``reach_s`` to exactly the travel time of one
    of the fixes, so ``travel_s == reach_s`` is tested, not left to chance."""
    fixes = [e for e in events if isinstance(e, Fix)]
    reach = [(i, j) for i, p in enumerate(site.posts) for j, r in enumerate(p.rules)
             if r.reach_s is not None]
    if not fixes or not reach or not draw(st.booleans()):
        return site
    f = draw(st.sampled_from(fixes))
    i, j = draw(st.sampled_from(reach))
    post = site.posts[i]
    rule = post.rules[j]
    travel_m = brute_travel(build_network(site), post.id, f.x, f.y)
    reach_s = (travel_m + f.accuracy) / site.speed_for(rule.capability)
    if reach_s == float("inf"):
        return site
    post_rules = list(post.rules)
    post_rules[j] = replace(rule, reach_s=reach_s)
    posts = list(site.posts)
    posts[i] = replace(post, rules=tuple(post_rules))
    return replace(site, posts=tuple(posts))


@st.composite
def scenarios(draw: st.DrawFn, explicit_end: bool = True, point_only: bool = False) -> Scenario:
    """A site and events; the end is None, past the last event, or inside the events."""
    site = draw(sites(point_only))
    events = draw(event_lists(site))
    site = draw(_reach_on_the_boundary(site, events))
    end: int | None = None
    if explicit_end and len(events) > 0 and draw(st.booleans()):
        first = min(e.t for e in events)
        last = max(e.t for e in events)
        if draw(st.integers(0, 3)) == 0:
            # Inside the events: the later ones are ignored.
            end = draw(st.integers(first, last).map(lambda t: t - (t - T0) % HALF_S))
        else:
            end = last + draw(st.integers(0, 12)) * HALF_S
    return Scenario(site, events, end)
