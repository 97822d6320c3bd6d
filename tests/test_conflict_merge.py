"""Merge policies against an obviously correct reference, over random batches of writes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systems.components import Health, Inventory, Loot
from systems.conflict_merge import ADDITIVE, FIRST_CLAIM, LAST_WRITER, MAX, MIN, merge_writes, policy_of


def reference(policy, base, entity, value, rank):
    out = list(base)
    accepted = [True] * len(entity)
    claimed = set()
    for w in sorted(range(len(entity)), key=lambda k: rank[k]):
        e = entity[w]
        if policy == ADDITIVE:
            out[e] += value[w]
        elif policy == MIN:
            out[e] = min(out[e], value[w])
        elif policy == MAX:
            out[e] = max(out[e], value[w])
        elif policy == FIRST_CLAIM:
            if e in claimed:
                accepted[w] = False
            else:
                out[e] = value[w]
                claimed.add(e)
        else:
            out[e] = value[w]
    return out, accepted


@pytest.mark.kernel
@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(0, 4), st.integers(1, 6), st.lists(st.tuples(st.integers(0, 5), st.integers(-50, 50)), max_size=40),
       st.randoms(use_true_random=False))
def test_merge_writes_matches_the_reference(policy, m, writes, rnd):
    base = np.arange(m, dtype=np.float64) * 10.0
    entity = np.array([e % m for e, _ in writes], np.int64)
    value = np.array([v for _, v in writes], np.float64)
    rank = np.arange(len(writes), dtype=np.int64)
    rnd.shuffle(rank)  # the computed order, unrelated to the arrival order
    out = np.empty(m)
    accepted = np.empty(len(writes), np.bool_)
    merge_writes(policy, base, entity, value, rank, out, accepted)
    want, want_ok = reference(policy, base.tolist(), entity.tolist(), value.tolist(), rank.tolist())
    assert out.tolist() == want and accepted.tolist() == want_ok
    if policy == ADDITIVE:  # nothing lost
        assert out.sum() == pytest.approx(base.sum() + value.sum())
    if policy == FIRST_CLAIM:  # exactly one winner per claimed entity
        assert sorted(set(entity[accepted].tolist())) == sorted(set(entity.tolist()))
        assert accepted.sum() == len(set(entity.tolist()))


def test_policies_are_declared_with_the_components():
    assert policy_of(Health, "hp") == ADDITIVE
    assert policy_of(Loot, "gold") == FIRST_CLAIM
    assert policy_of(Inventory, "gold") == ADDITIVE
    assert policy_of(Health, "max_hp") == LAST_WRITER
