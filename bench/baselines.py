"""The baselines our move + grid + pairs is measured against, each written the way its users would.

- ``EsperMgp``: esper, idiomatic: entities with ``Position``/``Velocity`` dataclass components,
  processors for move, grid (a dict of cell -> list) and pairs (each cell's 3x3 block).
- ``NumpyMgp``: plain numpy: vectorised move, an ``argsort`` of cell keys for the grid, and
  pairs by expanding, for each of the five forward neighbour cells, every candidate pair of
  the sorted order at once.
- ``CkdtreePairs``: scipy's cKDTree build + ``query_pairs(output_type="ndarray")``. It times the
  pairs only: its positions are moved (by the numpy move) outside the timed step.
- ``BareNumba``: move + counting sort + pairs in plain arrays, no framework: what our ECS
  pipeline costs without the ECS.

All of them move with the same float operations, so after the same number of steps they hold
the same positions and find the same pairs (``bench/test_bench_mgp.py`` checks it). Each has
``prepare()`` (untimed), ``step()`` (timed; returns the pair count), ``pairs()`` and ``close()``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import count

import esper
import numpy as np
from numba import njit
from scipy.spatial import cKDTree

from bench.scenes import CELL_SLACK, Scene, canonical_pairs
from ecs.config import JIT


def _grid_shape(scene: Scene) -> tuple[float, int, int]:
    """(1 / cell width, columns, rows) of a grid of radius-wide cells over the scene."""
    cell = scene.radius_m * (1.0 + CELL_SLACK)
    return 1.0 / cell, max(1, math.ceil(scene.side_m / cell)), max(1, math.ceil(scene.side_m / cell))


# --------------------------------------------------------------------------- esper


@dataclass(slots=True)
class EPosition:
    x: float
    y: float


@dataclass(slots=True)
class EVelocity:
    vx: float
    vy: float


class MoveProcessor(esper.Processor):
    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        self.bounds = bounds

    def process(self, dt: float) -> None:
        x0, y0, x1, y1 = self.bounds
        for _, (pos, vel) in esper.get_components(EPosition, EVelocity):
            nx = pos.x + vel.vx * dt
            if nx < x0 or nx > x1:
                vel.vx = -vel.vx
                nx = min(max(nx, x0), x1)
            ny = pos.y + vel.vy * dt
            if ny < y0 or ny > y1:
                vel.vy = -vel.vy
                ny = min(max(ny, y0), y1)
            pos.x = nx
            pos.y = ny


class GridProcessor(esper.Processor):
    def __init__(self, origin: tuple[float, float], inv_cell: float) -> None:
        self.origin = origin
        self.inv_cell = inv_cell
        self.cells: dict[tuple[int, int], list[tuple[int, EPosition]]] = {}

    def process(self, dt: float) -> None:
        ox, oy = self.origin
        inv = self.inv_cell
        cells = defaultdict(list)
        for ent, pos in esper.get_component(EPosition):
            cells[(int((pos.x - ox) * inv), int((pos.y - oy) * inv))].append((ent, pos))
        self.cells = cells


class PairsProcessor(esper.Processor):
    def __init__(self, grid: GridProcessor, radius_m: float) -> None:
        self.grid = grid
        self.r2 = radius_m * radius_m
        self.pairs: list[tuple[int, int]] = []

    def process(self, dt: float) -> None:
        cells = self.grid.cells
        r2 = self.r2
        pairs = []
        for (cx, cy), members in cells.items():
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    others = cells.get((cx + dx, cy + dy))
                    if others is None:
                        continue
                    for ea, pa in members:
                        for eb, pb in others:
                            if ea < eb:
                                ddx = pa.x - pb.x
                                ddy = pa.y - pb.y
                                if ddx * ddx + ddy * ddy <= r2:
                                    pairs.append((ea, eb))
        self.pairs = pairs


class EsperMgp:
    name = "esper"
    _worlds = count()

    def __init__(self, scene: Scene) -> None:
        self.dt_s = scene.dt_s
        self.world_name = f"bench-mgp-{next(self._worlds)}"
        esper.switch_world(self.world_name)
        self.entities = [esper.create_entity(EPosition(float(x), float(y)), EVelocity(float(vx), float(vy)))
                         for x, y, vx, vy in zip(scene.x.tolist(), scene.y.tolist(), scene.vx.tolist(),
                                                 scene.vy.tolist())]
        inv, _, _ = _grid_shape(scene)
        grid = GridProcessor(scene.bounds[:2], inv)
        self._pairs = PairsProcessor(grid, scene.radius_m)
        esper.add_processor(MoveProcessor(scene.bounds), priority=3)
        esper.add_processor(grid, priority=2)
        esper.add_processor(self._pairs, priority=1)

    def prepare(self) -> None:
        esper.switch_world(self.world_name)

    def step(self) -> int:
        esper.process(self.dt_s)
        return len(self._pairs.pairs)

    def pairs(self) -> np.ndarray:
        index = {e: i for i, e in enumerate(self.entities)}
        return canonical_pairs(np.array([(index[a], index[b]) for a, b in self._pairs.pairs], np.int64))

    def close(self) -> None:
        esper.switch_world("default")
        esper.delete_world(self.world_name)


# --------------------------------------------------------------------------- numpy


def numpy_move(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, dt_s: float,
               bounds: tuple[float, float, float, float]) -> None:
    """In place, vectorised; the same float operations as every other variant's move."""
    for p, v, lo, hi in ((x, vx, bounds[0], bounds[2]), (y, vy, bounds[1], bounds[3])):
        nxt = p + v * dt_s
        out = (nxt < lo) | (nxt > hi)
        v[out] = -v[out]
        np.clip(nxt, lo, hi, out=p)


