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
- timing: the mean of how much later than its link explains an action arrived (a client that
  back-dates its actions to win contests);
- luck: the binomial tail of rare items found in the corpses a player looted.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.action_order import ActionOrderIndex
from systems.actions import SPELL_HEAL, ActionBatch, ActionKind, Refusal, by_kind
from systems.apply_actions import ActionEffects
from systems.columns import (Distinct, SlotMarks, gather, gather_fields, locate, owner_order, scatter,
                             scatter_fields)
from systems.components import CheatStats, Health, Npc, Player, Position, Velocity
from systems.npc_combat import NpcHits
from systems.spatial_index import SpatialIndex

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
MIN_REPEAT_INTERVALS = 10  # the repeat test's tail needs no more: 9 of 9 repeats is ~4e-8 for a human
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
_SHOTS, _HITS, _AIM_LL = 0, 1, 2  # aim_ll0 .. aim_ll{AIM_GRID - 1} follow hits
(_REACT_N, _REACT_SUM, _REACT_SQ, _HURT_MS, _ACQ_N, _ACQ_FAST, _ACQ_QUICK, _LAST_MELEE, _LAST_RANGED, _LAST_CAST,
 _INT_N, _INT_SUM, _INT_SQ, _LAST_T_MS, _PREV_INT, _REPEATS, _EXCESS_N, _EXCESS_SUM, _LOOTS, _RARES, _R_MOVE,
 _R_TIMING, _R_RATE, _R_ECONOMY, _SPEED_CUSUM, _FLAGS, _FLAG_TICK, _SCORE, _LAST_TARGET) = range(_AIM_LL + AIM_GRID,
                                                                                              len(_FIELDS))
assert _FIELDS[_SPEED_CUSUM] == "speed_cusum" and _FIELDS[_SCORE] == "score" and _FIELDS[_HURT_MS] == "hurt_ms"
assert [f for f in _FIELDS if f.startswith("aim_ll")] == [f"aim_ll{k}" for k in range(AIM_GRID)]
assert _FIELDS[_AIM_LL] == "aim_ll0" and _FIELDS[_REACT_N] == "react_n" and _FIELDS[_LAST_TARGET] == "last_target"
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


