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
import pickle
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ecs.ids import EntityRegistry
from systems.actions import ACTION_FIELDS, ActionBatch
from systems.anomaly_score import PopulationBaseline
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
# Resources kept whole (as plain data): snapshot key, type, fields.
_RESOURCES = (("layout", RegionLayout, _LAYOUT), ("region_stats", RegionStats, _REGION_STATS),
              ("deaths", Deaths, ("ids", "tick")), ("grid", DensityGrid, _GRID),
              ("event_stats", EventStats, _EVENT_STATS),
              ("population", PopulationBaseline, PopulationBaseline.__slots__))
_GENERATOR_SKIP = ("defn", "world", "rng", "cheat")  # the file's, the world's, or derived from them alone


@dataclass
class TableState:
    components: list[str]
    n: int
    capacity: int
    ids: np.ndarray
    blocks: dict[str, np.ndarray]  # "component|dtype" -> (k, n)


@dataclass
class PartState:
    """One world's tables and id slots (a sharded world: the id space's, then each shard's)."""

    tables: list[TableState]
    slots: np.ndarray


@dataclass
class WorldState:
    tick: int
    parts: list[PartState]
    extra: dict = field(default_factory=dict)  # plain data (see the module's docstring)

    @property
    def entities(self) -> int:
        """Entities held (a sharded world's ghost copies left out)."""
        skip = 1 if self.extra.get("kind") == "cluster" else 0
        return sum(t.n for p in self.parts[skip:] for t in p.tables if "Ghost" not in t.components)


class StateError(ValueError):
    """A snapshot that does not fit the world it is restored into (one line: what and why)."""


def _sharded(sim) -> bool:
    return hasattr(sim, "shards")


def capture(sim) -> WorldState:
    """A copy of ``sim``'s state between two ticks (one world, or every shard of a sharded one
    at the same tick, with what their coordinator keeps: a barrier-consistent cut)."""
    if _sharded(sim):
        parts = [PartState([], sim.allocator.slots.copy())]
        extras = [{"registry": _registry_state(sim.allocator)}]
        for sh in sim.shards:
            part, ex = _world_part(sh.world, sh.schedule)
            parts.append(part)
            extras.append(ex)
        extra = {"kind": "cluster", "shards": len(sim.shards), "parts": extras, "coordinator": _coordinator(sim)}
    else:
        part, ex = _world_part(sim.world, sim.schedule)
        parts, extra = [part], {"kind": "world", "parts": [ex]}
    extra.update(generator=None if sim.generator is None else _generator_state(sim.generator),
                 inbox=_inbox_state(sim.inbox), truth=_pick(sim.truth, _TRUTH))
    return WorldState(sim.clock.tick, parts, extra)


def _registry_state(reg: EntityRegistry) -> dict:
    return {**_pick(reg, _REGISTRY), "free": list(reg._free), "foreign": dict(reg._foreign), "lent": sorted(reg._lent)}


def _world_part(w, schedule) -> tuple[PartState, dict]:
    tables = []
    for t in w.tables:
        blocks = {f"{c}|{d}": b[:, : t.n].copy() for (c, d), b in t._blocks.items()}
        tables.append(TableState(sorted(t.key), t.n, t.capacity, t.ids.copy(), blocks))
    extra: dict = {"registry": _registry_state(w.registry), "resources": {}, "regions": None}
    res = w.resources
    for key, kind, names in _RESOURCES:
        if kind in res:
            extra["resources"][key] = _pick(res[kind], names)
    if SpatialIndex in res:
        ix = res[SpatialIndex]
        extra["resources"]["index"] = {"ids": ix.ids.copy(), "x": ix.x.copy(), "y": ix.y.copy(),
                                       "alive": ix.alive.copy(), "offset": ix._offset.copy(),
                                       "tables": [w.tables.index(t) for t in ix._tables]}
    regions = next((s for s in schedule.systems if isinstance(s, Regions)), None)
    if regions is not None:
        extra["regions"] = _pick(regions, _REGIONS)
    return PartState(tables, w.registry.slots.copy()), extra


# What a sharded world's coordinator keeps between ticks besides its shards' worlds.
_MAP = ("region_shard", "_node_of_shard", "_rects", "_split_seen")
_BALANCER_SKIP = ("map", "cfg")


def _coordinator(sim) -> dict:
    return {
        "owner": sim._owner.copy(),
        "map_layout": _pick(sim.map.layout, _LAYOUT),
        "map": _pick(sim.map, _MAP),
        "balancer": {k: copy.deepcopy(v) for k, v in vars(sim.balancer).items() if k not in _BALANCER_SKIP},
        "stale": sorted(c.name for c in sim.stale),
        "newcomers": sim._newcomers,
        "stats": copy.deepcopy(vars(sim.stats)),
        "stood": copy.deepcopy(getattr(sim, "_stood", None)),
        "shards": [{"interest": copy.deepcopy(sh.interest), "sent": copy.deepcopy(sh.encoder._sent),
                    "holds": copy.deepcopy(sh.encoder.holds)} for sh in sim.shards],
    }


def _generator_state(gen) -> dict:
    return {k: copy.deepcopy(v) for k, v in vars(gen).items() if k not in _GENERATOR_SKIP}


def client_state(sim, sealed_truth) -> bytes:
    """The client side of ``sim`` just after a tick's batch was sealed, pickled: the built-in
    client simulation, the inbox, the ground-truth counters and the sealed batch's truth (a
    recovery takes it up there, instead of running the clients through every tick it replays).
    Pickled at once, so nothing is copied twice."""
    gen = {k: v for k, v in vars(sim.generator).items() if k not in _GENERATOR_SKIP}
    inbox = {"batches": [{name: getattr(b, name) for name, _ in ACTION_FIELDS} for b in sim.inbox._batches],
             "due": sim.inbox._due, "truth": sim.inbox._truth}
    return pickle.dumps({"generator": gen, "inbox": inbox, "truth": {k: getattr(sim.truth, k) for k in _TRUTH},
                         "sealed_truth": np.asarray(sealed_truth, np.bool_)}, protocol=5)


