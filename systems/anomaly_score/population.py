"""The population's baseline: what honest play looks like, learned from everyone as they play.

A player is compared with the population, not with a formula. Every ``baseline_every_s`` the
anomaly score learns, from the statistics of every scored player:

- the hit rate per difficulty bin (the aim test's human curve): pooled over players, each
  player's shots counting at most ``AIM_CAP_SHOTS`` (a few aimbots cannot drag it), shrunk to
  the world file's prior by ``AIM_PRIOR_SHOTS`` pseudo-shots per bin;
- the chance that an interval between deliberate actions repeats the one before: pooled the
  same way (``REPEAT_CAP``, ``REPEAT_PRIOR``); quantised client clocks or human habits make it
  what it is, not a formula;
- the chance that an honest trade or potion is refused for what the purse holds (a race with
  a trade in flight): pooled the same way over the players not flagged for it (``_race_rate``);
  the economy refusals are a binomial tail against it;
- the share of fast target acquisitions the fastest honest players have (``_fastest_share``,
  never above the world file's fastest human's): what a human's eyes, the client's
  interpolation and the game make of reaction times here;
- the reference spread at the gate (``_gate_reference``): how steadily after its weapon was
  ready the steadiest honest players attack, from the players with ``GATE_REF_N`` such attacks
  or more: a normal tail on the log of their coefficients of variation, drawn through the
  median and the lower quartile less the noise of their few attacks (from the kurtosis and
  skewness of the delays among the steadier half), read at the false-positive rate. Its test
  is that model's own (``_gate_score``, a normal deviate judged at the false-positive rate),
  not a tail of scores: the players at the top of that tail are the bots it is for;
- each other statistical test's threshold from the population's own scores: an exponential tail
  through their 85th and 95th percentiles (``_tail_threshold``), read at the false-positive
  rate the world file sets (shared among the tests), and never below the world file's
  threshold. Percentiles that low are the honest bulk's even with some cheaters among the
  players (up to a few percent), and an exponential tail is what a log likelihood ratio's is.

The baseline depends only on the players' statistics (in id order), so a world on N shards
learns the same one from its shards' players as one world does. It is learned from the
statistics at the end of a learning tick, over the ticks up to the next (``LearningJob``: the
references at once, the players' scores a share a tick, the thresholds last), and applies from
the tick after the last of them. Before ``min_population`` players have enough evidence
for a test, that test keeps the world file's threshold.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from systems.anomaly_score.aim import aim_table
from systems.anomaly_score.judge import (ECON_RACE_P, REPEAT_P, log_cv_variance, population_scores, prior_hit_rate,
                                         prior_scalars, test_alpha)
from systems.anomaly_score.layout import (TH_CV, ACQ_FAST, ACQ_N, AIM_BINS, B_ACQ, B_ACQ_P, B_AIM, B_CV, B_ECON,
                                          B_ECON_P, B_GATE_CV, B_GATE_KURT, B_GATE_SKEW, B_GATED, B_JOINT, B_REPEAT,
                                          B_REPEAT_P, ECON_N, FLAG_ECONOMY, FLAGS, GATE_CU, GATE_INNER, GATE_MIN_MS,
                                          GATE_MIN_REFERENCE, GATE_N, GATE_QU, GATE_REF_N, GATE_SPAN, GATE_SQ, GATE_SUM,
                                          HITS_B, INT_N, MIN_REPEAT_INTERVALS, R_ECONOMY, REPEATS, SCORED_TESTS, SHOTS,
                                          SHOTS_B, STAT_FIELDS)
from systems.components import CheatStats, Ghost, Player

AIM_PRIOR_SHOTS = 50.0
AIM_CAP_SHOTS = 200.0
REPEAT_PRIOR = 200.0
REPEAT_CAP = 50.0
ECON_PRIOR = 200.0
ECON_CAP = 100.0
ACQ_SCORED_N = 10  # acquisitions a player needs to count in the population's fast share
TAIL_FROM, TAIL_TO = 0.85, 0.95  # the percentiles the tail is drawn through
# Which baseline scalar each scored test's threshold goes to.
_SLOT = {"aim_difficulty": B_AIM, "aim_and_acquisition": B_JOINT, "rhythm_repeats": B_REPEAT, "rhythm_spread": B_CV,
         "acquisition_time": B_ACQ, "rhythm_at_the_gate": B_GATED}


class LearningJob:
    """A baseline being learned from one tick's statistics, over the ticks that follow (so that
    no tick pays for all of it): the references first, then the players' scores under them,
    some rows a tick, then the thresholds (``PopulationBaseline.advance``), each on a tick of
    its own after the one the statistics were taken on. Plain arrays and numbers: a snapshot
    keeps it with the baseline."""

    __slots__ = ("stats", "tick", "th", "fp_rate", "min_population", "prior", "scalars", "hit_rate", "gate",
                 "table", "scores", "done")

    def __init__(self, stats: np.ndarray, th: np.ndarray, tick: int, fp_rate: float, min_population: int) -> None:
        self.stats = np.ascontiguousarray(stats, np.float64)
        self.tick, self.th, self.fp_rate, self.min_population = int(tick), th, float(fp_rate), int(min_population)
        self.scores = np.full((self.stats.shape[0], len(SCORED_TESTS)), np.nan)
        self.done = 0  # rows scored
        self.prior = self.scalars = self.hit_rate = self.table = self.gate = None  # (``_references``)


class PopulationBaseline:
    """The baseline the anomaly score judges by (a world resource, kept in snapshots).

    ``scalars`` (BASE_SCALARS,) float64 (``layout.B_*``); ``table`` (2, AIM_BINS, AIM_LEVELS)
    float64, the aim test's human model; ``hit_rate`` (AIM_BINS,) the population's hit rate
    per difficulty bin; ``tick`` the tick of the statistics it was learned from (-1: the world
    file's prior); ``report`` per scored test its threshold, the prior's, how many players were
    scored and their score percentiles (for the run summary); ``job`` the next baseline, while
    it is being learned (``LearningJob``), else None.
    """

    __slots__ = ("scalars", "table", "hit_rate", "tick", "report", "job")

    def __init__(self, th: np.ndarray) -> None:
        self.scalars = prior_scalars(th)
        self.hit_rate = prior_hit_rate(th)
        self.table = aim_table(self.hit_rate)
        self.tick = -1
        self.report: dict[str, dict] = {}
        self.job: LearningJob | None = None

    def adopt(self, scalars: np.ndarray, hit_rate: np.ndarray, tick: int, report: dict) -> None:
        """Take a baseline learned elsewhere (another shard's): the aim table follows from the
        hit rate."""
        self.scalars, self.hit_rate = np.array(scalars, np.float64), np.array(hit_rate, np.float64)
        self.table = aim_table(self.hit_rate)
        self.tick, self.report = int(tick), report

    def learn(self, stats: np.ndarray, th: np.ndarray, tick: int, fp_rate: float, min_population: int) -> None:
        """Learn the baseline from ``stats`` ((p, f) float64 CheatStats rows, in id order, read),
        all at once."""
        self.start(stats, th, tick, fp_rate, min_population)
        self.advance(None)

    def start(self, stats: np.ndarray, th: np.ndarray, tick: int, fp_rate: float, min_population: int) -> None:
        """Begin learning the next baseline from ``stats`` (kept, not copied: the caller hands
        over its own copy; the baseline in force stays until ``advance`` finishes)."""
        self.job = LearningJob(stats, th, tick, fp_rate, min_population)

    def _references(self, job: LearningJob) -> None:
        """The first step of learning: the hit rates, the repeat chance, the race rate, the fast
        share and the gate's reference, which the players' scores are then taken under."""
        stats, th, min_population, fp_rate = job.stats, job.th, job.min_population, job.fp_rate
        job.prior = prior = prior_scalars(th)
        shots_b = stats[:, SHOTS_B:SHOTS_B + AIM_BINS]
        w = np.minimum(1.0, AIM_CAP_SHOTS / np.maximum(stats[:, SHOTS], 1.0))[:, None]
        pooled_hits = (w * stats[:, HITS_B:HITS_B + AIM_BINS]).sum(axis=0)
        pooled_shots = (w * shots_b).sum(axis=0)
        job.hit_rate = (pooled_hits + AIM_PRIOR_SHOTS * prior_hit_rate(th)) / (pooled_shots + AIM_PRIOR_SHOTS)
        job.table = aim_table(job.hit_rate)
        pairs = np.where(stats[:, INT_N] >= MIN_REPEAT_INTERVALS, stats[:, INT_N] - 1.0, 0.0)
        w = np.minimum(1.0, REPEAT_CAP / np.maximum(pairs, 1.0))
        repeat_p = ((w * np.where(pairs > 0, stats[:, REPEATS], 0.0)).sum() + REPEAT_PRIOR * REPEAT_P) / \
            ((w * pairs).sum() + REPEAT_PRIOR)
        scalars = job.scalars = prior.copy()
        scalars[B_REPEAT_P] = repeat_p
        scalars[B_ECON_P] = _race_rate(stats)
        fast_ref = _fastest_share(stats, min_population)
        if fast_ref is not None:  # the world file's fastest human is the most it may be
            scalars[B_ACQ_P] = min(fast_ref, prior[B_ACQ_P])
        job.gate = _gate_reference(stats, min_population, fp_rate)
        if job.gate is not None:
            scalars[B_GATE_CV], scalars[B_GATE_KURT], scalars[B_GATE_SKEW] = job.gate
            scalars[B_GATED] = -NormalDist().inv_cdf(test_alpha(fp_rate))

    def advance(self, rows: int | None) -> bool:
        """Go on learning: find the references first; then score up to ``rows`` more players
        (None: all that are left, and finish at once); when all are scored, set the thresholds
        and put the new baseline in force. True when this call put it in force."""
        job = self.job
        if job is None:
            return False
        if job.scalars is None:
            self._references(job)
            if rows is not None:
                return False
        p = job.stats.shape[0]
        if job.done < p:
            hi = p if rows is None else min(p, job.done + max(int(rows), 1))
            job.scores[job.done:hi] = population_scores(job.stats[job.done:hi], job.th, job.scalars, job.table)
            job.done = hi
            if rows is not None:
                return False
        self._finish(job)
        self.job = None
        return True

    def _finish(self, job: LearningJob) -> None:
        prior, scalars = job.prior, job.scalars
        alpha = test_alpha(job.fp_rate)
        report = {}
        for j, name in enumerate(SCORED_TESTS):
            col = job.scores[:, j]
            col = col[~np.isnan(col)]
            slot = _SLOT[name]
            entry = {"threshold": prior[slot], "prior": prior[slot] if np.isfinite(prior[slot]) else None,
                     "scored": int(col.size)}
            if col.size:
                q = np.quantile(col, (0.5, TAIL_FROM, 0.9, TAIL_TO, 0.99))
                entry.update(q50=q[0], q90=q[2], q99=q[4])
            if slot == B_GATED:  # its model's own, set with the reference (``_references``)
                entry["threshold"] = scalars[B_GATED]
            elif col.size and col.size >= job.min_population:
                floor = prior[slot] if np.isfinite(prior[slot]) else -np.inf
                entry["threshold"] = max(floor, _tail_threshold(col, q[1], q[3], alpha))
                if not np.isfinite(entry["threshold"]):  # no tail: the world file's spread cut
                    entry["threshold"] = -math.log(job.th[TH_CV])
            scalars[slot] = entry["threshold"]
            report[name] = {k: _figure(v) for k, v in entry.items()}
        gate = job.gate
        report["rhythm_repeats"]["repeat_p"] = round(float(scalars[B_REPEAT_P]), 4)
        report["rhythm_spread"]["cv_threshold"] = round(math.exp(-scalars[B_CV]), 4)
        report["economy_refusals"] = {"threshold": _figure(float(scalars[B_ECON])),
                                      "prior": _figure(float(prior[B_ECON])),
                                      "race_p": round(float(scalars[B_ECON_P]), 5)}
        report["acquisition_time"]["fast_share_ref"] = round(float(scalars[B_ACQ_P]), 4)
        report["rhythm_at_the_gate"]["reference_cv"] = round(float(gate[0]), 4) if gate else None
        report["rhythm_at_the_gate"]["kurtosis"] = round(float(gate[1]), 3) if gate else None
        report["rhythm_at_the_gate"]["skewness"] = round(float(gate[2]), 3) if gate else None
        report["aim_difficulty"]["hit_rate"] = [round(float(h), 4) for h in job.hit_rate]
        self.scalars, self.hit_rate, self.table = scalars, job.hit_rate, job.table
        self.tick, self.report = job.tick, report


def _figure(v):
    """A report's number: rounded; None for a threshold not set (infinite)."""
    if isinstance(v, float):
        return round(float(v), 4) if math.isfinite(v) else None
    return v


def _race_rate(stats: np.ndarray) -> float:
    """The chance that an honest trade or potion is refused for what the purse holds: pooled
    over the players not flagged for it, each counting at most ``ECON_CAP`` actions, shrunk to
    the prior by ``ECON_PRIOR`` pseudo-actions; never under a tenth of the prior."""
    fair = (stats[:, FLAGS].astype(np.int64) & FLAG_ECONOMY) == 0
    n = stats[fair, ECON_N]
    w = np.minimum(1.0, ECON_CAP / np.maximum(n, 1.0))
    rate = ((w * stats[fair, R_ECONOMY]).sum() + ECON_PRIOR * ECON_RACE_P) / ((w * n).sum() + ECON_PRIOR)
    return float(max(rate, 0.1 * ECON_RACE_P))


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


def _gate_reference(stats: np.ndarray, min_population: int, fp_rate: float) -> tuple[float, float, float] | None:
    """(reference coefficient of variation, kurtosis, skewness) of how long after their weapons
    were ready the players attacked at the gate (see the module docstring); None with fewer
    than ``GATE_MIN_REFERENCE`` players (or a quarter of ``min_population``) of ``GATE_REF_N``
    such attacks whose delays average ``GATE_MIN_MS`` or more and ``GATE_INNER`` of the gate's
    width or less (those the test judges).

    The players' measured spreads are their true ones plus the noise of a few attacks: the
    lower half's spread (from the median to the lower quartile, on the log) less that noise
    (``log_cv_variance``, never more than three quarters of it) is the population's own, and
    the reference is where its normal tail leaves ``fp_rate`` of the players below."""
    n = stats[:, GATE_N]
    mean = stats[:, GATE_SUM] / np.maximum(n, 1.0)
    mine = (n >= GATE_REF_N) & (mean >= GATE_MIN_MS) & (mean <= GATE_INNER * stats[:, GATE_SPAN] / np.maximum(n, 1.0))
    if mine.sum() < max(GATE_MIN_REFERENCE, min_population // 4):
        return None
    n, mean = n[mine], mean[mine]
    m2, m3, m4 = (stats[mine, k] / n for k in (GATE_SQ, GATE_CU, GATE_QU))
    var = np.maximum(m2 - mean * mean, 1e-9)
    x = np.log(np.maximum(np.sqrt(var) / mean, 1e-9))
    median, lower = np.quantile(x, (0.5, 0.25))
    steady = x <= median
    central3 = m3 - 3.0 * mean * m2 + 2.0 * mean ** 3
    central4 = m4 - 4.0 * mean * m3 + 6.0 * mean * mean * m2 - 3.0 * mean ** 4
    kurtosis = min(max(float(np.median((central4 / (var * var))[steady])), 1.8), 9.0)
    skewness = min(max(float(np.median((central3 / var ** 1.5)[steady])), -2.0), 2.0)
    spread = ((median - lower) / NormalDist().inv_cdf(0.75)) ** 2
    noise = log_cv_variance(float(np.median(n[steady])), math.exp(median), kurtosis, skewness)
    sd = math.sqrt(max(spread - noise, 0.25 * spread))
    return math.exp(median + NormalDist().inv_cdf(fp_rate) * sd), kurtosis, skewness


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
