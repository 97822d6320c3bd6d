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

Every message between shards goes through the transport as protocol bytes.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from ecs.commands import key_order, place_op
from ecs.hashing import combine
from systems.action_order import ActionOrder
from systems.actions import REFUSAL_NAMES, ActionBatch
from systems.apply_actions import TradeOffer
from systems.components import Borrowed, Ghost, Link, Player, Position
from systems.context import TickContext
from systems.lifecycle import Deaths, Revived
from systems.regions import RegionLayout, RegionStats
from worlds.cluster.balance import ShardBalancer
from worlds.cluster.border import BorderExchange
from worlds.cluster.events import WorldEvents
from worlds.cluster.groups import GroupResolution, _deaths_copy
from worlds.cluster.population import PopulationLearning
from worlds.cluster.protocol import ShardHash
from worlds.cluster.rows import catalog, encode_rows, write_rows
from worlds.cluster.shard import GHOST_SKIPS, Shard
from worlds.cluster.shardmap import ShardMap
from worlds.cluster.stats import ShardStats
from worlds.cluster.transport import InProcessTransport, Transport
from worlds.cluster.view import ClientView, merged_view
from worlds.runtime import NPC_ARCHETYPE, PLAYER_ARCHETYPE, Inbox, Simulation, TickReport

_SLOT = np.int64(0xFFFFFFFF)
_NONE = np.empty(0, np.int64)


class ShardingError(ValueError):
    """A world this sharded runtime cannot split (one line, naming what and why)."""


