"""The judge: a player's statistics against the tests' thresholds, and its flags.

Thresholds come from two places: the world file's ``[cheat]`` section (``thresholds``: the
counts of evidence a test needs, the physical and economic limits, the priors), and the
population's baseline (``population``: the hit rate per difficulty, the chance of a repeated
interval, and each statistical test's threshold as the population's own scores call for it,
never below the world file's). ``prior_baseline`` is that baseline before anyone played.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs.config import JIT
from systems.anomaly_score.acquisition import acquire_log_bf, acquisition_model
from systems.anomaly_score.aim import aim_log_bf, aim_table, bin_centres
from systems.anomaly_score.layout import (ACQ_CHANGED, ACQ_FAST, ACQ_N, ACQ_QUICK, AIM_CHANGED, ALL_CHANGED, B_ACQ,
                                          B_ACQ_P, B_AIM, B_CV, B_ECON, B_ECON_P, B_GATE_CV, B_GATE_KURT, B_GATE_SKEW,
                                          B_GATED, B_JOINT, B_REPEAT, B_REPEAT_P, BASE_SCALARS, EVIDENCE,
                                          EXCESS_CHANGED, EXCESS_LATE, EXCESS_N, FLAG_ACQUIRE, FLAG_AIM, FLAG_ECONOMY,
                                          FLAG_EXCESS, FLAG_LUCK, FLAG_MOVE, FLAG_RATE, FLAG_REACTION, FLAG_REGULAR,
                                          FLAG_SPEED, FLAG_TICK, FLAG_TIMING, FLAGS, GATE_INNER, GATE_MIN_MS, GATE_N,
                                          GATE_SPAN, GATE_SQ, GATE_SUM, INT_N, MIN_GATED, INT_SQ, INT_SUM, LATE_SHARE,
                                          LOOT_CHANGED, LOOTS, MIN_REPEAT_INTERVALS, ECON_N, R_ECONOMY, R_MOVE, R_RATE,
                                          R_TIMING, RARES, REACT_CHANGED, REACT_N, REACT_SQ, REACT_SUM, REFUSED,
                                          REPEATS, REPEATS_CHANGED, RHYTHM_CHANGED, SCORED_TESTS, SHOTS, SPEED_CHANGED,
                                          SPEED_CUSUM, SPEED_CUSUM_H, TH_ACQ_TAIL_P, TH_AIM, TH_CV, TH_FLOOR_FAST,
                                          TH_FP_RATE, TH_LUCK_P, TH_MIN_INT, TH_MIN_LOOTS, TH_MIN_REACT, TH_MIN_SHOTS,
                                          TH_MIN_TIMINGS, TH_REACT_MEAN, TH_REACT_SD, TH_REFUSALS, TH_SKILL_MEAN)
from systems.anomaly_score.tails import _least_extreme, _log_binom_tail

# The chance that an honest interval between deliberate actions repeats the one before (within
# 5 %, or 2x, 3x, 1/2x, 1/3x of it): the prior, ~0.11 for exponential intervals, until the
# population says what it is.
REPEAT_P = 0.15
# The chance that an honest trade or potion is refused because the purse changed while it was
# on its way (an offer that a trade in flight spent): the prior, until the population says.
ECON_RACE_P = 0.01
MIN_ACQUISITIONS_SCORED = 5  # fewer say nothing of a player's reactions: not in the population's scores


def thresholds(c) -> np.ndarray:
    """The world file's ``[cheat]`` section as the float64 vector the kernels read:
    ``TH_SCALARS`` scalars (``layout.TH_*``), then the acquisition model (``acquisition_model``),
    flattened."""
    m = acquisition_model(c)
    return np.concatenate([
        np.array([c.refusals, c.min_shots, c.aim_log_bf, c.min_reactions, c.reaction_mean_ms, c.reaction_sd_ms,
                  c.min_intervals, c.regularity_cv, c.min_timings, c.excess_delay_ms, c.min_loots, c.luck_p,
                  c.skill_mean, c.skill_sd, c.skill_max, c.acquire_fast_ms, m["floor_fast"], c.acquire_tail_p,
                  c.acquire_quick_ms, c.gate_share, c.false_positive_rate]),
        m["human_w"], m["human"].T.ravel(), m["cheat"].T.ravel()]).astype(np.float64)


def test_alpha(fp_rate: float) -> float:
    """The false-positive rate each statistical test is held to: the world file's, shared
    among them."""
    return fp_rate / len(SCORED_TESTS)


def prior_scalars(th: np.ndarray) -> np.ndarray:
    """(BASE_SCALARS,) the baseline's thresholds and repeat chance from the world file alone."""
    out = np.zeros(BASE_SCALARS)
    out[B_AIM] = out[B_JOINT] = th[TH_AIM]
    out[B_REPEAT_P] = REPEAT_P
    out[B_REPEAT] = -math.log(th[TH_LUCK_P])
    out[B_CV] = -math.log(th[TH_CV])
    out[B_ACQ] = -math.log(th[TH_ACQ_TAIL_P])
    out[B_GATED] = np.inf  # no prior: judged once the population has shown how humans spread there
    out[B_GATE_CV], out[B_GATE_KURT], out[B_GATE_SKEW] = 0.0, 3.0, 0.0
    out[B_ECON_P] = ECON_RACE_P
    out[B_ECON] = -math.log(test_alpha(th[TH_FP_RATE]))
    out[B_ACQ_P] = th[TH_FLOOR_FAST]
    return out


