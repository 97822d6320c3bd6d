"""The state hash: who holds which values, blind to row order, table order and capacity."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import Component, Table, World, make_id
from ecs.hashing import combine, hash_tables, value_bits
from ecs.rng import mix64

Position = Component("Position", [("x", "f8"), ("y", "f4")])
Stats = Component("Stats", [("hp", "i4"), ("gold", "u8"), ("alive", "?")])
# Row-major records of every width the kernels treat apart (2, 3, 4, more; one field goes by
# columns), with float32/64, signed and unsigned ints, bools, and a float16 (converted).
Record = Component("Record", [(f"r{i}", "f8") for i in range(6)]
                   + [("n0", "i2"), ("n1", "i2"), ("flag", "?"), ("half", "f2")], row_major=True)
Pair = Component("Pair", [("a", "f4"), ("b", "f4"), ("c", "u4"), ("d", "u4"), ("e", "u4")], row_major=True)
Quad = Component("Quad", [(f"q{i}", "i8") for i in range(4)], row_major=True)
Local = Component("Local", [("cell", "i4")], hashed=False)
WIDE = (Position, Stats, Record, Pair, Quad)

_M = (1 << 64) - 1


def _hash_ref(world: World, exclude=()) -> int:
    """Cell by cell, from the public reads: the sum of mix(mix(id) ^ salt + bits(value)) mod 2**64
    over the cells of the hashed components not in ``exclude``."""
    skip = {c.name for c in exclude}
    acc = 0
    for t in world.tables:
        for e in t.ids.tolist():
            key = int(mix64(np.uint64(e & _M)))
            for c in t.components:
                if not c.hashed or c.name in skip:
                    continue
                for f in c.fields:
                    bits = int(value_bits(np.array([world.get(e, c)[f]], c.dtype[f]))[0])
                    acc = (acc + int(mix64(np.uint64(((key ^ c.salts[f]) + bits) & _M)))) & _M
    return acc


def _populated(order, despawn_order=(), shard=0):
    """16 entities with per-entity values, set in ``order``; then ``despawn_order`` removes some.

    Ids are minted in spawn order, so two calls give the same ids; despawning in another
    order leaves the survivors in other rows (swap-remove).
    """
    w = World(shard=shard)
    ids = [w.spawn([Position, Stats]) for _ in range(16)]
    for i in order:
        e = ids[i]
        w.set(e, Position, x=i * 1.5, y=-i)
        w.set(e, Stats, hp=100 - i, gold=i * 1000, alive=i % 2 == 0)
    for i in despawn_order:
        w.despawn(ids[i])
    return w, ids


@pytest.mark.kernel
def test_hash_matches_the_cell_by_cell_definition():
    w, ids = _populated(range(16), despawn_order=(3, 0))
    w.add_component(ids[5], Component("Extra", [("k", "i8")]), {"k": -4})
    assert w.state_hash() == _hash_ref(w)
    assert 0 <= w.state_hash() < 1 << 64


def _wide(n, shard=0, seed=0):
    """``n`` entities holding WIDE (and Local), with random values in every field."""
    w = World(shard=shard)
    rng = np.random.default_rng(seed)
    values = {}
    for c in WIDE + (Local,):
        values[c] = {}
        for f in c.fields:
            dt = c.dtype[f]
            if dt.kind == "f":
                values[c][f] = rng.normal(size=n).astype(dt)
            elif dt.kind == "b":
                values[c][f] = rng.random(n) < 0.5
            else:
                values[c][f] = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, size=n, dtype=dt, endpoint=True)
    ids = w.spawn_batch(WIDE + (Local,), n, values)
    return w, ids.tolist()


@pytest.mark.kernel
def test_hash_matches_the_cell_by_cell_definition_on_every_layout():
    # 300 rows: more than one tile of the column kernel, and a partial last one.
    w, ids = _wide(300)
    w.set(ids[7], Record, r0=-0.0, r3=np.nan, half=np.nan)
    w.set(ids[8], Pair, a=-0.0, b=np.float32("nan"))
    w.despawn(ids[0])
    assert w.state_hash() == _hash_ref(w)
    assert w.state_hash(exclude=[Record, Stats]) == _hash_ref(w, exclude=[Record, Stats])


@pytest.mark.kernel
def test_hash_is_the_sum_over_worlds_holding_the_entities():
    """What makes a sharded world's hash the sum of its shards' partial hashes."""
    whole, ids = _wide(300, shard=1)
    total = whole.state_hash()
    a, _ = _wide(300, shard=1)
    b, c = World(shard=2), World(shard=3)
    for e in ids[::3]:
        values = a.hand_off(e)
        b.adopt([e], tuple(values), values)
    for e in ids[1::7]:
        if a.is_alive(e):
            values = a.hand_off(e)
            c.adopt([e], tuple(values), values)
    parts = [a.state_hash(), b.state_hash(), c.state_hash()]
    assert 0 not in parts and total not in parts
    assert sum(parts) % (1 << 64) == total
    # And so over tables, and over components.
    w, _ = _populated(range(16))
    tables = w.tables + [Table([Position, Stats]), _wide(20)[0].tables[0]]
    assert hash_tables(tables) == sum(hash_tables([t]) for t in tables) % (1 << 64)
    assert w.state_hash() == (w.state_hash(exclude=[Position]) + w.state_hash(exclude=[Stats])) % (1 << 64)


@pytest.mark.kernel
def test_any_single_field_change_changes_the_hash_on_every_layout():
    w, ids = _wide(300)
    before = w.state_hash()
    e = ids[290]  # in the last, partial tile
    for c in WIDE:
        for f in c.fields:
            old = w.get(e, c)[f]
            kind = c.dtype[f].kind
            new = (not old) if kind == "b" else (old + 1 if kind in "iu" and old < np.iinfo(c.dtype[f]).max
                                                 else old - 1 if kind in "iu" else old * 0.5 + 0.25)
            w.set(e, c, **{f: new})
            assert w.state_hash() != before, (c.name, f, old, new)
            w.set(e, c, **{f: old})
            assert w.state_hash() == before, (c.name, f)


@pytest.mark.kernel
def test_unhashed_components_are_left_out():
    w, ids = _wide(30)
    before = w.state_hash()
    w.set(ids[3], Local, cell=-12345)
    assert w.state_hash() == before
    w.remove_component(ids[4], Local)  # another table, same hashed values
    assert len(w.tables) == 2 and w.state_hash() == before
    w2, _ = _wide(30)
    w2.add_component(w2.spawn([Local]), Position)
    w.add_component(w.spawn([Local]), Position)
    assert w.state_hash() == w2.state_hash() != before


@pytest.mark.kernel
def test_same_state_same_hash_whatever_the_row_order():
    w1, ids1 = _populated(range(16), despawn_order=(1, 3, 5, 7, 9, 11))
    w2, ids2 = _populated(reversed(range(16)), despawn_order=(11, 9, 7, 5, 3, 1))
    assert ids1 == ids2
    (t1,), (t2,) = w1.query(Position).tables(), w2.query(Position).tables()
    assert sorted(t1.ids.tolist()) == sorted(t2.ids.tolist())
    assert t1.ids.tolist() != t2.ids.tolist()  # the rows really are in a different order
    assert w1.state_hash() == w2.state_hash()


@pytest.mark.kernel
def test_same_state_same_hash_whatever_the_tables_and_their_capacity():
    w1, ids = _populated(range(16))
    w2, _ = _populated(range(16))
    # In w2, spawn many more into the same table, then remove them: capacity grows, content does not.
    extra = w2.spawn_batch([Position, Stats], 300).tolist()
    for e in extra:
        w2.despawn(e)
    # And move entities through other tables and back.
    for e in ids[:4]:
        w2.remove_component(e, Stats)
        w2.add_component(e, Stats, w1.get(e, Stats))
    (t1,), (t2,) = w1.query(Position, Stats).tables(), w2.query(Position, Stats).tables()
    assert t2.capacity > t1.capacity
    assert len(w2.tables) > len(w1.tables)
    assert w1.state_hash() == w2.state_hash()


@pytest.mark.kernel
def test_hash_tables_ignores_capacity_and_table_order():
    def table(capacity, ids):
        t = Table([Position], capacity=capacity)
        t.append(np.array(ids), {Position: {"x": np.array(ids) * 2.0}})
        return t

    small, big = table(1, [5, 6, 7]), table(1000, [7, 5, 6])
    assert hash_tables([small]) == hash_tables([big])
    other = table(4, [8])
    assert hash_tables([small, other]) == hash_tables([other, big])
    assert hash_tables([]) == 0
    assert hash_tables([Table([Position])]) == 0  # empty tables add nothing


@pytest.mark.kernel
def test_any_single_field_change_changes_the_hash():
    w, ids = _populated(range(16))
    before = w.state_hash()
    e = ids[6]
    for component, field, value in [
        (Position, "x", 9.0 + 1e-12),
        (Position, "y", 1e-30),
        (Stats, "hp", 95),
        (Stats, "gold", 6001),
        (Stats, "alive", False),
    ]:
        old = w.get(e, component)[field]
        w.set(e, component, **{field: value})
        assert w.state_hash() != before, (component.name, field)
        w.set(e, component, **{field: old})
        assert w.state_hash() == before


@pytest.mark.kernel
def test_swapping_values_between_entities_or_fields_changes_the_hash():
    w, ids = _populated(range(16))
    before = w.state_hash()
    a, b = ids[2], ids[3]
    pa, pb = w.get(a, Position), w.get(b, Position)
    w.set(a, Position, **pb)
    w.set(b, Position, **pa)
    assert w.state_hash() != before
    w2 = World()
    e = w2.spawn([Position], {Position: {"x": 1.0, "y": 2.0}})
    h = w2.state_hash()
    w2.set(e, Position, x=2.0, y=1.0)
    assert w2.state_hash() != h


@pytest.mark.kernel
def test_structure_is_part_of_the_hash():
    w, ids = _populated(range(16))
    before = w.state_hash()
    w.despawn(ids[4])
    after_despawn = w.state_hash()
    assert after_despawn != before
    marker = Component("Marker", [("_", "u1")])
    w.add_component(ids[5], marker)
    assert w.state_hash() != after_despawn


@pytest.mark.kernel
def test_negative_zero_and_nan_payloads_hash_like_their_canonical_values():
    def world_with(x, y):
        w = World()
        w.spawn([Position], {Position: {"x": x, "y": y}})
        return w.state_hash()

    assert world_with(0.0, 0.0) == world_with(-0.0, -0.0)
    quiet, other_nan = np.float64(np.nan), np.uint64(0x7FF8000000000001).view(np.float64)
    assert world_with(quiet, 0.0) == world_with(other_nan, 0.0) == world_with(-quiet, 0.0)
    assert world_with(0.0, 0.0) != world_with(quiet, 0.0)
    assert world_with(1.0, 0.0) != world_with(-1.0, 0.0)

    def record_with(x, y):  # the same through the row-major kernel, float64 and float32
        w = World()
        w.spawn([Record, Pair], {Record: {"r1": x, "r5": y}, Pair: {"a": y, "b": x}})
        return w.state_hash()

    assert record_with(0.0, 0.0) == record_with(-0.0, -0.0)
    assert record_with(quiet, 1.0) == record_with(other_nan, 1.0) == record_with(-quiet, 1.0)
    assert record_with(0.0, 0.0) != record_with(quiet, 0.0)
    assert record_with(1.0, 0.0) != record_with(-1.0, 0.0)


@pytest.mark.kernel
def test_different_ids_with_the_same_values_hash_differently():
    def world(shard, entities):
        w = World(shard=shard)
        w.adopt(entities, [Position], {Position: {"x": 3.0, "y": 4.0}})
        return w.state_hash()

    assert world(0, [make_id(1, 1, 0)]) != world(0, [make_id(1, 1, 1)])
    assert world(0, [make_id(1, 1, 0)]) != world(0, [make_id(1, 2, 0)])  # generation is part of it
    assert world(0, [make_id(1, 1, 0)]) != world(0, [make_id(2, 1, 0)])  # and the shard prefix
    assert world(0, [make_id(1, 1, 0)]) == world(7, [make_id(1, 1, 0)])  # not the holder's prefix
    big = make_id(0xFFFF, 3, 9)  # a negative int64
    assert world(0, [big]) != world(0, [make_id(0x7FFF, 3, 9)])
    # The same spawns on two shards: same values, different ids, different hashes.
    w1, _ = _populated(range(16), shard=1)
    w2, _ = _populated(range(16), shard=2)
    assert w1.state_hash() != w2.state_hash()


@pytest.mark.kernel
def test_value_bits_canonical_patterns():
    assert value_bits(np.array([-0.0, 0.0])).tolist() == [0, 0]
    assert value_bits(np.array([1.5], np.float32)).tolist() == value_bits(np.array([1.5])).tolist()
    assert value_bits(np.array([-1], np.int32)).tolist() == [_M]
    assert value_bits(np.array([True, False])).tolist() == [1, 0]
    assert value_bits(np.array([7], np.uint16)).dtype == np.uint64


@pytest.mark.kernel
def test_combine_is_order_sensitive_and_deterministic():
    assert combine(1, 2) == combine(1, 2)
    assert combine(1, 2) != combine(2, 1)
    assert combine(1) != combine(1, 0)
    assert 0 <= combine(_M, _M) < 1 << 64

