"""Tick step 4: the spatial index every other system queries, rebuilt once per tick.

All positioned entities are put into one uniform grid (``systems.spatial_hash.SpatialGrid``,
a counting sort by cell). The ``SpatialIndex`` resource holds the grid plus, in the grid's
point order, each entity's id, position and whether it is alive, so that ordering, cheat
checks, orchestration and the client simulation all ask the same index and nobody builds
another.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.components import Health, Position
from systems.spatial_hash import SpatialGrid


class SpatialIndex:
    """Positions of every entity at the tick's spatial step, and a grid over them.

    ids, x, y: (n,) int64 / float64 / float64; alive: (n,) bool. Query results are indices
    into these arrays.
    """

    def __init__(self, grid: SpatialGrid) -> None:
        self.grid = grid
        self.ids = np.empty(0, np.int64)
        self.x = np.empty(0, np.float64)
        self.y = np.empty(0, np.float64)
        self.alive = np.empty(0, np.bool_)
        self._world = None
        self._tables = []
        self._offset = np.empty(0, np.int64)  # by table index: where its rows start here, -1 if absent
        self._sorted_at = None  # argsort of ids, built only if a lookup needs it

    def rebuild(self, world, positioned) -> None:
        tables = [t for t in positioned.tables() if t.n]
        self._world = world
        self._tables = tables
        self._offset = np.full(len(world.tables), -1, np.int64)
        start = 0
        for t in tables:
            self._offset[world.tables.index(t)] = start
            start += t.n
        # Copies, not views: the index must keep the tick's positions even if tables change.
        self.ids = _joined([t.ids for t in tables], np.int64)
        self.x = _joined([t.column(Position, "x") for t in tables], np.float64)
        self.y = _joined([t.column(Position, "y") for t in tables], np.float64)
        self.alive = _joined(
            [t.column(Health, "dead") == 0 if t.has(Health) else np.ones(t.n, np.bool_) for t in tables], np.bool_
        )
        self.grid.rebuild(self.x, self.y)
        self._sorted_at = None

    def column(self, component, field: str, fill: float = 0) -> tuple[np.ndarray, np.ndarray]:
        """(values (n,), present (n,) bool) of one field for every entity here, in index order:
        the tables' columns laid end to end (valid until the next structural change)."""
        out = np.full(self.ids.shape[0], fill, component.dtype[field])
        present = np.zeros(self.ids.shape[0], np.bool_)
        start = 0
        for t in self._tables:
            if t.has(component):
                out[start : start + t.n] = t.column(component, field)
                present[start : start + t.n] = True
            start += t.n
        return out, present

    def query_point(self, px: float, py: float, radius_m: float) -> np.ndarray:
        """Indices of the entities within ``radius_m`` of (px, py), inclusive."""
        return self.grid.neighbors_near(px, py, radius_m)

    def index_of(self, ids: np.ndarray) -> np.ndarray:
        """Index of each id in this index, -1 where it is not here.

        O(1) per id through the registry: an entity's index is its table's offset here plus its
        row (valid until the next structural change, which only happens after this step).
        """
        ids = np.asarray(ids, np.int64)
        if self._world is None:
            return np.full(ids.shape, -1, np.int64)
        flat = np.ascontiguousarray(ids.reshape(-1))
        table, row = self._world.locate_many(flat)
        out = np.empty(flat.shape[0], np.int64)
        ok = np.empty(flat.shape[0], np.bool_)
        known = table >= 0
        _index_of(flat, table, row, self._offset, self.ids, out, ok)
        moved = np.flatnonzero(~ok & known)
        if moved.size:  # rows changed since the rebuild (a despawn swapped them): search by id
            if self._sorted_at is None:
                self._sorted_at = np.argsort(self.ids, kind="stable")
            pos = np.searchsorted(self.ids, flat[moved], sorter=self._sorted_at).clip(0, max(self.ids.size - 1, 0))
            hit = self.ids[self._sorted_at[pos]] == flat[moved] if self.ids.size else np.zeros(moved.size, bool)
            out[moved] = np.where(hit, self._sorted_at[pos] if self.ids.size else -1, -1)
        return out.reshape(ids.shape)

    def position_of(self, entity: int) -> tuple[float, float]:
        i = int(self.index_of(np.array([entity]))[0])
        if i < 0:
            return np.nan, np.nan
        return float(self.x[i]), float(self.y[i])


@njit(**JIT)
def _index_of(ids, table, row, offset, here, out, ok):
    """Index here of each id: its table's offset plus its row, checked against ``here``.

    ids: (n,) int64; table: (n,) int32, row: (n,) int64 from the registry (-1 unknown);
    offset: (tables,) int64 (-1 absent); here: (m,) int64 ids in index order; all read.
    out: (n,) int64, written (-1 unless ok); ok: (n,) bool, written.
    """
    for i in range(ids.shape[0]):
        t = table[i]
        j = -1
        if t >= 0 and t < offset.shape[0] and offset[t] >= 0:
            j = offset[t] + row[i]
        ok[i] = 0 <= j < here.shape[0] and here[j] == ids[i]
        out[i] = j if ok[i] else -1


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype)
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


class SpatialHash(System):
    phase = Phase.SPATIAL
    reads = (Position, Health)
    writes = (SpatialIndex,)
    reads_others = (Position, Health)

    def __init__(self, world, defn) -> None:
        x0, y0, x1, y1 = defn.bounds
        cell = defn.world.cell_m
        n_cols = max(1, int(np.ceil((x1 - x0) / cell)))
        n_rows = max(1, int(np.ceil((y1 - y0) / cell)))
        self.index = SpatialIndex(SpatialGrid(cell, x0, y0, n_cols, n_rows))
        self._positioned = world.query(Position)

    def run(self, world, ctx) -> None:
        self.index.rebuild(world, self._positioned)
        world.resources[SpatialIndex] = self.index
