"""Tick step 7: streaming evidence per player, and flags when it becomes overwhelming.

Validation refuses the impossible; this step scores the improbable. Every action of the tick
(accepted or refused) updates the actor's ``CheatStats``, and a player is flagged, with the
features that raised it, once one of these tests crosses the threshold the world file sets
(each chosen so that honest players, with their realistic spread of skill and networks, stay
below it at the target false-positive rate):

- refusal history: impossible movement, timing, rate or economy actions, counted by class;
- speed: a CUSUM of the claimed speed ratio above 1 (sustained speeding, not one burst);
- aim: where the hits land. A human's chance to hit is its skill s times the shot's base
  chance b (lower far away and on fast targets); an aimbot hits hard shots nearly as often as
  easy ones. The test is a streaming Bayes factor: hits and misses under a difficulty-blind
  hit chance a (any of ``AIM_BLIND``, equally likely) over the same under s x b, with s from
  the honest skill prior the world file declares (kept as log-likelihoods on a fixed grid of
  skills, so the state per player is constant). Under that prior the factor is a martingale
  for honest players, so the share of them that ever reach e^T is at most e^-T (Ville), at
  any number of shots: the threshold is a false-positive rate. It holds over the population
  (the most skilled few carry most of that risk) and as far as the server's b is right (a
  target that started or stopped between the client's view and ours halves or doubles it);
- reaction: time from being hurt (as the client saw it) to the next attack: inhumanly fast
  and inhumanly steady;
- target acquisition: time from seeing its foe die (the end of that tick, plus half the round
  trip) to the first attack on another, when the weapon was ready (or nearly) and the new
  foe surely in reach by then. Nobody aims at the next foe before noticing the last one is
  gone, so, unlike the hurt answer, no attack planned earlier blurs it; and a weapon or an
  approach can only delay it, never make a human look faster. Some 10-40 such switches a
  minute in a battle, counted in three bins (fast, quick, neither): a binomial tail of the
  fast ones for the fastest human, and a Bayes factor of all three against the honest
  reaction prior, which multiplies with the aim factor (independent evidence: the product
  of the two is still a martingale for honest players, so e^-T still bounds the flags);
- regularity: the coefficient of variation of the intervals between deliberate actions (not
  the moves clients send as a heartbeat): bots keep time, people do not;
- timing: the share of its attacks and loots that arrived later than its link explains by
  ``excess_delay_ms`` (validation clamps each such claim, so back-dating wins nothing; a client
  that keeps doing it has most of them late, while a heavy tail of network delays or a
  congested spell makes only a few of an honest player's late: a share, not a mean, that one
  bad spell cannot drag up);
- luck: the binomial tail of rare items found in the corpses a player looted.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.actions import SEEN_VX, SEEN_VY, SEEN_X, SEEN_Y, SPELL_HEAL, ActionBatch, by_kind, read_targets
from systems.apply_actions import ActionEffects
from systems.columns import (Distinct, SlotMarks, block_fields, gather, gather_fields, in_key_order, owner_walk,
                             read_rows, scatter, scatter_fields, sole_table)
from systems.components import CheatStats, Npc, Player
from systems.lifecycle import Deaths
from systems.npc_combat import NpcHits

FLAG_MOVE, FLAG_TIMING, FLAG_RATE, FLAG_ECONOMY, FLAG_SPEED, FLAG_AIM, FLAG_REACTION, FLAG_REGULAR, \
    FLAG_EXCESS, FLAG_LUCK, FLAG_ACQUIRE = (1 << k for k in range(11))
FLAG_NAMES = {FLAG_MOVE: "movement_refusals", FLAG_TIMING: "timing_refusals", FLAG_RATE: "rate_refusals",
              FLAG_ECONOMY: "economy_refusals", FLAG_SPEED: "speed_cusum", FLAG_AIM: "aim_difficulty",
              FLAG_REACTION: "reaction_time", FLAG_REGULAR: "timing_regularity", FLAG_EXCESS: "timestamp_excess",
              FLAG_LUCK: "loot_luck", FLAG_ACQUIRE: "acquisition_time"}
SPEED_CUSUM_K = 1.0  # reference ratio of the CUSUM: honest clients stay under top speed
SPEED_CUSUM_H = 2.0  # decision level
REPEAT_P = 0.15  # generous: two exponential intervals within 5 % (or 2x, 3x, 1/2x, 1/3x) of each other ~ 0.11
ACQUIRE_GRID = 12  # levels of the acquisition factor's cheat model
ACQUIRE_HUMAN = 16  # and of its honest one
ACQUIRE_CHEAT_SD_MS = 30.0
ACQUIRE_SLIP = 0.05
ACQUIRE_WINDOW_MS = 500.0  # a first attack on a new foe later than this after the last died is no reaction
ACQUIRE_READY_MS = 100.0  # the weapon must be ready this soon after the death was seen
# A back-dater's contested actions are nearly all late; an honest player's only when its
# network has a bad moment (a heavy tail of delays, a congested spell): a few in a hundred.
LATE_SHARE = 0.5
MIN_REPEAT_INTERVALS = 10  # the repeat test's tail needs no more: 9 of 9 repeats is ~4e-8 for a human
# What changed of a player's statistics in a tick: the tests whose evidence did not change are
# not run again (a tail test whose count of extremes stayed put only grows less significant).
(_TOUCHED, _AIM_CHANGED, _REPEATS_CHANGED, _LOOT_CHANGED, _ACQ_CHANGED, _REFUSED, _SPEED_CHANGED, _RHYTHM_CHANGED,
 _EXCESS_CHANGED, _REACT_CHANGED) = (1 << k for k in range(10))
_ALL_CHANGED = (1 << 10) - 1
_EVIDENCE = _ALL_CHANGED & ~_TOUCHED
_SWITCHED = 1 << 10  # not evidence: the player turned on another foe this tick (see ``_fold``)
# Skill levels of the aim test: here, not beside CheatStats, because numba's cache would not
# see a change made in another file (the asserts below hold the two together).
AIM_GRID = 9
# Hit chances of the difficulty-blind (aimbot) model, equally likely a priori: below 0.3 an
# aimbot gains nothing a human could not explain.
AIM_BLIND = np.linspace(0.3, 0.95, 14)
_LOG_BLIND_HIT, _LOG_BLIND_MISS = np.log(AIM_BLIND), np.log1p(-AIM_BLIND)
_FIELDS = CheatStats.fields
# Every field but last_target is float64: in a table they form one block, in this order.
_STAT_FIELDS = tuple((CheatStats, f) for f in _FIELDS if f != "last_target")
assert all(CheatStats.dtype[f] == np.float64 for _, f in _STAT_FIELDS)
# Positions in that block, by name.
(_SHOTS, _HITS, _AIM_LL, _REACT_N, _REACT_SUM, _REACT_SQ, _HURT_MS, _ACQ_N, _ACQ_FAST, _ACQ_QUICK, _LAST_MELEE,
 _LAST_RANGED, _LAST_CAST, _INT_N, _INT_SUM, _INT_SQ, _LAST_T_MS, _PREV_INT, _REPEATS, _EXCESS_N, _EXCESS_LATE, _LOOTS,
 _RARES, _R_MOVE, _R_TIMING, _R_RATE, _R_ECONOMY, _SPEED_CUSUM, _FLAGS, _FLAG_TICK) = (
    [f for _, f in _STAT_FIELDS].index(name) for name in (
        "shots", "hits", "aim_ll0", "react_n", "react_sum", "react_sq", "hurt_ms", "acq_n", "acq_fast", "acq_quick",
        "last_melee_ms", "last_ranged_ms", "last_cast_ms", "int_n", "int_sum", "int_sq", "last_t_ms", "prev_int",
        "repeats", "excess_n", "excess_late", "loots", "rares", "r_move", "r_timing", "r_rate", "r_economy",
        "speed_cusum", "flags", "flag_tick"))
assert [f for _, f in _STAT_FIELDS][_AIM_LL:_AIM_LL + AIM_GRID] == [f"aim_ll{k}" for k in range(AIM_GRID)]
assert _LAST_RANGED == _LAST_MELEE + 1 and _LAST_CAST == _LAST_MELEE + 2  # a weapon's clock by kind
# What the kernels read of the actors' Player records, and of a new foe's top speed.
_PLAYER_F8 = block_fields(Player, np.float64)
_OFFSET, _RTT, _SPEED = (_PLAYER_F8.index(f) for f in ("clock_offset_ms", "rtt_ms", "speed_mps"))
_TOP_SPEED = ((Player, "speed_mps"), (Npc, "speed_mps"))
# Refusal code -> class: 1 movement, 2 timing, 3 rate, 4 economy, 5 target (no evidence by itself).
_REFUSAL_CLASS = np.zeros(32, np.int64)
for _code in (7, 8, 17, 18):
    _REFUSAL_CLASS[_code] = 1
for _code in (4, 5, 6, 22):
    _REFUSAL_CLASS[_code] = 2
for _code in (20, 21):
    _REFUSAL_CLASS[_code] = 3
_REFUSAL_CLASS[12] = 4
for _code in (9, 10, 11, 13, 14, 15, 19):  # the target was wrong; the client still acted then
    _REFUSAL_CLASS[_code] = 5


@njit(inline="always", **JIT)
def _shot_chance(dist_m, range_m, target_speed_mps, speed_ref_mps):
    """Base chance that a perfectly skilled human hits a shot: lower far away and on fast targets."""
    d = min(max(dist_m / range_m, 0.0), 1.0)
    v = min(max(target_speed_mps / speed_ref_mps, 0.0), 1.0)
    return (1.0 - 0.8 * d) * (1.0 - 0.5 * v)


@njit(**JIT)
def _shot_chances(dist_m, range_m, target_speed_mps, speed_ref_mps):
    out = np.empty(dist_m.shape[0])
    for i in range(dist_m.shape[0]):
        out[i] = _shot_chance(dist_m[i], range_m, target_speed_mps[i], speed_ref_mps)
    return out


def shot_difficulty(dist_m: np.ndarray, range_m: float, target_speed_mps: np.ndarray,
                    speed_ref_mps: float) -> np.ndarray:
    """Base chance that a perfectly skilled human hits, per shot: lower far away and on fast
    targets. (n,) float64 arrays in and out."""
    return _shot_chances(np.asarray(dist_m, np.float64).reshape(-1), float(range_m),
                         np.asarray(target_speed_mps, np.float64).reshape(-1), float(speed_ref_mps))


@njit(**JIT)
def _log_binom_tail(k, n, p, stop=np.inf):
    """log P(X >= k) for X ~ Binomial(n, p), for tests that ask only whether it is below
    ``stop``.

    At or below the mean it answers 0 (log 1): an overestimate, never a false alarm. Above it
    the terms fall from the first, so they are summed from k until they stop mattering, each
    from the last by the ratio of binomial coefficients: the cost does not grow with n, and a
    player's statistics grow all game long. The sum also stops once it reaches e^stop: the
    answer is then some value at least ``stop`` (the tail is not tiny; how big, nobody asks).
    """
    if k <= 0.0 or k <= n * p:
        return 0.0
    if k > n:
        return -np.inf
    k = int(k)
    n = int(n)
    first = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
             + k * math.log(p) + (n - k) * math.log1p(-p))
    if first >= stop:
        return first
    enough = math.exp(min(stop - first, 700.0))  # the sum of term ratios at which the tail reaches e^stop
    odds = math.log(p) - math.log1p(-p)
    rel = 0.0  # log of term j over the first
    total = 1.0
    for j in range(k, n):
        rel += math.log((n - j) / (j + 1.0)) + odds
        if rel < -40.0 or total >= enough:
            break
        total += math.exp(rel)
    return first + math.log(total)


@njit(**JIT)
def _least_extreme(least, n, p, stop):
    """The least count k whose binomial tail P(X >= k), X ~ Binomial(n, p), ``_log_binom_tail``
    puts below e^stop (stop < 0): a tail test of a count is then one comparison. Found by
    bisection (the tail falls as k grows) and kept in ``least`` ((m,) int64, -1 where not yet
    found; read and written) for n < m."""
    if n < least.shape[0] and least[n] >= 0:
        return least[n]
    lo = int(n * p)  # at or below the mean the tail is taken as 1: never below e^stop
    hi = n + 1  # more than n: impossible, log 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _log_binom_tail(mid, n, p, stop) < stop:
            hi = mid
        else:
            lo = mid
    if n < least.shape[0]:
        least[n] = hi
    return hi


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _bins(fast_ms: float, quick_ms: float, mean_ms: float, sd_ms: float) -> np.ndarray:
    """(3,) chances that a reaction of N(mean, sd) ms is fast (< fast_ms), quick (< quick_ms),
    or neither."""
    a = _normal_cdf((fast_ms - mean_ms) / sd_ms)
    b = _normal_cdf((quick_ms - mean_ms) / sd_ms)
    return np.array([a, b - a, 1.0 - b])


def acquisition_model(c) -> dict[str, np.ndarray | float]:
    """The two models of a player's acquisition times that the acquisition factor weighs, as
    log chances of the three bins (fast, quick, neither), per level:

    - ``human``: the world file's honest reaction prior in ``ACQUIRE_HUMAN`` bands of mean
      reaction time, each with its log prior mass (``human_w``) and judged at its fastest end
      (an honest player is judged at least as fast as it is);
    - ``cheat``: a reaction faster than the floor: means evenly spread from 40 ms to the
      floor (``ACQUIRE_GRID`` levels, equally likely), +- ``ACQUIRE_CHEAT_SD_MS``, of which
      ``ACQUIRE_SLIP`` are slowed by something else (the gun, the approach);

    and ``floor_fast``: the fastest human's share of fast acquisitions, for the tail test."""
    top = max(c.reaction_prior_ms + 4.0 * c.reaction_prior_sd_ms, c.reaction_floor_ms + 1.0)
    edges = np.linspace(c.reaction_floor_ms, top, ACQUIRE_HUMAN + 1)
    cdf = np.array([_normal_cdf((e - c.reaction_prior_ms) / c.reaction_prior_sd_ms) for e in edges])
    cdf[0], cdf[-1] = 0.0, 1.0  # the floor holds everyone faster; the last band everyone slower
    human = np.array([_bins(c.acquire_fast_ms, c.acquire_quick_ms, m, c.reaction_spread_ms) for m in edges[:-1]])
    cheat = np.array([(1.0 - ACQUIRE_SLIP) * _bins(c.acquire_fast_ms, c.acquire_quick_ms, m, ACQUIRE_CHEAT_SD_MS)
                      for m in np.linspace(40.0, c.reaction_floor_ms, ACQUIRE_GRID)])
    cheat[:, 2] += ACQUIRE_SLIP
    return {"human_w": np.log(np.maximum(np.diff(cdf), 1e-300)), "human": np.log(np.clip(human, 1e-12, 1.0)),
            "cheat": np.log(np.clip(cheat, 1e-12, 1.0)),
            "floor_fast": _normal_cdf((c.acquire_fast_ms - c.reaction_floor_ms) / c.reaction_spread_ms)}


