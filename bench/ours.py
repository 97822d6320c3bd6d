"""Move + grid + pairs through our ECS, as a game server would run it.

The points are entities of an ``ecs.World`` with ``Position`` and ``Velocity`` components; a
``Schedule`` runs a move system (a numba kernel on the table's columns) and then a system that
rebuilds ``systems.spatial_hash.SpatialGrid`` from the positions and asks it for every pair
within the radius. Everything the framework adds to the bare kernels (queries, column views,
the schedule's bookkeeping, the grid's input checks) is inside the timed step, which is the
point: the comparison with ``bench.baselines.BareNumba`` is the framework's overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from bench.scenes import Scene, canonical_pairs
from ecs import Phase, Schedule, System, World
from ecs.config import JIT
from systems.components import Position, Velocity
from systems.spatial_hash import SpatialGrid


@njit(**JIT)
def _move_bounce(x, y, vx, vy, dt_s, bounds):
    """x, y, vx, vy: (n,) float64, read and written; bounds: (4,) float64 min_x, min_y, max_x,
    max_y. x += vx * dt_s; a point leaving the bounds is clamped and its velocity reversed."""
    for i in range(x.shape[0]):
        nx = x[i] + vx[i] * dt_s
        if nx < bounds[0] or nx > bounds[2]:
            vx[i] = -vx[i]
            nx = min(max(nx, bounds[0]), bounds[2])
        ny = y[i] + vy[i] * dt_s
        if ny < bounds[1] or ny > bounds[3]:
            vy[i] = -vy[i]
            ny = min(max(ny, bounds[1]), bounds[3])
        x[i] = nx
        y[i] = ny


@dataclass
class MgpContext:
    dt_s: float
    bounds: np.ndarray  # (4,) float64


class NeighbourPairs:
    """Resource: ``pairs`` (m, 2) int64 row indices i < j within the radius, a view that the
    next tick overwrites."""

    def __init__(self) -> None:
        self.pairs = np.empty((0, 2), np.int64)


class Move(System):
    phase = Phase.MOVE
    reads = ()
    writes = (Position, Velocity)

    def __init__(self, world: World) -> None:
        self._moving = world.query(Position, Velocity)

    def run(self, world, ctx) -> None:
        for t in self._moving:
            pos, vel = t.columns(Position), t.columns(Velocity)
            _move_bounce(pos.x, pos.y, vel.vx, vel.vy, ctx.dt_s, ctx.bounds)


class GridPairs(System):
    phase = Phase.SPATIAL
    reads = (Position,)
    writes = (NeighbourPairs,)

    def __init__(self, world: World, grid: SpatialGrid, radius_m: float) -> None:
        self._positioned = world.query(Position)
        self._grid = grid
        self._radius_m = radius_m
        self._out = NeighbourPairs()
        world.resources[NeighbourPairs] = self._out

    def run(self, world, ctx) -> None:
        # One table here, so these are views of its columns, not copies.
        self._grid.rebuild(self._positioned.concat(Position, "x"), self._positioned.concat(Position, "y"))
        self._out.pairs = self._grid.pairs_within(self._radius_m, copy=False)


class EcsMgp:
    """Our pipeline on one scene. ``step()`` runs one tick and returns the number of pairs."""

    name = "ours"

    def __init__(self, scene: Scene) -> None:
        self.world = World()
        self.world.spawn_batch((Position, Velocity), scene.n, {
            Position: {"x": scene.x, "y": scene.y},
            Velocity: {"vx": scene.vx, "vy": scene.vy},
        })
        x0, y0, x1, y1 = scene.bounds
        n_cols = int(np.ceil((x1 - x0) / scene.radius_m))
        n_rows = int(np.ceil((y1 - y0) / scene.radius_m))
        grid = SpatialGrid(scene.radius_m, x0, y0, n_cols, n_rows, capacity=scene.n)
        self.schedule = Schedule([Move(self.world), GridPairs(self.world, grid, scene.radius_m)])
        self.ctx = MgpContext(scene.dt_s, np.asarray(scene.bounds, np.float64))

    def prepare(self) -> None:
        pass

    def step(self) -> int:
        self.schedule.run(self.world, self.ctx)
        return self.world.resources[NeighbourPairs].pairs.shape[0]

    def pairs(self) -> np.ndarray:
        """The last step's pairs as point indices (table rows are the scene's order)."""
        return canonical_pairs(self.world.resources[NeighbourPairs].pairs)

    def close(self) -> None:
        pass
