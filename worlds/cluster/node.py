"""One shard's side of the sharded tick: the operations its coordinator asks of it.

Contract: a ``Node`` wraps one ``Shard`` and is the only code that touches that shard's world
while a sharded world runs. Its operations take and return plain values (numbers, strings,
numpy arrays, dicts and lists of them) and protocol frames as bytes addressed ``(dst, frame)``,
so each runs the same in the coordinator's process (``hosts.LocalHost``) or in a shard process
of its own (``ray_host``): frames it is given are decoded here, frames it makes are encoded
here, components travel by name. The coordinator decides; a node does what one shard can see.
"""

from __future__ import annotations

import numpy as np

from ecs.commands import place_op
from ecs.rng import Rng
from systems.action_order import ActionOrderIndex
from systems.actions import ACTION_FIELDS, ActionBatch
from systems.anomaly_score import HitVictims, PopulationBaseline, scored_rows
from systems.anomaly_score.layout import STAT_FIELDS
from systems.apply_actions import ActionEffects, TradeOffer
from systems.components import Ghost, Health, Link, Player, Position
from systems.context import TickContext
from systems.density import DensityGrid
from systems.lifecycle import Deaths, Revived
from systems.orchestration import EventMember
from systems.regions import RegionStats
from systems.replication import ReplicationPlan
from worlds.cluster.events import DIRECTOR
from worlds.cluster.population import LEARNER, scorer
from worlds.cluster.protocol import (Baseline, DensityCounts, Fields, GhostDelta, GroupResult, HandOff, HandOffAck,
                                     Loan, PlayerEvidence, ShardHash, decode, encode, pack, unpack)
from worlds.cluster.rows import encode_rows, write_rows
from worlds.cluster.shard import Shard, shard_catalog

_NONE = np.empty(0, np.int64)


