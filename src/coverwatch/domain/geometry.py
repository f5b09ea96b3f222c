"""Site geometry in local metres: projection and signed distance to a post.

The formulas here are the contract in docs/semantics.md. The engine and the
reference evaluator in the tests must agree bit for bit at rule boundaries, so
distances are computed as ``sqrt(dx*dx + dy*dy)`` everywhere (not ``hypot``,
whose rounding differs between libraries).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["EARTH_RADIUS_M", "project_latlon", "signed_distance"]

EARTH_RADIUS_M = 6_371_008.8

F64 = npt.NDArray[np.float64]


def project_latlon(
    lat: F64, lon: F64, origin_lat: float, origin_lon: float
) -> tuple[F64, F64]:
    """Equirectangular projection to metres east (x) and north (y) of the origin."""
    lat0 = np.radians(origin_lat)
    x = EARTH_RADIUS_M * (np.radians(lon) - np.radians(origin_lon)) * np.cos(lat0)
    y = EARTH_RADIUS_M * (np.radians(lat) - lat0)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def signed_distance(
    x: F64,
    y: F64,
    at: tuple[float, float] | None = None,
    area: tuple[tuple[float, float], ...] | None = None,
) -> F64:
    """Signed distance from points to a post: a point, or a polygon.

    For a point post it is the Euclidean distance. For a polygon it is minus
    the distance to the boundary inside, plus it outside (even-odd rule).
    """
    if at is not None:
        dx = x - at[0]
        dy = y - at[1]
        return np.sqrt(dx * dx + dy * dy)
    if area is None:
        raise ValueError("a post needs `at` or `area`")
    best = np.full(x.shape, np.inf)
    inside = np.zeros(x.shape, dtype=bool)
    n = len(area)
    for i in range(n):
        ax, ay = area[i]
        bx, by = area[(i + 1) % n]
        ex = bx - ax
        ey = by - ay
        len2 = ex * ex + ey * ey
        px = x - ax
        py = y - ay
        u = np.clip((px * ex + py * ey) / len2, 0.0, 1.0) if len2 > 0 else np.zeros(x.shape)
        qx = px - u * ex
        qy = py - u * ey
        np.minimum(best, np.sqrt(qx * qx + qy * qy), out=best)
        # Even-odd crossing test on a horizontal ray to +x.
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (y - ay) * ex / np.where(ey == 0, 1.0, ey)
        inside ^= crosses & (x < x_cross)
    return np.where(inside, -best, best)