def load_client_state(sim, tick: int, state: dict) -> None:
    _put(sim.generator, state["generator"])
    _load_inbox(sim.inbox, state["inbox"])
    _put(sim.truth, state["truth"])
    sim.paused_truth[tick] = state["sealed_truth"]


def restore(sim, state: WorldState) -> None:
    """Put ``state`` into ``sim`` (built from the same world file, seed and shard count, not
    yet stepped)."""
    kind = state.extra.get("kind")
    if (kind == "cluster") != _sharded(sim) or (kind == "cluster" and state.extra["shards"] != len(sim.shards)):
        have = f"{len(sim.shards)} shards" if _sharded(sim) else "one world"
        took = f"{state.extra['shards']} shards" if kind == "cluster" else "one world"
        raise StateError(f"the snapshot is of {took}; this run is {have}")
    if kind == "cluster":
        _load_registry(sim.allocator, state.parts[0].slots, state.extra["parts"][0]["registry"])
        for sh, part, ex in zip(sim.shards, state.parts[1:], state.extra["parts"][1:]):
            _load_part(sh.world, sh.schedule, part, ex, sim.catalog)
        _load_coordinator(sim, state.extra["coordinator"])
    else:
        known = _known(sim)
        _load_part(sim.world, sim.schedule, state.parts[0], state.extra["parts"][0], known)
    sim.clock.tick = state.tick
    gen = state.extra["generator"]
    if (gen is None) != (sim.generator is None):
        raise StateError("the snapshot was taken with the built-in client simulation "
                         f"{'on' if gen is not None else 'off'}; this world has it {'on' if sim.generator else 'off'}")
    if gen is not None:
        _put(sim.generator, gen)
    _load_inbox(sim.inbox, state.extra["inbox"])
    _put(sim.truth, state.extra["truth"])
    if kind == "cluster" and sim.generator is not None:
        sim._refresh_view()  # the clients' merged view, and where everyone stood, as they were


def _load_registry(reg: EntityRegistry, slots: np.ndarray, r: dict) -> None:
    reg.slots = slots.copy()
    for k in _REGISTRY:
        setattr(reg, k, copy.deepcopy(r[k]))
    reg._free = deque(r["free"])
    reg._foreign = dict(r["foreign"])
    reg._lent = set(r["lent"])


def _load_part(w, schedule, part: PartState, ex: dict, known: dict) -> None:
    for i, ts in enumerate(part.tables):
        key = frozenset(ts.components)
        if i < len(w.tables):
            if w.tables[i].key != key:
                raise StateError(f"table {i} holds {sorted(w.tables[i].key)} in this world, {ts.components} "
                                 "in the snapshot: it was taken of another world")
            table = w.tables[i]
        else:
            missing = [n for n in ts.components if n not in known]
            if missing:
                raise StateError(f"the snapshot holds components this world does not know: {missing}")
            _, table = w.table_for(tuple(known[n] for n in ts.components))
        _load_table(table, ts)
    for table in w.tables[len(part.tables):]:
        table.n = 0  # (a table the snapshot's world had not made yet)
    _load_registry(w.registry, part.slots, ex["registry"])
    w.structure_version += 1
    w.adoptions += 1
    res = w.resources
    saved = ex["resources"]
    for key, kind, _ in _RESOURCES:
        if key in saved:
            _put(res[kind], saved[key])
    if "index" in saved:
        ix, s = res[SpatialIndex], saved["index"]
        ix.ids, ix.x, ix.y, ix.alive = s["ids"].copy(), s["x"].copy(), s["y"].copy(), s["alive"].copy()
        ix._world, ix._tables, ix._sorted_at = w, [w.tables[i] for i in s["tables"]], None
        ix._offset = s["offset"].copy()
        ix.grid.rebuild(ix.x, ix.y)
    regions = next((s for s in schedule.systems if isinstance(s, Regions)), None)
    if regions is not None and ex["regions"] is not None:
        _put(regions, ex["regions"])


def _load_coordinator(sim, c: dict) -> None:
    sim._owner = c["owner"].copy()
    _put(sim.map.layout, c["map_layout"])
    _put(sim.map, c["map"])
    _put(sim.balancer, c["balancer"])
    sim.stale = {sim.catalog[n] for n in c["stale"]}
    sim._newcomers = c["newcomers"]
    _put(sim.stats, c["stats"])
    if c["stood"] is not None:
        sim._stood = copy.deepcopy(c["stood"])
    for sh, s in zip(sim.shards, c["shards"]):
        sh.interest = copy.deepcopy(s["interest"])
        sh.encoder._sent = copy.deepcopy(s["sent"])
        sh.encoder.holds = copy.deepcopy(s["holds"])


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


def _known(sim) -> dict:
    """Components a one-world snapshot may hold: the world's, its systems', the archetypes'."""
    from systems.apply_actions import TradeOffer
    from worlds.runtime import NPC_ARCHETYPE, PLAYER_ARCHETYPE

    known = {c.name: c for t in sim.world.tables for c in t.components}
    for s in sim.schedule.systems:
        for c in (*s.reads, *s.writes):
            if hasattr(c, "fields"):
                known.setdefault(c.name, c)
    for c in (*PLAYER_ARCHETYPE, *NPC_ARCHETYPE, TradeOffer):
        known.setdefault(c.name, c)
    return known


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
