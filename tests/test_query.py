"""Queries: the tables holding all of some components and none of others, cached per structure."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import Component, World

A = Component("A", [("x", "f8")])
B = Component("B", [("n", "i4")])
C = Component("C", [("on", "?")])
D = Component("D", [("f", "f4")])


def _world():
    """A on 1000 entities (alone or with C), B on 3 of them (two tables), B without A on 2."""
    w = World()
    only_a = w.spawn_batch([A], 600, {A: {"x": np.arange(600.0)}}).tolist()
    a_c = w.spawn_batch([A, C], 397, {A: {"x": 1000 + np.arange(397.0)}}).tolist()
    ab = [w.spawn([A, B], {A: {"x": -1.0}, B: {"n": 1}}), w.spawn([A, B], {A: {"x": -2.0}, B: {"n": 2}})]
    abc = [w.spawn([A, B, C], {A: {"x": -3.0}, B: {"n": 3}})]
    b_only = w.spawn_batch([B], 2, {B: {"n": 99}}).tolist()
    return w, {"only_a": only_a, "a_c": a_c, "ab": ab, "abc": abc, "b_only": b_only}


def test_rare_component_second_returns_exactly_the_few_from_the_right_tables():
    w, g = _world()
    for q in (w.query(A, B), w.query(B, A)):
        assert q.count() == 3
        assert sorted(q.ids().tolist()) == sorted(g["ab"] + g["abc"])
        assert all(t.has(A) and t.has(B) for t in q.tables())
        assert {t.key for t in q} == {frozenset({"A", "B"}), frozenset({"A", "B", "C"})}
        assert sorted(q.concat(B, "n").tolist()) == [1, 2, 3]


def test_match_on_component_sets_with_and_without():
    w, g = _world()
    assert w.query(A).count() == 1000
    assert sorted(w.query(A, without=[B]).ids().tolist()) == sorted(g["only_a"] + g["a_c"])
    assert sorted(w.query(A, without=[B, C]).ids().tolist()) == sorted(g["only_a"])
    assert sorted(w.query(B, without=[A]).ids().tolist()) == sorted(g["b_only"])
    assert sorted(w.query(C, without=[B]).ids().tolist()) == sorted(g["a_c"])
    assert w.query(A, B, C).ids().tolist() == g["abc"]
    assert w.query(D).count() == 0
    assert w.query(A, without=[A]).count() == 0


def test_a_query_needs_a_component():
    with pytest.raises(ValueError):
        World().query()
    with pytest.raises(ValueError):
        World().query(without=[A])


def test_concat_lines_a_field_up_with_the_ids_across_tables():
    w, g = _world()
    q = w.query(A)
    ids, x = q.ids(), q.concat(A, "x")
    assert ids.shape == x.shape == (1000,)
    assert x.dtype == np.float64
    expected = {e: w.get(e, A)["x"] for e in ids.tolist()}
    assert dict(zip(ids.tolist(), x.tolist())) == expected
    assert x.tolist()[:600] == list(range(600))  # tables come in creation order
    # Several tables: a copy.
    x[:] = 0.0
    assert w.get(g["only_a"][5], A)["x"] == 5.0


def test_concat_of_one_table_is_a_view_and_of_none_is_typed_and_empty():
    w = World()
    ids = w.spawn_batch([D], 3).tolist()
    f = w.query(D).concat(D, "f")
    f[1] = 2.5
    assert w.get(ids[1], D)["f"] == 2.5
    empty = w.query(D, without=[D]).concat(D, "f")
    assert empty.shape == (0,) and empty.dtype == np.float32
    assert w.query(B).ids().dtype == np.int64 and w.query(B).ids().shape == (0,)


def test_iteration_skips_empty_tables_but_tables_lists_them():
    w = World()
    e = w.spawn([A, B])
    w.spawn([A])
    w.despawn(e)
    q = w.query(A)
    assert len(q.tables()) == 2
    assert [t.key for t in q] == [frozenset({"A"})]
    assert q.count() == 1


def test_cache_refreshes_when_a_new_table_appears_after_the_query():
    w = World()
    e1 = w.spawn([A], {A: {"x": 1.0}})
    q = w.query(A)
    q_no_c = w.query(A, without=[C])
    assert q.ids().tolist() == [e1]
    assert len(q.tables()) == 1

    e2 = w.spawn([A, B], {A: {"x": 2.0}})  # a new archetype table
    assert sorted(q.ids().tolist()) == sorted([e1, e2])
    assert len(q.tables()) == 2
    assert sorted(q.concat(A, "x").tolist()) == [1.0, 2.0]

    e3 = w.spawn([B])
    w.add_component(e3, A, {"x": 3.0})  # lands in the existing (A, B) table
    w.add_component(e1, C)  # moves e1 into a new (A, C) table
    assert sorted(q.ids().tolist()) == sorted([e1, e2, e3])
    assert sorted(q_no_c.ids().tolist()) == sorted([e2, e3])
    assert q.count() == 3


def test_count_follows_spawns_into_existing_tables():
    w = World()
    w.spawn([A])
    q = w.query(A)
    assert q.count() == 1
    w.spawn_batch([A], 10)
    assert q.count() == 11
    assert len(q.tables()) == 1
