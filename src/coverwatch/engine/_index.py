"""A uniform grid over the site that finds, for many fixes at once, the rules
whose release radius they might be inside.

Each rule registers in every cell that its post's bounding box, widened by the
rule's ``release_m``, touches. A fix is then only measured against the rules
in its own cell, so the cost per fix does not grow with the number of posts.
"""

from __future__ import annotations

import statistics
from itertools import chain

import numpy as np
import numpy.typing as npt

from coverwatch.domain.grid import BoxGrid
from coverwatch.domain.site import Site

__all__ = ["RuleGrid"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

class RuleGrid:
    """Candidate (fix, rule) pairs by grid cell; see the module docstring."""

    def __init__(self, site: Site) -> None:
        pairs = site.rules()
        if pairs and all(p.at is not None and r.reach_s is None for p, r in pairs):
            # Point posts only: the same boxes (the same float operations) in numpy.
            # One pass over the posts (np.array of a list of pairs reads it several times).
            xy = np.fromiter(chain.from_iterable(p.at for p, _ in pairs if p.at is not None),
                             np.float64, 2 * len(pairs)).reshape(-1, 2)
            r_m = np.array([r.release_m for _, r in pairs], np.float64)
            b = np.column_stack((xy[:, 0] - r_m, xy[:, 1] - r_m, xy[:, 0] + r_m, xy[:, 1] + r_m))
            self.n_rules = len(b)
            sizes_a = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            self._grid = BoxGrid(b, float(statistics.median(sizes_a.tolist())))
            return
        boxes: list[tuple[float, float, float, float]] = []
        for post, rule in pairs:
            pts = [post.at] if post.at is not None else list(post.area or ())
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            r = rule.release_m
            if rule.reach_s is not None:
                # Travel is never shorter than the straight line; a metre spare for rounding.
                reach = rule.reach_s * site.speed_for(rule.capability)
                r = min(r, reach * (1 + 1e-9) + 1.0)
            boxes.append((min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r))
        self.n_rules = len(boxes)
        sizes = [max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
        # Cells about the size of a typical rule's box: few rules per cell, few cells per rule.
        self._grid = BoxGrid(boxes, float(statistics.median(sizes)) if boxes else 1.0)

    def layout(self) -> tuple[float, float, float, int, int, I64, I64, I64] | None:
        """The grid's cells and items (see :meth:`BoxGrid.layout`), for the compiled pass."""
        return self._grid.layout()

    def candidates(self, x: F64, y: F64) -> tuple[I64, I64]:
        """Return (fix index, rule index) pairs, fix-major, rules ascending per fix."""
        return self._grid.candidates(x, y)
