"""The schedule: phases in order, declaration order within a phase, conflicts refused unless ordered."""

from __future__ import annotations

import pytest

from ecs import Component, Phase, Schedule, ScheduleError, System, World
from ecs.schedule import conflicts

Position = Component("Position", [("x", "f8")])
Velocity = Component("Velocity", [("vx", "f8")])
Health = Component("Health", [("hp", "i4")])


class ActionBatch:
    """A resource type: systems may read and write resources as well as components."""


def make_system(name, phase, reads=(), writes=(), after=(), before=()):
    """A System subclass named ``name`` that appends its name to ctx['ran']."""

    def run(self, world, ctx):
        ctx["ran"].append(self.name)

    attrs = dict(phase=phase, reads=tuple(reads), writes=tuple(writes), after=tuple(after), before=tuple(before), run=run)
    return type(name, (System,), attrs)()


def run_order(systems):
    ctx = {"ran": []}
    Schedule(systems).run(World(), ctx)
    return ctx["ran"]


def test_ten_phases_in_design_order():
    assert [p.name for p in sorted(Phase)] == [
        "INGEST", "VALIDATE", "MOVE", "SPATIAL", "ORDER", "APPLY", "SCORE", "ORCHESTRATE", "REPLICATE", "MEASURE",
    ]  # fmt: skip


def test_phases_run_in_order_regardless_of_declaration_order():
    systems = [make_system(f"S{p.name.title()}", p) for p in reversed(Phase)]
    systems = systems[5:] + systems[:5]
    order = run_order(systems)
    assert order == [f"S{p.name.title()}" for p in Phase]


def test_declaration_order_within_a_phase():
    systems = [
        make_system("Late", Phase.MEASURE),
        make_system("Zeta", Phase.MOVE),
        make_system("Alpha", Phase.MOVE),
        make_system("Mid", Phase.MOVE),
        make_system("First", Phase.INGEST),
    ]
    assert run_order(systems) == ["First", "Zeta", "Alpha", "Mid", "Late"]
    assert [s.name for s in Schedule(systems).systems] == ["First", "Zeta", "Alpha", "Mid", "Late"]


@pytest.mark.parametrize(
    "first, second",
    [
        (dict(writes=[Position]), dict(reads=[Position])),  # write / read
        (dict(reads=[Position]), dict(writes=[Position])),  # read / write
        (dict(writes=[Position]), dict(writes=[Position])),  # write / write
        (dict(writes=[ActionBatch]), dict(reads=[ActionBatch])),  # a resource
    ],
)
def test_unordered_conflict_in_one_phase_names_both_systems(first, second):
    a = make_system("Mover", Phase.MOVE, **first)
    b = make_system("Pusher", Phase.MOVE, **second)
    with pytest.raises(ScheduleError) as info:
        Schedule([a, b])
    message = str(info.value)
    assert "Mover" in message and "Pusher" in message


def test_readers_alone_do_not_conflict():
    a = make_system("ReaderA", Phase.SCORE, reads=[Position, Health])
    b = make_system("ReaderB", Phase.SCORE, reads=[Position], writes=[Velocity])
    assert run_order([a, b]) == ["ReaderA", "ReaderB"]


def test_a_stated_order_resolves_the_conflict():
    a = make_system("Mover", Phase.MOVE, writes=[Position])
    b = make_system("Pusher", Phase.MOVE, reads=[Position], writes=[Position], after=("Mover",))
    assert run_order([a, b]) == ["Mover", "Pusher"]
    c = make_system("Mover", Phase.MOVE, writes=[Position], before=("Pusher",))
    d = make_system("Pusher", Phase.MOVE, reads=[Position])
    assert run_order([c, d]) == ["Mover", "Pusher"]


def test_after_naming_a_system_that_runs_later_is_refused():
    late = make_system("Late", Phase.SCORE)
    early = make_system("Early", Phase.MOVE, after=("Late",))
    with pytest.raises(ScheduleError, match="Early"):
        Schedule([early, late])
    a = make_system("A", Phase.MOVE, after=("B",))
    b = make_system("B", Phase.MOVE)
    with pytest.raises(ScheduleError):
        Schedule([a, b])  # same phase, but B is declared after A
    c = make_system("C", Phase.MOVE, before=("D",))
    d = make_system("D", Phase.INGEST)
    with pytest.raises(ScheduleError):
        Schedule([c, d])


def test_after_an_earlier_phase_is_fine():
    a = make_system("Ingest", Phase.INGEST, writes=[ActionBatch])
    b = make_system("Apply", Phase.APPLY, reads=[ActionBatch], after=("Ingest",))
    assert run_order([b, a]) == ["Ingest", "Apply"]


def test_unknown_name_in_after_or_before_is_refused():
    with pytest.raises(ScheduleError, match="Ghost"):
        Schedule([make_system("A", Phase.MOVE, after=("Ghost",))])
    with pytest.raises(ScheduleError, match="Ghost"):
        Schedule([make_system("A", Phase.MOVE, before=("Ghost",))])


def test_duplicate_names_are_refused():
    with pytest.raises(ScheduleError, match="Twin"):
        Schedule([make_system("Twin", Phase.MOVE), make_system("Twin", Phase.SCORE)])


def test_a_phase_that_is_not_a_phase_is_refused():
    with pytest.raises(ScheduleError):
        Schedule([make_system("Odd", 3)])


def test_systems_in_different_phases_never_conflict():
    a = make_system("Writer", Phase.MOVE, writes=[Position, Health])
    b = make_system("Other", Phase.APPLY, writes=[Position, Health], reads=[Velocity])
    assert run_order([b, a]) == ["Writer", "Other"]


def test_conflicts_lists_what_is_shared():
    a = make_system("A", Phase.MOVE, reads=[Velocity], writes=[Position])
    b = make_system("B", Phase.MOVE, reads=[Position], writes=[Velocity, Health])
    assert conflicts(a, b) == ["Position", "Velocity"]
    c = make_system("C", Phase.MOVE, reads=[Health])
    assert conflicts(a, c) == []


def test_last_timings_are_filled_for_every_system():
    systems = [make_system("One", Phase.INGEST), make_system("Two", Phase.MEASURE)]
    schedule = Schedule(systems)
    assert schedule.last_timings_ms == {}
    ctx = {"ran": []}
    schedule.run(World(), ctx)
    assert set(schedule.last_timings_ms) == {"One", "Two"}
    assert all(isinstance(t, float) and t >= 0.0 for t in schedule.last_timings_ms.values())
    schedule.run(World(), ctx)
    assert ctx["ran"] == ["One", "Two", "One", "Two"]


def test_the_world_is_locked_while_each_system_runs():
    seen = []

    class Probe(System):
        phase = Phase.MEASURE

        def run(self, world, ctx):
            seen.append(world.locked_by)

    w = World()
    Schedule([Probe()]).run(w, None)
    assert seen == ["Probe"]
    assert w.locked_by is None
