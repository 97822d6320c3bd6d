"""Tail chances the anomaly tests compare counts with: binomial tails, computed only as far
as a test needs them, and the least count a tail test would call extreme."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs.config import JIT


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

