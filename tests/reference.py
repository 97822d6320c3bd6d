"""Slow, obviously-correct references that the tests hold the numba kernels to.

Each one states the rule it implements in one loop or one vectorised expression; none prunes
or sorts cleverly. Distances use the kernels' (and scipy's) float test: dx*dx + dy*dy,
squares rounded separately, compared with r*r.
"""

from __future__ import annotations

import math

import numpy as np


def _d2(x, y, px, py):
    """(n,) float64 squared distances from (px, py), rounded as the kernels round them."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: inf is the answer
        dx = np.asarray(x, np.float64) - px
        dy = np.asarray(y, np.float64) - py
        return dx * dx + dy * dy


def naive_pairs(x, y, radius):
    """Set of (i, j), i < j, with dx*dx + dy*dy <= radius*radius: every pair tested."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    r2 = float(radius) * float(radius)
    out = set()
    for i in range(x.shape[0]):
        d2 = _d2(x[i + 1 :], y[i + 1 :], x[i], y[i])
        for j in np.flatnonzero(d2 <= r2):
            out.add((i, i + 1 + int(j)))
    return out


def naive_within(x, y, px, py, radius, exclude=-1):
    """(k,) int64 ascending: indices with squared distance to (px, py) <= radius**2, minus ``exclude``."""
    d2 = _d2(x, y, px, py)
    idx = np.flatnonzero(d2 <= float(radius) * float(radius))
    return idx[idx != exclude].astype(np.int64)


def naive_knn(x, y, px, py, k, exclude=-1):
    """(min(k, available),) int64: indices sorted by (squared distance, index), first k, minus ``exclude``."""
    d2 = _d2(x, y, px, py)
    idx = np.arange(d2.shape[0], dtype=np.int64)
    keep = idx != exclude
    d2, idx = d2[keep], idx[keep]
    by_distance_then_index = np.lexsort((idx, d2))
    return idx[by_distance_then_index[:k]]


def naive_aim_log_bf(b, hit, hit_rate, shifts, blind, bins=8, least=0.1):
    """log Bayes factor of a difficulty-blind hit chance (each of ``blind`` equally likely) over
    a human's: the population's hit rate in the shot's bin (``bins`` even bins of b from
    ``least`` to 1) shifted in log-odds by one of ``shifts``, equally likely; from the shots'
    difficulties b and outcomes hit, one shot at a time."""
    human = 0.0
    for shift in shifts:
        like = 1.0
        for bi, h in zip(b, hit):
            k = min(max(int((bi - least) / (1.0 - least) * bins), 0), bins - 1)
            r = min(max(hit_rate[k], 1e-3), 1 - 1e-3)
            p = 1.0 / (1.0 + math.exp(-(math.log(r / (1 - r)) + shift)))
            like *= p if h else 1 - p
        human += like / len(shifts)
    aimbot = 0.0
    for a in blind:
        like = 1.0
        for h in hit:
            like *= a if h else 1 - a
        aimbot += like / len(blind)
    return math.log(aimbot) - math.log(human)
