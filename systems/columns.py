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


def locate(world: World, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each entity lives: (table index, row), for several ``gather`` calls on one list."""
    return world.locate_many(np.asarray(ids, np.int64))


def gather(world: World, ids: np.ndarray, component: Component, field: str, fill: float = 0,
           at: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values (n,), present (n,) bool): ``fill`` where the entity is dead or lacks ``component``.

    ``at``: the result of ``locate`` for these ids, when several fields of them are read.
    """
    ids = np.asarray(ids, np.int64)
    table_idx, rows = world.locate_many(ids) if at is None else at
    out = np.full(ids.shape[0], fill, component.dtype[field])
    present = np.zeros(ids.shape[0], np.bool_)
    for t in _tables_in(table_idx):
        table = world.tables[t]
        if not table.has(component):
            continue
        m = table_idx == t
        out[m] = table.column(component, field)[rows[m]]
        present |= m
    return out, present


def scatter(world: World, ids: np.ndarray, component: Component, field: str, values: np.ndarray,
            at: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Write ``values`` (n,) into the field of each live entity of ``ids`` that has it."""
    ids = np.asarray(ids, np.int64)
    table_idx, rows = world.locate_many(ids) if at is None else at
    for t in _tables_in(table_idx):
        table = world.tables[t]
        if table.has(component):
            m = table_idx == t
            table.column(component, field)[rows[m]] = values[m]
