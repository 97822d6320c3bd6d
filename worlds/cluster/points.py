"""Positions of some entities, by id: what the world-wide steps of a sharded world read where
one world reads its spatial index (the tick's order; the clients' view of the world).

It answers the part of ``systems.spatial_index.SpatialIndex`` those readers use (``ids``,
``x``, ``y``, ``alive``, ``index_of`` and, when built with one, ``grid``), with the points in
id order: nothing that reads it may depend on the order of points, and nothing does.
"""

from __future__ import annotations

import numpy as np


class PointSet:
    def __init__(self, ids: np.ndarray, x: np.ndarray, y: np.ndarray, alive: np.ndarray | None = None,
                 grid=None) -> None:
        ids = np.asarray(ids, np.int64)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.x = np.ascontiguousarray(np.asarray(x, np.float64)[order])
        self.y = np.ascontiguousarray(np.asarray(y, np.float64)[order])
        self.alive = np.ones(ids.shape[0], np.bool_) if alive is None else np.asarray(alive, np.bool_)[order]
        self.grid = grid
        if grid is not None:
            grid.rebuild(self.x, self.y)

    def index_of(self, ids: np.ndarray) -> np.ndarray:
        """Index of each id here, -1 where it is not."""
        ids = np.asarray(ids, np.int64)
        if self.ids.size == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.searchsorted(self.ids, ids).clip(0, self.ids.size - 1)
        return np.where(self.ids[pos] == ids, pos, -1).astype(np.int64)
