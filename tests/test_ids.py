"""Entity ids: 64-bit packing, generations, slot retirement, shard prefixes, hand-off and adoption."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecs import NULL_ID, Component, EntityRegistry, World, id_generation, id_index, id_shard, make_id
from ecs.ids import MAX_GENERATION, MAX_SHARD

Position = Component("Position", [("x", "f8"), ("y", "f8")])
Health = Component("Health", [("hp", "i4")], defaults={"hp": 100})


# -- packing --------------------------------------------------------------------------------


@given(
    shard=st.integers(0, MAX_SHARD),
    generation=st.integers(0, MAX_GENERATION),
    index=st.integers(0, (1 << 32) - 1),
)
def test_make_id_round_trips_and_fits_int64(shard, generation, index):
    e = make_id(shard, generation, index)
    assert -(1 << 63) <= e < (1 << 63)
    assert int(np.int64(e)) == e
    assert (id_shard(e), id_generation(e), id_index(e)) == (shard, generation, index)
    # The unpacking also accepts numpy scalars, as ids come out of int64 columns.
    assert (id_shard(np.int64(e)), id_generation(np.int64(e)), id_index(np.int64(e))) == (shard, generation, index)


def test_id_layout_is_shard_generation_index_from_the_top():
    assert make_id(0, 1, 0) == 1 << 32
    assert make_id(1, 0, 0) == 1 << 48
    assert make_id(0, 0, 7) == 7
    assert make_id(MAX_SHARD, MAX_GENERATION, (1 << 32) - 1) == -1


# -- registry -------------------------------------------------------------------------------


def test_registry_rejects_a_shard_prefix_out_of_range():
    with pytest.raises(ValueError):
        EntityRegistry(shard=-1)
    with pytest.raises(ValueError):
        EntityRegistry(shard=MAX_SHARD + 1)


def test_allocated_ids_are_distinct_first_generation_and_carry_the_prefix():
    reg = EntityRegistry(shard=7, capacity=4)  # grows past its capacity
    ids = reg.allocate(100)
    assert ids.dtype == np.int64
    assert len(set(ids.tolist())) == 100
    assert NULL_ID not in ids.tolist()
    assert {id_shard(e) for e in ids} == {7}
    assert {id_generation(e) for e in ids} == {1}
    assert sorted(id_index(e) for e in ids) == list(range(100))
    assert reg.alive == 100
    assert all(reg.contains(e) for e in ids)


def test_released_id_no_longer_matches_and_its_slot_comes_back_with_the_next_generation():
    reg = EntityRegistry(capacity=1)
    old = int(reg.allocate(1)[0])
    reg.release(old)
    assert not reg.contains(old)
    assert reg.locate(old) == (-1, -1)
    new = int(reg.allocate(1)[0])
    assert new != old
    assert id_index(new) == id_index(old)
    assert id_generation(new) == id_generation(old) + 1
    assert reg.contains(new) and not reg.contains(old)
    with pytest.raises(KeyError):
        reg.release(old)


def test_free_slots_are_reused_first_in_first_out():
    reg = EntityRegistry()
    a, b, c = (int(e) for e in reg.allocate(3))
    reg.release(b)
    reg.release(a)
    again = [int(e) for e in reg.allocate(3)]
    assert [id_index(e) for e in again] == [id_index(b), id_index(a), 3]


def test_slot_is_retired_when_its_generation_is_exhausted():
    reg = EntityRegistry(shard=3, capacity=1)
    issued = []
    for _ in range(MAX_GENERATION):
        e = int(reg.allocate(1)[0])
        issued.append(e)
        reg.release(e)
    # Every generation 1..MAX of slot 0 was issued exactly once ...
    assert [id_index(e) for e in issued] == [0] * MAX_GENERATION
    assert [id_generation(e) for e in issued] == list(range(1, MAX_GENERATION + 1))
    assert len(set(issued)) == MAX_GENERATION
    # ... and the slot is retired: reusing it would wrap to an old generation and alias a dead
    # handle, so the next id comes from a fresh slot.
    nxt = int(reg.allocate(1)[0])
    assert id_index(nxt) == 1
    assert id_generation(nxt) == 1
    assert not any(reg.contains(e) for e in issued)
    assert reg.alive == 1


def test_world_recycled_slot_never_matches_a_dead_handle():
    w = World()
    old = w.spawn([Position], {Position: {"x": 1.0, "y": 2.0}})
    w.despawn(old)
    new = w.spawn([Position], {Position: {"x": 3.0, "y": 4.0}})
    assert id_index(new) == id_index(old)  # the slot was recycled ...
    assert new != old  # ... under a new generation
    assert not w.is_alive(old)
    assert w.is_alive(new)
    assert not w.has(old, Position)
    with pytest.raises(KeyError):
        w.get(old, Position)
    with pytest.raises(KeyError):
        w.set(old, Position, x=9.0)
    with pytest.raises(KeyError):
        w.despawn(old)
    assert w.get(new, Position) == {"x": 3.0, "y": 4.0}


def test_null_id_is_never_alive():
    w = World()
    w.spawn([Position])
    assert not w.is_alive(NULL_ID)
    with pytest.raises(KeyError):
        w.get(NULL_ID, Position)


@pytest.mark.kernel
def test_locate_many_matches_locate_for_live_dead_foreign_and_junk_ids():
    w = World(shard=2)
    ids = w.spawn_batch([Position], 5)
    w.spawn_batch([Position, Health], 3)
    w.despawn(int(ids[1]))
    foreign = make_id(9, 4, 123)
    w.adopt([foreign], [Health], {Health: {"hp": 5}})
    query = np.array(
        [
            *ids.tolist(),
            foreign,
            make_id(9, 4, 124),  # another shard's id we do not hold
            make_id(2, 1, 10_000_000),  # our prefix, slot beyond the registry
            make_id(2, 7, 0),  # our prefix, wrong generation
            NULL_ID,
        ],
        np.int64,
    )
    table, row = w.locate_many(query)
    assert table.dtype == np.int32 and row.dtype == np.int64
    expected = [w.registry.locate(int(e)) for e in query]
    assert list(zip(table.tolist(), row.tolist())) == expected
    # Every live one points at the row that holds it; the dead and the unknown at -1.
    for e, t, r in zip(query.tolist(), table.tolist(), row.tolist()):
        if w.is_alive(e):
            assert int(w.tables[t].ids[r]) == e
        else:
            assert (t, r) == (-1, -1)
    assert (table[query == ids[1]] == -1).all()
    assert table[5] >= 0 and w.tables[table[5]].has(Health)


@pytest.mark.kernel
def test_locate_many_on_an_empty_batch():
    w = World()
    w.spawn([Position])
    table, row = w.locate_many(np.empty(0, np.int64))
    assert table.shape == (0,) and row.shape == (0,)


# -- shards and hand-off ---------------------------------------------------------------------


def test_ids_are_unique_across_shards_with_different_prefixes():
    worlds = {shard: World(shard=shard) for shard in (0, 1, 2, 0x8000, MAX_SHARD)}
    seen: set[int] = set()
    for shard, w in worlds.items():
        ids = w.spawn_batch([Position], 50).tolist()
        w.despawn(ids[0])
        ids.append(w.spawn([Position]))  # a recycled slot keeps the prefix too
        assert {id_shard(e) for e in ids} == {shard}
        assert all(w.is_alive(e) for e in ids[1:])
        assert not seen & set(ids)
        seen |= set(ids)
    assert len(seen) == 5 * 51
    # A world never answers for another shard's ids it has not adopted.
    some_of_1 = [e for e in seen if id_shard(e) == 1]
    assert not any(worlds[2].is_alive(e) for e in some_of_1)


def test_hand_off_and_back_keeps_the_id_and_the_values():
    a, b = World(shard=1), World(shard=2)
    keep = a.spawn_batch([Position, Health], 4, {Position: {"x": np.arange(4.0)}})
    e = a.spawn([Position, Health], {Position: {"x": 1.5, "y": -2.5}, Health: {"hp": 42}})

    sent = a.hand_off(e)
    assert not a.is_alive(e)
    assert a.entity_count == 4
    assert {c.name: {f: v.item() for f, v in fv.items()} for c, fv in sent.items()} == {
        "Health": {"hp": 42},
        "Position": {"x": 1.5, "y": -2.5},
    }
    # While the entity lives elsewhere, A's slot is lent: new spawns never reuse it.
    spawned_meanwhile = a.spawn_batch([Position], 200).tolist()
    for x in spawned_meanwhile[:50]:
        a.despawn(x)
    spawned_meanwhile += a.spawn_batch([Position], 100).tolist()
    assert e not in spawned_meanwhile
    assert id_index(e) not in {id_index(x) for x in spawned_meanwhile}

    b_local = b.spawn_batch([Position], 3)
    b.adopt([e], list(sent), sent)
    assert b.is_alive(e)
    assert id_shard(e) == 1  # the id is unchanged, prefix included
    assert b.get(e, Position) == {"x": 1.5, "y": -2.5}
    assert b.get(e, Health) == {"hp": 42}
    assert b.entity_count == 4
    assert e not in b_local.tolist()
    table, row = b.locate_many(np.array([e, *b_local.tolist()], np.int64))
    assert (table >= 0).all()
    assert int(b.tables[table[0]].ids[row[0]]) == e
    # B's own spawns still work and are B's.
    later = b.spawn_batch([Position], 5).tolist()
    assert {id_shard(x) for x in later} == {2}
    b.set(e, Health, hp=41)

    back = b.hand_off(e)
    assert not b.is_alive(e)
    assert all(b.is_alive(x) for x in [*b_local.tolist(), *later])
    a.adopt([e], list(back), back)
    assert a.is_alive(e)
    assert a.get(e, Health) == {"hp": 41}
    assert a.get(e, Position) == {"x": 1.5, "y": -2.5}
    assert all(a.is_alive(int(x)) for x in keep)

    # Once home, the id dies like any other: its slot moves on to the next generation.
    a.despawn(e)
    assert not a.is_alive(e)
    for x in a.query(Position).ids().tolist():
        a.despawn(x)
    fresh = a.spawn_batch([Position], 400).tolist()
    assert e not in fresh
    assert any(id_index(x) == id_index(e) and id_generation(x) == id_generation(e) + 1 for x in fresh)


def test_foreign_slot_freed_on_hand_off_is_reused_without_aliasing():
    b = World(shard=2)
    foreign = make_id(1, 3, 0)
    b.adopt([foreign], [Position], {Position: {"x": 7.0}})
    b.hand_off(foreign)
    mine = b.spawn_batch([Position], 4).tolist()
    assert not b.is_alive(foreign)
    assert {id_shard(x) for x in mine} == {2}
    assert len(set(mine)) == 4
    b.adopt([foreign], [Position], {Position: {"x": 8.0}})  # it may come back again
    assert b.get(foreign, Position)["x"] == 8.0
    assert all(b.is_alive(x) for x in mine)


def test_adopt_refuses_null_alive_duplicate_and_never_lent_ids():
    a = World(shard=1)
    e = a.spawn([Position])
    with pytest.raises(ValueError):
        a.adopt([NULL_ID], [Position])
    with pytest.raises(ValueError):
        a.adopt([e], [Position])  # already alive here
    with pytest.raises(ValueError):
        a.adopt([make_id(1, 1, 99)], [Position])  # our prefix, but never lent out
    foreign = make_id(5, 1, 0)
    with pytest.raises(ValueError):
        a.adopt([foreign, foreign], [Position])
    assert not a.is_alive(foreign)
    a.adopt([foreign], [Position])
    with pytest.raises(ValueError):
        a.adopt([foreign], [Position])  # second adoption of a live entity
    assert a.entity_count == 2


def test_failed_adoption_leaves_the_entity_adoptable():
    a, b = World(shard=1), World(shard=2)
    e = a.spawn([Position], {Position: {"x": 1.0}})
    sent = a.hand_off(e)
    with pytest.raises(KeyError):
        b.adopt([e], [Position], {Position: {"nope": 1.0}})
    assert not b.is_alive(e)
    b.adopt([e], list(sent), sent)
    assert b.get(e, Position)["x"] == 1.0
    # And an own id whose return failed is still lent, so it can come home later.
    back = b.hand_off(e)
    with pytest.raises(KeyError):
        a.adopt([e], [Position], {Position: {"nope": 1.0}})
    a.adopt([e], list(back), back)
    assert a.is_alive(e)
