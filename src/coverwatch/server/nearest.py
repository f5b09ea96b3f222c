"""Who to send: the officers nearest a lapsed post who would count for its rule.

An officer is a candidate when on duty, not stale, holding the rule's
capability (if it names one) and not already counting for the rule. They are
ranked by travel time to the post: along the walkways when the site has them
(the planning module's reach field, the same distances ``reach_s`` uses), in a
straight line otherwise (or when the officer is off the walkway network), at
the site's walking speed for the capability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coverwatch.domain.site import Post, Site
from coverwatch.server.live import LiveCover, OfficerView, Position

__all__ = ["Candidate", "ReachCache", "nearest_officers"]

# Positions farther than this from every walkway are measured in a straight line.
_SNAP_RADIUS_M = 250.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """One officer who could be sent, with how far and where they are now."""

    officer: str
    travel_s: float
    distance_m: float
    via: str  # "walkways" or "straight line"
    x: float
    y: float
    now_at: tuple[str, ...]  # the posts they count for now ("post/rule")
    rostered: str | None  # their roster entry now: "post X" or "patrol Y"

    def to_json(self) -> dict[str, Any]:
        return {
            "officer": self.officer, "travel_s": round(self.travel_s, 1),
            "distance_m": round(self.distance_m, 1), "via": self.via,
            "x": round(self.x, 2), "y": round(self.y, 2),
            "now_at": list(self.now_at), "rostered": self.rostered,
        }


class ReachCache:
    """Walkway reach fields per (site, post), built on first use."""

    def __init__(self) -> None:
        self._fields: dict[tuple[int, str], Any] = {}
        self._site: Site | None = None

    def field(self, site: Site, post: Post) -> Any:
        if not site.walkways or post.at is None:
            return None
        if site is not self._site:
            self._fields.clear()
            self._site = site
        key = (id(site), post.id)
        if key not in self._fields:
            from coverwatch.planning import ReachField, build_network

            self._fields[key] = ReachField(build_network(site), [post.id], _SNAP_RADIUS_M)
        return self._fields[key]


def _point(post: Post) -> tuple[float, float] | None:
    if post.at is not None:
        return post.at
    if post.area:
        xs = [p[0] for p in post.area]
        ys = [p[1] for p in post.area]
        return (sum(xs) / len(xs), sum(ys) / len(ys))
    return None


def _eligible(view: OfficerView, post: str, rule: str, capability: str | None) -> bool:
    if not view.on_duty or view.stale:
        return False
    if capability is not None and capability not in view.capabilities:
        return False
    return (post, rule) not in view.rules


def nearest_officers(
    live: LiveCover,
    post_id: str,
    rule_id: str,
    *,
    roster: Mapping[str, str] | None = None,
    limit: int = 5,
    cache: ReachCache | None = None,
    views: Sequence[OfficerView] | None = None,
) -> list[Candidate]:
    """Up to ``limit`` candidates for (post, rule), nearest first (ties by name)."""
    site = live.site
    try:
        post = site.post(post_id)
    except KeyError:
        return []
    rule = next((r for r in post.rules if r.id == rule_id), None)
    target = _point(post)
    if rule is None or target is None:
        return []
    positions: dict[str, Position] = live.positions()
    chosen = [v for v in (views if views is not None else live.officers())
              if v.officer in positions and _eligible(v, post_id, rule_id, rule.capability)]
    if not chosen:
        return []
    xs = np.array([positions[v.officer].x for v in chosen])
    ys = np.array([positions[v.officer].y for v in chosen])
    straight = np.hypot(xs - target[0], ys - target[1])
    travel = np.full(len(chosen), np.inf)
    reach = (cache or ReachCache()).field(site, post)
    if reach is not None:
        idx = np.arange(len(chosen), dtype=np.int64)
        travel = reach.travel_m(xs, ys, idx, np.zeros(len(chosen), np.int64))
    speed = site.speed_for(rule.capability)
    out = []
    for i, v in enumerate(chosen):
        on_walkways = bool(np.isfinite(travel[i]))
        metres = float(travel[i] if on_walkways else straight[i])
        out.append(Candidate(
            v.officer, metres / speed, metres, "walkways" if on_walkways else "straight line",
            float(xs[i]), float(ys[i]), tuple(f"{p}/{r}" for p, r in v.rules),
            (roster or {}).get(v.officer),
        ))
    out.sort(key=lambda c: (c.travel_s, c.officer))
    return out[:limit]