_TH_SCALARS = 19  # then the acquisition model: human_w, its three bins, the cheat model's three


def thresholds(c) -> np.ndarray:
    """The world file's ``[cheat]`` section as the float64 vector the kernels read:
    ``_TH_SCALARS`` scalars, then the acquisition model (``acquisition_model``), flattened."""
    m = acquisition_model(c)
    return np.concatenate([
        np.array([c.refusals, c.min_shots, c.aim_log_bf, c.min_reactions, c.reaction_mean_ms, c.reaction_sd_ms,
                  c.min_intervals, c.regularity_cv, c.min_timings, c.excess_delay_ms, c.min_loots, c.luck_p,
                  c.skill_mean, c.skill_sd, c.skill_max, c.acquire_fast_ms, m["floor_fast"], c.acquire_tail_p,
                  c.acquire_quick_ms]),
        m["human_w"], m["human"].T.ravel(), m["cheat"].T.ravel()]).astype(np.float64)


@njit(**JIT)
def _aim_skill(k, skill_max):
    """The k-th skill level of the aim test's grid: evenly spaced up to the honest maximum."""
    return skill_max * (k + 1.0) / AIM_GRID


@njit(**JIT)
def _skill_log_prior(mean, sd, skill_max):
    """(AIM_GRID,) log prior mass of each grid skill: the normal skill prior, each level taking
    the mass nearest to it (the top one everything above, as the clip at the maximum does)."""
    out = np.empty(AIM_GRID)
    lo = 0.0
    for k in range(AIM_GRID):
        hi = 1.0 if k == AIM_GRID - 1 else 0.5 * (1.0 + math.erf(
            (_aim_skill(k + 0.5, skill_max) - mean) / (sd * math.sqrt(2.0))))
        out[k] = math.log(max(hi - lo, 1e-300))
        lo = hi
    return out


