"""The population's baseline: what honest play looks like, learned from everyone as they play.

A player is compared with the population, not with a formula. Every ``baseline_every_s`` the
anomaly score learns, from the statistics of every scored player:

- the hit rate per difficulty bin (the aim test's human curve): pooled over players, each
  player's shots counting at most ``AIM_CAP_SHOTS`` (a few aimbots cannot drag it), shrunk to
  the world file's prior by ``AIM_PRIOR_SHOTS`` pseudo-shots per bin;
- the chance that an interval between deliberate actions repeats the one before: pooled the
  same way (``REPEAT_CAP``, ``REPEAT_PRIOR``); quantised client clocks or human habits make it
  what it is, not a formula;
- the share of fast target acquisitions the fastest honest players have (``_fastest_share``,
  never above the world file's fastest human's): what a human's eyes, the client's
  interpolation and the game make of reaction times here;
- each statistical test's threshold from the population's own scores: an exponential tail
  through their 85th and 95th percentiles (``_tail_threshold``), read at the false-positive
  rate the world file sets (shared among the tests), and never below the world file's
  threshold. Percentiles that low are the honest bulk's even with some cheaters among the
  players (up to a few percent), and an exponential tail is what a log likelihood ratio's is.

The baseline depends only on the players' statistics (in id order), so a world on N shards
learns the same one from its shards' players as one world does; it changes at the end of a
learning tick and applies from the next. Before ``min_population`` players have enough evidence
for a test, that test keeps the world file's threshold.
"""

from __future__ import annotations

import math

import numpy as np

from systems.anomaly_score.aim import aim_table
from systems.anomaly_score.judge import REPEAT_P, population_scores, prior_hit_rate, prior_scalars
from systems.anomaly_score.layout import (TH_CV, ACQ_FAST, ACQ_N, AIM_BINS, B_ACQ, B_ACQ_P, B_AIM, B_CV, B_GATED,
                                          B_JOINT, B_REPEAT, B_REPEAT_P, HITS_B, INT_N, MIN_REPEAT_INTERVALS, REPEATS,
                                          SCORED_TESTS, SHOTS, SHOTS_B, STAT_FIELDS)
from systems.components import CheatStats, Ghost, Player

AIM_PRIOR_SHOTS = 50.0
AIM_CAP_SHOTS = 200.0
REPEAT_PRIOR = 200.0
REPEAT_CAP = 50.0
ACQ_SCORED_N = 10  # acquisitions a player needs to count in the population's fast share
TAIL_FROM, TAIL_TO = 0.85, 0.95  # the percentiles the tail is drawn through
# Which baseline scalar each scored test's threshold goes to.
_SLOT = {"aim_difficulty": B_AIM, "aim_and_acquisition": B_JOINT, "rhythm_repeats": B_REPEAT, "rhythm_spread": B_CV,
         "acquisition_time": B_ACQ, "rhythm_at_the_gate": B_GATED}


