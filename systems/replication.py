"""Tick step 9: what a shard owes its neighbours at the barrier that ends the tick.

For every entity the shard owns, the shard whose rectangle now holds it (a hand-off when that
is another shard) and the neighbours within whose interest radius it stands (they hold it as
a ghost: a read-only copy, refreshed from the owner). A shard's rectangles come from the
sharded world's ``ShardMap``; this system only reads positions, so it is the same kernel for
a shard of two and a shard of sixty-four, and costs one pass over the owned rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.components import Ghost, Position

MAX_SHARDS = 64  # interest sets are uint64 bit masks


@njit(**JIT)
def _near(x, y, home, rects, radius_m, out_near):
    """Interest mask of each point.

    x, y: (n,) float64 points owned by shard ``home``; rects: (shards, 4) float64 x0, y0, x1, y1
    of each shard; all read. out_near: (n,) uint64, written: bit s set when the point lies
    within ``radius_m`` of shard s's rectangle (inside it too: an entity whose hand-off waits
    is a ghost where it stands), s not being its owner.
    """
    r2 = radius_m * radius_m
    for i in range(x.shape[0]):
        mask = np.uint64(0)
        for s in range(rects.shape[0]):
            if s == home:
                continue
            dx = max(rects[s, 0] - x[i], 0.0, x[i] - rects[s, 2])
            dy = max(rects[s, 1] - y[i], 0.0, y[i] - rects[s, 3])
            if dx * dx + dy * dy <= r2:
                mask |= np.uint64(1) << np.uint64(s)
        out_near[i] = mask


class ReplicationPlan:
    """ids: (n,) int64 owned positioned entities; dest: (n,) int64 the shard whose rectangle
    holds each now; near: (n,) uint64 interest mask (see ``_near``)."""

    def __init__(self, ids: np.ndarray, dest: np.ndarray, near: np.ndarray) -> None:
        self.ids = ids
        self.dest = dest
        self.near = near

    def leaving(self, shard: int) -> np.ndarray:
        """Owned entities that now stand in another shard's rectangle."""
        return self.ids[self.dest != shard]

    def seen_by(self, other: int) -> np.ndarray:
        """Owned entities within the interest radius of shard ``other``'s rectangle."""
        return self.ids[(self.near & (np.uint64(1) << np.uint64(other))) != 0]


class Replication(System):
    """Runs on each shard of a sharded world. ``shard_map`` (``worlds.cluster.shardmap``) says
    which shard holds a point and each shard's rectangle; it is shared by the world's shards
    and may change between ticks (a rebalance)."""

    phase = Phase.REPLICATE
    reads = (Position,)
    writes = (ReplicationPlan,)
    reads_others = ()

    def __init__(self, world, shard: int, shard_map, radius_m: float) -> None:
        if shard_map.shards > MAX_SHARDS:
            raise ValueError(f"at most {MAX_SHARDS} shards, got {shard_map.shards}")
        self.shard = shard
        self.shard_map = shard_map
        self.radius_m = float(radius_m)
        self._owned = world.query(Position, without=(Ghost,))

    def plan(self, world) -> ReplicationPlan:
        rects = np.ascontiguousarray(self.shard_map.rects, np.float64)
        ids, dests, nears = [], [], []
        for t in self._owned:
            x, y = t.column(Position, "x"), t.column(Position, "y")
            dest = self.shard_map.shard_of(x, y)
            near = np.empty(t.n, np.uint64)
            _near(x, y, self.shard, rects, self.radius_m, near)
            ids.append(t.ids.copy())
            dests.append(dest)
            nears.append(near)
        if not ids:
            return ReplicationPlan(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64))
        return ReplicationPlan(np.concatenate(ids), np.concatenate(dests), np.concatenate(nears))

    def plan_of(self, world, ids: np.ndarray) -> ReplicationPlan:
        """The plan for some owned entities only (those that just appeared or moved far)."""
        ids = np.asarray(ids, np.int64)
        table, row = world.locate_many(ids)
        rects = np.ascontiguousarray(self.shard_map.rects, np.float64)
        out_ids, dests, nears = [], [], []
        for t in np.unique(table[table >= 0]).tolist():
            held = world.tables[t]
            if not held.has(Position) or held.has(Ghost):
                continue
            sel = table == t
            x = np.ascontiguousarray(held.column(Position, "x")[row[sel]])
            y = np.ascontiguousarray(held.column(Position, "y")[row[sel]])
            near = np.empty(x.shape[0], np.uint64)
            _near(x, y, self.shard, rects, self.radius_m, near)
            out_ids.append(ids[sel])
            dests.append(self.shard_map.shard_of(x, y))
            nears.append(near)
        if not out_ids:
            return ReplicationPlan(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64))
        return ReplicationPlan(np.concatenate(out_ids), np.concatenate(dests), np.concatenate(nears))

    def run(self, world, ctx) -> None:
        world.resources[ReplicationPlan] = self.plan(world)
