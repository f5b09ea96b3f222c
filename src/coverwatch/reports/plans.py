"""Plan checking (adapter): simulate a plan, run the fixes through the cover
engine, and analyse response times; also the walkway connectivity check that
`coverwatch check` runs.

Joins the pure planning core (coverwatch.planning) with the engine. networkx is
used here (not in the core) to find the walkway network's components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coverwatch.domain.events import EventBatch
from coverwatch.domain.site import Site
from coverwatch.engine import CoverEngine, Evaluation
from coverwatch.planning.network import ReachField, WalkwayNetwork, build_network
from coverwatch.planning.response import ArrivalStats, response_analysis
from coverwatch.planning.simulate import Plan, Simulation, simulate, to_events

__all__ = [
    "ENGINE_SLICE",
    "PlanCheck",
    "WalkwayFinding",
    "check_plan",
    "check_walkways",
    "fmt_seconds",
    "response_field",
]

ENGINE_SLICE = 50_000
#: A post farther than this from every walkway is reported.
FAR_FROM_WALKWAYS_M = 25.0


@dataclass(frozen=True, slots=True)
class WalkwayFinding:
    """One finding about a site's walkways: ``level`` is "error" or "warning"."""

    level: str
    message: str


@dataclass(slots=True)
class PlanCheck:
    """Everything `coverwatch plan check` reports."""

    plan: Plan
    sim: Simulation
    evaluation: Evaluation
    arrivals: list[ArrivalStats]
    field: ReachField | None
    fixes: int

    @property
    def alerts(self) -> int:
        return sum(st.alerts for st in self.evaluation.stats)


def check_walkways(site: Site) -> list[WalkwayFinding]:
    """Connectivity of the walkway network: which posts cannot be reached from
    where. Errors: a post with a reach_s rule that no walkway leads to. Warnings:
    a network in several pieces, posts reachable from only part of it, posts far
    from any walkway."""
    import networkx as nx

    if not site.walkways:
        return []
    net = build_network(site)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(net.n_nodes))
    graph.add_edges_from((u, v) for u, v, _ in net.edges())
    out: list[WalkwayFinding] = []
    pieces = list(nx.weakly_connected_components(graph))
    if len(pieces) > 1:
        sizes = sorted((len(p) for p in pieces), reverse=True)
        out.append(WalkwayFinding(
            "warning",
            f"the walkways form {len(pieces)} separate pieces (vertices: "
            f"{', '.join(map(str, sizes))}); travel between them is impossible"))
    walkway_of = _walkways_by_node(site, net)
    # Reachability per strongly connected piece, computed once per piece that holds a
    # post's access point (not once per post: a large site has one or a few pieces).
    pieces_dag = nx.condensation(graph)
    piece_of = pieces_dag.graph["mapping"]
    walkways_in: dict[int, set[str]] = {}
    for n, ws in walkway_of.items():
        walkways_in.setdefault(piece_of[n], set()).update(ws)
    every_walkway = set().union(*walkway_of.values()) if walkway_of else set()
    reach: dict[int, tuple[int, list[str]]] = {}
    for post in site.posts:
        if post.id not in net.access:
            continue
        has_reach = any(r.reach_s is not None for r in post.rules)
        piece = piece_of[net.access[post.id]]
        if piece not in reach:
            upstream = nx.ancestors(pieces_dag, piece) | {piece}
            vertices = sum(len(pieces_dag.nodes[c]["members"]) for c in upstream)
            reachable = set().union(*(walkways_in.get(c, set()) for c in upstream))
            reach[piece] = (vertices, sorted(every_walkway - reachable))
        vertices, cannot = reach[piece]
        if vertices == 1 and has_reach:
            out.append(WalkwayFinding(
                "error", f"post {post.id}: no walkway leads to it (its nearest walkway point "
                         f"is a dead end); its reach_s rules can never be met"))
        elif cannot:
            level = "warning"
            out.append(WalkwayFinding(
                level, f"post {post.id} cannot be reached from walkway(s) "
                       f"{', '.join(cannot)}"))
        if net.leg[post.id] > FAR_FROM_WALKWAYS_M:
            out.append(WalkwayFinding(
                "warning", f"post {post.id} is {net.leg[post.id]:.0f} m from the nearest "
                           f"walkway; travel includes that straight leg"))
    return out


def _walkways_by_node(site: Site, net: WalkwayNetwork) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for s in range(net.n_segments):
        name = site.walkways[int(net.seg_walkway[s])].id
        out.setdefault(int(net.seg_a[s]), set()).add(name)
        out.setdefault(int(net.seg_b[s]), set()).add(name)
    return out


def response_field(site: Site) -> ReachField | None:
    """Distance fields to every point post (for simulation and response), or None
    if the site has no walkways."""
    if not site.walkways:
        return None
    net = build_network(site)
    targets = [p.id for p in site.posts if p.id in net.access]
    return ReachField(net, targets, 25.0)


def check_plan(
    site: Site,
    plan: Plan,
    *,
    hz: float = 1.0,
    samples: int = 10_000,
    seed: int | None = None,
    threshold_s: float = 82.0,
    timeline: bool = True,
) -> PlanCheck:
    """Simulate ``plan`` at ``hz``, evaluate it with the engine over [start, end],
    and run the response analysis (``seed`` defaults to the plan's)."""
    field = response_field(site)
    sim = simulate(plan, field, hz)
    batch = to_events(plan, sim)
    engine = CoverEngine(site, plan.start, timeline=timeline)
    engine.feed(EventBatch(batch.fixes.take(slice(0, 0)), batch.control))
    fixes = batch.fixes
    for lo in range(0, len(fixes), ENGINE_SLICE):
        part = fixes.take(slice(lo, lo + ENGINE_SLICE))
        engine.feed(EventBatch(part, []))
        # Fixes at the slice's last instant may continue in the next slice.
        engine.advance(int(part.t[-1]))
    engine.close(plan.end)
    evaluation = Evaluation(plan.start, plan.end, engine.lapses, engine.stats)
    arrivals: list[ArrivalStats] = []
    if field is not None and samples > 0:
        arrivals = response_analysis(
            site, plan, sim, field, samples=samples,
            seed=plan.seed if seed is None else seed, threshold_s=threshold_s)
    return PlanCheck(plan, sim, evaluation, arrivals, field, len(fixes))


def fmt_seconds(value: float) -> str:
    """Seconds for tables: '42 s', '3 min 5 s', or 'never'."""
    if not math.isfinite(value):
        return "never"
    if value < 100:
        return f"{value:.0f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s"