@njit(**JIT)
def aim_log_bf(hits, shots, ll_human, log_prior):
    """log Bayes factor of the difficulty-blind model over the human one for a player's shots.

    hits, shots: float counts. ll_human: (AIM_GRID,) float64 log-likelihood of the outcomes at
    each grid skill; log_prior: (AIM_GRID,) from ``_skill_log_prior``; both read. The blind
    model needs only the counts: its chance does not depend on the shot.
    """
    top_b = -np.inf
    for j in range(_LOG_BLIND_HIT.shape[0]):
        top_b = max(top_b, hits * _LOG_BLIND_HIT[j] + (shots - hits) * _LOG_BLIND_MISS[j])
    sum_b = 0.0
    for j in range(_LOG_BLIND_HIT.shape[0]):
        sum_b += math.exp(hits * _LOG_BLIND_HIT[j] + (shots - hits) * _LOG_BLIND_MISS[j] - top_b)
    top_h = -np.inf
    for k in range(ll_human.shape[0]):
        top_h = max(top_h, ll_human[k] + log_prior[k])
    sum_h = 0.0
    for k in range(ll_human.shape[0]):
        sum_h += math.exp(ll_human[k] + log_prior[k] - top_h)
    return top_b + math.log(sum_b / _LOG_BLIND_HIT.shape[0]) - top_h - math.log(sum_h)


