"""Command buffers: structural changes recorded by systems, applied at sync points.

A system never changes which tables hold which entities while kernels may be looking at the
columns; it records spawns, despawns and component additions/removals here, and the schedule
applies them, in the order they were recorded, between two systems. A spawn gets its id at
once (reserved in the registry), so the same buffer can refer to it.
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
        for op in ops:
            kind = op[0]
            if kind == "spawn":
                _, components, ids, values = op
                world._place_new(components, ids, values)
                done += 1
            elif world.is_alive(op[1]):
                if kind == "despawn":
                    world._despawn_now(op[1])
                elif kind == "add":
                    world._add_now(op[1], op[2], op[3])
                else:
                    world._remove_now(op[1], op[2])
                done += 1
        return done
