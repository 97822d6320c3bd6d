"""Counter-based RNG keyed by (seed, tick, entity, stream): order-free, batch-free, well spread."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import Rng, make_id
from ecs.rng import key_u64, mix64

_M = (1 << 64) - 1


def _mix_ref(x: int) -> int:
    """splitmix64's finaliser on Python ints, the obviously-correct reference."""
    x &= _M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def _key_ref(seed: int, tick: int, entity: int, stream: int, counter: int) -> int:
    h = _mix_ref(seed + 0x9E3779B97F4A7C15)
    h = _mix_ref(h ^ ((tick * 0xD6E8FEB86659FD93) & _M))
    h = _mix_ref(h ^ ((entity * 0xA0761D6478BD642F) & _M))
    h = _mix_ref(h ^ ((stream * 0xE7037ED1A0B428DB) & _M))
    return _mix_ref(h ^ ((counter * 0x8EBC6AF09C88C6E3) & _M))


ENTITIES = np.array([1, 2, 3, make_id(1, 1, 0), make_id(0x8000, 9, 77), make_id(0xFFFF, 0xFFFF, 5), -1], np.int64)


@pytest.mark.kernel
def test_mix_and_keys_match_a_python_reference():
    for x in (0, 1, 2, 0xDEADBEEF, _M):
        assert int(mix64(np.uint64(x))) == _mix_ref(x)
    for seed, tick, e, stream, counter in [(0, 0, 0, 0, 0), (42, 7, 1 << 32, 3, 1), (1, 123456, -5, 9, 2)]:
        got = int(key_u64(np.uint64(seed), np.int64(tick), np.int64(e), np.int64(stream), np.int64(counter)))
        assert got == _key_ref(seed, tick, e, stream, counter)
    rng = Rng(42)
    u = rng.uniform(5, ENTITIES, stream=2, counter=1)
    expected = [(_key_ref(42, 5, int(e), 2, 1) >> 11) / 2.0**53 for e in ENTITIES]
    assert u.tolist() == expected


@pytest.mark.kernel
def test_same_key_same_value_whatever_the_order_or_batching():
    rng = Rng(1234)
    all_at_once = rng.uniform(10, ENTITIES, stream=1)
    perm = np.random.default_rng(0).permutation(len(ENTITIES))
    shuffled = rng.uniform(10, ENTITIES[perm], stream=1)
    assert np.array_equal(shuffled, all_at_once[perm])
    in_pieces = np.concatenate([rng.uniform(10, ENTITIES[:3], 1), rng.uniform(10, ENTITIES[3:], 1)])
    assert np.array_equal(in_pieces, all_at_once)
    one_by_one = [rng.scalar(10, int(e), 1) for e in ENTITIES]
    assert one_by_one == all_at_once.tolist()
    assert np.array_equal(Rng(1234).uniform(10, ENTITIES, 1), all_at_once)  # a fresh Rng, same seed
    twice = rng.normal(10, np.concatenate([ENTITIES, ENTITIES]), stream=4)
    assert np.array_equal(twice[: len(ENTITIES)], twice[len(ENTITIES) :])
    assert np.array_equal(rng.normal(10, ENTITIES[perm], 4), twice[perm])


@pytest.mark.kernel
def test_each_key_part_changes_the_value():
    base = dict(tick=3, stream=1, counter=0)
    e = ENTITIES
    ref = Rng(7).uniform(entities=e, **base)
    variants = [
        Rng(8).uniform(entities=e, **base),
        Rng(7).uniform(entities=e, **{**base, "tick": 4}),
        Rng(7).uniform(entities=e + 1, **base),
        Rng(7).uniform(entities=e, **{**base, "stream": 2}),
        Rng(7).uniform(entities=e, **{**base, "counter": 1}),
    ]
    for v in variants:
        assert not np.any(v == ref)
    # Within one call, different entities get different values.
    assert len(set(ref.tolist())) == len(e)


@pytest.mark.kernel
def test_uniform_and_normal_shapes_and_ranges():
    rng = Rng(3)
    ids = np.arange(64, dtype=np.int64)
    u = rng.uniform(0, ids, 0)
    n = rng.normal(0, ids, 0)
    assert u.shape == n.shape == (64,)
    assert u.dtype == n.dtype == np.float64
    assert ((u >= 0.0) & (u < 1.0)).all()
    assert np.isfinite(n).all()
    assert rng.uniform(0, np.empty(0, np.int64), 0).shape == (0,)
    assert 0.0 <= rng.scalar(0, 5, 0) < 1.0


def test_uniform_statistics_over_100k_draws():
    rng = Rng(2024)
    across_entities = rng.uniform(17, np.arange(100_000, dtype=np.int64), stream=3)
    across_ticks = np.array([rng.scalar(t, 12345, 3) for t in range(20_000)])
    for u in (across_entities, across_ticks):
        assert ((u >= 0.0) & (u < 1.0)).all()
        tol = 5 / np.sqrt(u.size)
        assert abs(u.mean() - 0.5) < 0.29 * tol
        assert abs(u.var() - 1 / 12) < 0.1 * tol
        counts = np.histogram(u, bins=10, range=(0.0, 1.0))[0]
        expected = u.size / 10
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 35.0  # 9 degrees of freedom; p < 1e-4
    # Neighbouring entities are not correlated.
    assert abs(np.corrcoef(across_entities[:-1], across_entities[1:])[0, 1]) < 0.02


def test_normal_statistics_over_100k_draws():
    n = Rng(99).normal(5, np.arange(100_000, dtype=np.int64), stream=8)
    assert abs(n.mean()) < 0.015
    assert abs(n.std() - 1.0) < 0.015
    assert abs(np.mean(np.abs(n) < 1.0) - 0.6827) < 0.01
    assert abs(np.mean(n**3)) < 0.05  # symmetric
