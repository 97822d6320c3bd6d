"""Entity ids: 64-bit, generational, globally unique across shards, stable across hand-off.

Layout of an id (most significant first)::

    | shard prefix: 16 bits | generation: 16 bits | slot index: 32 bits |

A slot's generation starts at 1 and grows each time the slot is freed, so a handle kept after
a despawn never matches the slot's next occupant; a slot whose generation is exhausted is
retired, never reused. Id 0 (``NULL_ID``) is never issued. The shard prefix makes ids minted
by different shards distinct; an entity handed to another shard keeps its id there
(``adopt``), stored in a local slot, so nothing that refers to it has to be rewritten.

The shards of one sharded world share one id space instead (``share_space``): every shard's
registry takes its ids from one world-wide allocator and holds each entity in the slot its id
names, so an id means the same entity on every shard, resolves on the fast path wherever it
lives, and matches the id the same entity has in the same world on one shard.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numba import njit

from ecs.config import JIT

NULL_ID = 0
INDEX_BITS = 32
GEN_BITS = 16
SHARD_BITS = 16
MAX_GENERATION = (1 << GEN_BITS) - 1
MAX_SHARD = (1 << SHARD_BITS) - 1
_INDEX_MASK = (1 << INDEX_BITS) - 1


def make_id(shard: int, generation: int, index: int) -> int:
    """Pack the three parts of an id (see module docstring) into one int64."""
    raw = (shard << (INDEX_BITS + GEN_BITS)) | (generation << INDEX_BITS) | index
    return raw - (1 << 64) if raw >= (1 << 63) else raw


def id_index(entity: int) -> int:
    return int(entity) & _INDEX_MASK


def id_generation(entity: int) -> int:
    return (int(entity) >> INDEX_BITS) & MAX_GENERATION


def id_shard(entity: int) -> int:
    return (int(entity) >> (INDEX_BITS + GEN_BITS)) & MAX_SHARD


# Columns of the registry's (capacity, 4) slot array: one slot is 32 bytes, so resolving an id
# touches one cache line, not one per column.
_ID, _GEN, _TABLE, _ROW = range(4)


def _free_slots(n: int) -> np.ndarray:
    """(n, 4) int64 slots never used: no id, generation 0, nowhere."""
    slots = np.zeros((n, 4), np.int64)
    slots[:, _TABLE:] = -1
    return slots


@njit(**JIT)
def _locate_local(ids, slots, shard, out_table, out_row, out_foreign):
    """Resolve ids minted by this shard to (table, row); mark the others for the slow path.

    ids: (n,) int64, read. slots: (cap, 4) int64 registry slots, read.
    out_table: (n,) int32, out_row: (n,) int64, written (-1 where unknown or dead).
    out_foreign: (n,) bool, written: True where the id carries another shard's prefix.
    """
    cap = slots.shape[0]
    for i in range(ids.shape[0]):
        e = ids[i]
        out_table[i] = -1
        out_row[i] = -1
        out_foreign[i] = False
        if e == 0:
            continue
        if ((e >> 48) & 0xFFFF) != shard:
            out_foreign[i] = True
            continue
        s = e & 0xFFFFFFFF
        if s < cap and slots[s, _ID] == e:
            out_table[i] = slots[s, _TABLE]
            out_row[i] = slots[s, _ROW]


class EntityRegistry:
    """Allocates ids and maps each live id to its (table, row).

    Free slots are reused first-in first-out, so a slot rests as long as possible before its
    next generation is issued. A slot's table column at -2 marks an id that is reserved (spawned
    through a command buffer) but not yet materialised in a table.
    """

    RESERVED = -2

    def __init__(self, shard: int = 0, capacity: int = 1024) -> None:
        if not 0 <= shard <= MAX_SHARD:
            raise ValueError(f"shard prefix must be in 0..{MAX_SHARD}, got {shard}")
        self.shard = shard
        # Per slot: the id living in it (0 when free), the generation of its next/current id,
        # and where the entity lives (table, row; -1 none).
        self.slots = _free_slots(capacity)
        self._used = 0  # slots ever handed out; those above are untouched
        self._free: deque[int] = deque()
        self._foreign: dict[int, int] = {}  # adopted id -> local slot
        self._lent: set[int] = set()  # our slots whose entity lives on another shard
        self.alive = 0
        self.allocator: EntityRegistry | None = None  # the world-wide one, when sharing a space
        self.released: list[int] = []  # ids freed here for the world-wide one to take back
        self.drawn: list[np.ndarray] = []  # ids drawn here from the world-wide one (it learns their owner)
        self._retired: list[int] = []  # dead ids whose slots the next sync point frees

    def share_space(self, allocator: EntityRegistry) -> None:
        """Take ids from ``allocator`` (the world-wide registry of a sharded world, which holds
        no tables) and give freed ones back to it; entities of that space are adopted into the
        slot their id names."""
        if allocator.shard != self.shard:
            raise ValueError(f"a shared id space has one prefix: {allocator.shard} is not {self.shard}")
        self.allocator = allocator

    # -- allocation -------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        cap = self.slots.shape[0]
        if need <= cap:
            return
        new = _free_slots(max(need, 2 * cap))
        new[:cap] = self.slots
        self.slots = new

    def _take_slots(self, n: int) -> np.ndarray:
        reuse = min(n, len(self._free))
        slots = np.empty(n, np.int64)
        for k in range(reuse):
            slots[k] = self._free.popleft()
        fresh = n - reuse
        if fresh:
            if self._used + fresh > _INDEX_MASK:
                raise RuntimeError("entity slot space exhausted")
            self._grow(self._used + fresh)
            slots[reuse:] = np.arange(self._used, self._used + fresh)
            self.slots[self._used : self._used + fresh, _GEN] = 1
            self._used += fresh
        return slots

    def allocate(self, n: int) -> np.ndarray:
        """Mint ``n`` new ids of this shard; they are reserved until ``place`` is called."""
        if self.allocator is not None:
            ids = self.allocator.allocate(n)
            self._hold(ids)
            self.drawn.append(ids)
            return ids
        slots = self._take_slots(n)
        ids = (np.int64(self.shard) << np.int64(48)) | (self.slots[slots, _GEN] << np.int64(32)) | slots
        self.slots[slots, _ID] = ids
        self.slots[slots, _TABLE] = self.RESERVED
        self.slots[slots, _ROW] = -1
        self.alive += n
        return ids

    def adopt(self, ids: np.ndarray) -> None:
        """Take in entities handed over from another shard, keeping their ids.

        One of our own ids coming back returns to the slot it was lent from; an id minted by
        another shard gets a local slot of its own.
        """
        if self.allocator is not None:  # a shared space: the slot each id names must be free
            arr = np.asarray(ids, np.int64)
            if np.unique(arr).size != arr.size:
                raise ValueError("an entity cannot be adopted twice in one batch")
            if (arr == NULL_ID).any():
                raise ValueError("the null entity cannot be adopted")
            self._hold(arr)
            return
        ids = np.asarray(ids, np.int64).tolist()
        if len(set(ids)) != len(ids):
            raise ValueError("an entity cannot be adopted twice in one batch")
        for e in ids:
            if e == NULL_ID or self.contains(e):
                raise ValueError(f"entity {e:#x} cannot be adopted: null or already alive here")
        for e in ids:
            if id_shard(e) == self.shard and id_index(e) not in self._lent:
                raise ValueError(f"entity {e:#x} has this shard's prefix but was never lent out")
        for e in ids:
            if id_shard(e) == self.shard:
                s = id_index(e)
                self._lent.discard(s)
            else:
                s = int(self._take_slots(1)[0])
                self._foreign[e] = s
            self.slots[s, _ID] = e
            self.slots[s, _TABLE] = self.RESERVED
            self.slots[s, _ROW] = -1
        self.alive += len(ids)

    def _hold(self, ids: np.ndarray) -> None:
        """Reserve the slots a shared space's ids name (they must be free here)."""
        slots = ids & np.int64(_INDEX_MASK)
        if ids.size:
            self._grow(int(slots.max()) + 1)
            self._used = max(self._used, int(slots.max()) + 1)
            busy = self.slots[slots, _ID] != 0
            if busy.any():
                raise ValueError(f"entity {int(ids[busy][0]):#x} cannot be adopted: already alive here, or its "
                                 "slot is taken")
        self.slots[slots, _ID] = ids
        self.slots[slots, _GEN] = (ids >> np.int64(32)) & MAX_GENERATION
        self.slots[slots, _TABLE] = self.RESERVED
        self.slots[slots, _ROW] = -1
        self.alive += int(ids.size)

    def release(self, entity: int, now: bool = True) -> None:
        """Free an id's slot; its generation moves on so old handles stop matching. With
        ``now=False`` the id is dead at once but its slot is freed by ``recycle_retired``,
        together with the others of a sync point, in ascending order of id."""
        s = self._vacate(entity)
        if now:
            self._recycle(int(entity), s)
        else:
            self._retired.append(int(entity))

    def recycle_retired(self) -> None:
        retired, self._retired = sorted(self._retired), []
        for e in retired:
            self._recycle(e, self._foreign.get(e, id_index(e)))

    def _recycle(self, entity: int, s: int) -> None:
        if self.allocator is not None:  # the id space is world-wide: so is reuse, in one order
            self.released.append(entity)
            return
        if self._foreign.pop(entity, None) is not None:
            self._free.append(s)
            return
        gen = self.slots[s, _GEN] + 1
        self.slots[s, _GEN] = gen
        if gen <= MAX_GENERATION:
            self._free.append(s)
        # else: the slot is retired; its generation would wrap and alias an old handle.

    def hand_off(self, entity: int) -> None:
        """Give an entity to another shard: it leaves here, its id stays valid over there.

        A slot of ours is lent, not freed, so the id cannot be reissued while it lives on.
        """
        s = self._vacate(entity)
        if self.allocator is not None:
            return
        if self._foreign.pop(int(entity), None) is not None:
            self._free.append(s)
        else:
            self._lent.add(s)

    def hand_off_many(self, ids: np.ndarray) -> None:
        """``hand_off`` of several entities (all alive here, distinct)."""
        ids = np.asarray(ids, np.int64)
        if self.allocator is None or self._foreign:
            for e in ids.tolist():
                self.hand_off(e)
            return
        slots = ids & np.int64(_INDEX_MASK)
        here = slots < self.slots.shape[0]
        here[here] = self.slots[slots[here], _ID] == ids[here]
        if not here.all():
            raise KeyError(f"entity {int(ids[~here][0]):#x} is not alive")
        self.slots[slots, _ID] = 0
        self.slots[slots, _TABLE] = -1
        self.slots[slots, _ROW] = -1
        self.alive -= int(ids.size)

    def _vacate(self, entity: int) -> int:
        s = self.slot_of(entity)
        if s < 0:
            raise KeyError(f"entity {int(entity):#x} is not alive")
        self.slots[s, _ID] = 0
        self.slots[s, _TABLE] = -1
        self.slots[s, _ROW] = -1
        self.alive -= 1
        return s

    # -- lookup -----------------------------------------------------------------------------
    def slot_of(self, entity: int) -> int:
        e = int(entity)
        if e == NULL_ID:
            return -1
        if id_shard(e) != self.shard:
            return self._foreign.get(e, -1)
        s = id_index(e)
        if s < self.slots.shape[0] and self.slots[s, _ID] == e:
            return s
        return -1

    def contains(self, entity: int) -> bool:
        return self.slot_of(entity) >= 0

    def place(self, entity: int, table: int, row: int) -> None:
        s = self.slot_of(entity)
        self.slots[s, _TABLE] = table
        self.slots[s, _ROW] = row

    def place_many(self, ids: np.ndarray, table: int, rows: np.ndarray) -> None:
        if self._foreign:
            slots = np.array([self.slot_of(e) for e in ids.tolist()], np.int64)
        else:
            slots = ids & np.int64(_INDEX_MASK)
        self.slots[slots, _TABLE] = table
        self.slots[slots, _ROW] = rows

    def locate(self, entity: int) -> tuple[int, int]:
        """(table, row) of a live entity, or (-1, -1)."""
        s = self.slot_of(entity)
        if s < 0:
            return -1, -1
        return int(self.slots[s, _TABLE]), int(self.slots[s, _ROW])

    def locate_many(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``locate``: (table (n,) int32, row (n,) int64), -1 where not alive here."""
        ids = np.ascontiguousarray(ids, np.int64)
        n = ids.shape[0]
        table = np.empty(n, np.int32)
        row = np.empty(n, np.int64)
        foreign = np.empty(n, np.bool_)
        _locate_local(ids, self.slots, self.shard, table, row, foreign)
        if self._foreign and foreign.any():
            for i in np.flatnonzero(foreign).tolist():
                t, r = self.locate(int(ids[i]))
                table[i], row[i] = t, r
        return table, row