def shot_difficulty(dist_m: np.ndarray, range_m: float, target_speed_mps: np.ndarray,
                    speed_ref_mps: float) -> np.ndarray:
    """Base chance that a perfectly skilled human hits, per shot: lower far away and on fast
    targets. (n,) float64 arrays in and out."""
    d = np.clip(dist_m / range_m, 0.0, 1.0)
    v = np.clip(target_speed_mps / speed_ref_mps, 0.0, 1.0)
    return (1.0 - 0.8 * d) * (1.0 - 0.5 * v)


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
def _score(order, rows, srow, kind, status, t_ms, hit, difficulty, excess, speed_ratio, rtt, looted, rare,
           refusal_class, foe, in_reach, interval_ms, lost_ms, last_target, stats, th):
    """Fold one tick's actions into the per-player statistics, in each actor's sequence order.

    order: (n,) int64 action indices sorted by actor then client time, read. rows: (n,) int64
    actor of each action (-1 none: not scored), read; srow: (p,) int64 each actor's row in
    ``stats`` and ``last_target``, read. kind, status: (n,) read.
    t_ms: (n,) float64 client time on the server clock; hit, difficulty (NaN if not a judged
    shot), excess, speed_ratio (NaN if not measured), rtt: (n,) float64; looted, rare: (n,)
    bool; all read. refusal_class: (32,) int64, read. foe: (n,) int64 target of each attack
    accepted or refused only because its target had died (0 for other actions), in_reach: (n,)
    bool whether that foe was surely in reach throughout the ``ACQUIRE_WINDOW_MS`` before the
    attack; all read. interval_ms: (8,) float64 weapon interval by kind, read.
    lost_ms: (p,) float64 end of the tick the actor's last foe died in (NaN if it lives), read
    and written. last_target: (rows,) int64, read and written. stats: (rows, len(_STAT_FIELDS))
    float64 (CheatStats' float64 block, or a gathered copy of its rows), read and written.
    th: from ``thresholds``, read.
    """
    log_prior = _skill_log_prior(th[12], th[13], th[14])
    for k in range(order.shape[0]):
        i = order[k]
        r = rows[i]
        if r < 0:
            continue
        sr = srow[r]
        s = stats[sr]
        if status[i] != 0:
            c = refusal_class[status[i]]
            if c == 1:
                s[_R_MOVE] += 1.0
            elif c == 2:
                s[_R_TIMING] += 1.0
            elif c == 3:
                s[_R_RATE] += 1.0
            elif c == 4:
                s[_R_ECONOMY] += 1.0
        if not np.isnan(speed_ratio[i]):
            s[_SPEED_CUSUM] = max(0.0, s[_SPEED_CUSUM] + speed_ratio[i] - SPEED_CUSUM_K)
        t = t_ms[i]
        kd = kind[i]
        # The rhythm of deliberate actions (moves are the client's heartbeat), refused or not
        # when only the target was wrong: a bot firing at nothing still keeps its beat.
        if kd != 1 and (status[i] == 0 or refusal_class[status[i]] == 5):
            if s[_LAST_T_MS] > -1e17:
                dt = t - s[_LAST_T_MS]
                if 0.0 < dt < 5000.0:  # pauses are not rhythm
                    s[_INT_N] += 1.0
                    s[_INT_SUM] += dt
                    s[_INT_SQ] += dt * dt
                    # The same interval as the last one (within 5 %), or two or three times it,
                    # or a half or a third (beats skipped): rare for people, a bot's clock.
                    prev = s[_PREV_INT]
                    if prev > 0.0:
                        for mult in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0):
                            if abs(dt - mult * prev) <= 0.05 * mult * prev:
                                s[_REPEATS] += 1.0
                                break
                    s[_PREV_INT] = dt
            s[_LAST_T_MS] = max(t, s[_LAST_T_MS])
        if foe[i] != 0:
            # The first attack on another foe after the last one died (after our last attack on
            # it): a reaction, timed from when the client saw the death, if the weapon was ready
            # (or nearly) and the new foe in reach by then (else the shot would time the
            # weapon or the approach, not the eyes).
            clock = _LAST_MELEE + kd - 2
            last = max(s[_LAST_MELEE], s[_LAST_RANGED], s[_LAST_CAST])
            if foe[i] != last_target[sr] and lost_ms[r] >= last:
                seen = lost_ms[r] + 0.5 * rtt[i]
                reaction = t - seen
                ready = s[clock] + interval_ms[kd] <= seen + ACQUIRE_READY_MS
                if in_reach[i] and ready and 0.0 < reaction < ACQUIRE_WINDOW_MS:
                    s[_ACQ_N] += 1.0
                    if reaction < th[15]:
                        s[_ACQ_FAST] += 1.0
                    elif reaction < th[18]:
                        s[_ACQ_QUICK] += 1.0
            if foe[i] != last_target[sr]:
                lost_ms[r] = np.nan
                last_target[sr] = foe[i]
            s[clock] = max(s[clock], t)
        if status[i] != 0:
            continue
        if not np.isnan(excess[i]):
            s[_EXCESS_N] += 1.0
            s[_EXCESS_SUM] += excess[i]
        if kd == 2 or kd == 3 or kd == 4:
            if s[_HURT_MS] > -1e17:
                # An attack sent before the client could see the hit is no answer to it.
                reaction = t - s[_HURT_MS] - 0.5 * rtt[i]
                if reaction > 0.0:
                    if reaction < 2000.0:
                        s[_REACT_N] += 1.0
                        s[_REACT_SUM] += reaction
                        s[_REACT_SQ] += reaction * reaction
                    s[_HURT_MS] = -1e18
        if kd == 3 and not np.isnan(difficulty[i]):
            b = min(max(difficulty[i], 1e-3), 1.0)
            s[_SHOTS] += 1.0
            s[_HITS] += hit[i]
            for g in range(AIM_GRID):  # a human of skill s lands it with chance s x b
                p = _aim_skill(g, th[14]) * b
                s[_AIM_LL + g] += math.log(p) if hit[i] > 0.5 else math.log1p(-p)
            # The score is the aim evidence; kept here, where it changes, not re-derived per tick.
            s[_SCORE] = aim_log_bf(s[_HITS], s[_SHOTS], s[_AIM_LL:_AIM_LL + AIM_GRID], log_prior)
        if looted[i]:
            s[_LOOTS] += 1.0
            s[_RARES] += 1.0 if rare[i] else 0.0


