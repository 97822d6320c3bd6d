"""Which shard owns which part of the world: regions of the k-d partition, grouped by subtree.

A shard owns whole subtrees of the region tree (``systems.regions.RegionLayout``): shards are
dealt out from the root down, each side of a split getting shards in proportion to its
regions, so every shard's regions form one rectangle (spatially contiguous by construction),
the assignment depends only on the region count and the shard count, and when a rebalance
moves the splits the shards' borders move with them. An entity without a position (a trade
offer, a density cell, an event tally) belongs to the world rather than a place: shard 0 owns
it and every other shard holds a copy.
"""

from __future__ import annotations

import numpy as np

from systems.regions import RegionLayout


class ShardMap:
    """``region_shard``: (regions,) int64 owner shard of each region; ``rects``: (shards, 4)
    float64 x0, y0, x1, y1 of each shard's rectangle under the layout's current splits."""

    def __init__(self, layout: RegionLayout, shards: int) -> None:
        if not 1 <= shards <= layout.count:
            raise ValueError(f"{shards} shards need at least as many regions; the layout has {layout.count}")
        self.layout = layout
        self.shards = shards
        self.region_shard = np.full(layout.count, -1, np.int64)
        self._node_of_shard = np.full(shards, -1, np.int64)
        self._deal(0, 0, shards)
        self.refresh()

    def _deal(self, node: int, first: int, count: int) -> None:
        lay = self.layout
        if count == 1:
            self._node_of_shard[first] = node
            stack = [node]
            while stack:
                k = stack.pop()
                if lay.left[k] < 0:
                    self.region_shard[lay.leaf_region[k]] = first
                else:
                    stack += [lay.left[k], lay.right[k]]
            return
        c, cl = lay.leaf_count[node], lay.leaf_count[lay.left[node]]
        sl = int(round(count * cl / c))
        sl = min(max(sl, 1, count - (c - cl)), count - 1, cl)
        self._deal(int(lay.left[node]), first, sl)
        self._deal(int(lay.right[node]), first + sl, count - sl)

    def refresh(self) -> None:
        """Recompute the shards' rectangles after the layout's splits moved."""
        out = np.empty((self.shards, 4), np.float64)
        region_rects = self.layout.rects
        for s in range(self.shards):
            r = region_rects[self.region_shard == s]
            out[s] = (r[:, 0].min(), r[:, 1].min(), r[:, 2].max(), r[:, 3].max())
        self._rects, self._split_seen = out, self.layout.split.copy()

    @property
    def rects(self) -> np.ndarray:
        if not np.array_equal(self._split_seen, self.layout.split):  # moved behind our back
            self.refresh()
        return self._rects

    def shard_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) int64 owner shard of each point."""
        return self.region_shard[self.layout.assign(np.asarray(x, np.float64), np.asarray(y, np.float64))]

    def near(self, x: np.ndarray, y: np.ndarray, radius_m: float) -> np.ndarray:
        """(n, shards) bool: the point lies within ``radius_m`` of that shard's rectangle
        (its own shard included)."""
        rects = self.rects
        x = np.asarray(x, np.float64)[:, None]
        y = np.asarray(y, np.float64)[:, None]
        dx = np.maximum(np.maximum(rects[None, :, 0] - x, x - rects[None, :, 2]), 0.0)
        dy = np.maximum(np.maximum(rects[None, :, 1] - y, y - rects[None, :, 3]), 0.0)
        return dx * dx + dy * dy <= radius_m * radius_m
