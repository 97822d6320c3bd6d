"""The state hash: one uint64 over every component table, blind to row order and capacity.

Each (entity, component field) cell contributes ``mix(key ^ salt + bits(value))``: ``key`` is
``mix(id)``, computed once per row, ``salt`` names the (component, field), and the
contributions are summed modulo 2**64. Addition commutes, so the hash does not see the order
of rows or tables, nor the capacity behind them, only which entity holds which values; and it
is additive: entities split over several tables or worlds (shards) hash to the sum of the
parts' hashes. ``mix`` is a bijection, so changing any one cell changes the hash. Floats
contribute the bits of their float64 value, with -0.0 folded into 0.0 and every NaN into one
NaN; ints their sign-extended 64-bit pattern, bools 0 or 1.

A table is hashed one block at a time (a component's fields of one dtype, ``Table.block``),
one kernel call walking all the block's fields: by columns, or record by record for a
row-major component. The views of a table's blocks are derived once per layout
(``Table.plan``). Every call hashes every cell: at the continent's 100k entities (2.2M cells)
that is under a millisecond, mostly the one mix per cell and memory. Skipping blocks that did
not change was not taken: a stale cache would hide the very desyncs the hash is there to show.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from ecs.config import JIT
from ecs.rng import mix64

_MASK = 0xFFFFFFFFFFFFFFFF
_NAN = np.uint64(0x7FF8000000000000)  # the bits of np.float64(np.nan)
_PLAN = "state_hash"
_COLUMNS, _RECORDS, _CONVERT = 0, 1, 2
_TILE = 256  # rows: 2 KB of keys


@njit(**JIT)
def _row_keys(ids, out):
    """ids: (n,) int64, read; out: (n,) uint64, written with each row's key ``mix64(id)``."""
    for i in range(ids.shape[0]):
        out[i] = mix64(np.uint64(ids[i]))


def _bits(x):
    """The canonical uint64 pattern of one stored value: a float's float64 bits (-0.0 as 0.0,
    one NaN), an int sign-extended, a bool 0 or 1. Plain Python (NUMBA_DISABLE_JIT); compiled
    kernels take the overload below, which picks the branch from x's type when compiling."""
    if isinstance(x, (float, np.floating)):
        v = np.float64(x) + 0.0
        return _NAN if v != v else v.view(np.uint64)
    return np.uint64(np.int64(x))


@overload(_bits)
def _bits_by_type(x):  # pragma: no cover - runs while numba compiles, not on a cache hit
    if isinstance(x, types.Float):
        def float_bits(x):
            v = np.float64(x) + 0.0  # -0.0 + 0.0 is 0.0 (fastmath is off, so this is kept)
            return _NAN if v != v else np.float64(v).view(np.uint64)
        return float_bits
    return lambda x: np.uint64(np.int64(x))


@njit(**JIT)
def _hash_columns(block, n, keys, salts):
    """block: (k, capacity) bool, int or float32/64, field f in row f, live rows [0, n), read;
    keys: (n,) uint64 row keys; salts: (k,) uint64. Returns the uint64 sum of the block's
    n * k cells. Walks _TILE rows at a time through every field, so their keys stay in L1."""
    acc = np.uint64(0)
    for start in range(0, n, _TILE):
        tile_keys = keys[start : start + _TILE]
        for f in range(block.shape[0]):
            col = block[f, start : start + tile_keys.shape[0]]
            salt = salts[f]
            for i in range(tile_keys.shape[0]):
                acc += mix64((tile_keys[i] ^ salt) + _bits(col[i]))
    return acc


@njit(**JIT)
def _records(flat, n, width, keys, salts):
    """flat: (capacity * width,) bool, int or float32/64, the fields of row i at
    [i * width, (i + 1) * width), read; keys: (n,) uint64; salts: (width,) uint64. Returns the
    uint64 sum of the n * width cells."""
    acc = np.uint64(0)
    for i in range(n):
        key = keys[i]
        for f in range(width):
            acc += mix64((key ^ salts[f]) + _bits(flat[i * width + f]))
    return acc


@njit(**JIT)
def _hash_records(flat, n, width, keys, salts):
    """``_records`` with the narrow widths as constants: with a constant stride the compiler
    vectorises over rows (with a variable one it does not)."""
    if width == 2:
        return _records(flat, n, 2, keys, salts)
    if width == 3:
        return _records(flat, n, 3, keys, salts)
    if width == 4:
        return _records(flat, n, 4, keys, salts)
    return _records(flat, n, width, keys, salts)


def value_bits(column: np.ndarray) -> np.ndarray:
    """uint64 bit patterns of an array's values, canonical for floats (``_bits`` of each)."""
    kind = column.dtype.kind
    if kind == "f":
        v = column.astype(np.float64) + 0.0  # -0.0 -> 0.0
        v[np.isnan(v)] = np.nan
        return v.view(np.uint64)
    if kind == "b":
        return column.astype(np.uint64)
    return column.astype(np.int64).view(np.uint64)


def _plan(table) -> list[tuple]:
    """(component name, how, array, salts) for each block of a hashed component of ``table``:
    how is _COLUMNS (array: the (k, capacity) block), _RECORDS (array: a row-major block of
    two fields or more as one flat (capacity * k,) view) or _CONVERT (float16 and longdouble,
    which numba does not read: the block, converted by ``value_bits`` at each hash)."""
    plan = []
    for c in table.components:
        if not c.hashed:
            continue
        by_dtype: dict[str, list[str]] = {}
        for f in c.fields:
            by_dtype.setdefault(c.dtype[f].str, []).append(f)
        for fields in by_dtype.values():
            block, _ = table.block(c, fields[0])
            assert block.shape[0] == len(fields)  # a block holds the component's fields of one dtype
            salts = np.empty(len(fields), np.uint64)
            for f in fields:
                salts[table.block(c, f)[1]] = c.salts[f]
            if block.dtype.kind == "f" and block.dtype.itemsize not in (4, 8):
                plan.append((c.name, _CONVERT, block, salts))
            elif c.row_major and len(fields) > 1 and block.T.flags.c_contiguous:
                plan.append((c.name, _RECORDS, block.T.reshape(-1), salts))
            else:
                plan.append((c.name, _COLUMNS, block, salts))
    return plan


def hash_tables(tables, exclude=()) -> int:
    """Hash of the logical content of ``tables`` (an iterable of ``ecs.table.Table``), leaving
    out the components in ``exclude`` (to compare two worlds on part of their state)."""
    skip = {c.name for c in exclude}
    acc = 0
    for table in tables:
        n = table.n
        if n == 0:
            continue
        keys = np.empty(n, np.uint64)
        _row_keys(table.ids, keys)
        for name, how, array, salts in table.plan(_PLAN, _plan):
            if name in skip:
                continue
            if how == _RECORDS:
                part = _hash_records(array, n, salts.shape[0], keys, salts)
            elif how == _COLUMNS:
                part = _hash_columns(array, n, keys, salts)
            else:
                part = _hash_columns(value_bits(array[:, :n]), n, keys, salts)
            acc = (acc + int(part)) & _MASK
    return acc


def combine(*parts: int) -> int:
    """Fold several uint64 hashes into one, order-sensitively."""
    acc = 0
    for p in parts:
        acc = int(mix64(np.uint64((acc ^ p) & _MASK)))
    return acc
