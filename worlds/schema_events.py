"""The ``[events]`` section of a world file: the density field, the event director and the
event types it may spawn (tick step 8, see ``systems/density.py`` and ``systems/orchestration.py``).

A world without the section has no director: nothing is spawned, nothing is counted. With it:

```toml
[events]
every_ticks = 10            # the director runs on ticks divisible by this
cell_m = 50.0               # coarse density cell
comfort_players = 60.0      # a cell above this (short-term average) is crowded
cell_budget = 40            # event mobs (planned or standing) centred in one cell, at most
world_budget = 400          # ... in the whole world

[[events.types]]
name = "boss"
roles = ["crowd"]           # crowd: where players are; pull: beside a crowd; ambient: sparse places
mobs = 6
min_players = 15
```

Cross-field rules (a type that can never fit its budget, half-lives in the wrong order, too
many cells) are in ``event_problems``, reported like ``worlds.schema.semantic_problems``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from worlds.schema_base import Count, Name, NonNegFloat, PositiveFloat, Strict

Role = Literal["crowd", "pull", "ambient"]
ROLES: tuple[str, ...] = ("crowd", "pull", "ambient")  # index = the role code in WorldEvent.role
MAX_CELLS = 1 << 20  # density cells of one world (one entity each)
MAX_TYPES = 32


class EventType(Strict):
    """One kind of world event: what it spawns, how long each phase lasts, how hard it gets.

    Lifecycle: announced (no mobs yet, players may gather) for ``announce_s``, then active with
    ``mobs`` NPCs around its centre; it ends completed when every mob is dead, failed when no
    active player was within ``radius_m`` for ``abandon_s``, expired at ``duration_s``.
    Difficulty (a multiplier of the mobs' hp) is
    ``difficulty * (1 + per_participant * (participants - 1)) * mean_level ** level_exponent``,
    capped at ``max_difficulty``, where participants are the active players in range (PvE: all
    of them; PvP: the largest team among them).
    """

    name: Name
    roles: Annotated[list[Role], Field(min_length=1, max_length=3)]
    weight: PositiveFloat = 1.0  # relative chance among the types that fit a decision
    mobs: Annotated[int, Field(ge=1, le=10_000)] = 5  # size in entities
    mob_hp: PositiveFloat = 60.0  # at difficulty 1
    mob_gold: Count = 5
    mob_speed_mps: NonNegFloat = 1.0
    radius_m: PositiveFloat = 30.0  # participants are counted within it; mobs stay within half of it
    announce_s: NonNegFloat = 2.0
    duration_s: PositiveFloat = 60.0  # active phase; expired after it
    abandon_s: PositiveFloat = 10.0  # failed after this long without an active participant in range
    min_players: NonNegFloat = 0.0  # crowd role: least players (short-term average) in the cell
    max_active: Annotated[int, Field(ge=1)] = 1_000  # live events of this type in the world
    difficulty: PositiveFloat = 1.0  # with one participant of level 1
    per_participant: NonNegFloat = 0.05
    level_exponent: NonNegFloat = 1.0
    max_difficulty: PositiveFloat = 10.0


class EventExpect(Strict):
    """Figures a scenario file promises; the tests assert them from the run's summary."""

    spike_detect_ticks: Annotated[int, Field(ge=0)] | None = None  # raw rise to spiking flag
    stop_within_ticks: Annotated[int, Field(ge=0)] | None = None  # no spawn into a spike after its onset + this
    max_follow_lag_s: NonNegFloat | None = None  # a cell the crowd reached gets an event within this
    max_unserved_s: NonNegFloat | None = None  # a populated cell goes without an event at most this long
    min_pull_events: Annotated[int, Field(ge=0)] | None = None
    min_difficulty_in_spike: NonNegFloat | None = None


class EventsSection(Strict):
    """Knobs of the density field and of the event director."""

    every_ticks: Annotated[int, Field(ge=1, le=100_000)] = 10  # director cadence K
    density_every_ticks: Annotated[int, Field(ge=1, le=100_000)] = 1  # density field cadence (players)
    npc_every_ticks: Annotated[int, Field(ge=1, le=100_000)] = 50  # NPCs drift slowly and cost most to count
    cell_m: PositiveFloat = 50.0  # coarse density cell
    fast_half_life_s: PositiveFloat = 0.25  # short-term average: spikes show within a few ticks
    slow_half_life_s: PositiveFloat = 10.0  # long-term average: the baseline a spike rises from
    comfort_players: PositiveFloat = 60.0  # crowded at or above this many players in a cell
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.2  # a flag clears only this fraction below its threshold
    spike_players: PositiveFloat = 30.0  # short-term over long-term average that marks a spike
    idle_s: PositiveFloat = 30.0  # who neither acted (non-move) nor walked for this long takes no part
    idle_move_m: PositiveFloat = 2.0  # ... where walking means covering this distance (path length)
    populated_players: PositiveFloat = 0.5  # short-term average at which a cell counts as populated
    cell_budget: Count = 40  # event mobs (planned or standing) of events centred in one cell
    world_budget: Count = 1_000  # ... in the world
    max_spawns_per_run: Annotated[int, Field(ge=0, le=1_000)] = 4  # new events per director run
    max_mobs_per_run: Count = 200  # mobs those new events may plan, together
    cell_max_events: Annotated[int, Field(ge=1)] = 2  # live events centred in one cell
    cooldown_s: NonNegFloat = 10.0  # after a spawn, none centred in the same cell for this long
    crowd_sustain_s: NonNegFloat = 0.0  # a cell must want a crowd event this long (passers-by do not count)
    serve_radius_m: PositiveFloat | None = None  # a cell is served by events this close to its centre (cell_m)
    pull_rings: Annotated[int, Field(ge=1, le=8)] = 2  # pull events go at most this many cells from the crowd
    pull_fill: Annotated[float, Field(gt=0, le=1)] = 0.5  # ... into cells under this share of comfort
    pulls_per_crowd: Annotated[int, Field(ge=0)] = 2  # live pull events drawing from one crowded cell
    ambient_interval_s: PositiveFloat = 120.0  # a populated cell waits at most this long for an event
    difficulty_step: NonNegFloat = 0.1  # relative change below which a live event's difficulty stays
    types: Annotated[list[EventType], Field(min_length=1, max_length=MAX_TYPES)]
    expect: EventExpect = EventExpect()

    @property
    def serve_m(self) -> float:
        return self.cell_m if self.serve_radius_m is None else self.serve_radius_m


def grid_shape(bounds: tuple[float, float, float, float], cell_m: float) -> tuple[int, int]:
    """(columns, rows) of the coarse density grid over ``bounds``."""
    x0, y0, x1, y1 = bounds
    return max(1, math.ceil((x1 - x0) / cell_m)), max(1, math.ceil((y1 - y0) / cell_m))


def event_problems(defn) -> list[tuple[str, str]]:
    """Rules that tie the ``[events]`` section to itself and to the world; (field path, reason)."""
    ev = getattr(defn, "events", None)
    if ev is None:
        return []
    out: list[tuple[str, str]] = []
    x0, y0, x1, y1 = defn.bounds
    if x0 < x1 and y0 < y1:
        cols, rows = grid_shape(defn.bounds, ev.cell_m)
        if cols * rows > MAX_CELLS:
            out.append(("events.cell_m", f"{ev.cell_m} m gives {cols * rows} density cells (at most {MAX_CELLS}); "
                                         "use a larger cell"))
    if ev.slow_half_life_s <= ev.fast_half_life_s:
        out.append(("events.slow_half_life_s", f"must be longer than fast_half_life_s ({ev.fast_half_life_s} s), "
                                               f"got {ev.slow_half_life_s} s"))
    if ev.world_budget < ev.cell_budget:
        out.append(("events.world_budget", f"{ev.world_budget} is below cell_budget {ev.cell_budget}"))
    names = [t.name for t in ev.types]
    for i, t in enumerate(ev.types):
        path = f"events.types[{i}]"
        if names.count(t.name) > 1 and names.index(t.name) != i:
            out.append((f"{path}.name", f"duplicate event type name {t.name!r}"))
        if len(set(t.roles)) != len(t.roles):
            out.append((f"{path}.roles", f"a role is repeated: {t.roles}"))
        if t.mobs > min(ev.cell_budget, ev.max_mobs_per_run):
            out.append((f"{path}.mobs", f"{t.mobs} mobs never fit events.cell_budget ({ev.cell_budget}) and "
                                        f"events.max_mobs_per_run ({ev.max_mobs_per_run}): the type could never spawn"))
        if t.max_difficulty < t.difficulty:
            out.append((f"{path}.max_difficulty", f"{t.max_difficulty} is below difficulty {t.difficulty}"))
    return out
