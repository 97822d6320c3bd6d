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
from systems.density import DensityCount
from systems.orchestration import EventDirector
from worlds.cluster.protocol import encode, routed

DIRECTOR = 0  # the shard that owns the world's entities without a position


def stand_by(shard) -> None:
    """A shard's event director stands by unless the shard is the director's."""
    for s in shard.schedule.systems:
        if isinstance(s, EventDirector):
            s.directs = shard.index == DIRECTOR


class WorldEvents:
    def _density_extra(self, tick: int) -> dict:
        """What the shards owe at the density count: their counts when players are counted."""
        counter = next((s for s in self.systems if isinstance(s, DensityCount)), None)
        players, npcs = counter.counts(tick) if counter is not None else (False, False)
        return {"count": (players, npcs)} if players else {}

    def _director_extra(self, tick: int, batch: ActionBatch) -> dict:
        """The director reads the whole tick's actions, with their outcomes."""
        frame = self.transport.count(encode(routed(tick, -1, DIRECTOR, "direct", batch, np.arange(batch.n))))
        return {"batch": frame}

    def _after_directing(self, tick: int, results: dict) -> list:
        """Its writes into copies, and the copies it removed, go to their owners (what that
        frees is returned, for this step's sync point)."""
        self._send_results(tick, DIRECTOR, *results[DIRECTOR]["changes"])
        return self._deliver_results()