class PopulationBaseline:
    """The baseline the anomaly score judges by (a world resource, kept in snapshots).

    ``scalars`` (BASE_SCALARS,) float64 (``layout.B_*``); ``table`` (2, AIM_BINS, AIM_LEVELS)
    float64, the aim test's human model; ``hit_rate`` (AIM_BINS,) the population's hit rate
    per difficulty bin; ``tick`` the tick it was learned at (-1: the world file's prior);
    ``report`` per scored test its threshold, the prior's, how many players were scored and
    their score percentiles (for the run summary).
    """

    __slots__ = ("scalars", "table", "hit_rate", "tick", "report")

    def __init__(self, th: np.ndarray) -> None:
        self.scalars = prior_scalars(th)
        self.hit_rate = prior_hit_rate(th)
        self.table = aim_table(self.hit_rate)
        self.tick = -1
        self.report: dict[str, dict] = {}

    def adopt(self, scalars: np.ndarray, hit_rate: np.ndarray, tick: int, report: dict) -> None:
        """Take a baseline learned elsewhere (another shard's): the aim table follows from the
        hit rate."""
        self.scalars, self.hit_rate = np.array(scalars, np.float64), np.array(hit_rate, np.float64)
        self.table = aim_table(self.hit_rate)
        self.tick, self.report = int(tick), report

    def learn(self, stats: np.ndarray, th: np.ndarray, tick: int, fp_rate: float, min_population: int) -> None:
        """Learn the baseline from ``stats`` ((p, f) float64 CheatStats rows, in id order, read)."""
        prior = prior_scalars(th)
        shots_b = stats[:, SHOTS_B:SHOTS_B + AIM_BINS]
        w = np.minimum(1.0, AIM_CAP_SHOTS / np.maximum(stats[:, SHOTS], 1.0))[:, None]
        pooled_hits = (w * stats[:, HITS_B:HITS_B + AIM_BINS]).sum(axis=0)
        pooled_shots = (w * shots_b).sum(axis=0)
        h0 = prior_hit_rate(th)
        self.hit_rate = (pooled_hits + AIM_PRIOR_SHOTS * h0) / (pooled_shots + AIM_PRIOR_SHOTS)
        self.table = aim_table(self.hit_rate)
        pairs = np.where(stats[:, INT_N] >= MIN_REPEAT_INTERVALS, stats[:, INT_N] - 1.0, 0.0)
        w = np.minimum(1.0, REPEAT_CAP / np.maximum(pairs, 1.0))
        repeat_p = ((w * np.where(pairs > 0, stats[:, REPEATS], 0.0)).sum() + REPEAT_PRIOR * REPEAT_P) / \
            ((w * pairs).sum() + REPEAT_PRIOR)
        scalars = prior.copy()
        scalars[B_REPEAT_P] = repeat_p
        fast_ref = _fastest_share(stats, min_population)
        if fast_ref is not None:  # the world file's fastest human is the most it may be
            scalars[B_ACQ_P] = min(fast_ref, prior[B_ACQ_P])
        scores = population_scores(np.ascontiguousarray(stats), th, scalars, self.table)
        alpha = fp_rate / len(SCORED_TESTS)
        report = {}
        for j, name in enumerate(SCORED_TESTS):
            col = scores[:, j]
            col = col[~np.isnan(col)]
            slot = _SLOT[name]
            entry = {"threshold": prior[slot], "prior": prior[slot] if np.isfinite(prior[slot]) else None,
                     "scored": int(col.size)}
            if col.size:
                q = np.quantile(col, (0.5, TAIL_FROM, 0.9, TAIL_TO, 0.99))
                entry.update(q50=q[0], q90=q[2], q99=q[4])
                if col.size >= min_population:
                    floor = prior[slot] if np.isfinite(prior[slot]) else -np.inf
                    entry["threshold"] = max(floor, _tail_threshold(col, q[1], q[3], alpha))
                    if not np.isfinite(entry["threshold"]):  # no tail: the world file's spread cut
                        entry["threshold"] = -math.log(th[TH_CV])
            scalars[slot] = entry["threshold"]
            report[name] = {k: _figure(v) for k, v in entry.items()}
        report["rhythm_repeats"]["repeat_p"] = round(float(repeat_p), 4)
        report["rhythm_spread"]["cv_threshold"] = round(math.exp(-scalars[B_CV]), 4)
        report["acquisition_time"]["fast_share_ref"] = round(float(scalars[B_ACQ_P]), 4)
        report["aim_difficulty"]["hit_rate"] = [round(float(h), 4) for h in self.hit_rate]
        self.scalars, self.tick, self.report = scalars, int(tick), report


def _figure(v):
    """A report's number: rounded; None for a threshold not set (infinite)."""
    if isinstance(v, float):
        return round(float(v), 4) if math.isfinite(v) else None
    return v


def _fastest_share(stats: np.ndarray, min_population: int) -> float | None:
    """The share of fast target acquisitions the fastest honest players have, from the
    players' own shares: their 90th percentile plus twice its distance from the median (an
    upper reach that the counting noise of a few acquisitions only widens, and that a few
    percent of cheaters cannot drag); None with fewer than ``min_population`` players of
    ``ACQ_SCORED_N`` acquisitions or more."""
    n = stats[:, ACQ_N]
    mine = n >= ACQ_SCORED_N
    if mine.sum() < min_population:
        return None
    q50, q90 = np.quantile(stats[mine, ACQ_FAST] / n[mine], (0.5, 0.9))
    return float(min(max(q90 + 2.0 * (q90 - q50), 0.02), 0.9))


def _tail_threshold(scores: np.ndarray, low: float, high: float, alpha: float) -> float:
    """The score only ``alpha`` of the population would exceed, on an exponential tail drawn
    through its share above ``low`` (or above 0, for scores whose bulk lies below: 0 is where a
    likelihood ratio stops favouring the honest model) and above ``high``. -inf when the
    scores have no such tail (it stays the world file's)."""
    low = max(low, 0.0)
    above_low, above_high = float((scores > low).mean()), float((scores > high).mean())
    if high <= low or above_high <= 0.0 or above_low <= above_high:
        return -np.inf
    rate = math.log(above_low / above_high) / (high - low)
    return high + math.log(above_high / alpha) / rate


def scored_rows(world) -> tuple[np.ndarray, np.ndarray]:
    """(ids (p,) int64, stats (p, f) float64): every scored player this world owns (not the
    copies it holds of other shards' players), in id order."""
    ids, rows = [], []
    for t in world.tables:
        if t.n and t.has(CheatStats) and t.has(Player) and not t.has(Ghost):
            ids.append(t.ids.copy())
            rows.append(t.block(CheatStats, STAT_FIELDS[0][1])[0].T[:t.n].copy())
    if not ids:
        return np.empty(0, np.int64), np.empty((0, len(STAT_FIELDS)))
    ids, rows = np.concatenate(ids), np.concatenate(rows)
    order = np.argsort(ids, kind="stable")
    return ids[order], rows[order]