@njit(**JIT)
def _fold(order, grouped, owner, kind, status, value, client_ms, target, x, y, effect, rare, excess, speed_ratio,
          seen, run, last_target, dead_ids, dead_tick, tick_ms, refusal_class, interval_ms, range_m, speed_ref, stats,
          th, tick, dirty, hurt, pending):
    """Fold one tick's actions into the per-player statistics, in each actor's client-time order.

    order: (n,) int64 every action once, each actor's in client-time order (``owner_walk``);
    grouped: whether ``order`` holds each actor's actions together: then, as it leaves an
    actor, the fold runs the tests of every move (speed, delay) on its row while it is in
    cache, and ``_judge`` has only the others left (``tick``: the flags' tick);
    owner: (n,) int64 each action's actor's row in ``run``, ``last_target``, ``stats`` and
    ``dirty`` (-1: not scored). kind, status, value, client_ms, target, x, y, excess,
    speed_ratio: the batch's columns; effect, rare: ``ActionEffects.effect`` and
    ``looted_rare``; seen: (n, SEEN_FIELDS) each target as validation saw it
    (``ActionBatch.targets_seen``; velocity read for ranged attacks); run: (rows,
    len(_PLAYER_F8)) the actors' Player float64 block; dead_ids, dead_tick: ``Deaths``;
    tick_ms: the tick's length; refusal_class: (32,) int64; interval_ms: (8,) weapon interval
    by kind; range_m, speed_ref: the shot model's range and reference speed; th: from
    ``thresholds``; all read.
    last_target: (rows,) int64 and stats: (rows, len(_STAT_FIELDS)) float64 (CheatStats, or
    gathered copies of its rows), read and written. dirty: (rows,) int64, 0 on entry for every
    row, written: what changed of each row (``_TOUCHED``, ``_AIM_CHANGED``, ...), for ``_judge``.
    hurt: (n,) bool, written: the accepted attacks that did harm.
    pending: (n, 2) int64 scratch, written: the first attacks on a new foe that are target
    acquisitions if that foe was surely in reach all along (``_acquired`` decides), as (action,
    bin: 0 fast, 1 quick, 2 neither).

    Returns (the rows touched, in order of first touch; how many acquisitions are pending).
    """
    touched = np.empty(order.shape[0], np.int64)
    m = 0
    q = 0
    skill, log_skill = np.empty(AIM_GRID), np.empty(AIM_GRID)
    for g in range(AIM_GRID):
        skill[g] = _aim_skill(g, th[14])
        log_skill[g] = math.log(skill[g])
    n = order.shape[0]
    left = -1
    for k in range(n + 1):
        r = owner[order[k]] if k < n else -1
        if grouped and left >= 0 and r != left:  # the last of this actor's actions: judge its moves
            d = dirty[left]
            f = 0
            if (d & _SPEED_CHANGED) and stats[left, _SPEED_CUSUM] > SPEED_CUSUM_H:
                f |= FLAG_SPEED
            dirty[left] = d & ~_SPEED_CHANGED
            if f != 0:
                if stats[left, _FLAG_TICK] < 0.0:
                    stats[left, _FLAG_TICK] = tick
                stats[left, _FLAGS] = float(int(stats[left, _FLAGS]) | f)
        left = r  # the actor of the action before
        if k == n:
            break
        i = order[k]
        kd = kind[i]
        st = status[i]
        attack = 2 <= kd <= 4 and not (kd == 4 and value[i] == SPELL_HEAL)
        hurt[i] = attack and st == 0 and effect[i] > 0.0
        if r < 0:
            continue
        if dirty[r] == 0:
            touched[m] = r
            m += 1
        dirty[r] |= _TOUCHED
        if st != 0:
            c = refusal_class[st]
            if 1 <= c <= 4:
                dirty[r] |= _REFUSED
            if c == 1:
                stats[r, _R_MOVE] += 1.0
            elif c == 2:
                stats[r, _R_TIMING] += 1.0
            elif c == 3:
                stats[r, _R_RATE] += 1.0
            elif c == 4:
                stats[r, _R_ECONOMY] += 1.0
        if not np.isnan(speed_ratio[i]):
            stats[r, _SPEED_CUSUM] = max(0.0, stats[r, _SPEED_CUSUM] + speed_ratio[i] - SPEED_CUSUM_K)
            dirty[r] |= _SPEED_CHANGED
        if kd == 1:  # a move is scored on its speed alone (a back-dated move wins nothing)
            continue
        t = client_ms[i] - run[r, _OFFSET]  # the client's time on our clock
        rtt = run[r, _RTT]
        # The rhythm of deliberate actions (moves are the client's heartbeat), refused or not
        # when only the target was wrong: a bot firing at nothing still keeps its beat.
        if st == 0 or refusal_class[st] == 5:
            if stats[r, _LAST_T_MS] > -1e17:
                dt = t - stats[r, _LAST_T_MS]
                if 0.0 < dt < 5000.0:  # pauses are not rhythm
                    stats[r, _INT_N] += 1.0
                    dirty[r] |= _RHYTHM_CHANGED
                    stats[r, _INT_SUM] += dt
                    stats[r, _INT_SQ] += dt * dt
                    # The same interval as the last one (within 5 %), or two or three times it,
                    # or a half or a third (beats skipped): rare for people, a bot's clock.
                    prev = stats[r, _PREV_INT]
                    if prev > 0.0:
                        for mult in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0):
                            if abs(dt - mult * prev) <= 0.05 * mult * prev:
                                stats[r, _REPEATS] += 1.0
                                dirty[r] |= _REPEATS_CHANGED
                                break
                    if stats[r, _INT_N] == MIN_REPEAT_INTERVALS:  # the repeat test may run from now on
                        dirty[r] |= _REPEATS_CHANGED
                    stats[r, _PREV_INT] = dt
            stats[r, _LAST_T_MS] = max(t, stats[r, _LAST_T_MS])
        if attack and (st == 0 or st == 10):  # a foe that died before the attack landed is a foe
            foe = target[i]
            clock = _LAST_MELEE + kd - 2
            if foe != last_target[r]:
                # The first attack of the tick on another foe than the one it started with,
                # which died since our last attack on it: a reaction, timed from when the
                # client saw the death, if the weapon was ready (or nearly) by then (and, as
                # ``_acquired`` checks, the new foe in reach: else the attack would time the
                # weapon or the approach, not the eyes).
                if (dirty[r] & _SWITCHED) == 0 and dead_ids.shape[0] > 0:
                    j = np.searchsorted(dead_ids, last_target[r])
                    last = max(stats[r, _LAST_MELEE], stats[r, _LAST_RANGED], stats[r, _LAST_CAST])
                    if j < dead_ids.shape[0] and dead_ids[j] == last_target[r] and \
                            (dead_tick[j] + 1.0) * tick_ms >= last:
                        seen_ms = (dead_tick[j] + 1.0) * tick_ms + 0.5 * rtt
                        reaction = t - seen_ms
                        ready = stats[r, clock] + interval_ms[kd] <= seen_ms + ACQUIRE_READY_MS
                        if ready and 0.0 < reaction < ACQUIRE_WINDOW_MS:
                            pending[q, 0] = i
                            pending[q, 1] = 0 if reaction < th[15] else (1 if reaction < th[18] else 2)
                            q += 1
                dirty[r] |= _SWITCHED
                last_target[r] = foe
            stats[r, clock] = max(stats[r, clock], t)
        if st != 0:
            continue
        if not np.isnan(excess[i]):
            stats[r, _EXCESS_N] += 1.0
            dirty[r] |= _EXCESS_CHANGED
            if excess[i] > th[9]:
                stats[r, _EXCESS_LATE] += 1.0
        if kd == 2 or kd == 3 or kd == 4:
            if stats[r, _HURT_MS] > -1e17:
                # An attack sent before the client could see the hit is no answer to it.
                reaction = t - stats[r, _HURT_MS] - 0.5 * rtt
                if reaction > 0.0:
                    if reaction < 2000.0:
                        stats[r, _REACT_N] += 1.0
                        dirty[r] |= _REACT_CHANGED
                        stats[r, _REACT_SUM] += reaction
                        stats[r, _REACT_SQ] += reaction * reaction
                    stats[r, _HURT_MS] = -1e18
        if kd == 3:
            # Where the shot was aimed, as validation saw the target: its base chance (``_shot_chance``).
            dist = math.sqrt((seen[i, SEEN_X] - x[i]) ** 2 + (seen[i, SEEN_Y] - y[i]) ** 2)  # (hypot is slower)
            b = _shot_chance(dist, range_m, math.sqrt(seen[i, SEEN_VX] ** 2 + seen[i, SEEN_VY] ** 2), speed_ref)
            b = min(max(b, 1e-3), 1.0)
            stats[r, _SHOTS] += 1.0
            if value[i] >= 0.5:  # a claimed hit: a human of skill s lands it with chance s x b: log s + log b
                stats[r, _HITS] += 1.0
                log_b = math.log(b)
                for g in range(AIM_GRID):
                    stats[r, _AIM_LL + g] += log_skill[g] + log_b
            else:
                for g in range(AIM_GRID):
                    stats[r, _AIM_LL + g] += math.log(1.0 - skill[g] * b)  # cheaper than log1p; p >= 1e-4
            dirty[r] |= _AIM_CHANGED
        if kd == 5 and effect[i] > 0.0:
            stats[r, _LOOTS] += 1.0
            stats[r, _RARES] += 1.0 if rare[i] else 0.0
            dirty[r] |= _LOOT_CHANGED
    return touched[:m], q


