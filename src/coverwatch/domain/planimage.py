"""A site-plan image placed on the site: control points (image pixel -> site
metres) fitted to an affine map.

An image's pixels run right and *down*; site metres run east and *north*. With
two control points the fit is a similarity (scale, rotation, shift) of an image
that is not mirrored: pixel ``(u, v)`` is read as the complex number ``u - iv``
so that "down" in the image becomes "south" on the site. With three it is the
full affine map through them (any skew or mirroring the points imply).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Affine", "ControlPoint", "PlanImage", "fit_control_points"]

Point = tuple[float, float]

# Points closer than this share of the points' spread are treated as one.
_DEGENERATE = 1e-9


@dataclass(frozen=True, slots=True)
class ControlPoint:
    """One pixel of the image and the site point (metres) it shows."""

    pixel: Point
    site: Point


@dataclass(frozen=True, slots=True)
class Affine:
    """``x = a*u + c*v + e``, ``y = b*u + d*v + f`` (the SVG matrix order)."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float

    def apply(self, u: float, v: float) -> Point:
        """The site point of pixel ``(u, v)``."""
        return (self.a * u + self.c * v + self.e, self.b * u + self.d * v + self.f)

    def as_list(self) -> list[float]:
        """``[a, b, c, d, e, f]``, for JSON."""
        return [self.a, self.b, self.c, self.d, self.e, self.f]


@dataclass(frozen=True, slots=True)
class PlanImage:
    """A site-plan image (PNG or SVG) and where it lies on the site, and/or a
    map-tile URL template drawn under it. ``file`` is the resolved path the server
    reads (None where the site was read from text with no folder to look in)."""

    image: str | None = None
    file: str | None = None
    media_type: str | None = None
    width: float | None = None
    height: float | None = None
    points: tuple[ControlPoint, ...] = ()
    transform: Affine | None = None
    tiles: str | None = None
    attribution: str | None = None


def _spread(points: list[Point]) -> float:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return max(max(xs) - min(xs), max(ys) - min(ys))


def _similarity(p: ControlPoint, q: ControlPoint) -> Affine:
    z1 = complex(p.pixel[0], -p.pixel[1])
    z2 = complex(q.pixel[0], -q.pixel[1])
    w1 = complex(*p.site)
    w2 = complex(*q.site)
    if abs(z2 - z1) <= _DEGENERATE * max(abs(z1), abs(z2), 1.0):
        raise ValueError("the two control points are the same pixel")
    if abs(w2 - w1) <= _DEGENERATE * max(abs(w1), abs(w2), 1.0):
        raise ValueError("the two control points are the same site point")
    k = (w2 - w1) / (z2 - z1)
    t = w1 - k * z1
    # site = k * (u - iv) + t
    return Affine(k.real, k.imag, k.imag, -k.real, t.real, t.imag)


def _collinear(points: list[Point]) -> bool:
    (x1, y1), (x2, y2), (x3, y3) = points
    area2 = abs((x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1))
    return area2 <= _DEGENERATE * _spread(points) ** 2


def _affine(points: tuple[ControlPoint, ...]) -> Affine:
    pixels = [p.pixel for p in points]
    sites = [p.site for p in points]
    if _collinear(pixels):
        raise ValueError("the three control points' pixels lie on one line")
    if _collinear(sites):
        raise ValueError("the three control points' site points lie on one line")
    (u1, v1), (u2, v2), (u3, v3) = pixels
    det = u1 * (v2 - v3) - v1 * (u2 - u3) + (u2 * v3 - u3 * v2)

    def solve(t1: float, t2: float, t3: float) -> tuple[float, float, float]:
        # Cramer's rule for [u v 1] . [p q r] = t at the three pixels.
        p = (t1 * (v2 - v3) - v1 * (t2 - t3) + (t2 * v3 - t3 * v2)) / det
        q = (u1 * (t2 - t3) - t1 * (u2 - u3) + (u2 * t3 - u3 * t2)) / det
        r = (u1 * (v2 * t3 - v3 * t2) - v1 * (u2 * t3 - u3 * t2)
             + t1 * (u2 * v3 - u3 * v2)) / det
        return p, q, r

    a, c, e = solve(*(s[0] for s in sites))
    b, d, f = solve(*(s[1] for s in sites))
    return Affine(a, b, c, d, e, f)


def fit_control_points(points: tuple[ControlPoint, ...]) -> Affine:
    """The map from image pixels to site metres through two or three control
    points. Raises ``ValueError`` saying why for another count or for points that
    fix no map (one pixel twice, one site point twice, three points on a line)."""
    if len(points) == 2:
        return _similarity(*points)
    if len(points) == 3:
        return _affine(points)
    raise ValueError(f"give two or three control points, not {len(points)}")
