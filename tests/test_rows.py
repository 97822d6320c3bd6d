"""Entity rows between worlds: whole rows put into another world give the same entities with
the same values; ghost deltas carry exactly the fields that changed, and applying them makes
the copy equal the owner again."""

import numpy as np
import pytest

from ecs import World
from ecs.ids import EntityRegistry
from systems.components import CheatStats, Ghost, Health, Inventory, Player, Position, Velocity
from worlds.cluster.protocol import HandOff, column_values, decode, encode, ids_of
from worlds.cluster.rows import DeltaEncoder, ShardEncoder, catalog, encode_rows, write_rows

COMPS = catalog([Position, Velocity, Health, Player, CheatStats, Inventory, Ghost])
ARCHETYPES = [((Position, Velocity, Health), 5), ((Position, Player, CheatStats), 3), ((Position, Health), 2)]


def pair():
    """Two worlds of one id space: ids spawned in ``a`` mean the same entity in ``b``."""
    alloc = EntityRegistry(shard=0)
    a, b = World(), World()
    a.registry.share_space(alloc)
    b.registry.share_space(alloc)
    return a, b


def random_values(comps, n, rng):
    out = {}
    for c in comps:
        vals = {}
        for f in c.fields:
            dt = np.dtype(c.dtype[f])
            if dt.kind == "f":
                vals[f] = rng.normal(0.0, 100.0, n)
            elif dt.kind == "u":
                vals[f] = rng.integers(0, 2, n).astype(dt)
            else:
                vals[f] = rng.integers(-(2**40), 2**40, n).astype(dt)
        out[c] = vals
    return out


