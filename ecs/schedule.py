"""The tick schedule: ten phases in DESIGN.md's order, systems in declaration order within one.

Each system declares what it reads and writes (components or resource types). Two systems of
the same phase conflict when one writes what the other reads or writes; building a schedule
refuses such a pair unless the later one states ``after = ("Earlier",)`` (or the earlier one
``before``), so that an order which matters is always an order somebody chose. Structural
changes queued by a system are applied right after it, a sync point, never mid-kernel.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any


class Phase(IntEnum):
    INGEST = 1
    VALIDATE = 2
    MOVE = 3
    SPATIAL = 4
    ORDER = 5
    APPLY = 6
    SCORE = 7
    ORCHESTRATE = 8
    REPLICATE = 9
    MEASURE = 10


class ScheduleError(ValueError):
    """The systems given cannot be scheduled as declared."""


class System:
    """Base class. Subclasses set ``phase``, ``reads``, ``writes`` and implement ``run``."""

    phase: Phase = Phase.MEASURE
    reads: tuple = ()
    writes: tuple = ()
    # What the system reads of entities other than the one it updates (a target's health, a
    # neighbour's position): on a shard of a sharded world, that is what ghosts must hold up
    # to date before it runs. None: assume everything it reads or writes.
    reads_others: tuple | None = None
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return type(self).__name__

    def run(self, world: Any, ctx: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _key_name(key: object) -> str:
    return getattr(key, "name", None) or getattr(key, "__name__", None) or str(key)


def conflicts(a: System, b: System) -> list[str]:
    """Names of what makes ``a`` and ``b`` order-dependent (empty when they commute)."""
    wa, wb = set(a.writes), set(b.writes)
    ra, rb = set(a.reads) | wa, set(b.reads) | wb
    return sorted({_key_name(k) for k in (wa & rb) | (wb & ra)})


class Schedule:
    def __init__(self, systems: Iterable[System]) -> None:
        systems = list(systems)
        names = [s.name for s in systems]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ScheduleError(f"system names must be unique; repeated: {sorted(dup)}")
        for s in systems:
            if not isinstance(s.phase, Phase):
                raise ScheduleError(f"{s.name}: phase must be a Phase, got {s.phase!r}")
        # Stable sort: phase order, then declaration order.
        self.systems: list[System] = sorted(systems, key=lambda s: int(s.phase))
        self._check(self.systems)
        self.last_timings_ms: dict[str, float] = {}

    @staticmethod
    def _check(systems: Sequence[System]) -> None:
        by_name = {s.name: s for s in systems}
        position = {s.name: i for i, s in enumerate(systems)}
        for s in systems:
            for other in (*s.after, *s.before):
                if other not in by_name:
                    raise ScheduleError(f"{s.name} orders itself against {other}, which is not in the schedule")
            for other in s.after:
                if position[other] > position[s.name]:
                    raise ScheduleError(
                        f"{s.name} must run after {other}, but runs before it by phase or declaration order"
                    )
            for other in s.before:
                if position[other] < position[s.name]:
                    raise ScheduleError(
                        f"{s.name} must run before {other}, but runs after it by phase or declaration order"
                    )
        for i, a in enumerate(systems):
            for b in systems[i + 1 :]:
                if a.phase != b.phase:
                    continue
                shared = conflicts(a, b)
                if shared and a.name not in b.after and b.name not in a.before:
                    raise ScheduleError(
                        f"{a.name} and {b.name} (phase {a.phase.name}) conflict on {', '.join(shared)} "
                        f"without a stated order: declare after = ('{a.name}',) on {b.name}"
                    )

    def run(self, world: Any, ctx: Any) -> None:
        """One tick: each system in order, a sync point after any that queued commands."""
        for _ in self.steps(world, ctx):
            pass

    def steps(self, world: Any, ctx: Any, skip: Iterable[str] = ()):
        """The tick one system at a time: runs a system and its sync point, then yields it.
        The shards of a sharded world are stepped side by side this way, exchanging what a
        step changed before the next one runs. Systems named in ``skip`` are passed over
        (a sharded world runs those once for all its shards)."""
        timings = self.last_timings_ms
        skip = set(skip)
        for s in self.systems:
            if s.name in skip:
                yield s
                continue
            t0 = time.perf_counter()
            world.locked_by = s.name
            try:
                s.run(world, ctx)
            finally:
                world.locked_by = None
            if len(world.commands):
                world.apply_commands()
            timings[s.name] = (time.perf_counter() - t0) * 1e3
            yield s
