"""Batch access to the entities a tick's actions touch, spread over several tables.

Actions touch a few thousand entities out of a hundred thousand: the steps that act on them
find the distinct entities of their lists (``Distinct``, a counting pass, no sort), gather
their fields into batch-local arrays (``gather`` one field, ``gather_fields`` many at once,
one kernel call per table block), run a kernel, and scatter the results back. When the entities
of a list all live in one table (``sole_table``), kernels work on its blocks in place, indexed
by row; ``read_rows`` reads fields of a long list where they live, a kernel pass per table and
block with no grouping. ``owner_walk`` walks a batch owner by owner, each owner's items in
key order. Work is per table touched (a handful), never per entity in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from ecs import Component, World
from ecs.config import JIT


def tables_in(table_idx: np.ndarray) -> list[int]:
    """The distinct tables in ``table_idx`` (ignoring -1), in order: one O(n) pass, no sort."""
    return _tables_present(table_idx).tolist()


@njit(**JIT)
def _tables_present(table_idx):
    top = 0
    for i in range(table_idx.shape[0]):
        top = max(top, table_idx[i] + 1)
    present = np.zeros(top, np.int64)
    for i in range(table_idx.shape[0]):
        if table_idx[i] >= 0:
            present[table_idx[i]] = 1
    out = np.empty(top, np.int64)
    m = 0
    for t in range(top):
        if present[t]:
            out[m] = t
            m += 1
    return out[:m]


class Located:
    """Where each of a list of entities lives, grouped by table once for many reads and writes.

    ``groups``: (table index, positions in the list or None for all of them, rows) per table.
    """

    __slots__ = ("table", "row", "groups")

    def __init__(self, table: np.ndarray, row: np.ndarray) -> None:
        self.table, self.row = table, row
        tables = tables_in(table)
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


@njit(**JIT)
def _distinct(slot, rank):
    """(first, inverse): the first position of each distinct non-negative ``slot`` in order of
    appearance, and each position's index among them (-1 where ``slot`` is -1).

    slot: (n,) int64 in [-1, rank.shape[0]), read. rank: scratch, -1 everywhere on entry and
    again on return.
    """
    n = slot.shape[0]
    first = np.empty(n, np.int64)
    inverse = np.full(n, -1, np.int64)
    u = 0
    for i in range(n):
        s = slot[i]
        if s < 0:
            continue
        r = rank[s]
        if r < 0:
            r = u
            rank[s] = u
            first[u] = i
            u += 1
        inverse[i] = r
    for k in range(u):
        rank[slot[first[k]]] = -1
    return first[:u].copy(), inverse


@njit(**JIT)
def _scrambled(inverse, key, n_owners):
    """(n,) int64 positions of the items of owners whose items did not come in ``key`` order
    (ascending)."""
    n = inverse.shape[0]
    last = np.empty(n_owners, key.dtype)
    seen = np.zeros(n_owners, np.bool_)
    scrambled = np.zeros(n_owners, np.bool_)
    any_scrambled = False
    for i in range(n):
        a = inverse[i]
        if a >= 0:
            if seen[a] and key[i] < last[a]:
                scrambled[a] = True
                any_scrambled = True
            seen[a] = True
            last[a] = key[i]
    out = np.empty(n if any_scrambled else 0, np.int64)
    m = 0
    if any_scrambled:
        for i in range(n):
            if inverse[i] >= 0 and scrambled[inverse[i]]:
                out[m] = i
                m += 1
    return out[:m]


@njit(**JIT)
def _sort_run(out, lo, hi, key):
    """Sort ``out[lo:hi]`` (positions, ascending) by ``key`` of each, stably: insertion for the
    few items of one owner, a bottom-up merge for a long run (numba's own stable sort would
    add seconds to every cold start, for a case that only a flooding client makes)."""
    if hi - lo <= 32:
        for a in range(lo + 1, hi):
            v = out[a]
            b = a - 1
            while b >= lo and key[out[b]] > key[v]:
                out[b + 1] = out[b]
                b -= 1
            out[b + 1] = v
        return
    n = hi - lo
    src, dst = np.empty(n, np.int64), np.empty(n, np.int64)
    for a in range(n):
        src[a] = out[lo + a]
    width = 1
    while width < n:
        for start in range(0, n, 2 * width):
            mid, end = min(start + width, n), min(start + 2 * width, n)
            a, b = start, mid
            for o in range(start, end):  # the left one first on a tie: stable
                if b >= end or (a < mid and key[src[b]] >= key[src[a]]):
                    dst[o] = src[a]
                    a += 1
                else:
                    dst[o] = src[b]
                    b += 1
        src, dst = dst, src
        width *= 2
    for a in range(n):
        out[lo + a] = src[a]


def owner_walk(owner: np.ndarray, key: np.ndarray, n_owners: int) -> tuple[np.ndarray, bool]:
    """(order, grouped): the order to walk a batch in when each owner's items must go in
    ``key`` order (stably), and whether it holds each owner's items together.

    A batch of up to ``BY_OWNER_MAX`` items goes owner by owner (``_by_owner``): its columns
    fit in cache, and the owners' records, which do not, are read as ascending streams that
    the hardware fetches ahead (twice as fast as in the random order items come in). A larger
    batch goes as it came (``_as_came``): there, the columns would miss the cache instead,
    and every owner has many items, so their records stay in cache anyway.

    owner: (n,) int64 in [-1, n_owners) (-1: no owner), key: (n,) int or float. The order is
    (n,) int64.
    """
    if owner.shape[0] <= BY_OWNER_MAX:
        return _by_owner(owner, key, n_owners), True
    return _as_came(owner, key, n_owners), False


BY_OWNER_MAX = 16_384


@njit(**JIT)
def in_key_order(order, owner, key):
    """Whether ``order``, a walk that holds each owner's items together (``owner_walk``), takes
    each owner's items by ``key``, stably: then it is the walk ``owner_walk`` would give for
    that key, and a step that walks by another key than the last can take it as it is."""
    for k in range(1, order.shape[0]):
        a, b = order[k - 1], order[k]
        if owner[a] == owner[b] and owner[b] >= 0 and (key[b] < key[a] or (key[b] == key[a] and b < a)):
            return False
    return True


def _as_came(inverse: np.ndarray, key: np.ndarray, n_owners: int) -> np.ndarray:
    """As the items came, except that each owner's own items take their places sorted by key
    (stably); only an owner whose items came out of order (a client's late packets) is sorted,
    all such owners in one numpy sort."""
    proc = np.arange(inverse.shape[0])
    mine = _scrambled(inverse, key, n_owners)
    if mine.size:
        owner = inverse[mine]
        places = mine[np.argsort(owner, kind="stable")]  # each owner's positions, ascending
        proc[places] = mine[np.lexsort((mine, key[mine], owner))]  # its items, by key
    return proc


@njit(**JIT)
def _by_owner(owner, key, n_owners):
    """Owners ascending (then the items of no owner, -1, as they came), each owner's items by
    key, stably: a counting sort, O(n + n_owners); only an owner whose items came out of key
    order is sorted further."""
    n = owner.shape[0]
    start = np.zeros(n_owners + 2, np.int64)
    for i in range(n):
        o = owner[i]
        start[(o if o >= 0 else n_owners) + 1] += 1
    for b in range(1, n_owners + 2):
        start[b] += start[b - 1]
    out = np.empty(n, np.int64)
    for i in range(n):
        o = owner[i]
        b = o if o >= 0 else n_owners
        out[start[b]] = i
        start[b] += 1
    lo = 0  # the first position of the current owner's run
    scrambled = False
    for k in range(1, n + 1):
        if k < n and owner[out[k]] == owner[out[lo]] and owner[out[k]] >= 0:
            scrambled = scrambled or key[out[k]] < key[out[k - 1]]
            continue
        if scrambled:
            _sort_run(out, lo, k, key)
        lo = k
        scrambled = False
    return out


class SlotMarks:
    """Scratch for ``Distinct``, owned by the system that asks: one mark per entity slot, all
    clear between uses, so finding the distinct entities of a short list costs the list, not
    the world."""

    __slots__ = ("rank",)

    def __init__(self) -> None:
        self.rank = np.empty(0, np.int64)

    def clear_for(self, n_slots: int) -> np.ndarray:
        if self.rank.shape[0] < n_slots:
            self.rank = np.full(max(n_slots, 2 * self.rank.shape[0]), -1, np.int64)
        return self.rank


class Distinct:
    """The distinct live entities of a list of ids, found without sorting.

    ``ids`` (u,) in order of first appearance, ``at`` where they live (for ``gather`` /
    ``scatter``), ``inverse`` (n,) each list element's index among them (-1 for an id that is
    not alive here). O(n): a table row is a dense key while tables hold still.
    """

    __slots__ = ("ids", "at", "inverse")

    def __init__(self, world: World, ids: np.ndarray, marks: SlotMarks) -> None:
        ids = np.ascontiguousarray(ids, np.int64)
        table, row = world.locate_many(ids)
        base = np.zeros(len(world.tables) + 1, np.int64)
        np.cumsum([t.n for t in world.tables], out=base[1:])
        slot = np.where(table >= 0, base[np.maximum(table, 0)] + row, -1)
        first, self.inverse = _distinct(slot, marks.clear_for(int(base[-1])))
        self.ids = ids[first]
        self.at = Located(table[first], row[first])

    @property
    def n(self) -> int:
        return self.ids.shape[0]


@njit(**JIT)
def _take_block(block, src, rows, pos, dst, out):
    """out[pos[k], dst[j]] = block[src[j], rows[k]]: some fields of some rows of one table block.
    block: (fields, capacity); src, dst: (m,) int64; rows, pos: (k,) int64; all read."""
    m = src.shape[0]
    for k in range(rows.shape[0]):
        r = rows[k]
        p = pos[k]
        for j in range(m):
            out[p, dst[j]] = block[src[j], r]


@njit(**JIT)
def _put_block(block, src, rows, pos, dst, values):
    """block[src[j], rows[k]] = values[pos[k], dst[j]]: the inverse of ``_take_block``."""
    m = src.shape[0]
    for k in range(rows.shape[0]):
        r = rows[k]
        p = pos[k]
        for j in range(m):
            block[src[j], r] = values[p, dst[j]]


def _by_block(table, fields):
    """([(float64 block, rows in it, positions in ``fields``)], [(position, other column)])
    for the fields this table holds: one kernel call moves all the fields of a float64 block;
    the few integer fields go one by one (a kernel per dtype would cost compile time for
    nothing). Columns are whole (the table's capacity). Derived once per layout of the table."""
    return table.plan(("by_block", tuple(fields)), lambda held: _plan_blocks(held, fields))


def _plan_blocks(table, fields):
    plan: dict[int, tuple[np.ndarray, list[int], list[int]]] = {}
    others = []
    for j, (component, field) in enumerate(fields):
        if table.has(component):
            block, k = table.block(component, field)
            if block.dtype == np.float64:
                entry = plan.setdefault(id(block), (block, [], []))
                entry[1].append(k)
                entry[2].append(j)
            else:
                others.append((j, block[k]))
    return [(block, np.array(src, np.int64), np.array(dst, np.int64)) for block, src, dst in plan.values()], others


def gather_fields(world: World, at: Located, fields: Sequence[tuple[Component, str]]) -> np.ndarray:
    """(n, len(fields)) float64: several fields of the located entities at once (0 where an
    entity lacks the component). For kernels that read many fields of few entities; not for
    int64 fields that need all 64 bits."""
    n = at.table.shape[0]
    out = np.zeros((n, len(fields)), np.float64)
    for t, pos, rows in at.groups:
        blocks, others = _by_block(world.tables[t], fields)
        for block, src, dst in blocks:
            _take_block(block, src, rows, np.arange(n) if pos is None else pos, dst, out)
        for j, col in others:
            out[slice(None) if pos is None else pos, j] = col[rows]
    return out


def scatter_fields(world: World, at: Located, fields: Sequence[tuple[Component, str]], values: np.ndarray) -> None:
    """Write ``values`` (n, len(fields)) back where ``gather_fields`` read them."""
    n = at.table.shape[0]
    for t, pos, rows in at.groups:
        blocks, others = _by_block(world.tables[t], fields)
        for block, src, dst in blocks:
            _put_block(block, src, rows, np.arange(n) if pos is None else pos, dst, values)
        for j, col in others:
            col[rows] = values[:, j] if pos is None else values[pos, j]


def block_fields(component: Component, dtype) -> tuple[str, ...]:
    """A component's fields of one dtype, in the order of the table block that holds them."""
    return tuple(f for f in component.fields if component.dtype[f] == np.dtype(dtype))


@njit(**JIT)
def sole_table(table):
    """The table every located entity of a list lives in (``table``: (n,) from ``locate_many``,
    -1 where not located), -1 when none is located, -2 when they span several: then kernels
    can work on that table's blocks in place, indexed by row."""
    sole = -1
    for i in range(table.shape[0]):
        t = table[i]
        if t >= 0:
            if sole == -1:
                sole = t
            elif t != sole:
                return -2
    return sole


@njit(**JIT)
def _take_where(block, src, dst, table, row, t, out):
    """out[i, dst[j]] = block[src[j], row[i]] for every i with table[i] == t."""
    for i in range(table.shape[0]):
        if table[i] == t:
            r = row[i]
            for j in range(src.shape[0]):
                out[i, dst[j]] = block[src[j], r]


@njit(**JIT)
def _take_column_where(col, table, row, t, out, j):
    """out[i, j] = col[row[i]] for every i with table[i] == t (a column of any dtype)."""
    for i in range(table.shape[0]):
        if table[i] == t:
            out[i, j] = col[row[i]]


def read_rows(world: World, table: np.ndarray, row: np.ndarray, fields: Sequence[tuple[Component, str]],
              out: np.ndarray) -> None:
    """Fill ``out`` (n, len(fields)) float64 with the fields of the entities at (table[i], row[i])
    (``locate_many``), leaving entries as they are where an entity is not located or lacks
    the component. No grouping: one kernel pass over the list per table and block, so a long
    list spread over a few tables costs a few calls, however it interleaves."""
    for t, held in enumerate(world.tables):
        if held.n == 0:
            continue
        blocks, others = _by_block(held, fields)
        for block, src, dst in blocks:
            _take_where(block, src, dst, table, row, t, out)
        for j, col in others:
            _take_column_where(col, table, row, t, out, j)


def has_component(world: World, at: Located, component: Component) -> np.ndarray:
    """(n,) bool: which of the located entities hold ``component``."""
    out = np.zeros(at.table.shape[0], np.bool_)
    for t, pos, _ in at.groups:
        if world.tables[t].has(component):
            out[slice(None) if pos is None else pos] = True
    return out
