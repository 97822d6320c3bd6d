"""Command buffers: structural changes recorded during a tick and applied, in order, at sync points."""

from __future__ import annotations

import numpy as np
import pytest

from ecs import Component, Phase, Schedule, StructureLockedError, System, World, id_shard

Position = Component("Position", [("x", "f8"), ("y", "f8")])
Health = Component("Health", [("hp", "i4")], defaults={"hp": 100})
Loot = Component("Loot", [("gold", "i8")])


def test_spawn_reserves_an_id_at_once_but_the_entity_appears_only_at_apply():
    w = World(shard=6)
    e = w.commands.spawn([Position], {Position: {"x": 2.0}})
    assert id_shard(e) == 6
    assert len(w.commands) == 1
    assert not w.is_alive(e)
    assert w.entity_count == 0
    assert w.query(Position).count() == 0
    with pytest.raises(KeyError):
        w.get(e, Position)
    # The reservation is real: a direct spawn meanwhile gets another id.
    other = w.spawn([Position])
    assert other != e
    assert w.apply_commands() == 1
    assert len(w.commands) == 0
    assert w.is_alive(e)
    assert w.get(e, Position) == {"x": 2.0, "y": 0.0}
    assert w.entity_count == 2


def test_spawn_batch_reserves_distinct_ids_and_takes_arrays():
    w = World()
    ids = w.commands.spawn_batch([Position, Health], 3, {Health: {"hp": np.array([1, 2, 3])}})
    assert len(set(ids.tolist())) == 3
    assert not any(w.is_alive(int(e)) for e in ids)
    w.apply_commands()
    assert [w.get(int(e), Health)["hp"] for e in ids] == [1, 2, 3]


def test_commands_apply_in_recording_order():
    w = World()
    e = w.spawn([Position], {Position: {"x": 1.0}})
    w.commands.add(e, Health, {"hp": 5})
    w.commands.add(e, Health, {"hp": 6})  # second add overwrites the first
    w.commands.remove(e, Position)
    w.commands.add(e, Position, {"x": 9.0})  # remove then add: the new values, not the old
    assert w.get(e, Position)["x"] == 1.0 and not w.has(e, Health)  # nothing happened yet
    assert w.apply_commands() == 4
    assert w.get(e, Health) == {"hp": 6}
    assert w.get(e, Position) == {"x": 9.0, "y": 0.0}

    # add then remove leaves it without; remove then add leaves it with.
    w.commands.add(e, Loot, {"gold": 3})
    w.commands.remove(e, Loot)
    w.apply_commands()
    assert not w.has(e, Loot)


def test_commands_may_refer_to_an_entity_spawned_earlier_in_the_same_buffer():
    w = World()
    e = w.commands.spawn([Position])
    w.commands.add(e, Health, {"hp": 1})
    w.commands.despawn(e)
    f = w.commands.spawn([Position])
    w.commands.add(f, Loot, {"gold": 7})
    assert w.apply_commands() == 5
    assert not w.is_alive(e)
    assert w.get(f, Loot) == {"gold": 7}
    assert w.entity_count == 1


def test_despawn_of_an_already_despawned_entity_is_skipped():
    w = World()
    e = w.spawn([Position])
    keep = w.spawn([Position], {Position: {"x": 4.0}})
    w.commands.despawn(e)
    w.commands.despawn(e)  # two systems killing the same monster
    w.commands.add(e, Health)  # and touching it after its death
    assert w.apply_commands() == 1
    assert not w.is_alive(e)
    assert w.entity_count == 1
    w.commands.despawn(e)  # dead since an earlier sync point
    assert w.apply_commands() == 0
    # The stale handle never touches whoever got the slot afterwards.
    new = w.spawn([Position], {Position: {"x": 8.0}})
    w.commands.despawn(e)
    w.commands.remove(e, Position)
    assert w.apply_commands() == 0
    assert w.is_alive(new) and w.get(new, Position)["x"] == 8.0
    assert w.get(keep, Position)["x"] == 4.0


def test_recording_is_allowed_while_locked_but_applying_is_not():
    w = World()
    e = w.spawn([Position])
    w.locked_by = "Combat"
    f = w.commands.spawn([Health])
    w.commands.despawn(e)
    with pytest.raises(StructureLockedError, match="Combat"):
        w.spawn([Position])
    with pytest.raises(StructureLockedError):
        w.apply_commands()
    assert len(w.commands) == 2  # nothing lost by the refused apply
    w.locked_by = None
    assert w.apply_commands() == 2
    assert w.is_alive(f) and not w.is_alive(e)


# -- through the schedule ----------------------------------------------------------------------


class SpawnsDirectly(System):
    phase = Phase.ORCHESTRATE
    writes = (Position,)

    def run(self, world, ctx):
        world.spawn([Position])


class SpawnsByCommand(System):
    phase = Phase.ORCHESTRATE
    writes = (Position,)

    def run(self, world, ctx):
        ctx["spawned"] = world.commands.spawn([Position], {Position: {"x": 5.0}})
        ctx["alive_inside"] = world.is_alive(ctx["spawned"])


class CountsPositions(System):
    phase = Phase.ORCHESTRATE
    reads = (Position,)
    after = ("SpawnsByCommand",)

    def run(self, world, ctx):
        ctx["seen"] = world.query(Position).ids().tolist()


class DespawnsByCommand(System):
    phase = Phase.REPLICATE
    writes = (Position,)

    def run(self, world, ctx):
        for e in world.query(Position).ids().tolist():
            world.commands.despawn(e)
        ctx["count_inside"] = world.query(Position).count()


def test_a_system_that_spawns_directly_fails_with_its_name():
    w = World()
    schedule = Schedule([SpawnsDirectly()])
    with pytest.raises(StructureLockedError, match="SpawnsDirectly"):
        schedule.run(w, {})
    assert w.entity_count == 0
    assert w.locked_by is None  # released even though the system raised
    w.spawn([Position])  # and the world is usable again outside the tick


def test_commands_from_a_system_are_visible_to_the_next_system():
    w = World()
    ctx: dict = {}
    Schedule([DespawnsByCommand(), SpawnsByCommand(), CountsPositions()]).run(w, ctx)
    e = ctx["spawned"]
    assert ctx["alive_inside"] is False  # not during the system that queued it
    assert ctx["seen"] == [e]  # but at the next system, after the sync point
    assert ctx["count_inside"] == 1  # the despawn is queued, not yet applied, inside its system
    assert not w.is_alive(e)  # applied after DespawnsByCommand (a later phase)
    assert len(w.commands) == 0
