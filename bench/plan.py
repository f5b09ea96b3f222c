"""Benchmark `plan check`: a 12-hour plan, 60 officers, 40 posts, 1 Hz simulation,
with the response analysis on 10 000 samples. Prints the seconds taken.

Run: .venv/bin/python bench/plan.py
"""

from __future__ import annotations

import time
from types import MappingProxyType

from coverwatch.domain.site import Post, Rule, Site, Walkway
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.planning.simulate import OfficerPlan, Patrol, Plan
from coverwatch.reports.plans import check_plan

GRID = 8  # walkways on a GRID x GRID lattice, 50 m apart (a fictional depot)
STEP = 50.0


def build() -> tuple[Site, Plan]:
    walkways = []
    for i in range(GRID):
        walkways.append(Walkway(f"row-{i}", tuple((j * STEP, i * STEP) for j in range(GRID))))
        walkways.append(Walkway(f"col-{i}", tuple((i * STEP, j * STEP) for j in range(GRID))))
    posts = []
    for k in range(40):
        x, y = (k % GRID) * STEP + 10.0, (k // GRID) * STEP + 5.0
        rules = [Rule("cover", 1 + k % 2, 25.0, 30.0, grace_s=60.0,
                      capability="armed" if k % 3 == 0 else None)]
        if k % 4 == 0:
            rules.append(Rule("response", 1, float("inf"), float("inf"), grace_s=30.0,
                              capability="armed", reach_s=30.0))
        posts.append(Post(f"post-{k}", f"Post {k}", tuple(rules), at=(x, y)))
    site = Site("bench-depot", "Bench Depot (fictional)", tuple(posts),
                walkways=tuple(walkways),
                speeds_mps=MappingProxyType({"armed": 4.0, "default": 3.0}))
    start = parse_time("2026-01-05T06:00:00Z")
    end = start + 12 * 3600 * US_PER_S
    officers = []
    for i in range(60):
        caps = frozenset({"armed"}) if i % 2 == 0 else frozenset()
        if i < 30:
            post = posts[i]
            assert post.at is not None
            officers.append(OfficerPlan(f"o{i}", caps, (start, end + 1),
                                        hold=(post.at[0] + 2, post.at[1]), post=post.id))
        else:
            r = (i * 3) % (GRID - 1)
            route = ((r * STEP, 0.0), (r * STEP, (GRID - 1) * STEP),
                     ((r + 1) * STEP, (GRID - 1) * STEP), ((r + 1) * STEP, 0.0))
            officers.append(OfficerPlan(f"o{i}", caps, (start, end + 1),
                                        patrol=Patrol(route, 1.2, (30.0,), True, None)))
    return site, Plan("bench", start, end, tuple(officers), seed=1)


def main() -> None:
    site, plan = build()
    t0 = time.perf_counter()
    result = check_plan(site, plan, hz=1.0, samples=10_000, timeline=False)
    took = time.perf_counter() - t0
    print(f"plan check: {len(plan.officers)} officers, {len(site.posts)} posts, "
          f"{result.fixes:,} fixes, {len(result.arrivals)} response rows, "
          f"{result.alerts} alerts: {took:.2f} s")


if __name__ == "__main__":
    main()
