"""Player actions as one struct-of-arrays batch per tick, and the reasons an action is refused.

The batch is sealed at ingest (tick step 1) and then only annotated: every later step writes
``status`` (0 while accepted, else a ``Refusal`` code) and its own outcome columns, so one
array tells what happened to every action, and nothing is dropped without a reason.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numba import njit

from ecs.config import JIT
from systems.columns import tables_in
from systems.components import Health, Loot, Position, Velocity


class ActionKind(IntEnum):
    MOVE = 1
    MELEE = 2
    RANGED = 3
    CAST = 4
    LOOT = 5
    TRADE = 6
    USE = 7


SPELL_BOLT = 0  # CAST value: which spell. A bolt hurts its target,
SPELL_HEAL = 1  # a heal restores a living player's health.
# RANGED value: the client's claim that its shot hit (1) or missed (0); validation checks that
# the shot was possible, the anomaly score checks whether the claims are humanly plausible.

KIND_NAMES = {k.name.lower(): int(k) for k in ActionKind}
TARGETED = (ActionKind.MELEE, ActionKind.RANGED, ActionKind.CAST, ActionKind.LOOT, ActionKind.TRADE)


def by_kind(**per_kind: float) -> np.ndarray:
    """(8,) float64 indexed by ActionKind, for kernels: ``by_kind(melee=3.0, ranged=40.0)``;
    0 for the kinds not given."""
    out = np.zeros(8, np.float64)
    for name, value in per_kind.items():
        out[ActionKind[name.upper()]] = value
    return out


class Refusal(IntEnum):
    """Why an action did not take effect. 0 means it is (still) accepted."""

    OK = 0
    MALFORMED = 1
    UNKNOWN_ACTOR = 2
    ACTOR_DEAD = 3
    REPLAYED_SEQ = 4
    FUTURE_TIMESTAMP = 5
    STALE_TIMESTAMP = 6
    OUT_OF_BOUNDS = 7
    TOO_FAST = 8
    UNKNOWN_TARGET = 9
    TARGET_DEAD = 10
    OUT_OF_REACH = 11
    NOT_HELD = 12
    BAD_TARGET = 13
    CLAIM_LOST = 14
    TARGET_NOT_DEAD = 15
    DISCONNECTED = 16
    TELEPORT = 17
    BLOCKED = 18
    NOT_VISIBLE = 19
    COOLDOWN = 20
    RATE_LIMIT = 21
    FORGED_TIMESTAMP = 22
    OFFER_LAPSED = 23  # a trade accepted after its offerer spent what it offered


REFUSAL_NAMES = {int(r): r.name.lower() for r in Refusal}

# (name, dtype) of every column; the first eight are what a client sends.
ACTION_FIELDS = (
    ("actor", np.int64),
    ("seq", np.int64),
    ("client_time_ms", np.float64),
    ("kind", np.int8),
    ("target", np.int64),
    ("x", np.float64),
    ("y", np.float64),
    ("value", np.float64),
    ("recv_time_ms", np.float64),  # game time the server received it
    ("status", np.int16),  # Refusal code
    ("event_ms", np.float64),  # estimated true event time (game clock), set by validation
    ("excess_ms", np.float64),  # arrival later than the link explains (NaN in stalls), set by validation
    ("speed_ratio", np.float64),  # claimed distance over what top speed allows (NaN if not judged), likewise
)
CLIENT_FIELDS = tuple(name for name, _ in ACTION_FIELDS[:8])


# Each action's target as validation (tick step 2) sees it: the tick-start state the later steps
# judge the action against too (``ActionBatch.targets_seen``, (n, SEEN_FIELDS) float64; zeros
# where the target is gone or lacks the component): Health.dead and Position for every target,
# Loot.container for loot actions only, Velocity for ranged attacks only (the anomaly score
# judges the shot by it).
SEEN_DEAD, SEEN_X, SEEN_Y, SEEN_CONTAINER, SEEN_VX, SEEN_VY = range(6)
SEEN_FIELDS = 6
# Kinds as ints, for numpy and kernels: comparing an array with an IntEnum member is three times slower.
LOOT, RANGED = int(ActionKind.LOOT), int(ActionKind.RANGED)


def read_targets(world, batch: ActionBatch) -> np.ndarray:
    """Each action's target's state now, as the ``SEEN_*`` columns lay it out. Fields
    are read only where some action needs them (the reads are cache misses): one kernel pass
    per table that holds a target."""
    table, row = batch.where(world, "target")
    out = np.zeros((batch.n, SEEN_FIELDS), np.float64)
    for t in batch.tables_of(world, "target"):
        _seen_in(table, row, t, batch.kind, *_seen_columns(world.tables[t]), out)
    return out


_NO_BLOCK = np.empty((0, 2)).T  # (2, 0): a table without the component (the type of a row-major block)
_NO_COLUMN = np.empty(0, np.uint8)


def _seen_columns(held) -> tuple[np.ndarray, ...]:
    """What ``_seen_in`` reads of a table: Position and Velocity as (2, capacity) blocks,
    Health.dead and Loot.container columns; empty where the table lacks the component.
    Derived once per layout of the table."""
    def derive(t):
        def block(c):
            return t.block(c, c.fields[0])[0] if t.has(c) else _NO_BLOCK
        return (block(Position), block(Velocity), t.full_column(Health, "dead") if t.has(Health) else _NO_COLUMN,
                t.full_column(Loot, "container") if t.has(Loot) else _NO_COLUMN)
    return held.plan("seen", derive)


@njit(**JIT)
def _seen_in(table, row, t, kind, pos, vel, dead, container, out):
    """Fill ``out`` (n, SEEN_FIELDS) for the actions whose target lives in table ``t`` (dead, x,
    y; velocity for ranged attacks; container for loot): see ``_seen_columns``."""
    for i in range(table.shape[0]):
        if table[i] != t:
            continue
        r = row[i]
        if pos.shape[1]:
            out[i, SEEN_X] = pos[0, r]
            out[i, SEEN_Y] = pos[1, r]
        if dead.shape[0]:
            out[i, SEEN_DEAD] = dead[r]
        if kind[i] == RANGED and vel.shape[1]:
            out[i, SEEN_VX] = vel[0, r]
            out[i, SEEN_VY] = vel[1, r]
        if kind[i] == LOOT and container.shape[0]:
            out[i, SEEN_CONTAINER] = container[r]


class ActionBatch:
    """Columns of ``n`` actions; ``ActionBatch.empty()`` for none. Arrays are (n,)."""

    __slots__ = tuple(name for name, _ in ACTION_FIELDS) + ("n", "_where", "targets_seen", "walk")

    def __init__(self, **columns: np.ndarray) -> None:
        n = None
        for name, dtype in ACTION_FIELDS:
            col = columns.get(name)
            if col is None:
                if name == "status":
                    col = np.zeros(n or 0, dtype)
                elif name in ("event_ms", "excess_ms", "speed_ratio"):
                    col = np.full(n or 0, np.nan, dtype)
                else:
                    raise TypeError(f"ActionBatch needs column {name!r}")
            col = np.ascontiguousarray(col, dtype)
            if n is None:
                n = col.shape[0]
            elif col.shape != (n,):
                raise ValueError(f"column {name!r} has shape {col.shape}, expected ({n},)")
            setattr(self, name, col)
        self.n = n or 0
        self._where: dict[str, tuple] = {}  # column -> (world, adoptions, [(table, removals)], table, row)
        self.targets_seen: np.ndarray | None = None  # set by validation (see ``read_targets``)
        # (owner, order): validation's walk of the actors, owner by owner in sequence order
        # (``owner_walk``), for a later step that walks them by a key in the same order.
        self.walk: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def empty(cls) -> ActionBatch:
        return cls(**{name: np.empty(0, dtype) for name, dtype in ACTION_FIELDS})

    @classmethod
    def concat(cls, batches: list[ActionBatch]) -> ActionBatch:
        batches = [b for b in batches if b.n]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(**{name: np.concatenate([getattr(b, name) for b in batches]) for name, _ in ACTION_FIELDS})

    def take(self, index: np.ndarray) -> ActionBatch:
        return ActionBatch(**{name: getattr(self, name)[index] for name, _ in ACTION_FIELDS})

    def where(self, world, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(table (n,) int32, row (n,) int64): where the entity each action names in ``column``
        ("actor" or "target") lives, -1 where it is not alive (``World.locate_many``). Found
        once for all the steps of a tick that ask: the batch's ids never change, and the
        answer holds, in that world, until a row leaves one of the tables it names
        (``Table.removals``) or ids come back (``World.adoptions``)."""
        found = self._located(world, column)
        return found[3], found[4]

    def tables_of(self, world, column: str) -> list[int]:
        """The tables the entities ``column`` names live in (see ``where``)."""
        return [t for t, _ in self._located(world, column)[2]]

    def _located(self, world, column: str) -> tuple:
        found = self._where.get(column)
        if found is None or found[0] is not world or found[1] != world.adoptions or any(
                world.tables[t].removals != k for t, k in found[2]):
            table, row = world.locate_many(getattr(self, column))
            found = self._where[column] = (world, world.adoptions,
                                           [(t, world.tables[t].removals) for t in tables_in(table)], table, row)
        return found

    def refuse(self, mask: np.ndarray, reason: Refusal) -> None:
        """Refuse the still-accepted actions under ``mask`` with ``reason``."""
        self.status[mask & (self.status == 0)] = int(reason)

    def refusal_counts(self) -> dict[str, int]:
        codes, counts = np.unique(self.status[self.status != 0], return_counts=True)
        return {REFUSAL_NAMES[int(c)]: int(k) for c, k in zip(codes, counts)}
