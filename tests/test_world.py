"""The World: direct structural changes, reads and writes, and a model-based check against a dict."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ecs import Component, StructureLockedError, World, id_shard

A = Component("A", [("x", "f8"), ("y", "f8")])
B = Component("B", [("n", "i4")], defaults={"n": 7})
C = Component("C", [("on", "?")])
D = Component("D", [("f", "f4"), ("k", "i8")])
ALL = (A, B, C, D)


def test_spawn_get_set_has():
    w = World()
    e = w.spawn([A, B], {A: {"x": 1.0}})
    assert w.is_alive(e)
    assert w.get(e, A) == {"x": 1.0, "y": 0.0}
    assert w.get(e, B) == {"n": 7}
    assert w.has(e, A) and w.has(e, B) and not w.has(e, C)
    assert {c.name for c in w.components_of(e)} == {"A", "B"}
    w.set(e, A, y=2.5)
    w.set(e, B, n=-3)
    assert w.get(e, A) == {"x": 1.0, "y": 2.5}
    assert w.get(e, B) == {"n": -3}
    got = w.get(e, A)
    got["x"] = 99.0  # a copy
    assert w.get(e, A)["x"] == 1.0
    assert type(w.get(e, B)["n"]) is int


def test_reads_of_missing_components_and_fields_raise():
    w = World()
    e = w.spawn([A])
    with pytest.raises(KeyError):
        w.get(e, B)
    with pytest.raises(KeyError):
        w.set(e, B, n=1)
    with pytest.raises(KeyError):
        w.set(e, A, z=1.0)


def test_spawn_batch_takes_scalars_and_arrays():
    w = World(shard=4)
    ids = w.spawn_batch([A, B], 4, {A: {"x": np.arange(4.0), "y": 2.0}, B: {"n": [1, 2, 3, 4]}})
    assert ids.shape == (4,) and len(set(ids.tolist())) == 4
    assert {id_shard(e) for e in ids} == {4}
    assert [w.get(e, A) for e in ids] == [{"x": float(i), "y": 2.0} for i in range(4)]
    assert [w.get(e, B)["n"] for e in ids] == [1, 2, 3, 4]
    assert w.entity_count == 4
    assert w.spawn_batch([A], 0).shape == (0,)
    assert w.entity_count == 4


def test_entities_with_the_same_components_share_one_table_whatever_the_order():
    w = World()
    e1 = w.spawn([A, B])
    e2 = w.spawn([B, A])
    assert w.registry.locate(e1)[0] == w.registry.locate(e2)[0]
    assert len(w.tables) == 1
    assert w.structure_version == 1
    w.spawn([A])
    assert len(w.tables) == 2 and w.structure_version == 2


def test_bad_spawns_raise_and_leave_no_trace():
    w = World()
    keep = w.spawn([A], {A: {"x": 1.0}})
    with pytest.raises(ValueError):
        w.spawn([A, A])
    with pytest.raises(KeyError):
        w.spawn([A], {A: {"z": 1.0}})
    with pytest.raises(KeyError):
        w.spawn([A], {B: {"n": 1}})
    with pytest.raises(ValueError):
        w.spawn_batch([A], 3, {A: {"x": [1.0, 2.0]}})  # wrong length
    assert w.entity_count == 1
    assert w.registry.alive == 1  # no id left reserved by a failed spawn
    assert w.get(keep, A)["x"] == 1.0


def test_despawn_removes_and_other_entities_keep_their_values():
    w = World()
    ids = w.spawn_batch([A], 5, {A: {"x": np.arange(5.0)}}).tolist()
    w.despawn(ids[0])
    assert not w.is_alive(ids[0])
    assert w.entity_count == 4
    assert [w.get(e, A)["x"] for e in ids[1:]] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(KeyError):
        w.despawn(ids[0])


@pytest.mark.parametrize("gone", [[0], [9], [0, 9], [2, 3, 8, 9], [1, 4, 5, 6], list(range(10))])
def test_handing_off_many_at_once_keeps_everything_else_where_it_can_be_found(gone):
    from ecs.ids import EntityRegistry

    w = World()
    w.registry.share_space(EntityRegistry(shard=0))
    ids = w.spawn_batch([A], 10, {A: {"x": np.arange(10.0)}})
    other = w.spawn_batch([B], 3, {B: {"n": np.arange(3)}})
    w.hand_off_many(np.concatenate([ids[gone], other[:1]]))
    kept = [e for i, e in enumerate(ids.tolist()) if i not in gone]
    assert [w.is_alive(e) for e in ids[gone].tolist()] == [False] * len(gone)
    assert [w.get(e, A)["x"] for e in kept] == [float(i) for i in range(10) if i not in gone]
    assert w.get(int(other[2]), B)["n"] == 2 and not w.is_alive(int(other[0]))
    assert w.entity_count == len(kept) + 2
    with pytest.raises(KeyError):
        w.hand_off_many(ids[gone][:1])
    with pytest.raises(ValueError):
        w.hand_off_many(np.repeat(other[1:2], 2))


def test_add_component_moves_the_entity_and_keeps_its_values():
    w = World()
    e = w.spawn([A], {A: {"x": 3.0, "y": 4.0}})
    w.add_component(e, B, {"n": 9})
    assert w.get(e, A) == {"x": 3.0, "y": 4.0}
    assert w.get(e, B) == {"n": 9}
    w.add_component(e, C)
    assert w.get(e, C) == {"on": False}
    assert {c.name for c in w.components_of(e)} == {"A", "B", "C"}


def test_adding_a_component_again_overwrites_only_the_given_fields():
    w = World()
    e = w.spawn([A], {A: {"x": 3.0, "y": 4.0}})
    tables = len(w.tables)
    w.add_component(e, A, {"y": 5.0})
    assert w.get(e, A) == {"x": 3.0, "y": 5.0}
    assert len(w.tables) == tables


def test_remove_component_keeps_the_others_and_ignores_missing_ones():
    w = World()
    e = w.spawn([A, B], {A: {"x": 1.0}, B: {"n": 2}})
    w.remove_component(e, B)
    assert not w.has(e, B)
    assert w.get(e, A)["x"] == 1.0
    w.remove_component(e, C)  # not held: nothing happens
    assert {c.name for c in w.components_of(e)} == {"A"}
    with pytest.raises(ValueError):
        w.remove_component(e, A)  # an entity keeps at least one component
    assert w.get(e, A)["x"] == 1.0


def test_a_refused_add_component_leaves_the_world_intact():
    w = World()
    ids = w.spawn_batch([A], 3, {A: {"x": [0.0, 1.0, 2.0]}}).tolist()
    with pytest.raises(KeyError):
        w.add_component(ids[0], B, {"nope": 1})
    with pytest.raises(ValueError):
        w.add_component(ids[0], B, {"n": "many"})
    assert w.entity_count == 3
    assert not w.has(ids[0], B)
    for i, e in enumerate(ids):
        t, r = w.registry.locate(e)
        assert int(w.tables[t].ids[r]) == e
        assert w.get(e, A)["x"] == float(i)


def test_structural_changes_are_refused_while_a_system_runs():
    w = World()
    e = w.spawn([A])
    w.locked_by = "Mover"
    for attempt in (
        lambda: w.spawn([A]),
        lambda: w.spawn_batch([A], 2),
        lambda: w.despawn(e),
        lambda: w.add_component(e, B),
        lambda: w.remove_component(e, A),
        lambda: w.hand_off(e),
        lambda: w.adopt([1 << 48], [A]),
        lambda: w.apply_commands(),
    ):
        with pytest.raises(StructureLockedError, match="Mover"):
            attempt()
    # Reads and in-place writes are fine.
    w.set(e, A, x=1.0)
    assert w.get(e, A)["x"] == 1.0
    w.locked_by = None
    assert w.entity_count == 1 and w.is_alive(e)


def test_resources_are_per_world():
    class Weather:
        pass

    w1, w2 = World(), World()
    w1.resources[Weather] = Weather()
    assert Weather not in w2.resources


# -- model-based ------------------------------------------------------------------------------


# Floats that f4 holds exactly, so the model can compare with ==.
_FLOAT = st.integers(-1000, 1000).map(lambda i: i / 4)
_INT = st.integers(-(2**31), 2**31 - 1)
_STRATS = {
    A: {"x": _FLOAT, "y": _FLOAT},
    B: {"n": _INT},
    C: {"on": st.booleans()},
    D: {"f": _FLOAT, "k": _INT},
}
_COMBOS = [combo for r in range(1, 5) for combo in itertools.combinations(ALL, r)]


def _values_for(component):
    return st.fixed_dictionaries({}, optional=_STRATS[component])


def _pydefaults(component):
    return {f: v.item() for f, v in component.defaults.items()}


class WorldModel(RuleBasedStateMachine):
    """World against {id: {component_name: {field: value}}} under random structural changes."""

    def __init__(self):
        super().__init__()
        self.world = World(shard=3)
        self.model: dict[int, dict[str, dict[str, object]]] = {}
        self.dead: set[int] = set()
        self.queries = [self.world.query(*combo) for combo in _COMBOS[:6]] + [
            self.world.query(A, without=[B]),
            self.world.query(B, C, without=[D]),
        ]

    # -- helpers --
    def _pick(self, data):
        return data.draw(st.sampled_from(sorted(self.model)))

    # -- rules --
    @rule(data=st.data(), combo=st.sampled_from(_COMBOS))
    def spawn(self, data, combo):
        values = {c: data.draw(_values_for(c)) for c in combo}
        e = self.world.spawn(data.draw(st.permutations(combo)), values)
        assert e not in self.model and e not in self.dead
        self.model[e] = {c.name: {**_pydefaults(c), **values[c]} for c in combo}

    @rule(combo=st.sampled_from(_COMBOS), n=st.integers(0, 5))
    def spawn_batch(self, combo, n):
        ids = self.world.spawn_batch(combo, n, {A: {"x": np.arange(n) / 2}} if A in combo else None)
        for i, e in enumerate(ids.tolist()):
            self.model[e] = {c.name: _pydefaults(c) for c in combo}
            if A in combo:
                self.model[e]["A"]["x"] = i / 2

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def despawn(self, data):
        e = self._pick(data)
        self.world.despawn(e)
        del self.model[e]
        self.dead.add(e)

    @precondition(lambda self: self.dead)
    @rule(data=st.data())
    def despawn_dead(self, data):
        e = data.draw(st.sampled_from(sorted(self.dead)))
        with pytest.raises(KeyError):
            self.world.despawn(e)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), component=st.sampled_from(ALL))
    def add_component(self, data, component):
        e = self._pick(data)
        values = data.draw(_values_for(component))
        self.world.add_component(e, component, values)
        held = self.model[e].get(component.name, _pydefaults(component))
        self.model[e][component.name] = {**held, **values}

    @precondition(lambda self: self.model)
    @rule(data=st.data(), component=st.sampled_from(ALL))
    def remove_component(self, data, component):
        e = self._pick(data)
        held = self.model[e]
        if set(held) == {component.name}:
            with pytest.raises(ValueError):
                self.world.remove_component(e, component)
            return
        self.world.remove_component(e, component)
        held.pop(component.name, None)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def set_fields(self, data):
        e = self._pick(data)
        name = data.draw(st.sampled_from(sorted(self.model[e])))
        component = next(c for c in ALL if c.name == name)
        values = data.draw(_values_for(component))
        self.world.set(e, component, **values)
        self.model[e][name].update(values)

    # -- invariants --
    @invariant()
    def alive_set_and_count(self):
        w = self.world
        assert w.entity_count == len(self.model)
        live = sorted(int(e) for t in w.tables for e in t.ids)
        assert live == sorted(self.model)
        assert not any(w.is_alive(e) for e in self.dead)
        for e in list(self.dead)[:20]:
            with pytest.raises(KeyError):
                w.get(e, A)

    @invariant()
    def components_and_values(self):
        w = self.world
        for e, comps in self.model.items():
            assert w.is_alive(e)
            assert {c.name for c in w.components_of(e)} == set(comps)
            for c in ALL:
                assert w.has(e, c) == (c.name in comps)
                if c.name in comps:
                    assert w.get(e, c) == comps[c.name]

    @invariant()
    def queries_agree(self):
        for q in self.queries:
            need = {c.name for c in q.with_}
            avoid = {c.name for c in q.without}
            expected = sorted(e for e, comps in self.model.items() if need <= set(comps) and not avoid & set(comps))
            assert q.count() == len(expected)
            assert sorted(q.ids().tolist()) == expected
        fresh = self.world.query(B)  # a query built now agrees with the cached ones
        assert fresh.count() == sum("B" in comps for comps in self.model.values())


WorldModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWorldAgainstModel = WorldModel.TestCase
