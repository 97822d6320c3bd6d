"""Component schemas: numpy dtypes of named scalar fields, defaults, merge policies."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import Component, World, tag
from ecs.component import MERGE_POLICIES, stable_hash64


def test_fields_and_dtype_come_from_the_declaration():
    c = Component("Stats", [("hp", "i4"), ("speed", "f4"), ("alive", "?"), ("gold", "u8")])
    assert c.name == "Stats"
    assert c.fields == ("hp", "speed", "alive", "gold")
    assert c.dtype == np.dtype([("hp", "i4"), ("speed", "f4"), ("alive", "?"), ("gold", "u8")])
    assert [c.dtype[f].kind for f in c.fields] == ["i", "f", "b", "u"]


def test_a_numpy_dtype_is_accepted_as_is():
    dt = np.dtype([("x", np.float32), ("n", np.int16)])
    c = Component("D", dt)
    assert c.dtype == dt
    assert c.fields == ("x", "n")


@pytest.mark.parametrize(
    "fields",
    [
        [("v", "f8", (3,))],  # sub-array
        [("name", "U8")],  # string
        [("o", "O")],  # object
        [("z", "c16")],  # complex
        [("t", "M8[s]")],  # datetime
        [("inner", [("a", "f8")])],  # nested struct
    ],
)
def test_non_scalar_numeric_fields_are_refused(fields):
    with pytest.raises(TypeError):
        Component("Bad", fields)


def test_a_dtype_without_named_fields_is_refused():
    with pytest.raises(TypeError):
        Component("Bad", np.dtype("f8"))
    with pytest.raises(TypeError):
        Component("Bad", [])


def test_unparseable_declarations_raise():
    with pytest.raises(TypeError):
        Component("Bad", [("x", "not-a-type")])
    with pytest.raises(ValueError):
        Component("Bad", [("x", "f8"), ("x", "i4")])  # duplicate field


def test_defaults_are_typed_and_unset_fields_default_to_zero():
    c = Component("H", [("hp", "i4"), ("regen", "f4"), ("on", "?")], defaults={"hp": 100, "regen": 0.5})
    assert c.defaults == {"hp": 100, "regen": 0.5, "on": False}
    assert c.defaults["hp"].dtype == np.int32
    assert c.defaults["regen"].dtype == np.float32


def test_defaults_fill_fields_not_given_at_spawn():
    c = Component("H", [("hp", "i4"), ("regen", "f4")], defaults={"hp": 100, "regen": 0.5})
    w = World()
    a = w.spawn([c])
    b = w.spawn([c], {c: {"hp": 7}})
    assert w.get(a, c) == {"hp": 100, "regen": 0.5}
    assert w.get(b, c) == {"hp": 7, "regen": 0.5}


def test_defaults_for_unknown_fields_or_out_of_range_values_raise():
    with pytest.raises(ValueError):
        Component("H", [("hp", "i4")], defaults={"mana": 1})
    with pytest.raises(OverflowError):
        Component("U", [("b", "u1")], defaults={"b": 300})
    with pytest.raises(ValueError):
        Component("F", [("x", "f8")], defaults={"x": "fast"})


def test_merge_policy_defaults_to_last_writer_and_keeps_the_declared_ones():
    c = Component("Loot", [("gold", "i8"), ("hp", "i4"), ("best", "f8")], merge={"gold": "first_claim", "hp": "additive"})
    assert c.merge == {"gold": "first_claim", "hp": "additive", "best": "last_writer"}
    for policy in MERGE_POLICIES:
        assert Component("P", [("v", "f8")], merge={"v": policy}).merge == {"v": policy}


def test_merge_policy_validation():
    with pytest.raises(ValueError, match="unknown merge policy"):
        Component("P", [("v", "f8")], merge={"v": "average"})
    with pytest.raises(ValueError, match="unknown field"):
        Component("P", [("v", "f8")], merge={"w": "additive"})


def test_tag_is_a_one_field_marker():
    t = tag("Static")
    assert t.name == "Static"
    assert len(t.fields) == 1
    w = World()
    e = w.spawn([t])
    assert w.has(e, t)


def test_components_hash_by_name_compare_by_identity_and_sort_by_name():
    a1 = Component("A", [("x", "f8")])
    a2 = Component("A", [("x", "f8")])
    b = Component("B", [("x", "f8")])
    assert hash(a1) == hash(a2)
    assert a1 != a2 and a1 == a1
    assert sorted([b, a1]) == [a1, b]
    assert repr(b) == "Component(B)"


def test_field_salts_are_stable_and_distinct():
    c = Component("Position", [("x", "f8"), ("y", "f8")])
    assert c.salts == {"x": stable_hash64("Position.x"), "y": stable_hash64("Position.y")}
    assert c.salts["x"] != c.salts["y"]
    # Process-independent: a fixed value (Python's hash() of a str is salted per run).
    assert stable_hash64("Position.x") == 14836385444331517084
    assert 0 <= stable_hash64("anything") < 1 << 64
