"""World events on a sharded world: one density field and one event director for all shards.

The density cells, the events, their tallies and the players' activity records have no
position, so shard 0 owns them (as it owns every such entity) and runs the director; the other
shards' directors stand by. Every shard counts the players and NPCs it owns into its density
grid, and the counts go to shard 0 (whole numbers: added in any order, they are the one-world
count), which folds them into the field. Shard 0 also holds copies of every player and every
event mob, besides its border ghosts, so its director reads what one world's reads; the
actions it reads are the whole tick's, with their outcomes. What it writes into copies (a
rescaled mob's hp) and the copies it removes (mobs buried, or gone with their ended event) go
to their owners as group results; the mobs it spawns are its own until the next barrier hands
them to the shard where they stand. A mixin of ``ShardedSimulation``.
"""

from __future__ import annotations

import numpy as np

from systems.actions import ActionBatch
from systems.components import Player
from systems.density import DensityCount, DensityGrid
from systems.orchestration import EventDirector, EventMember
from worlds.cluster.protocol import DensityCounts, pack, unpack

DIRECTOR = 0  # the shard that owns the world's entities without a position


def stand_by(shard) -> None:
    """A shard's event director stands by unless the shard is the director's."""
    for s in shard.schedule.systems:
        if isinstance(s, EventDirector):
            s.directs = shard.index == DIRECTOR


class WorldEvents:
    def _watched(self, sh, ids: np.ndarray | None = None) -> np.ndarray:
        """What the director reads of a shard besides its border: the players and event mobs
        it owns (those among ``ids`` when given). Nothing in a world without events."""
        if getattr(self.defn, "events", None) is None or sh.index == DIRECTOR:
            return np.empty(0, np.int64)
        parts = [t.ids for t in sh.owned_tables() if t.has(Player) or t.has(EventMember)]
        mine = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return mine if ids is None else np.intersect1d(mine, ids)

    def _gather_density(self, tick: int) -> None:
        """After the count: every shard's counts go to the director's grid, added up."""
        counter = next((s for s in self.shards[DIRECTOR].schedule.systems if isinstance(s, DensityCount)), None)
        players, npcs = counter.counts(tick) if counter is not None else (False, False)
        if not players:
            return
        for s, sh in enumerate(self.shards):
            if s != DIRECTOR:
                raw = sh.world.resources[DensityGrid].raw
                self.transport.send(DIRECTOR, DensityCounts(tick, s, DIRECTOR, pack(raw[0]),
                                                            pack(raw[1]) if npcs else b""))
        raw = self.shards[DIRECTOR].world.resources[DensityGrid].raw
        for m in self.transport.receive(DIRECTOR):
            raw[0] += unpack(m.players, np.float64, "DensityCounts.players")
            if npcs:
                raw[1] += unpack(m.npcs, np.float64, "DensityCounts.npcs")

    def _before_directing(self, batch: ActionBatch) -> None:
        """The director reads the whole tick's actions, with their outcomes."""
        res = self.shards[DIRECTOR].world.resources
        self._own_batch = res.get(ActionBatch)
        res[ActionBatch] = batch

    def _after_directing(self, tick: int) -> None:
        """Its writes into copies, and the copies it removed, go to their owners."""
        sh = self.shards[DIRECTOR]
        sh.world.resources[ActionBatch] = self._own_batch
        changed, gone = sh.changes()
        self._send_results(tick, DIRECTOR, changed, gone)
        self._deliver_results()