class ShardedSimulation(BorderExchange, GroupResolution, WorldEvents, PopulationLearning, ClientView):
    """``shards`` shards of one world, in this process, talking through ``transport``."""

    def __init__(self, defn, shards: int, seed: int | None = None, generate: bool = True, hash_every: int = 1,
                 transport: Transport | None = None) -> None:
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
        self.shards = [Shard(i, shards, defn, self.allocator, self.map, self.halo_m, self.max_speed_mps)
                       for i in range(shards)]
        self._stop_learning_alone()
        # Every component a row may carry: what the world holds, and what its systems may spawn.
        declared = (c for s in self.shards[0].schedule.systems for c in (*s.reads, *s.writes) if hasattr(c, "fields"))
        self.catalog = catalog([*PLAYER_ARCHETYPE, *NPC_ARCHETYPE, TradeOffer, Ghost, Borrowed, *declared,
                                *(c for t in template.world.tables for c in t.components)])
        self._owner = np.zeros(max(self.allocator.slots.shape[0], 1), np.int16)  # by id slot
        self._orderer = ActionOrder(defn)
        # Components changed since ghosts last heard of them; at first, everything they hold.
        self.stale: set = {c for c in self.catalog.values() if c not in GHOST_SKIPS}
        self._newcomers = False
        self.balancer = ShardBalancer(self.map, defn.regions, defn.shards)
        self.max_handoffs = defn.shards.max_handoffs_per_tick
        self._distribute(template.world)
        for sh in self.shards:
            sh.index_now()
        self._view = None
        if self.generator is not None:
            self._refresh_view(first=True)
        self.stats = ShardStats(shards)

    @classmethod
    def from_file(cls, path, shards: int, seed: int | None = None, **kw) -> ShardedSimulation:
        from worlds.loader import load_world

        return cls(load_world(path), shards, seed=seed, **kw)

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
        for s, sh in enumerate(self.shards):
            mine = ids[home == s]
            if mine.size:
                write_rows(sh.world, encode_rows(world, mine, skip=()), self.catalog)
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
        return [sh.owned_ids() for sh in self.shards]

    # -- the server loop's API --------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.clock.tick

    @property
    def entity_count(self) -> int:
        return sum(sum(t.n for t in sh.owned_tables() if t.has(Position)) for sh in self.shards)

    @property
    def world(self):
        """The whole world as the shards' owned rows make it up, for reading (summaries)."""
        return merged_view(self.shards, self.allocator)

    @property
    def regions(self) -> RegionStats:
        """The partition's figures, each shard counting what it owns, added up."""
        parts = [sh.world.resources[RegionStats] for sh in self.shards]
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
        owner = self.shards[int(self.owner_of(np.array([player]))[0])]
        owner.world.set(player, Player, connected=0)
        self.stale |= {Player, TradeOffer}
        for sh in self.shards:  # withdraw its offers where they are owned
            offers = [t for t in sh.owned_tables() if t.has(TradeOffer)]
            for t in offers:
                hit = (t.column(TradeOffer, "giver") == player) | (t.column(TradeOffer, "taker") == player)
                for e in t.ids[hit].copy().tolist():
                    sh.world.despawn(e)
        self._free_released()

    def reconnect(self, player: int) -> None:
        self.out_of_band.append(("reconnect", int(player)))
        owner = self.shards[int(self.owner_of(np.array([player]))[0])]
        owner.world.set(player, Player, connected=1)
        owner.world.set(player, Link, last_recv_ms=self.clock.time_ms_of(self.tick))
        self.stale |= {Player, Link}

    def state_hash(self) -> str:
        parts = [sh.hash_part() for sh in self.shards]
        for s, part in enumerate(parts):
            owned, ghosts = self.shards[s].counts()
            self.transport.send(0, ShardHash(self.tick, s, part, owned, ghosts))
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
        t1 = time.perf_counter()
        if self.generator is not None:
            self._refresh_view()
        applied = batch.status == 0
        wait_ms = np.maximum(self.clock.time_ms_of(tick) - batch.recv_time_ms[applied], 0.0)
        self.truth.record(batch, truth)
        self.stats.record_tick(self.transport.bytes_tick, (t1 - t0) * 1000.0, self.systems_ms)
        refused_ix = np.flatnonzero(~applied)
        return TickReport(
            tick=tick, submitted=batch.n, applied=int(applied.sum()), refused=batch.refusal_counts(),
            refusals=[(int(batch.actor[i]), int(batch.seq[i]), REFUSAL_NAMES[int(batch.status[i])])
                      for i in refused_ix.tolist()],
            killed=effects.killed.tolist(),
            state_hash=self.state_hash() if self.hash_every and tick % self.hash_every == 0 else None,
            tick_ms=(t1 - t0) * 1000.0,
            system_ms=dict(self._timings),
            action_to_effect_ms=wait_ms + (t1 - wall_start) * 1000.0,
            conflicts=Simulation._conflicts(ctx, batch, effects),
        )

    def _tick(self, tick: int, batch: ActionBatch):
        loads = np.array([sum(t.n for t in sh.owned_tables() if t.has(Position)) for sh in self.shards], float)
        self.balancer.evaluate(tick, loads, self._placed)
        self.balancer.step()
        self._hand_over(tick)
        own = self._route(tick, batch)
        self._ghosts_at_start(tick, own)
        ctxs = [TickContext(tick=tick, dt_s=self.clock.dt_s, seed=self.seed, rng=self.rng, defn=self.defn,
                            max_speed_mps=self.max_speed_mps) for _ in self.shards]
        for sh, (idx, sub) in zip(self.shards, own):
            sh.world.resources[ActionBatch] = sub
        steps = [sh.schedule.steps(sh.world, c, skip=("ActionOrder",)) for sh, c in zip(self.shards, ctxs)]
        world_ctx = TickContext(tick=tick, dt_s=self.clock.dt_s, seed=self.seed, rng=self.rng, defn=self.defn,
                                max_speed_mps=self.max_speed_mps)
        self._timings: dict[str, float] = {}
        order = effects = None
        dirty = self.stale  # components changed since the ghosts last heard of them
        for system in self.shards[0].schedule.systems:
            name = system.name
            t0 = time.perf_counter()
            comps = tuple(c for c in system.writes if hasattr(c, "fields"))
            # Ghosts hear of a change just before a step that reads (or writes) what changed.
            # (Everything that changed goes at once: one exchange instead of several.)
            others = (*system.reads, *comps) if system.reads_others is None else system.reads_others
            if any(c in dirty for c in others) or (name == "SpatialHash" and self._newcomers):
                self._refresh(tick, tuple(sorted(dirty, key=lambda c: c.name)))
                dirty.clear()
                self._newcomers = False
            for sh in self.shards:
                sh.snapshot(comps)
            kills = Deaths in system.writes  # a step that kills: every shard hears of its deaths
            deaths_before = [_deaths_copy(sh.world) for sh in self.shards] if kills else None
            if name == "EventDirector":
                self._before_directing(batch)
            for gen in steps:
                next(gen)
            # Results first: a settled offer, a buried mob are freed with the rest.
            if name == "ApplyActions":
                effects = self._resolved(tick, batch, own, order)
            elif name == "EventDirector":
                self._after_directing(tick)
            elif name == "DensityCount":
                self._gather_density(tick)
            placed = self._sync_ids()
            if name == "ActionValidation":
                for idx, sub in own:
                    for f in ("status", "event_ms", "excess_ms", "speed_ratio"):
                        getattr(batch, f)[idx] = getattr(sub, f)
            elif name == "ActionOrder":
                order = self._order(tick, batch, world_ctx)
                self._before_apply(tick, batch, order)
            if kills:
                self._tell_deaths(deaths_before, authoritative=name == "ApplyActions")
            if name == "AnomalyScore":
                self._tell_hurt(tick)
                self._learn_population(tick)
            elif name == "SpatialHash" and self.generator is not None:
                self._stood = self._where_everyone_stands()
            for sh in self.shards:
                sh.restore()
            if name == "Lifecycle":  # newcomers near a border, and the revived: seen where they are
                self._newcomers = self._add_interest(
                    [np.concatenate([sh.world.resources[Revived].ids, new]) for sh, new in zip(self.shards, placed)])
            dirty |= {c for c in comps if c not in GHOST_SKIPS}  # what ghosts do not hold cannot go stale
            self._timings[name] = (time.perf_counter() - t0) * 1e3
        for sh in self.shards:
            sh.return_borrowed()
        # The shards' own systems, against the whole tick: the rest is replication's share.
        self.systems_ms = sum(sum(sh.schedule.last_timings_ms.values()) for sh in self.shards)
        world_ctx.stats.update(ctxs[0].stats)
        world_ctx.stats["conflict_groups"] = order.n_groups if order is not None else 0
        world_ctx.stats["largest_group"] = order.largest_group if order is not None else 0
        world_ctx.stats["cycles_broken"] = order.cycles_broken if order is not None else 0
        return world_ctx, effects, order

    # -- world-wide sync points ------------------------------------------------------------------
    def _sync_ids(self) -> list[np.ndarray]:
        """Ids for every shard's keyed spawns, in key order, then the freed ones, in id order.
        Returns the ids placed on each shard (theirs until a barrier hands them over), keyed
        or drawn at once (the event director's)."""
        placed = [_NONE] * len(self.shards)
        for s, sh in enumerate(self.shards):
            drawn = sh.world.registry.drawn
            if drawn:
                ids = np.concatenate(drawn)
                drawn.clear()
                ids = ids[sh.world.locate_many(ids)[0] >= 0]
                self._set_owner(ids, s)
                placed[s] = ids
        pending = [(s, op) for s, sh in enumerate(self.shards) for op in sh.world.keyed_pending]
        if pending:
            ops = [op for _, op in pending]
            ids = self.allocator.allocate(sum(k.shape[0] for _, k, _ in ops))
            given = np.empty(ids.shape[0], np.int64)
            given[key_order(ops)] = ids
            start = 0
            for s, op in pending:
                n = op[1].shape[0]
                sh = self.shards[s]
                sh.world.registry._hold(given[start : start + n])
                place_op(sh.world, op, given[start : start + n])
                self._set_owner(given[start : start + n], s)
                placed[s] = np.concatenate([placed[s], given[start : start + n]])
                start += n
            for sh in self.shards:
                sh.world.keyed_pending.clear()
        self._free_released()
        return placed

    def _free_released(self) -> None:
        freed = sorted(e for sh in self.shards for e in sh.world.registry.released)
        for sh in self.shards:
            sh.world.registry.released.clear()
        for e in freed:
            self.allocator.release(e)

    def summary(self) -> dict:
        return self.stats.summary(self)


__all__ = ["ShardedSimulation", "ShardingError", "merged_view"]