@njit(**JIT)
def _acquired(pending, owner, kind, x, y, seen, top_speed, run, window_ms, reach_m, speed_slack, stats, dirty):
    """Count the pending acquisitions (``_fold``) whose new foe was so near that it was in reach
    all the ``window_ms`` before, however both moved.

    pending: (q, 2) int64 (action, bin); top_speed: (q, 2) the foe's Player.speed_mps and
    Npc.speed_mps (a foe has one or the other); reach_m: (8,) by kind; the rest as ``_fold``.
    """
    for k in range(pending.shape[0]):
        i = pending[k, 0]
        r = owner[i]
        dist = math.sqrt((seen[i, SEEN_X] - x[i]) ** 2 + (seen[i, SEEN_Y] - y[i]) ** 2)
        closing = (run[r, _SPEED] + top_speed[k, 0] + top_speed[k, 1]) * speed_slack / 1000.0
        if dist <= reach_m[kind[i]] - closing * window_ms:
            stats[r, _ACQ_N] += 1.0
            dirty[r] |= _ACQ_CHANGED
            if pending[k, 1] == 0:
                stats[r, _ACQ_FAST] += 1.0
            elif pending[k, 1] == 1:
                stats[r, _ACQ_QUICK] += 1.0


@njit(**JIT)
def _log_mixture(c0, c1, c2, th, w_at, p_at, levels):
    """log sum_j exp(w_j + c0 log_p[j] + c1 log_p[levels + j] + c2 log_p[2 levels + j]): the
    likelihood of bin counts (c0, c1, c2) under a mixture of ``levels`` multinomials whose log
    chances are ``th[p_at:]`` (bin-major, as ``thresholds``) and log weights ``th[w_at:]``
    (equal weights when ``w_at`` < 0)."""
    top = -np.inf
    for j in range(levels):
        w = th[w_at + j] if w_at >= 0 else -math.log(levels)
        top = max(top, w + c0 * th[p_at + j] + c1 * th[p_at + levels + j] + c2 * th[p_at + 2 * levels + j])
    total = 0.0
    for j in range(levels):
        w = th[w_at + j] if w_at >= 0 else -math.log(levels)
        total += math.exp(w + c0 * th[p_at + j] + c1 * th[p_at + levels + j] + c2 * th[p_at + 2 * levels + j]
                          - top)
    return top + math.log(total)


