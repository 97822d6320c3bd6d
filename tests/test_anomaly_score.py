"""The anomaly tests on hand-made evidence: each flag rises when, and only when, it should."""

import math

import numpy as np
import pytest

from systems.anomaly_score import (FLAG_AIM, FLAG_EXCESS, FLAG_LUCK, FLAG_MOVE, FLAG_REACTION, FLAG_REGULAR,
                                   FLAG_SPEED, _flags, _log_binom_tail, flag_names, shot_difficulty)
from systems.components import CheatStats
from worlds import parse_world
from systems.anomaly_score import AnomalyScore

F = {name: k for k, name in enumerate(CheatStats.fields)}
DEFAULTS = parse_world({"world": {"name": "w", "bounds": [0, 0, 10, 10]}}).cheat


def thresholds():
    c = DEFAULTS
    return np.array([c.refusals, c.min_shots, c.aim_z, c.min_reactions, c.reaction_mean_ms, c.reaction_sd_ms,
                     c.min_intervals, c.regularity_cv, c.min_timings, c.excess_delay_ms, c.min_loots, c.luck_p])


def judge(**fields):
    row = np.zeros((1, len(CheatStats.fields)))
    for k, v in fields.items():
        row[0, F[k]] = v
    flags, _ = _flags(row, thresholds(), DEFAULTS.rare_drop_p)
    return int(flags[0])


def shots(hard_hits: bool, n=60):
    """Evidence from n shots, half easy (b = 0.9), half hard (b = 0.2)."""
    b = np.array([0.9, 0.2] * (n // 2))
    hit = np.where(b > 0.5, 1.0, 1.0 if hard_hits else 0.0) * (np.arange(n) % 4 != 0)
    x = -np.log(b)
    return dict(shots=n, hits=hit.sum(), b_sum=b.sum(), bx_sum=(b * x).sum(), bxx_sum=(b * x * x).sum(),
                hx_sum=(hit * x).sum())


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
    assert judge(excess_n=25, excess_sum=25 * 120.0) == FLAG_EXCESS
    assert judge(excess_n=25, excess_sum=25 * 10.0) == 0
    assert judge(loots=8, rares=6) == FLAG_LUCK and judge(loots=8, rares=1) == 0
    assert flag_names(FLAG_MOVE | FLAG_LUCK) == ["movement_refusals", "loot_luck"]


@pytest.mark.kernel
def test_binomial_tail_matches_the_exact_sum():
    for k, n, p in ((0, 10, 0.3), (3, 10, 0.3), (10, 10, 0.3), (11, 10, 0.3), (5, 40, 0.02)):
        exact = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
        got = _log_binom_tail(k, n, p)
        assert (got == -np.inf and exact == 0) or got == pytest.approx(math.log(exact), rel=1e-9)


def test_shot_difficulty_falls_with_distance_and_target_speed():
    b = shot_difficulty(np.array([0.0, 20.0, 40.0, 0.0]), 40.0, np.array([0.0, 0.0, 0.0, 6.0]), 6.0)
    assert b[0] == 1.0 and b[0] > b[1] > b[2] > 0 and b[3] == 0.5
    assert AnomalyScore.phase.name == "SCORE"
