"""The anomaly tests on hand-made evidence: each flag rises when, and only when, it should."""


import numpy as np
from scipy.stats import binom
import pytest

from systems.anomaly_score import (ACQUIRE_WINDOW_MS, AIM_BINS, AIM_BLIND, ALL_CHANGED, FLAG_ACQUIRE, FLAG_AIM,
                                   FLAG_ECONOMY, FLAG_EXCESS, FLAG_LUCK, FLAG_MOVE, FLAG_REACTION, FLAG_REGULAR,
                                   FLAG_SPEED, REFUSAL_CLASS, AnomalyScore, PopulationBaseline, _acquired, _flags,
                                   _fold, _judge, _least_extreme, _log_binom_tail, acquire_log_bf, acquisition_model,
                                   aim_log_bf, aim_table, flag_names, prior_baseline, shot_difficulty, thresholds)
from systems.anomaly_score.aim import AIM_SHIFTS
from systems.components import CheatStats, Player
from tests.reference import naive_aim_log_bf
from worlds import parse_world

F = {name: k for k, name in enumerate(CheatStats.fields)}
DEFAULTS = parse_world({"world": {"name": "w", "bounds": [0, 0, 10, 10]}}).cheat
TH = thresholds(DEFAULTS)
PRIOR = prior_baseline(TH)


def judge(**fields):
    row = np.zeros((1, len(CheatStats.fields)))
    for k, v in fields.items():
        row[0, F[k]] = v
    flags, _ = _flags(row, TH, DEFAULTS.rare_drop_p)
    return int(flags[0])


INTERVAL = np.array([0, 0, 400.0, 500.0, 1500.0, 0, 0, 0])  # by kind: the default weapon rules
RULES = parse_world({"world": {"name": "w", "bounds": [0, 0, 10, 10]}}).rules
REACH = np.array([0, 0, RULES.melee_reach_m, RULES.ranged_range_m, RULES.cast_range_m, 0, 0, 0])
TICK_MS = 50.0
LEAST, NO_MEMO = np.full(1 << 10, -1, np.int64), np.full(0, -1, np.int64)  # the repeat test's memo, and none
PLAYER_F8 = [f for f in Player.fields if Player.dtype[f] == np.float64]


def fresh(players=1):
    stats = np.zeros((players, len(CheatStats.fields)))
    for f in ("hurt_ms", "last_t_ms", "last_melee_ms", "last_ranged_ms", "last_cast_ms"):
        stats[:, F[f]] = -1e18
    return stats


def target_for(b):
    """(distance, speed) of a target that makes a shot's base chance b (>= 0.1, the model's
    least: the longest range at the reference speed or more)."""
    b = np.asarray(b, np.float64)
    far = b < 0.2
    dist = np.where(far, 1.0, (1.0 - b) / 0.8) * RULES.ranged_range_m
    return dist, np.where(far, 2.0 * (1.0 - b / 0.2) * RULES.player_speed_mps, 0.0)


