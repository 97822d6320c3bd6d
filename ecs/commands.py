"""Command buffers: structural changes recorded by systems, applied at sync points.

A system never changes which tables hold which entities while kernels may be looking at the
columns; it records spawns, despawns and component additions/removals here, and the schedule
applies them, in the order they were recorded, between two systems. A spawn gets its id at
once (reserved in the registry), so the same buffer can refer to it.

Where ids are drawn and freed is made independent of the order rows lie in tables: at a sync
point the spawns recorded with ``spawn_keyed`` draw their ids in the order of their keys, and
then the ids of the entities despawned there go back to the registry in ascending order (last:
a freed slot rests as long as possible before its next generation is issued). A system that spawns
for reasons found in table rows (a corpse replaced, an offer made) keys each spawn by what it
is for, so the ids it gets are those the same world gets however its rows are laid out, on one
shard or on many (a sharded world does both steps world-wide, ``keyed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ecs.component import Component

if TYPE_CHECKING:
    from ecs.world import World

Values = Mapping[Component, Mapping[str, object]]


class CommandBuffer:
    def __init__(self, world: World) -> None:
        self._world = world
        self._ops: list[tuple] = []

    def __len__(self) -> int:
        return len(self._ops)

    def spawn(self, components: Iterable[Component], values: Values | None = None) -> int:
        """Reserve an id now; the entity appears with ``components`` at the next sync point."""
        return int(self.spawn_batch(components, 1, values)[0])

    def spawn_batch(self, components: Iterable[Component], n: int, values: Values | None = None) -> np.ndarray:
        """Reserve ``n`` ids; field values may be scalars or (n,) arrays."""
        ids = self._world.registry.allocate(n)
        self._ops.append(("spawn", tuple(components), ids, values or {}))
        return ids

    def spawn_keyed(self, components: Iterable[Component], keys: np.ndarray,
                    values: Values | None = None) -> None:
        """Spawn one entity per row of ``keys`` ((n,) or (n, k) int64, compared row-wise, first
        column first) at the next sync point, with ids drawn in key order. No id is returned:
        nothing may refer to these entities before they exist."""
        keys = np.asarray(keys, np.int64)
        keys = keys.reshape(keys.shape[0], -1)
        if keys.shape[0]:
            self._ops.append(("keyed", tuple(components), keys, values or {}))

    def despawn(self, entity: int) -> None:
        self._ops.append(("despawn", int(entity)))

    def add(self, entity: int, component: Component, values: Mapping[str, object] | None = None) -> None:
        self._ops.append(("add", int(entity), component, dict(values or {})))

    def remove(self, entity: int, component: Component) -> None:
        self._ops.append(("remove", int(entity), component))

    def apply(self) -> int:
        """Carry out every recorded command in order; return how many took effect.

        Commands on entities that died earlier in the same buffer (two systems killing the
        same monster) are skipped: despawning the dead is not an error.
        """
        world = self._world
        world._check_unlocked("apply commands")
        done = 0
        ops, self._ops = self._ops, []
        keyed: list[tuple] = []
        for op in ops:
            kind = op[0]
            if kind == "spawn":
                _, components, ids, values = op
                world._place_new(components, ids, values)
                done += 1
            elif kind == "keyed":
                keyed.append(op[1:])
                done += op[2].shape[0]
            elif world.is_alive(op[1]):
                if kind == "despawn":
                    world._despawn_now(op[1], now=False)
                elif kind == "add":
                    world._add_now(op[1], op[2], op[3])
                else:
                    world._remove_now(op[1], op[2])
                done += 1
        if keyed:
            if world.registry.allocator is None:
                place_keyed(world, keyed, world.registry.allocate(sum(k.shape[0] for _, k, _ in keyed)))
            else:  # a shard of a sharded world: the world draws the ids, for all its shards at once
                world.keyed_pending.extend(keyed)
        world.registry.recycle_retired()
        return done


def key_order(keyed: list[tuple]) -> np.ndarray:
    """The order in which the rows of several keyed spawns draw ids: by key, ties in the order
    they were recorded. Returns (total,) int64 positions into the rows taken one op after another."""
    width = max(k.shape[1] for _, k, _ in keyed)
    rows = np.concatenate([np.pad(k, ((0, 0), (0, width - k.shape[1]))) for _, k, _ in keyed])
    return np.lexsort(tuple(rows[:, j] for j in range(width - 1, -1, -1)))


def place_keyed(world: World, keyed: list[tuple], ids: np.ndarray) -> None:
    """Place keyed spawns with ``ids`` (drawn in order, one per row): row ``key_order[i]`` gets
    ``ids[i]``."""
    order = key_order(keyed)
    given = np.empty(order.shape[0], np.int64)
    given[order] = ids
    start = 0
    for op in keyed:
        n = op[1].shape[0]
        place_op(world, op, given[start : start + n])
        start += n


def place_op(world: World, op: tuple, ids: np.ndarray) -> None:
    """Place the entities of one keyed spawn (components, keys, values) with their ``ids``."""
    components, keys, values = op
    world._place_new(components, ids, _rows(values, keys.shape[0]))


def _rows(values: Values, n: int) -> Values:
    """Per-entity values broadcast to (n,): a keyed spawn's values are placed as given."""
    return {c: {f: np.broadcast_to(np.asarray(v), (n,)) for f, v in fields.items()} for c, fields in values.items()}
