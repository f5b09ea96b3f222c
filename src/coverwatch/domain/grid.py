"""A uniform grid of axis-aligned boxes, for finding many points' candidates at once.

Each item (a rule's reach, a walkway segment's neighbourhood) registers in
every cell its box touches. A point is then only tested against the items in
its own cell, so the cost per point does not grow with the number of items.
Used by the engine (rules near a fix) and planning (segments near a position).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["BoxGrid"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_MAX_CELLS = 1 << 22


class BoxGrid:
    """Candidate (point, item) pairs for items given as boxes ``[x0, y0, x1, y1]``.

    ``cell`` is the preferred cell size; it is doubled until the grid has at
    most 4 M cells. Pairs are point-major with items ascending per point.
    """

    def __init__(self, boxes: npt.ArrayLike, cell: float) -> None:
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.n_items = len(b)
        self._empty = self.n_items == 0
        if self._empty:
            return
        x0, y0 = float(b[:, 0].min()), float(b[:, 1].min())
        x1, y1 = float(b[:, 2].max()), float(b[:, 3].max())
        cell = max(cell, 1.0)
        while math.ceil((x1 - x0) / cell + 1) * math.ceil((y1 - y0) / cell + 1) > _MAX_CELLS:
            cell *= 2.0
        nx = math.ceil((x1 - x0) / cell) + 1
        ny = math.ceil((y1 - y0) / cell) + 1
        ix0 = ((b[:, 0] - x0) // cell).astype(np.int64)
        ix1 = ((b[:, 2] - x0) // cell).astype(np.int64)
        iy0 = ((b[:, 1] - y0) // cell).astype(np.int64)
        iy1 = ((b[:, 3] - y0) // cell).astype(np.int64)
        # Every cell of every box at once: item i covers w_i x h_i cells, row by row.
        w = ix1 - ix0 + 1
        per_item = w * (iy1 - iy0 + 1)
        items_a = np.repeat(np.arange(self.n_items, dtype=np.int64), per_item)
        k = np.arange(len(items_a), dtype=np.int64) - np.repeat(np.cumsum(per_item) - per_item,
                                                                per_item)
        wi = w[items_a]
        cells_a = (iy0[items_a] + k // wi) * nx + ix0[items_a] + k % wi
        order = np.lexsort((items_a, cells_a))
        self._items = items_a[order]
        counts = np.bincount(cells_a, minlength=nx * ny).astype(np.int64)
        self._count = counts
        self._start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self._x0, self._y0, self._cell, self._nx, self._ny = x0, y0, cell, nx, ny

    def layout(self) -> tuple[float, float, float, int, int, I64, I64, I64] | None:
        """(x0, y0, cell, nx, ny, first item per cell, items per cell, items), or None if empty.

        Cell (ix, iy) is ``iy * nx + ix``; a point (x, y) is in cell
        ``(floor((x - x0) / cell), floor((y - y0) / cell))``.
        """
        if self._empty:
            return None
        return (self._x0, self._y0, self._cell, self._nx, self._ny, self._start, self._count,
                self._items)

    def candidates(self, x: F64, y: F64) -> tuple[I64, I64]:
        """Return (point index, item index) pairs for points (x, y)."""
        if self._empty or len(x) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        fx = np.floor((x - self._x0) / self._cell)
        fy = np.floor((y - self._y0) / self._cell)
        ok = (fx >= 0) & (fx < self._nx) & (fy >= 0) & (fy < self._ny)
        idx = np.flatnonzero(ok)
        cell = fy[idx].astype(np.int64) * self._nx + fx[idx].astype(np.int64)
        cnt = self._count[cell]
        nz = np.flatnonzero(cnt)  # an index, not a mask: three arrays are taken by it
        idx, cell, cnt = idx[nz], cell[nz], cnt[nz]
        total = int(cnt.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        rep = np.repeat(idx, cnt)
        # Position of each pair inside its cell's item list.
        run_start = np.cumsum(cnt) - cnt
        within = np.arange(total, dtype=np.int64) - np.repeat(run_start, cnt)
        flat = np.repeat(self._start[cell], cnt) + within
        return rep.astype(np.int64), self._items[flat]