class Node:
    def __init__(self, index: int, shards: int, defn, allocator, shard_map, halo_m: float, max_speed_mps: float,
                 seed: int) -> None:
        self.index = index
        self.shard = Shard(index, shards, defn, allocator, shard_map, halo_m, max_speed_mps)
        self.defn, self.seed, self.max_speed_mps = defn, seed, max_speed_mps
        self.rng = Rng(seed)
        self.map, self.allocator = shard_map, allocator
        self.catalog = shard_catalog(self.shard)
        learner = scorer(self.shard)
        if learner is not None:  # shards judge by the baseline they are sent (``population``)
            learner.learns = False
        self._steps = None
        self._routed: list = []  # the Actions this shard was sent this tick
        self._own: ActionBatch | None = None
        self._deaths_before = None
        self._learner_rows = None

    @property
    def world(self):
        return self.shard.world

    def _comps(self, names) -> tuple:
        return tuple(self.catalog[n] for n in names)

    # -- set-up and between ticks ------------------------------------------------------------------
    def adopt(self, frames: list[bytes]) -> None:
        """The rows this shard owns at the start (``HandOff`` frames from the template world)."""
        for m in map(decode, frames):
            write_rows(self.world, m.rows, self.catalog)
        self.shard.index_now()

    def allocator_ops(self, ops: list) -> None:
        """Replay the world-wide allocator's draws and frees (a shard in a process of its own
        keeps a replica, from which its event director draws in step)."""
        for kind, arg in ops:
            if kind == "allocate":
                self.allocator.allocate(int(arg))
            else:
                for e in arg.tolist():
                    self.allocator.release(int(e))

    def leaving(self) -> tuple[np.ndarray, int]:
        """((k, 2) id and new owner of every owned entity that belongs elsewhere now, placed
        entities owned)."""
        sh, s = self.shard, self.index
        parts = []
        plan = self.world.resources.get(ReplicationPlan)
        if plan is not None:
            away = plan.dest != s
            parts.append(np.stack([plan.ids[away], plan.dest[away]], axis=1))
        unplaced = sh.unplaced_owned()
        if s != 0 and unplaced.size:
            parts.append(np.stack([unplaced, np.zeros(unplaced.size, np.int64)], axis=1))
        moves = np.concatenate(parts).astype(np.int64) if parts else np.empty((0, 2), np.int64)
        return moves, self.load()

    def load(self) -> int:
        return sum(t.n for t in self.shard.owned_tables() if t.has(Position))

    def hand_out(self, tick: int, split: np.ndarray, by_dest: dict) -> list[tuple[int, bytes]]:
        """The layout's splits as the coordinator's balancer set them; phase one of the
        hand-offs: the whole rows of the entities going to each new owner."""
        lay = self.map.layout
        if not np.array_equal(lay.split, split):
            lay.set_split(np.asarray(split, np.float64))
            self.map.refresh()
        return [(d, encode(HandOff(tick, self.index, d, encode_rows(self.world, ids)))) for d, ids in by_dest.items()]

    def hand_in(self, tick: int, frames: list[bytes]) -> list[tuple[int, bytes]]:
        """Take the rows handed over (a ghost copy gives way to the owned row); the acks."""
        acks = []
        for m in map(decode, frames):
            ids = np.concatenate([unpack(r.ids, np.int64) for r in m.rows])
            self.shard.drop_copies(ids)
            write_rows(self.world, m.rows, self.catalog)
            acks.append((m.src, encode(HandOffAck(tick, self.index, m.src, pack(ids, np.int64)))))
        return acks

    def hand_done(self, frames: list[bytes]) -> None:
        """Phase two: let go of what the new owners hold (its ghosts go with the next delta)."""
        for m in map(decode, frames):
            self.world.hand_off_many(unpack(m.ids, np.int64))

    def route_in(self, frames: list[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Actions sent here: (their places in the tick's batch, whether this shard owns the
        actor) per message; the coordinator forwards those it does not."""
        out = []
        for m in map(decode, frames):
            self._routed.append(m.actions)
            idx = unpack(m.actions.index, np.int64)
            actor = unpack(m.actions.columns["actor"], np.int64)
            table, _ = self.world.locate_many(actor)
            owned = np.array([t >= 0 and not self.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
            out.append((idx, owned))
        return out

    def interest(self, tick: int, named: dict, comps: list[str], lag: int) -> list[tuple[int, bytes, int]]:
        """Who sees what of this shard (its border, what the neighbours' actions name, the
        world's unplaced entities from shard 0, and for shard 0's director every player and
        event mob), then the ghosts' deltas of ``comps``."""
        sh = self.shard
        plan = sh.replication.plan(self.world)
        for d in sh.neighbours:
            want = [plan.seen_by(d), named.get(d, _NONE)]
            if self.index == 0:
                want.append(sh.unplaced_owned())
            if d == 0:
                want.append(self.watched())
            sh.interest[d] = np.unique(np.concatenate(want))
        return self.deltas(tick, comps, lag)

    def watched(self, ids: np.ndarray | None = None) -> np.ndarray:
        """What the director reads of this shard besides its border: the players and event
        mobs it owns (those among ``ids`` when given). Nothing in a world without events."""
        if getattr(self.defn, "events", None) is None or self.index == DIRECTOR:
            return _NONE
        parts = [t.ids for t in self.shard.owned_tables() if t.has(Player) or t.has(EventMember)]
        mine = np.concatenate(parts) if parts else _NONE
        return mine if ids is None else np.intersect1d(mine, ids)

    def deltas(self, tick: int, comps: list[str] | None, lag: int = 0) -> list[tuple[int, bytes, int]]:
        """(dst, GhostDelta frame, changed rows it holds already) of every neighbour's delta."""
        components = None if comps is None else self._comps(comps)
        return [(delta.dst, encode(delta), changed) for delta, changed in self.shard.ghost_deltas(tick, components)]

    def deliver(self, frames: list[bytes]) -> list[int]:
        """Take what was sent here: ghosts (every drop first), results of groups and of the
        director, cheat-statistics hurt, density counts, the baseline. Returns the ids this
        freed (for the world-wide allocator)."""
        messages = [decode(f) for f in frames]
        ghosts = [m for m in messages if isinstance(m, GhostDelta)]
        if ghosts:
            self.shard.receive_ghosts(ghosts, self.catalog)
        for m in messages:
            if isinstance(m, GroupResult):
                write_rows(self.world, m.rows, self.catalog)
                apply_fields(self.world, m.fields, self.catalog)
                for e in unpack(m.drop, np.int64).tolist():
                    if self.world.is_alive(e):
                        self.world.despawn(e)
            elif isinstance(m, DensityCounts):
                raw = self.world.resources[DensityGrid].raw
                raw[0] += unpack(m.players, np.float64, "DensityCounts.players")
                if m.npcs:
                    raw[1] += unpack(m.npcs, np.float64, "DensityCounts.npcs")
            elif isinstance(m, Baseline):
                self.world.resources[PopulationBaseline].adopt(unpack(m.scalars, np.float64, "Baseline.scalars"),
                                                               unpack(m.hit_rate, np.float64, "Baseline.hit_rate"),
                                                               m.tick, m.report)
            elif isinstance(m, Loan):
                self.shard.lend(m.rows, m.src, self.catalog)
        return self.released()

    def released(self) -> list[int]:
        reg = self.world.registry
        out, reg.released = list(reg.released), []
        return out

    # -- the tick ------------------------------------------------------------------------------------
    def begin(self, tick: int, dt_s: float, own: np.ndarray) -> None:
        """This shard's actions (those of ``own``, from what it was sent) and its schedule's steps."""
        cols = {name: [] for name, _ in ACTION_FIELDS}
        index = []
        for a in self._routed:
            index.append(unpack(a.index, np.int64))
            for name, dtype in ACTION_FIELDS:
                cols[name].append(unpack(a.columns[name], dtype))
        self._routed = []
        if index:
            index = np.concatenate(index)
            keep = np.flatnonzero(np.isin(index, own))
            keep = keep[np.argsort(index[keep], kind="stable")]
            sub = ActionBatch(**{name: np.concatenate(cols[name])[keep].copy() for name, _ in ACTION_FIELDS})
        else:
            sub = ActionBatch.empty()
        self._own = sub
        self.world.resources[ActionBatch] = sub
        ctx = TickContext(tick=tick, dt_s=dt_s, seed=self.seed, rng=self.rng, defn=self.defn,
                          max_speed_mps=self.max_speed_mps)
        self._ctx = ctx
        self._steps = self.shard.schedule.steps(self.world, ctx, skip=("ActionOrder",))

    def step(self, name: str, comps: list[str], extra: dict) -> dict:
        """Run this shard's next system (``name``) and report what the world must hear of it:
        ids drawn and keyed spawns waiting for ids, ids freed, new deaths, and what ``name``
        owes (below). What the step wrote into ghosts is put back."""
        sh, w = self.shard, self.world
        sh.snapshot(self._comps(comps))
        kills = extra.get("kills", False)
        self._deaths_before = _deaths_copy(w) if kills else None
        directing = "batch" in extra
        if directing:  # the director reads the whole tick's actions, with their outcomes
            own_batch = w.resources.get(ActionBatch)
            w.resources[ActionBatch] = _batch(decode(extra["batch"]).actions)
        system = next(self._steps)
        if system.name != name:
            raise RuntimeError(f"shard {self.index}: stepped {system.name}, the world is at {name}")
        out: dict = {}
        if name == "ApplyActions":
            res = w.resources.get(ActionEffects)
            if extra.get("resolving") and res is not None:
                sub = w.resources[ActionBatch]
                out["resolved"] = (sub.status.copy(), res.effect.copy(), res.looted_rare.copy(), res.killed.copy(),
                                   {k: getattr(res, k) for k in ("claims_won", "claims_lost", "trades_done",
                                                                 "offers_made")})
            out["changes"] = _changes(sh)
        if directing:
            w.resources[ActionBatch] = own_batch
            out["changes"] = _changes(sh)
        if name == "ActionValidation":
            out["validated"] = {f: getattr(self._own, f).copy() for f in ("status", "event_ms", "excess_ms",
                                                                            "speed_ratio")}
        if "named" in extra:
            out["positions"] = self._positions(extra["named"])
        if "count" in extra and self.index != DIRECTOR:  # this shard's density counts, for the director
            players, npcs = extra["count"]
            raw = w.resources[DensityGrid].raw
            out["frames"] = [(DIRECTOR, encode(DensityCounts(self._ctx.tick, self.index, DIRECTOR, pack(raw[0]),
                                                             pack(raw[1]) if npcs else b"")))]
        if name == "AnomalyScore":
            hurt = w.resources.get(HitVictims)
            if hurt is not None and hurt.ids.size:
                out["hurt"] = (np.unique(hurt.ids), float(hurt.seen_ms))
            learner = scorer(sh) if self.index == LEARNER else None
            if learner is not None and learner.advance_learning(w):
                out["frames"] = self._baseline_frames()
        if name == "Lifecycle" and Revived in w.resources:
            out["revived"] = int(w.resources[Revived].ids.size)
        if extra.get("stand"):
            out["stand"] = self.stand()
        if kills:
            out["deaths"] = self._new_deaths(extra.get("authoritative", False))
        drawn = w.registry.drawn
        if drawn:
            ids = np.concatenate(drawn)
            drawn.clear()
            out["drawn"] = ids[w.locate_many(ids)[0] >= 0]
            out["all_drawn"] = ids
        if w.keyed_pending:
            out["keyed"] = [op[1] for op in w.keyed_pending]
        out["released"] = self.released()
        sh.restore()
        return out

    def _positions(self, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, xs, ys = [], [], []
        table, row = self.world.locate_many(mine)
        for t in np.unique(table[table >= 0]).tolist():
            held = self.world.tables[t]
            if held.has(Position) and not held.has(Ghost):
                sel = table == t
                ids.append(mine[sel])
                xs.append(held.column(Position, "x")[row[sel]])
                ys.append(held.column(Position, "y")[row[sel]])
        return _joined(ids, np.int64), _joined(xs, np.float64), _joined(ys, np.float64)

    def _new_deaths(self, authoritative: bool):
        """(ids, ticks) the step's deaths: all of them, or (for steps every shard computes for
        what it holds) only those of entities owned here; and whether Deaths is unchanged."""
        d, d0 = self.world.resources.get(Deaths), self._deaths_before
        if d is None or d0 is None:
            return None
        new = _new_deaths(d0, d)
        if not authoritative and new[0].size:
            table, _ = self.world.locate_many(new[0])
            mine = np.array([t >= 0 and not self.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
            new = (new[0][mine], new[1][mine])
        return new[0], new[1], bool(np.array_equal(d.ids, d0[0]))

    def deaths(self, ids: np.ndarray, ticks: np.ndarray) -> None:
        """Every shard's record of the step's deaths: what it had, and all that were found."""
        d, d0 = self.world.resources.get(Deaths), self._deaths_before
        if d is None or d0 is None:
            return
        d.ids, d.tick = d0
        for t in np.unique(ticks).tolist():
            d.record(np.unique(ids[ticks == t]), t)

    def place(self, given: list[np.ndarray]) -> None:
        """Keyed spawns placed with the ids the world drew for them, in the order recorded."""
        w = self.world
        for op, ids in zip(w.keyed_pending, given):
            w.registry._hold(ids)
            place_op(w, op, ids)
        w.keyed_pending.clear()

    def add_interest(self, placed: np.ndarray) -> bool:
        """Newcomers and the revived join the interest of the shards near where they stand."""
        sh = self.shard
        placed = np.concatenate([self.world.resources[Revived].ids, placed])
        if placed.size == 0:
            return False
        added = False
        plan = sh.replication.plan_of(self.world, placed)
        for d in sh.neighbours:
            seen = plan.seen_by(d)
            if d == 0:
                seen = np.union1d(seen, self.watched(placed))
            if seen.size:
                sh.interest[d] = np.union1d(sh.interest[d], seen)
                added = True
        return added

    def lacking(self, touched: np.ndarray) -> np.ndarray:
        return touched[self.world.locate_many(touched)[0] < 0]

    def loans(self, tick: int, wanted: dict) -> list[tuple[int, bytes, int]]:
        """Rows lent to each resolver that lacks them (those alive here)."""
        out = []
        for s, ids in wanted.items():
            ids = ids[self.world.locate_many(ids)[0] >= 0]
            if ids.size:
                out.append((s, encode(Loan(tick, self.index, s, encode_rows(self.world, ids))), int(ids.size)))
        return out

    def resolve(self, frame: bytes, group: np.ndarray, effect_ms: np.ndarray) -> None:
        """The conflict groups this shard resolves: their actions, in the tick's order."""
        sub = _batch(decode(frame).actions)
        self.world.resources[ActionBatch] = sub
        self.world.resources[ActionOrderIndex] = ActionOrderIndex(np.arange(sub.n), group, effect_ms)

    def outcomes(self, status: np.ndarray, effect: np.ndarray, looted: np.ndarray) -> None:
        """This shard's own actions back, with the outcomes their resolvers found."""
        sub = self._own
        sub.status[:] = status
        self.world.resources[ActionBatch] = sub
        self.world.resources[ActionEffects] = ActionEffects(effect, _NONE, looted_rare=looted)

    def evidence(self, tick: int) -> list[tuple[int, bytes]]:
        """On a learning tick: this shard's scored players for the learner (its own, kept)."""
        ids, stats = scored_rows(self.world)
        if self.index == LEARNER:
            self._learner_rows = (ids, stats)
            return []
        return [(LEARNER, encode(PlayerEvidence(tick, self.index, LEARNER, pack(ids), pack(stats.ravel()),
                                                len(STAT_FIELDS))))]

    def learn(self, tick: int, frames: list[bytes]) -> list[tuple[int, bytes]]:
        """The learner begins the baseline from every shard's players, in id order; the baseline
        frames for the others when it was learned at once."""
        own_ids, own_stats = self._learner_rows
        ids, stats = [own_ids], [own_stats]
        for m in map(decode, frames):
            ids.append(unpack(m.ids, np.int64, "PlayerEvidence.ids"))
            stats.append(unpack(m.stats, np.float64, "PlayerEvidence.stats").reshape(-1, m.fields))
        every, rows = np.concatenate(ids), np.concatenate(stats)
        scorer(self.shard).start_learning(self.world, rows[np.argsort(every, kind="stable")], tick)
        if self.world.resources[PopulationBaseline].job is None:  # learned at once
            return self._baseline_frames()
        return []

    def _baseline_frames(self) -> list[tuple[int, bytes]]:
        base: PopulationBaseline = self.world.resources[PopulationBaseline]
        return [(s, encode(Baseline(base.tick, LEARNER, s, pack(base.scalars), pack(base.hit_rate), base.report)))
                for s in self.shard.neighbours]

    def finish(self, tick: int, hashing: bool) -> dict:
        """The tick's end: borrowed rows given back; the systems' time, the tick's counters (shard
        0's), this shard's part of the hash, its load."""
        sh = self.shard
        sh.return_borrowed()
        self._steps = None
        out = {"systems_ms": sum(sh.schedule.last_timings_ms.values()), "load": self.load(),
               "timings": dict(sh.schedule.last_timings_ms)}
        if self.index == 0:
            out["stats"] = dict(self._ctx.stats)
        if hashing:
            out["hash"] = self.hash_frame(tick)
        return out

    # -- reading -------------------------------------------------------------------------------------
    def hash_frame(self, tick: int) -> bytes:
        owned, ghosts = self.shard.counts()
        return encode(ShardHash(tick, self.index, self.shard.hash_part(), owned, ghosts))

    def counts(self) -> tuple[int, int, int]:
        owned, ghosts = self.shard.counts()
        return self.load(), owned, ghosts

    def stand(self) -> tuple[np.ndarray, ...]:
        """(ids, x, y, alive) of every placed entity owned here."""
        parts = []
        for t in self.shard.owned_tables():
            if t.has(Position):
                alive = t.column(Health, "dead") == 0 if t.has(Health) else np.ones(t.n, np.bool_)
                parts.append((t.ids.copy(), t.column(Position, "x").copy(), t.column(Position, "y").copy(), alive))
        if not parts:
            return _NONE, np.empty(0), np.empty(0), np.empty(0, np.bool_)
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))

    def process(self) -> dict:
        from worlds.cluster.hosts import process_info

        return process_info()

    def region_stats(self) -> RegionStats:
        return self.world.resources[RegionStats]

    def owned_ids(self) -> np.ndarray:
        return self.shard.owned_ids()

    def owned_rows(self) -> tuple[list[bytes], dict]:
        """Every owned row (``HandOff`` frames, nothing skipped) and, from shard 0, the world-wide
        resources a summary reads."""
        frames = []
        for t in self.shard.owned_tables():
            frames.append(encode(HandOff(-1, self.index, -1, encode_rows(self.world, t.ids, skip=()))))
        from worlds.cluster.view import WORLD_RESOURCES

        res = {}
        if self.index == 0:
            res = {k.__name__: self.world.resources[k] for k in WORLD_RESOURCES if k in self.world.resources}
        return frames, res

    def resource(self, name: str):
        return next((v for k, v in self.world.resources.items() if getattr(k, "__name__", None) == name), None)

    # -- the server loop's calls between ticks --------------------------------------------------------
    def disconnect(self, player: int, owner: bool) -> list[int]:
        if owner:
            self.world.set(player, Player, connected=0)
        for t in [t for t in self.shard.owned_tables() if t.has(TradeOffer)]:  # its offers withdrawn
            hit = (t.column(TradeOffer, "giver") == player) | (t.column(TradeOffer, "taker") == player)
            for e in t.ids[hit].copy().tolist():
                self.world.despawn(e)
        return self.released()

    def reconnect(self, player: int, now_ms: float) -> None:
        self.world.set(player, Player, connected=1)
        self.world.set(player, Link, last_recv_ms=now_ms)


def apply_fields(world, fields: list[Fields], comps) -> None:
    """New field values by id, into the tables that hold the component."""
    for f in fields:
        comp = comps[f.component]
        ids = unpack(f.ids, np.int64, "Fields.ids")
        values = unpack(f.data, f.dtype, "Fields.data")
        table, row = world.locate_many(ids)
        for t in np.unique(table[table >= 0]).tolist():
            if world.tables[t].has(comp):
                sel = table == t
                world.tables[t].column(comp, f.field)[row[sel]] = values[sel]


def _changes(sh) -> tuple[list, np.ndarray]:
    changed, gone = sh.changes()
    return [(ids, c.name, f, values) for ids, c, f, values in changed], gone


def _batch(actions) -> ActionBatch:
    return ActionBatch(**{name: unpack(actions.columns[name], dtype).copy() for name, dtype in ACTION_FIELDS})


def _deaths_copy(world):
    d = world.resources.get(Deaths)
    return None if d is None else (d.ids.copy(), d.tick.copy())


def _new_deaths(before, deaths: Deaths) -> tuple[np.ndarray, np.ndarray]:
    ids0, t0 = before
    key0 = set(zip(ids0.tolist(), t0.tolist()))
    new = [(i, t) for i, t in zip(deaths.ids.tolist(), deaths.tick.tolist()) if (i, t) not in key0]
    return (np.array([i for i, _ in new], np.int64), np.array([t for _, t in new], np.int64))


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)
