"""Merge policies: how simultaneous writes to one field of one entity combine.

Every component field declares its policy (``Component(merge=...)``): ``additive`` (damage
and heals all count, none is lost), ``min`` / ``max``, ``first_claim`` (exactly one winner in
the computed order; every later claimant is refused), and ``last_writer`` (the latest in the
computed order stands). The apply step follows the computed order and, for each field it
writes, combines values through ``merge_value``; ``merge_writes`` does the same for a whole
batch of independent writes at once (one kernel, no per-write Python), e.g. for replication.
Both are pure, so a result depends only on the writes and their order, never on arrival.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Component
from ecs.component import MERGE_POLICIES
from ecs.config import JIT

LAST_WRITER, ADDITIVE, MIN, MAX, FIRST_CLAIM = range(5)
POLICY_CODES = {name: code for code, name in enumerate(MERGE_POLICIES)}
assert POLICY_CODES == {"last_writer": LAST_WRITER, "additive": ADDITIVE, "min": MIN, "max": MAX,
                        "first_claim": FIRST_CLAIM}


def policy_of(component: Component, field: str) -> int:
    """The merge policy code a component declares for one of its fields."""
    return POLICY_CODES[component.merge[field]]


@njit(**JIT)
def merge_value(policy, current, incoming, claimed):
    """(new value, accepted) for one write under ``policy``.

    current: the field's value so far this tick; incoming: the write (a delta for additive,
    a value otherwise); claimed: whether a first claim on this field was already won this tick.
    """
    if policy == ADDITIVE:
        return current + incoming, True
    if policy == MIN:
        return min(current, incoming), True
    if policy == MAX:
        return max(current, incoming), True
    if policy == FIRST_CLAIM:
        if claimed:
            return current, False
        return incoming, True
    return incoming, True  # LAST_WRITER


@njit(**JIT)
def merge_writes(policy, base, entity, value, rank, out, accepted):
    """Apply a batch of writes to one field, in rank order.

    base: (m,) float64 field values at tick start, read. entity: (k,) int64 row into base of
    each write, read. value: (k,) float64, read. rank: (k,) int64 position of each write in
    the computed order (distinct), read. out: (m,) float64, written: merged values.
    accepted: (k,) bool, written: False for first claims that lost.
    """
    out[:] = base
    claimed = np.zeros(base.shape[0], np.bool_)
    order = np.argsort(rank, kind="mergesort")
    for j in range(order.shape[0]):
        w = order[j]
        e = entity[w]
        new, ok = merge_value(policy, out[e], value[w], claimed[e])
        accepted[w] = ok
        if ok:
            out[e] = new
            if policy == FIRST_CLAIM:
                claimed[e] = True
