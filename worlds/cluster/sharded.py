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

from ecs import FixedClock
from ecs.commands import key_order, place_keyed
from ecs.hashing import combine
from systems.action_order import ActionOrder, ActionOrderIndex
from systems.actions import ACTION_FIELDS, REFUSAL_NAMES, ActionBatch
from systems.anomaly_score import HitVictims
from systems.apply_actions import ActionEffects, TradeOffer
from systems.components import Borrowed, CheatStats, Ghost, Health, Link, Player, Position
from systems.context import TickContext
from systems.lifecycle import Deaths
from systems.regions import RegionCell, RegionLayout, RegionStats
from systems.replication import ReplicationPlan
from systems.spatial_hash import SpatialGrid
from worlds.cluster.points import PointSet
from worlds.cluster.protocol import (Actions, GroupResult, HandOff, HandOffAck, RoutedActions, ShardHash, pack,
                                     unpack)
from worlds.cluster.rows import catalog, encode_rows, write_rows
from worlds.cluster.shard import GHOST_SKIPS, Shard
from worlds.cluster.shardmap import ShardMap
from worlds.cluster.transport import InProcessTransport, Transport
from worlds.runtime import NPC_ARCHETYPE, PLAYER_ARCHETYPE, Inbox, Simulation, TickReport

_SLOT = np.int64(0xFFFFFFFF)


class ShardingError(ValueError):
    """A world this sharded runtime cannot split (one line, naming what and why)."""