def prior_hit_rate(th: np.ndarray) -> np.ndarray:
    """(AIM_BINS,) the hit rate per difficulty bin the world file's priors give: the mean
    skill times the bin's base chance."""
    return th[TH_SKILL_MEAN] * bin_centres()


def prior_baseline(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scalars, aim table): the baseline before anyone played."""
    return prior_scalars(th), aim_table(prior_hit_rate(th))


@njit(inline="always", **JIT)
def _spread_score(row):
    """How tight a player's intervals between deliberate actions are: -log of their coefficient
    of variation, less one standard error of it on as many intervals (``log_cv_variance`` of a
    normal spread): a spread measured on a few dozen intervals is judged by the most it may
    be, not by its luck. NaN without intervals."""
    n = row[INT_N]
    mean = row[INT_SUM] / n
    if not mean > 0.0:
        return np.nan
    cv = max(math.sqrt(max(row[INT_SQ] / n - mean * mean, 0.0)) / mean, 1e-9)
    return -math.log(cv) - math.sqrt(log_cv_variance(n, cv, 3.0, 0.0))


@njit(inline="always", **JIT)
def log_cv_variance(n, cv, kurtosis, skewness):
    """The sampling variance of the log of a coefficient of variation measured on ``n`` draws
    of a spread of that ``cv``, kurtosis and skewness: the sample deviation's, the mean's, less
    their covariance (a right-skewed spread's mean and deviation rise together). Never under
    half the deviation's alone."""
    sd_part = (kurtosis - 1.0) / 4.0
    return max(sd_part + cv * cv - skewness * cv, 0.5 * sd_part) / n


@njit(inline="always", **JIT)
def _gate_score(row, base):
    """How much tighter than the population's reference spread a player's attacks at the gate
    came (``fold``: how long after its weapon was ready), as a normal deviate: the squared
    ratio of its coefficient of variation to the reference's, on a chi-square whose degrees of
    freedom give it the sampling variance a human at the reference would show on as many
    attacks (``log_cv_variance``, with the population's kurtosis and skewness there), read
    through Wilson and Hilferty's cube root. A human holding the trigger, its client's frames
    and delays spread it; a bot's beat a little over the weapon's interval does not. NaN (no
    evidence) without a reference yet, or when the attacks came on average less than
    GATE_MIN_MS after (the frames set that) or more than GATE_INNER of the gate's width."""
    n = row[GATE_N]
    mean = row[GATE_SUM] / n
    ref = base[B_GATE_CV]
    if mean < GATE_MIN_MS or mean > GATE_INNER * row[GATE_SPAN] / n or not ref > 0.0 or n < 2.0:
        return np.nan
    cv2 = max(row[GATE_SQ] / n - mean * mean, 0.0) * n / (n - 1.0) / (mean * mean)
    nu = 0.5 / log_cv_variance(n, ref, base[B_GATE_KURT], base[B_GATE_SKEW])
    h = 2.0 / (9.0 * nu)
    return ((1.0 - h) - (cv2 / (ref * ref)) ** (1.0 / 3.0)) / math.sqrt(h)


@njit(**JIT)
def _judge(stats, rows, dirty, th, base, table, rare_p, tick, least_repeats):
    """Re-judge the rows ``rows`` of ``stats`` in place: new flags join the raised ones (a flag
    stays), with the tick of the first. Tests already passed are not run again, nor those
    whose evidence did not change (``dirty``, cleared here).

    stats: (rows, f) float64, read and written; rows: (k,) int64; dirty: (rows,) int64, read
    and written; th: from ``thresholds``; base, table: the population's baseline (scalars
    ``layout.B_*`` and the aim table); least_repeats: ``_least_extreme``'s memo for the repeat
    test (this baseline), read and written.
    """
    log_luck = math.log(th[TH_LUCK_P])
    both = FLAG_AIM | FLAG_ACQUIRE
    for k in range(rows.shape[0]):
        r = rows[k]
        d = dirty[r]
        dirty[r] = 0
        if (d & EVIDENCE) == 0:  # nothing to test (``_fold`` ran the tests of its moves)
            continue
        raised = int(stats[r, FLAGS])
        f = 0
        if d & REFUSED:
            if stats[r, R_MOVE] >= th[TH_REFUSALS]:
                f |= FLAG_MOVE
            if stats[r, R_TIMING] >= th[TH_REFUSALS]:
                f |= FLAG_TIMING
            if stats[r, R_RATE] >= th[TH_REFUSALS]:
                f |= FLAG_RATE
            # Claims of what the purse does not hold: more of them, out of the player's trades
            # and potions, than the population's races explain.
            if stats[r, R_ECONOMY] >= th[TH_REFUSALS] and _log_binom_tail(
                    stats[r, R_ECONOMY], max(stats[r, ECON_N], stats[r, R_ECONOMY]), base[B_ECON_P],
                    -base[B_ECON]) < -base[B_ECON]:
                f |= FLAG_ECONOMY
        if (d & SPEED_CHANGED) and stats[r, SPEED_CUSUM] > SPEED_CUSUM_H:
            f |= FLAG_SPEED
        shots = stats[r, SHOTS]
        acquired = stats[r, ACQ_N]
        log_bf = np.nan  # computed when needed
        if (d & AIM_CHANGED) and (raised & FLAG_AIM) == 0 and shots >= th[TH_MIN_SHOTS]:
            log_bf = aim_log_bf(stats[r], table)
            if log_bf >= base[B_AIM]:
                f |= FLAG_AIM
        n = stats[r, REACT_N]
        if (d & REACT_CHANGED) and n >= th[TH_MIN_REACT]:
            mean = stats[r, REACT_SUM] / n
            sd = math.sqrt(max(stats[r, REACT_SQ] / n - mean * mean, 0.0))
            if mean < th[TH_REACT_MEAN] and sd < th[TH_REACT_SD]:
                f |= FLAG_REACTION
        n = stats[r, INT_N]
        if (d & RHYTHM_CHANGED) and n >= th[TH_MIN_INT] and _spread_score(stats[r]) >= base[B_CV]:
            f |= FLAG_REGULAR
        g = stats[r, GATE_N]
        if (d & RHYTHM_CHANGED) and g >= MIN_GATED and _gate_score(stats[r], base) >= base[B_GATED]:
            f |= FLAG_REGULAR
        # The count of repeated intervals is a tail test of its own, valid from a few on.
        if (d & REPEATS_CHANGED) and ((f | raised) & FLAG_REGULAR) == 0 and n >= MIN_REPEAT_INTERVALS and \
                stats[r, REPEATS] >= _least_extreme(least_repeats, int(n) - 1, base[B_REPEAT_P], -base[B_REPEAT]):
            f |= FLAG_REGULAR
        n = stats[r, EXCESS_N]
        if (d & EXCESS_CHANGED) and n >= th[TH_MIN_TIMINGS] and stats[r, EXCESS_LATE] > LATE_SHARE * n:
            f |= FLAG_EXCESS
        if (d & LOOT_CHANGED) and (raised & FLAG_LUCK) == 0 and stats[r, LOOTS] >= th[TH_MIN_LOOTS] and \
                _log_binom_tail(stats[r, RARES], stats[r, LOOTS], rare_p, log_luck) < log_luck:
            f |= FLAG_LUCK
        if (d & ACQ_CHANGED) and (raised & FLAG_ACQUIRE) == 0 and acquired > 0.0 and \
                _log_binom_tail(stats[r, ACQ_FAST], acquired, base[B_ACQ_P], -base[B_ACQ]) < -base[B_ACQ]:
            f |= FLAG_ACQUIRE
        # Aim and acquisition are independent evidence: their factors multiply.
        if (d & (AIM_CHANGED | ACQ_CHANGED)) and (raised & both) != both and shots > 0.0 and acquired > 0.0:
            if np.isnan(log_bf):
                log_bf = aim_log_bf(stats[r], table)
            if log_bf + acquire_log_bf(stats[r, ACQ_FAST], stats[r, ACQ_QUICK], acquired, th) >= base[B_JOINT]:
                f |= both
        if f != 0:
            if stats[r, FLAG_TICK] < 0.0:
                stats[r, FLAG_TICK] = tick
            stats[r, FLAGS] = float(raised | f)


@njit(**JIT)
def population_scores(stats, th, base, table):
    """(p, len(SCORED_TESTS)) each row's score in each statistical test, larger the more
    suspicious, NaN where the row has too little evidence for it: the aim factor (log), aim
    and acquisition factors together, the repeat count's tail (-log), the spread of intervals
    (``_spread_score``), the fast acquisitions' tail (-log), the spread of
    the attacks at the gate against the population's (``_gate_score``).

    stats: (p, f) float64 CheatStats rows, read; th, base, table: as ``_judge`` (of base, the
    repeat chance and the fast share the tails are taken at, and the reference spread at the
    gate).
    """
    out = np.full((stats.shape[0], 6), np.nan)
    for r in range(stats.shape[0]):
        shots, acquired, n = stats[r, SHOTS], stats[r, ACQ_N], stats[r, INT_N]
        aim = aim_log_bf(stats[r], table) if shots > 0.0 else 0.0
        if shots >= th[TH_MIN_SHOTS]:
            out[r, 0] = aim
        if shots > 0.0 and acquired >= MIN_ACQUISITIONS_SCORED:
            out[r, 1] = aim + acquire_log_bf(stats[r, ACQ_FAST], stats[r, ACQ_QUICK], acquired, th)
        if n >= MIN_REPEAT_INTERVALS:
            out[r, 2] = -_log_binom_tail(stats[r, REPEATS], n - 1.0, base[B_REPEAT_P])
        if n >= th[TH_MIN_INT]:
            out[r, 3] = _spread_score(stats[r])
        if acquired >= MIN_ACQUISITIONS_SCORED:
            out[r, 4] = -_log_binom_tail(stats[r, ACQ_FAST], acquired, base[B_ACQ_P])
        if stats[r, GATE_N] >= MIN_GATED:
            out[r, 5] = _gate_score(stats[r], base)
    return out


assert len(SCORED_TESTS) == 6


def _flags(stats: np.ndarray, th: np.ndarray, rare_p: float,
           baseline: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flag bits (p,) int64, aim factor (p,) float64, log) that rows of statistics ``stats``
    (p, f) call for, all tests run, under ``baseline`` (scalars, aim table; the world file's
    prior when None). ``stats`` is not changed."""
    base, table = prior_baseline(th) if baseline is None else baseline
    judged = np.array(stats, np.float64)
    judged[:, FLAGS] = 0.0
    p = judged.shape[0]
    _judge(judged, np.arange(p, dtype=np.int64), np.full(p, ALL_CHANGED, np.int64), th, base, table, rare_p, 0.0,
           np.full(0, -1, np.int64))
    scores = np.array([aim_log_bf(judged[r], table) for r in range(p)]) if p else np.empty(0)
    return judged[:, FLAGS].astype(np.int64), scores
