"""What the simulated clients of a sharded world read: the world merged from the shards' owned
rows after each tick, and where everyone stood at the tick's spatial step (one world's spatial
index holds the same). Reading, not stepping: nothing here changes a shard. A mixin of
``ShardedSimulation`` and the merged view its summaries read.
"""

from __future__ import annotations

import numpy as np

from ecs import World
from systems.components import Health, Position
from systems.density import DensityGrid
from systems.orchestration import EventStats
from systems.regions import RegionLayout
from systems.spatial_hash import SpatialGrid
from worlds.cluster.points import PointSet

_DEAD = (Health, "dead")


class ClientView:
    def _placed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, x, y) of every placed entity, from its owner."""
        ids, x, y, _ = self._where_everyone_stands()
        return ids, x, y

    def _where_everyone_stands(self) -> tuple[np.ndarray, ...]:
        """(ids, x, y, alive) of every placed entity, from its owner: what one world's spatial
        index holds after the spatial step, which the simulated clients read next tick."""
        parts = [(t.ids, t.column(Position, "x"), t.column(Position, "y"),
                  t.column(*_DEAD) == 0 if t.has(_DEAD[0]) else np.ones(t.n, np.bool_))
                 for sh in self.shards for t in sh.owned_tables() if t.has(Position)]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))

    def _refresh_view(self, first: bool = False) -> None:
        """What the simulated clients read: the world after the tick (its owned rows, merged)
        and where everyone stood at the tick's spatial step."""
        view = merged_view(self.shards, self.allocator)
        self.generator.world = view
        if first:
            self._stood = self._where_everyone_stands()
        x0, y0, x1, y1 = self.defn.bounds
        cell = self.defn.world.cell_m
        grid = SpatialGrid(cell, x0, y0, max(1, int(np.ceil((x1 - x0) / cell))), max(1, int(np.ceil((y1 - y0) / cell))))
        self._view = PointSet(*self._stood, grid=grid)


def merged_view(shards, allocator) -> World:
    """One world made of every shard's owned rows (a copy, for reading), with the world-wide
    resources the summaries read (the director's, from its shard)."""
    view = World(shard=allocator.shard)
    view.registry.share_space(allocator)
    view.registry._grow(allocator.slots.shape[0])
    by_key: dict[frozenset, list] = {}
    for sh in shards:
        for t in sh.owned_tables():
            by_key.setdefault(t.key, []).append(t)
    for tables in by_key.values():
        comps = tables[0].components
        ids = np.concatenate([t.ids for t in tables])
        values = {c: {f: np.concatenate([t.column(c, f) for t in tables]) for f in c.fields} for c in comps}
        view.adopt(ids, comps, values)
    for kind in (EventStats, DensityGrid, RegionLayout):
        if kind in shards[0].world.resources:
            view.resources[kind] = shards[0].world.resources[kind]
    return view