class ShardedSimulation:
    """``shards`` shards of one world, in this process, talking through ``transport``."""

    def __init__(self, defn, shards: int, seed: int | None = None, generate: bool = True, hash_every: int = 1,
                 transport: Transport | None = None) -> None:
        if getattr(defn, "events", None) is not None:
            raise ShardingError(f"{defn.world.name}: the event director runs on one shard only for now "
                                "(world files with an [events] section)")
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
        self.catalog = catalog([*PLAYER_ARCHETYPE, *NPC_ARCHETYPE, TradeOffer, Ghost, Borrowed,
                                *(c for t in template.world.tables for c in t.components)])
        self._owner = np.zeros(max(self.allocator.slots.shape[0], 1), np.int16)  # by id slot
        self._orderer = ActionOrder(defn)
        self._newcomers = False
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
        alive = self.allocator.slots[slots.clip(0, self.allocator.slots.shape[0] - 1), 0] == ids
        return np.where(alive & (ids != 0), self._owner[slots], 0).astype(np.int64)

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
        owner = self.shards[int(self.owner_of(np.array([player]))[0])]
        owner.world.set(player, Player, connected=0)
        for sh in self.shards:  # withdraw its offers where they are owned
            offers = [t for t in sh.owned_tables() if t.has(TradeOffer)]
            for t in offers:
                hit = (t.column(TradeOffer, "giver") == player) | (t.column(TradeOffer, "taker") == player)
                for e in t.ids[hit].copy().tolist():
                    sh.world.despawn(e)
        self._free_released()

    def reconnect(self, player: int) -> None:
        owner = self.shards[int(self.owner_of(np.array([player]))[0])]
        owner.world.set(player, Player, connected=1)
        owner.world.set(player, Link, last_recv_ms=self.clock.time_ms_of(self.tick))

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
        if self.external is not None:
            replay = self.external.batch_for(tick, self.clock.dt_ms)
            self.inbox.put(replay, np.full(replay.n, tick, np.int64))
        elif self.generator is not None:
            batch, due = self.generator.generate(tick, self._view)
            self.inbox.put(batch, due, self.generator.truth)
        t0 = time.perf_counter()
        if wall_start is None:
            wall_start = t0
        self.transport.new_tick()
        batch, truth = self.inbox.seal(tick)
        if self.sealed_hook is not None:
            self.sealed_hook(batch)
        if self.recorder is not None:
            from worlds.stream import write_batch

            write_batch(self.recorder, tick, batch)
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
        dirty: set = set()  # components some step changed since the ghosts last heard of them
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
            deaths_before = [_deaths_copy(sh.world) for sh in self.shards]
            for gen in steps:
                next(gen)
            if name == "ApplyActions":  # the results first: a settled offer is freed with the rest
                effects = self._resolved(tick, batch, own, order)
            self._sync_ids()
            if name == "ActionValidation":
                for idx, sub in own:
                    for f in ("status", "event_ms", "excess_ms", "speed_ratio"):
                        getattr(batch, f)[idx] = getattr(sub, f)
            elif name == "ActionOrder":
                order = self._order(tick, batch, world_ctx)
                self._before_apply(tick, batch, order)
            written_back = name == "ApplyActions"
            self._tell_deaths(deaths_before, authoritative=written_back)
            if name == "AnomalyScore":
                self._tell_hurt(tick)
            elif name == "SpatialHash" and self.generator is not None:
                self._stood = self._where_everyone_stands()
            for sh in self.shards:
                sh.restore()
            if name == "Lifecycle":  # newcomers near a border, and the revived: drawn again
                self._draw_interest(tick, own)
                self._newcomers = True
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

    # -- barrier: hand-offs, routing, ghosts ---------------------------------------------------
    def _hand_over(self, tick: int) -> None:
        """Two-phase transfer of every entity that now belongs to another shard."""
        for s, sh in enumerate(self.shards):
            plan = sh.world.resources.get(ReplicationPlan)
            leaving = [] if plan is None else [(plan.ids[plan.dest == d], d) for d in range(len(self.shards))
                                               if d != s]
            unplaced = sh.unplaced_owned()
            if s != 0 and unplaced.size:
                leaving.append((unplaced, 0))
            for ids, d in leaving:
                if ids.size:
                    self.transport.send(d, HandOff(tick, s, d, encode_rows(sh.world, ids)))
                    self.stats.handoffs += int(ids.size)
        offers = [self.transport.receive(d) for d in range(len(self.shards))]
        for d, sh in enumerate(self.shards):
            for m in offers[d]:
                ids = np.concatenate([unpack(r.ids, np.int64) for r in m.rows])
                for e in ids.tolist():  # a ghost copy gives way to the owned row
                    t, _ = sh.world.registry.locate(e)
                    if t >= 0 and sh.world.tables[t].has(Ghost):
                        sh.world.hand_off(e)
                write_rows(sh.world, m.rows, self.catalog)
                self.transport.send(m.src, HandOffAck(tick, d, m.src, pack(ids, np.int64)))
        for s, sh in enumerate(self.shards):
            for ack in self.transport.receive(s):
                ids = unpack(ack.ids, np.int64)
                for e in ids.tolist():
                    sh.world.hand_off(e)
                for enc in sh.encoders.values():
                    enc.forget(ids)
                self._set_owner(ids, ack.src)

    def _route(self, tick: int, batch: ActionBatch) -> list[tuple[np.ndarray, ActionBatch]]:
        """Each action to the owner of its actor, as protocol bytes. A shard that does not
        hold an actor it was sent (the routing it was given is older than a hand-off) forwards
        the action to the owner it knows: an action is never dropped on the way."""
        owner = (self.router or self.owner_of)(batch.actor)
        everything = np.arange(batch.n)
        for s in range(len(self.shards)):
            idx = everything[owner == s]
            if idx.size:
                self.transport.send(s, RoutedActions(tick, -1, s, "route", _actions(batch, idx)))
        held: list[list[np.ndarray]] = [[] for _ in self.shards]
        for _ in range(len(self.shards) + 1):
            moving = False
            for s, sh in enumerate(self.shards):
                for m in self.transport.receive(s):
                    idx = unpack(m.actions.index, np.int64)
                    actor = unpack(m.actions.columns["actor"], np.int64)
                    now = self.owner_of(actor)
                    table, _ = sh.world.locate_many(actor)
                    owned = np.array([t >= 0 and not sh.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
                    here = owned | ~self._alive_anywhere(actor)
                    held[s].append(idx[here])
                    for d in np.unique(now[~here]).tolist():
                        fwd = idx[~here][now[~here] == d]
                        self.transport.send(d, RoutedActions(tick, s, d, "forward", _actions(batch, fwd)))
                        self.stats.forwarded += int(fwd.size)
                        moving = True
            if not moving:
                break
        else:
            raise RuntimeError(f"tick {tick}: actions still forwarded after {len(self.shards)} hops")
        own = []
        for s in range(len(self.shards)):
            idx = np.sort(np.concatenate(held[s])) if held[s] else np.empty(0, np.int64)
            own.append((idx, batch.take(idx)))
        return own

    def _alive_anywhere(self, ids: np.ndarray) -> np.ndarray:
        slots = (np.asarray(ids, np.int64) & _SLOT).clip(0, self.allocator.slots.shape[0] - 1)
        return (self.allocator.slots[slots, 0] == ids) & (ids != 0)

    def _ghosts_at_start(self, tick: int, own) -> None:
        self._draw_interest(tick, own)
        self._refresh(tick, None)

    def _draw_interest(self, tick: int, own) -> None:
        """Who sees what: each shard's owned entities within the interest radius of another
        shard, the entities another shard's actions name, and (from shard 0) the world's
        entities without a position, which every shard holds."""
        named = [np.unique(np.concatenate([sub.actor, sub.target])) for _, sub in own]
        named_owner = [self.owner_of(ids) for ids in named]
        for s, sh in enumerate(self.shards):
            plan = sh.replication.plan(sh.world)
            for d in sh.encoders:
                want = [plan.seen_by(d), named[d][named_owner[d] == s]]
                if s == 0:
                    want.append(sh.unplaced_owned())
                sh.interest[d] = np.unique(np.concatenate(want))

    def _refresh(self, tick: int, comps) -> None:
        """Owners send their ghosts' changes (of ``comps``; everything when None)."""
        for s, sh in enumerate(self.shards):
            for d in sh.encoders:
                delta = sh.ghost_delta(d, tick, comps)
                if delta.rows or delta.drop:
                    self.transport.send(d, delta)
        for d, sh in enumerate(self.shards):
            sh.receive_ghosts(self.transport.receive(d), self.catalog)

    # -- world-wide sync points ------------------------------------------------------------------
    def _sync_ids(self) -> None:
        """Ids for every shard's keyed spawns, in key order, then the freed ones, in id order."""
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
                place_keyed_ids(sh.world, op, given[start : start + n])
                self._set_owner(given[start : start + n], s)
                start += n
            for sh in self.shards:
                sh.world.keyed_pending.clear()
        self._free_released()

    def _free_released(self) -> None:
        freed = sorted(e for sh in self.shards for e in sh.world.registry.released)
        for sh in self.shards:
            sh.world.registry.released.clear()
        for e in freed:
            self.allocator.release(e)

    # -- order and the resolution of conflict groups ------------------------------------------------
    def _order(self, tick: int, batch: ActionBatch, ctx) -> ActionOrderIndex:
        """The tick's order, found once over every action, from the positions of the entities
        they name as their owners hold them now."""
        named = np.unique(np.concatenate([batch.actor, batch.target]))
        owner = self.owner_of(named)
        ids, xs, ys = [], [], []
        for s, sh in enumerate(self.shards):
            mine = named[owner == s]
            table, row = sh.world.locate_many(mine)
            for t in np.unique(table[table >= 0]).tolist():
                held = sh.world.tables[t]
                if held.has(Position) and not held.has(Ghost):
                    sel = table == t
                    ids.append(mine[sel])
                    xs.append(held.column(Position, "x")[row[sel]])
                    ys.append(held.column(Position, "y")[row[sel]])
        cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt))
        points = PointSet(cat(ids, np.int64), cat(xs, np.float64), cat(ys, np.float64))
        return self._orderer.order(batch, points, ctx)

    def _resolved(self, tick: int, batch: ActionBatch, own, order: ActionOrderIndex) -> ActionEffects:
        """Apply happened on each shard for the groups it resolves (set up below, before it
        ran); collect the results, send them to the owners, and give each shard back its own
        actions with their outcomes."""
        effect = np.zeros(batch.n)
        looted = np.zeros(batch.n, np.bool_)
        killed, totals = [], dict(claims_won=0, claims_lost=0, trades_done=0, offers_made=0)
        for s, sh in enumerate(self.shards):
            sub_idx = self._resolving[s]
            res = sh.world.resources.get(ActionEffects)
            if sub_idx.size and res is not None:
                sub = sh.world.resources[ActionBatch]
                batch.status[sub_idx] = sub.status
                effect[sub_idx] = res.effect
                looted[sub_idx] = res.looted_rare
                killed.append(res.killed)
                for k in totals:
                    totals[k] += getattr(res, k)
            changed, gone = sh.changes()
            self._send_results(tick, s, changed, gone, batch, sub_idx)
        for d, sh in enumerate(self.shards):
            for m in self.transport.receive(d):
                if isinstance(m, GroupResult):
                    write_rows(sh.world, m.rows, self.catalog)
                    for e in unpack(m.drop, np.int64).tolist():
                        if sh.world.is_alive(e):  # a copy the resolver removed: an offer settled there
                            sh.world.despawn(e)
        for (idx, sub), sh in zip(own, self.shards):
            sub.status[:] = batch.status[idx]
            sh.world.resources[ActionBatch] = sub
            sh.world.resources[ActionEffects] = ActionEffects(effect[idx], np.empty(0, np.int64),
                                                              looted_rare=looted[idx])
        killed_all = np.unique(np.concatenate(killed)) if killed else np.empty(0, np.int64)
        return ActionEffects(effect, killed_all, looted_rare=looted, **totals)

    def _send_results(self, tick: int, s: int, changed, gone: np.ndarray, batch, sub_idx) -> None:
        """A resolver's writes into entities others own go to their owners, field by field."""
        by_owner: dict[int, list] = {}
        for ids, c, f, values in changed:
            owners = self.owner_of(ids)
            for o in np.unique(owners).tolist():
                sel = owners == o
                by_owner.setdefault(o, []).append((ids[sel], c, f, values[sel]))
        for o, parts in by_owner.items():
            self.transport.send(o, GroupResult(tick, s, o, _field_rows(parts, self.catalog, self.shards[o].world)))
        if gone.size:
            owners = self.owner_of(gone)
            for o in np.unique(owners).tolist():
                self.transport.send(o, GroupResult(tick, s, o, [], drop=pack(gone[owners == o], np.int64)))

    def _before_apply(self, tick: int, batch: ActionBatch, order: ActionOrderIndex) -> None:
        """Give each group to the owner of its lowest actor id, with the rows it touches."""
        live = (order.group >= 0) & (batch.status == 0) & (batch.kind != 1)
        resolver = np.full(batch.n, -1, np.int64)
        if live.any():
            labels, inv = np.unique(order.group[live], return_inverse=True)
            lowest = np.full(labels.shape[0], np.iinfo(np.int64).max)
            np.minimum.at(lowest, inv, batch.actor[live])
            resolver[live] = self.owner_of(lowest)[inv]
        rank = np.empty(batch.n, np.int64)
        rank[order.perm] = np.arange(batch.n)
        self._resolving = []
        for s, sh in enumerate(self.shards):
            sub_idx = np.flatnonzero(resolver == s)
            sub_idx = sub_idx[np.argsort(rank[sub_idx], kind="stable")]
            self._resolving.append(sub_idx)
            sub = batch.take(sub_idx)
            touched = np.unique(np.concatenate([sub.actor, sub.target[sub.target != 0]]))
            if touched.size:
                lacking = touched[sh.world.locate_many(touched)[0] < 0]
                owners = self.owner_of(lacking)
                for o in np.unique(owners).tolist():
                    ids = lacking[owners == o]
                    ids = ids[self.shards[o].world.locate_many(ids)[0] >= 0]
                    if ids.size:
                        sh.lend(encode_rows(self.shards[o].world, ids), self.owner_of, self.catalog)
                        self.stats.borrowed += int(ids.size)
            sh.world.resources[ActionBatch] = sub
            sh.world.resources[ActionOrderIndex] = ActionOrderIndex(
                np.arange(sub.n), order.group[sub_idx], order.effect_ms[sub_idx])
            self.stats.cross_shard_actions += int((self.owner_of(sub.actor) != s).sum()
                                                  + (self.owner_of(sub.target[sub.target != 0]) != s).sum())

    # -- what every shard must hear ---------------------------------------------------------------
    def _tell_deaths(self, before, authoritative: bool) -> None:
        """Every shard learns the step's deaths: all that resolvers found, or (for steps every
        shard computes for what it holds) those of the dead's owners."""
        found = []
        for sh, d0 in zip(self.shards, before):
            d = sh.world.resources.get(Deaths)
            if d is None or d0 is None:
                continue
            new = _new_deaths(d0, d)
            if not authoritative and new[0].size:
                table, _ = sh.world.locate_many(new[0])
                mine = np.array([t >= 0 and not sh.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
                new = (new[0][mine], new[1][mine])
            found.append(new)
        if not any(f[0].size for f in found) and all(
                (sh.world.resources.get(Deaths) is None or d0 is None
                 or np.array_equal(sh.world.resources[Deaths].ids, d0[0])) for sh, d0 in zip(self.shards, before)):
            return
        ids = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
        ticks = np.concatenate([f[1] for f in found]) if found else np.empty(0, np.int64)
        for sh, d0 in zip(self.shards, before):
            d = sh.world.resources.get(Deaths)
            if d is None or d0 is None:
                continue
            d.ids, d.tick = d0
            for t in np.unique(ticks).tolist():
                d.record(np.unique(ids[ticks == t]), t)

    def _tell_hurt(self, tick: int) -> None:
        """A player hurt this tick notes when it will see it. The shard that scored the hit
        writes it where the victim stands; a victim owned elsewhere is told (bites need no
        telling: the victim's owner computes those itself)."""
        for s, sh in enumerate(self.shards):
            hurt = sh.world.resources.get(HitVictims)
            if hurt is None or hurt.ids.size == 0:
                continue
            ids = np.unique(hurt.ids)
            owners = self.owner_of(ids)
            for o in np.unique(owners[owners != s]).tolist():
                mine = ids[owners == o]
                parts = [(mine, CheatStats, "hurt_ms", np.full(mine.size, hurt.seen_ms))]
                self.transport.send(o, GroupResult(tick, s, o, _field_rows(parts, self.catalog, self.shards[o].world)))
        for d, sh in enumerate(self.shards):
            for m in self.transport.receive(d):
                write_rows(sh.world, m.rows, self.catalog)

    # -- the clients' view ------------------------------------------------------------------------
    def _where_everyone_stands(self) -> tuple[np.ndarray, ...]:
        """(ids, x, y, alive) of every placed entity, from its owner: what one world's spatial
        index holds after the spatial step, which the simulated clients read next tick."""
        parts = [(t.ids, t.column(Position, "x"), t.column(Position, "y"),
                  t.column(*_DEAD) == 0 if t.has(_DEAD[0]) else np.ones(t.n, np.bool_))
                 for sh in self.shards for t in sh.owned_tables() if t.has(Position)]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))

    def _refresh_view(self, first: bool = False) -> None:
        """What the simulated clients read: the world after the tick (its owned rows, merged)
        and where everyone stood at the tick's spatial step."""
        view = merged_view(self.shards, self.allocator)
        self.generator.world = view
        if first:
            self._stood = self._where_everyone_stands()
        x0, y0, x1, y1 = self.defn.bounds
        cell = self.defn.world.cell_m
        grid = SpatialGrid(cell, x0, y0, max(1, int(np.ceil((x1 - x0) / cell))), max(1, int(np.ceil((y1 - y0) / cell))))
        self._view = PointSet(*self._stood, grid=grid)

    def summary(self) -> dict:
        return self.stats.summary(self)