@njit(**JIT)
def acquire_log_bf(fast, quick, n, th):
    """log Bayes factor, from a player's ``n`` target acquisitions of which ``fast`` and
    ``quick`` fell in the first two bins, of the cheat model over the honest prior (see
    ``acquisition_model``). Like the aim factor, a martingale for honest players, and
    independent of it: the two multiply into one test of both."""
    h = _TH_SCALARS
    c = h + ACQUIRE_HUMAN * 4
    slow = n - fast - quick
    return (_log_mixture(fast, quick, slow, th, -1, c, ACQUIRE_GRID)
            - _log_mixture(fast, quick, slow, th, h, h + ACQUIRE_HUMAN, ACQUIRE_HUMAN))


@njit(**JIT)
def _judge(stats, rows, dirty, th, rare_p, tick, least_repeats):
    """Re-judge the rows ``rows`` of ``stats`` in place: new flags join the raised ones (a flag
    stays), with the tick of the first. Tests already passed are not run again, nor those
    whose evidence did not change (``dirty``, cleared here). The aim factor is computed only
    where a bound of it (no exponentials) says it might cross the threshold.

    stats: (rows, f) float64, read and written; rows: (k,) int64; dirty: (rows,) int64, read
    and written; th: from ``thresholds``; least_repeats: ``_least_extreme``'s memo for the
    repeat test (these thresholds), read and written.
    """
    log_prior = _skill_log_prior(th[12], th[13], th[14])
    log_luck = math.log(th[11])
    log_acquire = math.log(th[17])
    for k in range(rows.shape[0]):
        r = rows[k]
        d = dirty[r]
        dirty[r] = 0
        if (d & _EVIDENCE) == 0:  # nothing to test (``_fold`` ran the tests of its moves)
            continue
        raised = int(stats[r, _FLAGS])
        f = 0
        if d & _REFUSED:
            if stats[r, _R_MOVE] >= th[0]:
                f |= 1
            if stats[r, _R_TIMING] >= th[0]:
                f |= 2
            if stats[r, _R_RATE] >= th[0]:
                f |= 4
            if stats[r, _R_ECONOMY] >= th[0]:
                f |= 8
        if (d & _SPEED_CHANGED) and stats[r, _SPEED_CUSUM] > SPEED_CUSUM_H:
            f |= 16
        shots = stats[r, _SHOTS]
        # An aim flag needs enough shots, or acquisitions to join them (the joint test).
        aim_open = (d & (_AIM_CHANGED | _ACQ_CHANGED)) != 0 and (raised & 1056) != 1056 and shots > 0.0 and \
            (shots >= th[1] or stats[r, _ACQ_N] > 0.0)
        bound = np.inf
        if aim_open:
            # log(mean of the blind likelihoods) <= their largest; log(sum over skills) >= its
            # largest term: so their difference bounds the aim factor from above.
            hits = stats[r, _HITS]
            top_b = -np.inf
            for j in range(_LOG_BLIND_HIT.shape[0]):
                top_b = max(top_b, hits * _LOG_BLIND_HIT[j] + (shots - hits) * _LOG_BLIND_MISS[j])
            top_h = -np.inf
            for g in range(AIM_GRID):
                top_h = max(top_h, stats[r, _AIM_LL + g] + log_prior[g])
            bound = top_b - top_h
        log_bf = np.nan  # computed when needed
        if (d & _AIM_CHANGED) and (raised & 32) == 0 and shots >= th[1] and bound >= th[2]:
            log_bf = aim_log_bf(stats[r, _HITS], shots, stats[r, _AIM_LL:_AIM_LL + AIM_GRID], log_prior)
            if log_bf >= th[2]:
                f |= 32
        n = stats[r, _REACT_N]
        if (d & _REACT_CHANGED) and n >= th[3]:
            mean = stats[r, _REACT_SUM] / n
            sd = math.sqrt(max(stats[r, _REACT_SQ] / n - mean * mean, 0.0))
            if mean < th[4] and sd < th[5]:
                f |= 64
        n = stats[r, _INT_N]
        if (d & _RHYTHM_CHANGED) and n >= th[6]:  # the spread needs samples
            mean = stats[r, _INT_SUM] / n
            sd = math.sqrt(max(stats[r, _INT_SQ] / n - mean * mean, 0.0))
            if mean > 0.0 and sd / mean < th[7]:
                f |= 128
        # For independent human intervals a repeat has a chance of about REPEAT_P: the count of
        # repeats is a tail test of its own, valid from a few intervals on.
        if (d & _REPEATS_CHANGED) and ((f | raised) & 128) == 0 and n >= MIN_REPEAT_INTERVALS and \
                stats[r, _REPEATS] >= _least_extreme(least_repeats, int(n) - 1, REPEAT_P, log_luck):
            f |= 128
        n = stats[r, _EXCESS_N]
        if (d & _EXCESS_CHANGED) and n >= th[8] and stats[r, _EXCESS_LATE] > LATE_SHARE * n:
            f |= 256
        if (d & _LOOT_CHANGED) and (raised & 512) == 0 and stats[r, _LOOTS] >= th[10] and \
                _log_binom_tail(stats[r, _RARES], stats[r, _LOOTS], rare_p, log_luck) < log_luck:
            f |= 512
        if (d & _ACQ_CHANGED) and (raised & 1024) == 0 and stats[r, _ACQ_N] > 0.0 and \
                _log_binom_tail(stats[r, _ACQ_FAST], stats[r, _ACQ_N], th[16], log_acquire) < log_acquire:
            f |= 1024
        # Aim and acquisition are independent evidence: their factors multiply.
        if aim_open and stats[r, _ACQ_N] > 0.0:
            joint = acquire_log_bf(stats[r, _ACQ_FAST], stats[r, _ACQ_QUICK], stats[r, _ACQ_N], th)
            if bound + joint >= th[2]:
                if np.isnan(log_bf):
                    log_bf = aim_log_bf(stats[r, _HITS], shots, stats[r, _AIM_LL:_AIM_LL + AIM_GRID], log_prior)
                if log_bf + joint >= th[2]:
                    f |= 1056
        if f != 0:
            if stats[r, _FLAG_TICK] < 0.0:
                stats[r, _FLAG_TICK] = tick
            stats[r, _FLAGS] = float(raised | f)