def fold(stats, owner, kind, t_ms, *, order=None, status=None, value=None, target=None, b=None, near=None,
         effect=None, rare=None, excess=None, speed_ratio=None, last_target=None, deaths=((), ()), dirty=None,
         judge=True, grouped=True, tick=0.0):
    """Fold actions through the scoring kernels as the system does (``_fold``, ``_acquired``,
    then ``_judge`` unless ``judge`` is False) into ``stats`` (players, f), for players of
    round trip 100 ms and top speed 6 m/s whose clocks agree with ours. Per action (n,):
    owner, kind, t_ms; status (0), value (1 a claimed hit), target, near (the target 10 m away,
    else 39 m: in reach or not for an acquisition), b (a shot's base chance: its target placed
    by ``target_for`` instead), effect, rare, excess, speed_ratio (NaN). deaths: (ids, ticks).
    grouped: ``order`` holds each player's actions together (by default it does).
    Returns (touched rows, dirty, last_target)."""
    n, players = len(kind), stats.shape[0]
    nan = np.full(n, np.nan)
    run = np.zeros((players, len(PLAYER_F8)))
    run[:, PLAYER_F8.index("rtt_ms")] = 100.0
    run[:, PLAYER_F8.index("speed_mps")] = RULES.player_speed_mps
    seen = np.zeros((n, 6))
    seen[:, 1] = np.where(np.ones(n, bool) if near is None else near, 10.0, 39.0)
    if b is not None:  # a shot's target where its base chance is b
        shot = np.asarray(kind) == 3
        dist, speed = target_for(np.where(shot, b, 1.0))
        seen[shot, 1], seen[shot, 4] = dist[shot], speed[shot]
    owner = np.asarray(owner, np.int64)
    last_target = np.zeros(players, np.int64) if last_target is None else last_target
    dirty = np.zeros(players, np.int64) if dirty is None else dirty
    hurt, pending = np.empty(n, np.bool_), np.empty((n, 2), np.int64)
    touched, q = _fold(
        np.argsort(owner, kind="stable") if order is None else order, grouped, owner, np.asarray(kind, np.int8),
        np.zeros(n, np.int16) if status is None else np.asarray(status, np.int16),
        np.zeros(n) if value is None else np.asarray(value, np.float64), np.asarray(t_ms, np.float64),
        np.zeros(n, np.int64) if target is None else np.asarray(target, np.int64), np.zeros(n), np.zeros(n),
        np.zeros(n) if effect is None else effect, np.zeros(n, np.bool_) if rare is None else rare,
        nan if excess is None else excess, nan if speed_ratio is None else speed_ratio, seen, run, last_target,
        np.asarray(deaths[0], np.int64), np.asarray(deaths[1], np.int64), TICK_MS, REFUSAL_CLASS, INTERVAL,
        RULES.ranged_range_m, RULES.player_speed_mps, stats, TH, tick, dirty, hurt, pending)
    _acquired(pending[:q], owner, np.asarray(kind, np.int8), np.zeros(n), np.zeros(n), seen, np.zeros((q, 2)), run,
              ACQUIRE_WINDOW_MS + TICK_MS, REACH, 1.0 + RULES.speed_tolerance, stats, dirty)
    if judge:
        _judge(stats, touched, dirty, TH, *PRIOR, DEFAULTS.rare_drop_p, tick, LEAST)
    return touched, dirty, last_target


def fold_shots(b, hit, players=1, stats=None):
    """CheatStats rows after folding judged ranged shots through the scoring kernels (into
    ``stats`` if given): shot j (base chance b[j], hit[j]) belongs to player j % players.
    Returns (players, f) float64."""
    n = len(b)
    stats = fresh(players) if stats is None else stats
    fold(stats, np.arange(n) % players, np.full(n, 3), np.arange(n) * 600.0, value=hit, b=b, judge=False)
    return stats


def acquire(t_ms, foe=7, kind=3, in_reach=True, last_target=5, lost_ms=1000.0, last_ranged_ms=-1e18):
    """(acq_n, acq_fast + acq_quick / 2) after one attack at t_ms on ``foe``, by a player (round
    trip 100 ms) whose last foe, ``last_target``, died in the tick ending at ``lost_ms``."""
    stats = fresh()
    stats[0, F["last_ranged_ms"]] = last_ranged_ms
    deaths = ((), ()) if np.isnan(lost_ms) else ([last_target], [round(lost_ms / TICK_MS) - 1])
    fold(stats, [0], [kind], [t_ms], target=[foe], near=[in_reach], last_target=np.full(1, last_target, np.int64),
         deaths=deaths)
    return stats[0, F["acq_n"]], stats[0, F["acq_fast"]] + 0.5 * stats[0, F["acq_quick"]]