@njit(**JIT)
def _log_mixture(counts, log_w, log_p, levels):
    """log sum_j exp(log_w[j] + sum_b counts[b] log_p[b * levels + j]): the likelihood of bin
    counts under a mixture of ``levels`` multinomials (log_p: bin-major, as ``thresholds``)."""
    top = -np.inf
    for j in range(levels):
        top = max(top, log_w[j] + counts[0] * log_p[j] + counts[1] * log_p[levels + j]
                  + counts[2] * log_p[2 * levels + j])
    total = 0.0
    for j in range(levels):
        total += math.exp(log_w[j] + counts[0] * log_p[j] + counts[1] * log_p[levels + j]
                          + counts[2] * log_p[2 * levels + j] - top)
    return top + math.log(total)


@njit(**JIT)
def acquire_log_bf(fast, quick, n, th):
    """log Bayes factor, from a player's ``n`` target acquisitions of which ``fast`` and
    ``quick`` fell in the first two bins, of the cheat model over the honest prior (see
    ``acquisition_model``). Like the aim factor, a martingale for honest players, and
    independent of it: the two multiply into one test of both."""
    counts = np.array([fast, quick, n - fast - quick])
    h = _TH_SCALARS
    c = h + ACQUIRE_HUMAN * 4
    return (_log_mixture(counts, np.full(ACQUIRE_GRID, -math.log(ACQUIRE_GRID)), th[c:c + 3 * ACQUIRE_GRID],
                         ACQUIRE_GRID)
            - _log_mixture(counts, th[h:h + ACQUIRE_HUMAN], th[h + ACQUIRE_HUMAN:c], ACQUIRE_HUMAN))


@njit(inline="always", **JIT)
def _row_flags(s, th, rare_p):
    """The flag bits a player's statistics ``s`` (one row of CheatStats' float64 block) call
    for now; th: from ``thresholds``. Tests of flags already raised are not run again."""
    f = 0
    if s[_R_MOVE] >= th[0]:
        f |= 1
    if s[_R_TIMING] >= th[0]:
        f |= 2
    if s[_R_RATE] >= th[0]:
        f |= 4
    if s[_R_ECONOMY] >= th[0]:
        f |= 8
    if s[_SPEED_CUSUM] > SPEED_CUSUM_H:
        f |= 16
    log_bf = s[_SCORE]  # set by ``_score`` at each judged shot
    if s[_SHOTS] >= th[1] and log_bf >= th[2]:
        f |= 32
    n = s[_REACT_N]
    if n >= th[3]:
        mean = s[_REACT_SUM] / n
        sd = math.sqrt(max(s[_REACT_SQ] / n - mean * mean, 0.0))
        if mean < th[4] and sd < th[5]:
            f |= 64
    n = s[_INT_N]
    if n >= th[6]:  # the spread needs samples
        mean = s[_INT_SUM] / n
        sd = math.sqrt(max(s[_INT_SQ] / n - mean * mean, 0.0))
        if mean > 0.0 and sd / mean < th[7]:
            f |= 128
    # For independent human intervals a repeat has a chance of about REPEAT_P: the count of
    # repeats is a tail test of its own, valid from a few intervals on.
    raised = int(s[_FLAGS])  # flags stay raised: their tail tests need not run again
    if (f & 128) == 0 and (raised & 128) == 0 and n >= MIN_REPEAT_INTERVALS and \
            _log_binom_tail(s[_REPEATS], n - 1.0, REPEAT_P, math.log(th[11])) < math.log(th[11]):
        f |= 128
    n = s[_EXCESS_N]
    if n >= th[8] and s[_EXCESS_SUM] / n > th[9]:
        f |= 256
    if (raised & 512) == 0 and s[_LOOTS] >= th[10] and \
            _log_binom_tail(s[_RARES], s[_LOOTS], rare_p, math.log(th[11])) < math.log(th[11]):
        f |= 512
    if (raised & 1024) == 0 and s[_ACQ_N] > 0.0 and \
            _log_binom_tail(s[_ACQ_FAST], s[_ACQ_N], th[16], math.log(th[17])) < math.log(th[17]):
        f |= 1024
    # Aim and acquisition are independent evidence: their factors multiply.
    if (raised & 1056) != 1056 and s[_SHOTS] > 0.0 and s[_ACQ_N] > 0.0 and \
            log_bf + acquire_log_bf(s[_ACQ_FAST], s[_ACQ_QUICK], s[_ACQ_N], th) >= th[2]:
        f |= 1056
    return f