class ShardStats:
    """The ``shards`` section of the run summary."""

    def __init__(self, shards: int) -> None:
        self.count = shards
        self.handoffs = 0
        self.forwarded = 0
        self.borrowed = 0
        self.cross_shard_actions = 0
        self.bytes_per_tick: list[int] = []
        self.replication_share: list[float] = []  # of each tick's time, what was not the systems
        self.rebalance_moves = 0
        self.desync = None

    def record_tick(self, sent: int, tick_ms: float, systems_ms: float) -> None:
        self.bytes_per_tick.append(sent)
        self.replication_share.append(max(tick_ms - systems_ms, 0.0) / tick_ms if tick_ms > 0 else 0.0)

    def summary(self, sim: ShardedSimulation) -> dict:
        b = np.asarray(self.bytes_per_tick or [0])
        per = []
        for s, sh in enumerate(sim.shards):
            owned, ghosts = sh.counts()
            per.append({"shard": s, "owned": owned, "ghosts": ghosts})
        return {
            "count": self.count, "per_shard": per, "handoffs": self.handoffs, "forwarded": self.forwarded,
            "cross_shard_actions": self.cross_shard_actions, "borrowed": self.borrowed,
            "bytes_per_tick": {"p50": float(np.percentile(b, 50)), "p99": float(np.percentile(b, 99))},
            "replication_share_p50": round(float(np.median(self.replication_share or [0.0])), 4),
            # A ghost shows its owner's change at the barrier after the step that made it.
            "sync_lag_ticks": {"p50": 0, "p99": 0},
            "rebalance_moves": self.rebalance_moves, "desync": self.desync,
        }


