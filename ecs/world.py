"""The ECS world: entity registry, archetype tables, resources and the command buffer.

Outside a tick the caller may change structure directly (``spawn``, ``despawn``, ...). While a
system runs the world is locked: structural changes must go through ``world.commands``, which
the schedule applies at the next sync point, so no kernel ever sees a table move under it.
Per-entity data lives only in tables; world-wide data (the action batch, the spatial index,
telemetry) lives in ``resources``, keyed by type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ecs.commands import CommandBuffer, Values
from ecs.component import Component
from ecs.hashing import hash_tables
from ecs.ids import EntityRegistry
from ecs.query import Query
from ecs.table import Table


class StructureLockedError(RuntimeError):
    """A structural change was attempted directly while a system was running."""


class World:
    def __init__(self, shard: int = 0) -> None:
        self.registry = EntityRegistry(shard)
        self.tables: list[Table] = []
        self._table_index: dict[frozenset[str], int] = {}
        self.structure_version = 0  # bumps when a table is created
        # Bumps when ids come back (adoption): an id found nowhere before may be here now. With
        # each table's ``removals``, it tells whether a location found before still holds.
        self.adoptions = 0
        self.resources: dict[type, object] = {}
        self.commands = CommandBuffer(self)
        self.locked_by: str | None = None
        # Keyed spawns of a sync point waiting for ids from a sharded world's allocator.
        self.keyed_pending: list[tuple] = []
        # Tables whose rows are read-only copies of entities another shard owns (holding this
        # component): removing one of those rows never frees its id, which is not ours.
        self.copy_component: Component | None = None

    # -- tables -----------------------------------------------------------------------------
    def table_for(self, components: Iterable[Component]) -> tuple[int, Table]:
        comps = tuple(components)
        key = frozenset(c.name for c in comps)
        if len(key) != len(comps):
            raise ValueError(f"duplicate component in {[c.name for c in comps]}")
        idx = self._table_index.get(key)
        if idx is None:
            idx = len(self.tables)
            self.tables.append(Table(comps))
            self._table_index[key] = idx
            self.structure_version += 1
        return idx, self.tables[idx]

    def query(self, *with_: Component, without: Iterable[Component] = ()) -> Query:
        return Query(self, with_, tuple(without))

    @property
    def entity_count(self) -> int:
        return sum(t.n for t in self.tables)

    # -- direct structural changes (outside systems) ----------------------------------------
    def _check_unlocked(self, what: str) -> None:
        if self.locked_by is not None:
            raise StructureLockedError(
                f"{self.locked_by} tried to {what} directly during its run; use world.commands"
            )

    def spawn(self, components: Iterable[Component], values: Values | None = None) -> int:
        return int(self.spawn_batch(components, 1, values)[0])

    def spawn_batch(self, components: Iterable[Component], n: int, values: Values | None = None) -> np.ndarray:
        """Create ``n`` entities at once; field values may be scalars or (n,) arrays."""
        self._check_unlocked("spawn")
        ids = self.registry.allocate(n)
        try:
            self._place_new(tuple(components), ids, values or {})
        except Exception:  # bad components or values: nothing was placed, give the ids back
            for e in ids.tolist():
                self.registry.release(e)
            raise
        return ids

    def despawn(self, entity: int) -> None:
        self._check_unlocked("despawn")
        self._require_alive(entity)
        self._despawn_now(entity)

    def add_component(self, entity: int, component: Component, values: Mapping[str, object] | None = None) -> None:
        self._check_unlocked("add a component")
        self._require_alive(entity)
        self._add_now(entity, component, dict(values or {}))

    def remove_component(self, entity: int, component: Component) -> None:
        self._check_unlocked("remove a component")
        self._require_alive(entity)
        self._remove_now(entity, component)

    def apply_commands(self) -> int:
        """A sync point: apply everything queued in ``commands``."""
        return self.commands.apply()

    def adopt(self, ids: np.ndarray, components: Iterable[Component], values: Values | None = None) -> None:
        """Take in entities handed over from another shard, with their ids and values."""
        self._check_unlocked("adopt entities")
        ids = np.asarray(ids, np.int64)
        self.adoptions += 1
        self.registry.adopt(ids)
        try:
            self._place_new(tuple(components), ids, values or {})
        except Exception:  # nothing was placed: undo the adoption (own ids go back to being lent)
            for e in ids.tolist():
                self.registry.hand_off(e)
            raise

    def hand_off(self, entity: int) -> dict[Component, dict[str, object]]:
        """Remove an entity that now belongs to another shard; return its values to send."""
        self._check_unlocked("hand off")
        t, r = self._require_alive(entity)
        values = self.tables[t].row_values(r)
        self._drop_row(t, r)
        self.registry.hand_off(entity)
        return values

    def hand_off_many(self, ids: np.ndarray) -> None:
        """``hand_off`` of several entities at once, without their values (those were sent
        already, or they were copies): one pass per table."""
        self._check_unlocked("hand off")
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return
        if np.unique(ids).size != ids.size:
            raise ValueError("an entity cannot be handed off twice in one batch")
        table, row = self.registry.locate_many(ids)
        if (table < 0).any():
            raise KeyError(f"entity {int(ids[table < 0][0]):#x} is not alive")
        for t in np.unique(table).tolist():
            sel = table == t
            self.tables[t].removals += 1
            moved, rows = self.tables[t].remove_rows(row[sel])
            if moved.size:
                self.registry.place_many(moved, t, rows)
        self.registry.hand_off_many(ids)

    # -- reads ------------------------------------------------------------------------------
    def is_alive(self, entity: int) -> bool:
        t, _ = self.registry.locate(entity)
        return t >= 0

    def components_of(self, entity: int) -> tuple[Component, ...]:
        t, _ = self._require_alive(entity)
        return self.tables[t].components

    def has(self, entity: int, component: Component) -> bool:
        t, _ = self.registry.locate(entity)
        return t >= 0 and self.tables[t].has(component)

    def get(self, entity: int, component: Component) -> dict[str, object]:
        """The values of one component of one entity (a copy), by field name."""
        t, r = self._require_alive(entity)
        table = self.tables[t]
        if not table.has(component):
            raise KeyError(f"entity {entity:#x} has no {component.name}")
        return {f: table.column(component, f)[r].item() for f in component.fields}

    def set(self, entity: int, component: Component, **fields: object) -> None:
        t, r = self._require_alive(entity)
        table = self.tables[t]
        if not table.has(component):
            raise KeyError(f"entity {entity:#x} has no {component.name}")
        for f, v in fields.items():
            table.column(component, f)[r] = v

    def locate_many(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table index, row) for each id; -1 where the entity is not alive here."""
        return self.registry.locate_many(ids)

    def state_hash(self, exclude: Iterable[Component] = ()) -> int:
        """Hash of every component table's logical content (see ``ecs.hashing``), optionally
        without some components."""
        return hash_tables(self.tables, tuple(exclude))

    # -- internals --------------------------------------------------------------------------
    def _require_alive(self, entity: int) -> tuple[int, int]:
        t, r = self.registry.locate(entity)
        if t < 0:
            raise KeyError(f"entity {int(entity):#x} is not alive")
        return t, r

    def _place_new(self, components: tuple[Component, ...], ids: np.ndarray, values: Values) -> None:
        t, table = self.table_for(components)
        rows = table.append(ids, values)
        self.registry.place_many(ids, t, rows)

    def _drop_row(self, t: int, r: int) -> None:
        self.tables[t].removals += 1
        moved = self.tables[t].swap_remove(r)
        if moved:
            self.registry.place(moved, t, r)

    def _despawn_now(self, entity: int, now: bool = True) -> None:
        """Remove the entity and free its id (at once, or with the sync point's others: see
        ``EntityRegistry.release``); a copy's id is not ours to free."""
        t, r = self.registry.locate(entity)
        copy = self.copy_component is not None and self.tables[t].has(self.copy_component)
        self._drop_row(t, r)
        if copy:
            self.registry.hand_off(entity)
        else:
            self.registry.release(entity, now=now)

    def _move(self, entity: int, components: tuple[Component, ...], extra: Values) -> None:
        t, r = self.registry.locate(entity)
        values = self.tables[t].row_values(r)
        values = {c: v for c, v in values.items() if c in components}
        values.update(extra)
        # Place first: if the new values are refused, the entity is still whole where it was.
        self._place_new(components, np.array([entity], np.int64), values)
        self._drop_row(t, r)

    def _add_now(self, entity: int, component: Component, values: Mapping[str, object]) -> None:
        t, r = self.registry.locate(entity)
        table = self.tables[t]
        if table.has(component):  # adding again overwrites the values, like bevy's insert
            for f, v in values.items():
                table.column(component, f)[r] = v
            return
        self._move(entity, table.components + (component,), {component: values})

    def _remove_now(self, entity: int, component: Component) -> None:
        t, _ = self.registry.locate(entity)
        table = self.tables[t]
        if not table.has(component):
            return
        rest = tuple(c for c in table.components if c.name != component.name)
        if not rest:
            raise ValueError(f"cannot remove {component.name}: an entity keeps at least one component")
        self._move(entity, rest, {})
