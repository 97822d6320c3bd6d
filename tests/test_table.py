"""Archetype tables: struct-of-arrays columns, swap-remove, growth without the caller noticing."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import NULL_ID, Component, Table, World

Position = Component("Position", [("x", "f8"), ("y", "f8")])
Health = Component("Health", [("hp", "i4")], defaults={"hp": 100})
Tagged = Component("Tagged", [("on", "?")])


def test_components_are_sorted_by_name_and_deduplicated():
    t = Table([Position, Health, Position])
    assert t.components == (Health, Position)
    assert t.key == frozenset({"Health", "Position"})
    assert t.has(Health) and not t.has(Tagged)


def test_every_field_is_its_own_contiguous_column():
    t = Table([Position, Health], capacity=4)
    t.append(np.array([11, 12, 13]), {Position: {"x": np.array([1.0, 2.0, 3.0]), "y": 5.0}})
    x = t.column(Position, "x")
    assert x.dtype == np.float64 and x.shape == (3,) and x.flags.c_contiguous
    assert t.column(Health, "hp").dtype == np.int32
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert t.column(Position, "y").tolist() == [5.0, 5.0, 5.0]
    assert t.column(Health, "hp").tolist() == [100, 100, 100]  # default
    assert t.ids.tolist() == [11, 12, 13]
    x[1] = 20.0  # a column is a view: writes go straight to the table
    assert t.row_values(1)[Position]["x"] == 20.0


def test_a_full_column_covers_rows_appended_later_until_the_table_grows():
    t = Table([Position, Health], capacity=8)
    t.append(np.array([11, 12]), {Position: {"x": np.array([1.0, 2.0]), "y": 0.0}})
    full, live = t.full_column(Position, "x"), t.column(Position, "x")
    assert full.shape == (8,) and live.shape == (2,) and np.shares_memory(full, live)
    t.append(np.array([13]), {Position: {"x": 3.0, "y": 0.0}})
    assert full[:3].tolist() == [1.0, 2.0, 3.0]  # the row after the first two, seen through the same view
    t.append(np.arange(20, 30), {})  # grows: the old view no longer is the table's
    assert not np.shares_memory(full, t.full_column(Position, "x"))
    assert t.full_column(Position, "x")[:3].tolist() == [1.0, 2.0, 3.0]


def test_a_plan_is_derived_once_per_layout_and_again_after_growth():
    t = Table([Position], capacity=2)
    derived = []
    def derive(table):
        derived.append(table.capacity)
        return table.full_column(Position, "x")
    assert t.plan("x", derive) is t.plan("x", derive) and derived == [2]
    t.append(np.arange(1, 4), {})  # grows: the blocks are new, so is the plan
    assert t.plan("x", derive).shape == (t.capacity,) and derived == [2, t.capacity]


def test_column_sets_by_attribute_and_by_key():
    t = Table([Position])
    t.append(np.array([1, 2]), {Position: {"x": [3.0, 4.0]}})
    cols = t.columns(Position)
    assert cols.x.tolist() == [3.0, 4.0]
    assert cols["y"].tolist() == [0.0, 0.0]
    with pytest.raises(AttributeError):
        cols.z
    with pytest.raises(KeyError):
        t.columns(Health)


def test_append_returns_the_new_rows():
    t = Table([Position])
    assert t.append(np.array([5, 6])).tolist() == [0, 1]
    assert t.append(np.array([7])).tolist() == [2]
    assert t.n == 3


def test_append_refuses_unknown_fields_and_components_without_changing_the_table():
    t = Table([Position])
    t.append(np.array([1]), {Position: {"x": 1.0}})
    with pytest.raises(KeyError):
        t.append(np.array([2]), {Position: {"z": 1.0}})
    with pytest.raises(KeyError):
        t.append(np.array([2]), {Health: {"hp": 1}})
    assert t.n == 1
    assert t.ids.tolist() == [1]


def test_swap_remove_moves_the_last_row_into_the_hole_and_reports_it():
    t = Table([Health])
    t.append(np.array([10, 20, 30, 40]), {Health: {"hp": [1, 2, 3, 4]}})
    assert t.swap_remove(1) == 40
    assert t.ids.tolist() == [10, 40, 30]
    assert t.column(Health, "hp").tolist() == [1, 4, 3]
    assert t.swap_remove(2) == NULL_ID  # the last row: nothing moves
    assert t.ids.tolist() == [10, 40]
    assert t.swap_remove(0) == 40
    assert t.swap_remove(0) == NULL_ID
    assert t.n == 0
    with pytest.raises(IndexError):
        t.swap_remove(0)


def test_reserve_grows_capacity_and_keeps_rows():
    t = Table([Position], capacity=2)
    t.append(np.array([1, 2]), {Position: {"x": [1.0, 2.0]}})
    t.reserve(1)  # no shrink
    assert t.capacity == 2
    t.reserve(3)
    assert t.capacity >= 4  # at least doubles
    t.reserve(1000)
    assert t.capacity >= 1000
    assert t.n == 2
    assert t.column(Position, "x").tolist() == [1.0, 2.0]


def test_table_grows_without_the_caller_noticing():
    w = World()
    ids = [w.spawn([Position, Health], {Position: {"x": float(i), "y": -float(i)}, Health: {"hp": i}}) for i in range(3000)]
    (table,) = w.query(Position, Health).tables()
    assert table.n == 3000
    assert table.capacity >= 3000
    assert table.ids.tolist() == ids
    assert table.column(Position, "x").tolist() == [float(i) for i in range(3000)]
    assert table.column(Health, "hp").tolist() == list(range(3000))
    for i in (0, 63, 64, 65, 1023, 1024, 2999):
        assert w.get(ids[i], Position) == {"x": float(i), "y": -float(i)}
        assert w.get(ids[i], Health) == {"hp": i}


def test_despawn_swap_remove_keeps_id_to_row_correct():
    w = World()
    rng = np.random.default_rng(3)
    ids = w.spawn_batch([Position, Health], 500, {Health: {"hp": np.arange(500)}}).tolist()
    hp = dict(zip(ids, range(500)))
    (table,) = w.query(Health).tables()
    for e in rng.permutation(ids)[:350].tolist():
        row = w.registry.locate(e)[1]
        last = int(table.ids[-1])
        before = table.ids.tolist()
        w.despawn(e)
        del hp[e]
        # Only the last row moved, into the hole: O(1), nobody else was touched.
        after = table.ids.tolist()
        if last != e:
            assert after[row] == last
            assert after[:row] == before[:row] and after[row + 1 :] == before[row + 1 : -1]
        else:
            assert after == before[:-1]
    assert table.n == 150
    for e, v in hp.items():
        t, r = w.registry.locate(e)
        assert int(w.tables[t].ids[r]) == e
        assert w.get(e, Health) == {"hp": v}


def test_moving_between_tables_keeps_the_rest_of_both_tables_right():
    w = World()
    ids = w.spawn_batch([Position], 10, {Position: {"x": np.arange(10.0)}}).tolist()
    w.add_component(ids[2], Health, {"hp": 5})
    w.add_component(ids[0], Health)
    w.remove_component(ids[2], Health)
    for i, e in enumerate(ids):
        assert w.get(e, Position)["x"] == float(i)
    assert w.get(ids[0], Health) == {"hp": 100}
    assert not w.has(ids[2], Health)
    assert sorted(w.query(Position, without=[Health]).ids().tolist()) == sorted(ids[1:])
