"""Target acquisition: the first attack on a new foe, timed from seeing the last one die.

Nobody aims at the next foe before noticing the last one is gone, so, unlike the answer to a
hit, no attack planned earlier blurs it; and a weapon or an approach can only delay it, never
make a human look faster. The fold counts each switch in three bins (fast, quick, neither);
``_acquired`` keeps those whose new foe was surely in reach all along; the judge weighs the
counts: a binomial tail of the fast ones for the fastest human, and a Bayes factor of all three
against the honest reaction prior, which multiplies with the aim factor (independent evidence).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs.config import JIT
from systems.actions import SEEN_X, SEEN_Y
from systems.anomaly_score.layout import ACQ_CHANGED, ACQ_FAST, ACQ_N, ACQ_QUICK, SPEED, TH_SCALARS
from systems.anomaly_score.tails import _normal_cdf

ACQUIRE_GRID = 12  # levels of the acquisition factor's cheat model
ACQUIRE_HUMAN = 16  # and of its honest one
ACQUIRE_CHEAT_SD_MS = 30.0
ACQUIRE_SLIP = 0.05
ACQUIRE_WINDOW_MS = 500.0  # a first attack on a new foe later than this after the last died is no reaction
ACQUIRE_READY_MS = 100.0  # the weapon must be ready this soon after the death was seen


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
        closing = (run[r, SPEED] + top_speed[k, 0] + top_speed[k, 1]) * speed_slack / 1000.0
        if dist <= reach_m[kind[i]] - closing * window_ms:
            stats[r, ACQ_N] += 1.0
            dirty[r] |= ACQ_CHANGED
            if pending[k, 1] == 0:
                stats[r, ACQ_FAST] += 1.0
            elif pending[k, 1] == 1:
                stats[r, ACQ_QUICK] += 1.0


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
    h = TH_SCALARS
    c = h + ACQUIRE_HUMAN * 4
    slow = n - fast - quick
    return (_log_mixture(fast, quick, slow, th, -1, c, ACQUIRE_GRID)
            - _log_mixture(fast, quick, slow, th, h, h + ACQUIRE_HUMAN, ACQUIRE_HUMAN))

