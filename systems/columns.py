"""Reading and writing one field for a list of entities spread over several tables.

Actions touch a few thousand entities out of a hundred thousand: the steps that act on them
gather those entities' fields into batch-local arrays, run a kernel, and scatter the results
back. Work is per table touched (a handful), never per entity in Python.
"""

from __future__ import annotations

import numpy as np

from ecs import Component, World


def _tables_in(table_idx: np.ndarray) -> list[int]:
    """The distinct tables in ``table_idx`` (ignoring -1), in order: one O(n) count, no sort."""
    if table_idx.size == 0:
        return []
    return np.flatnonzero(np.bincount(table_idx[table_idx >= 0])).tolist()


class Located:
    """Where each of a list of entities lives, grouped by table once for many reads and writes.

    ``groups``: (table index, positions in the list or None for all of them, rows) per table.
    """

    __slots__ = ("table", "row", "groups")

    def __init__(self, table: np.ndarray, row: np.ndarray) -> None:
        self.table, self.row = table, row
        tables = _tables_in(table)
        if len(tables) == 1 and table.size and table[0] == tables[0] and (table == tables[0]).all():
            self.groups = [(tables[0], None, row)]  # the usual case: every one in one table
        else:
            self.groups = []
            for t in tables:
                pos = np.flatnonzero(table == t)
                self.groups.append((t, pos, row[pos]))

    def subset(self, index: np.ndarray) -> Located:
        return Located(self.table[index], self.row[index])


def locate(world: World, ids: np.ndarray) -> Located:
    """Where each entity lives, for several ``gather`` / ``scatter`` calls on one list of ids."""
    return Located(*world.locate_many(np.asarray(ids, np.int64)))


def _located(world: World, ids: np.ndarray, at) -> Located:
    if at is None:
        return locate(world, ids)
    return at if isinstance(at, Located) else Located(*at)


def gather(world: World, ids: np.ndarray, component: Component, field: str, fill: float = 0,
           at: Located | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values (n,), present (n,) bool): ``fill`` where the entity is dead or lacks ``component``.

    ``at``: the result of ``locate`` for these ids, when several fields of them are read.
    """
    ids = np.asarray(ids, np.int64)
    loc = _located(world, ids, at)
    out = np.full(ids.shape[0], fill, component.dtype[field])
    present = np.zeros(ids.shape[0], np.bool_)
    for t, pos, rows in loc.groups:
        table = world.tables[t]
        if not table.has(component):
            continue
        col = table.column(component, field)
        if pos is None:
            out[:] = col[rows]
            present[:] = True
        else:
            out[pos] = col[rows]
            present[pos] = True
    return out, present


def scatter(world: World, ids: np.ndarray, component: Component, field: str, values: np.ndarray,
            at: Located | None = None) -> None:
    """Write ``values`` (n,) into the field of each live entity of ``ids`` that has it."""
    ids = np.asarray(ids, np.int64)
    loc = _located(world, ids, at)
    values = np.asarray(values)
    for t, pos, rows in loc.groups:
        table = world.tables[t]
        if table.has(component):
            table.column(component, field)[rows] = values if pos is None else values[pos]
