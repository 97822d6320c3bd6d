"""A world on N shards that evolves exactly as it does on one: the server loop's ``Simulation``
API (``submit``, ``step``, ``TickReport``, ``state_hash``, ``disconnect``/``reconnect``) over
shards stepped side by side through the same schedule.

The tick, as the shards live it (DESIGN.md's ten steps, with what crosses shard borders):

- barrier: entities that crossed into another shard's rectangle are handed over (two phases:
  the new owner takes the whole row, then the old one lets go and the routing table changes);
  each action goes to the owner of its actor (a late one is forwarded, never dropped); each
  shard gets ghosts of its neighbours' entities within the interest radius, and of whatever its
  actions name, as their owners hold them at the start of the tick;
- every system then runs on every shard, one step at a time; after each step the owners send
  their ghosts' changed fields, so the next step reads across borders what one world would;
  what a step wrote into a ghost is put back (a copy changes only by its owner's word);
- ids are drawn and freed world-wide at each sync point, in key order (``ecs.commands``), so a
  newcomer gets the id it gets on one shard;
- the order of the tick's actions is found once, over every action and the positions of the
  entities they name (gathered from their owners), with the same code one world runs; each
  conflict group is then resolved by exactly one shard, the owner of the group's lowest actor
  id (a rule that does not depend on where a border runs), which borrows the rows it lacks and
  sends the results to the other owners;
- deaths, and the hurt of players hit from across a border, are told to every shard;
- the state hash is the sum of the shards' parts, each over the rows it owns: the one-world
  hash, blind to how many shards there are and to ghosts.

Every message between shards goes through the transport as protocol bytes. The coordinator
(this class) decides what the world must; it reaches the shards only through a host
(``hosts``): in this process (``backend="inprocess"``, the default) or in Ray actors
(``backend="ray"``), each shard's side of the tick being ``node.Node``'s operations.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from ecs.commands import key_order
from ecs.hashing import combine
from systems.action_order import ActionOrder
from systems.actions import REFUSAL_NAMES, ActionBatch
from systems.apply_actions import TradeOffer
from systems.components import Link, Player, Position
from systems.context import TickContext
from systems.lifecycle import Deaths
from systems.regions import RegionLayout, RegionStats
from worlds.cluster.balance import ShardBalancer
from worlds.cluster.border import BorderExchange
from worlds.cluster.events import WorldEvents
from worlds.cluster.groups import GroupResolution
from worlds.cluster.hosts import LocalHost
from worlds.cluster.node import Node
from worlds.cluster.population import PopulationLearning
from worlds.cluster.protocol import HandOff, encode
from worlds.cluster.rows import encode_rows
from worlds.cluster.shard import GHOST_SKIPS, Shard, shard_catalog
from worlds.cluster.shardmap import ShardMap
from worlds.cluster.stats import ShardStats
from worlds.cluster.transport import InProcessTransport, Transport
from worlds.cluster.view import ClientView, _stood, merged_view
from worlds.runtime import Inbox, Simulation, TickReport

_SLOT = np.int64(0xFFFFFFFF)
_NONE = np.empty(0, np.int64)


class ShardingError(ValueError):
    """A world this sharded runtime cannot split (one line, naming what and why)."""


class ShardedSimulation(BorderExchange, GroupResolution, WorldEvents, PopulationLearning, ClientView):
    """``shards`` shards of one world, talking through ``transport``, kept by ``backend``'s host."""

    def __init__(self, defn, shards: int, seed: int | None = None, generate: bool = True, hash_every: int = 1,
                 transport: Transport | None = None, backend: str = "inprocess",
                 ray_address: str | None = None) -> None:
        if shards < 2:
            raise ShardingError("a sharded world needs at least 2 shards (one shard is a Simulation)")
        # The world as one shard would start it: the same ids, links and client simulation.
        template = Simulation(defn, seed=seed, generate=generate, hash_every=0)
        self.defn, self.seed, self.clock, self.rng = defn, template.seed, template.clock, template.rng
        self.hash_every = hash_every
        self.max_speed_mps = template.max_speed_mps
        self.player_ids = template.player_ids
        self.generator = template.generator
        self.truth = template.truth
        self.inbox = Inbox()
        self.recorder = None
        self.external = None
        self.sealed_hook = None  # called with each sealed batch (the verifier's reference eats it)
        self.journal = self.replay = None  # durable state (see ``Simulation``)
        self.out_of_band: list[tuple[str, int]] = []
        self.clients_paused = False
        self.paused_truth: dict[int, np.ndarray] = {}
        self.router = None  # the routing table actions are first sent by (default: ``owner_of``)
        self.allocator = template.world.registry  # the world-wide id space
        self.map = ShardMap(RegionLayout(defn.bounds, max(defn.regions.count, shards)), shards)
        # Ghosts must hold everything a border entity's step can reach: NPC bites (an NPC in
        # reach of a player, and the players in reach of that NPC) after a tick's movement.
        reach = max([p.attack_reach_m for p in defn.npcs()], default=0.0)
        step_m = 2.0 * self.max_speed_mps * self.clock.dt_s
        self.halo_m = max(defn.regions.interest_radius_m, 2.0 * reach + step_m + 1.0)
        self.transport = transport or InProcessTransport(shards)
        self.shard_range = range(shards)
        self.backend = backend
        self._tick_end = None  # when the last tick ended (perf_counter)
        self._allocator_log: list = []  # draws and frees a shard's replica of the allocator has not seen
        if backend == "inprocess":
            self.host = LocalHost([Node(i, shards, defn, self.allocator, self.map, self.halo_m, self.max_speed_mps,
                                        self.seed) for i in range(shards)])
            self.prototype = self.host.shards[0]
        elif backend == "ray":
            from worlds.cluster.ray_host import RayHost

            self.host = RayHost(shards, defn, self.allocator, self.halo_m, self.max_speed_mps, self.seed,
                                address=ray_address)
            # What the coordinator reads of the schedule (systems, what they read and write).
            self.prototype = Shard(0, shards, defn, self.allocator, self.map, self.halo_m, self.max_speed_mps)
        else:
            raise ShardingError(f"unknown back-end {backend!r} (inprocess or ray)")
        self.systems = self.prototype.schedule.systems
        # Every component a row may carry: what the world holds, and what its systems may spawn.
        self.catalog = shard_catalog(self.prototype, (c for t in template.world.tables for c in t.components))
        self._owner = np.zeros(max(self.allocator.slots.shape[0], 1), np.int16)  # by id slot
        self._orderer = ActionOrder(defn)
        # Components changed since ghosts last heard of them; at first, everything they hold.
        self.stale: set = {c for c in self.catalog.values() if c not in GHOST_SKIPS}
        self._newcomers = False
        self.balancer = ShardBalancer(self.map, defn.regions, defn.shards)
        self.max_handoffs = defn.shards.max_handoffs_per_tick
        self._distribute(template.world)
        self._view = None
        if self.generator is not None:
            self._refresh_view(first=True)
        self.stats = ShardStats(shards)

    @classmethod
    def from_file(cls, path, shards: int, seed: int | None = None, **kw) -> ShardedSimulation:
        from worlds.loader import load_world

        return cls(load_world(path), shards, seed=seed, **kw)

    @property
    def shards(self) -> list[Shard]:
        """The shards themselves (in-process back-end only: the others keep them elsewhere)."""
        if not self.host.shares_allocator:
            raise AttributeError(f"the {self.backend} back-end keeps its shards in other processes")
        return self.host.shards

    def close(self) -> None:
        """Stop the shards' processes (nothing to stop in process)."""
        self.host.close()

    # -- ownership -------------------------------------------------------------------------------
    def _home(self, world, ids: np.ndarray) -> np.ndarray:
        """Where each entity belongs: the shard whose rectangle holds it; shard 0 for entities
        without a position."""
        out = np.zeros(ids.shape[0], np.int64)
        table, row = world.locate_many(ids)
        for t in np.unique(table[table >= 0]).tolist():
            held = world.tables[t]
            if held.has(Position):
                sel = table == t
                out[sel] = self.map.shard_of(held.column(Position, "x")[row[sel]], held.column(Position, "y")[row[sel]])
        return out

    def _distribute(self, world) -> None:
        ids = np.concatenate([t.ids for t in world.tables if t.n]) if world.tables else np.empty(0, np.int64)
        home = self._home(world, ids)
        frames = {}
        for s in self.shard_range:
            mine = ids[home == s]
            frames[s] = ([encode(HandOff(0, -1, s, encode_rows(world, mine, skip=())))] if mine.size else [],)
        self.host.each("adopt", frames)
        self._set_owner(ids, home)
        for t in world.tables:  # the template's rows now live on the shards
            t.n = 0

    def _set_owner(self, ids: np.ndarray, shard) -> None:
        slots = np.asarray(ids, np.int64) & _SLOT
        if slots.size and int(slots.max()) >= self._owner.shape[0]:
            grown = np.zeros(max(int(slots.max()) + 1, 2 * self._owner.shape[0]), np.int16)
            grown[: self._owner.shape[0]] = self._owner
            self._owner = grown
        self._owner[slots] = shard

    def owner_of(self, ids: np.ndarray) -> np.ndarray:
        """(n,) int64 shard that owns each id (0 for ids alive nowhere: it refuses them)."""
        ids = np.asarray(ids, np.int64)
        slots = (ids & _SLOT).clip(0, self._owner.shape[0] - 1)
        return np.where(self._alive_anywhere(ids), self._owner[slots], 0).astype(np.int64)

    def _alive_anywhere(self, ids: np.ndarray) -> np.ndarray:
        """(n,) bool: the id names a live entity of the world (on whichever shard)."""
        ids = np.asarray(ids, np.int64)
        slots = (ids & _SLOT).clip(0, self.allocator.slots.shape[0] - 1)
        return (self.allocator.slots[slots, 0] == ids) & (ids != 0)

    def owned_by(self) -> list[np.ndarray]:
        return self.host.all("owned_ids")

    def resource(self, kind):
        """A world-wide resource as shard 0 holds it (the director's, the learner's)."""
        if self.host.shares_allocator:
            return self.host.shards[0].world.resources[kind]
        return self.host.each("resource", {0: (kind.__name__,)})[0]

    # -- the server loop's API --------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.clock.tick

    @property
    def entity_count(self) -> int:
        return sum(load for load, _, _ in self.host.all("counts"))

    @property
    def world(self):
        """The whole world as the shards' owned rows make it up, for reading (summaries)."""
        return self._merged()

    @property
    def regions(self) -> RegionStats:
        """The partition's figures, each shard counting what it owns, added up."""
        parts = self.host.all("region_stats")
        out = RegionStats(parts[0].count)
        for p in parts:
            out.entities = out.entities + p.entities
            out.loads = out.loads + p.loads
            out.border_entities += p.border_entities
            out.crossings_total += p.crossings_total
        mean = out.loads.sum() / max(out.loads.shape[0], 1)
        out.load_ratio = float(out.loads.max() / mean) if mean > 0 else 1.0
        return out

    def submit(self, actions) -> list[tuple[int, str]]:
        return Simulation.submit(self, actions)

    def disconnect(self, player: int) -> None:
        self.out_of_band.append(("disconnect", int(player)))
        owner = int(self.owner_of(np.array([player]))[0])
        freed = self.host.each("disconnect", {s: (int(player), s == owner) for s in self.shard_range})
        self.stale |= {Player, TradeOffer}
        self._free([e for s in self.shard_range for e in freed[s]])

    def reconnect(self, player: int) -> None:
        self.out_of_band.append(("reconnect", int(player)))
        owner = int(self.owner_of(np.array([player]))[0])
        self.host.each("reconnect", {owner: (int(player), self.clock.time_ms_of(self.tick))})
        self.stale |= {Player, Link}

    def state_hash(self) -> str:
        return self._hash_of(self.host.all("hash_frame", self.tick))

    def _hash_of(self, frames: list[bytes]) -> str:
        for f in frames:
            self.transport.post(0, f)
        total = 0
        for m in self.transport.receive(0):
            total = (total + m.part) & 0xFFFFFFFFFFFFFFFF
        return f"{combine(total, self.clock.tick):016x}"

    # -- the tick ---------------------------------------------------------------------------------
    def step(self, wall_start: float | None = None) -> TickReport:
        tick = self.clock.tick
        Simulation._clients_send(self, tick, self._view)
        t0 = time.perf_counter()
        if wall_start is None:
            wall_start = t0
        self.transport.new_tick()
        self.host.new_tick()
        batch, truth = Simulation._seal(self, tick)
        self.last_batch = batch
        collecting = gc.isenabled()
        gc.disable()
        try:
            ctx, effects, order = self._tick(tick, batch)
        finally:
            if collecting:
                gc.enable()
        self.clock.advance()
        hashed = self._hash_of(self._hash_frames) if self._hash_frames else None
        t1 = self._tick_end = time.perf_counter()
        rounds, _, exchange_ms = self.host.new_tick()
        if self.generator is not None:
            self._refresh_view()
        applied = batch.status == 0
        wait_ms = np.maximum(self.clock.time_ms_of(tick) - batch.recv_time_ms[applied], 0.0)
        self.truth.record(batch, truth)
        self.stats.record_tick(self.transport.bytes_tick, (t1 - t0) * 1000.0, self.systems_ms, exchange_ms, rounds)
        refused_ix = np.flatnonzero(~applied)
        return TickReport(
            tick=tick, submitted=batch.n, applied=int(applied.sum()), refused=batch.refusal_counts(),
            refusals=[(int(batch.actor[i]), int(batch.seq[i]), REFUSAL_NAMES[int(batch.status[i])])
                      for i in refused_ix.tolist()],
            killed=effects.killed.tolist(),
            state_hash=hashed,
            tick_ms=(t1 - t0) * 1000.0,
            system_ms=dict(self._timings),
            action_to_effect_ms=wait_ms + (t1 - wall_start) * 1000.0,
            conflicts=Simulation._conflicts(ctx, batch, effects),
        )

    def _tick(self, tick: int, batch: ActionBatch):
        self._hand_over(tick)
        own = self._route(tick, batch)
        for s, (idx, _) in zip(self.shard_range, own):
            self.host.later(s, "begin", tick, self.clock.dt_s, idx)
        self._ghosts_at_start(tick, own)
        world_ctx = TickContext(tick=tick, dt_s=self.clock.dt_s, seed=self.seed, rng=self.rng, defn=self.defn,
                                max_speed_mps=self.max_speed_mps)
        self._timings: dict[str, float] = {}
        order = effects = interest_asked = None
        dirty = self.stale  # components changed since the ghosts last heard of them
        for system in self.systems:
            name = system.name
            t0 = time.perf_counter()
            comps = tuple(c for c in system.writes if hasattr(c, "fields"))
            # Ghosts hear of a change just before a step that reads (or writes) what changed.
            # (Everything that changed goes at once: one exchange instead of several.)
            others = (*system.reads, *comps) if system.reads_others is None else system.reads_others
            if interest_asked is not None and self.host.rounds > interest_asked:  # (Lifecycle's, below)
                self._newcomers = any(self.host.take_replies("add_interest"))
                interest_asked = None
            if any(c in dirty for c in others) or (name == "SpatialHash" and self._newcomers):
                self._refresh(tick, tuple(sorted(dirty, key=lambda c: c.name)))
                dirty.clear()
                if interest_asked is not None:  # the refresh sent the newcomers too
                    self.host.take_replies("add_interest")
                    interest_asked = None
                self._newcomers = False
            kills = Deaths in system.writes  # a step that kills: every shard hears of its deaths
            extra = {"kills": kills, "authoritative": name == "ApplyActions"} if kills else {}
            if name == "DensityCount":
                extra.update(self._density_extra(tick))
            elif name == "SpatialHash" and self.generator is not None:
                extra["stand"] = True
            args = {s: (name, [c.name for c in comps], dict(extra)) for s in self.shard_range}
            if name == "ActionOrder":
                for s, mine in self._named_by_owner(batch).items():
                    args[s][2]["named"] = mine
            elif name == "ApplyActions":
                for s in self.shard_range:
                    args[s][2]["resolving"] = bool(self._resolving[s].size)
            elif name == "EventDirector":
                args[0][2].update(self._director_extra(tick, batch))
            results = self.host.each("step", args)
            for s in self.shard_range:  # what a step sends on its own (density counts, the baseline)
                for dst, frame in results[s].get("frames", ()):
                    self.transport.post(dst, frame)
            self._deliver_later()
            # Results first: a settled offer, a buried mob are freed with the rest.
            freed = []
            if name == "ApplyActions":
                effects, freed = self._resolved(tick, batch, own, results)
            elif name == "EventDirector":
                freed = self._after_directing(tick, results)
            placed = self._sync_ids(results, freed)
            if name == "ActionValidation":
                for (idx, sub), s in zip(own, self.shard_range):
                    for f, v in results[s]["validated"].items():
                        getattr(sub, f)[:] = v
                        getattr(batch, f)[idx] = v
            elif name == "ActionOrder":
                order = self._order(batch, world_ctx, results)
                self._before_apply(tick, batch, order)
            if kills:
                self._tell_deaths(results)
            if name == "AnomalyScore":
                self._tell_hurt(tick, results)
                self._learn_population(tick)
            elif name == "SpatialHash" and self.generator is not None:
                self._stood = _stood([results[s]["stand"] for s in self.shard_range])
            if name == "Lifecycle":  # newcomers near a border, and the revived: seen where they are
                asked = [s for s in self.shard_range if placed[s].size or results[s].get("revived")]
                for s in asked:
                    self.host.later(s, "add_interest", placed[s])
                self._newcomers = False
                interest_asked = self.host.rounds if asked else None
            dirty |= {c for c in comps if c not in GHOST_SKIPS}  # what ghosts do not hold cannot go stale
            self._timings[name] = (time.perf_counter() - t0) * 1e3
        hashing = bool(self.hash_every and tick % self.hash_every == 0)
        done = self.host.all("finish", tick + 1, hashing)
        self._hash_frames = [d["hash"] for d in done] if hashing else None
        # The shards' own systems, against the whole tick: the rest is replication's share.
        self.systems_ms = sum(d["systems_ms"] for d in done)
        self.shard_timings = [d["timings"] for d in done]
        world_ctx.stats.update(done[0]["stats"])
        world_ctx.stats["conflict_groups"] = order.n_groups if order is not None else 0
        world_ctx.stats["largest_group"] = order.largest_group if order is not None else 0
        world_ctx.stats["cycles_broken"] = order.cycles_broken if order is not None else 0
        return world_ctx, effects, order

    # -- world-wide sync points ------------------------------------------------------------------
    def _sync_ids(self, results: dict, freed: list) -> list[np.ndarray]:
        """Ids for every shard's keyed spawns, in key order, then the freed ones, in id order.
        Returns the ids placed on each shard (theirs until a barrier hands them over), keyed
        or drawn at once (the event director's)."""
        placed = [_NONE] * len(self.shard_range)
        for s in self.shard_range:
            r = results[s]
            if "all_drawn" in r:
                if not self.host.shares_allocator:  # drawn from the shard's replica: the same here
                    mine = self.allocator.allocate(r["all_drawn"].shape[0])
                    if not np.array_equal(mine, r["all_drawn"]):
                        raise RuntimeError(f"shard {s} drew ids the world's allocator did not: its replica diverged")
                self._set_owner(r["drawn"], s)
                placed[s] = r["drawn"]
        pending = [(s, keys) for s in self.shard_range for keys in results[s].get("keyed", ())]
        if pending:
            ops = [(None, keys, None) for _, keys in pending]
            total = sum(k.shape[0] for _, k, _ in ops)
            ids = self.allocator.allocate(total)
            self._allocator_log.append(("allocate", total))
            given = np.empty(ids.shape[0], np.int64)
            given[key_order(ops)] = ids
            start = 0
            by_shard: dict[int, list] = {}
            for s, keys in pending:
                n = keys.shape[0]
                mine = given[start : start + n]
                by_shard.setdefault(s, []).append(mine)
                self._set_owner(mine, s)
                placed[s] = np.concatenate([placed[s], mine])
                start += n
            for s, parts in by_shard.items():
                self.host.later(s, "place", parts)
        released = [e for s in self.shard_range for e in results[s]["released"]] + list(freed)
        for got in self.host.take_replies("deliver"):
            released += got
        self._free(released)
        return placed

    def _free(self, released) -> None:
        freed = sorted(released)
        for e in freed:
            self.allocator.release(e)
        if freed:
            self._allocator_log.append(("release", np.array(freed, np.int64)))
        if self._allocator_log:
            if not self.host.shares_allocator:
                self.host.later(0, "allocator_ops", self._allocator_log)
            self._allocator_log = []

    def summary(self) -> dict:
        return self.stats.summary(self)


__all__ = ["ShardedSimulation", "ShardingError", "merged_view"]