@njit(**JIT)
def _flags(stats, th, rare_p):
    """Flag bits and the aim score (log Bayes factor) for each row of ``stats`` (p, f), read."""
    p = stats.shape[0]
    flags = np.zeros(p, np.int64)
    score = np.zeros(p, np.float64)
    for r in range(p):
        flags[r] = _row_flags(stats[r], th, rare_p)
        score[r] = stats[r, _SCORE]
    return flags, score


@njit(**JIT)
def _raise_flags(stats, srows, th, rare_p, tick):
    """Re-judge the rows ``srows`` of ``stats`` in place: new flags join the raised ones (a flag
    stays), and the tick of the first is kept. stats: (rows, f) float64, read and written."""
    for k in range(srows.shape[0]):
        s = stats[srows[k]]
        f = _row_flags(s, th, rare_p)
        if f != 0:
            if s[_FLAG_TICK] < 0.0:
                s[_FLAG_TICK] = tick
            s[_FLAGS] = float(int(s[_FLAGS]) | f)


class AnomalyScore(System):
    phase = Phase.SCORE
    reads = (ActionBatch, ActionOrderIndex, ActionEffects, NpcHits, SpatialIndex, Player, Velocity, Position, Health,
             Npc)
    writes = (CheatStats,)

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

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        effects: ActionEffects | None = world.resources.get(ActionEffects)
        if batch.n and effects is not None:
            self._fold(world, ctx, batch, effects)
        self._note_hurt(world, ctx, batch, effects)  # after: this tick's hits are answered later

    def _note_hurt(self, world, ctx, batch, effects) -> None:
        """Players hurt this tick see it at the tick's end (plus half their round trip)."""
        if effects is None:
            return
        heal = (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
        hurt = (batch.status == 0) & (batch.kind >= ActionKind.MELEE) & (batch.kind <= ActionKind.CAST) & ~heal
        hurt &= effects.effect > 0
        bites = world.resources.get(NpcHits)
        victims = np.concatenate([batch.target[hurt], bites.victims if bites is not None else []]).astype(np.int64)
        if victims.size:  # (a victim hit twice is written twice, the same value)
            scatter(world, victims, CheatStats, "hurt_ms", np.full(victims.shape[0], ctx.time_ms + 1000.0 * ctx.dt_s))

    def _fold(self, world, ctx, batch, effects) -> None:
        """Fold the tick's actions into their actors' statistics and re-judge only those actors
        (nobody else's evidence changed). When every actor lives in one table (the usual case),
        the kernels work on the table's CheatStats block in place."""
        actors = Distinct(world, batch.actor, self._marks)
        at, inv = actors.at, actors.inverse
        link = gather_fields(world, at, ((Player, "clock_offset_ms"), (Player, "rtt_ms")))
        sole = at.sole_table()
        in_place = sole is not None and world.tables[sole[0]].has(CheatStats)
        if in_place:
            table, trows = world.tables[sole[0]], sole[1]
            stats = table.block(CheatStats, "shots")[0].T  # (capacity, fields): the table's own rows
            last_target = table.column(CheatStats, "last_target")
            srow, scored = trows, np.ones(actors.n, np.bool_)
        else:
            stats = gather_fields(world, at, _STAT_FIELDS)
            last_target, scored = gather(world, actors.ids, CheatStats, "last_target", at=at)
            srow = np.arange(actors.n, dtype=np.int64)
        mine = np.maximum(inv, 0)
        heal = (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
        # A foe that died before the attack landed was the client's foe all the same.
        engaged = (batch.status == 0) | (batch.status == Refusal.TARGET_DEAD)
        attacks = engaged & (batch.kind >= ActionKind.MELEE) & (batch.kind <= ActionKind.CAST) & ~heal
        foe = np.where(attacks, batch.target, 0)
        lost_ms = self._lost_ms(world, last_target[srow], 1000.0 * ctx.dt_s)
        rows = np.where((inv >= 0) & scored[mine], inv, -1)
        t_ms = batch.client_time_ms - link[mine, 0]
        rtt = link[mine, 1]
        difficulty = np.full(batch.n, np.nan)
        shots = np.flatnonzero((batch.kind == ActionKind.RANGED) & (batch.status == 0))
        if shots.size:
            tgt = gather_fields(world, locate(world, batch.target[shots]),
                                ((Position, "x"), (Position, "y"), (Velocity, "vx"), (Velocity, "vy")))
            dist = np.hypot(tgt[:, 0] - batch.x[shots], tgt[:, 1] - batch.y[shots])
            difficulty[shots] = shot_difficulty(dist, self.range_m, np.hypot(tgt[:, 2], tgt[:, 3]), self.speed_ref)
        looted = (batch.kind == ActionKind.LOOT) & (batch.status == 0) & (effects.effect > 0)
        in_reach = self._in_reach(world, ctx, batch, foe, np.isfinite(lost_ms)[mine] & (inv >= 0))
        order = owner_order(rows, t_ms, actors.n)
        _score(order, rows, srow, batch.kind, batch.status, t_ms, (batch.value >= 0.5).astype(np.float64),
               difficulty, batch.excess_ms, batch.speed_ratio, rtt, looted, effects.looted_rare, _REFUSAL_CLASS, foe,
               in_reach, self.interval, lost_ms, last_target, stats, self.th)
        _raise_flags(stats, srow[scored], self.th, self.rare_p, float(ctx.tick))
        if not in_place:
            scatter_fields(world, at.subset(scored), _STAT_FIELDS, stats[scored])
            scatter(world, actors.ids[scored], CheatStats, "last_target", last_target[scored], at=at.subset(scored))

    def _in_reach(self, world, ctx, batch, foe, lost) -> np.ndarray:
        """(n,) bool: attacks on a foe so near now that it was in reach all the window before,
        however the two moved at their top speeds (judged only where the actor's last foe
        died: ``lost``). The test looks at where the foe is, not at when the attack came, so
        it cannot favour fast reactions over slow ones."""
        out = np.zeros(batch.n, np.bool_)
        ask = np.flatnonzero(lost & (foe != 0))
        if ask.size:
            them = gather_fields(world, locate(world, foe[ask]),
                                 ((Position, "x"), (Position, "y"), (Player, "speed_mps"), (Npc, "speed_mps")))
            me = gather_fields(world, locate(world, batch.actor[ask]), ((Player, "speed_mps"),))
            dist = np.hypot(them[:, 0] - batch.x[ask], them[:, 1] - batch.y[ask])
            closing = (me[:, 0] + them[:, 2] + them[:, 3]) * self.speed_slack / 1000.0  # a foe is one or the other
            out[ask] = dist <= self.reach[batch.kind[ask]] - closing * (ACQUIRE_WINDOW_MS + 1000.0 * ctx.dt_s)
        return out

    @staticmethod
    def _lost_ms(world, foes: np.ndarray, tick_ms: float) -> np.ndarray:
        """(p,) float64: the end of the tick each foe died in, NaN for one alive or gone."""
        at = locate(world, foes)
        dead, there = gather(world, foes, Health, "dead", at=at)
        died, _ = gather(world, foes, Health, "died_tick", at=at)
        return np.where(there & (dead != 0), (died + 1.0) * tick_ms, np.nan)


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]