class NumpyMgp:
    name = "numpy"

    def __init__(self, scene: Scene) -> None:
        self.x, self.y, self.vx, self.vy = (a.copy() for a in (scene.x, scene.y, scene.vx, scene.vy))
        self.dt_s, self.bounds, self.r2 = scene.dt_s, scene.bounds, scene.radius_m**2
        self.inv_cell, n_cols, n_rows = _grid_shape(scene)
        self.n_cols, self.n_rows = n_cols, n_rows
        self.width = n_cols + 2  # a ring of empty cells: neighbour offsets never wrap to another row
        self.n_cells = self.width * (n_rows + 2)
        self._pairs = np.empty((0, 2), np.int64)

    def prepare(self) -> None:
        pass

    def step(self) -> int:
        numpy_move(self.x, self.y, self.vx, self.vy, self.dt_s, self.bounds)
        x0, y0 = self.bounds[:2]
        col = np.minimum(((self.x - x0) * self.inv_cell).astype(np.int64), self.n_cols - 1)
        row = np.minimum(((self.y - y0) * self.inv_cell).astype(np.int64), self.n_rows - 1)
        cell = (row + 1) * self.width + col + 1
        order = np.argsort(cell, kind="stable")
        scell = cell[order]
        sx, sy = self.x[order], self.y[order]
        start = np.zeros(self.n_cells + 1, np.int64)
        np.cumsum(np.bincount(scell, minlength=self.n_cells), out=start[1:])
        n = scell.shape[0]
        here = np.arange(n)
        found = []
        for offset in (0, 1, self.width - 1, self.width, self.width + 1):
            lo = here + 1 if offset == 0 else start[scell + offset]
            hi = start[scell + offset + 1]
            length = np.maximum(hi - lo, 0)
            total = int(length.sum())
            a = np.repeat(here, length)
            b = np.arange(total) - np.repeat(np.cumsum(length) - length - lo, length)
            dx = sx[a] - sx[b]
            dy = sy[a] - sy[b]
            keep = dx * dx + dy * dy <= self.r2
            found.append(np.stack([order[a[keep]], order[b[keep]]], axis=1))
        self._pairs = np.concatenate(found)
        return self._pairs.shape[0]

    def pairs(self) -> np.ndarray:
        return canonical_pairs(self._pairs)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- cKDTree


class CkdtreePairs:
    name = "ckdtree"

    def __init__(self, scene: Scene) -> None:
        self.xy = np.stack([scene.x, scene.y], axis=1)
        self.vx, self.vy = scene.vx.copy(), scene.vy.copy()
        self.dt_s, self.bounds, self.radius_m = scene.dt_s, scene.bounds, scene.radius_m
        self._pairs = np.empty((0, 2), np.int64)

    def prepare(self) -> None:
        numpy_move(self.xy[:, 0], self.xy[:, 1], self.vx, self.vy, self.dt_s, self.bounds)

    def step(self) -> int:
        self._pairs = cKDTree(self.xy).query_pairs(self.radius_m, output_type="ndarray")
        return self._pairs.shape[0]

    def pairs(self) -> np.ndarray:
        return canonical_pairs(self._pairs)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- bare numba