@njit(**JIT)
def _aim_scores(stats, th):
    """(p,) the aim factor (log) of each row of ``stats``."""
    log_prior = _skill_log_prior(th[12], th[13], th[14])
    out = np.empty(stats.shape[0])
    for r in range(stats.shape[0]):
        out[r] = aim_log_bf(stats[r, _HITS], stats[r, _SHOTS], stats[r, _AIM_LL:_AIM_LL + AIM_GRID], log_prior)
    return out


def _flags(stats: np.ndarray, th: np.ndarray, rare_p: float) -> tuple[np.ndarray, np.ndarray]:
    """(flag bits (p,) int64, aim factor (p,) float64, log) that rows of statistics ``stats``
    (p, f) call for, all tests run (``stats`` is not changed)."""
    judged = np.array(stats, np.float64)
    judged[:, _FLAGS] = 0.0
    p = judged.shape[0]
    _judge(judged, np.arange(p, dtype=np.int64), np.full(p, _ALL_CHANGED, np.int64), th, rare_p, 0.0,
           np.full(0, -1, np.int64))
    return judged[:, _FLAGS].astype(np.int64), _aim_scores(judged, th)


class HitVictims:
    """Who this tick's scored hits hurt (``ids``), and when they see it (``seen_ms``): a shard
    tells the owners of victims that stand on other shards."""

    def __init__(self, ids: np.ndarray, seen_ms: float) -> None:
        self.ids = ids
        self.seen_ms = seen_ms


