"""What a world is, to a snapshot: every component table, the id space, and the few objects
besides the tables whose contents shape later ticks.

``capture(sim)`` copies all of it out of a ``Simulation`` between two ticks (so a writer thread
can take its time); ``restore(sim, state)`` puts it into a freshly built ``Simulation`` of the
same world file and seed, before its first tick, in place (tables keep their index and
identity, so every system's queries and references stay valid). Tables are columns (one array
per block: a component's fields of one dtype, live rows only); the rest is a small dict of
plain data: the clock, the id registry's free lists, the partition and its history, recent
deaths, the spatial index the clients read next, the density grid and the director's figures,
the built-in client simulation's arrays, and the inbox of actions received but not yet due.
Everything else a system keeps is a cache, rebuilt from these on first use.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ecs.ids import EntityRegistry
from systems.actions import ACTION_FIELDS, ActionBatch
from systems.density import DensityGrid
from systems.lifecycle import Deaths
from systems.orchestration import EventStats
from systems.regions import RegionLayout, RegionStats, Regions
from systems.spatial_index import SpatialIndex

# The objects outside the tables that later ticks depend on, and what of each (plain data).
_REGISTRY = ("_used", "alive", "released", "_retired")
_LAYOUT = ("bounds", "count", "axis", "split", "left", "right", "leaf_count", "leaf_region", "_next", "_region",
           "rects")
_REGION_STATS = ("count", "loads", "entities", "load_ratio", "crossings_tick", "crossings_total", "rebalances",
                 "migrations_total", "migrations_last", "border_entities")
_REGIONS = ("_recent_xy", "_recent_counts", "_counts", "_above", "_last_rebalance")
_GRID = ("raw", "onsets", "spike_onsets", "crowd_onsets", "spike_detect_ticks", "updated_tick")
_EVENT_STATS = ("spawn_log", "end_log", "figures", "max_world_mobs", "rescaled_up", "rescaled_down", "runs")
_TRUTH = ("impossible", "impossible_accepted", "honest_refused")
_GENERATOR_SKIP = ("defn", "world", "rng", "cheat")  # the file's, the world's, or derived from them alone


@dataclass
class TableState:
    components: list[str]
    n: int
    capacity: int
    ids: np.ndarray
    blocks: dict[str, np.ndarray]  # "component|dtype" -> (k, n)


@dataclass
class WorldState:
    tick: int
    tables: list[TableState]
    slots: np.ndarray
    extra: dict = field(default_factory=dict)  # plain data (see the module's docstring)

    @property
    def entities(self) -> int:
        return sum(t.n for t in self.tables)


class StateError(ValueError):
    """A snapshot that does not fit the world it is restored into (one line: what and why)."""


def capture(sim) -> WorldState:
    """A copy of ``sim``'s state between two ticks."""
    w = sim.world
    tables = []
    for t in w.tables:
        blocks = {f"{c}|{d}": b[:, : t.n].copy() for (c, d), b in t._blocks.items()}
        tables.append(TableState(sorted(t.key), t.n, t.capacity, t.ids.copy(), blocks))
    reg = w.registry
    extra: dict = {
        "registry": {**_pick(reg, _REGISTRY), "free": list(reg._free), "foreign": dict(reg._foreign),
                     "lent": sorted(reg._lent)},
        "resources": {},
        "regions": None,
        "generator": None,
        "inbox": _inbox_state(sim.inbox),
        "truth": _pick(sim.truth, _TRUTH),
    }
    res = w.resources
    if RegionLayout in res:
        extra["resources"]["layout"] = _pick(res[RegionLayout], _LAYOUT)
    if RegionStats in res:
        extra["resources"]["region_stats"] = _pick(res[RegionStats], _REGION_STATS)
    if Deaths in res:
        d = res[Deaths]
        extra["resources"]["deaths"] = {"ids": d.ids.copy(), "tick": d.tick.copy()}
    if DensityGrid in res:
        extra["resources"]["grid"] = _pick(res[DensityGrid], _GRID)
    if EventStats in res:
        extra["resources"]["event_stats"] = _pick(res[EventStats], _EVENT_STATS)
    if SpatialIndex in res:
        ix = res[SpatialIndex]
        extra["resources"]["index"] = {"ids": ix.ids.copy(), "x": ix.x.copy(), "y": ix.y.copy(),
                                       "alive": ix.alive.copy(), "offset": ix._offset.copy(),
                                       "tables": [w.tables.index(t) for t in ix._tables]}
    regions = next((s for s in sim.schedule.systems if isinstance(s, Regions)), None)
    if regions is not None:
        extra["regions"] = _pick(regions, _REGIONS)
    if sim.generator is not None:
        extra["generator"] = _generator_state(sim.generator)
    return WorldState(sim.clock.tick, tables, reg.slots.copy(), extra)


def _generator_state(gen) -> dict:
    return {k: copy.deepcopy(v) for k, v in vars(gen).items() if k not in _GENERATOR_SKIP}


def client_state(sim, sealed_truth) -> dict:
    """The client side of ``sim`` just after a tick's batch was sealed: the built-in client
    simulation, the inbox, the ground-truth counters and the sealed batch's truth (a recovery
    takes it up there, instead of running the clients through every tick it replays)."""
    return {"generator": _generator_state(sim.generator), "inbox": _inbox_state(sim.inbox),
            "truth": _pick(sim.truth, _TRUTH), "sealed_truth": np.asarray(sealed_truth, np.bool_).copy()}


