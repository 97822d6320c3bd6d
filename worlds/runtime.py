"""The world runtime a server main loop drives: load a file, submit actions, step, read back.

>>> sim = Simulation.from_file("worlds/defs/arena.toml", seed=7)
>>> sim.submit([{"player": pid, "seq": 1, "kind": "move", "client_time_ms": 0.0, "x": 5, "y": 5}])
>>> report = sim.step()          # one fixed-timestep tick
>>> report.applied, report.refused, report.state_hash

Actions come from outside (``submit``) or from the built-in client simulation
(``generate=True``); either way they wait in the inbox until the tick in which the server has
received them, and that tick's batch goes through the ten steps of the schedule.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecs import FixedClock, Rng, Schedule, World
from ecs.hashing import combine
from systems.action_order import ActionOrder
from systems.actions import KIND_NAMES, REFUSAL_NAMES, ActionBatch, Refusal
from systems.apply_actions import ActionEffects, ApplyActions, TradeOffer
from systems.anomaly_score import AnomalyScore
from systems.components import CheatStats, Health, Inventory, Link, Loot, Npc, Player, Position, Velocity
from systems.columns import scatter
from systems.context import TickContext
from systems.ingest import Ingest
from systems.lifecycle import Lifecycle, npc_values
from systems.movement import Movement
from systems.npc_combat import NpcCombat
from systems.orchestration import event_systems
from systems.regions import RegionCell, Regions, RegionStats
from systems.spatial_index import SpatialHash, SpatialIndex
from systems.spawning import spawn_points
from systems.telemetry import Telemetry
from systems.validation import ActionValidation, clock_error_ms
from worlds.cheat_report import GroundTruth
from worlds.generator import ActionGenerator, client_network
from worlds.loader import load_world
from worlds.schema import WorldDef

PLAYER_ARCHETYPE = (Position, Velocity, Health, Player, Link, Inventory, CheatStats, RegionCell)
NPC_ARCHETYPE = (Position, Velocity, Health, Npc, Loot, RegionCell)
STREAM_INITIAL_SPAWN = 1


@dataclass
class TickReport:
    """What one tick did. ``refusals`` lists (player, seq, reason) of each refused action."""

    tick: int
    submitted: int
    applied: int
    refused: dict[str, int]
    refusals: list[tuple[int, int, str]]
    killed: list[int]
    state_hash: str | None  # None on ticks the simulation was told not to hash
    tick_ms: float
    system_ms: dict[str, float]
    action_to_effect_ms: np.ndarray = field(repr=False)
    conflicts: dict[str, int] = field(default_factory=dict)
    # The last tick whose journal frame is durable under the fsync policy (None: no journal):
    # actions of ticks up to it may be acknowledged to their clients.
    durable_tick: int | None = None


class Inbox:
    """Actions received but not yet ingested, with the tick each becomes due, and (for the
    simulated clients) the ground truth of whether each was impossible, kept beside them."""

    def __init__(self) -> None:
        self._batches: list[ActionBatch] = []
        self._due: list[np.ndarray] = []
        self._truth: list[np.ndarray] = []

    def put(self, batch: ActionBatch, due_tick: np.ndarray, truth: np.ndarray | None = None) -> None:
        if batch.n:
            self._batches.append(batch)
            self._due.append(np.asarray(due_tick, np.int64))
            self._truth.append(np.zeros(batch.n, np.bool_) if truth is None else np.asarray(truth, np.bool_))

    def seal(self, tick: int) -> tuple[ActionBatch, np.ndarray]:
        """Take every action due at or before ``tick``, in arrival order, with its truth."""
        if not self._batches:
            return ActionBatch.empty(), np.zeros(0, np.bool_)
        allb = ActionBatch.concat(self._batches)
        due = np.concatenate(self._due)
        truth = np.concatenate(self._truth)
        now = due <= tick
        later = np.flatnonzero(~now)
        self._batches = [allb.take(later)] if later.size else []
        self._due = [due[later]] if later.size else []
        self._truth = [truth[later]] if later.size else []
        ready = np.flatnonzero(now)
        ready = ready[np.argsort(allb.recv_time_ms[ready], kind="stable")]
        return allb.take(ready), truth[ready]

    def __len__(self) -> int:
        return sum(b.n for b in self._batches)


def tick_systems(world: World, defn: WorldDef, max_speed_mps: float, build: bool = True) -> list:
    """The systems of one tick, in DESIGN.md's ten steps, built for ``world``: one world's, or
    one shard's of a sharded world (which runs the same list, ``build=False``: the entities
    systems keep for the world, such as the density cells, are dealt to the shards with the
    rest)."""
    npc_pops = dict(enumerate(defn.npcs()))
    return [
        Ingest(),
        ActionValidation(defn, max_speed_mps),
        Lifecycle(world, defn, NPC_ARCHETYPE, npc_pops),
        Movement(world),
        SpatialHash(world, defn),
        Regions(world, defn),
        ActionOrder(defn),
        ApplyActions(world, defn),
        NpcCombat(world),
        AnomalyScore(world, defn),
        *event_systems(world, defn, NPC_ARCHETYPE, build=build),  # step 8: density field, event director
        Telemetry(),
    ]


def index_world(world: World, schedule: Schedule) -> None:
    """Build the spatial index before the first tick (the client simulation reads it)."""
    spatial = next(s for s in schedule.systems if isinstance(s, SpatialHash))
    spatial.index.rebuild(world, world.query(Position))
    world.resources[SpatialIndex] = spatial.index


class Simulation:
    def __init__(self, defn: WorldDef, seed: int | None = None, shard: int = 0, generate: bool = True,
                 hash_every: int = 1) -> None:
        """``hash_every``: compute the state hash every that many ticks (0: only on request);
        it costs under a millisecond at 100k entities, so every tick is hashed by default."""
        self.hash_every = hash_every
        self.defn = defn
        self.seed = defn.world.seed if seed is None else int(seed)
        self.clock = FixedClock(defn.world.tick_rate_hz)
        self.rng = Rng(self.seed)
        self.world = World(shard=shard)
        self.inbox = Inbox()
        self.max_speed_mps = max([p.speed_mps or defn.rules.player_speed_mps for p in defn.players()],
                                 default=defn.rules.player_speed_mps)
        self.player_ids, player_pop = self._spawn_players()
        self._spawn_npcs()
        self.world.apply_commands()
        # What the server has measured of each client's link (in a live server: pings).
        network = client_network(defn, self.player_ids, player_pop, self.rng)
        for name in ("rtt_ms", "clock_offset_ms", "jitter_ms"):
            scatter(self.world, self.player_ids, Player, name, network[name])
        scatter(self.world, self.player_ids, Player, "last_move_ms",
                -clock_error_ms(network["jitter_ms"], defn.rules.timing_slack_ms))
        self.generator = (
            ActionGenerator(defn, self.world, self.player_ids, player_pop, network, self.rng, self.clock.dt_s)
            if generate else None
        )
        self.schedule = Schedule(tick_systems(self.world, defn, self.max_speed_mps))
        index_world(self.world, self.schedule)
        self._placed = self.world.query(Position)
        self.truth = GroundTruth(self.generator)
        self.recorder = None
        self.external = None  # a StreamReader replacing the generator
        self.sealed_hook = None  # called with each sealed batch (a verifier's reference eats it)
        # Durable state (``worlds.store``): ``journal.record(tick, batch, out_of_band)`` takes
        # each sealed batch before its tick runs; ``replay(tick)`` gives the batch a recovery
        # replays instead of the inbox's; ``out_of_band`` are the inputs since the last tick.
        self.journal = None
        self.replay = None
        self.out_of_band: list[tuple[str, int]] = []
        # A recovery replaying ticks before its clients' checkpoint: the clients send nothing,
        # the journal's batch is the tick's (with the ground truth kept for it, if any).
        self.clients_paused = False
        self.paused_truth: dict[int, np.ndarray] = {}

    @classmethod
    def from_file(cls, path: str | Path, seed: int | None = None, **kw) -> Simulation:
        return cls(load_world(path), seed=seed, **kw)

    # -- population -------------------------------------------------------------------------
    def _spawn_players(self) -> tuple[np.ndarray, np.ndarray]:
        ids, pops = [], []
        for k, pop in enumerate(self.defn.players()):
            if pop.count == 0:
                continue
            keys = np.arange(pop.count, dtype=np.int64) + (k << 32)
            x, y = spawn_points(self.defn, pop.spawn, keys, 0, self.rng, STREAM_INITIAL_SPAWN)
            hp = self.defn.rules.player_hp
            e = self.world.spawn_batch(PLAYER_ARCHETYPE, pop.count, {
                Position: {"x": x, "y": y},
                Health: {"hp": hp, "max_hp": hp, "dead": 0, "died_tick": -1},
                Link: {"last_recv_ms": 0.0},  # connected at the start: silence is measured from here
                Player: {"last_x": x, "last_y": y, "last_seq": -1, "last_move_ms": 0.0, "life_start_ms": -1e18,
                         "speed_mps": pop.speed_mps or self.defn.rules.player_speed_mps, "team": pop.team,
                         "population": k},
                Inventory: {"gold": pop.gold, "potions": pop.potions},
            })
            ids.append(e)
            pops.append(np.full(pop.count, k, np.int64))
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(ids), np.concatenate(pops)

    def _spawn_npcs(self) -> None:
        for k, pop in enumerate(self.defn.npcs()):
            if pop.count == 0:
                continue
            keys = np.arange(pop.count, dtype=np.int64) + ((k + 1000) << 32)
            x, y = spawn_points(self.defn, pop.spawn, keys, 0, self.rng, STREAM_INITIAL_SPAWN)
            self.world.spawn_batch(NPC_ARCHETYPE, pop.count, npc_values(pop, k, x, y))

    # -- the server loop's API --------------------------------------------------------------
    @property
    def entity_count(self) -> int:
        """Entities placed in the world (players, NPCs, chests): not bookkeeping like offers."""
        return self._placed.count()

    @property
    def tick(self) -> int:
        """The tick the next ``step`` will run."""
        return self.clock.tick

    def submit(self, actions: ActionBatch | list[dict]) -> list[tuple[int, str]]:
        """Queue actions for the next tick. Dicts use the record fields of ``worlds.stream``
        (``player``, ``seq``, ``kind``, ``client_time_ms``, ``target``, ``x``, ``y``, ``value``,
        ``recv_time_ms``); returns (index, reason) for each dict refused as malformed."""
        if isinstance(actions, ActionBatch):
            self.inbox.put(actions, np.full(actions.n, self.tick, np.int64))
            return []
        from worlds.stream import StreamReader

        import msgspec

        lines = [msgspec.json.encode({"tick": self.tick, **a}).decode() for a in actions]
        reader = StreamReader(lines)
        batch = reader.batch_for(self.tick, self.clock.dt_ms)
        self.inbox.put(batch, np.full(batch.n, self.tick, np.int64))
        return [(no - 1, reason) for no, reason in reader.errors]

    def disconnect(self, player: int) -> None:
        """The player's client is gone: its avatar stays where it is, its actions are refused,
        and its pending trade offers (made or received) are withdrawn: a trade it was part of
        never started."""
        self.out_of_band.append(("disconnect", int(player)))
        self.world.set(player, Player, connected=0)
        offers = self.world.query(TradeOffer)
        involved = (offers.concat(TradeOffer, "giver") == player) | (offers.concat(TradeOffer, "taker") == player)
        for e in offers.ids()[involved].tolist():
            self.world.despawn(e)

    def reconnect(self, player: int) -> None:
        """The client is back: the link's silence while it was gone is no stall."""
        self.out_of_band.append(("reconnect", int(player)))
        self.world.set(player, Player, connected=1)
        self.world.set(player, Link, last_recv_ms=self.clock.time_ms_of(self.tick))

    @property
    def regions(self) -> RegionStats:
        return self.world.resources[RegionStats]

    def state_hash(self) -> str:
        """Hex digest of the world's logical state (component tables) at the current tick."""
        return f"{combine(self.world.state_hash(), self.clock.tick):016x}"

    def step(self, wall_start: float | None = None) -> TickReport:
        """Run one tick. ``wall_start``: when (perf_counter) the tick was due, for latency."""
        tick = self.clock.tick
        self._clients_send(tick, self.world.resources.get(SpatialIndex))
        # The tick proper starts here: what came before is the clients' side of the wire.
        t0 = time.perf_counter()
        if wall_start is None:
            wall_start = t0
        batch, truth = self._seal(tick)
        self.world.resources[ActionBatch] = batch
        self.last_batch = batch  # the tick's actions, with their outcomes once it has run
        ctx = TickContext(tick=tick, dt_s=self.clock.dt_s, seed=self.seed, rng=self.rng, defn=self.defn,
                          max_speed_mps=self.max_speed_mps)
        # No garbage collection inside the tick: a pause would land on whichever system happened
        # to allocate, and on the action-to-effect path. What the tick left is collected at its
        # boundary instead (the next allocation after it, if the collector is due).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.schedule.run(self.world, ctx)
        finally:
            if collecting:
                gc.enable()
        self.clock.advance()
        t1 = time.perf_counter()
        applied = batch.status == 0
        wait_ms = np.maximum(self.clock.time_ms_of(tick) - batch.recv_time_ms[applied], 0.0)
        a2e = wait_ms + (t1 - wall_start) * 1000.0
        refused_ix = np.flatnonzero(~applied)
        effects = self.world.resources.get(ActionEffects)
        self.truth.record(batch, truth)
        return TickReport(
            tick=tick,
            submitted=batch.n,
            applied=int(applied.sum()),
            refused=ctx.stats.get("actions_refused", {}),
            refusals=[(int(batch.actor[i]), int(batch.seq[i]), REFUSAL_NAMES[int(batch.status[i])]) for i in refused_ix.tolist()],
            killed=[] if effects is None else effects.killed.tolist(),
            state_hash=self.state_hash() if self.hash_every and tick % self.hash_every == 0 else None,
            tick_ms=(t1 - t0) * 1000.0,
            system_ms=dict(self.schedule.last_timings_ms),
            action_to_effect_ms=a2e,
            conflicts=self._conflicts(ctx, batch, effects),
        )

    def _clients_send(self, tick: int, index) -> None:
        """The clients' side of the wire: this tick's replayed or simulated actions, into the
        inbox (the simulated clients look at the world through ``index``)."""
        if self.clients_paused:
            return
        if self.external is not None:
            replay = self.external.batch_for(tick, self.clock.dt_ms)
            self.inbox.put(replay, np.full(replay.n, tick, np.int64))
        elif self.generator is not None:
            batch, due = self.generator.generate(tick, index)
            self.inbox.put(batch, due, self.generator.truth)

    def _seal(self, tick: int) -> tuple[ActionBatch, np.ndarray]:
        """The tick's batch (journaled, recorded, and shown to ``sealed_hook``, when asked; the
        journal's own when a recovery replays it)."""
        if self.clients_paused:
            batch = self.replay(tick)
            truth = self.paused_truth.pop(tick, None)
            if truth is None or truth.shape[0] != batch.n:
                truth = np.zeros(batch.n, np.bool_)
        else:
            batch, truth = self.inbox.seal(tick)
            if self.replay is not None:
                replayed = self.replay(tick)
                if replayed is not None:
                    truth = truth if truth.shape[0] == replayed.n else np.zeros(replayed.n, np.bool_)
                    batch = replayed
        out_of_band, self.out_of_band = self.out_of_band, []
        if self.journal is not None:
            self.journal.record(tick, batch, out_of_band, truth)
        if self.sealed_hook is not None:
            self.sealed_hook(batch)
        if self.recorder is not None:
            from worlds.stream import write_batch

            write_batch(self.recorder, tick, batch)
        return batch, truth

    @staticmethod
    def _conflicts(ctx: TickContext, batch: ActionBatch, effects: ActionEffects | None) -> dict[str, int]:
        """The tick's conflict figures: groups, causality cycles, contested claims, damage."""
        hits = (batch.status == 0) & np.isin(batch.kind, [2, 3, 4]) & ~((batch.kind == 4) & (batch.value == 1))
        out = {
            "groups": int(ctx.stats.get("conflict_groups", 0)),
            "largest_group": int(ctx.stats.get("largest_group", 0)),
            "cycles_broken": int(ctx.stats.get("cycles_broken", 0)),
        }
        if effects is not None:
            out.update(claims_won=effects.claims_won, claims_lost=effects.claims_lost,
                       trades_done=effects.trades_done, offers_made=effects.offers_made,
                       damage_dealt=int(round(float(effects.effect[hits].sum()))), kills=int(effects.killed.size))
        return out


__all__ = ["KIND_NAMES", "Inbox", "Refusal", "Simulation", "TickReport"]