def populate(a, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([a.spawn_batch(comps, n, random_values(comps, n, rng)) for comps, n in ARCHETYPES])


def assert_same(a, b, ids):
    for e in ids.tolist():
        assert {c.name for c in b.components_of(e)} - {"Ghost"} == {c.name for c in a.components_of(e)}
        for c in a.components_of(e):
            if c is not Ghost:
                assert b.get(e, c) == a.get(e, c), (hex(e), c.name)


# --------------------------------------------------------------------------- whole rows


def test_whole_rows_give_the_same_entities_with_the_same_values():
    a, b = pair()
    ids = populate(a)
    rows = encode_rows(a, ids)
    assert sorted(r.archetype for r in rows) == sorted(sorted(c.name for c in comps) for comps, _ in ARCHETYPES)
    rows = decode(encode(HandOff(1, 0, 1, rows))).rows  # as they travel
    adopted = write_rows(b, rows, COMPS)
    assert sorted(adopted.tolist()) == sorted(ids.tolist())
    assert b.entity_count == ids.size
    assert b.state_hash() == a.state_hash() != World().state_hash()
    assert_same(a, b, ids)


def test_extra_components_and_overwrite_in_place():
    a, b = pair()
    ids = populate(a, seed=2)
    write_rows(b, encode_rows(a, ids), COMPS, extra={Ghost: {"owner": 3}})
    for e in ids.tolist():
        assert b.has(e, Ghost) and b.get(e, Ghost) == {"owner": 3}
    tables = len(b.tables)
    assert all(t.has(Ghost) for t in b.tables if t.n)
    assert b.state_hash() == a.state_hash()  # Ghost is out of the hash

    e = int(ids[1])
    a.set(e, Health, hp=-7.25, dead=1)
    a.set(int(ids[6]), Position, x=123.0)
    adopted = write_rows(b, encode_rows(a, ids), COMPS, extra={Ghost: {"owner": 3}})
    assert adopted.size == 0 and b.entity_count == ids.size and len(b.tables) == tables
    assert b.get(e, Health)["hp"] == -7.25 and b.get(e, Health)["dead"] == 1
    assert b.get(int(ids[6]), Position)["x"] == 123.0
    assert b.get(e, Ghost) == {"owner": 3}
    assert b.state_hash() == a.state_hash()
    assert_same(a, b, ids)


@pytest.mark.parametrize("change", ["add", "remove"])
def test_an_entity_whose_archetype_changed_is_placed_again_whole(change):
    a, b = pair()
    ids = populate(a, seed=3)
    write_rows(b, encode_rows(a, ids), COMPS)
    e = int(ids[2])
    if change == "add":
        a.add_component(e, Inventory, {"gold": 55, "rares": 2})
    else:
        a.remove_component(e, Velocity)
    a.set(e, Position, y=-3.5)
    write_rows(b, encode_rows(a, [e]), COMPS)
    assert b.has(e, Inventory) == (change == "add")
    assert b.has(e, Velocity) == (change == "add")
    assert b.entity_count == ids.size
    assert b.state_hash() == a.state_hash()
    assert_same(a, b, ids)


# --------------------------------------------------------------------------- deltas


def delta_ids(rows):
    return sorted(int(e) for r in rows for e in ids_of(r))


def test_first_delta_is_whole_rows_and_an_unchanged_second_is_empty():
    a, b = pair()
    ids = populate(a, seed=4)
    enc = DeltaEncoder()
    rows, drop = enc.delta(a, ids)
    assert drop.size == 0 and delta_ids(rows) == sorted(ids.tolist())
    for r in rows:
        assert all(col.at == b"" for col in r.columns)
        assert {(c.component, c.field) for c in r.columns} == {(n, f) for n in r.archetype for f in COMPS[n].fields}
    write_rows(b, rows, COMPS)
    assert b.state_hash() == a.state_hash()
    assert enc.held().tolist() == sorted(ids.tolist())
    rows, drop = enc.delta(a, ids)
    assert rows == [] and drop.size == 0


def test_a_changed_field_is_sent_alone_for_its_row():
    a, b = pair()
    ids = populate(a, seed=5)  # ids[0:5]: one table of Position, Velocity, Health
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids)[0], COMPS)
    e1, e2 = int(ids[1]), int(ids[3])
    a.set(e1, Health, hp=1.5)
    rows, drop = enc.delta(a, ids)
    assert drop.size == 0 and len(rows) == 1
    (r,) = rows
    assert ids_of(r).tolist() == [e1]
    assert [(c.component, c.field) for c in r.columns] == [("Health", "hp")]
    values, at = column_values(r, r.columns[0])
    assert values.tolist() == [1.5] and (at is None or at.tolist() == [0])
    write_rows(b, rows, COMPS)
    assert b.state_hash() == a.state_hash()

    # Two rows of one table, a different field each: each column says which row it is for.
    a.set(e1, Velocity, vy=-2.0)
    a.set(e2, Position, x=9.0)
    (r,), _ = enc.delta(a, ids)
    assert ids_of(r).tolist() == sorted([e1, e2])
    cols = {(c.component, c.field): column_values(r, c) for c in r.columns}
    assert set(cols) == {("Velocity", "vy"), ("Position", "x")}
    pos = {e: i for i, e in enumerate(ids_of(r).tolist())}
    assert cols["Velocity", "vy"][0].tolist() == [-2.0] and cols["Velocity", "vy"][1].tolist() == [pos[e1]]
    assert cols["Position", "x"][0].tolist() == [9.0] and cols["Position", "x"][1].tolist() == [pos[e2]]
    write_rows(b, decode(encode(HandOff(2, 0, 1, [r]))).rows, COMPS)
    assert b.state_hash() == a.state_hash()
    assert_same(a, b, ids)


