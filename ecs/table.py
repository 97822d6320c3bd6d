"""Archetype table: all entities with exactly one set of components, stored column by column.

Every field of every component is one contiguous numpy column of the table's capacity; rows
``[0, n)`` are live. Removing a row swaps the last row into its place and reports which
entity moved, so the registry can fix that entity's row (bevy's ``swap_remove``). Capacity
doubles when full, without the caller noticing; column views taken before a growth are
stale, which is why structural changes happen only at sync points between systems.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ecs.component import Component
from ecs.ids import NULL_ID


class ColumnSet:
    """The live columns of one component in one table: ``cols.x`` is an (n,) view."""

    __slots__ = ("_table", "_component")

    def __init__(self, table: Table, component: Component) -> None:
        self._table = table
        self._component = component

    def __getattr__(self, field: str) -> np.ndarray:
        try:
            return self._table.column(self._component, field)
        except KeyError:
            raise AttributeError(f"{self._component.name} has no field {field!r}") from None

    def __getitem__(self, field: str) -> np.ndarray:
        return self._table.column(self._component, field)


class Table:
    """Columns of one archetype. ``components`` is sorted by name; ``key`` identifies it."""

    def __init__(self, components: Iterable[Component], capacity: int = 64) -> None:
        self.components: tuple[Component, ...] = tuple(sorted(set(components), key=lambda c: c.name))
        self.key = frozenset(c.name for c in self.components)
        self.n = 0
        # Bumps when a row leaves (despawn, a component added or removed, hand-off): the rows of
        # this table found before still hold while it holds.
        self.removals = 0
        self._ids = np.zeros(capacity, np.int64)
        # A component's fields of one dtype share a (k, capacity) block; each column is a row of
        # it (contiguous, unless the component is row-major). Kernels that read many fields of
        # a few rows take the block in one argument.
        self._layout: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
        self._block_fields: dict[tuple[str, str], tuple[Component, tuple[str, ...]]] = {}
        for c in self.components:
            for f in c.fields:
                bkey = (c.name, c.dtype[f].str)
                comp, fields = self._block_fields.get(bkey, (c, ()))
                self._layout[(c.name, f)] = (bkey, len(fields))
                self._block_fields[bkey] = (comp, fields + (f,))
        self._blocks: dict[tuple[str, str], np.ndarray] = {}
        self._cols: dict[tuple[str, str], np.ndarray] = {}
        # Whatever callers derive from the blocks' layout (which blocks hold a list of fields),
        # kept here so it is derived once; emptied when the blocks are reallocated.
        self.plans: dict[object, object] = {}
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        """(Re)allocate every block at ``capacity``, keeping the live rows, defaults elsewhere."""
        self.plans = {}
        for bkey, (c, fields) in self._block_fields.items():
            if c.row_major:  # (fields, capacity) as a view of a (capacity, fields) array
                block = np.empty((capacity, len(fields)), c.dtype[fields[0]]).T
            else:
                block = np.empty((len(fields), capacity), c.dtype[fields[0]])
            for k, f in enumerate(fields):
                block[k] = c.defaults[f]
            old = self._blocks.get(bkey)
            if old is not None:
                block[:, : self.n] = old[:, : self.n]
            self._blocks[bkey] = block
        for ckey, (bkey, k) in self._layout.items():
            self._cols[ckey] = self._blocks[bkey][k]

    def block(self, component: Component, field: str) -> tuple[np.ndarray, int]:
        """(block, k): the (fields, capacity) array holding ``field`` as its row k, together with
        the component's other fields of the same dtype. Stale after the table grows."""
        bkey, k = self._layout[(component.name, field)]
        return self._blocks[bkey], k

    def plan(self, key: object, derive):
        """What ``derive(table)`` makes of this table's layout (views of its blocks, which
        blocks hold some fields), derived once and kept in ``plans`` until the blocks are
        reallocated."""
        if key not in self.plans:
            self.plans[key] = derive(self)
        return self.plans[key]

    def full_column(self, component: Component, field: str) -> np.ndarray:
        """(capacity,) view of one field over every row, live or not: for a kernel indexed by
        row, kept across spawns (``column`` ends at the rows live when it was asked). Stale
        after the table grows, like ``block``."""
        block, k = self.block(component, field)
        return block[k]

    @property
    def capacity(self) -> int:
        return self._ids.shape[0]

    def has(self, component: Component) -> bool:
        return component.name in self.key

    @property
    def ids(self) -> np.ndarray:
        """(n,) int64 view of the entity id of each live row."""
        return self._ids[: self.n]

    def column(self, component: Component, field: str) -> np.ndarray:
        """(n,) view of one field (contiguous unless its component is row-major); writes go
        straight to the table."""
        return self._cols[(component.name, field)][: self.n]

    def columns(self, component: Component) -> ColumnSet:
        if not self.has(component):
            raise KeyError(f"table {sorted(self.key)} has no component {component.name}")
        return ColumnSet(self, component)

    def reserve(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        new = max(need, 2 * cap)
        ids = np.zeros(new, np.int64)
        ids[: self.n] = self._ids[: self.n]
        self._ids = ids
        self._allocate(new)

    def append(self, ids: np.ndarray, values: Mapping[Component, Mapping[str, object]] | None = None) -> np.ndarray:
        """Add rows for ``ids``; fields not given take the component's default. Returns rows."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        k = ids.shape[0]
        start = self.n
        self.reserve(start + k)
        self._ids[start : start + k] = ids
        values = values or {}
        for c in self.components:
            given = values.get(c, {})
            unknown = set(given) - set(c.fields)
            if unknown:
                raise KeyError(f"{c.name} has no field(s) {sorted(unknown)}")
            for f in c.fields:
                col = self._cols[(c.name, f)]
                col[start : start + k] = given[f] if f in given else c.defaults[f]
        for c in values:
            if not self.has(c):
                raise KeyError(f"values given for {c.name}, which this table does not hold")
        self.n = start + k
        return np.arange(start, start + k, dtype=np.int64)

    def row_values(self, row: int) -> dict[Component, dict[str, object]]:
        return {c: {f: self._cols[(c.name, f)][row] for f in c.fields} for c in self.components}

    def remove_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remove several rows at once (distinct, in range): the last live rows that stay fill
        the holes below the new end, in order. Returns (ids of the moved entities, their new
        rows)."""
        rows = np.asarray(rows, np.int64)
        k = rows.shape[0]
        end = self.n - k
        gone = np.zeros(self.n, np.bool_)
        gone[rows] = True
        holes = np.flatnonzero(gone[:end])
        movers = end + np.flatnonzero(~gone[end:])
        if holes.size:
            self._ids[holes] = self._ids[movers]
            for block in self._blocks.values():
                block[:, holes] = block[:, movers]
        self.n = end
        return self._ids[holes].copy(), holes

    def swap_remove(self, row: int) -> int:
        """Remove ``row`` by moving the last row into it; return the moved entity (or NULL_ID)."""
        last = self.n - 1
        if not 0 <= row <= last:
            raise IndexError(f"row {row} out of range 0..{last}")
        moved = NULL_ID
        if row != last:
            moved = int(self._ids[last])
            self._ids[row] = self._ids[last]
            for block in self._blocks.values():
                block[:, row] = block[:, last]
        self.n = last
        return moved
