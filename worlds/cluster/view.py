"""What the simulated clients of a sharded world read: the world merged from the shards' owned
rows after each tick, and where everyone stood at the tick's spatial step (one world's spatial
index holds the same). Reading, not stepping: nothing here changes a shard. A mixin of
``ShardedSimulation`` and the merged view its summaries read.
"""

from __future__ import annotations

import numpy as np

from ecs import World
from systems.density import DensityGrid
from systems.orchestration import EventStats
from systems.regions import RegionLayout
from systems.spatial_hash import SpatialGrid
from worlds.cluster.points import PointSet
from worlds.cluster.protocol import decode
from worlds.cluster.rows import write_rows


class ClientView:
    def _placed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, x, y) of every placed entity, from its owner."""
        ids, x, y, _ = self._where_everyone_stands()
        return ids, x, y

    def _where_everyone_stands(self) -> tuple[np.ndarray, ...]:
        """(ids, x, y, alive) of every placed entity, from its owner: what one world's spatial
        index holds after the spatial step, which the simulated clients read next tick."""
        return _stood(self.host.all("stand"))

    def _merged(self) -> World:
        """The world as the shards' owned rows make it up (a copy, for reading)."""
        if self.host.shares_allocator:
            return merged_view(self.host.shards, self.allocator)
        return merged_from_rows(self.host.all("owned_rows"), self.allocator, self.catalog)

    def _refresh_view(self, first: bool = False) -> None:
        """What the simulated clients read: the world after the tick (its owned rows, merged)
        and where everyone stood at the tick's spatial step."""
        view = self._merged()
        self.generator.world = view
        if first:
            self._stood = self._where_everyone_stands()
        x0, y0, x1, y1 = self.defn.bounds
        cell = self.defn.world.cell_m
        grid = SpatialGrid(cell, x0, y0, max(1, int(np.ceil((x1 - x0) / cell))), max(1, int(np.ceil((y1 - y0) / cell))))
        self._view = PointSet(*self._stood, grid=grid)


def _stood(parts) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


WORLD_RESOURCES = (EventStats, DensityGrid, RegionLayout)  # what summaries read of shard 0


def _empty_view(allocator) -> World:
    view = World(shard=allocator.shard)
    view.registry.share_space(allocator)
    view.registry._grow(allocator.slots.shape[0])
    return view


def merged_from_rows(parts, allocator, catalog) -> World:
    """``merged_view`` from the shards' owned rows as they sent them (``Node.owned_rows``)."""
    view = _empty_view(allocator)
    for frames, _ in parts:
        for f in frames:
            write_rows(view, decode(f).rows, catalog)
    for kind in WORLD_RESOURCES:
        found = parts[0][1].get(kind.__name__)
        if found is not None:
            view.resources[kind] = found
    return view


def merged_view(shards, allocator) -> World:
    """One world made of every shard's owned rows (a copy, for reading), with the world-wide
    resources the summaries read (the director's, from its shard)."""
    view = _empty_view(allocator)
    by_key: dict[frozenset, list] = {}
    for sh in shards:
        for t in sh.owned_tables():
            by_key.setdefault(t.key, []).append(t)
    for tables in by_key.values():
        comps = tables[0].components
        ids = np.concatenate([t.ids for t in tables])
        values = {c: {f: np.concatenate([t.column(c, f) for t in tables]) for f in c.fields} for c in comps}
        view.adopt(ids, comps, values)
    for kind in WORLD_RESOURCES:
        if kind in shards[0].world.resources:
            view.resources[kind] = shards[0].world.resources[kind]
    return view