def test_components_restrict_what_is_compared():
    a, b = pair()
    ids = populate(a, seed=6)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids, (Position,))[0], COMPS)  # new entities: whole rows regardless
    assert b.state_hash() == a.state_hash()
    e1, e2 = int(ids[0]), int(ids[4])
    a.set(e1, Health, hp=0.25)
    assert enc.delta(a, ids, (Position,))[0] == []
    a.set(e2, Position, y=4.0)
    (r,), _ = enc.delta(a, ids, (Position,))
    assert ids_of(r).tolist() == [e2] and [(c.component, c.field) for c in r.columns] == [("Position", "y")]
    write_rows(b, [r], COMPS)
    assert b.get(e2, Position)["y"] == 4.0 and b.state_hash() != a.state_hash()  # hp not sent yet
    # The Health change was never sent, so a full comparison still finds it.
    (r,), _ = enc.delta(a, ids)
    assert ids_of(r).tolist() == [e1] and [(c.component, c.field) for c in r.columns] == [("Health", "hp")]
    write_rows(b, [r], COMPS)
    assert b.state_hash() == a.state_hash()


def test_ids_left_out_are_dropped_and_come_back_whole_as_do_forgotten_ones():
    a, b = pair()
    ids = populate(a, seed=7)
    enc = DeltaEncoder()
    enc.delta(a, ids)
    gone = ids[[1, 7]]
    rows, drop = enc.delta(a, np.setdiff1d(ids, gone))
    assert rows == [] and sorted(drop.tolist()) == sorted(gone.tolist())
    assert enc.held().tolist() == sorted(np.setdiff1d(ids, gone).tolist())
    rows, drop = enc.delta(a, ids)
    assert drop.size == 0 and delta_ids(rows) == sorted(gone.tolist())
    assert all(c.at == b"" for r in rows for c in r.columns)
    assert sum(len(r.columns) for r in rows) == 8 + 2 + len(Player.fields) + len(CheatStats.fields)
    # forget: the next delta is whole rows again (nothing changed meanwhile).
    enc.forget(ids[[5]])
    assert enc.held().tolist() == sorted(np.setdiff1d(ids, ids[[5]]).tolist())
    (r,), drop = enc.delta(a, ids)
    assert drop.size == 0 and ids_of(r).tolist() == [int(ids[5])]
    assert r.archetype == ["CheatStats", "Player", "Position"] and all(c.at == b"" for c in r.columns)
    assert len(r.columns) == len(CheatStats.fields) + len(Player.fields) + 2


def test_archetype_change_sends_the_new_row_whole():
    a, b = pair()
    ids = populate(a, seed=9)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids)[0], COMPS, extra={Ghost: {"owner": 1}})
    e = int(ids[8])
    a.add_component(e, Inventory, {"gold": 3})
    (r,), drop = enc.delta(a, ids)
    assert drop.size == 0 and ids_of(r).tolist() == [e] and "Inventory" in r.archetype
    write_rows(b, [r], COMPS, extra={Ghost: {"owner": 1}})
    assert b.get(e, Inventory)["gold"] == 3 and b.get(e, Ghost) == {"owner": 1}
    assert b.state_hash() == a.state_hash()
    assert_same(a, b, ids)


def test_floats_compare_by_bits():
    a, b = pair()
    ids = populate(a, seed=10)
    e = int(ids[0])
    a.set(e, Position, x=0.0)
    a.set(e, Velocity, vx=np.nan)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids)[0], COMPS)
    assert enc.delta(a, ids)[0] == []  # the same NaN is no change
    a.set(e, Position, x=-0.0)
    (r,), _ = enc.delta(a, ids)
    assert [(c.component, c.field) for c in r.columns] == [("Position", "x")]
    assert np.signbit(column_values(r, r.columns[0])[0]).tolist() == [True]
    write_rows(b, [r], COMPS)
    assert np.signbit(b.get(e, Position)["x"])
    payload = np.array([0x7FF8_0000_0000_0001], np.uint64).view(np.float64)[0]
    a.set(e, Velocity, vx=payload)
    (r,), _ = enc.delta(a, ids)
    assert [(c.component, c.field) for c in r.columns] == [("Velocity", "vx")]
    assert column_values(r, r.columns[0])[0].view(np.uint64).tolist() == [0x7FF8_0000_0000_0001]


