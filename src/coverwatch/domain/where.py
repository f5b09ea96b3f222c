"""Where, in words: a position told relative to the nearest post.

"18 m NE of Gate J1 (±12 m, 40 s old)", "at Gate J1 (±5 m, 3 s old)", "position
unknown". Site metres (``x`` east, ``y`` north) are only a detail for screens.
A missing accuracy is said as such: it is never 0 m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coverwatch.domain.geometry import signed_distance
from coverwatch.domain.site import Post
from coverwatch.domain.time import US_PER_S, format_duration, parse_time

__all__ = ["Where", "compass", "where_from", "where_words"]

_POINTS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
_AT_M = 5.0  # closer than this to a post (or inside its area) reads "at"


def compass(dx: float, dy: float) -> str:
    """The 8-point compass direction of (dx east, dy north)."""
    angle = math.degrees(math.atan2(dx, dy)) % 360.0
    return _POINTS[int((angle + 22.5) // 45) % 8]


def _centre(post: Post) -> tuple[float, float]:
    if post.at is not None:
        return post.at
    assert post.area is not None
    return (sum(p[0] for p in post.area) / len(post.area),
            sum(p[1] for p in post.area) / len(post.area))


@dataclass(frozen=True, slots=True)
class Where:
    """A position relative to its nearest post."""

    post: str | None
    post_name: str | None
    distance_m: float | None
    direction: str | None
    accuracy_m: float | None
    age_s: float | None
    text: str

    def to_json(self) -> dict[str, object]:
        return {"post": self.post, "post_name": self.post_name,
                "distance_m": self.distance_m, "direction": self.direction,
                "accuracy_m": self.accuracy_m, "age_s": self.age_s, "text": self.text}


def where_from(x: float | None, y: float | None, posts: Sequence[Post], *,
               accuracy_m: float | None = None, fix_us: int | None = None,
               now_us: int | None = None) -> Where:
    """Where (x, y) is, in words, relative to the nearest of ``posts``."""
    age = None if fix_us is None or now_us is None else max(0.0, (now_us - fix_us) / US_PER_S)
    if x is None or y is None or not math.isfinite(x) or not math.isfinite(y):
        return Where(None, None, None, None, None, age, "position unknown")
    extra = [f"±{accuracy_m:.0f} m" if accuracy_m is not None and accuracy_m > 0
             else "accuracy unknown"]
    if age is not None:
        extra.append(f"{format_duration(age)} old")
    detail = f" ({', '.join(extra)})"
    if not posts:
        return Where(None, None, None, None, accuracy_m, age,
                     f"({x:.0f}, {y:.0f}) m{detail}")
    px, py = np.array([x], np.float64), np.array([y], np.float64)
    dists = [float(signed_distance(px, py, p.at, p.area)[0]) for p in posts]
    i = min(range(len(posts)), key=lambda k: (dists[k], posts[k].id))
    post, d = posts[i], max(0.0, dists[i])
    name = post.name or post.id
    if d < _AT_M:
        return Where(post.id, name, round(d, 1), None, accuracy_m, age, f"at {name}{detail}")
    cx, cy = _centre(post)
    direction = compass(x - cx, y - cy)
    return Where(post.id, name, round(d, 1), direction, accuracy_m, age,
                 f"{d:.0f} m {direction} of {name}{detail}")


def where_words(position: dict[str, object] | None, posts: Sequence[Post],
                now_us: int | None = None) -> Where:
    """From a stored last position (``x``, ``y``, ``accuracy_m``, ``t_us``), or None."""
    if not position:
        return where_from(None, None, posts)

    def num(key: str) -> float | None:
        v = position.get(key)
        return float(v) if isinstance(v, int | float) else None
    t = position.get("t_us")
    if not isinstance(t, int) and isinstance(position.get("time"), str):
        t = parse_time(str(position["time"]))
    return where_from(num("x"), num("y"), posts, accuracy_m=num("accuracy_m"),
                      fix_us=t if isinstance(t, int) else None, now_us=now_us)