class AnomalyScore(System):
    phase = Phase.SCORE
    reads = (ActionBatch, ActionEffects, NpcHits, Deaths, Player, Npc)
    writes = (CheatStats, HitVictims)
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
            stats = gather_fields(world, at, _STAT_FIELDS)
            last_target, scored = gather(world, actors.ids, CheatStats, "last_target", at=at)
            run = gather_fields(world, at, tuple((Player, f) for f in _PLAYER_F8))
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
                           _REFUSAL_CLASS, self.interval, self.range_m, self.speed_ref, stats, self.th,
                           float(ctx.tick), self._dirty, hurt, pending)
        if q:  # acquisitions, if the new foe was surely in reach: how fast could it close in?
            at = pending[:q, 0]
            top_speed = np.zeros((q, len(_TOP_SPEED)))
            read_rows(world, t_table[at], t_row[at], _TOP_SPEED, top_speed)
            _acquired(pending[:q], owner, batch.kind, batch.x, batch.y, seen, top_speed, run,
                      ACQUIRE_WINDOW_MS + 1000.0 * ctx.dt_s, self.reach, self.speed_slack, stats, self._dirty)
        _judge(stats, touched, self._dirty, self.th, self.rare_p, float(ctx.tick), self._least_repeats)
        if actors is not None:
            at = actors.at.subset(scored)
            scatter_fields(world, at, _STAT_FIELDS, stats[scored])
            scatter(world, actors.ids[scored], CheatStats, "last_target", last_target[scored], at=at)
        return t_table[hurt], t_row[hurt]

    @staticmethod
    def _blocks(table) -> tuple[np.ndarray, ...] | None:
        """A table's scored record in place: CheatStats' float64 block as (capacity, fields),
        its last_target column and Player's float64 block as (capacity, fields); None when the
        table's entities are not scored players. Derived once per layout of the table."""
        return table.plan("score_record", lambda t: (
            t.block(CheatStats, "shots")[0].T, t.full_column(CheatStats, "last_target"),
            t.block(Player, _PLAYER_F8[0])[0].T) if t.has(CheatStats) and t.has(Player) else None)


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]