def test_new_entity_and_changed_field_of_a_known_one_in_one_table():
    a, b = pair()
    ids = populate(a, seed=11)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids[:4])[0], COMPS)
    a.set(int(ids[1]), Position, x=5.0)
    rows, _ = enc.delta(a, ids[:5])  # ids[4] enters beside a changed ids[1]
    assert delta_ids(rows) == sorted(ids[[1, 4]].tolist())
    assert write_rows(b, rows, COMPS).tolist() == [int(ids[4])]
    assert_same(a, b, ids[:5])


def test_row_major_fields_of_every_dtype_are_named_right():
    a, b = pair()
    ids = populate(a, seed=12)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids)[0], COMPS)
    e = int(ids[6])  # Position, Player, CheatStats
    flip = 1 - a.get(e, Player)["connected"]
    a.set(e, Player, team=7, connected=flip)
    a.set(e, CheatStats, last_target=-(2**62), hits3=0.125)
    (r,), _ = enc.delta(a, ids)
    got = {(c.component, c.field): column_values(r, c)[0].tolist() for c in r.columns}
    assert got == {("Player", "team"): [7], ("Player", "connected"): [flip],
                   ("CheatStats", "last_target"): [-(2**62)], ("CheatStats", "hits3"): [0.125]}
    write_rows(b, [r], COMPS)
    assert_same(a, b, ids)


def test_delta_after_the_table_grows():
    a, b = pair()
    ids = populate(a, seed=13)
    enc = DeltaEncoder()
    write_rows(b, enc.delta(a, ids)[0], COMPS)
    more = a.spawn_batch((Position, Velocity, Health), 300, random_values((Position, Velocity, Health), 300,
                                                                          np.random.default_rng(1)))
    a.set(int(ids[0]), Velocity, vx=0.5)
    a.set(int(more[-1]), Health, max_hp=3.0)
    every = np.concatenate([ids, more])
    rows, _ = enc.delta(a, every)
    assert delta_ids(rows) == sorted([int(ids[0])] + more.tolist())
    write_rows(b, rows, COMPS)
    assert b.state_hash() == a.state_hash()
    a.set(int(more[5]), Position, y=1.0)
    (r,), _ = enc.delta(a, every)
    assert ids_of(r).tolist() == [int(more[5])] and [c.field for c in r.columns] == ["y"]


def test_one_comparison_for_many_destinations_each_gets_what_it_lacks():
    a = pair()[0]
    ids = populate(a, seed=14)
    copies = {1: World(), 2: World()}
    for w in copies.values():
        w.registry.share_space(a.registry.allocator)
    enc = ShardEncoder((1, 2))
    interest = {1: ids[:6], 2: ids[4:]}
    for d, (rows, drop) in enc.deltas(a, interest).items():
        assert delta_ids(rows) == sorted(interest[d].tolist()) and drop.size == 0
        write_rows(copies[d], rows, COMPS)
    e = int(ids[5])  # held by both
    a.set(e, Position, x=-3.0)
    interest = {1: ids[:7], 2: ids[4:]}  # ids[6] is new to 1, held by 2
    a.set(int(ids[6]), Position, y=8.0)
    out = enc.deltas(a, interest, (Position,))
    assert delta_ids(out[1][0]) == sorted([e, int(ids[6])]) and delta_ids(out[2][0]) == sorted([e, int(ids[6])])
    whole = [r for r in out[1][0] if int(ids[6]) in ids_of(r).tolist()]
    assert all(c.at == b"" for r in whole for c in r.columns) and len(whole[0].columns) > 2
    assert [c.field for r in out[2][0] for c in r.columns] == ["x", "y"]
    assert enc.changed == {1: 1, 2: 2}
    for d, (rows, drop) in out.items():
        write_rows(copies[d], rows, COMPS)
        assert_same(a, copies[d], interest[d])
    out = enc.deltas(a, {1: ids[:2], 2: ids[4:]})
    assert out[1][0] == [] and sorted(out[1][1].tolist()) == sorted(ids[2:7].tolist())
    assert out[2] == ([], out[2][1]) and out[2][1].size == 0
