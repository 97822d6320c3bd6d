"""The state hash: one uint64 over every component table, blind to row order and capacity.

Each (entity, component field) cell contributes ``mix(mix(id ^ salt) + bits(value))`` and the
contributions are summed modulo 2**64. Addition commutes, so the hash does not see the order
of rows or tables, nor the capacity behind them, only which entity holds which values. Floats
contribute their bit pattern, with -0.0 folded into 0.0 and every NaN into one NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs.config import JIT
from ecs.rng import mix64

_MASK = 0xFFFFFFFFFFFFFFFF


@njit(**JIT)
def _hash_column(ids, bits, salt):
    """ids: (n,) int64, bits: (n,) uint64 (value bit patterns), read. Returns the uint64 sum."""
    acc = np.uint64(0)
    for i in range(ids.shape[0]):
        acc += mix64(mix64(np.uint64(ids[i]) ^ salt) + bits[i])
    return acc


def value_bits(column: np.ndarray) -> np.ndarray:
    """(n,) uint64 bit patterns of a column's values, canonical for floats."""
    kind = column.dtype.kind
    if kind == "f":
        v = column.astype(np.float64) + 0.0  # -0.0 -> 0.0
        v[np.isnan(v)] = np.nan
        return v.view(np.uint64)
    if kind == "b":
        return column.astype(np.uint64)
    return column.astype(np.int64).view(np.uint64)


def hash_tables(tables, exclude=()) -> int:
    """Hash of the logical content of ``tables`` (an iterable of ``ecs.table.Table``), leaving
    out the components in ``exclude`` (to compare two worlds on part of their state)."""
    skip = {c.name for c in exclude}
    acc = 0
    for table in tables:
        if table.n == 0:
            continue
        ids = table.ids
        for component in table.components:
            if not component.hashed or component.name in skip:
                continue
            for field in component.fields:
                bits = value_bits(table.column(component, field))
                acc = (acc + int(_hash_column(ids, bits, np.uint64(component.salts[field])))) & _MASK
    return acc


def combine(*parts: int) -> int:
    """Fold several uint64 hashes into one, order-sensitively."""
    acc = 0
    for p in parts:
        acc = int(mix64(np.uint64((acc ^ p) & _MASK)))
    return acc