def load_client_state(sim, tick: int, state: dict) -> None:
    _put(sim.generator, state["generator"])
    _load_inbox(sim.inbox, state["inbox"])
    _put(sim.truth, state["truth"])
    sim.paused_truth[tick] = state["sealed_truth"]


def restore(sim, state: WorldState) -> None:
    """Put ``state`` into ``sim`` (built from the same world file and seed, not yet stepped)."""
    w = sim.world
    for i, ts in enumerate(state.tables):
        key = frozenset(ts.components)
        if i < len(w.tables):
            if w.tables[i].key != key:
                raise StateError(f"table {i} holds {sorted(w.tables[i].key)} in this world, {ts.components} "
                                 "in the snapshot: it was taken of another world")
            table = w.tables[i]
        else:
            comps = _components(w, sim, ts.components)
            _, table = w.table_for(comps)
        _load_table(table, ts)
    for table in w.tables[len(state.tables):]:
        table.n = 0  # (a table the snapshot's world had not made yet)
    reg: EntityRegistry = w.registry
    r = state.extra["registry"]
    reg.slots = state.slots.copy()
    for k in _REGISTRY:
        setattr(reg, k, copy.deepcopy(r[k]))
    reg._free = deque(r["free"])
    reg._foreign = dict(r["foreign"])
    reg._lent = set(r["lent"])
    w.structure_version += 1
    w.adoptions += 1
    sim.clock.tick = state.tick
    res = w.resources
    saved = state.extra["resources"]
    if "layout" in saved:
        _put(res[RegionLayout], saved["layout"])
    if "region_stats" in saved:
        _put(res[RegionStats], saved["region_stats"])
    if "deaths" in saved:
        res[Deaths].ids, res[Deaths].tick = saved["deaths"]["ids"].copy(), saved["deaths"]["tick"].copy()
    if "grid" in saved:
        _put(res[DensityGrid], saved["grid"])
    if "event_stats" in saved:
        _put(res[EventStats], saved["event_stats"])
    if "index" in saved:
        ix, s = res[SpatialIndex], saved["index"]
        ix.ids, ix.x, ix.y, ix.alive = s["ids"].copy(), s["x"].copy(), s["y"].copy(), s["alive"].copy()
        ix._world, ix._tables, ix._sorted_at = w, [w.tables[i] for i in s["tables"]], None
        ix._offset = s["offset"].copy()
        ix.grid.rebuild(ix.x, ix.y)
    regions = next((s for s in sim.schedule.systems if isinstance(s, Regions)), None)
    if regions is not None and state.extra["regions"] is not None:
        _put(regions, state.extra["regions"])
    gen = state.extra["generator"]
    if (gen is None) != (sim.generator is None):
        raise StateError("the snapshot was taken with the built-in client simulation "
                         f"{'on' if gen is not None else 'off'}; this world has it {'on' if sim.generator else 'off'}")
    if gen is not None:
        _put(sim.generator, gen)
    _load_inbox(sim.inbox, state.extra["inbox"])
    _put(sim.truth, state.extra["truth"])


# --------------------------------------------------------------------------- helpers


def _pick(obj, names) -> dict:
    return {k: copy.deepcopy(getattr(obj, k)) for k in names}


def _put(obj, values: dict) -> None:
    for k, v in values.items():
        setattr(obj, k, copy.deepcopy(v))


def _load_table(table, ts: TableState) -> None:
    table.n = 0
    table._ids = np.zeros(max(ts.capacity, 1), np.int64)
    table._allocate(max(ts.capacity, 1))
    table._ids[: ts.n] = ts.ids
    for (c, d), block in table._blocks.items():
        block[:, : ts.n] = ts.blocks[f"{c}|{d}"]
    table.n = ts.n
    table.removals += 1


def _components(world, sim, names: list[str]):
    """The Component objects of ``names``: from the world's tables or its systems' declarations."""
    known = {c.name: c for t in world.tables for c in t.components}
    for s in sim.schedule.systems:
        for c in (*s.reads, *s.writes):
            if hasattr(c, "fields"):
                known.setdefault(c.name, c)
    from worlds.runtime import NPC_ARCHETYPE, PLAYER_ARCHETYPE
    from systems.apply_actions import TradeOffer

    for c in (*PLAYER_ARCHETYPE, *NPC_ARCHETYPE, TradeOffer):
        known.setdefault(c.name, c)
    missing = [n for n in names if n not in known]
    if missing:
        raise StateError(f"the snapshot holds components this world does not know: {missing}")
    return tuple(known[n] for n in names)


def _inbox_state(inbox) -> dict:
    return {"batches": [{name: getattr(b, name).copy() for name, _ in ACTION_FIELDS} for b in inbox._batches],
            "due": [d.copy() for d in inbox._due], "truth": [t.copy() for t in inbox._truth]}


def _load_inbox(inbox, s: dict) -> None:
    inbox._batches = [batch_of(cols) for cols in s["batches"]]
    inbox._due = [d.copy() for d in s["due"]]
    inbox._truth = [t.copy() for t in s["truth"]]


def batch_of(cols: dict[str, np.ndarray]) -> ActionBatch:
    """An ``ActionBatch`` from its columns (``ACTION_FIELDS`` names)."""
    return ActionBatch(**{name: np.array(cols[name], dtype) for name, dtype in ACTION_FIELDS})
