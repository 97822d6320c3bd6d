"""The aim test: do a player's hits fall with the difficulty of its shots the way everyone's do?

A shot's difficulty is the server's base chance b of it (``shot_difficulty``: lower far away
and on fast targets). It is a coordinate, not a truth: shots are counted in ``AIM_BINS`` bins
of b, and the hit rate a human has in each bin is learned from the population as it plays
(``systems.anomaly_score.population``), from the world file's prior at a cold start.

The test is a Bayes factor between two models of a player's hits and misses per bin:
- human: the population's curve, shifted on the log-odds scale by the player's own level
  (one of ``AIM_LEVELS`` shifts, equally likely): better players hit more at every range,
  and all hit less on hard shots;
- blind: one hit chance whatever the difficulty (any of ``AIM_BLIND``, equally likely), which
  is what an aimbot looks like; below 0.3 it gains nothing a human could not explain.
Were the human model exact, the factor would be a martingale for honest players, so that at
most e^-T of them ever reach e^T; the threshold the population's own scores call for
(``population``) covers what it is not.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs.config import JIT
from systems.anomaly_score.layout import AIM_BINS, HITS, HITS_B, SHOTS, SHOTS_B

AIM_BLIND = np.linspace(0.3, 0.95, 14)
_LOG_BLIND_HIT, _LOG_BLIND_MISS = np.log(AIM_BLIND), np.log1p(-AIM_BLIND)
AIM_LEVELS = 13
AIM_SHIFTS = np.linspace(-3.0, 3.0, AIM_LEVELS)  # the human model's levels, in log-odds
B_LEAST = 0.1  # the least base chance the shot model gives (the longest range at the reference speed)


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


@njit(inline="always", **JIT)
def difficulty_bin(b):
    """The aim test's bin of a shot of base chance b: ``AIM_BINS`` even bins from B_LEAST to 1."""
    k = int((b - B_LEAST) / (1.0 - B_LEAST) * AIM_BINS)
    return min(max(k, 0), AIM_BINS - 1)


def bin_centres() -> np.ndarray:
    """(AIM_BINS,) the base chance at the middle of each bin."""
    return B_LEAST + (1.0 - B_LEAST) * (np.arange(AIM_BINS) + 0.5) / AIM_BINS


def aim_table(hit_rate: np.ndarray) -> np.ndarray:
    """(2, AIM_BINS, AIM_LEVELS) log chance of a hit, then of a miss, per bin and level of the
    human model, from the population's hit rate per bin ((AIM_BINS,), clipped away from 0
    and 1)."""
    h = np.clip(np.asarray(hit_rate, np.float64), 1e-3, 1.0 - 1e-3)
    logit = np.log(h / (1.0 - h))[:, None] + AIM_SHIFTS[None, :]
    return np.stack([-np.log1p(np.exp(-logit)), -np.log1p(np.exp(logit))])


@njit(**JIT)
def aim_log_bf(row, table):
    """log Bayes factor of the blind model over the human one for a player's shots.

    row: (f,) float64 a CheatStats row (the stats block), read; table: (2, AIM_BINS,
    AIM_LEVELS) from ``aim_table``, read. No shots: 0 (no evidence either way).
    """
    hits, shots = row[HITS], row[SHOTS]
    top_b = -np.inf
    for j in range(_LOG_BLIND_HIT.shape[0]):
        top_b = max(top_b, hits * _LOG_BLIND_HIT[j] + (shots - hits) * _LOG_BLIND_MISS[j])
    sum_b = 0.0
    for j in range(_LOG_BLIND_HIT.shape[0]):
        sum_b += math.exp(hits * _LOG_BLIND_HIT[j] + (shots - hits) * _LOG_BLIND_MISS[j] - top_b)
    like = np.zeros(AIM_LEVELS)
    for k in range(AIM_BINS):
        n = row[SHOTS_B + k]
        if n == 0.0:
            continue
        h = row[HITS_B + k]
        for g in range(AIM_LEVELS):
            like[g] += h * table[0, k, g] + (n - h) * table[1, k, g]
    top_h = like.max()
    sum_h = 0.0
    for g in range(AIM_LEVELS):
        sum_h += math.exp(like[g] - top_h)
    return top_b + math.log(sum_b / _LOG_BLIND_HIT.shape[0]) - top_h - math.log(sum_h / AIM_LEVELS)
