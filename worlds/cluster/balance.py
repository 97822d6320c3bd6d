"""Shard borders that follow the load, moved a little each tick.

Every ``rebalance_every_ticks`` ticks the balancer compares the shards' loads (the entities each
owns); once the most loaded one stays above ``rebalance_trigger`` times the mean for
``rebalance_sustain_ticks`` evaluations (and no sooner than ``rebalance_min_interval_ticks``
after the last move), it finds splits that would share the entities out evenly and walks the
shard map's splits there over ``rebalance_ticks`` ticks. Ownership follows at each barrier, at
most ``max_handoffs_per_tick`` entities a tick, so no tick pays for the whole move.

The target is found on a fixed sample of the entities (those whose id hashes into one
sixteenth), which keeps the evaluation cheap at a million entities and depends only on the
world's state. Where borders run changes no outcome: the state hash is the same on any layout.
"""

from __future__ import annotations

import numpy as np

from systems.regions import SAMPLE_BITS, sampled


class ShardBalancer:
    def __init__(self, shard_map, regions_cfg, shards_cfg) -> None:
        self.map = shard_map
        self.cfg = regions_cfg
        self.enabled = bool(shards_cfg.rebalance and regions_cfg.rebalance and shard_map.shards > 1)
        self.ticks = shards_cfg.rebalance_ticks
        self.moving = False
        self.moves = 0  # rebalances started
        self._above = 0
        self._last = -(10**9)
        self._from = self._to = None
        self._k = 0

    def ratio(self, loads: np.ndarray) -> float:
        mean = loads.sum() / max(loads.shape[0], 1)
        return float(loads.max() / mean) if mean > 0 else 1.0

    def evaluate(self, tick: int, loads: np.ndarray, positions) -> bool:
        """Called each tick with the shards' loads and ``positions()`` (a callable giving the
        ids, x and y of every placed entity, asked only when a rebalance starts). True when a
        move toward a new layout starts."""
        if not self.enabled or self.moving or tick % self.cfg.rebalance_every_ticks:
            return False
        ratio = self.ratio(loads)
        self._above = self._above + 1 if ratio > self.cfg.rebalance_trigger else 0
        if self._above < self.cfg.rebalance_sustain_ticks or tick - self._last < self.cfg.rebalance_min_interval_ticks:
            return False
        ids, x, y = positions()
        keep = np.empty(ids.shape[0], np.bool_)
        sampled(ids, SAMPLE_BITS, keep)
        if keep.sum() < 16:
            keep[:] = True
        x, y = x[keep], y[keep]
        lay = self.map.layout
        target = lay.balanced_split(x, y, np.ones(x.shape[0]))
        shards = self.map.region_shard
        now = self.ratio(np.bincount(shards[lay.assign(x, y)], minlength=self.map.shards).astype(float))
        new = self.ratio(np.bincount(shards[lay.assign(x, y, target)], minlength=self.map.shards).astype(float))
        if new > now - self.cfg.rebalance_min_gain:
            return False
        self._from, self._to, self._k = lay.split.copy(), target, 0
        self.moving, self._above, self._last = True, 0, tick
        self.moves += 1
        return True

    def step(self) -> None:
        """One tick's part of the move: the splits a step nearer the target."""
        if not self.moving:
            return
        self._k += 1
        f = min(self._k / self.ticks, 1.0)
        self.map.layout.set_split(self._from + f * (self._to - self._from))
        self.map.refresh()
        if f >= 1.0:
            self.moving = False