@njit(**JIT)
def _bare_move_sort(x, y, vx, vy, geom, n_cols, n_rows, cell, counts, order, sxy):
    """Move every point, then counting-sort the points by cell, in two passes.

    x, y, vx, vy: (n,) float64, read and written. geom: (6,) float64 dt_s, min_x, min_y, max_x,
    max_y, 1 / cell width. cell: (n,) int64, written. counts: (n_cols * n_rows + 2,) int64,
    written: counts[c] is where cell c starts in the sorted order, counts[c + 1] where it ends.
    order: (n,) int64, written: original index per sorted position. sxy: (2n,) float64,
    written: x, y per sorted position, interleaved.
    """
    dt, x0, y0, x1, y1, inv = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    counts[:] = 0
    for i in range(x.shape[0]):
        nx = x[i] + vx[i] * dt
        if nx < x0 or nx > x1:
            vx[i] = -vx[i]
            nx = min(max(nx, x0), x1)
        ny = y[i] + vy[i] * dt
        if ny < y0 or ny > y1:
            vy[i] = -vy[i]
            ny = min(max(ny, y0), y1)
        x[i] = nx
        y[i] = ny
        c = min(int((ny - y0) * inv), n_rows - 1) * n_cols + min(int((nx - x0) * inv), n_cols - 1)
        cell[i] = c
        counts[c + 2] += 1
    for c in range(2, counts.shape[0]):
        counts[c] += counts[c - 1]
    for i in range(x.shape[0]):  # counts[c + 1] is cell c's write cursor; it ends at cell c's end
        p = counts[cell[i] + 1]
        counts[cell[i] + 1] = p + 1
        order[p] = i
        sxy[2 * p] = x[i]
        sxy[2 * p + 1] = y[i]


@njit(**JIT)
def _bare_pairs(sxy, order, counts, n_cols, n_rows, r2, out):
    """Pairs within r2 from ``_bare_move_sort``'s arrays, each once: every point scans the rest of
    its cell and the cell to its right (one run of the sorted order), then the three cells
    below (another run). out: (capacity, 2) int64, written. Returns the number of pairs, which
    may exceed capacity (the rest were counted only; the caller retries with a larger buffer).

    One flat function on purpose: with the scan in a helper (even inlined) numba's code was
    two to four times slower. When the buffer has room for every candidate, each is written
    and the count advances only on a hit (no branch); unsigned indices drop numba's
    negative-index wraparound.
    """
    cap = out.shape[0]
    m = 0
    for row in range(n_rows):
        for col in range(n_cols):
            c = row * n_cols + col
            a0 = counts[c]
            a1 = counts[c + 1]
            for a in range(a0, a1):
                xa = sxy[2 * a]
                ya = sxy[2 * a + 1]
                oa = order[a]
                lo = a + 1
                hi = counts[c + 2] if col + 1 < n_cols else a1
                for _ in range(2):
                    if m + (hi - lo) <= cap:
                        for b in range(lo, hi):
                            ub = np.uint64(b)
                            um = np.uint64(m)
                            dx = xa - sxy[2 * ub]
                            dy = ya - sxy[2 * ub + np.uint64(1)]
                            ob = order[ub]
                            out[um, 0] = min(oa, ob)
                            out[um, 1] = max(oa, ob)
                            m += dx * dx + dy * dy <= r2
                    else:
                        for b in range(lo, hi):
                            dx = xa - sxy[2 * b]
                            dy = ya - sxy[2 * b + 1]
                            if dx * dx + dy * dy <= r2:
                                if m < cap:
                                    out[m, 0] = min(oa, order[b])
                                    out[m, 1] = max(oa, order[b])
                                m += 1
                    if row + 1 == n_rows:
                        break
                    lo = counts[c + n_cols - 1] if col > 0 else counts[c + n_cols]
                    hi = counts[c + n_cols + 2] if col + 1 < n_cols else counts[c + n_cols + 1]
    return m


class BareNumba:
    name = "bare"

    def __init__(self, scene: Scene) -> None:
        self.x, self.y, self.vx, self.vy = (a.copy() for a in (scene.x, scene.y, scene.vx, scene.vy))
        inv, self.n_cols, self.n_rows = _grid_shape(scene)
        self.geom = np.array([scene.dt_s, *scene.bounds, inv], np.float64)
        self.r2 = scene.radius_m**2
        n = scene.n
        self.cell = np.empty(n, np.int64)
        self.counts = np.empty(self.n_cols * self.n_rows + 2, np.int64)
        self.order = np.empty(n, np.int64)
        self.sxy = np.empty(2 * n, np.float64)
        self.out = np.empty((8 * n + 1024, 2), np.int64)
        self.m = 0

    def prepare(self) -> None:
        pass

    def step(self) -> int:
        _bare_move_sort(self.x, self.y, self.vx, self.vy, self.geom, self.n_cols, self.n_rows, self.cell,
                        self.counts, self.order, self.sxy)
        m = _bare_pairs(self.sxy, self.order, self.counts, self.n_cols, self.n_rows, self.r2, self.out)
        if m > self.out.shape[0]:
            self.out = np.empty((m + m // 4 + 1024, 2), np.int64)
            m = _bare_pairs(self.sxy, self.order, self.counts, self.n_cols, self.n_rows, self.r2, self.out)
        self.m = m
        return m

    def pairs(self) -> np.ndarray:
        return canonical_pairs(self.out[: self.m])

    def close(self) -> None:
        pass


VARIANTS = {"esper": EsperMgp, "numpy": NumpyMgp, "ckdtree": CkdtreePairs, "bare": BareNumba}