# --------------------------------------------------------------------------- helpers

_DEAD = (Health, "dead")


def merged_view(shards: list[Shard], allocator) -> World:
    """One world made of every shard's owned rows (a copy, for reading)."""
    from ecs import World

    view = World(shard=allocator.shard)
    view.registry.share_space(allocator)
    view.registry._grow(allocator.slots.shape[0])
    by_key: dict[frozenset, list] = {}
    for sh in shards:
        for t in sh.owned_tables():
            by_key.setdefault(t.key, []).append(t)
    for tables in by_key.values():
        comps = tables[0].components
        ids = np.concatenate([t.ids for t in tables])
        values = {c: {f: np.concatenate([t.column(c, f) for t in tables]) for f in c.fields} for c in comps}
        view.adopt(ids, comps, values)
    return view


def place_keyed_ids(world, op, ids: np.ndarray) -> None:
    components, keys, values = op
    from ecs.commands import _rows

    world._place_new(components, ids, _rows(values, keys.shape[0]))


def _actions(batch: ActionBatch, idx: np.ndarray) -> Actions:
    return Actions({name: pack(getattr(batch, name)[idx], dtype) for name, dtype in ACTION_FIELDS},
                   pack(idx, np.int64))


def _field_rows(parts, comps, world) -> list:
    """Rows messages for (ids, component, field, values) parts: one per field, addressed to
    rows the owner holds (the archetype is the owner's)."""
    from worlds.cluster.protocol import Column, Rows

    out = []
    for ids, c, f, values in parts:
        table, _ = world.locate_many(ids)
        for t in np.unique(table[table >= 0]).tolist():
            if not world.tables[t].has(c):  # a victim without the field (an NPC has no stats)
                continue
            sel = table == t
            arche = sorted(x.name for x in world.tables[t].components)
            out.append(Rows(arche, pack(ids[sel], np.int64), [Column(c.name, f, values.dtype.str, pack(values[sel]))]))
    return out


def _deaths_copy(world):
    d = world.resources.get(Deaths)
    return None if d is None else (d.ids.copy(), d.tick.copy())


def _new_deaths(before, deaths: Deaths) -> tuple[np.ndarray, np.ndarray]:
    ids0, t0 = before
    key0 = set(zip(ids0.tolist(), t0.tolist()))
    new = [(i, t) for i, t in zip(deaths.ids.tolist(), deaths.tick.tolist()) if (i, t) not in key0]
    return (np.array([i for i, _ in new], np.int64), np.array([t for _, t in new], np.int64))



__all__ = ["ShardedSimulation", "ShardingError", "merged_view"]
