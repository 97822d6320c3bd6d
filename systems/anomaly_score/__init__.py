"""Tick step 7: streaming evidence per player, and flags when it becomes overwhelming.

Validation refuses the impossible; this step scores the improbable. Every action of the tick
(accepted or refused) updates the actor's ``CheatStats`` (``fold``), and a player is flagged,
with the features that raised it, once one of these tests crosses its threshold (``judge``):

- refusal history: impossible movement, timing, rate or economy actions, counted by class;
- speed: a CUSUM of the claimed speed ratio above 1 (sustained speeding, not one burst);
- aim (``aim``): whether a player's hits fall with the difficulty of its shots the way the
  population's do, whatever the player's level: a Bayes factor of a difficulty-blind hit
  chance over the population's curve shifted by the player's own level;
- reaction: time from being hurt (as the client saw it) to the next attack: inhumanly fast
  and inhumanly steady;
- target acquisition (``acquisition``): time from seeing its foe die to the first attack on
  another, when the weapon was ready and the new foe surely in reach; its Bayes factor
  multiplies with the aim factor (independent evidence);
- rhythm: the spread of the intervals between deliberate actions (not the moves clients send
  as a heartbeat, nor an attack as soon as its weapon allowed, which times the weapon) and how
  often one repeats the last: a bot keeps its own time; people, and the population, do not;
- timing: the share of its attacks and loots that arrived later than its link explains by
  ``excess_delay_ms`` (validation clamps each such claim, so back-dating wins nothing; a client
  that keeps doing it has most of them late, while a heavy tail of network delays or a
  congested spell makes only a few of an honest player's late: a share, not a mean, that one
  bad spell cannot drag up);
- luck: the binomial tail of rare items found in the corpses a player looted.

The statistical tests (aim, acquisition, rhythm) judge by the population's baseline
(``population``): references learned from every player as they play, and thresholds from the
population's own scores so that the false-positive rate holds on a population the world file's
priors do not describe. Flags backed by refused impossible actions are certain; the others
suspect (``worlds.cheat_report``).
"""

from __future__ import annotations

import math

import numpy as np

from ecs import Phase, System
from systems.actions import ActionBatch, by_kind, read_targets
from systems.anomaly_score.acquisition import ACQUIRE_WINDOW_MS, _acquired, acquire_log_bf, acquisition_model
from systems.anomaly_score.aim import AIM_BLIND, AIM_LEVELS, aim_log_bf, aim_table, shot_difficulty
from systems.anomaly_score.fold import _fold
from systems.anomaly_score.judge import _flags, _judge, population_scores, prior_baseline, thresholds
from systems.anomaly_score.layout import (AIM_BINS, ALL_CHANGED, FLAG_ACQUIRE, FLAG_AIM, FLAG_ECONOMY, FLAG_EXCESS,
                                          FLAG_LUCK, FLAG_MOVE, FLAG_NAMES, FLAG_RATE, FLAG_REACTION, FLAG_REGULAR,
                                          FLAG_SPEED, FLAG_TIMING, PLAYER_F8, REFUSAL_CLASS, SCORED_TESTS, STAT_FIELDS,
                                          TOP_SPEED, flag_names)
from systems.anomaly_score.population import PopulationBaseline, scored_rows
from systems.anomaly_score.tails import _least_extreme, _log_binom_tail
from systems.apply_actions import ActionEffects
from systems.columns import (Distinct, SlotMarks, gather, gather_fields, in_key_order, owner_walk, read_rows, scatter,
                             scatter_fields, sole_table)
from systems.components import CheatStats, Npc, Player
from systems.lifecycle import Deaths
from systems.npc_combat import NpcHits

# What the package offers (kernels beside the system, for tests and reports).
__all__ = ["ACQUIRE_WINDOW_MS", "AIM_BINS", "AIM_BLIND", "AIM_LEVELS", "ALL_CHANGED", "FLAG_ACQUIRE", "FLAG_AIM",
           "FLAG_ECONOMY", "FLAG_EXCESS", "FLAG_LUCK", "FLAG_MOVE", "FLAG_NAMES", "FLAG_RATE", "FLAG_REACTION",
           "FLAG_REGULAR", "FLAG_SPEED", "FLAG_TIMING", "REFUSAL_CLASS", "SCORED_TESTS", "STAT_FIELDS", "AnomalyScore",
           "HitVictims", "PopulationBaseline", "_acquired", "_flags", "_fold", "_judge", "_least_extreme",
           "_log_binom_tail", "acquire_log_bf", "acquisition_model", "aim_log_bf", "aim_table", "flag_names",
           "population_scores", "prior_baseline", "scored_rows", "shot_difficulty", "thresholds"]


