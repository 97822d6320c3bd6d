"""Batch access to entities spread over tables: distinct entities of a list, many fields at
once, and the per-owner walk order the action kernels use. Checked against plain numpy
references on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecs import Component, World
from systems.action_order import _fair_order
from systems.columns import (Distinct, SlotMarks, _as_came, gather, gather_fields, has_component, in_key_order, locate,
                             owner_walk, read_rows, scatter_fields, sole_table)

Pos = Component("Pos", [("x", "f8"), ("y", "f8")])
Tag = Component("Tag", [("level", "i8"), ("score", "f8")], defaults={"level": 3})

pytestmark = pytest.mark.kernel


def _world(n_plain: int, n_tagged: int, gone: int) -> tuple[World, np.ndarray, np.ndarray]:
    """A world with entities in two tables (some despawned): (world, live ids, dead ids)."""
    w = World()
    a = w.spawn_batch((Pos,), n_plain, {Pos: {"x": np.arange(n_plain, dtype=float)}})
    b = w.spawn_batch((Pos, Tag), n_tagged, {Pos: {"x": -np.arange(n_tagged, dtype=float)},
                                             Tag: {"level": np.arange(n_tagged), "score": np.arange(n_tagged) * 0.5}})
    ids = np.concatenate([a, b])
    dead = ids[:gone]
    for e in dead.tolist():
        w.despawn(e)
    return w, ids[gone:], dead


def _drawn_ids(data, n_plain: int, n_tagged: int, gone: int) -> tuple[World, np.ndarray, np.ndarray]:
    """(world, live ids, a drawn list of ids: live, dead and 0, repeats allowed)."""
    w, live, dead = _world(n_plain, n_tagged, min(gone, n_plain + n_tagged))
    pool = np.concatenate([live, dead, [0]])
    return w, live, np.array(data.draw(st.lists(st.sampled_from(pool.tolist()), max_size=40)), np.int64)


def mixed(test):
    """Run ``test`` on worlds of two tables with some entities despawned (hypothesis)."""
    drawn = given(n_plain=st.integers(0, 12), n_tagged=st.integers(0, 12), gone=st.integers(0, 4), data=st.data())
    return settings(max_examples=40, deadline=None)(drawn(test))


@mixed
def test_distinct_matches_a_first_appearance_unique(n_plain, n_tagged, gone, data):
    w, live, ids = _drawn_ids(data, n_plain, n_tagged, gone)
    marks = SlotMarks()
    d = Distinct(w, ids, marks)
    alive = np.isin(ids, live)
    _, first = np.unique(ids[alive], return_index=True)
    expect = ids[alive][np.sort(first)]
    assert d.ids.tolist() == expect.tolist()
    assert (d.inverse >= 0).tolist() == alive.tolist()
    assert (d.ids[d.inverse[alive]] == ids[alive]).all()
    assert (marks.rank == -1).all()  # the scratch is clean for the next caller
    x, _ = gather(w, d.ids, Pos, "x")
    assert (gather_fields(w, d.at, ((Pos, "x"),))[:, 0] == x).all()


@mixed
def test_read_rows_reads_each_located_entity_where_it_lives_and_leaves_the_rest(n_plain, n_tagged, gone, data):
    w, _, ids = _drawn_ids(data, n_plain, n_tagged, gone)
    skip = np.array(data.draw(st.lists(st.booleans(), min_size=ids.size, max_size=ids.size)), np.bool_)
    table, row = w.locate_many(ids)
    fields = ((Pos, "x"), (Tag, "level"), (Pos, "y"), (Tag, "score"))
    out = np.full((ids.size, len(fields)), 7.5)
    read_rows(w, np.where(skip, -1, table), row, fields, out)  # a table of -1: not read
    for j, (c, f) in enumerate(fields):
        values, present = gather(w, ids, c, f)
        read = present & ~skip
        assert (out[read, j] == values[read]).all()
        assert (out[~read, j] == 7.5).all()


def test_sole_table_names_the_one_table_of_a_list_or_says_there_is_none():
    assert sole_table(np.array([-1, 2, 2, -1], np.int32)) == 2
    assert sole_table(np.array([-1, -1], np.int32)) == -1 and sole_table(np.empty(0, np.int32)) == -1
    assert sole_table(np.array([0, 1], np.int32)) == -2


def test_gather_and_scatter_fields_round_trip_mixed_tables_and_dtypes():
    w, live, _ = _world(3, 4, 0)
    ids = live[::-1].copy()
    at = locate(w, ids)
    fields = ((Pos, "x"), (Tag, "level"), (Tag, "score"))
    got = gather_fields(w, at, fields)
    for j, (c, f) in enumerate(fields):
        assert (got[:, j] == gather(w, ids, c, f)[0]).all()
    assert has_component(w, at, Tag).tolist() == [True] * 4 + [False] * 3
    got[:, 0] += 10.0
    got[:, 1] += 1.0
    scatter_fields(w, at, fields, got)
    again = gather_fields(w, at, fields)
    tagged = has_component(w, at, Tag)
    assert (again[tagged] == got[tagged]).all()
    assert (again[~tagged, 0] == got[~tagged, 0]).all() and (again[~tagged, 1:] == 0).all()  # nothing to write
    assert w.tables[1].column(Tag, "level").dtype == np.int64


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 6)), max_size=120), st.booleans())
def test_owner_walk_goes_owner_by_owner_each_by_key_stably(items, floats):
    owner = np.array([o for o, _ in items], np.int64).reshape(-1)
    key = np.array([k for _, k in items], np.float64 if floats else np.int64).reshape(-1)
    order, grouped = owner_walk(owner, key, 6)
    assert grouped
    # Owners ascending, each owner's items by key then by position; the owner-less last, as they came.
    reference = sorted(range(len(items)), key=lambda i: (owner[i] < 0, owner[i], key[i] if owner[i] >= 0 else 0, i))
    assert order.tolist() == reference
    # A batch too large for that goes as it came, each owner's items still by key in its own places.
    with_places = _as_came(owner, key, 6)
    assert sorted(with_places.tolist()) == list(range(len(items)))
    for o in range(-1, 6):
        mine = np.flatnonzero(owner == o)
        walked = [i for i in with_places.tolist() if owner[i] == o]
        assert walked == (mine.tolist() if o < 0 else sorted(mine.tolist(), key=lambda i: (key[i], i)))
        assert sorted(np.flatnonzero(np.isin(with_places, mine)).tolist()) == mine.tolist()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 4), st.integers(0, 5), st.integers(0, 5)), max_size=60))
def test_a_walk_by_one_key_is_kept_for_another_exactly_when_it_is_that_walk(items):
    owner = np.array([o for o, _, _ in items], np.int64).reshape(-1)
    seq = np.array([s for _, s, _ in items], np.int64).reshape(-1)
    t = np.array([k for _, _, k in items], np.float64).reshape(-1)
    by_seq, _ = owner_walk(owner, seq, 5)
    assert in_key_order(by_seq, owner, seq)
    assert in_key_order(by_seq, owner, t) == (by_seq.tolist() == owner_walk(owner, t, 5)[0].tolist())


def test_owner_walk_sorts_a_long_scrambled_run():
    key = np.arange(200, dtype=np.int64)[::-1].copy()  # one owner's 200 late packets, newest first
    owner = np.zeros(200, np.int64)
    owner[::7] = 1
    order, _ = owner_walk(owner, key, 2)
    assert [int(owner[i]) for i in order] == sorted(owner.tolist())
    assert (np.diff(key[order][owner[order] == 0]) > 0).all() and (np.diff(key[order][owner[order] == 1]) > 0).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 4), st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)), max_size=90))
def test_fair_order_equals_the_lexicographic_reference(rows):
    group = np.array([r[0] for r in rows], np.int64).reshape(-1)
    effect = np.array([r[1] for r in rows], np.float64).reshape(-1) * 10.0
    key = np.array([r[2] for r in rows], np.uint64).reshape(-1)
    seq = np.array([r[3] for r in rows], np.int64).reshape(-1)
    perm, n_groups, largest = _fair_order(group, effect, key, seq, 5)
    live = group >= 0
    ref = np.lexsort((np.arange(len(rows)), seq, key, effect, np.where(live, group, 99)))
    assert perm[: live.sum()].tolist() == ref[: live.sum()].tolist()
    assert perm[live.sum():].tolist() == np.flatnonzero(~live).tolist()  # refused last, as they came
    sizes = np.bincount(group[live], minlength=5)
    assert n_groups == (sizes > 0).sum() and largest == sizes.max(initial=0)