def shots(hard_hits: bool, n=60):
    """Evidence from n shots, half easy (b = 0.9), half hard (b = 0.2)."""
    b = np.array([0.9, 0.2] * (n // 2))
    hit = np.where(b > 0.5, 1.0, 1.0 if hard_hits else 0.0) * (np.arange(n) % 4 != 0)
    row = fold_shots(b, hit)[0]
    return {f: row[F[f]] for f in ("shots", "hits", *[f"{c}{k}" for c in ("shots", "hits") for k in range(AIM_BINS)])}


@pytest.mark.kernel
def test_each_flag_on_its_own_evidence():
    assert judge() == 0
    assert judge(r_move=3) == FLAG_MOVE and judge(r_move=2) == 0
    assert judge(speed_cusum=2.5) == FLAG_SPEED
    assert judge(**shots(hard_hits=True)) & FLAG_AIM
    assert not judge(**shots(hard_hits=False)) & FLAG_AIM
    n = 10
    assert judge(react_n=n, react_sum=n * 120.0, react_sq=n * (120.0**2 + 20.0**2)) == FLAG_REACTION
    assert judge(react_n=n, react_sum=n * 260.0, react_sq=n * (260.0**2 + 60.0**2)) == 0
    assert judge(int_n=30, int_sum=30 * 600.0, int_sq=30 * (600.0**2 + 10.0**2)) == FLAG_REGULAR
    assert judge(int_n=30, int_sum=30 * 600.0, int_sq=30 * (600.0**2 + 500.0**2), repeats=20) == FLAG_REGULAR
    assert judge(int_n=30, int_sum=30 * 600.0, int_sq=30 * (600.0**2 + 500.0**2), repeats=4) == 0
    assert judge(excess_n=25, excess_late=20) == FLAG_EXCESS
    assert judge(excess_n=25, excess_late=3) == 0  # a few late ones: a bad spell of the network
    assert judge(loots=8, rares=6) == FLAG_LUCK and judge(loots=8, rares=1) == 0
    assert judge(acq_n=12, acq_fast=11) == FLAG_ACQUIRE and judge(acq_n=12, acq_fast=3) == 0
    assert flag_names(FLAG_MOVE | FLAG_LUCK) == ["movement_refusals", "loot_luck"]


@pytest.mark.kernel
def test_an_acquisition_is_timed_from_seeing_the_last_foe_die_and_only_when_it_can_be():
    # The death is seen at the end of its tick plus half the round trip: 1050 ms.
    assert acquire(1050 + 120) == (1.0, 1.0)  # a fast switch
    assert acquire(1050 + 170) == (1.0, 0.5)  # a quick one
    assert acquire(1050 + 260) == (1.0, 0.0)  # a human one
    assert acquire(1050 + 120, foe=5) == (0.0, 0.0)  # the same foe again: no switch
    assert acquire(1050 + 120, lost_ms=np.nan) == (0.0, 0.0)  # the last foe lives
    assert acquire(1040) == (0.0, 0.0)  # before the client could have seen it
    assert acquire(1050 + 600) == (0.0, 0.0)  # too late to be a reaction
    assert acquire(1050 + 120, in_reach=False) == (0.0, 0.0)  # the new foe may have been out of reach
    assert acquire(1050 + 120, last_ranged_ms=700.0) == (0.0, 0.0)  # the gun was not ready soon enough
    assert acquire(1050 + 120, last_ranged_ms=600.0) == (1.0, 1.0)  # it was (within 100 ms: ready at 1100)
    assert acquire(1050 + 120, last_ranged_ms=500.0) == (1.0, 1.0)  # at once
    assert acquire(1050 + 120, last_ranged_ms=1020.0) == (0.0, 0.0)  # attacked again after the death: not the switch


@pytest.mark.kernel
def test_only_the_first_switch_of_a_tick_turns_from_the_foe_that_died():
    """The last foe (5) died in the tick ending at 1000 ms; within one tick the player swings
    at a new foe (7) before it could see that, then fires fast at another (8): that shot turns
    from 7, which lives, so it is no acquisition (alone, it would be a fast one)."""
    stats = fresh()
    fold(stats, [0, 0], [2, 3], [990.0, 1170.0], order=np.arange(2), target=[7, 8],
         last_target=np.full(1, 5, np.int64), deaths=([5], [19]))
    assert stats[0, F["acq_n"]] == 0.0
    assert acquire(1170, foe=8) == (1.0, 1.0)


def test_acquisition_factor_spares_humans_at_its_rate_and_catches_inhuman_switches():
    """Reaction times drawn from the honest model the world file declares (a mean per player
    from the prior, no faster than the floor, +- the spread per switch) and from an aimbot's
    120 +- 25 ms: the factor reaches e^T for at most e^-T of the humans, at any count."""
    rng = np.random.default_rng(3)
    c = DEFAULTS
    model = acquisition_model(c)
    assert model["floor_fast"] == pytest.approx(0.3085, abs=1e-4) and np.all(np.diff(model["human"][:, 0]) < 0)
    assert np.exp(model["human_w"]).sum() == pytest.approx(1.0)
    assert np.allclose(np.exp(model["human"]).sum(axis=1), 1.0) and np.allclose(np.exp(model["cheat"]).sum(axis=1), 1.0)

    def counts(reaction):
        return (np.cumsum(reaction < c.acquire_fast_ms, axis=1),
                np.cumsum((reaction >= c.acquire_fast_ms) & (reaction < c.acquire_quick_ms), axis=1))

    humans, n = 20000, 40
    mean = np.maximum(rng.normal(c.reaction_prior_ms, c.reaction_prior_sd_ms, (humans, 1)), c.reaction_floor_ms)
    fast, quick = counts(rng.normal(mean, c.reaction_spread_ms, (humans, n)))
    highest = np.full(humans, -np.inf)
    for j in range(n):
        highest = np.maximum(highest, [acquire_log_bf(float(f), float(q), j + 1.0, TH)
                                       for f, q in zip(fast[:, j], quick[:, j])])
    for t in (2.0, 4.0, 6.0):
        assert (highest >= t).mean() <= np.exp(-t)
    fast, quick = counts(rng.normal(120.0, 25.0, (200, 15)))
    assert np.mean([acquire_log_bf(float(f), float(q), 15.0, TH) >= c.aim_log_bf
                    for f, q in zip(fast[:, -1], quick[:, -1])]) >= 0.9
    assert acquire_log_bf(0.0, 0.0, 0.0, TH) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.kernel
def test_binomial_tail_is_exact_above_the_mean_and_never_too_small_below():
    for k, n, p in ((0, 10, 0.3), (3, 10, 0.3), (4, 10, 0.3), (10, 10, 0.3), (11, 10, 0.3), (5, 40, 0.02),
                    (400, 2000, 0.15), (700, 2000, 0.15)):
        exact = binom.logsf(k - 1, n, p)
        got = _log_binom_tail(k, n, p)
        if k <= n * p:
            assert got == 0.0 and exact <= 0.0  # an overestimate: never a false alarm
        else:
            assert (got == -np.inf and exact == -np.inf) or got == pytest.approx(exact, rel=1e-9)


def test_shot_difficulty_falls_with_distance_and_target_speed():
    b = shot_difficulty(np.array([0.0, 20.0, 40.0, 0.0]), 40.0, np.array([0.0, 0.0, 0.0, 6.0]), 6.0)
    assert b[0] == 1.0 and b[0] > b[1] > b[2] > 0 and b[3] == 0.5
    assert AnomalyScore.phase.name == "SCORE"


@pytest.mark.kernel
def test_aim_bayes_factor_matches_the_definition():
    rng = np.random.default_rng(5)
    b = rng.uniform(0.1, 1.0, 40)  # 0.1: the least base chance the shot model gives
    rate = np.linspace(0.15, 0.7, AIM_BINS)
    for hit in (rng.uniform(size=40) < 0.6 * b, rng.uniform(size=40) < 0.55, np.ones(40), np.zeros(40)):
        stats = fold_shots(b, hit.astype(np.float64))
        _, score = _flags(stats, TH, DEFAULTS.rare_drop_p, (PRIOR[0], aim_table(rate)))
        want = naive_aim_log_bf(b, hit, rate, AIM_SHIFTS, AIM_BLIND)
        assert score[0] == pytest.approx(want, rel=1e-9, abs=1e-9)
    no_shots = aim_log_bf(fresh()[0, :-1], PRIOR[1])
    assert no_shots == pytest.approx(0.0, abs=1e-12)  # no evidence either way


def _honest_shots(rng, model, humans, n):
    """Shots by honest humans of two kinds the detector was not written for: ``project``,
    skill x b with the world file's skill prior; ``logistic``, a mixture of skills (a skilled
    fifth) whose log-odds of a hit fall gently with b. (b, hit), (humans, n) each."""
    b = rng.uniform(0.1, 1.0, (humans, n))
    if model == "project":
        skill = np.clip(rng.normal(DEFAULTS.skill_mean, DEFAULTS.skill_sd, (humans, 1)), 0.15, DEFAULTS.skill_max)
        p = skill * b
    else:
        level = np.where(rng.uniform(size=(humans, 1)) < 0.2, rng.normal(1.5, 0.3, (humans, 1)),
                         rng.normal(-0.2, 0.5, (humans, 1)))
        p = 1.0 / (1.0 + np.exp(-(level + 1.2 * (b - 0.6))))  # gentler than skill x b
    return b, (rng.uniform(size=b.shape) < p).astype(np.float64)


def _learned(stats, th=TH):
    base = PopulationBaseline(th)
    base.learn(stats, th, 0, DEFAULTS.false_positive_rate, DEFAULTS.min_population)
    return base


@pytest.mark.parametrize("model", ["project", "logistic"])
def test_aim_test_learns_the_population_curve_spares_its_humans_and_catches_a_difficulty_blind_aim(model):
    """Honest shooters whose curve is not the detector's prior: with the curve learned from
    them (and a few aimbots among them, whose shots count only so much), the factor reaches
    e^T for at most e^-T of the humans at any count of shots, and aimbots are caught where
    the population's hits fall with difficulty."""
    rng = np.random.default_rng(11)
    humans, aimbots, rounds, n = 3000, 30, 40, 10  # 400 shots: some 0.07 nats a shot for an aimbot
    b, hit = _honest_shots(rng, model, humans, rounds * n)
    ab = rng.uniform(0.1, 1.0, (aimbots, rounds * n))
    ahit = (rng.uniform(size=ab.shape) < 0.6 * (0.85 + 0.15 * ab)).astype(np.float64)
    b, hit = np.vstack([b, ab]), np.vstack([hit, ahit])
    stats = fold_shots(b.T.ravel(), hit.T.ravel(), humans + aimbots)
    base = _learned(stats)
    by_bin = np.minimum(((b - 0.1) / 0.9 * AIM_BINS).astype(int), AIM_BINS - 1)
    honest_rate = np.array([hit[:humans][by_bin[:humans] == k].mean() for k in range(AIM_BINS)])
    assert np.abs(base.hit_rate - honest_rate).max() < 0.03  # the aimbots barely move it
    highest, stats = np.full(humans + aimbots, -np.inf), None
    for j in range(rounds):  # the evidence looked at every 10 shots
        cols = slice(j * n, (j + 1) * n)
        stats = fold_shots(b[:, cols].T.ravel(), hit[:, cols].T.ravel(), humans + aimbots, stats)
        highest = np.maximum(highest, _flags(stats, TH, DEFAULTS.rare_drop_p, (base.scalars, base.table))[1])
    for t in (2.0, 4.0, base.scalars[0]):
        assert (highest[:humans] >= t).mean() <= np.exp(-t)
    if model == "project":
        assert (highest[humans:] >= base.scalars[0]).mean() >= 0.9
    else:
        # Everyone's hits fall gently with b here: an aimbot's gentle fall is no evidence (the
        # acquisition test is left to catch it), and the world file's prior curve (skill x b),
        # steeper than this population's, would have flagged its best shooters.
        prior = _flags(stats, TH, DEFAULTS.rare_drop_p)[1]
        assert (prior[:humans] >= TH[2]).sum() >= 30 and (highest[:humans] >= TH[2]).sum() <= 1


def test_thresholds_rise_to_what_the_population_scores_call_for_and_never_fall_below_the_file():
    """Rhythm statistics of players whose intervals spread as drawn: a population that keeps
    tighter time than the world file's prior (a quantised client clock) raises the spread
    test's threshold until its own tail, not the formula, holds the false positives; bots
    among it, far tighter still, stay caught. A population of looser time is never judged
    more harshly than the file says."""
    rng = np.random.default_rng(4)
    for median_cv, tighter in ((0.3, True), (0.8, False)):
        stats = fresh(2000)
        n = 40.0
        cv = median_cv * np.exp(rng.normal(0.0, 0.15, 2000))
        cv[:20] = 0.03  # bots
        stats[:, F["int_n"]], stats[:, F["int_sum"]] = n, n * 700.0
        stats[:, F["int_sq"]] = n * (700.0 ** 2) * (1.0 + cv ** 2)
        base = _learned(stats)
        cut = base.report["rhythm_spread"]["cv_threshold"]
        assert cut <= DEFAULTS.regularity_cv
        flagged = (_flags(stats, TH, DEFAULTS.rare_drop_p, (base.scalars, base.table))[0] & FLAG_REGULAR) != 0
        assert flagged[:20].all() and flagged[20:].mean() <= DEFAULTS.false_positive_rate
        if tighter:
            assert cut < 0.2
            assert ((_flags(stats, TH, DEFAULTS.rare_drop_p)[0] & FLAG_REGULAR) != 0)[20:].sum() > 20  # the prior's
    assert base.report["rhythm_spread"]["scored"] == 2000 and "q99" in base.report["rhythm_spread"]


@pytest.mark.kernel
def test_an_attack_as_soon_as_the_weapon_allows_is_no_interval_of_the_rhythm():
    """Sustained fire: shots 500 ms apart (the weapon's interval) time the weapon; the player
    holding the trigger (with its client's frames and delays, up to half an interval more) shows no
    rhythm of its own. Shots 800 ms apart are its own beat."""
    for gap, counted in ((500.0, 0.0), (560.0, 0.0), (740.0, 0.0), (800.0, 29.0)):
        stats = fresh()
        fold(stats, np.zeros(30, np.int64), np.full(30, 3), np.arange(30) * gap, judge=False)
        assert stats[0, F["int_n"]] == counted, gap


def _gate_rows(delays):
    """CheatStats rows of players whose attacks at the gate came ``delays[k]`` (ms after
    the weapon was ready: a list of arrays, one per player), all shots of the bow (a gate
    250 ms wide)."""
    stats = fresh(len(delays))
    for k, d in enumerate(delays):
        for j, f in enumerate(("gate_n", "gate_sum", "gate_sq", "gate_cu", "gate_qu")):
            stats[k, F[f]] = (d ** j).sum()
        stats[k, F["gate_span"]] = 250.0 * d.size
    return stats


@pytest.mark.parametrize("model", ["pickers", "sustained"])
def test_the_gate_test_judges_a_beat_against_the_population_spread_there(model):
    """Attacks soon after the weapon was ready: honest players of a kind the detector was not
    written for (``pickers``: each its own gamma-distributed pause of its own mean and shape,
    on 30 Hz client frames; ``sustained``: the trigger held, an exponential client delay, 60 Hz
    frames) and bots firing 100 ms +- 15 ms after it. With the reference learned from all of
    them, the bots with 30 attacks or more are flagged and at most the world file's false
    positive rate of the humans is, however few attacks a human showed."""
    rng = np.random.default_rng(7)
    humans, bots = 2000, 20
    counts = rng.integers(10, 90, humans + bots)
    counts[humans:] = rng.integers(30, 90, bots)
    delays = []
    for k, n in enumerate(counts):
        if k >= humans:
            d = 100.0 + rng.normal(0.0, 15.0, n) + rng.uniform(0.0, 33.3, n)
        elif model == "pickers":
            shape, mean = rng.uniform(1.5, 4.0), rng.uniform(80.0, 160.0)
            d = rng.gamma(shape, mean / shape, 4 * n)
            d = (d[d < 230.0][:n] + rng.uniform(0.0, 33.3, n))[:n]
        else:
            d = rng.exponential(rng.uniform(40.0, 90.0), n) + rng.uniform(0.0, 16.7, n)
        delays.append(np.maximum(d, 0.0))
    stats = _gate_rows(delays)
    base = _learned(stats)
    report = base.report["rhythm_at_the_gate"]
    assert report["reference_cv"] is not None and report["threshold"] > 3.0
    flagged = (_flags(stats, TH, DEFAULTS.rare_drop_p, (base.scalars, base.table))[0] & FLAG_REGULAR) != 0
    assert flagged[humans:].mean() >= 0.9
    assert flagged[:humans].mean() <= DEFAULTS.false_positive_rate
    # Before the population has shown its spread there, nobody is judged on it.
    assert not ((_flags(stats, TH, DEFAULTS.rare_drop_p)[0] & FLAG_REGULAR) != 0).any()


@pytest.mark.kernel
def test_the_fold_counts_how_long_after_the_weapon_was_ready_an_attack_at_the_gate_came():
    """Shots at 500 ms + 20, 60, 100, ... ms: each after the one before, its delay counted with
    its powers up to the fourth (the reference's kurtosis needs them)."""
    after = np.array([20.0, 60.0, 100.0, 140.0, 30.0, 70.0])
    t = np.concatenate([[0.0], np.cumsum(500.0 + after)])
    stats = fresh()
    fold(stats, np.zeros(t.size, np.int64), np.full(t.size, 3), t, judge=False)
    for j, f in enumerate(("gate_n", "gate_sum", "gate_sq", "gate_cu", "gate_qu")):
        assert stats[0, F[f]] == pytest.approx((after ** j).sum()), f
    assert stats[0, F["gate_span"]] == 0.5 * INTERVAL[3] * after.size  # the gates' widths


def test_economy_refusals_are_judged_out_of_the_trades_against_the_populations_races():
    """A claim of gold or potions the purse does not hold is refused; three are a flag when
    they are few trades' worth, not when a busy honest trader's offers now and then outran
    its purse (a trade in flight spent it). The race rate is learned from the players, those
    flagged for it left out: a population whose clients race more is not flagged for it."""
    assert judge(r_economy=3, econ_n=3) & FLAG_ECONOMY
    assert judge(r_economy=3, econ_n=10) & FLAG_ECONOMY
    assert not judge(r_economy=3, econ_n=300) & FLAG_ECONOMY  # what a 1 % race rate gives
    assert judge(r_economy=12, econ_n=300) & FLAG_ECONOMY
    rng = np.random.default_rng(3)
    stats = fresh(1000)
    stats[:, F["econ_n"]] = rng.integers(50, 400, 1000)
    stats[:, F["r_economy"]] = rng.binomial(stats[:, F["econ_n"]].astype(int), 0.03)  # racy clients
    stats[:20, F["econ_n"]], stats[:20, F["r_economy"]] = 40, 12  # dupers: 30 % of their trades
    base = _learned(stats)
    assert 0.025 < base.report["economy_refusals"]["race_p"] < 0.045
    flagged = (_flags(stats, TH, DEFAULTS.rare_drop_p, (base.scalars, base.table))[0] & FLAG_ECONOMY) != 0
    assert flagged[:20].all() and flagged[20:].mean() <= DEFAULTS.false_positive_rate
    assert ((_flags(stats, TH, DEFAULTS.rare_drop_p)[0] & FLAG_ECONOMY) != 0)[20:].sum() > 50  # the prior's


@pytest.mark.kernel
def test_a_tail_test_by_its_least_extreme_count_agrees_with_the_tail():
    least = np.full(300, -1, np.int64)
    for stop in (np.log(1e-4), np.log(1e-7)):
        least[:] = -1
        for n in range(0, 400, 7):
            for p in (0.02, 0.15, 0.5):
                cut = _least_extreme(least, n, p, stop) if p == 0.15 else _least_extreme(NO_MEMO, n, p, stop)
                assert all((_log_binom_tail(k, n, p, stop) < stop) == (k >= cut) for k in range(n + 2))
    assert (least[:300:7] > 0).all()  # each count asked for is kept


@pytest.mark.kernel
def test_binomial_tail_stops_early_only_when_the_answer_is_no():
    for k, n, p in ((5, 40, 0.02), (30, 200, 0.1), (400, 2000, 0.15), (9, 10, 0.31)):
        exact = _log_binom_tail(k, n, p)
        for stop in (np.log(1e-6), np.log(1e-4), -1.0):
            got = _log_binom_tail(k, n, p, stop)
            assert (got < stop) == (exact < stop)
            if exact < stop:
                assert got == pytest.approx(exact, rel=1e-9)


@pytest.mark.kernel
def test_judging_only_changed_evidence_flags_the_same_players_at_the_same_ticks():
    """Every test re-run on every touched player every tick (as a reference) against the
    fold, which runs the tests of moves as it leaves each player, and the judge, which runs a
    test only where its evidence changed and the aim factor only past a bound: the same flags,
    raised at the same ticks, on random evidence that raises most."""
    rng = np.random.default_rng(3)
    players, n = 30, 40
    fast = [fresh(players), fresh(players)]
    last = [np.zeros(players, np.int64), np.zeros(players, np.int64)]
    kinds = np.array([1, 2, 3, 3, 4, 5], np.int8)
    for tick in range(120):
        rows = rng.integers(0, players, n)
        kind = kinds[rng.integers(0, kinds.size, n)]
        status = np.where(rng.uniform(size=n) < 0.1, rng.choice([7, 8, 22, 20, 12, 10], n), 0).astype(np.int16)
        t_ms = tick * 50.0 + np.where(rows % 3 == 0, rows, rng.uniform(0, 50, n))  # a third keep a beat
        hit = (rng.uniform(size=n) < np.where(rows % 4 == 0, 0.95, 0.4)).astype(np.float64)
        b = rng.uniform(0.1, 1.0, n)
        excess = np.where(rows % 5 == 0, 150.0, rng.normal(0, 20, n))
        speed_ratio = np.where(kind == 1, np.where(rows % 7 == 0, 1.4, 0.8), np.nan)
        effect = ((kind == 5) & (status == 0)).astype(np.float64)
        rare = (effect > 0) & (rng.uniform(size=n) < np.where(rows % 6 == 0, 0.8, 0.02))
        foe = np.where((kind >= 2) & (kind <= 4), rng.integers(1, 9, n), 0).astype(np.int64)
        near = rng.uniform(size=n) < 0.8
        dead = np.flatnonzero(rng.uniform(size=9) < 0.3)  # foes that died in the tick before last
        order = np.argsort(rows * 1e6 + t_ms, kind="stable")
        for k, judge_all in ((0, False), (1, True)):
            touched, dirty, _ = fold(fast[k], rows, kind, t_ms, order=order, status=status, value=hit, target=foe,
                                     b=b, near=near, effect=effect, rare=rare, excess=excess, speed_ratio=speed_ratio,
                                     last_target=last[k], deaths=(dead, np.full(dead.size, tick - 2)), judge=False,
                                     grouped=not judge_all, tick=float(tick))
            if judge_all:
                dirty[touched] = ALL_CHANGED
            _judge(fast[k], touched, dirty, TH, *PRIOR, DEFAULTS.rare_drop_p, float(tick), LEAST if k == 0 else NO_MEMO)
            assert (dirty == 0).all()
        assert (fast[0][:, F["flags"]] == fast[1][:, F["flags"]]).all()
        assert (fast[0][:, F["flag_tick"]] == fast[1][:, F["flag_tick"]]).all()
    raised = np.bitwise_or.reduce(fast[0][:, F["flags"]].astype(np.int64))
    assert bin(raised).count("1") >= 6  # the evidence raised most kinds of flag