class HitVictims:
    """Who this tick's scored hits hurt (``ids``), and when they see it (``seen_ms``): a shard
    tells the owners of victims that stand on other shards."""

    def __init__(self, ids: np.ndarray, seen_ms: float) -> None:
        self.ids = ids
        self.seen_ms = seen_ms


class AnomalyScore(System):
    phase = Phase.SCORE
    reads = (ActionBatch, ActionEffects, NpcHits, Deaths, Player, Npc)
    writes = (CheatStats, HitVictims, PopulationBaseline)
    reads_others = (Player, Npc)  # a target's top speed

    def __init__(self, world, defn) -> None:
        c = defn.cheat
        self.th = thresholds(c)
        self.rare_p = c.rare_drop_p
        self.range_m = defn.rules.ranged_range_m
        self.speed_ref = defn.rules.player_speed_mps
        r = defn.rules
        self.reach = by_kind(melee=r.melee_reach_m, ranged=r.ranged_range_m, cast=r.cast_range_m)
        self.interval = by_kind(melee=r.melee_interval_ms, ranged=r.ranged_interval_ms, cast=r.cast_cooldown_ms)
        self.speed_slack = 1.0 + r.speed_tolerance
        self._marks = SlotMarks()
        # Deaths are looked up for as long as an action reacting to one may still be accepted:
        # the rewind window, the stale limit, the reaction window and a second of round trip.
        kept_ms = defn.world.rewind_window_ms + r.stale_limit_ms + ACQUIRE_WINDOW_MS + 1000.0
        world.resources.setdefault(Deaths, Deaths()).keep(math.ceil(kept_ms * defn.world.tick_rate_hz / 1000.0))
        self._dirty = np.zeros(0, np.int64)  # per stats row, 0 between ticks (see ``_fold``)
        self._least_repeats = np.full(1 << 14, -1, np.int64)  # the repeat test's thresholds, by intervals
        self._memo_tick = -2  # the baseline those thresholds were found under
        world.resources.setdefault(PopulationBaseline, PopulationBaseline(self.th))
        self.learn_every = max(1, round(c.baseline_every_s * defn.world.tick_rate_hz))
        self.fp_rate = c.false_positive_rate
        self.min_population = c.min_population
        self.learns = True  # False on shards: shard 0 learns from all of them (``worlds.cluster.population``)
        # The learning's kernel is loaded now, not on the first learning tick.
        population_scores(np.zeros((0, len(STAT_FIELDS))), self.th, *prior_baseline(self.th))

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        effects: ActionEffects | None = world.resources.get(ActionEffects)
        if effects is None:
            return
        # After the fold, this tick's hits: they are answered later. Players hurt this tick see
        # it at the tick's end (plus half their round trip). A victim hit twice is written twice.
        table, row = np.empty(0, np.int32), np.empty(0, np.int64)
        if batch.n:
            table, row = self._fold_tick(world, ctx, batch, effects)
        if self.learns:
            self.advance_learning(world)
            if self.learning(ctx.tick):
                self.start_learning(world, scored_rows(world)[1], ctx.tick)
        seen_ms = ctx.time_ms + 1000.0 * ctx.dt_s
        world.resources[HitVictims] = HitVictims(
            np.concatenate([world.tables[t].ids[row[table == t]] for t in np.unique(table).tolist()] or
                           [np.empty(0, np.int64)]), seen_ms)
        bites = world.resources.get(NpcHits)
        if bites is not None and bites.victims.size:
            bitten = world.locate_many(bites.victims)
            table, row = np.concatenate([table, bitten[0]]), np.concatenate([row, bitten[1]]).astype(np.int64)
        for t, held in enumerate(world.tables):
            if held.n and held.has(CheatStats):
                held.column(CheatStats, "hurt_ms")[row[table == t]] = seen_ms

    def learning(self, tick: int) -> bool:
        """Whether the baseline is learned at the end of ``tick``."""
        return (tick + 1) % self.learn_every == 0

    def start_learning(self, world, stats: np.ndarray, tick: int) -> None:
        """Begin learning the population's baseline from ``stats`` (every scored player's
        CheatStats row, in id order) into ``world``'s resource; ``advance_learning`` goes on
        with it on the ticks up to the next learning tick (all at once when there are fewer
        than four)."""
        base: PopulationBaseline = world.resources[PopulationBaseline]
        if base.job is not None:  # (never with learning ticks four or more apart)
            base.advance(None)
        base.start(stats, self.th, tick, self.fp_rate, self.min_population)
        if self.learn_every < 4:
            base.advance(None)

    def advance_learning(self, world) -> bool:
        """One tick's share of the baseline being learned: the references on the tick after
        the learning tick, the players' scores over the ticks after it but the last before the
        next learning tick, the thresholds on that one. True when the new baseline was put in
        force (it judges from the next tick on)."""
        base: PopulationBaseline = world.resources[PopulationBaseline]
        if base.job is None:
            return False
        return base.advance(math.ceil(base.job.stats.shape[0] / (self.learn_every - 3)))

    def _fold_tick(self, world, ctx, batch, effects) -> tuple[np.ndarray, np.ndarray]:
        """Fold the tick's actions into their actors' statistics and re-judge only those actors
        (nobody else's evidence changed); return where those the tick's attacks hurt live
        (table, row). When every actor lives in one table (the usual case), the kernels work
        on the table's CheatStats and Player blocks in place, indexed by row."""
        a_table, a_row = batch.where(world, "actor")
        sole = int(sole_table(a_table))
        actors = None
        record = self._blocks(world.tables[sole]) if sole >= 0 else None
        if record is not None:
            stats, last_target, run = record
            owner = a_row  # -1 where the actor is not alive here
        else:  # gathered copies in the same layouts
            actors = Distinct(world, batch.actor, self._marks)
            at = actors.at
            stats = gather_fields(world, at, STAT_FIELDS)
            last_target, scored = gather(world, actors.ids, CheatStats, "last_target", at=at)
            run = gather_fields(world, at, tuple((Player, f) for f in PLAYER_F8))
            owner = np.where(actors.inverse >= 0, np.where(scored, np.arange(actors.n), -1)[actors.inverse], -1)
        rows = stats.shape[0]
        if self._dirty.shape[0] < rows:
            self._dirty = np.zeros(rows, np.int64)

        n = batch.n
        t_table, t_row = batch.where(world, "target")
        # The targets as validation saw them (the tick-start state other entities are judged by).
        seen = batch.targets_seen if batch.targets_seen is not None else read_targets(world, batch)
        deaths = world.resources.get(Deaths) or Deaths()
        hurt, pending = np.empty(n, np.bool_), np.empty((n, 2), np.int64)
        # Each actor's actions in client-time order (its clock offset is one for the tick): the
        # order validation walked them in (by sequence number) when it is that one, as for
        # honest clients.
        if batch.walk is not None and batch.walk[0] is owner and in_key_order(batch.walk[1], owner,
                                                                                batch.client_time_ms):
            order, grouped = batch.walk[1], True
        else:
            order, grouped = owner_walk(owner, batch.client_time_ms, rows)
        touched, q = _fold(order, grouped, owner, batch.kind, batch.status, batch.value, batch.client_time_ms,
                           batch.target, batch.x, batch.y, effects.effect, effects.looted_rare, batch.excess_ms,
                           batch.speed_ratio, seen, run, last_target, deaths.ids, deaths.tick, 1000.0 * ctx.dt_s,
                           REFUSAL_CLASS, self.interval, self.range_m, self.speed_ref, stats, self.th,
                           float(ctx.tick), self._dirty, hurt, pending)
        if q:  # acquisitions, if the new foe was surely in reach: how fast could it close in?
            at = pending[:q, 0]
            top_speed = np.zeros((q, len(TOP_SPEED)))
            read_rows(world, t_table[at], t_row[at], TOP_SPEED, top_speed)
            _acquired(pending[:q], owner, batch.kind, batch.x, batch.y, seen, top_speed, run,
                      ACQUIRE_WINDOW_MS + 1000.0 * ctx.dt_s, self.reach, self.speed_slack, stats, self._dirty)
        base: PopulationBaseline = world.resources[PopulationBaseline]
        if base.tick != self._memo_tick:
            self._least_repeats[:] = -1
            self._memo_tick = base.tick
        _judge(stats, touched, self._dirty, self.th, base.scalars, base.table, self.rare_p, float(ctx.tick),
               self._least_repeats)
        if actors is not None:
            at = actors.at.subset(scored)
            scatter_fields(world, at, STAT_FIELDS, stats[scored])
            scatter(world, actors.ids[scored], CheatStats, "last_target", last_target[scored], at=at)
        return t_table[hurt], t_row[hurt]

    @staticmethod
    def _blocks(table) -> tuple[np.ndarray, ...] | None:
        """A table's scored record in place: CheatStats' float64 block as (capacity, fields),
        its last_target column and Player's float64 block as (capacity, fields); None when the
        table's entities are not scored players. Derived once per layout of the table."""
        return table.plan("score_record", lambda t: (
            t.block(CheatStats, "shots")[0].T, t.full_column(CheatStats, "last_target"),
            t.block(Player, PLAYER_F8[0])[0].T) if t.has(CheatStats) and t.has(Player) else None)
