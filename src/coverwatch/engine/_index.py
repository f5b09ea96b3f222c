"""A uniform grid over the site that finds, for many fixes at once, the rules
whose release radius they might be inside.

Each rule registers in every cell that its post's bounding box, widened by the
rule's ``release_m``, touches. A fix is then only measured against the rules
in its own cell, so the cost per fix does not grow with the number of posts.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from coverwatch.domain.site import Site

__all__ = ["RuleGrid"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_MAX_CELLS = 1 << 22


class RuleGrid:
    """Candidate (fix, rule) pairs by grid cell; see the module docstring."""

    def __init__(self, site: Site) -> None:
        boxes: list[tuple[float, float, float, float]] = []
        for post, rule in site.rules():
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
        if not boxes:
            self._empty = True
            return
        self._empty = False
        b = np.asarray(boxes, np.float64)
        x0, y0 = float(b[:, 0].min()), float(b[:, 1].min())
        x1, y1 = float(b[:, 2].max()), float(b[:, 3].max())
        # Cells about the size of a typical rule's box: few rules per cell, few cells per rule.
        sizes = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        cell = max(float(np.median(sizes)), 1.0)
        while math.ceil((x1 - x0) / cell + 1) * math.ceil((y1 - y0) / cell + 1) > _MAX_CELLS:
            cell *= 2.0
        nx = math.ceil((x1 - x0) / cell) + 1
        ny = math.ceil((y1 - y0) / cell) + 1
        cells: list[int] = []
        rules: list[int] = []
        for rid, (bx0, by0, bx1, by1) in enumerate(boxes):
            ix0, ix1 = int((bx0 - x0) // cell), int((bx1 - x0) // cell)
            iy0, iy1 = int((by0 - y0) // cell), int((by1 - y0) // cell)
            for iy in range(iy0, iy1 + 1):
                for ix in range(ix0, ix1 + 1):
                    cells.append(iy * nx + ix)
                    rules.append(rid)
        cells_a = np.asarray(cells, np.int64)
        rules_a = np.asarray(rules, np.int64)
        order = np.lexsort((rules_a, cells_a))
        self._rules_in_cells = rules_a[order]
        counts = np.bincount(cells_a, minlength=nx * ny)
        self._count = counts.astype(np.int64)
        self._start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self._x0, self._y0, self._cell = x0, y0, cell
        self._nx, self._ny = nx, ny

    def candidates(self, x: F64, y: F64) -> tuple[I64, I64]:
        """Return (fix index, rule index) pairs, fix-major, rules ascending per fix."""
        if self._empty or len(x) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        fx = np.floor((x - self._x0) / self._cell)
        fy = np.floor((y - self._y0) / self._cell)
        ok = (fx >= 0) & (fx < self._nx) & (fy >= 0) & (fy < self._ny)
        fix_idx = np.flatnonzero(ok)
        cell = fy[ok].astype(np.int64) * self._nx + fx[ok].astype(np.int64)
        cnt = self._count[cell]
        nz = cnt > 0
        fix_idx, cell, cnt = fix_idx[nz], cell[nz], cnt[nz]
        total = int(cnt.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        fix_rep = np.repeat(fix_idx, cnt)
        # Position of each pair inside its cell's rule list.
        run_start = np.cumsum(cnt) - cnt
        within = np.arange(total, dtype=np.int64) - np.repeat(run_start, cnt)
        flat = np.repeat(self._start[cell], cnt) + within
        return fix_rep.astype(np.int64), self._rules_in_cells[flat]
